/**
 * lc - least connection (ip_vs_lc.c): the usable server with the smallest connection
 * overhead (activeconns * 256 + inactconns). The weight only matters as zero or not.
 */
import { connOverhead } from './common.js';
import type { SchedDest, SchedService, Scheduler, SchedulerFactory } from '../core/scheduler.js';

/** lc's choice over a list: strict `<`, so ties go to the earlier server. */
export function lcPick<D extends SchedDest>(dests: readonly D[]): D | null {
  let least: D | null = null;
  let loh = 0;
  for (let i = 0; i < dests.length; i++) {
    const d = dests[i]!;
    if (d.overloaded || d.weight === 0) continue;
    const doh = connOverhead(d);
    if (least === null || doh < loh) {
      least = d;
      loh = doh;
    }
  }
  return least;
}

/** Least connection: fewest (weighted active + inactive) connections, weight ignored. */
export const lc: SchedulerFactory = {
  name: 'lc',
  create<D extends SchedDest>(svc: SchedService<D>): Scheduler<D> {
    return { schedule: () => lcPick(svc.dests) };
  },
};
