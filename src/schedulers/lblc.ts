/**
 * lblc - locality-based least connection (ip_vs_lblc.c). Meant for cache clusters
 * behind a fwmark service that catches many destination addresses: requests for the
 * same destination (the virtual address the client sent to) go to the same server, so
 * its cache stays hot, until that server is overloaded while another is under half
 * load; then weighted least connection picks a new one and the cache entry moves.
 *
 * Entries idle for a long time are collected by a periodic check, which the kernel runs
 * from a timer and we run from tick(now): every 60 s; every 30th run removes entries
 * idle for lblc_expiration (24 h), the others only act when the table holds more than
 * 16384 entries and then drop entries idle for 6 minutes.
 *
 * One deliberate deviation: the kernel returns a cached server without looking at
 * IP_VS_DEST_F_OVERLOAD (the -x upper threshold), so lblc can exceed a threshold. We
 * treat an overloaded cached server like a quiesced one and reschedule, so that no
 * scheduler in tsvs picks an overloaded server.
 */
import { foldAddr, localityOverloaded, mulHash, usable, wlcPick } from './common.js';
import type { SchedDest, SchedInput, SchedService, Scheduler, SchedulerFactory } from '../core/scheduler.js';

/** CHECK_EXPIRE_INTERVAL: how often the garbage collector runs (ms). */
const CHECK_EXPIRE_INTERVAL = 60 * 1000;
/** ENTRY_TIMEOUT: idle time after which an entry may go when the table is too big (ms). */
const ENTRY_TIMEOUT = 6 * 60 * 1000;
/** DEFAULT_EXPIRATION: default of the lblc_expiration / lblcr_expiration sysctls (ms). */
export const DEFAULT_EXPIRATION = 24 * 60 * 60 * 1000;
/** COUNT_FOR_FULL_EXPIRATION: every this many runs, a full expiration check. */
const COUNT_FOR_FULL_EXPIRATION = 30;
/** CONFIG_IP_VS_LBLC_TAB_BITS (also lblcr's). */
export const LBLC_TAB_BITS = 10;
/** Buckets of the kernel's cache hash table; the collector walks them in order. */
const LBLC_TAB_SIZE = 1 << LBLC_TAB_BITS;
const LBLC_TAB_MASK = LBLC_TAB_SIZE - 1;
/** tbl->max_size: above this many entries the periodic check starts collecting. */
export const LBLC_MAX_SIZE = LBLC_TAB_SIZE * 16;

/** What the expiry machinery needs of an entry of lblc's or lblcr's table. */
export interface CacheEntry {
  /** Bucket of the kernel's hash table; decides the order in which the collector walks. */
  readonly bucket: number;
  lastuse: number;
}

/**
 * The periodic check shared by lblc and lblcr (ip_vs_lblc_check_expire and
 * ip_vs_lblcr_check_expire are the same code): timer, run counter and bucket rover.
 */
class CacheExpiry<E extends CacheEntry> {
  /** Number of runs since the last full check; starts at 1 as in init_svc. */
  private counter = 1;
  /** Bucket where the last partial collection stopped. */
  private rover = 0;
  /** When the timer fires next; armed on the first time we learn (tick or schedule). */
  private next = -1;

  constructor(
    private readonly entries: Map<string, E>,
    private readonly expiration: number,
  ) {}

  /** Takes over another collector's timer, run counter and rover (for a scheduler's clone). */
  copyFrom(o: CacheExpiry<CacheEntry>): void {
    this.counter = o.counter;
    this.rover = o.rover;
    this.next = o.next;
  }

  /** Arms the timer the first time the table's clock is seen (kernel: at init_svc). */
  arm(now: number): void {
    if (this.next < 0) this.next = now + CHECK_EXPIRE_INTERVAL;
  }

  /**
   * Runs the check if the timer is due. A late timer fires once and is re-armed from
   * the time it ran (mod_timer(jiffies + interval)), it does not catch up.
   */
  tick(now: number): void {
    if (this.next < 0) {
      this.arm(now);
      return;
    }
    if (now < this.next) return;
    this.run(now);
    this.next = now + CHECK_EXPIRE_INTERVAL;
  }

