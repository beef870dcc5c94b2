/**
 * What the API, /metrics and the dashboard know about VRRP (VrrpSource: "not configured"
 * until it exists) and the data plane's counters. Real-server health comes from
 * src/health/source.ts.
 */
export type VrrpRole = 'master' | 'backup' | 'fault' | 'init';

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

export interface VrrpSource {
  status(): VrrpStatus;
}

export const NO_VRRP: VrrpSource = {
  status: () => ({ configured: false, instances: [] }),
};

/** Data plane error counters, when the plane offers them (the userspace plane does). */
export interface DataPlaneCounters {
  /** New connections refused because the scheduler found no real server. */
  noDestination: number;
  /** Failed connects to real servers, by real server id "addr:port". */
  connectFailures: Record<string, number>;
}

/** The plane's counters, or null for a plane without them. */
export function dataPlaneCounters(plane: unknown): DataPlaneCounters | null {
  const f = (plane as { counters?: unknown } | null)?.counters;
  if (typeof f !== 'function') return null;
  const c = f.call(plane) as Partial<DataPlaneCounters> | null;
  if (!c || typeof c.noDestination !== 'number') return null;
  const cf = c.connectFailures as unknown;
  // Accept a Map as well as a record: the plane keeps a Map internally.
  const failures = cf instanceof Map ? Object.fromEntries(cf) : ((cf ?? {}) as Record<string, number>);
  return { noDestination: c.noDestination, connectFailures: failures };
}
