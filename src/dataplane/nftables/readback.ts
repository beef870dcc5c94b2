/**
 * The nftables plane's read-back: the kernel's view brought into the core table. nft
 * counters become the conns/packets/bytes counters, conntrack entries (marked with their
 * real server) become the connection table with active/inactive counts and the OVERLOAD
 * flag of -x/-y thresholds, and persistence sets become templates. It runs once a second,
 * or less often when a round costs more than 5% of that time (a big table); listings ask
 * for a fresh round first. Between rounds it follows conntrack's events, so that closes
 * reach the counts at once.
 */
import type { LogFn } from '../../core/log.js';
import type { Conn } from '../../core/conn.js';
import type { Dest, VirtualService } from '../../core/service.js';
import type { IpvsTable } from '../../core/table.js';
import { tcpStateByName } from '../../core/tcpstate.js';
import type { Stats } from '../../core/types.js';
import { CHUNK, conntrackDump, conntrackEvents, yieldLoop, type CtEntry, type CtEvent } from './conntrack.js';
import type { DrPlanner } from './dr-plane.js';
import type { Runner } from './exec.js';
import type { NftModel } from './model.js';
import { famOf, type Fam } from './nat.js';
import { nftCounters, nftPersistElements, type CounterValue, type PersistElement } from './nft.js';
import { connsCounter, inCounter, outCounter, persistSet, QUEUE_SCHEDULERS } from './ruleset.js';

/** How long a connection scheduled through the queue may be missing from conntrack (not confirmed yet) before the read-back drops it. */
const QUEUED_GRACE_MS = 3000;

/** The key of a connection's tuple, shared by conntrack entries, events and first packets. */
export const connKey = (af: number, protocol: string, caddr: string, cport: number, vaddr: string, vport: number) =>
  `${af}|${protocol}|${caddr}|${cport}|${vaddr}|${vport}`;

/** conntrack's TCP states as IPVS names them for a NAT connection. */
const CT_TO_IPVS: Record<string, string> = {
  SYN_SENT: 'SYN_RECV', // the client's SYN was forwarded: IPVS INPUT syn -> SYN_RECV
  SYN_SENT2: 'SYN_RECV',
  SYN_RECV: 'SYN_RECV',
  ESTABLISHED: 'ESTABLISHED',
  FIN_WAIT: 'FIN_WAIT',
  CLOSE_WAIT: 'CLOSE_WAIT',
  LAST_ACK: 'LAST_ACK',
  TIME_WAIT: 'TIME_WAIT',
  CLOSE: 'CLOSE',
  NONE: 'NONE',
};

const ZERO: Stats = { conns: 0, inpkts: 0, outpkts: 0, inbytes: 0, outbytes: 0 };

/** What the read-back needs from the plane that owns it. */
export interface ReadBackDeps {
  run: Runner;
  log: LogFn;
  /** Follow conntrack's events in this network namespace (NftablesOptions.netns). */
  netns: string | undefined;
  model: NftModel;
  dr: DrPlanner;
  /** Read-back period in ms. */
  pollMs: number;
  /** The core table, once the plane has started. */
  table(): IpvsTable | null;
  /** Recompiles services whose servers' OVERLOAD flags changed (a kernel transaction). */
  recompile(svcs: Iterable<VirtualService>, why: string): Promise<void>;
  /** Restarts the first-packet reader if queue-scheduled services need it and it died. */
  reviveQueue(): Promise<void>;
}

