/**
 * ovf - overflow (ip_vs_ovf.c): like fo, but a server whose active connections exceed
 * its weight is full and the next highest weight takes the overflow. Only active
 * connections count, so the kernel warns it "might not be suitable for UDP" (UDP
 * connections stay inactive).
 */
import { leastLoaded } from './common.js';
import type { SchedDest, SchedService, Scheduler, SchedulerFactory } from '../core/scheduler.js';

/** Overflow: highest weight among usable servers with room (activeconns <= weight). */
export const ovf: SchedulerFactory = {
  name: 'ovf',
  create<D extends SchedDest>(svc: SchedService<D>): Scheduler<D> {
    return { schedule: () => leastLoaded(svc.dests, 'flat', 'room', true) };
  },
};
