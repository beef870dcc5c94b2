/**
 * keepalived.conf `global_defs`: the IPVS timeouts (lvs_timeouts), the sync daemon
 * (lvs_sync_daemon) and vrrp_version; every other global keyword is reported.
 */
import { MAX_TIMEOUT } from '../../core/schema.js';
import { DEFAULT_TIMEOUTS } from '../../core/tcpstate.js';
import type { TsvsConfig } from '../model.js';
import type { Stmt } from './lexer.js';
import type { Reader } from './reader.js';
import { quote } from '../../core/quote.js';

/** Reads a `global_defs { ... }` block into `cfg`. */
export function readGlobals(r: Reader, st: Stmt, cfg: TsvsConfig): void {
  for (const s of st.block ?? []) {
    if (s.words[0] === 'lvs_timeouts') {
      const t = { ...DEFAULT_TIMEOUTS };
      for (let i = 1; i < s.words.length; i += 2) {
        const k = s.words[i]!;
        if (k !== 'tcp' && k !== 'tcpfin' && k !== 'udp') {
          r.error(s, `lvs_timeouts: expected tcp, tcpfin or udp, got ${quote(k)}`);
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
      r.error(s, `lvs_sync_daemon: expected id, maxlen, port, ttl or group, got ${quote(k)}`);
      return;
    }
    if (k === 'group') {
      const g = r.addr(s, i + 1, 'a multicast address');
      if (g === undefined) return;
      if (g.includes(':') ? !g.startsWith('ff') : Number(g.split('.')[0]) >>> 4 !== 0xe) {
        r.error(s, `lvs_sync_daemon: group ${quote(g)} is not a multicast address`);
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
