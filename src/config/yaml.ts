/**
 * The YAML configuration format (documented in docs/config.md). Read with `yaml`'s document
 * API so that every value keeps its source position: each error names file:line:column and
 * the key path ("services[0].real_servers[1].weight"). All errors are collected, then thrown
 * together as a ConfigError.
 */
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node, type Pair, type YAMLMap } from 'yaml';
import { canonicalAddr, familyOf, parseMask4 } from '../core/addr.js';
import { DEFAULT_PERSISTENT_TIMEOUT, SCHED_FLAGS } from '../core/schema.js';
import type { Family, FwdMethod, Protocol } from '../core/types.js';
import { DNS_TYPES } from '../health/dns.js';
import { ConfigError, suggest } from './errors.js';
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
import type { SyncSettings } from '../sync/ha.js';

export const METHODS: Record<string, FwdMethod> = { nat: 'masq', masq: 'masq', dr: 'route', route: 'route', tun: 'tunnel', tunnel: 'tunnel', fullnat: 'fullnat' };

/** Collects diagnostics with positions from one parsed document. */
class Ctx {
  readonly diags: Diagnostic[] = [];
  constructor(
    readonly file: string,
    private readonly lines: LineCounter,
  ) {}
  pos(node: Node | null | undefined): Origin {
    const off = (node as { range?: [number, number, number] } | null)?.range?.[0] ?? 0;
    const p = this.lines.linePos(off);
    return { file: this.file, line: p.line, column: p.col };
  }
  error(node: Node | null | undefined, path: string, msg: string): void {
    this.diags.push({ ...this.pos(node), message: path ? `${path}: ${msg}` : msg });
  }
}

const show = (v: unknown) => (typeof v === 'string' ? JSON.stringify(v) : String(v));

