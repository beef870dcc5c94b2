/**
 * IpvsTable: the director's whole table, pure and I/O-free. It validates and applies the
 * operations of ipvsadm's surface (atomically, in batches), schedules new connections with
 * persistence, keeps the connection table and counters, and runs expiry and the rate
 * estimator when its owner calls `tick`. The daemon and the data planes drive it.
 */
import { familyOf, maskAddr } from './addr.js';
import { ConnTable, mergeTimeouts, CONN_F_ONE_PACKET, CONN_F_NOOUTPUT, CONN_F_SYNC, type Conn } from './conn.js';
import { TsvsError } from './errors.js';
import { type Dest, VirtualService, serviceId, serviceKeyOf } from './service.js';
import { ESTIMATOR_INTERVAL_MS, StatsBlock } from './stats.js';
import { SyncedConns, type SyncedEntry, type SyncImportMiss } from './synced.js';
import { TCP_DEFAULT_TIMEOUTS, UDP_DEFAULT_TIMEOUT, type TcpDir, type TcpFlag } from './tcpstate.js';
import type { ConnView, Op, ServiceKey, TableConfig, TableView, Timeouts } from './types.js';
import { validateBatch } from './validate.js';
import type { SchedInput, SchedulerLookup } from './scheduler.js';

/** The version and connection hash size kernel IPVS reports in the listing header. */
export const IPVS_VERSION = '1.2.1';
export const IPVS_CONN_TAB_SIZE = 4096;

export type TableEvent =
  | { type: 'service-added' | 'service-edited' | 'service-deleted'; svc: VirtualService }
  | { type: 'dest-added' | 'dest-edited' | 'dest-deleted'; svc: VirtualService; dest: Dest }
  | { type: 'zeroed'; svc: VirtualService | null }
  | { type: 'timeouts'; timeouts: Timeouts };

/**
 * What a batch will change (IpvsTable.preview), for a data plane that must put the batch
 * into effect before the table applies it.
 */
export interface BatchPreview {
  /**
   * The batch contains a flush: every service of the table that `services` does not list
   * is gone afterwards.
   */
  flushed: boolean;
  /**
   * Each service the batch adds, edits, deletes or changes the servers of, by serviceId,
   * in the order the batch first touches it. The value is a detached copy of the service
   * as it will be after the batch: configuration, servers in kernel list order with
   * weight, lastWeight, overloaded, fwd, thresholds and connection counts, and a
   * scheduler in the state the live one will have (e.g. wrr's position: wrrSnapshot
   * works on it). Copies share nothing with the table, emit nothing, and may be used
   * freely (even to schedule on). null: the service does not exist after the batch.
   * Services only zeroed (-Z) are not listed.
   */
  services: Map<string, VirtualService | null>;
  /**
   * Ids of the services the batch creates (or deletes and creates again) and that exist
   * after it, in the order the table will list them: after every service it keeps.
   */
  added: Set<string>;
  /** The connection timeouts after the batch, when it sets them (--set). */
  timeouts?: Timeouts;
}

/** Where exec finds the services it changes, and what it does beside changing them. */
interface ApplySpace {
  /** The service as the batch has it so far (validated ops name only existing ones). */
  get(id: string): VirtualService;
  /** A new service. */
  put(svc: VirtualService): void;
  delete(id: string): void;
  flush(): void;
  /** Persistence templates of `dest` (or, without it, of `svc`) stop matching new clients. */
  retire(svc: VirtualService, dest?: Dest): void;
  /** -Z of one service (by id), or of everything (null); returns the service zeroed. */
  zero(id: string | null): VirtualService | null;
  setTimeouts(t: Timeouts): void;
  emit(ev: TableEvent): void;
}

export interface TableListener {
  /** One change, in the order applied. */
  change?(ev: TableEvent): void;
  /** A batch finished applying; `ops` is what was applied. */
  commit?(ops: readonly Op[]): void;
  /** A connection entry expired; a data plane closes whatever it still holds for it. */
  connExpired?(c: Conn): void;
  /**
   * A closed entry is about to leave its Conn object for a compact row (connClosed): the
   * last moment it can be read as a Conn, e.g. by a sync master that sends its final
   * state (TIME_WAIT), which its periodic walk over `conns.all()` would no longer see.
   */
  connClosing?(c: Conn): void;
}

