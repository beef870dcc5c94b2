/**
 * The declarative configuration model that both file formats (YAML, keepalived.conf) are
 * read into: virtual services with their real servers (health checking's part of them,
 * checkers, sorry server and quorum, is declared in src/health/model.ts), and the VRRP
 * instances and scripts (src/ha), each with the place it was written. Plain data; times
 * are in seconds as in keepalived.conf.
 */
import type { Timeouts } from '../core/types.js';
import type { CheckedDest, CheckedService } from '../health/model.js';
import type { VrrpInstanceSpec, VrrpScriptSpec } from '../ha/model.js';
import type { SyncSettings } from '../sync/ha.js';

/** A real server as written in a config file. */
export interface RealServerConfig extends CheckedDest {
  /** Where it was declared, for messages. */
  origin?: Origin;
}

/** A virtual service as written in a config file. */
export interface VirtualServiceConfig extends CheckedService {
  realServers: RealServerConfig[];
  origin?: Origin;
}

/** keepalived `vrrp_script NAME { ... }` / YAML `vrrp_scripts:`, as written in a config file. */
export interface VrrpScriptConfig extends VrrpScriptSpec {
  origin?: Origin;
}

/** A VRRP instance as written in a config file. */
export interface VrrpInstanceConfig extends VrrpInstanceSpec {
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
  /**
   * YAML: the file says `services: []`, so no services is meant. An empty file, or one with
   * no `services:` key, is not taken as "delete every service" on reload (docs/config.md).
   */
  noServicesOnPurpose?: boolean;
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