/** Reads the kernel's counters, conntrack entries and persistence sets back into the core table. */
export class ReadBack {
  /** Whether conntrack can be read; without it listings stay empty and nothing prunes the mirror. */
  conntrackOk = false;
  private stopped = false;
  private timer: NodeJS.Timeout | null = null;
  private pollRun: Promise<void> | null = null;
  /** Raw kernel counter values at the last -Z, per mark. */
  private readonly baseline = new Map<number, Stats>();
  private readonly lastRaw = new Map<number, Stats>();
  /** Counters of removed servers, kept in their service's totals (kernel svc stats are cumulative). */
  private readonly retired = new Map<string, Stats>();
  /** Mirrored conntrack entries by tuple. */
  private readonly mirrored = new Map<string, Conn>();
  /** Mirrored persistence entries. */
  private readonly templates = new Map<string, Conn>();
  /** Connections scheduled through the queue, by tuple, with when (conntrack shows them once confirmed). */
  private readonly queuedAt = new Map<string, number>();
  /**
   * Keys changed by a decision or a conntrack event since the read-back's dump was taken:
   * that (older) dump must neither drop them nor bring a destroyed one back.
   */
  private readonly touched = new Map<string, { at: number; destroyed: boolean }>();
  /** `conntrack -E`, followed while the first-packet path runs: closes reach the counts before the next read-back. */
  private events: { stop(): void } | null = null;
  /** Marks whose connections were in conntrack at the last round: their counters may still move. */
  private activeMarks = new Set<number>();
  /** Marks of conntrack events since the last round. */
  private eventMarks = new Set<number>();
  /** Read every counter at the next round (events were lost). */
  private readAllCounters = false;
  /** Servers with thresholds whose connections an event changed since the last round (their OVERLOAD flag may have moved). */
  private readonly eventThresholds = new Map<Dest, { svc: VirtualService }>();

  constructor(private readonly deps: ReadBackDeps) {}

  /** Stops polling and following events; a round already running ends without changing the table. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.stopEvents();
  }

  /** Stops following conntrack's events. */
  stopEvents(): void {
    this.events?.stop();
    this.events = null;
  }

  /** Follows conntrack's events (marked entries only): the servers with traffic, and for the first-packet path the closes. */
  startEvents(): void {
    if (!this.conntrackOk || this.events || this.stopped) return;
    this.events = conntrackEvents(
      this.deps.netns,
      (e) => this.onConntrackEvent(e),
      (why) => this.deps.log('warn', `nftables: ${why}; restarting it`),
      {
        // Events were lost: the next round reads every counter.
        onLost: () => (this.readAllCounters = true),
      },
    );
  }

  /** The live connection mirrored under a tuple, if any. */
  mirroredConn(key: string): Conn | undefined {
    return this.mirrored.get(key);
  }

  /** A connection the first-packet path just scheduled: a later round binds it to its conntrack entry by tuple. */
  adoptScheduled(key: string, c: Conn, now: number): void {
    // Without conntrack nothing ever prunes these maps (the read-back does): the core's own expiry ends the connection.
    if (!this.conntrackOk) return;
    this.mirrored.set(key, c);
    this.queuedAt.set(key, now);
    this.touched.set(key, { at: now, destroyed: false });
  }

  /** A server was removed: its counted traffic stays in its service's totals. */
  retire(svcId: string, mark: number): void {
    const raw = this.lastRaw.get(mark);
    if (raw) {
      const base = this.baseline.get(mark) ?? ZERO;
      const r = this.retired.get(svcId) ?? { ...ZERO };
      for (const k of Object.keys(ZERO) as (keyof Stats)[]) r[k] += raw[k] - base[k];
      this.retired.set(svcId, r);
    }
    this.lastRaw.delete(mark);
    this.baseline.delete(mark);
  }

  /** A service was deleted: its removed servers' traffic goes with it. */
  forgetService(svcId: string): void {
    this.retired.delete(svcId);
  }

  /** -Z: the counters of these services start again from the kernel's current values. */
  zero(svcs: Iterable<VirtualService>): void {
    for (const s of svcs) {
      this.retired.delete(s.id);
      for (const d of s.dests) {
        const mark = this.deps.model.markFor(s.id, d.id);
        if (mark !== undefined) this.baseline.set(mark, this.lastRaw.get(mark) ?? { ...ZERO });
      }
    }
  }