export interface TableOptions {
  /**
   * Where the table finds the scheduler a service names (src/schedulers' getScheduler in
   * the daemon). A name it does not know is refused as ipvsadm refuses it.
   */
  schedulers: SchedulerLookup;
  /** Milliseconds, monotonic. Defaults to performance.now(). */
  now?: () => number;
  /** Uniform 32-bit random numbers for twos. */
  randomU32?: () => number;
  /** sysctl expire_quiescent_template: a template pointing at a weight-0 server is dropped when used. */
  expireQuiescentTemplate?: boolean;
}

/** A packet that may start a new connection. */
export interface NewConnInput {
  /** The packet's protocol; defaults to the service's (fwmark services carry any). */
  protocol?: 'tcp' | 'udp' | 'sctp';
  caddr: string;
  cport: number;
  vaddr: string;
  vport: number;
}

export class IpvsTable {
  private readonly services = new Map<string, VirtualService>();
  private readonly listeners = new Set<TableListener>();
  readonly conns: ConnTable;
  /** Totals over every service (/proc/net/ip_vs_stats). */
  readonly totals = new StatsBlock();
  readonly now: () => number;
  private readonly lookupScheduler: SchedulerLookup;
  private readonly randomU32: () => number;
  expireQuiescentTemplate: boolean;
  private lastEstimate: number;
  /** What importSynced created, indexed. */
  private readonly synced: SyncedConns;

  constructor(opts: TableOptions) {
    this.now = opts.now ?? (() => performance.now());
    this.lookupScheduler = opts.schedulers;
    this.randomU32 = opts.randomU32 ?? (() => Math.floor(Math.random() * 0x1_0000_0000));
    this.expireQuiescentTemplate = opts.expireQuiescentTemplate ?? false;
    this.conns = new ConnTable(
      {
        expired: (c) => {
          if (c.flags & CONN_F_SYNC) this.synced.forget(c);
          this.emit((l) => l.connExpired?.(c));
        },
      },
      TCP_DEFAULT_TIMEOUTS,
      UDP_DEFAULT_TIMEOUT,
    );
    this.synced = new SyncedConns(this);
    this.lastEstimate = this.now();
  }

