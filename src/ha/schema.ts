/**
 * The one schema of a VRRP instance and of a vrrp_script: every bound written once. The
 * YAML reader and the whole-configuration VRRP checks (config/vrrp.ts) take their bounds
 * from here, and both formats' output is checked against it (config/schema.ts).
 */
import { z } from 'zod';
import { int } from '../core/schema.js';
import { duration, MAX_COUNT, MIN_INTERVAL } from '../health/schema.js';
import type { VrrpInstanceSpec, VrrpScriptSpec } from './model.js';

/** VRRPv3 carries the advertisement interval in centiseconds, in 12 bits: 0.01 to 40.95 s. */
export const MIN_ADVERT_INT = 0.01;
export const MAX_ADVERT_INT = 40.95;
/** keepalived's preempt_delay range, in seconds. */
export const MAX_PREEMPT_DELAY = 1000;
/** A tracked object's weight, as keepalived bounds it: the priority moves within 1..254. */
export const MAX_TRACK_WEIGHT = 253;

/** A track weight: -253..253. */
export const TrackWeightSchema = int(-MAX_TRACK_WEIGHT, MAX_TRACK_WEIGHT);

const instanceShape = {
  name: z.string().min(1),
  state: z.enum(['MASTER', 'BACKUP']).optional(),
  interface: z.string().optional(),
  virtualRouterId: int(1, 255).optional(),
  priority: int(1, 255).optional(),
  advertInt: z.number().min(MIN_ADVERT_INT).max(MAX_ADVERT_INT).optional(),
  nopreempt: z.boolean().optional(),
  preemptDelay: z.number().min(0).max(MAX_PREEMPT_DELAY).optional(),
  virtualIpaddress: z.array(z.string()),
  unicastSrcIp: z.string().optional(),
  unicastPeer: z.array(z.string()).optional(),
  trackInterface: z.array(z.object({ name: z.string(), weight: TrackWeightSchema })).optional(),
  trackScript: z.array(z.object({ name: z.string(), weight: TrackWeightSchema.optional() })).optional(),
  trackHealth: z.object({ weight: TrackWeightSchema }).optional(),
  notifyMaster: z.string().optional(),
  notifyBackup: z.string().optional(),
  notifyFault: z.string().optional(),
  notifyStop: z.string().optional(),
  notify: z.string().optional(),
  raw: z.record(z.string(), z.array(z.string())),
} satisfies { [K in keyof VrrpInstanceSpec]-?: z.ZodType };
/** One vrrp_instance as the model holds it. */
export const VrrpInstanceSchema = z.object(instanceShape);

const scriptShape = {
  name: z.string().min(1),
  script: z.string().min(1),
  interval: duration(MIN_INTERVAL),
  timeout: duration(MIN_INTERVAL),
  weight: TrackWeightSchema,
  rise: int(1, MAX_COUNT),
  fall: int(1, MAX_COUNT),
  initFail: z.boolean(),
} satisfies { [K in keyof VrrpScriptSpec]-?: z.ZodType };
/** One vrrp_script as the model holds it. */
export const VrrpScriptSchema = z.object(scriptShape);