  /**
   * The next read-back round in `ms`, or later when the last round was long: a round may
   * take at most 5% of the time between rounds, so that a table of tens of thousands of
   * servers does not keep the director busy reading itself back.
   */
  schedulePoll(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      const t0 = performance.now();
      void this.poll().finally(() => this.schedulePoll(Math.max(this.deps.pollMs, 20 * (performance.now() - t0))));
    }, ms);
    this.timer.unref();
  }

  /**
   * One read-back round: counters, conntrack entries, persistence entries. Resolves when
   * the table reflects the kernel as of this call (a round already running is followed by
   * a new one), so tests and `view()` callers can wait for current numbers.
   */
  poll(): Promise<void> {
    const next = (this.pollRun ?? Promise.resolve()).then(() => this.pollOnce());
    this.pollRun = next.finally(() => {
      if (this.pollRun === tail) this.pollRun = null;
    });
    const tail = this.pollRun;
    return next;
  }

  private async pollOnce(): Promise<void> {
    const table = this.deps.table();
    if (this.stopped || !table) return;
    const { model } = this.deps;
    try {
      // Conntrack first: its entries say which servers carried traffic since the last round.
      const snapshotAt = table.now();
      const entries = this.conntrackOk ? await conntrackDump(this.deps.run) : null;
      if (this.stopped) return;
      const counters = await nftCounters(this.deps.run, entries ? this.activeCounters(entries) : undefined);
      if (model.drModel.size) {
        for (const [k, v] of await this.deps.dr.readBack(table, (s, d) => model.markFor(s, d))) counters.set(k, v);
        if (this.deps.dr.takeOverloadChange()) await this.deps.recompile(model.drServices(), 'threshold');
      }
      if (this.stopped) return;
      this.applyCounters(table, counters);
      const persist = await this.readPersistence();
      if (this.stopped) return;
      this.applyPersistence(table, persist);
      await this.deps.reviveQueue();
      if (entries) {
        // Services where a threshold was crossed: their rules must skip (or take back) that server.
        const crossed = await this.applyConntrack(table, entries, snapshotAt);
        if (crossed.size && !this.stopped) await this.deps.recompile(crossed, 'threshold');
      } else if (model.queuedFrags) {
        // Queue-scheduled connections change OVERLOAD between rounds.
        await this.deps.recompile(model.overloadMoved(), 'threshold');
      }
    } catch (e) {
      this.deps.log('warn', 'nftables read-back failed', { err: (e as Error).message });
    }
  }

  /**
   * The named counters to read this round: those of the servers with conntrack entries now
   * or at the last round (a connection's last packets are counted before its entry goes),
   * or with conntrack events since (a connection refused at once leaves no entry to dump).
   * An idle server's counters do not move, so the cost follows the traffic, not the table:
   * the kernel's dump of named objects restarts its walk for every 32 KiB it returns, which
   * makes a full dump quadratic (11.7 s for 120,000 counters, bench/readback.ts).
   */
  private activeCounters(entries: readonly CtEntry[]): Record<Fam, string[]> | undefined {
    const { owners } = this.deps.model;
    const now = new Set<number>();
    for (const e of entries) if (owners.has(e.mark)) now.add(e.mark);
    const events = this.eventMarks;
    this.eventMarks = new Set();
    if (this.readAllCounters || !this.events) {
      // No events to say which servers moved: every counter, by dump.
      this.readAllCounters = false;
      this.activeMarks = now;
      return undefined;
    }
    const names: Record<Fam, string[]> = { ip: [], ip6: [] };
    for (const mark of new Set([...now, ...this.activeMarks, ...events])) {
      const o = owners.get(mark);
      if (!o || o.dest.fwd === 'route') continue;
      names[famOf(o.svc.af)].push(connsCounter(mark), inCounter(mark), outCounter(mark));
    }
    this.activeMarks = now;
    return names;
  }

  /** The persistence sets' elements, with the service and server each belongs to. */
  private async readPersistence(): Promise<Array<PersistElement & { svc: VirtualService; dest: Dest }>> {
    const owners = new Map<string, { svc: VirtualService; dest: Dest; family: 'ip' | 'ip6' }>();
    for (const [mark, { svc, dest }] of this.deps.model.owners) {
      // Queue-scheduled services keep their templates in the core table (decide), not in
      // sets; a DR server's set lives in netdev tsvs and is not listed (docs/forwarding.md).
      if (!svc.persistent || QUEUE_SCHEDULERS.has(svc.scheduler) || dest.fwd === 'route') continue;
      owners.set(persistSet(mark, svc), { svc, dest, family: famOf(svc.af) });
    }
    const out: Array<PersistElement & { svc: VirtualService; dest: Dest }> = [];
    for (const family of ['ip', 'ip6'] as const) {
      const sets = [...owners].filter(([, o]) => o.family === family).map(([name]) => name);
      if (!sets.length) continue;
      for (const e of await nftPersistElements(this.deps.run, family, sets)) {
        const o = owners.get(e.set);
        if (o) out.push({ ...e, svc: o.svc, dest: o.dest });
      }
    }
    return out;
  }

  /** Mirrors persistence entries as the core's templates (-Lnc, PersistConn). */
  private applyPersistence(t: IpvsTable, elems: Array<PersistElement & { svc: VirtualService; dest: Dest }>): void {
    const now = t.now();
    const seen = new Set<string>();
    for (const e of elems) {
      const key = `tpl|${e.svc.id}|${e.dest.id}|${e.addr}`;
      seen.add(key);
      let c = this.templates.get(key);
      if (c?.dead) c = undefined;
      if (!c) {
        c = t.conns.createTemplate(t.conns.templateKey(e.svc, e.addr), e.svc, e.addr, e.dest, now);
        this.templates.set(key, c);
      }
      c.expires = now + e.expires * 1000;
    }
    for (const [key, c] of this.templates) {
      if (!seen.has(key)) {
        if (!c.dead) t.dropConn(c);
        this.templates.delete(key);
      }
    }
  }

  private applyCounters(t: IpvsTable, counters: Map<string, CounterValue>): void {
    const total = { ...ZERO };
    for (const svc of t.list()) {
      const fam = famOf(svc.af);
      const sum = { ...(this.retired.get(svc.id) ?? ZERO) };
      for (const dest of svc.dests) {
        const mark = this.deps.model.markFor(svc.id, dest.id);
        if (mark === undefined) continue;
        const c = counters.get(`${fam}/${connsCounter(mark)}`);
        const i = counters.get(`${fam}/${inCounter(mark)}`);
        const o = counters.get(`${fam}/${outCounter(mark)}`);
        // Not read this round (idle): as at its last read.
        const raw: Stats | undefined =
          c && i && o
            ? { conns: c.packets, inpkts: i.packets, inbytes: i.bytes, outpkts: o.packets, outbytes: o.bytes }
            : this.lastRaw.get(mark);
        if (!raw) continue;
        this.lastRaw.set(mark, raw);
        const base = this.baseline.get(mark) ?? ZERO;
        const s: Stats = {
          conns: raw.conns - base.conns,
          inpkts: raw.inpkts - base.inpkts,
          inbytes: raw.inbytes - base.inbytes,
          outpkts: raw.outpkts - base.outpkts,
          outbytes: raw.outbytes - base.outbytes,
        };
        dest.stats.set(s);
        for (const k of Object.keys(ZERO) as (keyof Stats)[]) sum[k] += s[k];
      }
      svc.stats.set(sum);
      for (const k of Object.keys(ZERO) as (keyof Stats)[]) total[k] += sum[k];
    }
    t.totals.set(total);
  }

  /** Mirrors conntrack into the core's connection table; returns the services where an OVERLOAD flag changed. */
  private async applyConntrack(t: IpvsTable, entries: CtEntry[], snapshotAt: number): Promise<Set<VirtualService>> {
    const now = t.now();
    const byMark = this.deps.model.owners;
    // The servers with thresholds whose connections this round (or an event since) changed.
    const before = new Map<Dest, { svc: VirtualService }>(this.eventThresholds);
    this.eventThresholds.clear();
    const touch = (svc: VirtualService, dest: Dest | null) => {
      if (dest?.uThreshold && !before.has(dest)) before.set(dest, { svc });
    };
    const seen = new Set<string>();
    // In chunks: decisions of the first-packet path run in between (a large table takes a while).
    let n = 0;
    for (const e of entries) {
      if (++n % CHUNK === 0) await yieldLoop();
      const owner = byMark.get(e.mark);
      if (!owner?.svc.dests.includes(owner.dest)) continue;
      const key = connKey(e.af, e.protocol, e.caddr, e.cport, e.vaddr, e.vport);
      seen.add(key);
      this.queuedAt.delete(key);
      const tch = this.touched.get(key);
      if (tch && tch.at >= snapshotAt) {
        // Newer than the dump: an event or a decision already said more (or that it is gone).
        if (tch.destroyed || this.mirrored.get(key)?.dead === false) continue;
      }
      let c = this.mirrored.get(key);
      if (c && (c.dead || c.dest !== owner.dest)) {
        if (!c.dead) {
          touch(c.svc, c.dest);
          t.dropConn(c);
        }
        c = undefined;
      }
      touch(owner.svc, owner.dest);
      if (!c) {
        c = t.conns.create(e.protocol, e.af, e.caddr, e.cport, e.vaddr, e.vport, e.daddr, e.dport, owner.svc, owner.dest, 0, now);
        this.mirrored.set(key, c);
      }
      if (e.protocol === 'tcp') t.conns.setTcpState(c, tcpStateByName(CT_TO_IPVS[e.state] ?? 'NONE'));
      // conntrack owns the lifetime; the core's own expiry only acts if the read-back stops.
      c.timeoutMs = e.timeout * 1000;
      c.expires = now + c.timeoutMs;
    }
    for (const [key, c] of this.mirrored) {
      if (++n % CHUNK === 0) await yieldLoop();
      const q = this.queuedAt.get(key);
      if (q !== undefined) {
        // Scheduled through the queue and not in conntrack yet: confirmed soon, or never (dropped).
        if (now - q < QUEUED_GRACE_MS && !c.dead) continue;
        this.queuedAt.delete(key);
      }
      if (!seen.has(key)) {
        if ((this.touched.get(key)?.at ?? -1) >= snapshotAt && !c.dead) continue; // made after the dump
        if (!c.dead) {
          touch(c.svc, c.dest);
          t.dropConn(c);
        }
        this.mirrored.delete(key);
      }
    }
    for (const [key, tch] of this.touched) if (tch.at < snapshotAt) this.touched.delete(key);
    const crossed = new Set<VirtualService>();
    for (const { svc } of before.values()) if (this.deps.model.compiledOverloadDiffers(svc)) crossed.add(svc);
    return crossed;
  }

  /**
   * A conntrack state change or end of a connection the table holds, applied at once so
   * that lc/wlc/... see a closed connection as inactive before the next read-back (kernel
   * IPVS sees every packet). Entries the table does not hold yet wait for the read-back.
   */
  private onConntrackEvent(ev: CtEvent): void {
    const t = this.deps.table();
    if (!t || this.stopped) return;
    const { model } = this.deps;
    const e = ev.entry;
    // Its counters moved (also for a connection that ends before the next dump sees it).
    if (model.owners.has(e.mark)) this.eventMarks.add(e.mark);
    const key = connKey(e.af, e.protocol, e.caddr, e.cport, e.vaddr, e.vport);
    const c = this.mirrored.get(key);
    if (!c || c.dead || !c.dest || model.markFor(c.svc.id, c.dest.id) !== e.mark) return;
    this.touched.set(key, { at: t.now(), destroyed: ev.kind === 'destroy' });
    if (c.dest.uThreshold) this.eventThresholds.set(c.dest, { svc: c.svc });
    if (ev.kind === 'destroy') {
      t.dropConn(c);
      this.mirrored.delete(key);
      this.queuedAt.delete(key);
      return;
    }
    if (e.protocol === 'tcp') t.conns.setTcpState(c, tcpStateByName(CT_TO_IPVS[e.state] ?? 'NONE'));
    c.timeoutMs = e.timeout * 1000;
    c.expires = t.now() + c.timeoutMs;
  }
}
