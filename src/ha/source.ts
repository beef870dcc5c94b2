/**
 * What the API, /metrics and the dashboard know about VRRP: the seam between the HA side
 * and its readers. The speaker (speaker.ts) implements VrrpSource; until VRRP is
 * configured the API reads NO_VRRP ("not configured").
 */
type VrrpRole = 'master' | 'backup' | 'fault' | 'init';

/** One VRRP instance as the API and dashboard show it. */
export interface VrrpInstance {
  name: string;
  vrid: number;
  state: VrrpRole;
  /** Effective priority (configured plus track weights). */
  priority: number;
  vips: string[];
  /** The rest is filled in by the speaker (src/ha/speaker.ts). */
  interface?: string;
  /** Configured priority. */
  basePriority?: number;
  /** Own advert interval, milliseconds. */
  advertIntMs?: number;
  /** While BACKUP: the master heard last. */
  master?: string | null;
  /** Why the instance is in its state (FAULT: which interface or script). */
  reason?: string;
  /** ISO time of the last transition. */
  since?: string;
  advertsSent?: number;
  advertsReceived?: number;
  transitions?: number;
  /** Packets for this instance dropped, by reason (src/ha/packet.ts DROP_REASONS). */
  dropped?: Record<string, number>;
}

/** `configured: false` means no VRRP instance exists on this director. */
export interface VrrpStatus {
  configured: boolean;
  instances: VrrpInstance[];
  /** Packets dropped before an instance could be told (malformed, unknown VRID), by reason. */
  dropped?: Record<string, number>;
}

/** Reads VRRP state; the speaker (speaker.ts) implements it. */
export interface VrrpSource {
  status(): VrrpStatus;
}

/** The source used while no VRRP instance is configured. */
export const NO_VRRP: VrrpSource = {
  status: () => ({ configured: false, instances: [] }),
};
