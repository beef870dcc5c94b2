/**
 * ipvsadm 1.31's listings, byte for byte: -L/-l (with --stats, --rate, --thresholds,
 * --persistent-conn, --tun-info, --exact, --nosort), -c, --timeout, --daemon and the -S
 * rule format, plus tsvs's --json variant of each. Pure functions: names for the
 * non-numeric forms come from a `Names` the caller has filled in beforehand.
 *
 * Layouts follow ipvsadm.c's printf strings; sorting follows libipvs's comparators,
 * wrap-around quirks included, run through glibc's merge sort so that even their
 * non-transitive cases come out in ipvsadm's order.
 */
import { formatIPv6, parseIPv4, parseIPv6 } from '../core/addr.js';
import {
  SCHED_FLAG_1,
  SCHED_FLAG_2,
  SCHED_FLAG_3,
  type ConnView,
  type DestView,
  type Family,
  type FwdMethod,
  type Protocol,
  type ServiceView,
  type TableView,
  type Timeouts,
} from '../core/types.js';
import type { SyncDaemonConfig } from '../sync/manager.js';

/** Listing switches (a subset of the parser's ListOptions). */
interface FormatOptions {
  stats?: boolean;
  rate?: boolean;
  thresholds?: boolean;
  persistentConn?: boolean;
  tunInfo?: boolean;
  nosort?: boolean;
  exact?: boolean;
}

/**
 * Names for the non-numeric listings. `host` is gethostbyaddr-or-numeric for an address
 * (the caller resolves ahead of time); `service` is getservbyport, null if unknown.
 * Passing no Names gives the -n form.
 */
export interface Names {
  host(addr: string): string;
  service(port: number, proto: Protocol): string | null;
}

// ---------------------------------------------------------------------------------------
// printf helpers

/** %-Ns */
const left = (s: string | number, n: number): string => String(s).padEnd(n);
/** %Ns */
const right = (s: string | number, n: number): string => String(s).padStart(n);

/**
 * print_largenum: right-aligned in 9 columns, abbreviated with decimal K/M/G/T past 8
 * digits; with --exact the full number, one blank wider than it when it is long.
 */
export function printLargenum(i: number, exact = false): string {
  if (exact) {
    const s = String(i);
    return right(s, s.length <= 8 ? 9 : s.length + 1);
  }
  if (i < 1e8) return right(i, 9);
  if (i < 1e9) return `${right(Math.floor(i / 1e3), 8)}K`;
  if (i < 1e11) return `${right(Math.floor(i / 1e6), 8)}M`;
  if (i < 1e14) return `${right(Math.floor(i / 1e9), 8)}G`;
  return `${right(Math.floor(i / 1e12), 8)}T`;
}

// ---------------------------------------------------------------------------------------
// Addresses as ipvsadm prints them

/**
 * A per-address cache for a listing: a table of 10,000 services names the same real
 * servers over and over. Bounded: it starts again when full.
 */
function memo<T>(f: (addr: string) => T, max = 65536): (addr: string) => T {
  const cache = new Map<string, T>();
  return (addr) => {
    let v = cache.get(addr);
    if (v === undefined) {
      if (cache.size >= max) cache.clear();
      v = f(addr);
      cache.set(addr, v);
    }
    return v;
  };
}

/** inet_ntop text of an address, as glibc writes it (IPv4-mapped/compatible tails dotted). */
export const ntop = memo(ntopUncached);

function ntopUncached(addr: string): string {
  const g = parseIPv4(addr) === null ? parseIPv6(addr) : null;
  if (!g) return addr;
  // glibc also dots IPv4-compatible addresses (::a.b.c.d); RFC 5952 (formatIPv6) does not.
  if (g.slice(0, 6).every((x) => x === 0) && g[6] !== 0) return `::${g[6]! >> 8}.${g[6]! & 255}.${g[7]! >> 8}.${g[7]! & 255}`;
  return formatIPv6(g);
}

function familyOfAddr(addr: string): Family {
  return parseIPv4(addr) !== null ? 4 : 6;
}

