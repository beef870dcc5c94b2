/**
 * A director with a large table for the paging tests, built through the core (no data
 * plane sockets, no network): N services of 4 real servers each, with a few services in
 * known conditions (a down server, a quiesced one, an overloaded one, one with no usable
 * server) and known connection counts and rates, plus a stub data plane that counts
 * refusals and failed connects.
 */
import { pino } from 'pino';
import type { Hono } from 'hono';
import type { ServerHealth, HealthSource } from '../../src/health/source.js';
import { createControlApp } from '../../src/api/server.js';
import type { IpvsTable } from '../../src/core/table.js';
import { newTable } from '../table.js';
import type { DestConfig, Op, ServiceConfig } from '../../src/core/types.js';
import { Director } from '../../src/daemon/director.js';
import type { DataPlane } from '../../src/dataplane/dataplane.js';

/** Service i's VIP: 198.18.(i / 256).(i % 256). */
export function vipOf(i: number): string {
  return `198.18.${i >> 8}.${i & 255}`;
}

/** Every 10th service is UDP port 53, every 100th (from 5) a firewall mark; the rest TCP port 80. */
export function serviceOf(i: number): ServiceConfig {
  const base = {
    af: 4 as const,
    addr: vipOf(i),
    fwmark: 0,
    scheduler: i % 2 ? 'rr' : 'wlc',
    schedFlags: 0,
    persistent: 0,
    netmask: 0xffffffff,
    ops: false,
    pe: '',
  };
  if (i % 100 === 5) return { ...base, protocol: 'tcp', addr: '0.0.0.0', port: 0, fwmark: 1000 + i };
  if (i % 10 === 3) return { ...base, protocol: 'udp', port: 53 };
  return { ...base, protocol: 'tcp', port: 80 };
}

/** Real server k (0..3) of service i: 198.19.(i / 256).(i % 256):8080+k. */
export function destOf(i: number, k: number, weight = 1): DestConfig {
  return { af: 4, addr: `198.19.${i >> 8}.${i & 255}`, port: 8080 + k, weight, fwd: 'masq', uThreshold: 0, lThreshold: 0 };
}

/** Services in a known condition. */
export const SPECIAL = { down: 1234, quiesced: [2000, 2001], overloaded: 3000, nodest: 4000, busiest: 777, second: 778 } as const;

export interface BigDirector {
  director: Director;
  table: IpvsTable;
  app: Hono;
  /** Service ids, in table order. */
  ids: string[];
  /** Traffic on SPECIAL.busiest and SPECIAL.second, as the estimator sees it after one tick (rates decay without it). */
  bump(): void;
  stop(): Promise<void>;
}

/** A data plane that carries nothing: the table is all these tests need. */
function stubPlane(): DataPlane & { counters(): { noDestination: number; connectFailures: Map<string, number> } } {
  return {
    name: 'stub',
    methods: new Set(['masq', 'route', 'tunnel', 'fullnat']),
    start: async () => undefined,
    prepare: async () => undefined,
    abort: () => undefined,
    stop: async () => undefined,
    counters: () => ({ noDestination: 7, connectFailures: new Map([[`${destOf(SPECIAL.down, 0).addr}:8080`, 3]]) }),
  };
}

/** Health: real server 0 of SPECIAL.down is down, everything else up. */
const health: HealthSource = {
  get(service, dest): ServerHealth {
    if (service.addr === vipOf(SPECIAL.down) && dest === `${destOf(SPECIAL.down, 0).addr}:8080`) {
      return {
        state: 'down',
        checker: 'tcp',
        lastCheck: { at: new Date(0).toISOString(), ok: false, reason: 'connect ECONNREFUSED', latencyMs: 1 },
      };
    }
    return { state: 'up', checker: 'tcp' };
  },
};

/** Builds the table of `n` services (n > 4000 for every SPECIAL service to exist). */
export async function bigDirector(n: number, opts: { eventIntervalMs?: number } = {}): Promise<BigDirector> {
  const table = newTable();
  const ops: Op[] = [];
  for (let i = 0; i < n; i++) {
    const service = serviceOf(i);
    ops.push({ op: 'add-service', service });
    const all0 = i === SPECIAL.nodest;
    const quiesced = (SPECIAL.quiesced as readonly number[]).includes(i);
    for (let k = 0; k < 4; k++) ops.push({ op: 'add-server', service, dest: destOf(i, k, all0 || (quiesced && k === 1) ? 0 : 1) });
  }
  const director = new Director(table, stubPlane(), null, pino({ level: 'silent' }));
  await director.start();
  await director.apply(ops);
  const svcs = table.list();
  // Known connection counts: active i % 7 and inactive i % 3 on real server 0.
  svcs.forEach((s, i) => {
    const d = s.dests.find((x) => x.port === 8080)!;
    d.activeconns = i % 7;
    d.inactconns = i % 3;
  });
  if (n > SPECIAL.overloaded) svcs[SPECIAL.overloaded]!.dests[0]!.overloaded = true;
  const bump = () => {
    for (const [i, c] of [
      [SPECIAL.busiest, 5000],
      [SPECIAL.second, 2000],
    ] as const) {
      if (i >= n) continue;
      svcs[i]!.stats.conns += c;
      svcs[i]!.stats.estimate();
    }
  };
  bump();
  const app = createControlApp(director, { health, ...(opts.eventIntervalMs ? { eventIntervalMs: opts.eventIntervalMs } : {}) });
  return { director, table, app, ids: svcs.map((s) => s.id), bump, stop: () => director.stop(0) };
}
