/**
 * lc - least connection (ip_vs_lc.c): the usable server with the smallest connection
 * overhead (activeconns * 256 + inactconns). The weight only matters as zero or not.
 */
import { leastLoaded } from './common.js';
import type { SchedDest, SchedService, Scheduler, SchedulerFactory } from '../core/scheduler.js';

/** Least connection: fewest (weighted active + inactive) connections, weight ignored; ties go to the earlier server. */
export const lc: SchedulerFactory = {
  name: 'lc',
  create<D extends SchedDest>(svc: SchedService<D>): Scheduler<D> {
    return { schedule: () => leastLoaded(svc.dests, 'conn', 'none', false) };
  },
};
