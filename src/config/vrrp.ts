/**
 * Checks of the VRRP part of a configuration that need the whole of it (both formats read
 * their keys into the model first): required keys, VIP syntax and family, one VRID per
 * interface, tracked scripts that exist. Each message names the instance and the key, at
 * the place the key was written.
 */
import { canonicalAddr, familyOf } from '../core/addr.js';
import { bounds } from '../core/schema.js';
import { TrackWeightSchema, VrrpInstanceSchema } from '../ha/schema.js';
import type { Diagnostic, Origin, VrrpInstanceConfig, VrrpScriptConfig } from './model.js';

const ADVERT = bounds(VrrpInstanceSchema.shape.advertInt);
const PREEMPT = bounds(VrrpInstanceSchema.shape.preemptDelay);
const WEIGHT = bounds(TrackWeightSchema);

/** One virtual address as `ip addr add` takes it. */
export interface Vip {
  addr: string;
  family: 4 | 6;
  /** Prefix length (default 32 / 128, as keepalived). */
  prefix: number;
  /** Interface, when not the instance's. */
  dev?: string;
  /** Further `ip addr add` words (label, brd, scope). */
  extra: string[];
}

/** Parses "ADDR[/LEN] [dev IF] [label L] [brd B] [scope S]"; a string is the problem. */
export function parseVip(text: string): Vip | string {
  const w = text.trim().split(/\s+/);
  const m = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(w[0] ?? '');
  const addr = m ? canonicalAddr(m[1]!) : null;
  if (!m || !addr) return `expected an address like 198.18.0.1/24, got "${w[0] ?? ''}"`;
  const family = familyOf(addr) === 6 ? 6 : 4;
  const max = family === 4 ? 32 : 128;
  const prefix = m[2] === undefined ? max : Number(m[2]);
  if (prefix < 1 || prefix > max) return `prefix length /${m[2]} out of range 1-${max}`;
  const vip: Vip = { addr, family, prefix, extra: [] };
  for (let i = 1; i < w.length; i += 2) {
    const k = w[i]!;
    const v = w[i + 1];
    if (v === undefined) return `"${k}" needs a value`;
    if (k === 'dev') vip.dev = v;
    else if (k === 'label' || k === 'brd' || k === 'broadcast' || k === 'scope') vip.extra.push(k === 'broadcast' ? 'brd' : k, v);
    else return `"${k}" is not supported in a virtual address (dev, label, brd, scope are)`;
  }
  return vip;
}

/** The VRRP diagnostics of a configuration (empty when it is sound). */
export function validateVrrp(instances: readonly VrrpInstanceConfig[], scripts: readonly VrrpScriptConfig[], file: string): Diagnostic[] {
  const out: Diagnostic[] = [];
  const at = (v: VrrpInstanceConfig, key: string): Origin => v.at?.[key] ?? v.origin ?? { file, line: 1, column: 1 };
  const err = (v: VrrpInstanceConfig, key: string, msg: string) =>
    out.push({ ...at(v, key), message: `vrrp instance ${v.name}: ${key}: ${msg}` });
  const names = new Map<string, VrrpInstanceConfig>();
  const vrids = new Map<string, VrrpInstanceConfig>();
  const scriptNames = new Set(scripts.map((s) => s.name));
  const seenScripts = new Set<string>();
  for (const s of scripts) {
    if (seenScripts.has(s.name))
      out.push({ ...(s.origin ?? { file, line: 1, column: 1 }), message: `vrrp_script ${s.name}: defined twice` });
    seenScripts.add(s.name);
  }
  for (const v of instances) {
    if (names.has(v.name)) err(v, 'name', `instance name used twice`);
    names.set(v.name, v);
    if (!v.interface) err(v, 'interface', 'is required');
    if (v.virtualRouterId === undefined) err(v, 'virtual_router_id', 'is required (1-255)');
    if (v.advertInt !== undefined && (v.advertInt < ADVERT.min || v.advertInt > ADVERT.max)) {
      err(v, 'advert_int', `${v.advertInt} s out of range: VRRPv3 carries ${ADVERT.min} to ${ADVERT.max} s`);
    }
    if (v.preemptDelay !== undefined && (v.preemptDelay < PREEMPT.min || v.preemptDelay > PREEMPT.max))
      err(v, 'preempt_delay', `${v.preemptDelay} out of range ${PREEMPT.min}-${PREEMPT.max} s`);
    if (!v.virtualIpaddress.length) err(v, 'virtual_ipaddress', 'at least one address is required');
    let fam: number | undefined;
    for (const text of v.virtualIpaddress) {
      const vip = parseVip(text);
      if (typeof vip === 'string') {
        err(v, 'virtual_ipaddress', vip);
        continue;
      }
      fam ??= vip.family;
      if (vip.family !== fam)
        err(v, 'virtual_ipaddress', `${vip.addr}: all addresses of an instance must be of one family (VRRP sends one family per instance)`);
    }
    if (v.unicastSrcIp !== undefined && !canonicalAddr(v.unicastSrcIp))
      err(v, 'unicast_src_ip', `expected an address, got "${v.unicastSrcIp}"`);
    for (const p of v.unicastPeer ?? []) if (!canonicalAddr(p)) err(v, 'unicast_peer', `expected an address, got "${p}"`);
    for (const t of v.trackScript ?? []) if (!scriptNames.has(t.name)) err(v, 'track_script', `no vrrp_script "${t.name}" is defined`);
    for (const t of [...(v.trackInterface ?? []), ...(v.trackScript ?? [])]) {
      if (t.weight !== undefined && (t.weight < WEIGHT.min || t.weight > WEIGHT.max))
        err(v, t.name, `weight ${t.weight} out of range ${WEIGHT.min}..${WEIGHT.max}`);
    }
    if (v.interface && v.virtualRouterId !== undefined) {
      const fam4or6 = fam ?? 4;
      const key = `${v.interface}/${fam4or6}/${v.virtualRouterId}`;
      const other = vrids.get(key);
      if (other) err(v, 'virtual_router_id', `${v.virtualRouterId} is used by instance ${other.name} on ${v.interface} too`);
      vrids.set(key, v);
    }
  }
  return out.sort((a, b) => a.line - b.line || a.column - b.column);
}
