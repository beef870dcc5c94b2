/**
 * The scheduler interface, shaped like the kernel's `struct ip_vs_scheduler` ops
 * (include/net/ip_vs.h): every hook but `schedule` is optional, and a scheduler keeps its
 * per-service state in the instance that `create` returns (the kernel's `sched_data`).
 * The schedulers themselves live in src/schedulers; the table finds them through the
 * SchedulerLookup its owner hands it (the daemon passes src/schedulers' registry).
 */
import type { Family } from './types.js';

/** What a scheduler may read of a real server. */
export interface SchedDest {
  readonly af: Family;
  readonly addr: string;
  readonly port: number;
  /** Current weight; 0 = quiesced (never chosen for a new connection). */
  readonly weight: number;
  /**
   * The last non-zero weight the server was configured with (kernel `last_weight`):
   * mh builds its table from it, so quiescing a server does not reshuffle the table.
   */
  readonly lastWeight: number;
  readonly activeconns: number;
  readonly inactconns: number;
  /** IP_VS_DEST_F_OVERLOAD: connection count reached the upper threshold. */
  readonly overloaded: boolean;
  /** IP_VS_DEST_F_AVAILABLE: false once the server was removed from the service. */
  readonly available: boolean;
}

/** What a scheduler may read of its virtual service. */
export interface SchedService<D extends SchedDest = SchedDest> {
  readonly af: Family;
  /** Bit set of SCHED_FLAG_1..3 (core/types.ts): sh/mh fallback and port hashing. */
  readonly schedFlags: number;
  /**
   * Real servers in the kernel's list order. The kernel inserts a new server at the
   * head of `svc->destinations`, so adding A, B, C gives the order C, B, A. This order
   * decides rr's sequence and every tie-break.
   */
  readonly dests: readonly D[];
}

/** The packet being scheduled: the first packet of a new connection. */
export interface SchedInput {
  /** Client (source) address and port. */
  readonly caddr: string;
  readonly cport: number;
  /** Address and port the client sent to (the VIP; dh and lblc hash this). */
  readonly vaddr: string;
  readonly vport: number;
  /** Milliseconds on the table's clock (lblc/lblcr use it for expiry). */
  readonly now: number;
}

/** Randomness and other environment a scheduler may need, injectable for tests. */
export interface SchedEnv {
  /** Uniform integer in [0, 2^32), like the kernel's get_random_u32(). */
  randomU32(): number;
}

/** One scheduler bound to one virtual service. */
export interface Scheduler<D extends SchedDest = SchedDest> {
  /** A server was inserted at the head of `svc.dests` (kernel add_dest). */
  addDest?(dest: D): void;
  /** A server was removed from `svc.dests`; `index` is where it stood (kernel del_dest). */
  delDest?(dest: D, index: number): void;
  /** A server's weight or thresholds changed (kernel upd_dest). */
  updDest?(dest: D): void;
  /** The service is going away or changing scheduler (kernel done_service). */
  done?(): void;
  /** Periodic housekeeping, e.g. lblc's expiry of idle cache entries. */
  tick?(now: number): void;
  /** Picks a server for a new connection, or null: "no destination available". */
  schedule(input: SchedInput): D | null;
  /**
   * A copy of this instance bound to `svc`, a detached copy of its service, with the same
   * state (position, tables, caches); `map` gives the copy of each server the state refers
   * to. Used to preview a batch (IpvsTable.preview) without touching the live instance.
   * Schedulers whose state `create` rebuilds from the servers alone leave it out: the
   * copy is then a fresh `create` on `svc`.
   */
  clone?(svc: SchedService<D>, map: (d: D) => D): Scheduler<D>;
}

/** A scheduler kind: what the registry holds and the table binds to each service. */
export interface SchedulerFactory {
  /** The name ipvsadm -s uses: rr, wrr, lc, ... */
  readonly name: string;
  /** Binds a new instance to a service (kernel init_service). `svc.dests` may be non-empty. */
  create<D extends SchedDest>(svc: SchedService<D>, env: SchedEnv): Scheduler<D>;
}

/** Finds a scheduler by the name ipvsadm -s uses; undefined when there is none. */
export type SchedulerLookup = (name: string) => SchedulerFactory | undefined;
