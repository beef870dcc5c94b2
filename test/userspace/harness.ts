/**
 * A director in the test process for the userspace plane: a real IpvsTable whose clock can
 * be moved forward, the plane (optionally with worker threads), and test servers on port 0.
 * Shared by test/dataplane/userspace*.test.ts, which run the conformance scenarios with it.
 */
import type { IpvsTable } from '../../src/core/table.js';
import { newTable } from '../table.js';
import type { Op } from '../../src/core/types.js';
import type { LogLevel } from '../../src/core/log.js';
import { UserspaceDataPlane } from '../../src/dataplane/userspace/index.js';
import type { LimitOptions } from '../../src/dataplane/userspace/limits.js';
import { freePort, startServer, type TestServer, type TestServerKind } from '../helper.js';
import type { Harness } from '../dataplane/scenarios.js';

export interface UserspaceHarness extends Harness {
  readonly table: IpvsTable;
  readonly plane: UserspaceDataPlane;
  readonly logs: Array<{ level: LogLevel; msg: string }>;
  /** Moves the table's clock forward and runs its housekeeping. */
  advance(ms: number): void;
}

/**
 * A director in this process: table (with a clock that `advance` can move), plane, and a
 * 1 s tick as the daemon runs it. `start` false leaves the plane unstarted.
 */
export async function makeUserspaceHarness(
  opts: {
    vip?: string;
    connectTimeoutMs?: number;
    table?: IpvsTable;
    workers?: number;
    limits?: LimitOptions;
    redispatchRetries?: number;
  } = {},
): Promise<UserspaceHarness> {
  const vip = opts.vip ?? '127.0.0.1';
  let skew = 0;
  const table = opts.table ?? newTable({ now: () => performance.now() + skew });
  const logs: Array<{ level: LogLevel; msg: string }> = [];
  const plane = new UserspaceDataPlane({
    log: (level, msg) => logs.push({ level, msg }),
    connectTimeoutMs: opts.connectTimeoutMs ?? 5000,
    workers: opts.workers ?? 1,
    ...(opts.limits ? { limits: opts.limits } : {}),
    ...(opts.redispatchRetries !== undefined ? { redispatchRetries: opts.redispatchRetries } : {}),
  });
  await plane.start(table);
  const tick = setInterval(() => table.tick(), 1000);
  const servers: TestServer[] = [];
  const vport = await freePort(vip);
  return {
    vip,
    vport,
    fwd: 'masq',
    clientAddrs: vip === '127.0.0.1' ? ['127.0.0.2', '127.0.0.3'] : [],
    clientNetmask: vip === '127.0.0.1' ? 0xffffff00 : 120,
    table,
    plane,
    logs,
    async apply(ops: Op[]) {
      const norm = table.validate(ops);
      await plane.prepare(norm);
      try {
        table.applyAll(norm);
      } catch (e) {
        plane.abort(norm);
        throw e;
      }
    },
    view: async () => table.view(),
    connView: async () => table.connView(),
    async makeRealServers(kind: TestServerKind, names: string[]) {
      const made = await Promise.all(names.map((n) => startServer(kind, n, { host: vip })));
      servers.push(...made);
      return made;
    },
    async expireClosed() {
      // TIME_WAIT (120 s) and CLOSE (10 s) run out; ESTABLISHED (900 s) does not.
      skew += 121_000;
      table.tick();
    },
    advance(ms: number) {
      skew += ms;
      table.tick();
    },
    counters: () => plane.counters(),
    async close() {
      clearInterval(tick);
      await plane.stop(0);
      await Promise.all(servers.map((s) => s.close()));
    },
  };
}
