/**
 * The scheduler registry (ip_vs_sched.c): schedulers are found by the name ipvsadm -s
 * passes, and a name can be registered only once.
 */
import { TsvsError } from '../core/errors.js';
import { dh } from './dh.js';
import { fo } from './fo.js';
import { lblc } from './lblc.js';
import { lblcr } from './lblcr.js';
import { lc } from './lc.js';
import { mh } from './mh.js';
import { nq } from './nq.js';
import { ovf } from './ovf.js';
import { rr } from './rr.js';
import type { SchedulerFactory } from '../core/scheduler.js';
import { sed } from './sed.js';
import { sh } from './sh.js';
import { twos } from './twos.js';
import { wlc } from './wlc.js';
import { wrr } from './wrr.js';

const registry = new Map<string, SchedulerFactory>();

/**
 * Adds a scheduler. Throws on a name that is already taken, as register_ip_vs_scheduler
 * refuses with -EEXIST: silently replacing a scheduler would change live services.
 */
export function registerScheduler(f: SchedulerFactory): void {
  if (registry.has(f.name)) {
    throw new TsvsError('INTERNAL', `scheduler ${f.name}: already registered`);
  }
  registry.set(f.name, f);
}

/** The scheduler called `name`, or undefined (ipvsadm: "Scheduler not found"). */
export function getScheduler(name: string): SchedulerFactory | undefined {
  return registry.get(name);
}

/** Names of all registered schedulers, in registration order. */
export function schedulerNames(): string[] {
  return [...registry.keys()];
}

// ipvsadm's order (its -s help text), then twos, which ipvsadm does not list.
for (const f of [rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh, twos]) {
  registerScheduler(f);
}
