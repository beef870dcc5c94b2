/**
 * wlc - weighted least connection (ip_vs_wlc.c), the kernel's default scheduler:
 * minimises overhead / weight. The loop itself lives in common.ts because lblc and
 * lblcr fall back to the very same choice.
 */
import { wlcPick } from './common.js';
import type { SchedDest, SchedService, Scheduler, SchedulerFactory } from '../core/scheduler.js';

/** Weighted least connection: smallest (active * 256 + inactive) / weight. */
export const wlc: SchedulerFactory = {
  name: 'wlc',
  create<D extends SchedDest>(svc: SchedService<D>): Scheduler<D> {
    return { schedule: () => wlcPick(svc.dests) };
  },
};