/**
 * addrport_to_anyname: "addr:port", IPv6 in brackets (even when a name replaced it),
 * limited to ipvsadm's 60-byte buffer.
 */
function addrPortName(af: Family, addr: string, port: number, proto: Protocol | null, names?: Names): string {
  const [open, close] = af === 4 ? ['', ''] : ['[', ']'];
  const s = names
    ? `${open}${names.host(addr)}${close}:${(proto && names.service(port, proto)) ?? String(port)}`
    : `${open}${ntop(addr)}${close}:${port}`;
  return s.slice(0, 59);
}

const PROTO_NAME: Record<Protocol, string> = { tcp: 'TCP', udp: 'UDP', sctp: 'SCTP' };
const PROTO_SWITCH: Record<Protocol, string> = { tcp: '-t', udp: '-u', sctp: '--sctp-service' };
const PROTO_NUM: Record<Protocol, number> = { tcp: 6, udp: 17, sctp: 132 };
const FWD_NAME: Record<FwdMethod, string> = { masq: 'Masq', route: 'Route', tunnel: 'Tunnel', fullnat: 'FullNat' };
/** -S switches; `--fullnat` is tsvs's (ipvsadm has no full-NAT method). */
const FWD_SWITCH: Record<FwdMethod, string> = { masq: '-m', route: '-g', tunnel: '-i', fullnat: '--fullnat' };
const TUN_FLAG: Record<string, string> = { nocsum: '-c', csum: '+c', remcsum: 'r+c' };
const TUN_FLAG_OPT: Record<string, string> = { nocsum: '--tun-nocsum', csum: '--tun-csum', remcsum: '--tun-remcsum' };

/** "255.255.255.0" for the IPv4 netmask as a 32-bit number (inet_ntoa). */
function maskText(mask: number): string {
  const m = mask >>> 0;
  return `${m >>> 24}.${(m >>> 16) & 255}.${(m >>> 8) & 255}.${m & 255}`;
}

// ---------------------------------------------------------------------------------------
// Sorting (libipvs ipvs_cmp_services / ipvs_cmp_dests, glibc qsort = merge sort)

/** The address as the four 32-bit words of a `union nf_inet_addr` (IPv4 in word 0). */
const unionWords = memo(unionWordsUncached);

function unionWordsUncached(addr: string): [number, number, number, number] {
  const v4 = parseIPv4(addr);
  if (v4 !== null) return [v4, 0, 0, 0];
  const g = parseIPv6(addr) ?? [0, 0, 0, 0, 0, 0, 0, 0];
  return [((g[0]! << 16) | g[1]!) >>> 0, ((g[2]! << 16) | g[3]!) >>> 0, ((g[4]! << 16) | g[5]!) >>> 0, ((g[6]! << 16) | g[7]!) >>> 0];
}

/** (int)(a - b) for two u32s: libipvs subtracts unsigned values into an int. */
const wrapDiff = (a: number, b: number): number => (a - b) | 0;

/** ipvs_cmp_services (fwmark, family, protocol, address, port), each address's words given (parsed once per listing). */
function cmpServices(a: ServiceView, wa: readonly number[], b: ServiceView, wb: readonly number[]): number {
  let r = wrapDiff(a.fwmark, b.fwmark);
  if (r) return r;
  r = (a.af === 6 ? 10 : 2) - (b.af === 6 ? 10 : 2);
  if (r) return r;
  r = PROTO_NUM[a.protocol] - PROTO_NUM[b.protocol];
  if (r) return r;
  const n = a.af === 6 ? 4 : 1;
  for (let i = 0; !r && i < n; i++) r = wrapDiff(wa[i]!, wb[i]!);
  if (r) return r;
  return a.port - b.port;
}

/** ipvs_cmp_dests: address (as wide as the first one's family), then port; words given. */
function cmpDests(a: DestView, wa: readonly number[], b: DestView, wb: readonly number[]): number {
  const n = a.af === 6 ? 4 : 1;
  let r = 0;
  for (let i = 0; !r && i < n; i++) r = wrapDiff(wa[i]!, wb[i]!);
  if (r) return r;
  return a.port - b.port;
}

