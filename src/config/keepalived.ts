/**
 * keepalived.conf to the tsvs model. The LVS part is loaded (virtual_server, virtual_server
 * group and virtual_server_group, real_server, sorry_server, quorum/hysteresis, notify
 * scripts, and the TCP_CHECK, HTTP_GET, SSL_GET, UDP_CHECK, DNS_CHECK and MISC_CHECK
 * checkers with keepalived's defaults and inheritance: virtual server -> real server ->
 * checker), and the VRRP part that src/ha runs: vrrp_instance (state, interface,
 * virtual_router_id, priority, advert_int, virtual_ipaddress, nopreempt, preempt_delay,
 * unicast_src_ip, unicast_peer, track_interface, track_script, notify_*) and vrrp_script. Every other keepalived
 * keyword is reported as unsupported with its place, never dropped silently; a word that is
 * not a keepalived keyword at all, or a bad value, is an error.
 */
import { canonicalAddr, familyOf, formatIPv4, parseIPv4, parseMask4 } from '../core/addr.js';
import { DEFAULT_PERSISTENT_TIMEOUT, MAX_TIMEOUT, SCHED_FLAGS } from '../core/schema.js';
import type { Family, FwdMethod, Protocol, TunnelOptions } from '../core/types.js';
import { DNS_TYPES } from '../health/dns.js';
import { ConfigError, formatDiagnostic, suggest } from './errors.js';
import { KEEPALIVED_KEYWORDS } from './keepalived-keywords.js';
import { lexKeepalived, type LexOptions, type Stmt } from './keepalived-lexer.js';
import {
  checkerDefaults,
  type CheckerConfig,
  type CheckerType,
  type Diagnostic,
  type HttpUrl,
  type Origin,
  type RealServerConfig,
  type TsvsConfig,
  type VirtualServiceConfig,
  type VrrpInstanceConfig,
  type VrrpScriptConfig,
} from './model.js';
import { checkModel } from './schema.js';

const LB_KIND: Record<string, FwdMethod> = { NAT: 'masq', DR: 'route', TUN: 'tunnel', FNAT: 'fullnat', FULLNAT: 'fullnat' };
const CHECKERS: Record<string, CheckerType> = { TCP_CHECK: 'tcp', HTTP_GET: 'http', SSL_GET: 'https', UDP_CHECK: 'udp', DNS_CHECK: 'dns', MISC_CHECK: 'misc' };
const UNSUPPORTED_CHECKERS = new Set(['SMTP_CHECK', 'PING_CHECK', 'BFD_CHECK', 'FILE_CHECK']);
/** Blocks whose lines are list items, not keywords. */
const LIST_BLOCKS = new Set([
  'notification_email', 'virtual_ipaddress', 'virtual_ipaddress_excluded', 'virtual_routes', 'virtual_rules', 'static_ipaddress',
  'static_routes', 'static_rules', 'track_interface', 'track_script', 'track_process', 'track_file', 'track_bfd', 'unicast_peer', 'group',
  'linkbeat_interfaces',
]);
/** Top-level keywords tsvs does not act on (reported as unsupported). */
const TOP_LEVEL = new Set([
  'vrrp_sync_group', 'static_ipaddress', 'static_routes', 'static_rules', 'linkbeat_interfaces', 'bfd_instance',
  'garp_group', 'track_file', 'vrrp_track_process', 'net_namespace', 'net_namespace_ipvs', 'instance', 'use_pid_dir', 'SSL',
  'track_process', 'namespace_with_ipsets',
]);
/** The largest number of services one virtual_server_group range may expand to. */
const MAX_RANGE = 256;

/** Checker settings inherited from the virtual server and the real server. */
interface Inherit {
  interval?: number;
  timeout?: number;
  retry?: number;
  delayBeforeRetry?: number;
  alpha?: boolean;
  inhibit?: boolean;
  virtualhost?: string;
}

class Reader {
  readonly errors: Diagnostic[] = [];
  readonly unsupported: Diagnostic[] = [];
  /** global_defs says vrrp_version 3. */
  vrrpVersion3 = false;
  /** vrrp_script blocks dropped for having no script (tracking them is skipped, as keepalived). */
  readonly removedScripts = new Set<string>();
  constructor(readonly file: string) {}

