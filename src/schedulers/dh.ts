/**
 * dh - destination hashing (ip_vs_dh.c): a static 256-bucket table maps the address the
 * client sent to (the virtual address; interesting with fwmark services that catch many
 * destinations, e.g. cache clusters) to a server. Buckets are dealt round robin, one per
 * server per lap, regardless of weight; the weight only decides 0 = unavailable.
 */
import { foldAddr, GOLDEN_PRIME } from './common.js';
import type { SchedDest, SchedInput, SchedService, Scheduler, SchedulerFactory } from '../core/scheduler.js';

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

class DestinationHashing<D extends SchedDest> implements Scheduler<D> {
  private buckets: (D | null)[];

  constructor(
    private readonly svc: SchedService<D>,
    buckets?: (D | null)[],
  ) {
    this.buckets = buckets ?? dhBuckets(svc.dests);
  }

  clone(svc: SchedService<D>, map: (d: D) => D): DestinationHashing<D> {
    return new DestinationHashing(svc, this.buckets.map((d) => (d === null ? null : map(d))));
  }

  private reassign(): void {
    this.buckets = dhBuckets(this.svc.dests);
  }

  addDest(): void {
    this.reassign();
  }

  delDest(): void {
    this.reassign();
  }

  updDest(): void {
    this.reassign();
  }

  done(): void {
    this.buckets = new Array<D | null>(DH_TAB_SIZE).fill(null);
  }

  schedule(input: SchedInput): D | null {
    const hash = Math.imul(foldAddr(input.vaddr), GOLDEN_PRIME) & DH_TAB_MASK;
    const dest = this.buckets[hash] ?? null;
    if (dest === null || !dest.available || dest.weight <= 0 || dest.overloaded) return null;
    return dest;
  }
}

/** Destination hashing: virtual (destination) address to a fixed server. */
export const dh: SchedulerFactory = {
  name: 'dh',
  create<D extends SchedDest>(svc: SchedService<D>): Scheduler<D> {
    return new DestinationHashing(svc);
  },
};
