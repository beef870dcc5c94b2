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
import type { SchedDest, Scheduler } from '../schedulers/scheduler.js';

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
export class RealServer implements SchedDest {
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
  readonly stats = new StatsBlock();

  constructor(
    readonly svc: VirtualService,
    cfg: DestConfig,
  ) {
    this.af = cfg.af;
    this.addr = cfg.addr;
    this.port = cfg.port;
    this.id = destId(cfg);
    this.weight = cfg.weight;
    this.lastWeight = cfg.weight;
    this.fwd = cfg.fwd;
    this.uThreshold = cfg.uThreshold;
    this.lThreshold = cfg.lThreshold;
    this.tunnel = cfg.tunnel;
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
    return {
      ...this.config(),
      activeconns: this.activeconns,
      inactconns: this.inactconns,
      persistconns: this.persistconns,
      overloaded: this.overloaded,
      stats: this.stats.snapshot(),
      rates: this.stats.rates(),
    };
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
  /** Kernel list order: a new server is inserted at the head. */
  readonly dests: RealServer[] = [];
  readonly stats = new StatsBlock();
  /** Bound by the table right after construction. */
  sched!: Scheduler<RealServer>;

  constructor(cfg: ServiceConfig) {
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
  }

  get label(): string {
    return serviceLabel(this);
  }

  findDest(k: DestKey): RealServer | undefined {
    const id = destId(k);
    return this.dests.find((d) => d.id === id);
  }

  key(): ServiceKey {
    return serviceKeyOf(this);
  }

  config(): ServiceConfig {
    const c: ServiceConfig = {
      ...this.key(),
      scheduler: this.scheduler,
      schedFlags: this.schedFlags,
      persistent: this.persistent,
      netmask: this.netmask,
      ops: this.ops,
      pe: this.pe,
    };
    if (this.proxyProtocol) c.proxyProtocol = this.proxyProtocol;
    if (this.transparent) c.transparent = true;
    return c;
  }

  view(): ServiceView {
    return {
      ...this.config(),
      dests: this.dests.map((d) => d.view()),
      stats: this.stats.snapshot(),
      rates: this.stats.rates(),
    };
  }
}