/** Reads one mapping: typed getters that report and return undefined on a bad value; `done` reports unknown keys. */
class MapReader {
  private readonly used = new Set<string>();
  private readonly pairs = new Map<string, Pair<unknown, unknown>>();
  constructor(
    private readonly ctx: Ctx,
    readonly node: YAMLMap,
    readonly path: string,
  ) {
    for (const p of node.items) {
      const k = isScalar(p.key) ? String(p.key.value) : String(p.key);
      if (this.pairs.has(k)) ctx.error(p.key as Node, this.sub(k), 'duplicate key');
      this.pairs.set(k, p);
    }
  }
  sub(k: string): string {
    return this.path ? `${this.path}.${k}` : k;
  }
  has(k: string): boolean {
    this.used.add(k);
    const p = this.pairs.get(k);
    return !!p && !(isScalar(p.value) && p.value.value === null);
  }
  node_(k: string): Node | undefined {
    this.used.add(k);
    return this.pairs.get(k)?.value as Node | undefined;
  }
  keyNode(k: string): Node | undefined {
    return this.pairs.get(k)?.key as Node | undefined;
  }
  private scalar(k: string): { node: Node; value: unknown } | undefined {
    if (!this.has(k)) return undefined;
    const n = this.node_(k)!;
    if (!isScalar(n)) {
      this.ctx.error(n, this.sub(k), `expected a single value, got a ${isMap(n) ? 'mapping' : 'list'}`);
      return undefined;
    }
    return { node: n, value: n.value };
  }
  str(k: string): string | undefined {
    const s = this.scalar(k);
    if (!s) return undefined;
    if (typeof s.value !== 'string') {
      this.ctx.error(s.node, this.sub(k), `expected a string, got ${show(s.value)}`);
      return undefined;
    }
    return s.value;
  }
  num(k: string, min: number, max: number, integer: boolean): number | undefined {
    const s = this.scalar(k);
    if (!s) return undefined;
    const v = s.value;
    if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v)) || v < min || v > max) {
      this.ctx.error(s.node, this.sub(k), `expected ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, got ${show(v)}`);
      return undefined;
    }
    return v;
  }
  int(k: string, min: number, max: number): number | undefined {
    return this.num(k, min, max, true);
  }
  /** A duration in seconds: a number, or a string with a unit ("200ms", "2s", "1m"). */
  seconds(k: string, min = 0): number | undefined {
    const s = this.scalar(k);
    if (!s) return undefined;
    let v: number = NaN;
    if (typeof s.value === 'number') v = s.value;
    else if (typeof s.value === 'string') {
      const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m)?$/.exec(s.value.trim());
      if (m) v = Number(m[1]) * (m[2] === 'ms' ? 0.001 : m[2] === 'm' ? 60 : 1);
    }
    if (!Number.isFinite(v) || v < min || v > 86400) {
      this.ctx.error(s.node, this.sub(k), `expected a duration (seconds, or "200ms", "2s", "1m") from ${min}, got ${show(s.value)}`);
      return undefined;
    }
    return v;
  }
  bool(k: string): boolean | undefined {
    const s = this.scalar(k);
    if (!s) return undefined;
    if (typeof s.value !== 'boolean') {
      this.ctx.error(s.node, this.sub(k), `expected true or false, got ${show(s.value)}`);
      return undefined;
    }
    return s.value;
  }
  oneOf<T extends string>(k: string, allowed: readonly T[]): T | undefined {
    const v = this.str(k);
    if (v === undefined) return undefined;
    const hit = allowed.find((a) => a.toLowerCase() === v.toLowerCase());
    if (!hit) {
      this.ctx.error(this.node_(k), this.sub(k), `expected one of ${allowed.join(', ')}, got ${show(v)}`);
      return undefined;
    }
    return hit;
  }
  addr(k: string): string | undefined {
    const s = this.scalar(k);
    if (!s) return undefined;
    const v = String(s.value);
    const c = typeof s.value === 'string' ? canonicalAddr(v) : null;
    if (!c) {
      this.ctx.error(s.node, this.sub(k), `expected an IPv4 or IPv6 address, got ${show(s.value)}`);
      return undefined;
    }
    return c;
  }
  map(k: string): MapReader | undefined {
    if (!this.has(k)) return undefined;
    const n = this.node_(k)!;
    if (!isMap(n)) {
      this.ctx.error(n, this.sub(k), 'expected a mapping (key: value lines)');
      return undefined;
    }
    return new MapReader(this.ctx, n, this.sub(k));
  }
  /** A list whose items are read by `f`; a single non-list value is an error. */
  list<T>(k: string, f: (item: Node, path: string) => T | undefined): T[] | undefined {
    if (!this.has(k)) return undefined;
    const n = this.node_(k)!;
    if (!isSeq(n)) {
      this.ctx.error(n, this.sub(k), 'expected a list');
      return undefined;
    }
    const out: T[] = [];
    n.items.forEach((item, i) => {
      const v = f(item as Node, `${this.sub(k)}[${i}]`);
      if (v !== undefined) out.push(v);
    });
    return out;
  }
  require(k: string, what = 'is required'): boolean {
    if (this.has(k)) return true;
    this.ctx.error(this.node, this.path, `"${k}" ${what}`);
    return false;
  }
  /** Reports every key not read. Call after all getters. */
  done(known?: readonly string[]): void {
    const all = known ?? [...this.used];
    for (const [k, p] of this.pairs) {
      if (this.used.has(k)) continue;
      const hint = suggest(k, all);
      this.ctx.error(p.key as Node, this.sub(k), `unknown key${hint ? ` (did you mean "${hint}"?)` : ''}`);
    }
  }
}

function asMap(ctx: Ctx, n: Node, path: string): MapReader | undefined {
  if (!isMap(n)) {
    ctx.error(n, path, 'expected a mapping (key: value lines)');
    return undefined;
  }
  return new MapReader(ctx, n, path);
}

