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
