/**
 * What health checking needs to know, whichever file format it came from: the checkers
 * (keepalived's TCP_CHECK, HTTP_GET, ...) with keepalived's defaults, and the real
 * servers and virtual services they watch, with what to do on failure (inhibit, sorry
 * server, quorum, notify scripts). The config readers (src/config) fill these in and add
 * where each was written. Plain data; times are in seconds as in keepalived.conf,
 * converted to milliseconds only where timers are set.
 */
import type { DestConfig, FwdMethod, ServiceConfig } from '../core/types.js';

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

/** One URL an HTTP or SSL checker fetches. */
export interface HttpUrl {
  path: string;
  /** Accepted status ranges, inclusive; default [[200, 299]]. */
  statusCodes: Array<[number, number]>;
  /** Lowercase hex MD5 of the body, when set. */
  digest?: string;
  virtualhost?: string;
}

/** One checker of a real server, with every keepalived default filled in. */
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

/** A real server as health checking sees it: its table entry, its checkers and what failure does. */
export interface CheckedDest extends DestConfig {
  inhibitOnFailure: boolean;
  notifyUp?: string;
  notifyDown?: string;
  checkers: CheckerConfig[];
}

/** The server that takes the traffic while a service has lost its quorum. */
export interface SorryServerConfig {
  addr: string;
  port: number;
  fwd: FwdMethod;
  /** Keep the sorry server in the table at weight 0 instead of removing it. */
  inhibit: boolean;
}

/** A virtual service as health checking sees it: its real servers, sorry server and quorum. */
export interface CheckedService extends ServiceConfig {
  realServers: CheckedDest[];
  sorryServer?: SorryServerConfig;
  quorum: number;
  hysteresis: number;
  quorumUp?: string;
  quorumDown?: string;
  /** Run quorum-down and real-server-down notifiers when the daemon stops. */
  omega: boolean;
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
function stableJson(v: unknown): string {
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