/** Parses the YAML format into the model; throws ConfigError with every problem found. */
export function parseYamlConfig(text: string, file: string): TsvsConfig {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: false });
  const ctx = new Ctx(file, lines);
  for (const e of doc.errors) {
    const p = lines.linePos(e.pos[0]);
    ctx.diags.push({ file, line: p.line, column: p.col, message: `YAML syntax: ${e.message.split('\n')[0]}` });
  }
  if (ctx.diags.length) throw new ConfigError(ctx.diags);
  const cfg: TsvsConfig = { format: 'yaml', file, services: [], vrrp: [], unsupported: [] };
  const root = doc.contents as Node | null;
  if (!root || (isScalar(root) && root.value === null)) return cfg;
  const top = asMap(ctx, root, '');
  if (!top) throw new ConfigError(ctx.diags);

  const t = top.map('timeouts');
  if (t) {
    const tcp = t.int('tcp', 0, 86400 * 31);
    const tcpfin = t.int('tcpfin', 0, 86400 * 31);
    const udp = t.int('udp', 0, 86400 * 31);
    t.done(['tcp', 'tcpfin', 'udp']);
    if (tcp !== undefined || tcpfin !== undefined || udp !== undefined) cfg.timeouts = { tcp: tcp ?? 900, tcpfin: tcpfin ?? 120, udp: udp ?? 300 };
  }
  const dp = top.oneOf('dataplane', ['userspace', 'nftables']);
  if (dp) cfg.dataplane = dp;
  const api = top.map('api');
  if (api) {
    const listen = api.str('listen');
    api.done(['listen']);
    cfg.api = listen === undefined ? {} : { listen };
  }
  cfg.services = top.list('services', (n, path) => readService(ctx, n, path)) ?? [];
  cfg.vrrp = top.list('vrrp', (n, path) => readVrrp(ctx, n, path)) ?? [];
  const scripts = top.list('vrrp_scripts', (n, path) => readVrrpScript(ctx, n, path));
  if (scripts) cfg.vrrpScripts = scripts;
  const sync = readSync(ctx, top);
  if (sync) cfg.sync = sync;
  top.done(['timeouts', 'dataplane', 'api', 'services', 'vrrp', 'vrrp_scripts', 'sync']);
  if (!ctx.diags.length) ctx.diags.push(...checkModel(cfg));
  if (ctx.diags.length) throw new ConfigError(ctx.diags);
  return cfg;
}

const SERVICE_KEYS = [
  'name', 'address', 'port', 'fwmark', 'family', 'protocol', 'scheduler', 'sched_flags', 'persistence', 'one_packet', 'pe',
  'method', 'quorum', 'hysteresis', 'quorum_up', 'quorum_down', 'omega', 'alpha', 'inhibit_on_failure', 'check_defaults',
  'sorry_server', 'real_servers', 'virtualhost', 'proxy_protocol', 'transparent',
];

/** Checker settings a service can give its real servers' checkers (keepalived: "the virtual server setting is the default"). */
interface CheckDefaults {
  interval?: number | undefined;
  timeout?: number | undefined;
  retry?: number | undefined;
  delayBeforeRetry?: number | undefined;
  rise?: number | undefined;
  fall?: number | undefined;
  alpha?: boolean | undefined;
  virtualhost?: string | undefined;
}

