/**
 * What a VRRP instance and a vrrp_script are, as the speaker runs them: the part of the
 * configuration model that belongs to HA. The config readers (src/config) extend these
 * with the place each was written; times are in seconds as in keepalived.conf.
 */
import { canonicalAddr, familyOf } from '../core/addr.js';

/** A tracked interface: down means FAULT (weight 0) or the weight added to the priority. */
export interface VrrpTrackInterface {
  name: string;
  weight: number;
}

/** A tracked vrrp_script, with the instance's weight override when given. */
export interface VrrpTrackScript {
  name: string;
  weight?: number;
}

/** keepalived `vrrp_script NAME { ... }` / YAML `vrrp_scripts:`. Times in seconds. */
export interface VrrpScriptSpec {
  name: string;
  /** The command line (split like a shell, run without one). */
  script: string;
  interval: number;
  timeout: number;
  /** 0: failure puts the tracking instances in FAULT; > 0 added while up; < 0 added while down. */
  weight: number;
  rise: number;
  fall: number;
  /** Start as failed until `rise` successes (keepalived init_fail). */
  initFail: boolean;
}

/** keepalived `vrrp_instance NAME { ... }` / YAML `vrrp:`. */
export interface VrrpInstanceSpec {
  name: string;
  state?: 'MASTER' | 'BACKUP';
  interface?: string;
  virtualRouterId?: number;
  priority?: number;
  /** Seconds, fractions allowed (sent in centiseconds). */
  advertInt?: number;
  nopreempt?: boolean;
  /** Seconds (keepalived preempt_delay, 0..1000). */
  preemptDelay?: number;
  /** Each as written: "ADDR[/LEN] [dev IF] [label L] [brd B] [scope S]". */
  virtualIpaddress: string[];
  unicastSrcIp?: string;
  unicastPeer?: string[];
  trackInterface?: VrrpTrackInterface[];
  trackScript?: VrrpTrackScript[];
  /** tsvs's own health: while a service has no real server up, add this weight (negative). */
  trackHealth?: { weight: number };
  notifyMaster?: string;
  notifyBackup?: string;
  notifyFault?: string;
  notifyStop?: string;
  /** keepalived `notify`: called on every transition with GROUP|INSTANCE, name, state, priority appended. */
  notify?: string;
  /** Every keyword as written. */
  raw: Record<string, string[]>;
}

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