  error(st: Stmt | Origin, msg: string): void {
    const at = 'at' in st ? st.at : st;
    this.errors.push({ ...at, message: msg });
  }
  unsupportedKw(st: Stmt, where: string, effect = 'ignored'): void {
    this.unsupported.push({ ...st.at, message: `unsupported keyword "${st.words[0]}" in ${where} (${effect})` });
  }
  /** Reports a keyword this context does not handle: unsupported if keepalived knows it, else an error. */
  other(st: Stmt, where: string): void {
    const kw = st.words[0] ?? '';
    if (KEEPALIVED_KEYWORDS.has(kw) || UNSUPPORTED_CHECKERS.has(kw)) this.unsupportedKw(st, where);
    else {
      const hint = suggest(kw, [...KEEPALIVED_KEYWORDS]);
      this.error(st, `unknown keyword "${kw}" in ${where}${hint ? ` (did you mean "${hint}"?)` : ''}`);
    }
  }
  args(st: Stmt, min: number, max: number, usage: string): boolean {
    const n = st.words.length - 1;
    if (n < min || n > max) {
      this.error(st, `${st.words[0]}: expected ${usage}, got ${n ? `"${st.words.slice(1).join(' ')}"` : 'nothing'}`);
      return false;
    }
    return true;
  }
  int(st: Stmt, i: number, min: number, max: number): number | undefined {
    const s = st.words[i];
    const v = s !== undefined && /^-?\d+$/.test(s) ? Number(s) : NaN;
    if (!Number.isInteger(v) || v < min || v > max) {
      this.error(st, `${st.words[0]}: expected an integer from ${min} to ${max}, got ${s === undefined ? 'nothing' : `"${s}"`}`);
      return undefined;
    }
    return v;
  }
  /** keepalived TIMER: seconds, fractions allowed. */
  timer(st: Stmt, i = 1): number | undefined {
    const s = st.words[i];
    const v = s !== undefined && /^\d+(\.\d+)?$/.test(s) ? Number(s) : NaN;
    if (!Number.isFinite(v) || v > MAX_TIMEOUT) {
      this.error(st, `${st.words[0]}: expected a time in seconds, got ${s === undefined ? 'nothing' : `"${s}"`}`);
      return undefined;
    }
    return v;
  }
  addr(st: Stmt, i: number, what = 'an IPv4 or IPv6 address'): string | undefined {
    const s = st.words[i];
    const c = s === undefined ? null : canonicalAddr(s);
    if (!c) this.error(st, `${st.words[0]}: expected ${what}, got ${s === undefined ? 'nothing' : `"${s}"`}`);
    return c ?? undefined;
  }
  port(st: Stmt, i: number): number | undefined {
    return this.int(st, i, 0, 65535);
  }
  /** A flag keyword that takes no argument. */
  flag(st: Stmt): boolean {
    return this.args(st, 0, 0, 'no argument');
  }
  /** A script: the rest of the line (quoted or not), optional user and group are reported. */
  script(st: Stmt): string | undefined {
    if (!this.args(st, 1, 3, 'a script [user [group]]')) return undefined;
    if (st.words.length > 2) this.unsupported.push({ ...st.at, message: `${st.words[0]}: running scripts as another user is not supported; runs as tsvsd's user` });
    return st.words[1];
  }
}

export interface KeepalivedOptions extends LexOptions {}

/** Parses keepalived.conf text into the tsvs model; throws ConfigError listing every error. */
export function parseKeepalivedConfig(text: string, file: string, opts: KeepalivedOptions = {}): TsvsConfig {
  const r = new Reader(file);
  const stmts = lexKeepalived(text, file, r.errors, opts);
  const cfg: TsvsConfig = { format: 'keepalived', file, services: [], vrrp: [], unsupported: r.unsupported };
  const groups = new Map<string, { st: Stmt; entries: Array<{ key: Pick<VirtualServiceConfig, 'af' | 'addr' | 'port' | 'fwmark'>; at: Origin }> }>();
  const pending: Stmt[] = [];
  const vrrpStmts: Stmt[] = [];
  for (const st of stmts) {
    const kw = st.words[0]!;
    switch (kw) {
      case 'global_defs':
        readGlobals(r, st, cfg);
        break;
      case 'virtual_server_group':
        if (r.args(st, 1, 1, 'a group name') && needBlock(r, st)) groups.set(st.words[1]!, { st, entries: readGroup(r, st) });
        break;
      case 'virtual_server':
        if (needBlock(r, st)) pending.push(st);
        break;
      case 'vrrp_instance':
        if (r.args(st, 1, 1, 'an instance name') && needBlock(r, st)) vrrpStmts.push(st);
        break;
      case 'vrrp_script':
        if (r.args(st, 1, 1, 'a script name') && needBlock(r, st)) {
          const sc = readVrrpScript(r, st);
          if (sc) (cfg.vrrpScripts ??= []).push(sc);
        }
        break;
      default:
        if (TOP_LEVEL.has(kw)) r.unsupportedKw(st, 'the top level', st.block ? 'block ignored' : 'ignored');
        else if (KEEPALIVED_KEYWORDS.has(kw)) r.error(st, `"${kw}" belongs inside a block, not at the top level (a misplaced "}"?)`);
        else r.other(st, 'the top level');
    }
  }
  for (const st of pending) cfg.services.push(...readVirtualServer(r, st, groups));
  for (const st of vrrpStmts) cfg.vrrp.push(readVrrp(r, st));
  if (!r.errors.length) r.errors.push(...checkModel(cfg));
  if (r.errors.length) throw new ConfigError(r.errors);
  return cfg;
}

function needBlock(r: Reader, st: Stmt): boolean {
  if (st.block) return true;
  r.error(st, `${st.words[0]}: expected a block "{ ... }"`);
  return false;
}

function readGlobals(r: Reader, st: Stmt, cfg: TsvsConfig): void {
  for (const s of st.block ?? []) {
    if (s.words[0] === 'lvs_timeouts') {
      const t = { tcp: 900, tcpfin: 120, udp: 300 };
      for (let i = 1; i < s.words.length; i += 2) {
        const k = s.words[i]!;
        if (k !== 'tcp' && k !== 'tcpfin' && k !== 'udp') {
          r.error(s, `lvs_timeouts: expected tcp, tcpfin or udp, got "${k}"`);
          continue;
        }
        const v = r.int(s, i + 1, 0, MAX_TIMEOUT);
        if (v !== undefined) t[k] = v;
      }
      cfg.timeouts = t;
    } else if (s.words[0] === 'vrrp_version' && s.words[1] === '3') {
      r.vrrpVersion3 = true;
    } else if (s.words[0] === 'lvs_sync_daemon') {
      readSyncDaemon(r, s, cfg);
    } else r.other(s, 'global_defs');
  }
}

/**
 * `lvs_sync_daemon IF [[inst] INSTANCE] [id N] [maxlen N] [port N] [ttl N] [group ADDR]`:
 * the IPVS sync daemon (src/sync). With an instance it follows that instance's state;
 * the syncid defaults to its virtual_router_id.
 */