function readService(ctx: Ctx, n: Node, path: string): VirtualServiceConfig | undefined {
  const m = asMap(ctx, n, path);
  if (!m) return undefined;
  const fwmark = m.int('fwmark', 1, 0xffffffff);
  let addr = m.addr('address');
  const port = m.int('port', 0, 65535);
  const protocol = (m.oneOf('protocol', ['tcp', 'udp', 'sctp'] as const) ?? 'tcp') as Protocol;
  const family = m.oneOf('family', ['inet', 'inet6'] as const);
  let ok = true;
  if (fwmark !== undefined && m.has('address')) {
    ctx.error(m.keyNode('address'), m.sub('address'), 'a service has either "address" or "fwmark", not both');
    ok = false;
  }
  if (fwmark === undefined && !m.has('fwmark')) {
    if (!m.require('address', 'is required (or "fwmark")')) ok = false;
  }
  let af: Family = family === 'inet6' ? 6 : 4;
  if (addr) af = familyOf(addr) ?? 4;
  if (fwmark !== undefined) addr = af === 6 ? '::' : '0.0.0.0';
  const persistence = m.has('persistence') ? readPersistence(ctx, m, af) : { persistent: 0, netmask: af === 6 ? 128 : 0xffffffff };
  let schedFlags = 0;
  const flags = m.list('sched_flags', (item, p) => {
    const v = isScalar(item) ? String(item.value) : '';
    if (!(v in SCHED_FLAGS)) ctx.error(item, p, `expected one of ${Object.keys(SCHED_FLAGS).join(', ')}, got ${show(isScalar(item) ? item.value : v)}`);
    return SCHED_FLAGS[v];
  });
  for (const f of flags ?? []) schedFlags |= f;
  const scheduler = m.str('scheduler') ?? 'wlc';
  const fwd = readMethod(ctx, m) ?? 'masq';
  const inhibit = m.bool('inhibit_on_failure') ?? false;
  const defaults: CheckDefaults = {};
  const cd = m.map('check_defaults');
  if (cd) {
    defaults.interval = cd.seconds('interval', 0.01);
    defaults.timeout = cd.seconds('timeout', 0.01);
    defaults.retry = cd.int('retry', 0, 1000);
    defaults.delayBeforeRetry = cd.seconds('delay_before_retry');
    defaults.rise = cd.int('rise', 1, 1000);
    defaults.fall = cd.int('fall', 1, 1000);
    cd.done(['interval', 'timeout', 'retry', 'delay_before_retry', 'rise', 'fall']);
  }
  defaults.alpha = m.bool('alpha');
  defaults.virtualhost = m.str('virtualhost');
  const svc: VirtualServiceConfig = {
    af,
    protocol: fwmark !== undefined ? 'tcp' : protocol,
    addr: addr ?? '0.0.0.0',
    port: fwmark !== undefined ? 0 : (port ?? 0),
    fwmark: fwmark ?? 0,
    scheduler,
    schedFlags,
    ...persistence,
    ops: m.bool('one_packet') ?? false,
    pe: m.str('pe') ?? '',
    realServers: [],
    quorum: m.int('quorum', 0, 0xffffffff) ?? 1,
    hysteresis: m.int('hysteresis', 0, 0xffffffff) ?? 0,
    omega: m.bool('omega') ?? false,
    origin: ctx.pos(n),
  };
  m.str('name');
  // Userspace-plane options (docs/userspace.md); not expressible in ipvsadm -S rules.
  const pp = m.oneOf('proxy_protocol', ['v1', 'v2'] as const);
  if (pp) svc.proxyProtocol = pp;
  if (m.bool('transparent')) svc.transparent = true;
  const qu = m.str('quorum_up');
  const qd = m.str('quorum_down');
  if (qu) svc.quorumUp = qu;
  if (qd) svc.quorumDown = qd;
  if (fwmark === undefined && !m.has('port') && !persistence.persistent && m.has('address')) {
    ctx.error(m.node, path, '"port" is required (it may be omitted only for a persistent service)');
    ok = false;
  }
  const sorry = m.map('sorry_server');
  if (sorry) {
    const saddr = sorry.addr('address');
    sorry.require('address');
    const sport = sorry.int('port', 0, 65535) ?? 0;
    const sfwd = readMethod(ctx, sorry) ?? fwd;
    const sinhibit = sorry.bool('inhibit') ?? false;
    sorry.done(['address', 'port', 'method', 'inhibit']);
    if (saddr) svc.sorryServer = { addr: saddr, port: sport, fwd: sfwd, inhibit: sinhibit };
  }
  svc.realServers = m.list('real_servers', (item, p) => readRealServer(ctx, item, p, fwd, inhibit, defaults)) ?? [];
  m.done(SERVICE_KEYS);
  return ok ? svc : undefined;
}

function readPersistence(ctx: Ctx, m: MapReader, af: Family): { persistent: number; netmask: number } {
  const node = m.node_('persistence')!;
  const def = { persistent: DEFAULT_PERSISTENT_TIMEOUT, netmask: af === 6 ? 128 : 0xffffffff };
  if (isScalar(node) && typeof node.value === 'boolean') return node.value ? def : { ...def, persistent: 0 };
  if (isScalar(node)) return { ...def, persistent: m.int('persistence', 1, 86400 * 31) ?? def.persistent };
  const p = m.map('persistence');
  if (!p) return def;
  const timeout = p.int('timeout', 1, 86400 * 31) ?? def.persistent;
  let netmask = def.netmask;
  if (p.has('netmask')) {
    if (af === 6) netmask = p.int('netmask', 1, 128) ?? netmask;
    else {
      const s = p.str('netmask');
      const v = s === undefined ? null : parseMask4(s);
      if (s !== undefined && v === null) ctx.error(p.node_('netmask'), p.sub('netmask'), `expected a netmask like 255.255.255.0, got ${show(s)}`);
      if (v !== null) netmask = v;
    }
  }
  p.done(['timeout', 'netmask']);
  return { persistent: timeout, netmask };
}