/** glibc's msort: top-down, left half n/2, ties taken from the left. */
export function mergeSort<T>(items: readonly T[], cmp: (a: T, b: T) => number): T[] {
  const a = items.slice();
  if (a.length > 1) msort(a, 0, a.length, new Array<T>(a.length), cmp);
  return a;
}

/** Sorts a[lo, hi) in place through tmp, splitting exactly as glibc's msort_with_tmp. */
function msort<T>(a: T[], lo: number, hi: number, tmp: T[], cmp: (a: T, b: T) => number): void {
  const n = hi - lo;
  if (n <= 1) return;
  const mid = lo + Math.floor(n / 2);
  msort(a, lo, mid, tmp, cmp);
  msort(a, mid, hi, tmp, cmp);
  let i = lo;
  let j = mid;
  let k = lo;
  while (i < mid && j < hi) tmp[k++] = cmp(a[i]!, a[j]!) <= 0 ? a[i++]! : a[j++]!;
  while (i < mid) tmp[k++] = a[i++]!;
  // What is left of the right half is already in place.
  for (let x = lo; x < k; x++) a[x] = tmp[x]!;
}

/** An item with its address parsed into union words, for sorting. */
interface Keyed<T> {
  v: T;
  w: [number, number, number, number];
}

function keyed<T extends { addr: string }>(items: readonly T[]): Keyed<T>[] {
  return items.map((v) => ({ v, w: unionWords(v.addr) }));
}

/** Servers of one service in listing order. */
function sortedDests(dests: readonly DestView[], nosort = false): DestView[] {
  if (nosort || dests.length <= 1) return dests.slice();
  return mergeSort(keyed(dests), (a, b) => cmpDests(a.v, a.w, b.v, b.w)).map((k) => k.v);
}

/** Services in listing order, their servers not yet sorted (see sortedDests). */
function sortedServiceList(services: readonly ServiceView[], nosort = false): ServiceView[] {
  if (nosort) return services.slice();
  return mergeSort(keyed(services), (a, b) => cmpServices(a.v, a.w, b.v, b.w)).map((k) => k.v);
}

/** Services (and each one's servers) in listing order. */
export function sortedServices(services: readonly ServiceView[], nosort = false): ServiceView[] {
  return sortedServiceList(services, nosort).map((s) => ({ ...s, dests: sortedDests(s.dests, nosort) }));
}

// ---------------------------------------------------------------------------------------
// -L

function title(o: FormatOptions): string {
  const sub = '  -> RemoteAddress:Port\n';
  if (o.stats)
    return `${left('Prot LocalAddress:Port', 33)} ${['Conns', 'InPkts', 'OutPkts', 'InBytes', 'OutBytes'].map((h) => right(h, 8)).join(' ')}\n${sub}`;
  if (o.rate)
    return `${left('Prot LocalAddress:Port', 33)} ${['CPS', 'InPPS', 'OutPPS', 'InBPS', 'OutBPS'].map((h) => right(h, 8)).join(' ')}\n${sub}`;
  if (o.thresholds)
    return `${left('Prot LocalAddress:Port', 33)} ${left('Uthreshold', 10)} ${left('Lthreshold', 10)} ${left('ActiveConn', 10)} ${left('InActConn', 10)}\n${sub}`;
  if (o.persistentConn)
    return `${left('Prot LocalAddress:Port', 33)} ${left('Weight', 9)} ${left('PersistConn', 11)} ${left('ActiveConn', 10)} ${left('InActConn', 10)}\n${sub}`;
  if (o.tunInfo)
    return 'Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n';
  return 'Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n';
}

