/**
 * fo - weighted failover (ip_vs_fo.c): every new connection goes to the usable server
 * with the highest weight; the others are standbys. Strict `>`, so among equal highest
 * weights the first in list order wins.
 */
import { leastLoaded } from './common.js';
import type { SchedDest, SchedService, Scheduler, SchedulerFactory } from '../core/scheduler.js';

/** Weighted failover: the highest-weight usable server takes everything (the smallest 1 / weight). */
export const fo: SchedulerFactory = {
  name: 'fo',
  create<D extends SchedDest>(svc: SchedService<D>): Scheduler<D> {
    return { schedule: () => leastLoaded(svc.dests, 'flat', 'none', true) };
  },
};