function readMethod(ctx: Ctx, m: MapReader): FwdMethod | undefined {
  const v = m.str('method');
  if (v === undefined) return undefined;
  const f = METHODS[v.toLowerCase()];
  if (!f) ctx.error(m.node_('method'), m.sub('method'), `expected one of nat, dr, tunnel, fullnat, got ${show(v)}`);
  return f;
}

const RS_KEYS = ['address', 'port', 'weight', 'method', 'u_threshold', 'l_threshold', 'inhibit_on_failure', 'notify_up', 'notify_down', 'checks', 'tunnel'];

function readRealServer(ctx: Ctx, n: Node, path: string, fwd: FwdMethod, inhibit: boolean, d: CheckDefaults): RealServerConfig | undefined {
  const m = asMap(ctx, n, path);
  if (!m) return undefined;
  m.require('address');
  const addr = m.addr('address');
  const rs: RealServerConfig = {
    af: addr ? (familyOf(addr) ?? 4) : 4,
    addr: addr ?? '',
    port: m.int('port', 0, 65535) ?? 0,
    weight: m.int('weight', 0, 65535) ?? 1,
    fwd: readMethod(ctx, m) ?? fwd,
    uThreshold: m.int('u_threshold', 0, 0xffffffff) ?? 0,
    lThreshold: m.int('l_threshold', 0, 0xffffffff) ?? 0,
    inhibitOnFailure: m.bool('inhibit_on_failure') ?? inhibit,
    checkers: [],
    origin: ctx.pos(n),
  };
  const nu = m.str('notify_up');
  const nd = m.str('notify_down');
  if (nu) rs.notifyUp = nu;
  if (nd) rs.notifyDown = nd;
  rs.checkers = m.list('checks', (item, p) => readChecker(ctx, item, p, d)) ?? [];
  m.done(RS_KEYS);
  return addr ? rs : undefined;
}

const CHECK_KEYS: Record<CheckerType | 'common', string[]> = {
  common: ['type', 'interval', 'timeout', 'retry', 'delay_before_retry', 'rise', 'fall', 'alpha', 'connect_ip', 'connect_port', 'bindto'],
  tcp: [],
  http: ['path', 'status', 'digest', 'virtualhost', 'urls'],
  https: ['path', 'status', 'digest', 'virtualhost', 'urls', 'sni'],
  udp: ['payload', 'require_reply', 'min_reply_length', 'max_reply_length'],
  dns: ['query_type', 'query_name'],
  misc: ['command', 'command_timeout', 'dynamic'],
};