function readSyncDaemon(r: Reader, s: Stmt, cfg: TsvsConfig): void {
  const w = s.words;
  if (!r.args(s, 1, 13, 'an interface [[inst] INSTANCE] [id N] [maxlen N] [port N] [ttl N] [group ADDR]')) return;
  const d: NonNullable<NonNullable<TsvsConfig['sync']>['daemon']> = { mcastIfn: w[1]! };
  const keys = new Set(['id', 'maxlen', 'port', 'ttl', 'group']);
  let i = 2;
  if (w[i] === 'inst') i++;
  if (w[i] !== undefined && !keys.has(w[i]!)) d.instance = w[i++]!;
  for (; i < w.length; i += 2) {
    const k = w[i]!;
    if (!keys.has(k)) {
      r.error(s, `lvs_sync_daemon: expected id, maxlen, port, ttl or group, got "${k}"`);
      return;
    }
    if (k === 'group') {
      const g = r.addr(s, i + 1, 'a multicast address');
      if (g === undefined) return;
      if (g.includes(':') ? !g.startsWith('ff') : Number(g.split('.')[0]) >>> 4 !== 0xe) {
        r.error(s, `lvs_sync_daemon: group "${g}" is not a multicast address`);
        return;
      }
      d.group = g;
      continue;
    }
    const [lo, hi] = k === 'id' ? [0, 255] : k === 'maxlen' ? [1, 65535 - 20 - 8] : k === 'port' ? [1, 65535] : [1, 255];
    const v = r.int(s, i + 1, lo!, hi!);
    if (v === undefined) return;
    if (k === 'id') d.syncid = v;
    else if (k === 'maxlen') d.maxlen = v;
    else if (k === 'port') d.port = v;
    else d.ttl = v;
  }
  cfg.sync = { ...cfg.sync, daemon: d };
}

function readGroup(r: Reader, st: Stmt): Array<{ key: Pick<VirtualServiceConfig, 'af' | 'addr' | 'port' | 'fwmark'>; at: Origin }> {
  const out: Array<{ key: Pick<VirtualServiceConfig, 'af' | 'addr' | 'port' | 'fwmark'>; at: Origin }> = [];
  for (const e of st.block ?? []) {
    const w = e.words;
    if (w[0] === 'fwmark') {
      const mark = r.int(e, 1, 1, 0xffffffff);
      const af: Family = w[2] === 'inet6' ? 6 : 4;
      if (mark !== undefined) out.push({ key: { af, addr: af === 6 ? '::' : '0.0.0.0', port: 0, fwmark: mark }, at: e.at });
      continue;
    }
    const port = w[1] === undefined ? 0 : r.port(e, 1);
    const addrs = expandRange(w[0]!);
    if (typeof addrs === 'string') {
      r.error(e, `virtual_server_group ${st.words[1]}: ${addrs}`);
      continue;
    }
    for (const a of addrs) out.push({ key: { af: familyOf(a) ?? 4, addr: a, port: port ?? 0, fwmark: 0 }, at: e.at });
  }
  return out;
}

/** "a.b.c.d", "a.b.c.d-e", "a.b.c.d-e.f.g.h" or "a.b.c.d/nn" to addresses; a string is an error. */
function expandRange(s: string): string[] | string {
  const single = canonicalAddr(s);
  if (single) return [single];
  let lo: number | null = null;
  let hi: number | null = null;
  const dash = /^(\d+\.\d+\.\d+\.)(\d+)-(\d+)$/.exec(s);
  const v6 = /^(.*:)([0-9a-fA-F]{1,4})-([0-9a-fA-F]{1,4})$/.exec(s);
  if (v6) {
    // IPv6: the range replaces the last group, in hex (keepalived "ae00::2-9").
    const a = parseInt(v6[2]!, 16);
    const b = parseInt(v6[3]!, 16);
    const first = canonicalAddr(v6[1]! + v6[2]!);
    if (!first || b < a) return `bad address range "${s}"`;
    if (b - a + 1 > MAX_RANGE) return `range "${s}" has ${b - a + 1} addresses; at most ${MAX_RANGE} are supported`;
    const out: string[] = [];
    for (let v = a; v <= b; v++) out.push(canonicalAddr(v6[1]! + v.toString(16))!);
    return out;
  }
  const full = /^([\d.]+)-([\d.]+)$/.exec(s);
  const cidr = /^([\d.]+)\/(\d+)$/.exec(s);
  if (dash) {
    lo = parseIPv4(dash[1]! + dash[2]!);
    hi = parseIPv4(dash[1]! + dash[3]!);
  } else if (full) {
    lo = parseIPv4(full[1]!);
    hi = parseIPv4(full[2]!);
  } else if (cidr && Number(cidr[2]) <= 32) {
    const base = parseIPv4(cidr[1]!);
    const bits = Number(cidr[2]);
    if (base !== null) {
      const size = 2 ** (32 - bits);
      lo = base - (base % size);
      hi = lo + size - 1;
    }
  } else return `expected an address, a range (a.b.c.d-e) or a prefix (a.b.c.d/nn), got "${s}"`;
  if (lo === null || hi === null || hi < lo) return `bad address range "${s}"`;
  if (hi - lo + 1 > MAX_RANGE) return `range "${s}" has ${hi - lo + 1} addresses; at most ${MAX_RANGE} are supported`;
  const out: string[] = [];
  for (let v = lo; v <= hi; v++) out.push(formatIPv4(v));
  return out;
}

