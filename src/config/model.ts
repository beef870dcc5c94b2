/**
 * The declarative configuration model that both file formats (YAML, keepalived.conf) are
 * read into: virtual services with their real servers and health checkers, the sorry
 * server, quorum, and the VRRP instances and scripts (src/ha). Plain data; times are in
 * seconds as in keepalived.conf, converted to milliseconds only where timers are set.
 */
import type { DestConfig, FwdMethod, ServiceConfig, Timeouts } from '../core/types.js';
import type { SyncSettings } from '../sync/ha.js';

export type CheckerType = 'tcp' | 'http' | 'https' | 'udp' | 'dns' | 'misc';

/** Checker names as keepalived spells them, for logs ("TCP check of ..."). */
export const CHECKER_LABEL: Record<CheckerType, string> = {
  tcp: 'TCP',
  http: 'HTTP',
  https: 'SSL',
  udp: 'UDP',
  dns: 'DNS',
  misc: 'MISC',
};

export interface HttpUrl {
  path: string;
  /** Accepted status ranges, inclusive; default [[200, 299]]. */
  statusCodes: Array<[number, number]>;
  /** Lowercase hex MD5 of the body, when set. */
  digest?: string;
  virtualhost?: string;
}

export interface CheckerConfig {
  type: CheckerType;
  /** Defaults to the real server's address and port. */
  connectIp?: string;
  connectPort?: number;
  /** Source address to bind (keepalived bindto). */
  bindto?: string;
  /** Seconds between checks (delay_loop). */
  interval: number;
  /** Seconds a single attempt may take (connect_timeout). */
  timeout: number;
  /** Extra attempts after a failure before the checker fails (retry). */
  retry: number;
  /** Seconds between those attempts (delay_before_retry). */
  delayBeforeRetry: number;
  /** Consecutive failed checks before down (1 = keepalived). */
  fall: number;
  /** Consecutive passed checks before up (1 = keepalived). */
  rise: number;
  /** Start in the failed state (keepalived alpha). */
  alpha: boolean;
  http?: { urls: HttpUrl[]; virtualhost?: string; sni: boolean };
  udp?: { payload?: string; requireReply: boolean; minReplyLength: number; maxReplyLength: number };
  dns?: { type: string; name: string };
  misc?: { path: string; timeout: number; dynamic: boolean };
}

export interface RealServerConfig extends DestConfig {
  inhibitOnFailure: boolean;
  notifyUp?: string;
  notifyDown?: string;
  checkers: CheckerConfig[];
  /** Where it was declared, for messages. */
  origin?: Origin;
}

export interface SorryServerConfig {
  addr: string;
  port: number;
  fwd: FwdMethod;
  /** Keep the sorry server in the table at weight 0 instead of removing it. */
  inhibit: boolean;
}

export interface VirtualServiceConfig extends ServiceConfig {
  realServers: RealServerConfig[];
  sorryServer?: SorryServerConfig;
  quorum: number;
  hysteresis: number;
  quorumUp?: string;
  quorumDown?: string;
  /** Run quorum-down and real-server-down notifiers when the daemon stops. */
  omega: boolean;
  origin?: Origin;
}

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
export interface VrrpScriptConfig {
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
  origin?: Origin;
}

export interface VrrpInstanceConfig {
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
  /** Where each key was written, for messages that name the key. */
  at?: Record<string, Origin>;
  origin?: Origin;
}

/** A place in a config file. */
export interface Origin {
  file: string;
  line: number;
  column: number;
}

export interface Diagnostic {
  file: string;
  line: number;
  column: number;
  message: string;
}

export interface TsvsConfig {
  /** 'yaml', 'keepalived' or 'ipvsadm' (rule lines: services only, no health). */
  format: 'yaml' | 'keepalived' | 'ipvsadm';
  file: string;
  services: VirtualServiceConfig[];
  timeouts?: Timeouts;
  dataplane?: string;
  api?: { listen?: string };
  vrrp: VrrpInstanceConfig[];
  /** vrrp_script blocks, by name (tracked by vrrp instances). */
  vrrpScripts?: VrrpScriptConfig[];
  /** State sync between directors (src/sync): YAML `sync:`, keepalived lvs_sync_daemon. */
  sync?: SyncSettings;
  /** Keywords parsed but not acted on (keepalived.conf), each with its place. */
  unsupported: Diagnostic[];
}

/** Checker defaults from keepalived.conf(5). */
export function checkerDefaults(type: CheckerType): Omit<CheckerConfig, 'type'> {
  return {
    interval: 60,
    timeout: 5,
    retry: type === 'dns' ? 3 : type === 'misc' ? 0 : 1,
    delayBeforeRetry: type === 'http' || type === 'https' ? 3 : 1,
    fall: 1,
    rise: 1,
    alpha: false,
  };
}

/** Text of a checker config that is equal exactly when two checkers behave the same. */
export function checkerFingerprint(c: CheckerConfig): string {
  return stableJson(c);
}

/** JSON with object keys sorted at every level, so equal data gives equal text. */
export function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}