function readChecker(ctx: Ctx, n: Node, path: string, d: CheckDefaults): CheckerConfig | undefined {
  const m = asMap(ctx, n, path);
  if (!m) return undefined;
  if (!m.require('type')) return undefined;
  const type = m.oneOf('type', ['tcp', 'http', 'https', 'udp', 'dns', 'misc'] as const);
  if (!type) return undefined;
  const base = checkerDefaults(type);
  const interval = m.seconds('interval', 0.01) ?? d.interval ?? base.interval;
  const c: CheckerConfig = {
    type,
    ...base,
    interval,
    timeout: m.seconds('timeout', 0.01) ?? d.timeout ?? base.timeout,
    retry: m.int('retry', 0, 1000) ?? d.retry ?? base.retry,
    // keepalived: DNS_CHECK retries after delay_loop by default.
    delayBeforeRetry: m.seconds('delay_before_retry') ?? d.delayBeforeRetry ?? (type === 'dns' ? interval : base.delayBeforeRetry),
    rise: m.int('rise', 1, 1000) ?? d.rise ?? 1,
    fall: m.int('fall', 1, 1000) ?? d.fall ?? 1,
    alpha: m.bool('alpha') ?? d.alpha ?? false,
  };
  const cip = m.addr('connect_ip');
  const cport = m.int('connect_port', 1, 65535);
  const bind = m.addr('bindto');
  if (cip) c.connectIp = cip;
  if (cport !== undefined) c.connectPort = cport;
  if (bind) c.bindto = bind;
  if (type === 'http' || type === 'https') {
    const urls: HttpUrl[] = [];
    if (m.has('urls')) {
      urls.push(...(m.list('urls', (item, p) => { const u = asMap(ctx, item, p); return u ? readUrl(ctx, u, true) : undefined; }) ?? []));
    }
    if (m.has('path') || m.has('status') || m.has('digest') || !m.has('urls')) urls.unshift(readUrl(ctx, m, false)!);
    const vh = m.str('virtualhost') ?? d.virtualhost;
    c.http = { urls, sni: m.bool('sni') ?? false };
    if (vh) c.http.virtualhost = vh;
  } else if (type === 'udp') {
    const payload = m.str('payload');
    if (payload !== undefined && !/^([0-9a-fA-F]{2})*$/.test(payload)) ctx.error(m.node_('payload'), m.sub('payload'), `expected hex bytes like "0a1b", got ${show(payload)}`);
    c.udp = {
      requireReply: m.bool('require_reply') ?? false,
      minReplyLength: m.int('min_reply_length', 0, 65535) ?? 0,
      maxReplyLength: m.int('max_reply_length', 0, 65535) ?? 255,
    };
    if (payload) c.udp.payload = payload;
  } else if (type === 'dns') {
    c.dns = { type: m.oneOf('query_type', Object.keys(DNS_TYPES)) ?? 'SOA', name: m.str('query_name') ?? '.' };
  } else if (type === 'misc') {
    m.require('command', 'is required for a misc check');
    c.misc = { path: m.str('command') ?? '', timeout: m.seconds('command_timeout', 0.01) ?? 0, dynamic: m.bool('dynamic') ?? false };
  }
  m.done([...CHECK_KEYS.common, ...CHECK_KEYS[type]]);
  return c;
}

/** `status`: 200, "200-299", or a list of those. */
function readUrl(ctx: Ctx, m: MapReader, own: boolean): HttpUrl | undefined {
  const url: HttpUrl = { path: m.str('path') ?? '/', statusCodes: [[200, 299]] };
  if (m.has('status')) {
    const node = m.node_('status')!;
    const items = isSeq(node) ? (node.items as Node[]) : [node];
    const codes: Array<[number, number]> = [];
    for (const it of items) {
      const v = isScalar(it) ? it.value : undefined;
      const mm = typeof v === 'number' ? [String(v), String(v), String(v)] : typeof v === 'string' ? /^(\d{3})(?:-(\d{3}))?$/.exec(v.trim()) : null;
      const lo = mm ? Number(mm[1]) : NaN;
      const hi = mm ? Number(mm[2] ?? mm[1]) : NaN;
      if (!mm || lo < 100 || hi > 599 || lo > hi) ctx.error(it, m.sub('status'), `expected an HTTP status code or range like 200 or "200-299", got ${show(v)}`);
      else codes.push([lo, hi]);
    }
    if (codes.length) url.statusCodes = codes;
  }
  const digest = m.str('digest');
  if (digest !== undefined) {
    if (!/^[0-9a-fA-F]{32}$/.test(digest)) ctx.error(m.node_('digest'), m.sub('digest'), `expected an MD5 digest (32 hex digits), got ${show(digest)}`);
    else url.digest = digest.toLowerCase();
  }
  if (own) {
    const vh = m.str('virtualhost');
    if (vh) url.virtualhost = vh;
    m.done(['path', 'status', 'digest', 'virtualhost']);
  }
  return url;
}

