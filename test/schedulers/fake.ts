/**
 * A fake virtual service for scheduler tests and benchmarks. It changes its server list
 * exactly as the core table does: a new server is inserted at index 0 and then addDest
 * is called; a removed one is spliced out, marked unavailable, then delDest(dest, index);
 * a weight or threshold change mutates the server, then updDest. lastWeight follows the
 * kernel: set on add, and on update only when the new weight is not 0.
 */
import type { Family } from '../../src/core/types.js';
import type { SchedDest, SchedEnv, SchedInput, SchedService, Scheduler, SchedulerFactory } from '../../src/core/scheduler.js';

/** A real server whose counters the test may change directly. */
export interface FakeDest extends SchedDest {
  /** A label for assertion messages, e.g. "A". */
  readonly name: string;
  af: Family;
  addr: string;
  port: number;
  weight: number;
  lastWeight: number;
  activeconns: number;
  inactconns: number;
  overloaded: boolean;
  available: boolean;
}

export interface DestOptions {
  addr?: string;
  port?: number;
  weight?: number;
  activeconns?: number;
  inactconns?: number;
  overloaded?: boolean;
}

/** Deterministic 32-bit PRNG (mulberry32), for seeded property tests. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** A SchedEnv whose randomness is a seeded PRNG. */
export function seededEnv(seed = 1): SchedEnv {
  return { randomU32: seededRandom(seed) };
}

/** A SchedEnv that replays the given values (then repeats the last one). */
export function replayEnv(values: number[]): SchedEnv {
  let i = 0;
  return { randomU32: () => values[Math.min(i++, values.length - 1)]! >>> 0 };
}

/** IPv4 text of a 32-bit number. */
export function ip4(v: number): string {
  return `${(v >>> 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** A packet for scheduling; unspecified fields get fixed defaults. */
export function packet(p: Partial<SchedInput> = {}): SchedInput {
  return {
    caddr: p.caddr ?? '198.51.100.1',
    cport: p.cport ?? 40000,
    vaddr: p.vaddr ?? '192.0.2.1',
    vport: p.vport ?? 80,
    now: p.now ?? 0,
  };
}

export class FakeService implements SchedService<FakeDest> {
  readonly af: Family;
  schedFlags: number;
  readonly dests: FakeDest[] = [];
  private sched: Scheduler<FakeDest> | null = null;
  private serial = 0;

  constructor(opts: { af?: Family; schedFlags?: number } = {}) {
    this.af = opts.af ?? 4;
    this.schedFlags = opts.schedFlags ?? 0;
  }

  /** Binds a scheduler to this service (kernel init_service). */
  use(factory: SchedulerFactory, env: SchedEnv = seededEnv(1)): Scheduler<FakeDest> {
    this.sched?.done?.();
    this.sched = factory.create(this, env);
    return this.sched;
  }

  get scheduler(): Scheduler<FakeDest> {
    if (this.sched === null) throw new Error('no scheduler bound');
    return this.sched;
  }

  /** Adds a server at the head of the list, like ipvsadm -a. */
  add(name: string, o: DestOptions = {}): FakeDest {
    const k = this.serial++;
    const weight = o.weight ?? 1;
    const d: FakeDest = {
      name,
      af: this.af,
      addr: o.addr ?? (this.af === 4 ? `10.1.${(k >> 8) & 255}.${k & 255}` : `2001:db8::${(k + 1).toString(16)}`),
      port: o.port ?? 8080,
      weight,
      lastWeight: weight,
      activeconns: o.activeconns ?? 0,
      inactconns: o.inactconns ?? 0,
      overloaded: o.overloaded ?? false,
      available: true,
    };
    this.dests.unshift(d);
    this.sched?.addDest?.(d);
    return d;
  }

  /** Removes a server, like ipvsadm -d. */
  remove(d: FakeDest): void {
    const index = this.dests.indexOf(d);
    if (index < 0) throw new Error(`${d.name} is not in the service`);
    this.dests.splice(index, 1);
    d.available = false;
    this.sched?.delDest?.(d, index);
  }

  /** Changes a server's weight, like ipvsadm -e -w. */
  setWeight(d: FakeDest, weight: number): void {
    d.weight = weight;
    if (weight !== 0) d.lastWeight = weight;
    this.sched?.updDest?.(d);
  }

  schedule(p: Partial<SchedInput> = {}): FakeDest | null {
    return this.scheduler.schedule(packet(p));
  }

  /** Names of the next `n` picks ("-" for null), for sequence tables. */
  sequence(n: number, p: Partial<SchedInput> = {}): string[] {
    const out: string[] = [];
    for (let i = 0; i < n; i++) out.push(this.schedule(p)?.name ?? '-');
    return out;
  }
}
