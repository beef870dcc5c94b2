/**
 * rr - round robin (ip_vs_rr.c). The scheduler remembers the last server it returned
 * and continues after it, skipping overloaded and quiesced servers; a full circle that
 * finds nothing means "no destination available".
 */
import { usable } from './common.js';
import type { SchedDest, SchedService, Scheduler, SchedulerFactory } from '../core/scheduler.js';

class RoundRobin<D extends SchedDest> implements Scheduler<D> {
  /**
   * Index of the remembered server in svc.dests, -1 for the list head (nothing picked
   * yet). `cur` is the server itself: the kernel keeps a list pointer, so the position
   * follows the server when others are inserted before it.
   */
  private pos = -1;
  private cur: D | null = null;

  constructor(private readonly svc: SchedService<D>) {}

  clone(svc: SchedService<D>, map: (d: D) => D): RoundRobin<D> {
    const c = new RoundRobin(svc);
    c.pos = this.pos;
    c.cur = this.cur === null ? null : map(this.cur);
    return c;
  }

  addDest(): void {
    // Inserted at the head: our server moved one place down, the pointer stays on it.
    if (this.cur !== null) this.pos++;
  }

  delDest(dest: D, index: number): void {
    if (dest === this.cur) {
      // ip_vs_rr_del_dest: continue from the predecessor, so the server that followed
      // the removed one is next.
      this.pos = index - 1;
      this.cur = this.pos >= 0 ? (this.svc.dests[this.pos] ?? null) : null;
      if (this.cur === null) this.pos = -1;
    } else if (this.cur !== null && index < this.pos) {
      this.pos--;
    }
  }

  schedule(): D | null {
    const dests = this.svc.dests;
    const n = dests.length;
    let pos = this.pos;
    if (pos >= 0 && dests[pos] !== this.cur) {
      // The list changed without telling us; find the server again, or restart at the head.
      pos = this.cur === null ? -1 : dests.indexOf(this.cur);
    }
    // One full circle starting after the remembered server, ending with the server
    // itself: the kernel's two passes (rest of the list, then up to `last`).
    for (let k = 1; k <= n; k++) {
      const i = (pos + k) % n;
      const d = dests[i]!;
      if (usable(d)) {
        this.pos = i;
        this.cur = d;
        return d;
      }
    }
    this.pos = pos;
    return null;
  }
}

/** Round robin: each usable server in list order, one connection at a time. */
export const rr: SchedulerFactory = {
  name: 'rr',
  create<D extends SchedDest>(svc: SchedService<D>): Scheduler<D> {
    return new RoundRobin(svc);
  },
};