const VRRP_KEYS = [
  'name', 'state', 'interface', 'virtual_router_id', 'priority', 'advert_int', 'nopreempt', 'preempt_delay', 'virtual_ipaddress',
  'unicast_src_ip', 'unicast_peer', 'track_interface', 'track_script', 'track_health', 'notify_master', 'notify_backup',
  'notify_fault', 'notify_stop', 'notify', 'authentication',
];

/** A track list item: "name" or { name, weight }. */
function readTrack(ctx: Ctx, item: Node, path: string): { name: string; weight?: number } | undefined {
  if (isScalar(item) && typeof item.value === 'string') return { name: item.value };
  const t = asMap(ctx, item, path);
  if (!t) return undefined;
  t.require('name');
  const name = t.str('name');
  const weight = t.int('weight', -253, 253);
  t.done(['name', 'weight']);
  if (!name) return undefined;
  return weight === undefined ? { name } : { name, weight };
}

function readVrrp(ctx: Ctx, n: Node, path: string): VrrpInstanceConfig | undefined {
  const m = asMap(ctx, n, path);
  if (!m) return undefined;
  const mark = ctx.diags.length;
  m.require('name');
  const v: VrrpInstanceConfig = { name: m.str('name') ?? '', virtualIpaddress: [], raw: {}, at: {}, origin: ctx.pos(n) };
  for (const k of VRRP_KEYS) if (m.keyNode(k)) v.at![k] = ctx.pos(m.keyNode(k));
  const state = m.oneOf('state', ['MASTER', 'BACKUP'] as const);
  if (state) v.state = state;
  const ifc = m.str('interface');
  if (ifc) v.interface = ifc;
  const vrid = m.int('virtual_router_id', 1, 255);
  if (vrid !== undefined) v.virtualRouterId = vrid;
  const prio = m.int('priority', 1, 255);
  if (prio !== undefined) v.priority = prio;
  const adv = m.seconds('advert_int', 0.01);
  if (adv !== undefined) v.advertInt = adv;
  const np = m.bool('nopreempt');
  if (np !== undefined) v.nopreempt = np;
  const pd = m.seconds('preempt_delay', 0);
  if (pd !== undefined) v.preemptDelay = pd;
  v.virtualIpaddress = m.list('virtual_ipaddress', (it, p) => (isScalar(it) && typeof it.value === 'string' ? it.value : (ctx.error(it, p, 'expected an address like 198.18.0.1/24'), undefined))) ?? [];
  const src = m.addr('unicast_src_ip');
  if (src) v.unicastSrcIp = src;
  const peers = m.list('unicast_peer', (it, p) => {
    const a = isScalar(it) && typeof it.value === 'string' ? canonicalAddr(it.value) : null;
    if (!a) ctx.error(it, p, `expected an IPv4 or IPv6 address, got ${show(isScalar(it) ? it.value : it)}`);
    return a ?? undefined;
  });
  if (peers) v.unicastPeer = peers;
  const ti = m.list('track_interface', (it, p) => readTrack(ctx, it, p));
  if (ti) v.trackInterface = ti.map((t) => ({ name: t.name, weight: t.weight ?? 0 }));
  const ts = m.list('track_script', (it, p) => readTrack(ctx, it, p));
  if (ts) v.trackScript = ts;
  const th = m.map('track_health');
  if (th) {
    th.require('weight');
    const w = th.int('weight', -253, 253);
    th.done(['weight']);
    if (w !== undefined) v.trackHealth = { weight: w };
  }
  for (const [k, f] of [['notify_master', 'notifyMaster'], ['notify_backup', 'notifyBackup'], ['notify_fault', 'notifyFault'], ['notify_stop', 'notifyStop'], ['notify', 'notify']] as const) {
    const sc = m.str(k);
    if (sc) v[f] = sc;
  }
  const auth = m.map('authentication');
  if (auth) {
    const t = auth.oneOf('auth_type', ['PASS', 'AH'] as const);
    const pass = auth.str('auth_pass');
    auth.done(['auth_type', 'auth_pass']);
    v.raw.authentication = [t ?? '', pass ?? ''];
  }
  m.done(VRRP_KEYS);
  // Bad values name the instance too.
  if (v.name) for (const d of ctx.diags.slice(mark)) d.message = `vrrp instance ${v.name}: ${d.message}`;
  return v;
}