/** print_sched_flags: names depend on the scheduler; sh/mh have no name for flag-3. */
function schedFlagsText(s: ServiceView): string {
  const f = s.schedFlags;
  const out: string[] = [];
  if (s.scheduler === 'sh' || s.scheduler === 'mh') {
    if (f & SCHED_FLAG_1) out.push(`${s.scheduler}-fallback`);
    if (f & SCHED_FLAG_2) out.push(`${s.scheduler}-port`);
  } else {
    if (f & SCHED_FLAG_1) out.push('flag-1');
    if (f & SCHED_FLAG_2) out.push('flag-2');
    if (f & SCHED_FLAG_3) out.push('flag-3');
  }
  return out.join(',');
}

const ANY_SCHED_FLAG = SCHED_FLAG_1 | SCHED_FLAG_2 | SCHED_FLAG_3;

function serviceName(s: ServiceView, rule: boolean, names?: Names): string {
  if (s.fwmark) {
    const v6 = s.af === 6;
    return rule ? `-f ${s.fwmark}${v6 ? ' -6' : ''}` : `FWM  ${s.fwmark}${v6 ? ' IPv6' : ''}`;
  }
  const vname = addrPortName(s.af, s.addr, s.port, s.protocol, names);
  if (rule) return `${PROTO_SWITCH[s.protocol]} ${vname}`;
  const name = `${left(PROTO_NAME[s.protocol], 4)} ${vname}`;
  return s.af === 6 ? name : name.slice(0, 33);
}

/** One service and its servers (`dests`: in listing order, s.dests unless given). */
function serviceEntry(s: ServiceView, o: FormatOptions, names?: Names, dests: readonly DestView[] = s.dests): string {
  const svcName = serviceName(s, false, names);
  let out: string;
  const ln = (n: number) => printLargenum(n, o.exact);
  if (o.stats) {
    const st = s.stats;
    out = left(svcName, 33) + [st.conns, st.inpkts, st.outpkts, st.inbytes, st.outbytes].map(ln).join('');
  } else if (o.rate) {
    const r = s.rates;
    out = left(svcName, 33) + [r.cps, r.inpps, r.outpps, r.inbps, r.outbps].map(ln).join('');
  } else {
    out = `${svcName} ${s.scheduler}`;
    if (s.schedFlags & ANY_SCHED_FLAG) out += ` (${schedFlagsText(s)})`;
    if (s.persistent) {
      out += ` persistent ${s.persistent}`;
      if (s.af === 4 && s.netmask >>> 0 !== 0xffffffff) out += ` mask ${maskText(s.netmask)}`;
      if (s.af === 6 && s.netmask !== 128) out += ` mask ${s.netmask}`;
      if (s.pe) out += ` pe ${s.pe}`;
    }
    if (s.ops) out += ' ops';
  }
  out += '\n';
  for (const d of dests) out += destEntry(s, d, o, names);
  return out;
}

function tunInfo(d: DestView): string {
  if (d.fwd !== 'tunnel') return 'n/a';
  const t = d.tunnel ?? { type: 'ipip' as const };
  const flag = TUN_FLAG[t.csum ?? 'nocsum'];
  if (t.type === 'gue') return `gue:${t.port ?? 0}:${flag}`;
  if (t.type === 'gre') return `gre:${flag}`;
  return 'ipip';
}