  private run(now: number): void {
    if (this.counter % COUNT_FOR_FULL_EXPIRATION === 0) {
      // Full check: drop everything idle for the sysctl expiration. The rover makes a
      // whole lap and ends where it started.
      for (const [key, en] of this.entries) {
        if (!(now < en.lastuse + this.expiration)) this.entries.delete(key);
      }
      this.counter = 1;
      return;
    }
    if (this.entries.size <= LBLC_MAX_SIZE) {
      this.counter++;
      return;
    }
    // Table too big: drop entries idle for ENTRY_TIMEOUT, bucket by bucket from the
    // rover, until 4/3 of the excess (at most half the maximum) is gone. The goal is
    // only checked between buckets, as in the kernel.
    let goal = Math.trunc(((this.entries.size - LBLC_MAX_SIZE) * 4) / 3);
    if (goal > LBLC_MAX_SIZE / 2) goal = LBLC_MAX_SIZE / 2;
    const buckets: Array<Array<[string, E]> | undefined> = new Array(LBLC_TAB_SIZE);
    for (const kv of this.entries) (buckets[kv[1].bucket] ??= []).push(kv);
    let j = this.rover;
    for (let i = 0; i < LBLC_TAB_SIZE; i++) {
      j = (j + 1) & LBLC_TAB_MASK;
      for (const [key, en] of buckets[j] ?? []) {
        if (now < en.lastuse + ENTRY_TIMEOUT) continue;
        this.entries.delete(key);
        goal--;
      }
      if (goal <= 0) break;
    }
    this.rover = j;
  }
}

/**
 * What lblc and lblcr share: the cache of destination addresses (the kernel's hash table,
 * here keyed by the canonical virtual address), its periodic expiry, and the `dead` flag.
 */
export abstract class LocalityCache<D extends SchedDest, E extends CacheEntry> implements Scheduler<D> {
  protected readonly entries = new Map<string, E>();
  protected readonly expiry: CacheExpiry<E>;
  /** Set by done(), like tbl->dead: no new entries once the table is being flushed. */
  protected dead = false;

  constructor(
    protected readonly svc: SchedService<D>,
    protected readonly expiration: number,
  ) {
    this.expiry = new CacheExpiry(this.entries, expiration);
  }

  /** Number of cached destinations (for tests and listings). */
  get size(): number {
    return this.entries.size;
  }

  tick(now: number): void {
    this.expiry.tick(now);
  }

  done(): void {
    this.dead = true;
    this.entries.clear();
  }

  abstract schedule(input: SchedInput): D | null;

  /** Gives `c`, a new instance for a clone, a copy of this cache (`copy` copies one entry) and of its expiry state. */
  protected copyInto<C extends LocalityCache<D, E>>(c: C, copy: (en: E) => E): C {
    // Same insertion order, so the full collection walks the copy as it walks the original.
    for (const [k, en] of this.entries) c.entries.set(k, copy(en));
    c.expiry.copyFrom(this.expiry);
    c.dead = this.dead;
    return c;
  }
}

interface LblcEntry<D> extends CacheEntry {
  dest: D;
}

class LocalityLeastConnection<D extends SchedDest> extends LocalityCache<D, LblcEntry<D>> {
  clone(svc: SchedService<D>, map: (d: D) => D): LocalityLeastConnection<D> {
    return this.copyInto(new LocalityLeastConnection(svc, this.expiration), (en) => ({
      bucket: en.bucket,
      lastuse: en.lastuse,
      dest: map(en.dest),
    }));
  }

  schedule(input: SchedInput): D | null {
    const dests = this.svc.dests;
    const now = input.now;
    this.expiry.arm(now);
    const en = this.entries.get(input.vaddr);
    if (en !== undefined) {
      // Touched even when the cached server turns out to be unusable.
      en.lastuse = now;
      const d = en.dest;
      // available: a removed server may still be referenced here (the kernel keeps it
      // in the trash); it only counts again if it is re-added as the same object.
      if (d.available && usable(d) && !localityOverloaded(d, dests)) return d;
    }
    const dest = wlcPick(dests);
    if (dest === null) return null;
    if (!this.dead) {
      if (en !== undefined) {
        // ip_vs_lblc_new replaces the entry; same key, so same bucket.
        if (en.dest !== dest) {
          en.dest = dest;
          en.lastuse = now;
        }
      } else {
        const bucket = mulHash(foldAddr(input.vaddr)) & LBLC_TAB_MASK;
        this.entries.set(input.vaddr, { bucket, lastuse: now, dest });
      }
    }
    return dest;
  }
}

/** Builds an lblc factory with a given lblc_expiration (ms); `lblc` uses the default. */
export function lblcWith(expiration: number): SchedulerFactory {
  return {
    name: 'lblc',
    create<D extends SchedDest>(svc: SchedService<D>): Scheduler<D> {
      return new LocalityLeastConnection(svc, expiration);
    },
  };
}

/** Locality-based least connection: sticky per destination address, wlc to pick. */
export const lblc: SchedulerFactory = lblcWith(DEFAULT_EXPIRATION);
