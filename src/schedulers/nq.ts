/**
 * nq - never queue (ip_vs_nq.c): an idle server (no active connections) gets the job at
 * once, the first one in list order; when none is idle, the sed choice.
 */
import type { SchedDest, SchedService, Scheduler, SchedulerFactory } from '../core/scheduler.js';

function nqPick<D extends SchedDest>(dests: readonly D[]): D | null {
  let least: D | null = null;
  let loh = 0;
  let lw = 0;
  for (let i = 0; i < dests.length; i++) {
    const d = dests[i]!;
    if (d.overloaded || d.weight === 0) continue;
    if (d.activeconns === 0) return d;
    const doh = d.activeconns + 1;
    if (least === null || loh * d.weight > doh * lw) {
      least = d;
      loh = doh;
      lw = d.weight;
    }
  }
  return least;
}

/** Never queue: first idle server, else shortest expected delay. */
export const nq: SchedulerFactory = {
  name: 'nq',
  create<D extends SchedDest>(svc: SchedService<D>): Scheduler<D> {
    return { schedule: () => nqPick(svc.dests) };
  },
};