  subscribe(l: TableListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  private emit(f: (l: TableListener) => void): void {
    for (const l of this.listeners) f(l);
  }

  // ------------------------------------------------------------------ queries

  /** Services in creation order. */
  list(): VirtualService[] {
    return [...this.services.values()];
  }

  get(k: ServiceKey): VirtualService | undefined {
    return this.services.get(serviceId(serviceKeyOf(k)));
  }

  /** The service a packet to vaddr:vport belongs to, the way ip_vs_service_find looks it up. */
  lookup(protocol: 'tcp' | 'udp' | 'sctp', vaddr: string, vport: number): VirtualService | undefined {
    const af = familyOf(vaddr) ?? 4;
    return (
      this.services.get(serviceId({ af, protocol, addr: vaddr, port: vport, fwmark: 0 })) ??
      // A port-zero (persistent) service catches every port of its address.
      this.services.get(serviceId({ af, protocol, addr: vaddr, port: 0, fwmark: 0 }))
    );
  }

  timeouts(): Timeouts {
    return this.conns.timeouts();
  }

  config(): TableConfig {
    return {
      services: this.list().map((s) => ({ ...s.config(), dests: s.dests.map((d) => d.config()) })),
      timeouts: this.timeouts(),
    };
  }

  view(): TableView {
    return {
      version: IPVS_VERSION,
      size: IPVS_CONN_TAB_SIZE,
      services: this.list().map((s) => s.view()),
      timeouts: this.timeouts(),
      stats: this.totals.snapshot(),
      rates: this.totals.rates(),
    };
  }

  /** The connection table as ipvsadm -Lnc lists it. */
  connView(): ConnView[] {
    return this.conns.view(this.now());
  }

  /** The entries of one service, or of one of its real servers, without a walk over the others. */
  connViewOf(svc: VirtualService, dest?: Dest): ConnView[] {
    return this.conns.viewOf(svc, dest, this.now());
  }

  /** The service whose serviceId is `id`. */
  getById(id: string): VirtualService | undefined {
    return this.services.get(id);
  }

  // ------------------------------------------------------------------ mutations

  /** Applies one operation; throws TsvsError and changes nothing if it is invalid. */
  apply(op: Op): void {
    this.applyAll([op]);
  }

  /**
   * Applies operations as one transaction: all are validated against the table as it
   * would be after the ones before them, and only then applied. Invalid input throws a
   * TsvsError naming the operation's object, and leaves the table unchanged.
   */
  applyAll(ops: readonly Op[]): void {
    const normalized = this.validate(ops);
    for (const op of normalized) this.exec(op, this.live);
    this.emit((l) => l.commit?.(normalized));
  }

  /** Checks and canonicalizes a batch without applying it (see validateBatch). */
  validate(ops: readonly Op[]): Op[] {
    return validateBatch(ops, this.services, (name) => this.lookupScheduler(name) !== undefined);
  }

  /**
   * What a batch will change, computed by the code that applies it (`exec`), run on
   * detached copies of the services it touches; the table does not change and no event
   * is emitted. `ops` must be what `validate` returned for the table as it is now (a
   * data plane's `prepare` gets exactly that). Costs the touched services and their
   * servers, not the table. See BatchPreview.
   */
  preview(ops: readonly Op[]): BatchPreview {
    const out: BatchPreview = { flushed: false, services: new Map(), added: new Set() };
    const space: ApplySpace = {
      get: (id) => {
        let svc = out.services.get(id);
        if (svc === undefined && !out.flushed) {
          const live = this.services.get(id);
          if (live) out.services.set(id, (svc = live.clone((copy) => this.bindScheduler(copy))));
        }
        if (!svc)
          throw new TsvsError(
            'INTERNAL',
            `preview: ${id} does not exist at this point of the batch; was the batch validated against this table?`,
          );
        return svc;
      },
      put: (svc) => {
        out.services.set(svc.id, svc);
        out.added.add(svc.id);
      },
      delete: (id) => {
        // Nothing to copy: the answer is "gone".
        if (!out.services.get(id) && (out.flushed || !this.services.has(id))) space.get(id);
        out.services.set(id, null);
        out.added.delete(id);
      },
      flush: () => {
        out.flushed = true;
        out.services.clear();
        out.added.clear();
      },
      retire: () => {},
      zero: () => null,
      setTimeouts: (t) => {
        out.timeouts = mergeTimeouts(out.timeouts ?? this.timeouts(), t);
      },
      emit: () => {},
    };
    for (const op of ops) this.exec(op, space);
    return out;
  }

  /**
   * The services as `list()` will give them once the previewed batch is applied: the
   * table's order, with the preview's copies in place of what the batch changes. Costs the
   * table (for a plane that rebuilds its whole model); `p` must be a preview of this table
   * as it is now.
   */
  listAfter(p: BatchPreview): VirtualService[] {
    const out: VirtualService[] = [];
    if (!p.flushed) {
      for (const s of this.services.values()) {
        if (p.added.has(s.id)) continue; // deleted and created again: listed last
        const after = p.services.get(s.id);
        if (after === undefined) out.push(s);
        else if (after !== null) out.push(after);
      }
    }
    for (const id of p.added) out.push(p.services.get(id)!);
    return out;
  }

  /** The live table as an ApplySpace: what exec does to the table itself. */
  private readonly live: ApplySpace = {
    get: (id) => this.services.get(id)!,
    put: (svc) => this.services.set(svc.id, svc),
    delete: (id) => this.deleteService(this.services.get(id)!),
    flush: () => {
      for (const svc of [...this.services.values()]) this.deleteService(svc);
    },
    retire: (svc, dest) => {
      // Templates of a removed server must not send anyone there again; templates keyed
      // with an old persistence granularity would never match again.
      for (const t of this.conns.templatesOf(svc, dest)) this.conns.retireTemplate(t);
    },
    zero: (id) => {
      const targets = id !== null ? [this.services.get(id)!] : this.list();
      for (const svc of targets) {
        svc.stats.zero();
        for (const d of svc.dests) d.stats.zero();
      }
      if (id === null) this.totals.zero();
      return id !== null ? targets[0]! : null;
    },
    setTimeouts: (t) => this.conns.setTimeouts(t),
    emit: (ev) => this.emit((l) => l.change?.(ev)),
  };

  /**
   * Applies one validated, canonical operation to `s`: the live table (applyAll) or a
   * preview's copies. Everything a batch does to services and servers happens here and in
   * the VirtualService methods it calls, once for both.
   */
  private exec(op: Op, s: ApplySpace): void {
    switch (op.op) {
      case 'add-service': {
        const svc = new VirtualService(op.service);
        svc.sched = this.bindScheduler(svc);
        s.put(svc);
        s.emit({ type: 'service-added', svc });
        return;
      }
      case 'edit-service': {
        const svc = s.get(serviceId(op.service));
        if (svc.edit(op.service, (x) => this.bindScheduler(x))) s.retire(svc);
        s.emit({ type: 'service-edited', svc });
        return;
      }
      case 'delete-service':
        s.delete(serviceId(op.service));
        return;
      case 'flush':
        s.flush();
        return;
      case 'add-server': {
        const svc = s.get(serviceId(op.service));
        const dest = svc.addDest(op.dest);
        s.emit({ type: 'dest-added', svc, dest });
        return;
      }
      case 'edit-server': {
        const svc = s.get(serviceId(op.service));
        const dest = svc.findDest(op.dest)!;
        svc.editDest(dest, op.dest);
        s.emit({ type: 'dest-edited', svc, dest });
        return;
      }
      case 'delete-server': {
        const svc = s.get(serviceId(op.service));
        this.unlinkDest(s, svc, svc.findDest(op.dest)!);
        return;
      }
      case 'zero': {
        const svc = s.zero(op.service ? serviceId(op.service) : null);
        s.emit({ type: 'zeroed', svc });
        return;
      }
      case 'set-timeouts':
        s.setTimeouts(op.timeouts);
        s.emit({ type: 'timeouts', timeouts: this.timeouts() });
        return;
    }
  }

  private bindScheduler(svc: VirtualService) {
    const f = this.lookupScheduler(svc.scheduler)!;
    return f.create(svc, { randomU32: this.randomU32 });
  }

  private unlinkDest(s: ApplySpace, svc: VirtualService, dest: Dest): void {
    svc.removeDest(dest);
    s.retire(svc, dest);
    s.emit({ type: 'dest-deleted', svc, dest });
  }

  private deleteService(svc: VirtualService): void {
    for (const d of [...svc.dests]) this.unlinkDest(this.live, svc, d);
    svc.sched.done?.();
    this.services.delete(svc.id);
    for (const c of this.conns.templatesOf(svc)) this.conns.remove(c);
    this.emit((l) => l.change?.({ type: 'service-deleted', svc }));
  }

  // ------------------------------------------------------------------ data path

  /**
   * Schedules a new connection to `svc` (ip_vs_schedule / ip_vs_sched_persist): picks a
   * real server, honouring a persistence template when the service is persistent, and
   * creates the connection entry. Returns null when no server can be picked, and the data
   * plane refuses the connection ("no destination available").
   */
  schedule(svc: VirtualService, pkt: NewConnInput): Conn | null {
    const now = this.now();
    const input: SchedInput = { caddr: pkt.caddr, cport: pkt.cport, vaddr: pkt.vaddr, vport: pkt.vport, now };
    let dest: Dest | null;
    let tpl: Conn | undefined;
    if (svc.persistent > 0) {
      const snet = maskAddr(pkt.caddr, svc.af, svc.netmask);
      const key = this.conns.templateKey(svc, snet);
      tpl = this.conns.findTemplate(key);
      if (tpl && !this.templateUsable(tpl)) {
        this.conns.retireTemplate(tpl);
        tpl = undefined;
      }
      if (!tpl) {
        dest = svc.sched.schedule(input);
        if (!dest) return null;
        tpl = this.conns.createTemplate(key, svc, snet, dest, now);
      } else {
        dest = tpl.dest;
      }
    } else {
      dest = svc.sched.schedule(input);
    }
    if (!dest) return null;
    const oneShot = svc.ops && svc.protocol === 'udp';
    let flags = oneShot ? CONN_F_ONE_PACKET : 0;
    if (dest.fwd === 'route' || dest.fwd === 'tunnel') flags |= CONN_F_NOOUTPUT;
    const protocol = pkt.protocol ?? svc.protocol;
    const c = this.conns.create(
      protocol,
      svc.af,
      pkt.caddr,
      pkt.cport,
      pkt.vaddr,
      pkt.vport,
      dest.addr,
      dest.port || pkt.vport,
      svc,
      dest,
      flags,
      now,
    );
    if (tpl) this.conns.control(c, tpl, now);
    // ip_vs_conn_stats: a scheduled connection counts once, for its server, service and total.
    dest.stats.conns++;
    svc.stats.conns++;
    this.totals.conns++;
    return c;
  }

  /** ip_vs_check_template. */
  private templateUsable(tpl: Conn): boolean {
    const d = tpl.dest;
    return !!d && d.available && !(this.expireQuiescentTemplate && d.weight === 0);
  }

  /** A TCP packet of a connection, for the state machine (and its timer). */
  tcpEvent(c: Conn, dir: TcpDir, flag: TcpFlag): void {
    this.conns.tcpEvent(c, dir, flag, this.now());
  }

  /** A UDP datagram of a connection (re-arms its timer). */
  datagram(c: Conn): void {
    this.conns.datagram(c, this.now());
  }

  /** Counts client→server traffic for the connection's server, service and the total. */
  countIn(c: Conn, pkts: number, bytes: number): void {
    c.inPkts += pkts;
    c.dest?.stats.countIn(pkts, bytes);
    c.svc.stats.countIn(pkts, bytes);
    this.totals.countIn(pkts, bytes);
  }

  /** Counts server→client traffic. */
  countOut(c: Conn, pkts: number, bytes: number): void {
    c.dest?.stats.countOut(pkts, bytes);
    c.svc.stats.countOut(pkts, bytes);
    this.totals.countOut(pkts, bytes);
  }

  // ------------------------------------------------------------------ state sync (backup side)

  /** The service a synced entry belongs to (by mark, else by address, port-zero services included). */
  syncedService(e: Pick<SyncedEntry, 'af' | 'protocol' | 'vaddr' | 'vport' | 'fwmark'>): VirtualService | undefined {
    return this.synced.service(e);
  }

  /** The real server a synced entry names: same address and port, or (port-zero templates) same address. */
  syncedDest(svc: VirtualService, daddr: string, dport: number): Dest | undefined {
    return this.synced.dest(svc, daddr, dport);
  }

  /**
   * Creates or updates an entry from a sync master's message, as the kernel's backup does
   * (ip_vs_proc_conn): flagged SYNC, with the synced state and timeout, bound to the local
   * server with the same address, and not counted as a scheduling decision (no conns
   * counter moves; active/inactive follow the state). A template goes into the template
   * index, so that scheduling here honours it once this director serves. Unlike the
   * kernel, which keeps an existing template's server, a template that now names another
   * server is replaced: the master's latest decision wins. Entries whose service or server
   * is not configured here are not imported; the reason is returned.
   */
  importSynced(e: SyncedEntry): Conn | SyncImportMiss {
    return this.synced.import(e);
  }

  /** Entries created by importSynced that are still in the table. */
  syncedEntries(): Conn[] {
    return this.synced.entries();
  }

  /**
   * Removes synced connection entries (not templates), when this director becomes master:
   * they stand for connections of the old master, which conntrack now holds for real
   * (nftables plane with conntrackd) or which ended with it (userspace proxy).
   */
  dropSyncedConns(): number {
    return this.synced.dropConns();
  }

  /** Removes an entry at once (e.g. its server was removed and the data plane closed it). */
  dropConn(c: Conn): void {
    this.conns.remove(c);
  }

  /**
   * The data plane holds nothing more for `c` (its sockets are closed). A closed TCP entry
   * then lives on compactly until it expires: it still counts as an InActConn and is still
   * listed, but `c` itself is dead from here on (see ConnTable.close). Returns whether it
   * was compacted.
   */
  connClosed(c: Conn): boolean {
    if (!this.conns.closable(c)) return false;
    this.emit((l) => l.connClosing?.(c));
    return this.conns.close(c);
  }

  /**
   * Housekeeping; the owner calls it about once a second: expires connections, lets
   * schedulers age their caches, and runs the estimator every 2 s.
   */
  tick(): void {
    const now = this.now();
    this.conns.expire(now);
    for (const svc of this.services.values()) svc.sched.tick?.(now);
    while (now - this.lastEstimate >= ESTIMATOR_INTERVAL_MS) {
      this.lastEstimate += ESTIMATOR_INTERVAL_MS;
      this.totals.estimate();
      for (const svc of this.services.values()) {
        svc.stats.estimate();
        for (const d of svc.dests) d.stats.estimate();
      }
    }
  }
}
