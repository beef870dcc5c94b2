/**
 * What the API, /metrics and the dashboard know about real-server health. The health
 * engine (src/health/) implements HealthSource; until it is configured every real server
 * reads "unchecked". The HA side's VrrpSource is in src/ha/source.ts.
 */
import type { ServiceKey } from '../core/types.js';

export type HealthState = 'up' | 'down' | 'unchecked';

/** Every health state, in the order /metrics lists them. */
export const HEALTH_STATES: readonly HealthState[] = ['up', 'down', 'unchecked'];

/** The last check of one real server. */
export interface HealthCheck {
  /** ISO 8601 time the check finished. */
  at: string;
  ok: boolean;
  /** Why it failed ("connect ECONNREFUSED", "HTTP 503"), or what passed ("HTTP 200"). */
  reason: string;
  latencyMs: number;
}

export interface ServerHealth {
  state: HealthState;
  /** The checker's name (tcp, http, ...), when one is configured. */
  checker?: string;
  lastCheck?: HealthCheck;
}

/** Reads health state; `dest` is the real server's id "addr:port" ("[v6]:port"). */
export interface HealthSource {
  get(service: ServiceKey, dest: string): ServerHealth;
  /**
   * Real servers of `service` that health checking took out of the table (keepalived's
   * default on failure), so that listings can still show them, down, with the reason.
   * Optional: without it, a removed server simply disappears from listings.
   */
  removed?(service: ServiceKey): Array<{ id: string; health: ServerHealth }>;
}

/** The source used while no health checking is configured. */
export const UNCHECKED: HealthSource = {
  get: () => ({ state: 'unchecked' }),
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
