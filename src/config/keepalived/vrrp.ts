/**
 * keepalived.conf VRRP part, which src/ha runs: vrrp_instance (state, interface,
 * virtual_router_id, priority, advert_int, virtual_ipaddress, nopreempt, preempt_delay,
 * unicast_src_ip, unicast_peer, track_interface, track_script, notify_*) and vrrp_script.
 * vrrp_sync_group is reported unsupported by the top level.
 */
import type { VrrpInstanceConfig, VrrpScriptConfig } from '../model.js';
import { KEEPALIVED_KEYWORDS } from './keywords.js';
import type { Stmt } from './lexer.js';
import { setIf, type Reader } from './reader.js';
import { clip, quote } from '../../core/quote.js';

/** Script keywords of vrrp_instance, to the model's fields. */
const VRRP_NOTIFY = {
  notify_master: 'notifyMaster',
  notify_backup: 'notifyBackup',
  notify_fault: 'notifyFault',
  notify_stop: 'notifyStop',
  notify: 'notify',
} as const;

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
      r.unsupported.push({ ...s.at, message: `unsupported keyword ${quote(w[i])} in ${where} (ignored: the weight applies as written)` });
    } else {
      r.error(s, `${where}: expected "${w[0]} [weight N]", got ${quote(w.slice(1).join(' '))}`);
      return undefined;
    }
  }
  return t;
}

/** Reads a `vrrp_instance NAME { ... }` block; every keyword is also kept as written (raw). */
export function readVrrp(r: Reader, st: Stmt): VrrpInstanceConfig {
  const v: VrrpInstanceConfig = { name: st.words[1]!, virtualIpaddress: [], raw: {}, at: {}, origin: st.at };
  const where = `vrrp_instance ${clip(v.name)}`;
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
        else r.error(s, `${where}: state: expected MASTER or BACKUP, got ${quote(s.words[1] ?? '')}`);
        break;
      case 'interface':
        setIf(v, 'interface', r.word(s, 'an interface name'));
        break;
      case 'virtual_router_id':
        setIf(v, 'virtualRouterId', r.intArg(s, 'a VRID (1-255)', 1, 255));
        break;
      case 'priority':
        setIf(v, 'priority', r.intArg(s, 'a priority (1-255)', 1, 255));
        break;
      case 'advert_int':
        setIf(v, 'advertInt', r.timerArg(s));
        break;
      case 'nopreempt':
        if (r.flag(s)) v.nopreempt = true;
        break;
      case 'preempt':
        if (r.flag(s)) v.nopreempt = false;
        break;
      case 'preempt_delay':
        setIf(v, 'preemptDelay', r.timerArg(s, 'seconds (0-1000)'));
        break;
      case 'virtual_ipaddress':
        if (r.needBlock(s)) v.virtualIpaddress = (s.block ?? []).map((b) => b.words.join(' '));
        break;
      case 'unicast_src_ip':
        setIf(v, 'unicastSrcIp', r.addrArg(s));
        break;
      case 'unicast_peer':
        if (!r.needBlock(s)) break;
        v.unicastPeer = [];
        for (const p of s.block ?? []) {
          const a = r.addr(p, 0, 'a peer address');
          if (a) v.unicastPeer.push(a);
          if (p.words.length > 1)
            r.unsupported.push({ ...p.at, message: `unsupported keyword ${quote(p.words[1])} in unicast_peer of ${where} (ignored)` });
        }
        break;
      case 'track_interface':
      case 'track_script': {
        if (!r.needBlock(s)) break;
        const list = (s.block ?? [])
          .map((b) => {
            const t = readTrackLine(r, b, `${k} of ${where}`);
            if (t && k === 'track_script' && r.removedScripts.has(t.name)) {
              r.unsupported.push({ ...b.at, message: `track_script of ${where}: ${quote(t.name)} has no script; not tracked` });
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
        else
          r.unsupported.push({
            ...s.at,
            message: `unsupported keyword "version" ${s.words[1] ?? ''} in ${where} (tsvs speaks VRRPv3 only)`,
          });
        break;
      case 'authentication':
        r.unsupportedKw(s, where, 'VRRPv3 has no authentication; block ignored');
        break;
      default:
        if (k in VRRP_NOTIFY) setIf(v, VRRP_NOTIFY[k as keyof typeof VRRP_NOTIFY], r.script(s));
        else r.unsupportedKw(s, where, s.block ? 'block ignored' : 'ignored');
    }
  }
  // Bad values name the instance too.
  for (const e of r.errors.slice(mark)) if (!e.message.startsWith('vrrp')) e.message = `vrrp instance ${v.name}: ${e.message}`;
  if (!version3 && !r.vrrpVersion3) {
    r.unsupported.push({
      ...st.at,
      message: `${where}: tsvs speaks VRRPv3; keepalived defaults to VRRPv2, so keepalived peers need vrrp_version 3 in global_defs`,
    });
  }
  return v;
}

/** Reads a `vrrp_script NAME { ... }` block; one without a script is dropped, as keepalived does. */
export function readVrrpScript(r: Reader, st: Stmt): VrrpScriptConfig | undefined {
  const name = st.words[1]!;
  const where = `vrrp_script ${clip(name)}`;
  const sc: VrrpScriptConfig = { name, script: '', interval: 1, timeout: 0, weight: 0, rise: 1, fall: 1, initFail: false, origin: st.at };
  for (const s of st.block ?? []) {
    const k = s.words[0]!;
    switch (k) {
      case 'script':
        if (r.args(s, 1, 3, 'a command line (quote it when it has arguments)')) {
          sc.script = s.words[1]!;
          if (s.words.length > 2)
            r.unsupported.push({ ...s.at, message: `${k}: running scripts as another user is not supported; runs as tsvsd's user` });
        }
        break;
      case 'interval':
      case 'timeout':
        setIf(sc, k, r.timerArg(s));
        break;
      case 'weight': {
        if (!r.args(s, 1, 2, 'a weight (-253..253) [reverse]')) break;
        const n = r.int(s, 1, -253, 253);
        if (n !== undefined) sc.weight = n;
        if (s.words[2]) r.unsupported.push({ ...s.at, message: `unsupported keyword ${quote(s.words[2])} in ${where} (ignored)` });
        break;
      }
      case 'rise':
      case 'fall':
        setIf(sc, k, r.intArg(s, 'a count', 1, 1000));
        break;
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
    r.unsupported.push({ ...st.at, message: `vrrp_script ${quote(name)} has no script set: removed, as keepalived does` });
    r.removedScripts.add(name);
    return undefined;
  }
  return sc;
}
