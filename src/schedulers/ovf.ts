/**
 * ovf - overflow (ip_vs_ovf.c): like fo, but a server whose active connections exceed
 * its weight is full and the next highest weight takes the overflow. Only active
 * connections count, so the kernel warns it "might not be suitable for UDP" (UDP
 * connections stay inactive).
 */
import type { SchedDest, SchedService, Scheduler, SchedulerFactory } from '../core/scheduler.js';

function ovfPick<D extends SchedDest>(dests: readonly D[]): D | null {
  let best: D | null = null;
  let hw = 0;
  for (let i = 0; i < dests.length; i++) {
    const d = dests[i]!;
    const w = d.weight;
    if (d.overloaded || d.activeconns > w || w === 0) continue;
    if (best === null || w > hw) {
      best = d;
      hw = w;
    }
  }
  return best;
}

/** Overflow: highest weight among servers with activeconns <= weight. */
export const ovf: SchedulerFactory = {
  name: 'ovf',
  create<D extends SchedDest>(svc: SchedService<D>): Scheduler<D> {
    return { schedule: () => ovfPick(svc.dests) };
  },
};
