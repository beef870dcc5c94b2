/**
 * tsvsd's connection-limit options, for both data planes: their parseArgs entries, their
 * help text and their checks. The daemon spreads LIMIT_ARG_OPTIONS into its option list
 * and hands parseLimitArgs' result to createDataPlane.
 */
import { bounds, ServiceConfigSchema } from '../core/schema.js';
import type { LimitOptions } from './userspace/limits.js';

/** What the options set: the limits, and the userspace plane's redispatch retries. */
export interface LimitArgs extends LimitOptions {
  redispatchRetries?: number | undefined;
}

export const LIMIT_ARG_OPTIONS = {
  'max-conns': { type: 'string' },
  'max-conns-per-service': { type: 'string' },
  'max-conns-per-client': { type: 'string' },
  'max-udp-flows': { type: 'string' },
  'fd-reserve': { type: 'string' },
  'redispatch-retries': { type: 'string' },
} as const;

export const LIMIT_ARG_USAGE = `  --max-conns N         connections (TCP plus UDP flows) over all services; both
                        planes (default: none)
  --max-conns-per-service N   the same for each service, unless its max_conns says
                        otherwise (default: none)
  --max-conns-per-client N    the same for each client address within a service,
                        unless its max_conns_per_client says otherwise (default: none)
  --max-udp-flows N     userspace plane: UDP flows over all services; idle flows
                        are reaped first (default: none, the fd reserve still holds)
  --fd-reserve N        userspace plane: file descriptors kept free of client
                        traffic for the control socket, API and health checks
                        (default 128, at most half of ulimit -n)
  --redispatch-retries N  userspace plane: other real servers a new TCP connection
                        tries after a failed connect (default 2; 0 = reset at once)
`;

const MAX = bounds(ServiceConfigSchema.shape.maxConns).max;

/** Checks the limit options; throws a message naming the option and the problem. */
export function parseLimitArgs(values: Partial<Record<keyof typeof LIMIT_ARG_OPTIONS, string | undefined>>): LimitArgs {
  const num = (name: keyof typeof LIMIT_ARG_OPTIONS, max: number): number | undefined => {
    const v = values[name];
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n > max)
      throw new Error(`--${name} "${v.slice(0, 40)}": must be a whole number from 0 to ${max}`);
    return n;
  };
  return {
    maxConns: num('max-conns', MAX),
    maxConnsPerService: num('max-conns-per-service', MAX),
    maxConnsPerClient: num('max-conns-per-client', MAX),
    maxUdpFlows: num('max-udp-flows', MAX),
    fdReserve: num('fd-reserve', 1 << 20),
    redispatchRetries: num('redispatch-retries', 10),
  };
}
