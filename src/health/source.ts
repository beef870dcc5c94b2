/**
 * What the health engine tells the rest of tsvs about real-server health: the API,
 * /metrics and the dashboard read it through HealthSource. Until health checking is
 * configured every real server reads "unchecked".
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
