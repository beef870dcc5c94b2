/**
 * twos - power of two choices (ip_vs_twos.c, Linux 6.x): draw two servers at random in
 * proportion to their weights and keep the one with the smaller overhead / weight.
 * Randomness comes from env.randomU32() so that tests can replay a sequence.
 */
import { connOverhead, usable } from './common.js';
import type { SchedDest, SchedEnv, SchedService, Scheduler, SchedulerFactory } from '../core/scheduler.js';

function twosPick<D extends SchedDest>(dests: readonly D[], env: SchedEnv): D | null {
  const n = dests.length;
  let total = 0;
  let choice1: D | null = null;
  for (let i = 0; i < n; i++) {
    const d = dests[i]!;
    if (usable(d)) {
      total += d.weight;
      choice1 = d;
    }
  }
  if (choice1 === null) return null;

  // The + 1 makes the draws inclusive of total: r in [0, total]. A draw of 0 lands on
  // the first server, a draw of total on the last one (r - sum reaches 0 there).
  total += 1;
  // >>> 0 keeps a sloppy injected source (negative or fractional) inside [0, total].
  let r1 = (env.randomU32() >>> 0) % total;
  let r2 = (env.randomU32() >>> 0) % total;

  let choice2: D | null = null;
  let w1 = -1;
  let w2 = -1;
  let oh1 = 0;
  let oh2 = 0;
  for (let i = 0; i < n; i++) {
    const d = dests[i]!;
    if (!usable(d)) continue;
    const w = d.weight;
    r1 -= w;
    r2 -= w;
    if (r1 <= 0 && w1 === -1) {
      choice1 = d;
      w1 = w;
      oh1 = connOverhead(d);
    }
    if (r2 <= 0 && w2 === -1) {
      choice2 = d;
      w2 = w;
      oh2 = connOverhead(d);
    }
    if (w1 !== -1 && w2 !== -1) break;
  }
  // Keep choice1 unless choice2 is strictly less loaded per unit of weight.
  if (choice2 !== null && w2 * oh1 > w1 * oh2) return choice2;
  return choice1;
}

/** Power of two choices: two weighted random picks, the less loaded one wins. */
export const twos: SchedulerFactory = {
  name: 'twos',
  create<D extends SchedDest>(svc: SchedService<D>, env: SchedEnv): Scheduler<D> {
    return { schedule: () => twosPick(svc.dests, env) };
  },
};
