/**
 * sed - shortest expected delay (ip_vs_sed.c): minimises (activeconns + 1) / weight,
 * the delay a new job would see. Unlike wlc it ignores inactive connections and counts
 * the incoming job, which favours heavy servers when all are nearly idle.
 */
import type { SchedDest, SchedService, Scheduler, SchedulerFactory } from '../core/scheduler.js';

/** sed's choice over a list; same loop shape as wlc, with overhead = activeconns + 1. */
export function sedPick<D extends SchedDest>(dests: readonly D[]): D | null {
  const n = dests.length;
  let i = 0;
  let least: D | undefined;
  for (; i < n; i++) {
    const d = dests[i]!;
    if (!d.overloaded && d.weight > 0) {
      least = d;
      break;
    }
  }
  if (least === undefined) return null;
  let loh = least.activeconns + 1;
  let lw = least.weight;
  for (i++; i < n; i++) {
    const d = dests[i]!;
    if (d.overloaded) continue;
    const doh = d.activeconns + 1;
    // Weight 0 after the seed cannot win: loh * 0 > doh * lw is false.
    if (loh * d.weight > doh * lw) {
      least = d;
      loh = doh;
      lw = d.weight;
    }
  }
  return least;
}

/** Shortest expected delay: smallest (active + 1) / weight. */
export const sed: SchedulerFactory = {
  name: 'sed',
  create<D extends SchedDest>(svc: SchedService<D>): Scheduler<D> {
    return { schedule: () => sedPick(svc.dests) };
  },
};
