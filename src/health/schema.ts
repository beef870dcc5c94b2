/**
 * The one schema of a health checker and of the health settings of a service (quorum,
 * hysteresis): every bound and allowed value, written once. The YAML reader takes its
 * bounds from here, and both configuration formats' output is checked against it
 * (config/schema.ts), so keepalived.conf and YAML cannot accept different things.
 * Times are in seconds, fractions allowed, as in keepalived.conf.
 */
import { z } from 'zod';
import { int, MAX_PORT, MAX_TIMEOUT } from '../core/schema.js';
import type { CheckedService, CheckerConfig, HttpUrl } from './model.js';
import { DNS_TYPES } from './dns.js';

/** The longest time a checker setting may name: the same 31 days as any IPVS timeout. */
export const MAX_DURATION = MAX_TIMEOUT;
/** The shortest checker interval and timeout: 10 ms. */
export const MIN_INTERVAL = 0.01;
/** The most retries, rises and falls a checker counts. */
export const MAX_COUNT = 1000;
/** The largest quorum and hysteresis (sums of 32-bit weights, as keepalived). */
export const MAX_QUORUM = 0xffffffff;

/** A duration in seconds from `min`. */
export const duration = (min: number) => z.number().min(min).max(MAX_DURATION);

export const CheckerTypeSchema = z.enum(['tcp', 'http', 'https', 'udp', 'dns', 'misc']);
/** An HTTP status code. */
export const StatusCodeSchema = int(100, 599);
export const DigestSchema = z.string().regex(/^[0-9a-fA-F]{32}$/);
export const HexBytesSchema = z.string().regex(/^([0-9a-fA-F]{2})*$/);
export const DnsTypeSchema = z.enum(Object.keys(DNS_TYPES) as [string, ...string[]]);

const urlShape = {
  path: z.string(),
  statusCodes: z.array(z.tuple([StatusCodeSchema, StatusCodeSchema])).min(1),
  digest: DigestSchema.optional(),
  virtualhost: z.string().optional(),
} satisfies { [K in keyof HttpUrl]-?: z.ZodType };
export const HttpUrlSchema = z.object(urlShape);

const ReplyLength = int(0, 65535);

const checkerShape = {
  type: CheckerTypeSchema,
  connectIp: z.string().optional(),
  connectPort: int(1, MAX_PORT).optional(),
  bindto: z.string().optional(),
  interval: duration(MIN_INTERVAL),
  timeout: duration(MIN_INTERVAL),
  retry: int(0, MAX_COUNT),
  delayBeforeRetry: duration(0),
  fall: int(1, MAX_COUNT),
  rise: int(1, MAX_COUNT),
  alpha: z.boolean(),
  http: z.object({ urls: z.array(HttpUrlSchema), virtualhost: z.string().optional(), sni: z.boolean() }).optional(),
  udp: z
    .object({ payload: HexBytesSchema.optional(), requireReply: z.boolean(), minReplyLength: ReplyLength, maxReplyLength: ReplyLength })
    .optional(),
  dns: z.object({ type: DnsTypeSchema, name: z.string() }).optional(),
  misc: z.object({ path: z.string().min(1), timeout: duration(0), dynamic: z.boolean() }).optional(),
} satisfies { [K in keyof CheckerConfig]-?: z.ZodType };
/** One health checker of a real server, as the model holds it. */
export const CheckerSchema = z.object(checkerShape);

const healthShape = {
  quorum: int(0, MAX_QUORUM),
  hysteresis: int(0, MAX_QUORUM),
} satisfies { [K in keyof CheckedService]?: z.ZodType };
/** The health settings of a virtual service. */
export const ServiceHealthSchema = z.object(healthShape);