function readVirtualServer(r: Reader, st: Stmt, groups: Map<string, { entries: Array<{ key: Pick<VirtualServiceConfig, 'af' | 'addr' | 'port' | 'fwmark'>; at: Origin }> }>): VirtualServiceConfig[] {
  const w = st.words;
  let keys: Array<Pick<VirtualServiceConfig, 'af' | 'addr' | 'port' | 'fwmark'>> = [];
  let name: string;
  if (w[1] === 'group') {
    if (!r.args(st, 2, 2, 'group NAME')) return [];
    const g = groups.get(w[2]!);
    if (!g) {
      r.error(st, `virtual_server group ${w[2]}: no virtual_server_group "${w[2]}" is defined`);
      return [];
    }
    keys = g.entries.map((e) => e.key);
    name = `group ${w[2]}`;
  } else if (w[1] === 'fwmark') {
    if (!r.args(st, 2, 2, 'fwmark NUMBER')) return [];
    const mark = r.int(st, 2, 1, 0xffffffff);
    if (mark === undefined) return [];
    keys = [{ af: 4, addr: '0.0.0.0', port: 0, fwmark: mark }];
    name = `fwmark ${mark}`;
  } else {
    if (!r.args(st, 1, 2, 'an address and a port')) return [];
    const addr = r.addr(st, 1);
    const port = w[2] === undefined ? 0 : r.port(st, 2);
    if (!addr || port === undefined) return [];
    keys = [{ af: familyOf(addr) ?? 4, addr, port, fwmark: 0 }];
    name = `${addr}${w[2] ? ` ${port}` : ''}`;
  }
  const where = `virtual_server ${name}`;
  let protocol: Protocol = 'tcp';
  let scheduler = 'wlc';
  let schedFlags = 0;
  let persistent = 0;
  let netmask: number | undefined;
  let ops = false;
  let pe = '';
  let fwd: FwdMethod = 'masq';
  let tunnel: TunnelOptions | undefined;
  let ipFamily: Family | undefined;
  const inh: Inherit = {};
  const base: Omit<VirtualServiceConfig, 'af' | 'addr' | 'port' | 'fwmark' | 'protocol' | 'scheduler' | 'schedFlags' | 'persistent' | 'netmask' | 'ops' | 'pe'> = {
    realServers: [],
    quorum: 1,
    hysteresis: 0,
    omega: false,
    origin: st.at,
  };
  const rsStmts: Stmt[] = [];
  let sorry: Stmt | undefined;
  let sorryInhibit = false;
  let sorryFwd: FwdMethod | undefined;
  for (const s of st.block ?? []) {
    const kw = s.words[0]!;
    switch (kw) {
      case 'lb_algo':
      case 'lvs_sched':
        if (r.args(s, 1, 1, 'a scheduler name')) scheduler = s.words[1]!;
        break;
      case 'lb_kind':
      case 'lvs_method': {
        const m = readMethod(r, s);
        if (m) [fwd, tunnel] = m;
        break;
      }
      case 'protocol': {
        const p = s.words[1]?.toUpperCase();
        if (r.args(s, 1, 1, 'TCP, UDP or SCTP') && (p === 'TCP' || p === 'UDP' || p === 'SCTP')) protocol = p.toLowerCase() as Protocol;
        else if (s.words.length === 2) r.error(s, `protocol: expected TCP, UDP or SCTP, got "${s.words[1]}"`);
        break;
      }
      case 'persistence_timeout':
        if (r.args(s, 0, 1, '[seconds]')) persistent = s.words[1] === undefined ? DEFAULT_PERSISTENT_TIMEOUT : (r.int(s, 1, 1, MAX_TIMEOUT) ?? 0);
        break;
      case 'persistence_granularity':
        if (r.args(s, 1, 1, 'a netmask')) {
          const v = /^\d+$/.test(s.words[1]!) ? Number(s.words[1]) : parseMask4(s.words[1]!);
          if (v === null || !Number.isFinite(v)) r.error(s, `persistence_granularity: expected a netmask like 255.255.255.0 (IPv6: a prefix length), got "${s.words[1]}"`);
          else netmask = v;
        }
        break;
      case 'persistence_engine':
        if (r.args(s, 1, 1, 'an engine name (sip)')) pe = s.words[1]!;
        break;
      case 'ops':
        if (r.flag(s)) ops = true;
        break;
      case 'ip_family':
        if (r.args(s, 1, 1, 'inet or inet6')) {
          if (s.words[1] === 'inet' || s.words[1] === 'inet6') ipFamily = s.words[1] === 'inet6' ? 6 : 4;
          else r.error(s, `ip_family: expected inet or inet6, got "${s.words[1]}"`);
        }
        break;
      case 'virtualhost':
        if (r.args(s, 1, 1, 'a host name')) inh.virtualhost = s.words[1]!;
        break;
      case 'alpha':
        if (r.flag(s)) inh.alpha = true;
        break;
      case 'omega':
        if (r.flag(s)) base.omega = true;
        break;
      case 'quorum': {
        const v = r.args(s, 1, 1, 'a weight') ? r.int(s, 1, 0, 0xffffffff) : undefined;
        if (v !== undefined) base.quorum = v;
        break;
      }
      case 'hysteresis': {
        const v = r.args(s, 1, 1, 'a weight') ? r.int(s, 1, 0, 0xffffffff) : undefined;
        if (v !== undefined) base.hysteresis = v;
        break;
      }
      case 'quorum_up':
      case 'quorum_down': {
        const sc = r.script(s);
        if (sc) base[kw === 'quorum_up' ? 'quorumUp' : 'quorumDown'] = sc;
        break;
      }
      case 'sorry_server':
        if (r.args(s, 1, 2, 'an address [port]')) sorry = s;
        break;
      case 'sorry_server_inhibit':
        if (r.flag(s)) sorryInhibit = true;
        break;
      case 'sorry_server_lvs_method': {
        const m = readMethod(r, s);
        if (m) sorryFwd = m[0];
        break;
      }
      case 'real_server':
        if (needBlock(r, s)) rsStmts.push(s);
        break;
      default:
        if (kw in SCHED_FLAGS) {
          if (r.flag(s)) schedFlags |= SCHED_FLAGS[kw]!;
        } else if (!readCommon(r, s, inh)) r.other(s, where);
    }
  }
  const services: VirtualServiceConfig[] = [];
  for (const k of keys) {
    const af = k.fwmark ? (ipFamily ?? k.af) : k.af;
    if (!k.fwmark && ipFamily && ipFamily !== af) r.error(st, `${where}: ip_family inet${ipFamily === 6 ? '6' : ''} does not match the address ${k.addr}`);
    if (!k.fwmark && k.port === 0 && !persistent) r.error(st, `${where}: the port may be omitted only for a persistent service (persistence_timeout)`);
    const svc: VirtualServiceConfig = {
      af,
      protocol: k.fwmark ? 'tcp' : protocol,
      addr: k.fwmark ? (af === 6 ? '::' : '0.0.0.0') : k.addr,
      port: k.port,
      fwmark: k.fwmark,
      scheduler,
      schedFlags,
      persistent,
      netmask: netmask ?? (af === 6 ? 128 : 0xffffffff),
      ops,
      pe,
      ...base,
      realServers: [],
    };
    if (base.quorumUp) svc.quorumUp = base.quorumUp;
    if (base.quorumDown) svc.quorumDown = base.quorumDown;
    services.push(svc);
  }
  // Real servers and the sorry server are read once, then given to every service of a group.
  const realServers = rsStmts.map((s) => readRealServer(r, s, where, fwd, tunnel, inh)).filter((x): x is RealServerConfig => !!x);
  let sorryServer: VirtualServiceConfig['sorryServer'];
  if (sorry) {
    const a = r.addr(sorry, 1);
    const p = sorry.words[2] === undefined ? 0 : r.port(sorry, 2);
    if (a && p !== undefined) sorryServer = { addr: a, port: p, fwd: sorryFwd ?? fwd, inhibit: sorryInhibit };
  }
  for (const svc of services) {
    svc.realServers = realServers.map((rs) => ({ ...rs, checkers: rs.checkers.map((c) => ({ ...c })) }));
    if (sorryServer) svc.sorryServer = { ...sorryServer };
  }
  return services;
}

