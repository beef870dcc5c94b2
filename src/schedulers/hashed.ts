/**
 * What sh, dh and mh share: a lookup table of servers built from the server list alone,
 * rebuilt on every add, delete and update (the kernel's ip_vs_sh_reassign,
 * ip_vs_dh_reassign and ip_vs_mh_dest_changed), emptied by done(), and copied slot for
 * slot by clone() (cheaper than a rebuild, and it keeps a table the kernel would have
 * kept). Each scheduler says how its table is built and how a packet is looked up.
 */
import { SCHED_FLAG_1, SCHED_FLAG_2 } from '../core/types.js';
import { foldAddr, usable } from './common.js';
import type { SchedDest, SchedInput, SchedService, Scheduler, SchedulerFactory } from '../core/scheduler.js';

/** The part of a hashing scheduler that is its own. */
export interface HashedKind {
  readonly name: string;
  /** Number of slots. */
  readonly size: number;
  /** The table for the service's servers, or null to keep the current one (mh with too many servers). */
  build<D extends SchedDest>(svc: SchedService<D>): (D | null)[] | null;
  /** The server for a packet, or null: "no destination available". */
  lookup<D extends SchedDest>(slots: readonly (D | null)[], svc: SchedService<D>, input: SchedInput): D | null;
}

class HashedScheduler<D extends SchedDest> implements Scheduler<D> {
  private slots: (D | null)[];

  constructor(
    private readonly kind: HashedKind,
    private readonly svc: SchedService<D>,
    slots?: (D | null)[],
  ) {
    this.slots = slots ?? kind.build(svc) ?? this.empty();
  }

  private empty(): (D | null)[] {
    return new Array<D | null>(this.kind.size).fill(null);
  }

  clone(svc: SchedService<D>, map: (d: D) => D): HashedScheduler<D> {
    return new HashedScheduler(
      this.kind,
      svc,
      this.slots.map((d) => (d === null ? null : map(d))),
    );
  }

  private rebuild(): void {
    this.slots = this.kind.build(this.svc) ?? this.slots;
  }

  addDest(): void {
    this.rebuild();
  }

  delDest(): void {
    this.rebuild();
  }

  updDest(): void {
    this.rebuild();
  }

  done(): void {
    this.slots = this.empty();
  }

  schedule(input: SchedInput): D | null {
    return this.kind.lookup(this.slots, this.svc, input);
  }
}

/** The scheduler factory of a hashing scheduler. */
export function hashedScheduler(kind: HashedKind): SchedulerFactory {
  return {
    name: kind.name,
    create<D extends SchedDest>(svc: SchedService<D>): Scheduler<D> {
      return new HashedScheduler(kind, svc);
    },
  };
}

/**
 * The client lookup of sh and mh: the slot `slotOf(fold, port, 0)` for the client's
 * address (and, with flag-2, port). When that server is not usable and the service has
 * flag-1 (sh-fallback / mh-fallback), the slots `slotOf(fold, port, (ihash + k) mod size)`
 * for k = 0, 1, ... are probed in turn, so the replacement is deterministic for the client
 * too; an empty slot ends the probe.
 */
export function clientLookup<D extends SchedDest>(
  slots: readonly (D | null)[],
  svc: SchedService<D>,
  input: SchedInput,
  slotOf: (fold: number, port: number, offset: number) => number,
): D | null {
  const flags = svc.schedFlags;
  const fold = foldAddr(input.caddr);
  const port = flags & SCHED_FLAG_2 ? input.cport : 0;
  const ihash = slotOf(fold, port, 0);
  const dest = slots[ihash] ?? null;
  if (dest === null) return null;
  if (usable(dest)) return dest;
  if (!(flags & SCHED_FLAG_1)) return null;
  const size = slots.length;
  for (let offset = 0; offset < size; offset++) {
    const d = slots[slotOf(fold, port, (offset + ihash) % size)] ?? null;
    if (d === null) break;
    if (usable(d)) return d;
  }
  return null;
}
