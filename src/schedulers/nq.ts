/**
 * nq - never queue (ip_vs_nq.c): an idle server (no active connections) gets the job at
 * once, the first one in list order; when none is idle, the sed choice.
 */
import { leastLoaded, usable } from './common.js';
import type { SchedDest, SchedService, Scheduler, SchedulerFactory } from '../core/scheduler.js';

function nqPick<D extends SchedDest>(dests: readonly D[]): D | null {
  for (let i = 0; i < dests.length; i++) {
    const d = dests[i]!;
    if (d.activeconns === 0 && usable(d)) return d;
  }
  // The kernel does both in one loop; with no idle server its comparisons are sed's.
  return leastLoaded(dests, 'sed', 'none', true);
}

/** Never queue: first idle server, else shortest expected delay. */
export const nq: SchedulerFactory = {
  name: 'nq',
  create<D extends SchedDest>(svc: SchedService<D>): Scheduler<D> {
    return { schedule: () => nqPick(svc.dests) };
  },
};