function readMethod(r: Reader, s: Stmt): [FwdMethod, TunnelOptions | undefined] | undefined {
  const m = LB_KIND[(s.words[1] ?? '').toUpperCase()];
  if (!m) {
    r.error(s, `${s.words[0]}: expected NAT, DR or TUN, got ${s.words[1] === undefined ? 'nothing' : `"${s.words[1]}"`}`);
    return undefined;
  }
  let tunnel: TunnelOptions | undefined;
  if (m === 'tunnel' && s.words[2] === 'type') {
    const t = s.words[3];
    if (t === 'ipip' || t === 'gre') tunnel = { type: t };
    else if (t === 'gue') {
      const port = s.words[4] === 'port' ? r.port(s, 5) : undefined;
      if (port === undefined) r.error(s, `${s.words[0]}: TUN type gue needs "port NUMBER"`);
      else tunnel = { type: 'gue', port };
    } else r.error(s, `${s.words[0]}: tunnel type must be ipip, gue or gre, got "${t ?? ''}"`);
    const cs = s.words.find((x) => x === 'nocsum' || x === 'csum' || x === 'remcsum');
    if (tunnel && cs) tunnel.csum = cs as TunnelOptions['csum'];
  } else if (s.words.length > 2) r.error(s, `${s.words[0]}: unexpected "${s.words.slice(2).join(' ')}"`);
  return [m, tunnel];
}

/** Checker settings valid on a virtual server, a real server and a checker; false if `s` is not one. */
function readCommon(r: Reader, s: Stmt, inh: Inherit): boolean {
  switch (s.words[0]) {
    case 'delay_loop': {
      const v = r.args(s, 1, 1, 'seconds') ? r.timer(s) : undefined;
      if (v !== undefined) inh.interval = v;
      return true;
    }
    case 'connect_timeout': {
      const v = r.args(s, 1, 1, 'seconds') ? r.timer(s) : undefined;
      if (v !== undefined) inh.timeout = v;
      return true;
    }
    case 'retry':
    case 'nb_get_retry': {
      const v = r.args(s, 1, 1, 'a count') ? r.int(s, 1, 0, 1000) : undefined;
      if (v !== undefined) inh.retry = v;
      return true;
    }
    case 'delay_before_retry': {
      const v = r.args(s, 1, 1, 'seconds') ? r.timer(s) : undefined;
      if (v !== undefined) inh.delayBeforeRetry = v;
      return true;
    }
    case 'inhibit_on_failure':
      if (r.flag(s)) inh.inhibit = true;
      return true;
    case 'warmup':
      r.unsupportedKw(s, 'a checker setting', 'tsvs always spreads first checks over up to one second');
      return true;
  }
  return false;
}

