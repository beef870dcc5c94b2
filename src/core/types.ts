/**
 * The shapes of the LVS table: virtual services, real servers, connections and the
 * operations that change them. Semantics follow kernel IPVS (net/netfilter/ipvs) and
 * ipvsadm 1.31; see docs/kernel-semantics.md for where and why we deviate.
 *
 * Everything here is plain data so that it crosses the control socket as JSON unchanged.
 */

export type Family = 4 | 6;

/** Transport protocol of an address-based virtual service. */
export type Protocol = 'tcp' | 'udp' | 'sctp';

/**
 * Packet forwarding method of a real server (ipvsadm -m / -g / -i).
 * `fullnat` is the userspace proxy's native mode: the client connection ends at the
 * director and a new one goes to the real server, which sees the director's address.
 */
export type FwdMethod = 'masq' | 'route' | 'tunnel' | 'fullnat';

export type TunType = 'ipip' | 'gue' | 'gre';
export type TunCsum = 'nocsum' | 'csum' | 'remcsum';

export interface TunnelOptions {
  type: TunType;
  /** UDP port, gue only. */
  port?: number;
  csum?: TunCsum;
}

/**
 * Identifies a virtual service: protocol + address + port, or a firewall mark.
 * For fwmark services ipvsadm sends protocol TCP and address 0 to the kernel; we keep
 * `protocol: 'tcp'`, `addr` = the family's any-address and `port` 0 the same way.
 */
export interface ServiceKey {
  af: Family;
  protocol: Protocol;
  /** Canonical text form: dotted quad, or RFC 5952 compressed lowercase IPv6. */
  addr: string;
  port: number;
  /** 0 for an address-based service. */
  fwmark: number;
}

/** Scheduler flag bits as ipvsadm -b names them (flag-1 = sh-fallback / mh-fallback, flag-2 = sh-port / mh-port). */
export const SCHED_FLAG_1 = 0x1;
export const SCHED_FLAG_2 = 0x2;
export const SCHED_FLAG_3 = 0x4;

/** The configurable part of a virtual service (what -A / -E set). */
export interface ServiceConfig extends ServiceKey {
  scheduler: string;
  /** Bit set of SCHED_FLAG_*. */
  schedFlags: number;
  /** Persistence timeout in seconds; 0 = not persistent. */
  persistent: number;
  /**
   * Persistence granularity. IPv4: the 32-bit mask as an unsigned number
   * (0xffffffff = per client address); IPv6: the prefix length (128 = per address).
   * The kernel stores it the same way in `svc->netmask`.
   */
  netmask: number;
  /** One-packet scheduling (-o), UDP only. */
  ops: boolean;
  /** Persistence engine name (ipvsadm --pe); only "sip" exists. Empty = none. */
  pe: string;
  /**
   * Userspace plane only: put a PROXY protocol header (v1 text, v2 binary) in front of what
   * goes to the real servers, naming the client. ipvsadm has no such option, so it is never
   * in `-S` output; it lives in the YAML config, the API and the state file. In an edit,
   * absent means "leave as is" (so `tsvsadm -E`, which knows nothing of it, keeps it) and
   * 'none' turns it off.
   */
  proxyProtocol?: ProxyProtocolVersion | 'none';
  /**
   * Userspace plane only, TCP: connect to the real servers from the client's own address
   * (IP_TRANSPARENT), so they see the client without kernel NAT. Same storage as
   * proxyProtocol; in an edit, absent leaves it as is and false turns it off.
   */
  transparent?: boolean;
  /**
   * Connection limit of this service (TCP connections plus UDP flows), on both planes; 0 =
   * tsvsd's --max-conns-per-service. Same storage as proxyProtocol; in an edit, absent
   * leaves it as is.
   */
  maxConns?: number;
  /** The same per client address within this service; 0 = tsvsd's --max-conns-per-client. */
  maxConnsPerClient?: number;
}

/** PROXY protocol versions a service can send (haproxy's proxy-protocol.txt). */
export type ProxyProtocolVersion = 'v1' | 'v2';

/** Identifies a real server within a service. */
export interface DestKey {
  af: Family;
  addr: string;
  port: number;
}

/** The configurable part of a real server (what -a / -e set). */
export interface DestConfig extends DestKey {
  /** 0..65535; 0 quiesces the server (no new connections, existing ones continue). */
  weight: number;
  fwd: FwdMethod;
  /** Upper connection threshold (-x); 0 = none. */
  uThreshold: number;
  /** Lower connection threshold (-y); 0 = none. */
  lThreshold: number;
  tunnel?: TunnelOptions;
}

/** Connection timeouts that ipvsadm --set changes, in seconds. */
export interface Timeouts {
  tcp: number;
  tcpfin: number;
  udp: number;
}

/** One change to the table: the whole of ipvsadm's command surface that edits state. */
export type Op =
  | { op: 'add-service'; service: ServiceConfig }
  | { op: 'edit-service'; service: ServiceConfig }
  | { op: 'delete-service'; service: ServiceKey }
  | { op: 'flush' }
  | { op: 'add-server'; service: ServiceKey; dest: DestConfig }
  | { op: 'edit-server'; service: ServiceKey; dest: DestConfig }
  | { op: 'delete-server'; service: ServiceKey; dest: DestKey }
  | { op: 'zero'; service?: ServiceKey }
  | { op: 'set-timeouts'; timeouts: Timeouts };

/** Persistent configuration of the whole table: what the state file and `-S` hold. */
export interface TableConfig {
  services: Array<ServiceConfig & { dests: DestConfig[] }>;
  timeouts: Timeouts;
}

/** Cumulative counters (kernel `struct ip_vs_kstats`). */
export interface Stats {
  conns: number;
  inpkts: number;
  outpkts: number;
  inbytes: number;
  outbytes: number;
}

/** Estimated rates as ipvsadm --rate shows them (bytes per second for the BPS columns). */
export interface Rates {
  cps: number;
  inpps: number;
  outpps: number;
  inbps: number;
  outbps: number;
}

/** A real server as listings see it. */
export interface DestView extends DestConfig {
  activeconns: number;
  inactconns: number;
  persistconns: number;
  overloaded: boolean;
  stats: Stats;
  rates: Rates;
}

/** A virtual service as listings see it; `dests` in kernel list order (newest first). */
export interface ServiceView extends ServiceConfig {
  dests: DestView[];
  stats: Stats;
  rates: Rates;
}

/** The whole table as listings see it; `services` in creation order (the CLI sorts). */
export interface TableView {
  /** IPVS version the listing header reports, e.g. "1.2.1". */
  version: string;
  /** Connection hash table size for the header line. */
  size: number;
  services: ServiceView[];
  timeouts: Timeouts;
  stats: Stats;
  rates: Rates;
}

/** The addresses of a connection: client, virtual (what the client sent to) and real server. */
export interface ConnTuple {
  caddr: string;
  cport: number;
  vaddr: string;
  vport: number;
  daddr: string;
  dport: number;
}

/** One entry of the connection table as `ipvsadm -Lnc` shows it. */
export interface ConnView extends ConnTuple {
  /** "TCP", "UDP", "SCTP", or "IP" for fwmark templates. */
  protocol: string;
  af: Family;
  /** Kernel state name: ESTABLISHED, FIN_WAIT, ..., UDP, NONE. */
  state: string;
  /** Seconds until expiry. */
  expires: number;
  template: boolean;
  /** Persistence engine name and data, empty when none. */
  peName: string;
  peData: string;
}
