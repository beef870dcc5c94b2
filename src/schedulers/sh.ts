/**
 * sh - source hashing (ip_vs_sh.c): a static 256-bucket table maps the client address
 * (and, with sh-port, its port) to a server, so a client keeps its server as long as the
 * table does not change. The table is rebuilt on every add, delete and update.
 *
 * The hash is `(addr + port) * 2654435761 mod 256`; since the multiplier is odd, only
 * the low 8 bits of addr + port matter: IPv4 clients are spread by their last octet.
 * This is the kernel's behaviour and we keep it.
 */
import { GOLDEN_PRIME } from './common.js';
import { clientLookup, hashedScheduler } from './hashed.js';
import type { SchedDest, SchedulerFactory } from '../core/scheduler.js';

/** IP_VS_SH_TAB_BITS 8. */
export const SH_TAB_SIZE = 256;
const SH_TAB_MASK = SH_TAB_SIZE - 1;

/**
 * ip_vs_sh_reassign as a pure function: walk the list circularly, giving each server
 * `weight` consecutive buckets. A weight-0 server still takes one bucket (the counter is
 * compared after the increment); lookups then find it unavailable.
 */
export function shBuckets<D extends SchedDest>(dests: readonly D[]): (D | null)[] {
  const n = dests.length;
  const buckets = new Array<D | null>(SH_TAB_SIZE).fill(null);
  if (n === 0) return buckets;
  let p = 0;
  let count = 0;
  for (let i = 0; i < SH_TAB_SIZE; i++) {
    const d = dests[p]!;
    buckets[i] = d;
    if (++count >= d.weight) {
      p = p + 1 === n ? 0 : p + 1;
      count = 0;
    }
  }
  return buckets;
}

/** ip_vs_sh_hashkey: `offset` is added after the multiplication, as in the kernel. */
export function shHash(fold: number, port: number, offset: number): number {
  return (offset + Math.imul((port + fold) >>> 0, GOLDEN_PRIME)) & SH_TAB_MASK;
}

/** Source hashing: client address (and optionally port) to a fixed server. */
export const sh: SchedulerFactory = hashedScheduler({
  name: 'sh',
  size: SH_TAB_SIZE,
  build: (svc) => shBuckets(svc.dests),
  lookup: (slots, svc, input) => clientLookup(slots, svc, input, shHash),
});
