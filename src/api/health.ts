/**
 * The data plane's error counters, as the API, /metrics and the dashboard show them.
 * Real-server health comes from src/health/source.ts, VRRP from src/ha/source.ts.
 */

/** Data plane error counters, when the plane offers them (the userspace plane does). */
export interface DataPlaneCounters {
  /** New connections refused because the scheduler found no real server. */
  noDestination: number;
  /** Failed connects to real servers, by real server id "addr:port". */
  connectFailures: Record<string, number>;
  /** Clients refused by a connection or descriptor limit, by service label and limit. */
  limitRefused?: Array<{ service: string; limit: string; count: number }>;
  /** New connections sent to another real server after a failed connect, by service label. */
  redispatches?: Record<string, number>;
  /** UDP flows closed to make room for new ones. */
  udpFlowsReaped?: number;
  /** The plane's descriptors: open (estimate), limit (null: unlimited) and the reserve. */
  fds?: { open: number; limit: number | null; reserve: number };
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
  const out: DataPlaneCounters = { noDestination: c.noDestination, connectFailures: failures };
  if (Array.isArray(c.limitRefused)) out.limitRefused = c.limitRefused;
  if (c.redispatches && typeof c.redispatches === 'object') out.redispatches = c.redispatches;
  if (typeof c.udpFlowsReaped === 'number') out.udpFlowsReaped = c.udpFlowsReaped;
  if (c.fds && typeof c.fds.open === 'number') out.fds = c.fds;
  return out;
}