function destEntry(s: ServiceView, d: DestView, o: FormatOptions, names?: Names): string {
  let dname = addrPortName(d.af, d.addr, d.port, s.protocol, names);
  if (d.af !== 6) dname = dname.slice(0, 28);
  const ln = (n: number) => printLargenum(n, o.exact);
  if (o.stats) {
    const st = d.stats;
    return `  -> ${left(dname, 28)}${[st.conns, st.inpkts, st.outpkts, st.inbytes, st.outbytes].map(ln).join('')}\n`;
  }
  if (o.rate) {
    // The server's CPS and packet rates are plain %8llu, never abbreviated.
    const r = d.rates;
    return `  -> ${left(dname, 28)} ${right(r.cps, 8)} ${right(r.inpps, 8)} ${right(r.outpps, 8)}${ln(r.inbps)}${ln(r.outbps)}\n`;
  }
  if (o.thresholds)
    return `  -> ${left(dname, 28)} ${left(d.uThreshold, 10)} ${left(d.lThreshold, 10)} ${left(d.activeconns, 10)} ${left(d.inactconns, 10)}\n`;
  if (o.persistentConn)
    return `  -> ${left(dname, 28)} ${left(d.weight, 9)} ${left(d.persistconns, 11)} ${left(d.activeconns, 10)} ${left(d.inactconns, 10)}\n`;
  if (o.tunInfo)
    return `  -> ${left(dname, 28)} ${left(FWD_NAME[d.fwd], 7)} ${left(tunInfo(d), 13)} ${left(d.weight, 6)} ${left(d.activeconns, 10)} ${left(d.inactconns, 10)}\n`;
  return `  -> ${left(dname, 28)} ${left(FWD_NAME[d.fwd], 7)} ${left(d.weight, 6)} ${left(d.activeconns, 10)} ${left(d.inactconns, 10)}\n`;
}

/** `ipvsadm -L`: header line, titles, every service with its servers. */
export function formatTable(table: TableView, o: FormatOptions = {}, names?: Names): string {
  return [...tableChunks(table, o, names)].join('');
}

/**
 * formatTable piece by piece (the header, then one piece per service), so that a large
 * listing is written as it is formatted instead of built as one string.
 */
export function* tableChunks(
  table: Pick<TableView, 'version' | 'size' | 'services'>,
  o: FormatOptions = {},
  names?: Names,
): Generator<string> {
  yield `IP Virtual Server version ${table.version} (size=${table.size})\n${title(o)}`;
  for (const s of sortedServiceList(table.services, o.nosort)) yield serviceEntry(s, o, names, sortedDests(s.dests, o.nosort));
}

/** `ipvsadm -L -t VIP:port`: titles and the one service, no header line. */
export function formatService(service: ServiceView, o: FormatOptions = {}, names?: Names): string {
  const [s] = sortedServices([service], o.nosort);
  return title(o) + serviceEntry(s!, o, names);
}

// ---------------------------------------------------------------------------------------
// -S

/** `ipvsadm -S`: one -A line per service and one -a line per server, as -R reads them. */
export function formatRules(table: Pick<TableView, 'services'>, o: FormatOptions = {}, names?: Names): string {
  return [...rulesChunks(table, o, names)].join('');
}

/** formatRules piece by piece: one piece per service with its servers. */
export function* rulesChunks(table: Pick<TableView, 'services'>, o: FormatOptions = {}, names?: Names): Generator<string> {
  for (const s of sortedServiceList(table.services, o.nosort)) {
    const svcName = serviceName(s, true, names);
    let out = '';
    out += `-A ${svcName} -s ${s.scheduler}`;
    if (s.persistent) {
      out += ` -p ${s.persistent}`;
      if (s.af === 4 && s.netmask >>> 0 !== 0xffffffff) out += ` -M ${maskText(s.netmask)}`;
      if (s.af === 6 && s.netmask !== 128) out += ` -M ${s.netmask}`;
    }
    if (s.pe) out += ` --pe ${s.pe}`;
    if (s.ops) out += ' -o';
    if (s.schedFlags & ANY_SCHED_FLAG) out += ` -b ${schedFlagsText(s)}`;
    out += '\n';
    for (const d of sortedDests(s.dests, o.nosort)) {
      const dname = addrPortName(d.af, d.addr, d.port, s.protocol, names);
      out += `-a ${svcName} -r ${dname} ${FWD_SWITCH[d.fwd]} -w ${d.weight}`;
      if (d.fwd === 'tunnel') {
        const t = d.tunnel ?? { type: 'ipip' as const };
        out += ` --tun-type ${t.type}`;
        if (t.type === 'gue') out += ` --tun-port ${t.port ?? 0} ${TUN_FLAG_OPT[t.csum ?? 'nocsum']}`;
        if (t.type === 'gre') out += ` ${TUN_FLAG_OPT[t.csum ?? 'nocsum']}`;
      }
      out += '\n';
    }
    yield out;
  }
}

