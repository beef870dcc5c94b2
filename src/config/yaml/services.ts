/**
 * YAML `services:` to the model: a virtual service with its persistence, sorry server and
 * real servers. Bounds and allowed values come from the service and real server schema
 * (core/schema.ts) and the service health schema (health/schema.ts).
 */
import { isScalar, type Node } from 'yaml';
import { familyOf, parseMask4 } from '../../core/addr.js';
import {
  bounds,
  DEFAULT_PERSISTENT_TIMEOUT,
  NETMASK6,
  ProtocolSchema,
  ProxyProtocolSchema,
  RealServerSchema,
  SCHED_FLAGS,
  ServiceConfigSchema,
  type Bounds,
} from '../../core/schema.js';
import type { Family, FwdMethod } from '../../core/types.js';
import { ServiceHealthSchema } from '../../health/schema.js';
import type { RealServerConfig, VirtualServiceConfig } from '../model.js';
import { readCheckDefaults, readChecker, type CheckDefaults } from './checkers.js';
import { asMap, show, type Ctx, type MapReader } from './reader.js';

const METHODS: Record<string, FwdMethod> = {
  nat: 'masq',
  masq: 'masq',
  dr: 'route',
  route: 'route',
  tun: 'tunnel',
  tunnel: 'tunnel',
  fullnat: 'fullnat',
};
const SVC = ServiceConfigSchema.shape;
const RS = RealServerSchema.shape;
/** The `fwmark` key makes a fwmark service, so 0 (the schema's "none") is not a value here. */
const FWMARK: Bounds = { ...bounds(SVC.fwmark), min: 1 };
const PORT = bounds(SVC.port);
const MAX_CONNS = bounds(SVC.maxConns);
/** `persistence: N` turns persistence on, so 0 is not a value here. */
const PERSISTENCE: Bounds = { ...bounds(SVC.persistent), min: 1 };
const NETMASK4 = bounds(SVC.netmask);
/** "none" is how an API edit turns it off; a file simply leaves the key out. */
const PROXY_PROTOCOL = ProxyProtocolSchema.options.filter((v) => v !== 'none');
const QUORUM = bounds(ServiceHealthSchema.shape.quorum);
const HYSTERESIS = bounds(ServiceHealthSchema.shape.hysteresis);
const RS_PORT = bounds(RS.port);
const WEIGHT = bounds(RS.weight);
const U_THRESHOLD = bounds(RS.uThreshold);
const L_THRESHOLD = bounds(RS.lThreshold);

const SERVICE_KEYS = [
  'name',
  'address',
  'port',
  'fwmark',
  'family',
  'protocol',
  'scheduler',
  'sched_flags',
  'persistence',
  'one_packet',
  'pe',
  'method',
  'quorum',
  'hysteresis',
  'quorum_up',
  'quorum_down',
  'omega',
  'alpha',
  'inhibit_on_failure',
  'check_defaults',
  'sorry_server',
  'real_servers',
  'virtualhost',
  'proxy_protocol',
  'transparent',
  'max_conns',
  'max_conns_per_client',
];

/** One entry of `services:`; undefined when it cannot become a service (the problems are reported). */
export function readService(ctx: Ctx, n: Node, path: string): VirtualServiceConfig | undefined {
  const m = asMap(ctx, n, path);
  if (!m) return undefined;
  const fwmark = m.int('fwmark', FWMARK);
  let addr = m.addr('address');
  const port = m.int('port', PORT);
  const protocol = m.oneOf('protocol', ProtocolSchema.options) ?? 'tcp';
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
  const persistence = m.has('persistence')
    ? readPersistence(ctx, m, af)
    : { persistent: 0, netmask: af === 6 ? NETMASK6.max : NETMASK4.max };
  let schedFlags = 0;
  const flags = m.list('sched_flags', (item, p) => {
    const v = isScalar(item) ? String(item.value) : '';
    if (!(v in SCHED_FLAGS))
      ctx.error(item, p, `expected one of ${Object.keys(SCHED_FLAGS).join(', ')}, got ${show(isScalar(item) ? item.value : v)}`);
    return SCHED_FLAGS[v];
  });
  for (const f of flags ?? []) schedFlags |= f;
  const scheduler = m.str('scheduler') ?? 'wlc';
  const fwd = readMethod(ctx, m) ?? 'masq';
  const inhibit = m.bool('inhibit_on_failure') ?? false;
  const defaults = readCheckDefaults(m);
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
    quorum: m.int('quorum', QUORUM) ?? 1,
    hysteresis: m.int('hysteresis', HYSTERESIS) ?? 0,
    omega: m.bool('omega') ?? false,
    origin: ctx.pos(n),
  };
  m.str('name');
  // Userspace-plane options (docs/userspace.md); not expressible in ipvsadm -S rules.
  const pp = m.oneOf('proxy_protocol', PROXY_PROTOCOL);
  if (pp) svc.proxyProtocol = pp;
  if (m.bool('transparent')) svc.transparent = true;
  // Connection limits, both planes (docs/userspace.md, docs/nftables.md).
  const maxConns = m.int('max_conns', MAX_CONNS);
  const maxPerClient = m.int('max_conns_per_client', MAX_CONNS);
  if (maxConns) svc.maxConns = maxConns;
  if (maxPerClient) svc.maxConnsPerClient = maxPerClient;
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
    const sport = sorry.int('port', RS_PORT) ?? 0;
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
  const def = { persistent: DEFAULT_PERSISTENT_TIMEOUT, netmask: af === 6 ? NETMASK6.max : NETMASK4.max };
  if (isScalar(node) && typeof node.value === 'boolean') return node.value ? def : { ...def, persistent: 0 };
  if (isScalar(node)) return { ...def, persistent: m.int('persistence', PERSISTENCE) ?? def.persistent };
  const p = m.map('persistence');
  if (!p) return def;
  const timeout = p.int('timeout', PERSISTENCE) ?? def.persistent;
  let netmask = def.netmask;
  if (p.has('netmask')) {
    if (af === 6) netmask = p.int('netmask', NETMASK6) ?? netmask;
    else {
      const s = p.str('netmask');
      const v = s === undefined ? null : parseMask4(s);
      if (s !== undefined && v === null)
        ctx.error(p.node_('netmask'), p.sub('netmask'), `expected a netmask like 255.255.255.0, got ${show(s)}`);
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

const RS_KEYS = [
  'address',
  'port',
  'weight',
  'method',
  'u_threshold',
  'l_threshold',
  'inhibit_on_failure',
  'notify_up',
  'notify_down',
  'checks',
  'tunnel',
];

function readRealServer(ctx: Ctx, n: Node, path: string, fwd: FwdMethod, inhibit: boolean, d: CheckDefaults): RealServerConfig | undefined {
  const m = asMap(ctx, n, path);
  if (!m) return undefined;
  m.require('address');
  const addr = m.addr('address');
  const rs: RealServerConfig = {
    af: addr ? (familyOf(addr) ?? 4) : 4,
    addr: addr ?? '',
    port: m.int('port', RS_PORT) ?? 0,
    weight: m.int('weight', WEIGHT) ?? 1,
    fwd: readMethod(ctx, m) ?? fwd,
    uThreshold: m.int('u_threshold', U_THRESHOLD) ?? 0,
    lThreshold: m.int('l_threshold', L_THRESHOLD) ?? 0,
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
