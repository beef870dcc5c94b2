/**
 * Virtual services and real servers as live objects: configuration plus the runtime state
 * the kernel keeps beside it (connection counts, the OVERLOAD flag, counters, the
 * scheduler bound to the service). Only IpvsTable (table.ts) changes them.
 */
import { anyAddr, formatAddrPort } from './addr.js';
import { StatsBlock } from './stats.js';
import type {
  DestConfig,
  DestKey,
  DestView,
  Family,
  FwdMethod,
  Protocol,
  ProxyProtocolVersion,
  ServiceConfig,
  ServiceKey,
  ServiceView,
  TunnelOptions,
} from './types.js';
import type { SchedDest, Scheduler } from './scheduler.js';

/** Stable text id of a service, used as a map key and in the API's URLs. */
export function serviceId(k: ServiceKey): string {
  if (k.fwmark) return k.af === 6 ? `fwm6:${k.fwmark}` : `fwm:${k.fwmark}`;
  return `${k.protocol}:${formatAddrPort(k.addr, k.port)}`;
}

/** Stable text id of a real server within its service. */
export function destId(k: DestKey): string {
  return formatAddrPort(k.addr, k.port);
}

/** How logs and error details name a service, in ipvsadm's words: "TCP 10.0.0.1:80", "FWM 7". */
export function serviceLabel(k: ServiceKey): string {
  if (k.fwmark) return k.af === 6 ? `FWM ${k.fwmark} IPv6` : `FWM ${k.fwmark}`;
  return `${k.protocol.toUpperCase()} ${formatAddrPort(k.addr, k.port)}`;
}

/** The key fields of a service, copied (so a config object can be used as a key safely). */
export function serviceKeyOf(k: ServiceKey): ServiceKey {
  return k.fwmark
    ? { af: k.af, protocol: 'tcp', addr: anyAddr(k.af), port: 0, fwmark: k.fwmark }
    : { af: k.af, protocol: k.protocol, addr: k.addr, port: k.port, fwmark: 0 };
}

/** A real server of one virtual service (kernel `struct ip_vs_dest`). */
export class Dest implements SchedDest {
  readonly af: Family;
  readonly addr: string;
  readonly port: number;
  readonly id: string;
  weight: number;
  lastWeight: number;
  fwd: FwdMethod;
  uThreshold: number;
  lThreshold: number;
  tunnel: TunnelOptions | undefined;

  activeconns = 0;
  inactconns = 0;
  /** Persistence templates pointing at this server. */
  persistconns = 0;
  overloaded = false;
  /** Cleared when the server is removed from its service; live connections may still point here. */
  available = true;
  readonly stats: StatsBlock;

  constructor(
    readonly svc: VirtualService,
    cfg: DestConfig,
    stats = new StatsBlock(),
  ) {
    this.stats = stats;
    this.af = cfg.af;
    this.addr = cfg.addr;
    this.port = cfg.port;
    this.id = destId(cfg);
    this.weight = cfg.weight;
    this.lastWeight = cfg.weight;
    this.fwd = cfg.fwd;
    this.uThreshold = cfg.uThreshold;
    this.lThreshold = cfg.lThreshold;
    this.tunnel = cfg.tunnel && { ...cfg.tunnel };
  }

  /**
   * Applies an edit (-e) as __ip_vs_update_dest does. The service tells its scheduler
   * (VirtualService.editDest), so call that instead.
   */
  edit(c: DestConfig): void {
    // A raised or removed upper threshold clears OVERLOAD at once.
    if (c.uThreshold === 0 || c.uThreshold > this.uThreshold) this.overloaded = false;
    this.weight = c.weight;
    if (c.weight !== 0) this.lastWeight = c.weight;
    this.fwd = c.fwd;
    this.uThreshold = c.uThreshold;
    this.lThreshold = c.lThreshold;
    // A copy: the op object may also be applied elsewhere (a preview), and must not be shared.
    this.tunnel = c.tunnel && { ...c.tunnel };
  }

