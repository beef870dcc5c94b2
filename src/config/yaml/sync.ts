/** YAML `sync:` to the model's sync settings (src/sync). */
import { familyOf } from '../../core/addr.js';
import type { SyncSettings } from '../../sync/ha.js';
import type { Ctx, MapReader } from './reader.js';
import { quote } from '../../core/quote.js';

/**
 * `sync:` state sync between directors (src/sync): `daemon` is keepalived's
 * lvs_sync_daemon (the IPVS sync protocol), `conntrackd` the kernel conntrack replication
 * that tsvsd sets up and supervises for the nftables plane.
 */
export function readSync(ctx: Ctx, top: MapReader): SyncSettings | undefined {
  const s = top.map('sync');
  if (!s) return undefined;
  const out: SyncSettings = {};
  const d = s.map('daemon');
  if (d) {
    const ok = d.require('interface', 'is required (the multicast interface, as lvs_sync_daemon IF)');
    const daemon: SyncSettings['daemon'] = { mcastIfn: d.str('interface') ?? '' };
    const instance = d.str('instance');
    if (instance !== undefined) daemon.instance = instance;
    const syncid = d.int('syncid', { min: 0, max: 255 });
    if (syncid !== undefined) daemon.syncid = syncid;
    const maxlen = d.int('maxlen', { min: 1, max: 65535 - 20 - 8 });
    if (maxlen !== undefined) daemon.maxlen = maxlen;
    const port = d.int('port', { min: 1, max: 65535 });
    if (port !== undefined) daemon.port = port;
    const ttl = d.int('ttl', { min: 1, max: 255 });
    if (ttl !== undefined) daemon.ttl = ttl;
    const group = d.addr('group');
    if (group !== undefined) {
      if (familyOf(group) === 4 ? Number(group.split('.')[0]) >>> 4 !== 0xe : !group.startsWith('ff'))
        ctx.error(d.node_('group'), d.sub('group'), `expected a multicast address, got ${quote(group)}`);
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
    const ct: NonNullable<SyncSettings['conntrackd']> = {
      interface: c.str('interface') ?? '',
      address: c.addr('address') ?? '',
      peer: c.addr('peer') ?? '',
    };
    for (const k of ['address', 'peer'] as const) {
      if (ct[k] && familyOf(ct[k]) !== 4) {
        ctx.error(c.node_(k), c.sub(k), 'conntrackd syncs over IPv4 here: expected an IPv4 address');
        ok = false;
      }
    }
    const port = c.int('port', { min: 1, max: 65535 });
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