// ---------------------------------------------------------------------------------------
// -c, --timeout, --daemon

const CONN_PROTO: Record<string, Protocol> = { TCP: 'tcp', UDP: 'udp', SCTP: 'sctp' };

/**
 * `ipvsadm -Lc`. With --persistent-conn, entries that carry persistence-engine data get
 * two more columns (ipvsadm prints them only when the kernel line has them).
 */
export function formatConnections(conns: readonly ConnView[], o: FormatOptions = {}, names?: Names): string {
  let out = 'IPVS connection entries\n';
  out += o.persistentConn
    ? `pro expire ${left('state', 11)} ${left('source', 18)} ${left('virtual', 18)} ${left('destination', 18)} ${left('pe name', 16)} pe_data\n`
    : `pro expire ${left('state', 11)} ${left('source', 18)} ${left('virtual', 18)} destination\n`;
  for (const c of conns) {
    const proto = CONN_PROTO[c.protocol] ?? null;
    const cname = addrPortName(familyOfAddr(c.caddr), c.caddr, c.cport, proto, names);
    const vname = addrPortName(familyOfAddr(c.vaddr), c.vaddr, c.vport, proto, names);
    const dname = addrPortName(familyOfAddr(c.daddr), c.daddr, c.dport, proto, names);
    const mins = Math.floor(c.expires / 60);
    const expire = `${String(mins).padStart(2, '0')}:${String(c.expires % 60).padStart(2, '0')}`;
    const head = `${left(c.protocol, 3)} ${left(expire, 6)} ${left(c.state, 11)} ${left(cname, 18)} ${left(vname, 18)}`;
    // Sic: the row pads the destination to 16 and the pe name to 18, unlike the title.
    out += o.persistentConn && c.peName ? `${head} ${left(dname, 16)} ${left(c.peName, 18)} ${c.peData}\n` : `${head} ${dname}\n`;
  }
  return out;
}

/** `ipvsadm -L --timeout`. */
export function formatTimeouts(t: Timeouts): string {
  return `Timeout (tcp tcpfin udp): ${t.tcp} ${t.tcpfin} ${t.udp}\n`;
}