  /** A detached copy bound to `svc` (a copy of this server's service), runtime state included. */
  clone(svc: VirtualService): Dest {
    const d = new Dest(svc, this.config(), this.stats.clone());
    d.lastWeight = this.lastWeight;
    d.activeconns = this.activeconns;
    d.inactconns = this.inactconns;
    d.persistconns = this.persistconns;
    d.overloaded = this.overloaded;
    d.available = this.available;
    return d;
  }

  /** Connections that count against the thresholds (kernel ip_vs_dest_totalconns). */
  get totalconns(): number {
    return this.activeconns + this.inactconns;
  }

  config(): DestConfig {
    const c: DestConfig = {
      af: this.af,
      addr: this.addr,
      port: this.port,
      weight: this.weight,
      fwd: this.fwd,
      uThreshold: this.uThreshold,
      lThreshold: this.lThreshold,
    };
    if (this.tunnel) c.tunnel = { ...this.tunnel };
    return c;
  }

  view(): DestView {
    // The fields are set on config()'s object rather than spread into a new one (same key
    // order): V8 builds spread objects slowly, and a listing of 10,000 services makes
    // 40,000 of these (measured: 1.0-1.65 s for the whole view, 0.35-0.56 s this way).
    const v = this.config() as DestView;
    v.activeconns = this.activeconns;
    v.inactconns = this.inactconns;
    v.persistconns = this.persistconns;
    v.overloaded = this.overloaded;
    v.stats = this.stats.snapshot();
    v.rates = this.stats.rates();
    return v;
  }
}

/** A virtual service (kernel `struct ip_vs_service`). */
export class VirtualService {
  readonly af: Family;
  readonly protocol: Protocol;
  readonly addr: string;
  readonly port: number;
  readonly fwmark: number;
  readonly id: string;
  scheduler: string;
  schedFlags: number;
  persistent: number;
  netmask: number;
  ops: boolean;
  pe: string;
  /** Userspace plane: PROXY protocol toward real servers (see ServiceConfig). */
  proxyProtocol: ProxyProtocolVersion | undefined;
  /** Userspace plane: connect from the client's address (see ServiceConfig). */
  transparent: boolean | undefined;
  /** This service's own connection limits (see ServiceConfig); undefined: tsvsd's default. */
  maxConns: number | undefined;
  maxConnsPerClient: number | undefined;
  /** Kernel list order: a new server is inserted at the head. */
  readonly dests: Dest[] = [];
  /** The same servers by destId, so finding one does not walk the list. */
  private readonly byId = new Map<string, Dest>();
  readonly stats: StatsBlock;
  /** Bound by the table right after construction. */
  sched!: Scheduler<Dest>;

  constructor(cfg: ServiceConfig, stats = new StatsBlock()) {
    this.stats = stats;
    const k = serviceKeyOf(cfg);
    this.af = k.af;
    this.protocol = k.protocol;
    this.addr = k.addr;
    this.port = k.port;
    this.fwmark = k.fwmark;
    this.id = serviceId(k);
    this.scheduler = cfg.scheduler;
    this.schedFlags = cfg.schedFlags;
    this.persistent = cfg.persistent;
    this.netmask = cfg.netmask;
    this.ops = cfg.ops;
    this.pe = cfg.pe;
    this.proxyProtocol = cfg.proxyProtocol === 'none' ? undefined : cfg.proxyProtocol;
    this.transparent = cfg.transparent || undefined;
    this.maxConns = cfg.maxConns || undefined;
    this.maxConnsPerClient = cfg.maxConnsPerClient || undefined;
  }

  get label(): string {
    return serviceLabel(this);
  }

  findDest(k: DestKey): Dest | undefined {
    return this.byId.get(destId(k));
  }

  /** The server whose destId is `id`. */
  findDestById(id: string): Dest | undefined {
    return this.byId.get(id);
  }

  // The changes below are the whole of how a batch changes a service (IpvsTable.exec runs
  // them on the live table, IpvsTable.preview on copies); the table adds what is not the
  // service's own business: connection entries and events.

