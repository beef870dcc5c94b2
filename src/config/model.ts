/**
 * The declarative configuration model that both file formats (YAML, keepalived.conf) are
 * read into: virtual services with their real servers (health checking's part of them,
 * checkers, sorry server and quorum, is declared in src/health/model.ts), and the VRRP
 * instances and scripts (src/ha), each with the place it was written. Plain data; times
 * are in seconds as in keepalived.conf.
 */
import type { Timeouts } from '../core/types.js';
import type { CheckedRealServer, CheckedService } from '../health/model.js';
import type { SyncSettings } from '../sync/ha.js';

/** A real server as written in a config file. */
export interface RealServerConfig extends CheckedRealServer {
  /** Where it was declared, for messages. */
  origin?: Origin;
}

/** A virtual service as written in a config file. */
export interface VirtualServiceConfig extends CheckedService {
  realServers: RealServerConfig[];
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
