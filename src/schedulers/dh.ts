/**
 * dh - destination hashing (ip_vs_dh.c): a static 256-bucket table maps the address the
 * client sent to (the virtual address; interesting with fwmark services that catch many
 * destinations, e.g. cache clusters) to a server. Buckets are dealt round robin, one per
 * server per lap, regardless of weight; the weight only decides 0 = unavailable.
 */
import { foldAddr, GOLDEN_PRIME, usable } from './common.js';
import { hashedScheduler } from './hashed.js';
import type { SchedDest, SchedulerFactory } from '../core/scheduler.js';

/** IP_VS_DH_TAB_BITS 8. */
export const DH_TAB_SIZE = 256;
const DH_TAB_MASK = DH_TAB_SIZE - 1;

/** ip_vs_dh_reassign as a pure function: bucket i goes to server i mod n. */
export function dhBuckets<D extends SchedDest>(dests: readonly D[]): (D | null)[] {
  const n = dests.length;
  const buckets = new Array<D | null>(DH_TAB_SIZE).fill(null);
  if (n === 0) return buckets;
  for (let i = 0; i < DH_TAB_SIZE; i++) buckets[i] = dests[i % n]!;
  return buckets;
}

/** Destination hashing: virtual (destination) address to a fixed server. */
export const dh: SchedulerFactory = hashedScheduler({
  name: 'dh',
  size: DH_TAB_SIZE,
  build: (svc) => dhBuckets(svc.dests),
  lookup(slots, _svc, input) {
    const dest = slots[Math.imul(foldAddr(input.vaddr), GOLDEN_PRIME) & DH_TAB_MASK] ?? null;
    // dh, unlike sh and mh, also checks that the server is still in the service, as the kernel does.
    return dest?.available && usable(dest) ? dest : null;
  },
});