  /** -E. Returns true when the persistence granularity changed (templates keyed the old way must go). */
  edit(c: ServiceConfig, bind: (svc: VirtualService) => Scheduler<Dest>): boolean {
    const granularity = this.persistent !== c.persistent || this.netmask !== c.netmask;
    const schedChanged = this.scheduler !== c.scheduler || this.schedFlags !== c.schedFlags;
    this.persistent = c.persistent;
    this.netmask = c.netmask;
    this.ops = c.ops;
    this.pe = c.pe;
    // Absent: unchanged (tsvsadm -E does not know them); 'none' / false: off.
    if (c.proxyProtocol !== undefined) this.proxyProtocol = c.proxyProtocol === 'none' ? undefined : c.proxyProtocol;
    if (c.transparent !== undefined) this.transparent = c.transparent || undefined;
    if (c.maxConns !== undefined) this.maxConns = c.maxConns || undefined;
    if (c.maxConnsPerClient !== undefined) this.maxConnsPerClient = c.maxConnsPerClient || undefined;
    if (schedChanged) {
      this.sched.done?.();
      this.scheduler = c.scheduler;
      this.schedFlags = c.schedFlags;
      this.sched = bind(this);
    }
    return granularity;
  }

  /** -a: a new server at the head of the list (kernel list_add_rcu), then the scheduler's add_dest. */
  addDest(cfg: DestConfig): Dest {
    const dest = new Dest(this, cfg);
    this.dests.unshift(dest);
    this.byId.set(dest.id, dest);
    this.sched.addDest?.(dest);
    return dest;
  }

  /** -e of one of this service's servers. */
  editDest(dest: Dest, cfg: DestConfig): void {
    dest.edit(cfg);
    this.sched.updDest?.(dest);
  }

  /** -d: out of the list and unavailable to connections that still point at it. */
  removeDest(dest: Dest): void {
    const idx = this.dests.indexOf(dest);
    this.dests.splice(idx, 1);
    this.byId.delete(dest.id);
    dest.available = false;
    this.sched.delDest?.(dest, idx);
  }

  /**
   * A detached copy: configuration, servers (runtime state included, list order kept),
   * counters, and a scheduler with the same state bound to the copy. Nothing in it points
   * back at this service or its servers, so changing it changes nothing here. `fresh`
   * binds a new scheduler instance, for schedulers without a `clone` hook.
   */
  clone(fresh: (copy: VirtualService) => Scheduler<Dest>): VirtualService {
    const c = new VirtualService(this.config(), this.stats.clone());
    // config() leaves out what is off; copy the fields as they are.
    c.proxyProtocol = this.proxyProtocol;
    c.transparent = this.transparent;
    const copies = new Map<Dest, Dest>();
    for (const d of this.dests) {
      const x = d.clone(c);
      copies.set(d, x);
      c.dests.push(x);
      c.byId.set(x.id, x);
    }
    // Scheduler state may still name a removed server (lblc's cache): copy it too.
    const map = (d: Dest): Dest => {
      let x = copies.get(d);
      if (!x) copies.set(d, (x = d.clone(c)));
      return x;
    };
    c.sched = this.sched.clone ? this.sched.clone(c, map) : fresh(c);
    return c;
  }

  key(): ServiceKey {
    return serviceKeyOf(this);
  }

  config(): ServiceConfig {
    const k = this.key();
    const c: ServiceConfig = {
      af: k.af,
      protocol: k.protocol,
      addr: k.addr,
      port: k.port,
      fwmark: k.fwmark,
      scheduler: this.scheduler,
      schedFlags: this.schedFlags,
      persistent: this.persistent,
      netmask: this.netmask,
      ops: this.ops,
      pe: this.pe,
    };
    if (this.proxyProtocol) c.proxyProtocol = this.proxyProtocol;
    if (this.transparent) c.transparent = true;
    if (this.maxConns) c.maxConns = this.maxConns;
    if (this.maxConnsPerClient) c.maxConnsPerClient = this.maxConnsPerClient;
    return c;
  }

  view(): ServiceView {
    const v = this.config() as ServiceView;
    v.dests = this.dests.map((d) => d.view());
    v.stats = this.stats.snapshot();
    v.rates = this.stats.rates();
    return v;
  }
}