function readRealServer(r: Reader, st: Stmt, vsWhere: string, fwd: FwdMethod, tunnel: TunnelOptions | undefined, vsInh: Inherit): RealServerConfig | undefined {
  if (!r.args(st, 1, 2, 'an address [port]')) return undefined;
  const addr = r.addr(st, 1);
  const port = st.words[2] === undefined ? 0 : r.port(st, 2);
  if (!addr || port === undefined) return undefined;
  const where = `real_server ${addr}${st.words[2] ? ` ${port}` : ''} of ${vsWhere}`;
  const inh: Inherit = { ...vsInh };
  const rs: RealServerConfig = {
    af: familyOf(addr) ?? 4,
    addr,
    port,
    weight: 1,
    fwd,
    uThreshold: 0,
    lThreshold: 0,
    inhibitOnFailure: false,
    checkers: [],
    origin: st.at,
  };
  if (tunnel) rs.tunnel = tunnel;
  const checkStmts: Stmt[] = [];
  for (const s of st.block ?? []) {
    const kw = s.words[0]!;
    switch (kw) {
      case 'weight': {
        const v = r.args(s, 1, 1, 'a weight') ? r.int(s, 1, 0, 65535) : undefined;
        if (v !== undefined) rs.weight = v;
        break;
      }
      case 'lb_kind':
      case 'lvs_method': {
        const m = readMethod(r, s);
        if (m) {
          rs.fwd = m[0];
          if (m[1]) rs.tunnel = m[1];
        }
        break;
      }
      case 'uthreshold':
      case 'lthreshold': {
        const v = r.args(s, 1, 1, 'a connection count') ? r.int(s, 1, 0, 0xffffffff) : undefined;
        if (v !== undefined) rs[kw === 'uthreshold' ? 'uThreshold' : 'lThreshold'] = v;
        break;
      }
      case 'notify_up':
      case 'notify_down': {
        const sc = r.script(s);
        if (sc) rs[kw === 'notify_up' ? 'notifyUp' : 'notifyDown'] = sc;
        break;
      }
      case 'alpha':
        if (r.flag(s)) inh.alpha = true;
        break;
      case 'virtualhost':
        if (r.args(s, 1, 1, 'a host name')) inh.virtualhost = s.words[1]!;
        break;
      default:
        if (kw in CHECKERS) checkStmts.push(s);
        else if (UNSUPPORTED_CHECKERS.has(kw)) r.unsupportedKw(s, where, `checker not supported; ${addr} is not checked by it`);
        else if (!readCommon(r, s, inh)) r.other(s, where);
    }
  }
  rs.inhibitOnFailure = inh.inhibit ?? false;
  for (const s of checkStmts) {
    const c = readChecker(r, s, where, inh);
    if (c) rs.checkers.push(c);
  }
  return rs;
}

function readChecker(r: Reader, st: Stmt, rsWhere: string, rsInh: Inherit): CheckerConfig | undefined {
  const kw = st.words[0]!;
  const type = CHECKERS[kw]!;
  if (!r.args(st, 0, 0, 'a block')) return undefined;
  const where = `${kw} of ${rsWhere}`;
  const inh: Inherit = { ...rsInh };
  const d = checkerDefaults(type);
  const c: CheckerConfig = { type, ...d };
  const urls: HttpUrl[] = [];
  let sni = false;
  let misc: CheckerConfig['misc'] | undefined;
  const udp = { requireReply: false, minReplyLength: 0, maxReplyLength: 255 } as NonNullable<CheckerConfig['udp']>;
  const dns = { type: 'SOA', name: '.' };
  for (const s of st.block ?? []) {
    const k = s.words[0]!;
    if (readCommon(r, s, inh)) continue;
    switch (k) {
      case 'connect_ip': {
        const a = r.args(s, 1, 1, 'an address') ? r.addr(s, 1) : undefined;
        if (a) c.connectIp = a;
        continue;
      }
      case 'connect_port': {
        const p = r.args(s, 1, 1, 'a port') ? r.int(s, 1, 1, 65535) : undefined;
        if (p !== undefined) c.connectPort = p;
        continue;
      }
      case 'bindto': {
        const a = r.args(s, 1, 1, 'an address') ? r.addr(s, 1) : undefined;
        if (a) c.bindto = a;
        continue;
      }
      case 'alpha':
        if (r.flag(s)) inh.alpha = true;
        continue;
    }
    if ((type === 'http' || type === 'https') && readHttpKeyword(r, s, urls, inh, where)) {
      if (k === 'enable_sni') sni = true;
      continue;
    }
    if (type === 'udp' && ['payload', 'require_reply', 'min_reply_length', 'max_reply_length'].includes(k)) {
      if (k === 'payload') {
        if (r.args(s, 1, 1, 'hex bytes') && /^([0-9a-fA-F]{2})+$/.test(s.words[1]!)) udp.payload = s.words[1]!.toLowerCase();
        else if (s.words.length === 2) r.error(s, `payload: expected hex bytes like 0a1b, got "${s.words[1]}"`);
      } else if (k === 'require_reply') {
        if (r.flag(s)) udp.requireReply = true;
      } else {
        const v = r.args(s, 1, 1, 'a length') ? r.int(s, 1, 0, 65535) : undefined;
        if (v !== undefined) udp[k === 'min_reply_length' ? 'minReplyLength' : 'maxReplyLength'] = v;
      }
      continue;
    }
    if (type === 'dns' && (k === 'type' || k === 'name')) {
      if (!r.args(s, 1, 1, k === 'type' ? 'a query type' : 'a domain name')) continue;
      if (k === 'type') {
        const t = s.words[1]!.toUpperCase();
        if (t in DNS_TYPES) dns.type = t;
        else r.error(s, `type: expected one of ${Object.keys(DNS_TYPES).join(', ')}, got "${s.words[1]}"`);
      } else dns.name = s.words[1]!;
      continue;
    }
    if (type === 'misc' && ['misc_path', 'misc_timeout', 'misc_dynamic', 'user'].includes(k)) {
      misc ??= { path: '', timeout: 0, dynamic: false };
      if (k === 'misc_path') {
        if (r.args(s, 1, 1, 'a command line (quote it when it has arguments)')) misc.path = s.words[1]!;
      } else if (k === 'misc_timeout') {
        const v = r.args(s, 1, 1, 'seconds') ? r.timer(s) : undefined;
        if (v !== undefined) misc.timeout = v;
      } else if (k === 'misc_dynamic') {
        if (r.flag(s)) misc.dynamic = true;
      } else r.unsupportedKw(s, where, 'the script runs as tsvsd\'s user');
      continue;
    }
    if (['bind_port', 'bind_if', 'fwmark', 'log_all_failures'].includes(k)) {
      r.unsupportedKw(s, where);
      continue;
    }
    r.other(s, where);
  }
  c.interval = inh.interval ?? d.interval;
  c.timeout = inh.timeout ?? d.timeout;
  c.retry = inh.retry ?? d.retry;
  c.delayBeforeRetry = inh.delayBeforeRetry ?? (type === 'dns' ? c.interval : d.delayBeforeRetry);
  c.alpha = inh.alpha ?? false;
  if (type === 'http' || type === 'https') {
    c.http = { urls: urls.length ? urls : [{ path: '/', statusCodes: [[200, 299]] }], sni };
    if (inh.virtualhost) c.http.virtualhost = inh.virtualhost;
  } else if (type === 'udp') c.udp = udp;
  else if (type === 'dns') c.dns = dns;
  else if (type === 'misc') {
    if (!misc?.path) {
      r.error(st, `${where}: misc_path is required`);
      return undefined;
    }
    c.misc = misc;
  }
  return c;
}