const VRRP_SCRIPT_KEYS = ['name', 'script', 'interval', 'timeout', 'weight', 'rise', 'fall', 'init_fail'];

function readVrrpScript(ctx: Ctx, n: Node, path: string): VrrpScriptConfig | undefined {
  const m = asMap(ctx, n, path);
  if (!m) return undefined;
  m.require('name');
  m.require('script');
  const interval = m.seconds('interval', 0.01) ?? 1;
  const s: VrrpScriptConfig = {
    name: m.str('name') ?? '',
    script: m.str('script') ?? '',
    interval,
    timeout: m.seconds('timeout', 0.01) ?? interval,
    weight: m.int('weight', -253, 253) ?? 0,
    rise: m.int('rise', 1, 1000) ?? 1,
    fall: m.int('fall', 1, 1000) ?? 1,
    initFail: m.bool('init_fail') ?? false,
    origin: ctx.pos(n),
  };
  m.done(VRRP_SCRIPT_KEYS);
  return s.name && s.script ? s : undefined;
}

/**
 * `sync:` state sync between directors (src/sync): `daemon` is keepalived's
 * lvs_sync_daemon (the IPVS sync protocol), `conntrackd` the kernel conntrack replication
 * that tsvsd sets up and supervises for the nftables plane.
 */
function readSync(ctx: Ctx, top: MapReader): SyncSettings | undefined {
  const s = top.map('sync');
  if (!s) return undefined;
  const out: SyncSettings = {};
  const d = s.map('daemon');
  if (d) {
    const ok = d.require('interface', 'is required (the multicast interface, as lvs_sync_daemon IF)');
    const daemon: SyncSettings['daemon'] = { mcastIfn: d.str('interface') ?? '' };
    const instance = d.str('instance');
    if (instance !== undefined) daemon.instance = instance;
    const syncid = d.int('syncid', 0, 255);
    if (syncid !== undefined) daemon.syncid = syncid;
    const maxlen = d.int('maxlen', 1, 65535 - 20 - 8);
    if (maxlen !== undefined) daemon.maxlen = maxlen;
    const port = d.int('port', 1, 65535);
    if (port !== undefined) daemon.port = port;
    const ttl = d.int('ttl', 1, 255);
    if (ttl !== undefined) daemon.ttl = ttl;
    const group = d.addr('group');
    if (group !== undefined) {
      if (familyOf(group) === 4 ? Number(group.split('.')[0]) >>> 4 !== 0xe : !group.startsWith('ff')) ctx.error(d.node_('group'), d.sub('group'), `expected a multicast address, got "${group}"`);
      else daemon.group = group;
    }
    d.done(['interface', 'instance', 'syncid', 'maxlen', 'port', 'ttl', 'group']);
    if (ok) out.daemon = daemon;
  }
  const c = s.map('conntrackd');
  if (c) {
    let ok = c.require('interface', 'is required (the sync link)');
    ok = c.require('address', "is required (this director's IPv4 address on the sync link)") && ok;
    ok = c.require('peer', "is required (the other director's IPv4 address on the sync link)") && ok;
    const ct: NonNullable<SyncSettings['conntrackd']> = { interface: c.str('interface') ?? '', address: c.addr('address') ?? '', peer: c.addr('peer') ?? '' };
    for (const k of ['address', 'peer'] as const) {
      if (ct[k] && familyOf(ct[k]) !== 4) {
        ctx.error(c.node_(k), c.sub(k), 'conntrackd syncs over IPv4 here: expected an IPv4 address');
        ok = false;
      }
    }
    const port = c.int('port', 1, 65535);
    if (port !== undefined) ct.port = port;
    const instance = c.str('instance');
    if (instance !== undefined) ct.instance = instance;
    const dir = c.str('state_dir');
    if (dir !== undefined) ct.stateDir = dir;
    c.done(['interface', 'address', 'peer', 'port', 'instance', 'state_dir']);
    if (ok) out.conntrackd = ct;
  }
  s.done(['daemon', 'conntrackd']);
  return out;
}
