/**
 * lblcr - locality-based least connection with replication (ip_vs_lblcr.c). Like lblc,
 * but a destination address maps to a *set* of servers: the least loaded member serves
 * it; when that one is overloaded (lblc's rule) a wlc choice over all servers joins the
 * set. A set that has not changed for lblcr_expiration (24 h) sheds its most loaded
 * member on the next request, so replication shrinks back when the load goes.
 *
 * Expiry of whole entries is the same periodic check as lblc's (see lblc.ts).
 */
import { connOverhead, foldAddr, hash32, leastLoaded, localityOverloaded, wlcPick } from './common.js';
import { DEFAULT_EXPIRATION, LBLC_TAB_BITS, LocalityCache } from './lblc.js';
import type { CacheEntry } from './lblc.js';
import type { SchedDest, SchedInput, SchedService, Scheduler, SchedulerFactory } from '../core/scheduler.js';

interface LblcrEntry<D> extends CacheEntry {
  /** The server set, newest first (list_add_rcu inserts at the head). */
  readonly set: D[];
  /** Last time the set gained or lost a member. */
  lastmod: number;
}

/** ip_vs_dest_set_min: weighted least connection among the members still in the service. */
function setMin<D extends SchedDest>(set: readonly D[]): D | null {
  return leastLoaded(set, 'conn', 'in-service', true);
}

/**
 * ip_vs_dest_set_max: the weighted most loaded member with weight > 0; ties go to the
 * earlier member. Overload and availability are not considered: a removed server is a
 * fine candidate to shed.
 */
function setMax<D extends SchedDest>(set: readonly D[]): D | null {
  let most: D | null = null;
  let moh = 0;
  let mw = 0;
  for (let i = 0; i < set.length; i++) {
    const d = set[i]!;
    if (d.weight <= 0) continue;
    const doh = connOverhead(d);
    // moh/mw < doh/dw  <=>  moh*dw < doh*mw, for mw, dw > 0
    if (most === null || moh * d.weight < doh * mw) {
      most = d;
      moh = doh;
      mw = d.weight;
    }
  }
  return most;
}

class LocalityReplicated<D extends SchedDest> extends LocalityCache<D, LblcrEntry<D>> {
  clone(svc: SchedService<D>, map: (d: D) => D): LocalityReplicated<D> {
    return this.copyInto(new LocalityReplicated(svc, this.expiration), (en) => ({
      bucket: en.bucket,
      lastuse: en.lastuse,
      lastmod: en.lastmod,
      set: en.set.map(map),
    }));
  }

  /** The server set of a destination address, newest first (for tests and listings). */
  serverSet(vaddr: string): readonly D[] | undefined {
    return this.entries.get(vaddr)?.set;
  }

  schedule(input: SchedInput): D | null {
    const dests = this.svc.dests;
    const now = input.now;
    this.expiry.arm(now);
    const en = this.entries.get(input.vaddr);
    if (en !== undefined) {
      en.lastuse = now;
      let dest = setMin(en.set);
      // Shed the most loaded member of a set that has been stable for long enough. This
      // happens after the choice above, so the server just chosen may be the one shed.
      if (en.set.length > 1 && now > en.lastmod + this.expiration) {
        const m = setMax(en.set);
        if (m !== null) {
          en.set.splice(en.set.indexOf(m), 1);
          en.lastmod = now;
        }
      }
      if (dest !== null && !localityOverloaded(dest, dests)) return dest;
      dest = wlcPick(dests);
      if (dest === null) return null;
      if (!this.dead && !en.set.includes(dest)) {
        en.set.unshift(dest);
        en.lastmod = now;
      }
      return dest;
    }
    const dest = wlcPick(dests);
    if (dest === null) return null;
    if (!this.dead) {
      const bucket = hash32(foldAddr(input.vaddr), LBLC_TAB_BITS);
      this.entries.set(input.vaddr, { bucket, lastuse: now, lastmod: now, set: [dest] });
    }
    return dest;
  }
}

/** Builds an lblcr factory with a given lblcr_expiration (ms); `lblcr` uses the default. */
export function lblcrWith(expiration: number): SchedulerFactory {
  return {
    name: 'lblcr',
    create<D extends SchedDest>(svc: SchedService<D>): Scheduler<D> {
      return new LocalityReplicated(svc, expiration);
    },
  };
}

/** Locality-based least connection with replication: per-destination server sets. */
export const lblcr: SchedulerFactory = lblcrWith(DEFAULT_EXPIRATION);