function readHttpKeyword(r: Reader, s: Stmt, urls: HttpUrl[], inh: Inherit, where: string): boolean {
  switch (s.words[0]) {
    case 'url': {
      if (!needBlock(r, s)) return true;
      const url: HttpUrl = { path: '/', statusCodes: [] };
      let hasPath = false;
      for (const u of s.block ?? []) {
        const k = u.words[0]!;
        if (k === 'path') {
          if (r.args(u, 1, 1, 'a path')) {
            url.path = u.words[1]!;
            hasPath = true;
          }
        } else if (k === 'digest') {
          if (r.args(u, 1, 1, 'an MD5 digest') && /^[0-9a-fA-F]{32}$/.test(u.words[1]!)) url.digest = u.words[1]!.toLowerCase();
          else if (u.words.length === 2) r.error(u, `digest: expected an MD5 digest (32 hex digits), got "${u.words[1]}"`);
        } else if (k === 'status_code') {
          if (!r.args(u, 1, 100, 'status codes or ranges')) continue;
          for (const code of u.words.slice(1)) {
            const m = /^(\d{3})(?:-(\d{3}))?$/.exec(code);
            const lo = m ? Number(m[1]) : NaN;
            const hi = m ? Number(m[2] ?? m[1]) : NaN;
            if (!m || lo < 100 || hi > 599 || lo > hi) r.error(u, `status_code: expected a code or range like 200 or 200-299, got "${code}"`);
            else url.statusCodes.push([lo, hi]);
          }
        } else if (k === 'virtualhost') {
          if (r.args(u, 1, 1, 'a host name')) url.virtualhost = u.words[1]!;
        } else if (['regex', 'regex_no_match', 'regex_options', 'regex_stack', 'regex_min_offset', 'regex_max_offset'].includes(k)) {
          r.unsupportedKw(u, `url of ${where}`, 'body regex not checked');
        } else r.other(u, `url of ${where}`);
      }
      if (!hasPath) r.error(s, `url of ${where}: path is required`);
      if (!url.statusCodes.length) url.statusCodes = [[200, 299]];
      urls.push(url);
      return true;
    }
    case 'virtualhost':
      if (r.args(s, 1, 1, 'a host name')) inh.virtualhost = s.words[1]!;
      return true;
    case 'enable_sni':
      r.flag(s);
      return true;
    case 'http_protocol':
      if (r.args(s, 1, 1, '1.0, 1.0C or 1.1') && !['1.0', '1.0C', '1.1', '1.0c'].includes(s.words[1]!)) r.error(s, `http_protocol: expected 1.0, 1.0C or 1.1, got "${s.words[1]}"`);
      else r.unsupportedKw(s, where, 'tsvs sends HTTP/1.1 with Connection: close');
      return true;
    case 'fast_recovery':
      r.unsupportedKw(s, where);
      return true;
  }
  return false;
}

/** Script keywords of vrrp_instance, to the model's fields. */
const VRRP_NOTIFY = { notify_master: 'notifyMaster', notify_backup: 'notifyBackup', notify_fault: 'notifyFault', notify_stop: 'notifyStop', notify: 'notify' } as const;

/** "NAME [weight N] [reverse|no_reverse]" of track_interface / track_script. */
function readTrackLine(r: Reader, s: Stmt, where: string): { name: string; weight?: number } | undefined {
  const w = s.words;
  const t: { name: string; weight?: number } = { name: w[0]! };
  for (let i = 1; i < w.length; i++) {
    if (w[i] === 'weight') {
      const v = r.int(s, i + 1, -253, 253);
      if (v === undefined) return undefined;
      t.weight = v;
      i++;
    } else if (w[i] === 'reverse' || w[i] === 'no_reverse') {
      r.unsupported.push({ ...s.at, message: `unsupported keyword "${w[i]}" in ${where} (ignored: the weight applies as written)` });
    } else {
      r.error(s, `${where}: expected "${w[0]} [weight N]", got "${w.slice(1).join(' ')}"`);
      return undefined;
    }
  }
  return t;
}

