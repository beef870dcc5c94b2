/**
 * keepalived.conf IPVS part (keepalived's ipwrapper): virtual_server (by address, fwmark or
 * group), virtual_server_group, real_server and sorry_server, quorum, hysteresis and the
 * notify scripts. The checkers inside real servers are read by checkers.ts.
 */
import { canonicalAddr, familyOf, formatIPv4, parseIPv4, parseMask4 } from '../../core/addr.js';
import { DEFAULT_PERSISTENT_TIMEOUT, MAX_TIMEOUT, SCHED_FLAGS } from '../../core/schema.js';
import type { Family, FwdMethod, Protocol, TunnelOptions } from '../../core/types.js';
import type { RealServerConfig, VirtualServiceConfig } from '../model.js';
import { CHECKER_KEYWORDS, readChecker, readCommon, UNSUPPORTED_CHECKERS, type Inherit } from './checkers.js';
import type { Stmt } from './lexer.js';
import { setIf, type Reader } from './reader.js';
import { clip, quote } from '../../core/quote.js';

const LB_KIND: Record<string, FwdMethod> = { NAT: 'masq', DR: 'route', TUN: 'tunnel', FNAT: 'fullnat', FULLNAT: 'fullnat' };
/** The largest number of services one virtual_server_group range may expand to. */
const MAX_RANGE = 256;

/** What names a virtual service: its address and port, or its fwmark. */
export type ServiceAddr = Pick<VirtualServiceConfig, 'af' | 'addr' | 'port' | 'fwmark'>;

/** Reads a `virtual_server_group NAME { ... }` block: its addresses, ranges and fwmarks. */
export function readGroup(r: Reader, st: Stmt): ServiceAddr[] {
  const out: ServiceAddr[] = [];
  for (const e of st.block ?? []) {
    const w = e.words;
    // A bare "{" in the group opens a block with no words: no address to read.
    if (!w.length) {
      r.error(e, `virtual_server_group ${st.words[1]}: a block where an address was expected (a stray "{"?)`);
      continue;
    }
    if (w[0] === 'fwmark') {
      const mark = r.int(e, 1, 1, 0xffffffff);
      const af: Family = w[2] === 'inet6' ? 6 : 4;
      if (mark !== undefined) out.push({ af, addr: af === 6 ? '::' : '0.0.0.0', port: 0, fwmark: mark });
      continue;
    }
    const port = w[1] === undefined ? 0 : r.port(e, 1);
    const addrs = expandRange(w[0]!);
    if (typeof addrs === 'string') {
      r.error(e, `virtual_server_group ${clip(st.words[1])}: ${addrs}`);
      continue;
    }
    for (const a of addrs) out.push({ af: familyOf(a) ?? 4, addr: a, port: port ?? 0, fwmark: 0 });
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
    if (!first || b < a) return `bad address range ${quote(s)}`;
    if (b - a + 1 > MAX_RANGE) return `range ${quote(s)} has ${b - a + 1} addresses; at most ${MAX_RANGE} are supported`;
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
  } else return `expected an address, a range (a.b.c.d-e) or a prefix (a.b.c.d/nn), got ${quote(s)}`;
  if (lo === null || hi === null || hi < lo) return `bad address range ${quote(s)}`;
  if (hi - lo + 1 > MAX_RANGE) return `range ${quote(s)} has ${hi - lo + 1} addresses; at most ${MAX_RANGE} are supported`;
  const out: string[] = [];
  for (let v = lo; v <= hi; v++) out.push(formatIPv4(v));
  return out;
}

/**
 * Reads a `virtual_server` block: one service, or one per address of its group, each with
 * the real servers and sorry server declared in it.
 */
