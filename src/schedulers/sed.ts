/**
 * sed - shortest expected delay (ip_vs_sed.c): minimises (activeconns + 1) / weight,
 * the delay a new job would see. Unlike wlc it ignores inactive connections and counts
 * the incoming job, which favours heavy servers when all are nearly idle.
 */
import { leastLoaded } from './common.js';
import type { SchedDest, SchedService, Scheduler, SchedulerFactory } from '../core/scheduler.js';

/** Shortest expected delay: smallest (active + 1) / weight. */
export const sed: SchedulerFactory = {
  name: 'sed',
  create<D extends SchedDest>(svc: SchedService<D>): Scheduler<D> {
    return { schedule: () => leastLoaded(svc.dests, 'sed', 'none', true) };
  },
};
