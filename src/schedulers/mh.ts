/**
 * mh - Maglev hashing (ip_vs_mh.c; Eisenbud et al., NSDI 2016, section 3.4).
 *
 * Each server gets a pseudo-random permutation of the M = 4093 table slots from the
 * hash of its address and port (offset, skip); servers take turns claiming their next
 * free preferred slot, `turns` slots per round in proportion to their weight, until the
 * table is full. A client is looked up by the hash of its address (and, with mh-port,
 * its port). When one of N servers leaves, only about 1/N of the clients move.
 *
 * The table is built from `lastWeight`, so quiescing a server (weight 0) leaves it in
 * place and its clients get "no destination" (or the fallback) instead of a reshuffle.
 *
 * Hashes are the kernel's hsiphash with its fixed keys, so for the same servers and
 * the same list order the table matches the kernel's slot for slot.
 */
import type { Family } from '../core/types.js';
import { fls, foldForFamily, gcd, hsiphash32, hsiphashKey } from './common.js';
import { clientLookup, hashedScheduler } from './hashed.js';
import type { SchedDest, SchedulerFactory } from '../core/scheduler.js';

/** Table sizes the kernel can be built with (primes, so every skip is a generator). */
const PRIMES = [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071] as const;
/** CONFIG_IP_VS_MH_TAB_INDEX default. */
const MH_TAB_INDEX = 12;
/** IP_VS_MH_TAB_SIZE: 4093 slots. */
export const MH_TAB_SIZE: number = PRIMES[MH_TAB_INDEX - 8];
/** IP_VS_MH_TAB_BITS: weights are scaled down to at most this many bits of turns. */
const MH_TAB_BITS = Math.trunc(MH_TAB_INDEX / 2);

// generate_hash_secret(): fixed, not random, so tables are reproducible across reboots
// and across directors. The 64-bit key words fit in 32 bits (high halves 0).
const HASH1 = hsiphashKey(0, 2654435761, 0, 2654435761);
const HASH2 = hsiphashKey(0, 2654446892, 0, 2654446892);

/** ip_vs_mh_hashkey with hash1: `v = offset + port + addr_fold` as a u32, hashed. */
function mhHash1(fold: number, port: number, offset: number): number {
  return hsiphash32(HASH1, (offset + port + fold) >>> 0);
}

/** Weight scaling of a list: gcd of the positive last weights and the extra shift. */
function weightScale(dests: readonly SchedDest[]): { gcd: number; rshift: number } {
  let g = 0;
  let max = 0;
  for (const d of dests) {
    const w = d.lastWeight;
    if (w > 0) g = g > 0 ? gcd(w, g) : w;
    if (w > max) max = w;
  }
  if (g < 1) return { gcd: 0, rshift: 0 };
  // Keep turns within MH_TAB_BITS bits so one heavy server cannot claim whole rounds.
  const shift = fls(Math.trunc(max / g)) - MH_TAB_BITS;
  return { gcd: g, rshift: Math.max(shift, 0) };
}

/**
 * ip_vs_mh_permutate + ip_vs_mh_populate as a pure function: the lookup table for a
 * list of servers. Returns null when there are more servers than slots (the kernel
 * refuses with -EINVAL and keeps its previous table). All slots are null when no server
 * has a last weight.
 */
export function mhTable<D extends SchedDest>(af: Family, dests: readonly D[]): (D | null)[] | null {
  const M = MH_TAB_SIZE;
  const n = dests.length;
  if (n > M) return null;
  const table = new Array<D | null>(M).fill(null);
  const { gcd: g, rshift } = weightScale(dests);
  if (g < 1) return table;

  const skip = new Int32Array(n);
  const perm = new Int32Array(n);
  const turns = new Int32Array(n);
  let anyTurns = false;
  for (let i = 0; i < n; i++) {
    const d = dests[i]!;
    const fold = foldForFamily(af, d.addr);
    perm[i] = hsiphash32(HASH1, (d.port + fold) >>> 0) % M;
    skip[i] = (hsiphash32(HASH2, (d.port + fold) >>> 0) % (M - 1)) + 1;
    const lw = d.lastWeight;
    // `?:` in the kernel: a weight that scales to 0 turns still gets one turn.
    turns[i] = Math.trunc(lw / g) >> rshift || (lw !== 0 ? 1 : 0);
    if (turns[i]! > 0) anyTurns = true;
  }
  if (!anyTurns) return table;

  const taken = new Uint8Array(M);
  let filled = 0;
  for (;;) {
    for (let i = 0; i < n; i++) {
      const t = turns[i]!;
      if (t < 1) continue; // added with weight 0: takes no slots
      const s = skip[i]!;
      const d = dests[i]!;
      // A server claims `turns` slots in a row before the next one gets a go.
      for (let k = 0; k < t; k++) {
        let c = perm[i]!;
        while (taken[c] === 1) {
          c += s;
          if (c >= M) c -= M;
        }
        perm[i] = c;
        taken[c] = 1;
        table[c] = d;
        if (++filled === M) return table;
      }
    }
  }
}

/** A client's slot: ip_vs_mh_hashkey with hash1, reduced to the table size. */
function mhSlot(fold: number, port: number, offset: number): number {
  return mhHash1(fold, port, offset) % MH_TAB_SIZE;
}

/**
 * Maglev hashing: consistent client-to-server mapping with minimal disruption. On
 * -EINVAL (more servers than slots) a change keeps the old table, as the kernel does.
 */
export const mh: SchedulerFactory = hashedScheduler({
  name: 'mh',
  size: MH_TAB_SIZE,
  build: (svc) => mhTable(svc.af, svc.dests),
  lookup: (slots, svc, input) => clientLookup(slots, svc, input, mhSlot),
});