export function readVirtualServer(r: Reader, st: Stmt, groups: ReadonlyMap<string, ServiceAddr[]>): VirtualServiceConfig[] {
  const w = st.words;
  let keys: ServiceAddr[] = [];
  let name: string;
  if (w[1] === 'group') {
    if (!r.args(st, 2, 2, 'group NAME')) return [];
    const g = groups.get(w[2]!);
    if (!g) {
      r.error(st, `virtual_server group ${clip(w[2])}: no virtual_server_group ${quote(w[2])} is defined`);
      return [];
    }
    keys = g;
    name = `group ${clip(w[2])}`;
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
  const base: Omit<
    VirtualServiceConfig,
    keyof ServiceAddr | 'protocol' | 'scheduler' | 'schedFlags' | 'persistent' | 'netmask' | 'ops' | 'pe'
  > = {
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
        scheduler = r.word(s, 'a scheduler name') ?? scheduler;
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
        else if (s.words.length === 2) r.error(s, `protocol: expected TCP, UDP or SCTP, got ${quote(s.words[1])}`);
        break;
      }
      case 'persistence_timeout':
        if (r.args(s, 0, 1, '[seconds]'))
          persistent = s.words[1] === undefined ? DEFAULT_PERSISTENT_TIMEOUT : (r.int(s, 1, 1, MAX_TIMEOUT) ?? 0);
        break;
      case 'persistence_granularity':
        if (r.args(s, 1, 1, 'a netmask')) {
          const v = /^\d+$/.test(s.words[1]!) ? Number(s.words[1]) : parseMask4(s.words[1]!);
          if (v === null || !Number.isFinite(v))
            r.error(s, `persistence_granularity: expected a netmask like 255.255.255.0 (IPv6: a prefix length), got ${quote(s.words[1])}`);
          else netmask = v;
        }
        break;
      case 'persistence_engine':
        pe = r.word(s, 'an engine name (sip)') ?? pe;
        break;
      case 'ops':
        if (r.flag(s)) ops = true;
        break;
      case 'ip_family':
        if (r.args(s, 1, 1, 'inet or inet6')) {
          if (s.words[1] === 'inet' || s.words[1] === 'inet6') ipFamily = s.words[1] === 'inet6' ? 6 : 4;
          else r.error(s, `ip_family: expected inet or inet6, got ${quote(s.words[1])}`);
        }
        break;
      case 'virtualhost':
        setIf(inh, 'virtualhost', r.word(s, 'a host name'));
        break;
      case 'omega':
        if (r.flag(s)) base.omega = true;
        break;
      case 'quorum':
      case 'hysteresis':
        setIf(base, kw, r.intArg(s, 'a weight', 0, 0xffffffff));
        break;
      case 'quorum_up':
      case 'quorum_down':
        setIf(base, kw === 'quorum_up' ? 'quorumUp' : 'quorumDown', r.script(s));
        break;
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
        if (r.needBlock(s)) rsStmts.push(s);
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
    if (!k.fwmark && ipFamily && ipFamily !== af)
      r.error(st, `${where}: ip_family inet${ipFamily === 6 ? '6' : ''} does not match the address ${k.addr}`);
    if (!k.fwmark && k.port === 0 && !persistent)
      r.error(st, `${where}: the port may be omitted only for a persistent service (persistence_timeout)`);
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

/** lb_kind / lvs_method: NAT, DR or TUN (with its tunnel type), FNAT. */
function readMethod(r: Reader, s: Stmt): [FwdMethod, TunnelOptions | undefined] | undefined {
  const m = LB_KIND[(s.words[1] ?? '').toUpperCase()];
  if (!m) {
    r.error(s, `${s.words[0]}: expected NAT, DR or TUN, got ${s.words[1] === undefined ? 'nothing' : `${quote(s.words[1])}`}`);
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
    } else r.error(s, `${s.words[0]}: tunnel type must be ipip, gue or gre, got ${quote(t ?? '')}`);
    const cs = s.words.find((x) => x === 'nocsum' || x === 'csum' || x === 'remcsum');
    if (tunnel && cs) tunnel.csum = cs as TunnelOptions['csum'];
  } else if (s.words.length > 2) r.error(s, `${s.words[0]}: unexpected ${quote(s.words.slice(2).join(' '))}`);
  return [m, tunnel];
}

/** Reads a `real_server` block of the virtual server `vsWhere`, with its checkers. */
function readRealServer(
  r: Reader,
  st: Stmt,
  vsWhere: string,
  fwd: FwdMethod,
  tunnel: TunnelOptions | undefined,
  vsInh: Inherit,
): RealServerConfig | undefined {
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
      case 'weight':
        setIf(rs, 'weight', r.intArg(s, 'a weight', 0, 65535));
        break;
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
      case 'lthreshold':
        setIf(rs, kw === 'uthreshold' ? 'uThreshold' : 'lThreshold', r.intArg(s, 'a connection count', 0, 0xffffffff));
        break;
      case 'notify_up':
      case 'notify_down':
        setIf(rs, kw === 'notify_up' ? 'notifyUp' : 'notifyDown', r.script(s));
        break;
      case 'virtualhost':
        setIf(inh, 'virtualhost', r.word(s, 'a host name'));
        break;
      default:
        if (kw in CHECKER_KEYWORDS) checkStmts.push(s);
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