/** `ipvsadm -L --daemon`: master first, then backup, as the kernel reports them. */
export function formatDaemons(daemons: readonly SyncDaemonConfig[]): string {
  let out = '';
  for (const state of ['master', 'backup'] as const) {
    for (const d of daemons.filter((x) => x.state === state)) {
      out += `${d.state} sync daemon (mcast=${d.mcastIfn}, syncid=${d.syncid}`;
      if (d.maxlen) out += `, maxlen=${d.maxlen}`;
      if (d.group) out += `, group=${ntop(d.group)}`;
      if (d.port) out += `, port=${d.port}`;
      if (d.ttl) out += `, ttl=${d.ttl}`;
      out += ')\n';
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// --json

/** A service's configuration in JSON output, in a stable key order (-L and -S share it). */
function jsonServiceConfig(s: ServiceView) {
  return {
    af: s.af,
    protocol: s.protocol,
    addr: s.addr,
    port: s.port,
    fwmark: s.fwmark,
    scheduler: s.scheduler,
    schedFlags: s.schedFlags,
    persistent: s.persistent,
    netmask: s.netmask,
    ops: s.ops,
    pe: s.pe,
  };
}

/** Stable key order for a service in JSON output. */
function jsonService(s: ServiceView): unknown {
  return {
    ...jsonServiceConfig(s),
    stats: jsonStats(s.stats),
    rates: jsonRates(s.rates),
    dests: s.dests.map(jsonDest),
  };
}

function jsonDest(d: DestView): unknown {
  return {
    af: d.af,
    addr: d.addr,
    port: d.port,
    fwd: d.fwd,
    weight: d.weight,
    uThreshold: d.uThreshold,
    lThreshold: d.lThreshold,
    ...(d.tunnel ? { tunnel: { type: d.tunnel.type, port: d.tunnel.port, csum: d.tunnel.csum } } : {}),
    activeconns: d.activeconns,
    inactconns: d.inactconns,
    persistconns: d.persistconns,
    overloaded: d.overloaded,
    stats: jsonStats(d.stats),
    rates: jsonRates(d.rates),
  };
}

const jsonStats = (s: ServiceView['stats']) => ({
  conns: s.conns,
  inpkts: s.inpkts,
  outpkts: s.outpkts,
  inbytes: s.inbytes,
  outbytes: s.outbytes,
});
const jsonRates = (r: ServiceView['rates']) => ({
  cps: r.cps,
  inpps: r.inpps,
  outpps: r.outpps,
  inbps: r.inbps,
  outbps: r.outbps,
});

const pretty = (v: unknown): string => `${JSON.stringify(v, null, 2)}\n`;

/** -L --json: the table, sorted as the text listing. */
export function jsonTable(table: TableView, o: FormatOptions = {}): string {
  return pretty({
    version: table.version,
    size: table.size,
    services: sortedServices(table.services, o.nosort).map(jsonService),
  });
}

/** -L -t VIP:port --json: the one service. */
export function jsonOneService(s: ServiceView, o: FormatOptions = {}): string {
  return pretty(jsonService(sortedServices([s], o.nosort)[0]!));
}

/** -S --json: the configuration only, in the TableConfig shape. */
export function jsonRules(table: TableView, o: FormatOptions = {}): string {
  return pretty({
    services: sortedServices(table.services, o.nosort).map((s) => ({
      ...jsonServiceConfig(s),
      dests: s.dests.map((d) => ({
        af: d.af,
        addr: d.addr,
        port: d.port,
        fwd: d.fwd,
        weight: d.weight,
        uThreshold: d.uThreshold,
        lThreshold: d.lThreshold,
        ...(d.tunnel ? { tunnel: { type: d.tunnel.type, port: d.tunnel.port, csum: d.tunnel.csum } } : {}),
      })),
    })),
    timeouts: jsonTimeoutsValue(table.timeouts),
  });
}

const jsonTimeoutsValue = (t: Timeouts) => ({ tcp: t.tcp, tcpfin: t.tcpfin, udp: t.udp });

/** -Lc --json. */
export function jsonConnections(conns: readonly ConnView[]): string {
  return pretty(
    conns.map((c) => ({
      protocol: c.protocol,
      af: c.af,
      caddr: c.caddr,
      cport: c.cport,
      vaddr: c.vaddr,
      vport: c.vport,
      daddr: c.daddr,
      dport: c.dport,
      state: c.state,
      expires: c.expires,
      template: c.template,
      peName: c.peName,
      peData: c.peData,
    })),
  );
}

/** -L --timeout --json. */
export function jsonTimeouts(t: Timeouts): string {
  return pretty(jsonTimeoutsValue(t));
}

/** -L --daemon --json. */
export function jsonDaemons(daemons: readonly SyncDaemonConfig[]): string {
  const order = (d: SyncDaemonConfig) => (d.state === 'master' ? 0 : 1);
  return pretty(
    daemons
      .slice()
      .sort((a, b) => order(a) - order(b))
      .map((d) => ({
        state: d.state,
        mcastIfn: d.mcastIfn,
        syncid: d.syncid,
        maxlen: d.maxlen,
        group: d.group,
        port: d.port,
        ttl: d.ttl,
      })),
  );
}

/** Every address a non-numeric listing of these will print, for resolving ahead of time. */
export function addressesOf(table?: Pick<TableView, 'services'>, conns?: readonly ConnView[]): string[] {
  const set = new Set<string>();
  for (const s of table?.services ?? []) {
    if (!s.fwmark) set.add(s.addr);
    for (const d of s.dests) set.add(d.addr);
  }
  for (const c of conns ?? []) {
    set.add(c.caddr);
    set.add(c.vaddr);
    set.add(c.daddr);
  }
  return [...set];
}
