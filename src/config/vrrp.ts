/**
 * Checks of the VRRP part of a configuration that need the whole of it (both formats read
 * their keys into the model first): required keys, VIP syntax and family, one VRID per
 * interface, tracked scripts that exist. Each message names the instance and the key, at
 * the place the key was written.
 */
import { canonicalAddr } from '../core/addr.js';
import { bounds } from '../core/schema.js';
import { parseVip } from '../ha/model.js';
import { TrackWeightSchema, VrrpInstanceSchema } from '../ha/schema.js';
import type { Diagnostic, Origin, VrrpInstanceConfig, VrrpScriptConfig } from './model.js';
import { quote } from '../core/quote.js';

const ADVERT = bounds(VrrpInstanceSchema.shape.advertInt);
const PREEMPT = bounds(VrrpInstanceSchema.shape.preemptDelay);
const WEIGHT = bounds(TrackWeightSchema);

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
      err(v, 'unicast_src_ip', `expected an address, got ${quote(v.unicastSrcIp)}`);
    for (const p of v.unicastPeer ?? []) if (!canonicalAddr(p)) err(v, 'unicast_peer', `expected an address, got ${quote(p)}`);
    for (const t of v.trackScript ?? []) if (!scriptNames.has(t.name)) err(v, 'track_script', `no vrrp_script ${quote(t.name)} is defined`);
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
