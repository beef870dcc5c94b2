/**
 * YAML `vrrp:` and `vrrp_scripts:` to the model. Bounds come from the VRRP schema
 * (ha/schema.ts); the checks that need the whole configuration are config/vrrp.ts's.
 */
import { isScalar, type Node } from 'yaml';
import { canonicalAddr } from '../../core/addr.js';
import { bounds, type Bounds } from '../../core/schema.js';
import { TrackWeightSchema, VrrpInstanceSchema, VrrpScriptSchema } from '../../ha/schema.js';
import { MAX_DURATION } from '../../health/schema.js';
import type { VrrpInstanceConfig, VrrpScriptConfig } from '../model.js';
import { asMap, show, type Ctx } from './reader.js';

const I = VrrpInstanceSchema.shape;
const VRID = bounds(I.virtualRouterId);
const PRIORITY = bounds(I.priority);
/**
 * Read as any duration from the shortest advertisement interval; config/vrrp.ts reports
 * one VRRPv3 cannot carry, in its own words.
 */
const ADVERT_INT: Bounds = { min: bounds(I.advertInt).min, max: MAX_DURATION };
const PREEMPT_DELAY: Bounds = { min: bounds(I.preemptDelay).min, max: MAX_DURATION };
const TRACK_WEIGHT = bounds(TrackWeightSchema);
const S = VrrpScriptSchema.shape;
const SCRIPT_INTERVAL = bounds(S.interval);
const SCRIPT_TIMEOUT = bounds(S.timeout);
const SCRIPT_RISE = bounds(S.rise);
const SCRIPT_FALL = bounds(S.fall);

const VRRP_KEYS = [
  'name',
  'state',
  'interface',
  'virtual_router_id',
  'priority',
  'advert_int',
  'nopreempt',
  'preempt_delay',
  'virtual_ipaddress',
  'unicast_src_ip',
  'unicast_peer',
  'track_interface',
  'track_script',
  'track_health',
  'notify_master',
  'notify_backup',
  'notify_fault',
  'notify_stop',
  'notify',
  'authentication',
];

/** A track list item: "name" or { name, weight }. */
function readTrack(ctx: Ctx, item: Node, path: string): { name: string; weight?: number } | undefined {
  if (isScalar(item) && typeof item.value === 'string') return { name: item.value };
  const t = asMap(ctx, item, path);
  if (!t) return undefined;
  t.require('name');
  const name = t.str('name');
  const weight = t.int('weight', TRACK_WEIGHT);
  t.done(['name', 'weight']);
  if (!name) return undefined;
  return weight === undefined ? { name } : { name, weight };
}

/** One entry of `vrrp:`. */
export function readVrrp(ctx: Ctx, n: Node, path: string): VrrpInstanceConfig | undefined {
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
  const vrid = m.int('virtual_router_id', VRID);
  if (vrid !== undefined) v.virtualRouterId = vrid;
  const prio = m.int('priority', PRIORITY);
  if (prio !== undefined) v.priority = prio;
  const adv = m.seconds('advert_int', ADVERT_INT);
  if (adv !== undefined) v.advertInt = adv;
  const np = m.bool('nopreempt');
  if (np !== undefined) v.nopreempt = np;
  const pd = m.seconds('preempt_delay', PREEMPT_DELAY);
  if (pd !== undefined) v.preemptDelay = pd;
  v.virtualIpaddress =
    m.list('virtual_ipaddress', (it, p) => {
      if (isScalar(it) && typeof it.value === 'string') return it.value;
      ctx.error(it, p, 'expected an address like 198.18.0.1/24');
      return undefined;
    }) ?? [];
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
    const w = th.int('weight', TRACK_WEIGHT);
    th.done(['weight']);
    if (w !== undefined) v.trackHealth = { weight: w };
  }
  for (const [k, f] of [
    ['notify_master', 'notifyMaster'],
    ['notify_backup', 'notifyBackup'],
    ['notify_fault', 'notifyFault'],
    ['notify_stop', 'notifyStop'],
    ['notify', 'notify'],
  ] as const) {
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

/** One entry of `vrrp_scripts:`; undefined without a name or a script (reported). */
export function readVrrpScript(ctx: Ctx, n: Node, path: string): VrrpScriptConfig | undefined {
  const m = asMap(ctx, n, path);
  if (!m) return undefined;
  m.require('name');
  m.require('script');
  const interval = m.seconds('interval', SCRIPT_INTERVAL) ?? 1;
  const s: VrrpScriptConfig = {
    name: m.str('name') ?? '',
    script: m.str('script') ?? '',
    interval,
    timeout: m.seconds('timeout', SCRIPT_TIMEOUT) ?? interval,
    weight: m.int('weight', TRACK_WEIGHT) ?? 0,
    rise: m.int('rise', SCRIPT_RISE) ?? 1,
    fall: m.int('fall', SCRIPT_FALL) ?? 1,
    initFail: m.bool('init_fail') ?? false,
    origin: ctx.pos(n),
  };
  m.done(VRRP_SCRIPT_KEYS);
  return s.name && s.script ? s : undefined;
}
