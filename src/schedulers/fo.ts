/**
 * fo - weighted failover (ip_vs_fo.c): every new connection goes to the usable server
 * with the highest weight; the others are standbys. Strict `>`, so among equal highest
 * weights the first in list order wins.
 */
import type { SchedDest, SchedService, Scheduler, SchedulerFactory } from '../core/scheduler.js';

function foPick<D extends SchedDest>(dests: readonly D[]): D | null {
  let best: D | null = null;
  let hw = 0;
  for (let i = 0; i < dests.length; i++) {
    const d = dests[i]!;
    if (!d.overloaded && d.weight > hw) {
      best = d;
      hw = d.weight;
    }
  }
  return best;
}

/** Weighted failover: the highest-weight usable server takes everything. */
export const fo: SchedulerFactory = {
  name: 'fo',
  create<D extends SchedDest>(svc: SchedService<D>): Scheduler<D> {
    return { schedule: () => foPick(svc.dests) };
  },
};