function readVrrp(r: Reader, st: Stmt): VrrpInstanceConfig {
  const v: VrrpInstanceConfig = { name: st.words[1]!, virtualIpaddress: [], raw: {}, at: {}, origin: st.at };
  const where = `vrrp_instance ${v.name}`;
  let version3 = false;
  const mark = r.errors.length;
  for (const s of st.block ?? []) {
    const k = s.words[0]!;
    if (!KEEPALIVED_KEYWORDS.has(k)) {
      r.other(s, where);
      continue;
    }
    v.raw[k] = s.block ? s.block.map((b) => b.words.join(' ')) : s.words.slice(1);
    v.at![k] = s.at;
    switch (k) {
      case 'state':
        if (s.words[1] === 'MASTER' || s.words[1] === 'BACKUP') v.state = s.words[1];
        else r.error(s, `${where}: state: expected MASTER or BACKUP, got "${s.words[1] ?? ''}"`);
        break;
      case 'interface':
        if (r.args(s, 1, 1, 'an interface name')) v.interface = s.words[1]!;
        break;
      case 'virtual_router_id': {
        const n = r.args(s, 1, 1, 'a VRID (1-255)') ? r.int(s, 1, 1, 255) : undefined;
        if (n !== undefined) v.virtualRouterId = n;
        break;
      }
      case 'priority': {
        const n = r.args(s, 1, 1, 'a priority (1-255)') ? r.int(s, 1, 1, 255) : undefined;
        if (n !== undefined) v.priority = n;
        break;
      }
      case 'advert_int': {
        const n = r.args(s, 1, 1, 'seconds') ? r.timer(s) : undefined;
        if (n !== undefined) v.advertInt = n;
        break;
      }
      case 'nopreempt':
        if (r.flag(s)) v.nopreempt = true;
        break;
      case 'preempt':
        if (r.flag(s)) v.nopreempt = false;
        break;
      case 'preempt_delay': {
        const n = r.args(s, 1, 1, 'seconds (0-1000)') ? r.timer(s) : undefined;
        if (n !== undefined) v.preemptDelay = n;
        break;
      }
      case 'virtual_ipaddress':
        if (needBlock(r, s)) v.virtualIpaddress = (s.block ?? []).map((b) => b.words.join(' '));
        break;
      case 'unicast_src_ip': {
        const a = r.args(s, 1, 1, 'an address') ? r.addr(s, 1) : undefined;
        if (a) v.unicastSrcIp = a;
        break;
      }
      case 'unicast_peer':
        if (!needBlock(r, s)) break;
        v.unicastPeer = [];
        for (const p of s.block ?? []) {
          const a = r.addr(p, 0, 'a peer address');
          if (a) v.unicastPeer.push(a);
          if (p.words.length > 1) r.unsupported.push({ ...p.at, message: `unsupported keyword "${p.words[1]}" in unicast_peer of ${where} (ignored)` });
        }
        break;
      case 'track_interface':
      case 'track_script': {
        if (!needBlock(r, s)) break;
        const list = (s.block ?? [])
          .map((b) => {
            const t = readTrackLine(r, b, `${k} of ${where}`);
            if (t && k === 'track_script' && r.removedScripts.has(t.name)) {
              r.unsupported.push({ ...b.at, message: `track_script of ${where}: "${t.name}" has no script; not tracked` });
              return undefined;
            }
            return t;
          })
          .filter((x): x is { name: string; weight?: number } => !!x);
        if (k === 'track_interface') v.trackInterface = list.map((t) => ({ name: t.name, weight: t.weight ?? 0 }));
        else v.trackScript = list;
        break;
      }
      case 'version':
        if (s.words[1] === '3') version3 = true;
        else r.unsupported.push({ ...s.at, message: `unsupported keyword "version" ${s.words[1] ?? ''} in ${where} (tsvs speaks VRRPv3 only)` });
        break;
      case 'authentication':
        r.unsupportedKw(s, where, 'VRRPv3 has no authentication; block ignored');
        break;
      default:
        if (k in VRRP_NOTIFY) {
          const sc = r.script(s);
          if (sc) v[VRRP_NOTIFY[k as keyof typeof VRRP_NOTIFY]] = sc;
        } else r.unsupportedKw(s, where, s.block ? 'block ignored' : 'ignored');
    }
  }
  // Bad values name the instance too.
  for (const e of r.errors.slice(mark)) if (!e.message.startsWith('vrrp')) e.message = `vrrp instance ${v.name}: ${e.message}`;
  if (!version3 && !r.vrrpVersion3) {
    r.unsupported.push({ ...st.at, message: `${where}: tsvs speaks VRRPv3; keepalived defaults to VRRPv2, so keepalived peers need vrrp_version 3 in global_defs` });
  }
  return v;
}

function readVrrpScript(r: Reader, st: Stmt): VrrpScriptConfig | undefined {
  const name = st.words[1]!;
  const where = `vrrp_script ${name}`;
  const sc: VrrpScriptConfig = { name, script: '', interval: 1, timeout: 0, weight: 0, rise: 1, fall: 1, initFail: false, origin: st.at };
  for (const s of st.block ?? []) {
    const k = s.words[0]!;
    switch (k) {
      case 'script':
        if (r.args(s, 1, 3, 'a command line (quote it when it has arguments)')) {
          sc.script = s.words[1]!;
          if (s.words.length > 2) r.unsupported.push({ ...s.at, message: `${k}: running scripts as another user is not supported; runs as tsvsd's user` });
        }
        break;
      case 'interval':
      case 'timeout': {
        const n = r.args(s, 1, 1, 'seconds') ? r.timer(s) : undefined;
        if (n !== undefined) sc[k] = n;
        break;
      }
      case 'weight': {
        if (!r.args(s, 1, 2, 'a weight (-253..253) [reverse]')) break;
        const n = r.int(s, 1, -253, 253);
        if (n !== undefined) sc.weight = n;
        if (s.words[2]) r.unsupported.push({ ...s.at, message: `unsupported keyword "${s.words[2]}" in ${where} (ignored)` });
        break;
      }
      case 'rise':
      case 'fall': {
        const n = r.args(s, 1, 1, 'a count') ? r.int(s, 1, 1, 1000) : undefined;
        if (n !== undefined) sc[k] = n;
        break;
      }
      case 'init_fail':
        if (r.flag(s)) sc.initFail = true;
        break;
      default:
        r.other(s, where);
    }
  }
  if (!sc.timeout) sc.timeout = sc.interval;
  if (!sc.script) {
    // keepalived removes it with a warning (e.g. every "script" line was for another config id).
    r.unsupported.push({ ...st.at, message: `vrrp_script "${name}" has no script set: removed, as keepalived does` });
    r.removedScripts.add(name);
    return undefined;
  }
  return sc;
}

/** The unsupported-keyword report, one "file:line:col: message" per line. */
export function formatUnsupported(cfg: TsvsConfig): string {
  return cfg.unsupported.map(formatDiagnostic).join('\n');
}

// Quiets "unused" for block-list names kept as documentation of the format.
void LIST_BLOCKS;
