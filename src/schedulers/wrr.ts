/**
 * wrr - weighted round robin (ip_vs_wrr.c, Julian Anastasov's version with gcd steps).
 *
 * Passes over the list with a falling threshold `cw`: a server is picked when its weight
 * is at least `cw`. `cw` starts at the maximum weight and falls by `di`, the gcd of the
 * weights, after each pass. `mw` is the maximum reduced by di - 1 so that the last pass
 * runs with cw = 1 and still finds a server whose weight was lowered below di.
 */
import { gcd } from './common.js';
import type { SchedDest, SchedService, Scheduler, SchedulerFactory } from '../core/scheduler.js';

class WeightedRoundRobin<D extends SchedDest> implements Scheduler<D> {
  /** Index of the current server; -1 = list head (the kernel's `cl`). */
  private cl = -1;
  /** Current weight threshold. */
  private cw: number;
  /** Maximum weight - (di - 1); 0 when every weight is 0. */
  private mw: number;
  /** Decreasing interval: gcd of the positive weights, or 1. */
  private di: number;

  /** The position, for a data plane that runs the sequence elsewhere (nftables). */
  snapshot(): WrrState {
    return { cl: this.cl, cw: this.cw, mw: this.mw, di: this.di };
  }

  restore(s: WrrState): void {
    ({ cl: this.cl, cw: this.cw, mw: this.mw, di: this.di } = s);
  }

  clone(svc: SchedService<D>): WeightedRoundRobin<D> {
    const c = new WeightedRoundRobin(svc);
    c.restore(this.snapshot());
    return c;
  }

  constructor(private readonly svc: SchedService<D>) {
    this.di = this.gcdWeight();
    this.mw = this.maxWeight() - (this.di - 1);
    this.cw = this.mw;
  }

  private gcdWeight(): number {
    let g = 0;
    for (const d of this.svc.dests) {
      if (d.weight > 0) g = g > 0 ? gcd(d.weight, g) : d.weight;
    }
    return g || 1;
  }

  private maxWeight(): number {
    let w = 0;
    for (const d of this.svc.dests) if (d.weight > w) w = d.weight;
    return w;
  }

  /**
   * ip_vs_wrr_dest_changed, for add, delete and update alike: restart at the head and
   * keep the threshold where it was when it still fits, aligned to the new step (the
   * `+ 1` matches the `- (di - 1)` in mw).
   */
  private changed(): void {
    this.cl = -1;
    this.di = this.gcdWeight();
    this.mw = this.maxWeight() - (this.di - 1);
    if (this.cw > this.mw || this.cw === 0) this.cw = this.mw;
    else if (this.di > 1) this.cw = Math.trunc(this.cw / this.di) * this.di + 1;
  }

  addDest(): void {
    this.changed();
  }

  delDest(): void {
    this.changed();
  }

  updDest(): void {
    this.changed();
  }

  schedule(): D | null {
    const dests = this.svc.dests;
    const n = dests.length;
    if (this.mw === 0) return null;
    // Defensive: the core always calls a hook when the list changes, which resets cl.
    if (this.cl >= n) this.cl = -1;
    const last = this.cl;
    let from = this.cl;
    let stop = -2; // no stop yet
    let lastPass = false;
    let restarted = false;
    for (;;) {
      for (let i = from + 1; i < n; i++) {
        const d = dests[i]!;
        if (!d.overloaded && d.weight >= this.cw) {
          this.cl = i;
          return d;
        }
        if (i === stop) {
          // A full pass with cw = 1 found nothing: everything is overloaded.
          this.cl = i;
          return null;
        }
      }
      from = -1;
      this.cw -= this.di;
      if (this.cw <= 0) {
        this.cw = this.mw;
        // Stop if the last pass (weight >= 1) already covered every server: either we
        // were in it, or we started at the head so the whole list was walked.
        if (lastPass || last === -1) {
          this.cl = -1;
          return null;
        }
        restarted = true;
      }
      lastPass = this.cw <= this.di;
      if (lastPass && restarted && last !== -1) {
        // The first walk covered only the servers after `last`; check the rest with
        // weight >= 1 and give up at `last`.
        stop = last;
      }
    }
  }
}

/** Weighted round robin: servers in list order, each in proportion to its weight. */
export const wrr: SchedulerFactory = {
  name: 'wrr',
  create<D extends SchedDest>(svc: SchedService<D>): Scheduler<D> {
    return new WeightedRoundRobin(svc);
  },
};

/** A wrr instance's position: current server, threshold, max and step (see the class). */
export interface WrrState {
  cl: number;
  cw: number;
  mw: number;
  di: number;
}

/**
 * The position of a wrr instance, or null for another scheduler. The nftables plane uses
 * it to hand the kernel the sequence this instance would produce from here.
 */
export function wrrSnapshot(s: Scheduler<SchedDest>): WrrState | null {
  return s instanceof WeightedRoundRobin ? s.snapshot() : null;
}

/** Puts a wrr instance at a position taken with wrrSnapshot (same servers, same order). */
export function wrrRestore(s: Scheduler<SchedDest>, state: WrrState): void {
  if (s instanceof WeightedRoundRobin) s.restore(state);
}
