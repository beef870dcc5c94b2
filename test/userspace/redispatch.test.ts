/**
 * Redispatch on the userspace plane (#13 item 7): two real servers, each its own process,
 * a load of `Connection: close` requests through the VIP, and one server killed with
 * SIGKILL mid-run. Requests started after it died never fail: their connect to the dead
 * server is refused before anything reached the client, so the plane sends them to the
 * other server. Requests in flight at the kill may fail. Run in one thread and with
 * --workers 2 (the worker asks the main thread for the new server).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { httpGet } from '../helper.js';
import { destOf, serviceOf } from '../dataplane/scenarios.js';
import { makeUserspaceHarness } from './harness.js';
import type { TestServer } from '../helper.js';

const RUNNER = join(import.meta.dirname, '..', 'nftables', 'rs-runner.ts');

/** An HTTP test server in a child process (so it can be killed by PID). */
function childServer(t: TestContext, name: string): Promise<{ proc: ChildProcess; server: TestServer }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', RUNNER, 'http', name, '127.0.0.1'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start`)), 20_000);
    proc.once('exit', (c) => reject(new Error(`${name} exited ${c}`)));
    proc.stdout!.once('data', (b: Buffer) => {
      clearTimeout(timer);
      const { port } = JSON.parse(b.toString().split('\n')[0]!) as { port: number };
      resolve({ proc, server: { name, addr: '127.0.0.1', port } as TestServer });
    });
  });
}

for (const workers of [1, 2]) {
  describe(`userspace plane${workers > 1 ? ` --workers ${workers}` : ''}: redispatch`, () => {
    test('a real server killed mid-run: 0 failed requests started after it died; redispatches counted', { timeout: 60_000 }, async (t) => {
      const h = await makeUserspaceHarness({ workers });
      t.after(() => h.close());
      const a = await childServer(t, 'rs-a');
      const b = await childServer(t, 'rs-b');
      const svc = serviceOf(h, { scheduler: 'rr' });
      await h.apply([
        { op: 'add-service', service: svc },
        { op: 'add-server', service: svc, dest: destOf(h, a.server) },
        { op: 'add-server', service: svc, dest: destOf(h, b.server) },
      ]);
      let killedAt = Infinity;
      const died = new Promise<void>((r) => b.proc.once('exit', () => r()));
      const TOTAL = 1200;
      let started = 0;
      const failedAfter: string[] = [];
      let failedInFlight = 0;
      const answered: Record<string, number> = {};
      const deadline = Date.now() + 30_000;
      const loop = async () => {
        while (started < TOTAL && Date.now() < deadline) {
          const n = started++;
          if (n === 300) {
            b.proc.kill('SIGKILL');
            void died.then(() => {
              killedAt = performance.now();
            });
          }
          const t0 = performance.now();
          try {
            const r = await httpGet(h.vip, h.vport, { timeoutMs: 5000 });
            answered[r.server] = (answered[r.server] ?? 0) + 1;
          } catch (e) {
            if (t0 > killedAt) failedAfter.push(`#${n}: ${(e as Error).message}`);
            else failedInFlight++;
          }
        }
      };
      await Promise.all(Array.from({ length: 8 }, loop));
      assert.ok(killedAt < Infinity, 'rs-b died during the run');
      assert.deepEqual(failedAfter, [], 'no request started after the kill failed');
      assert.ok((answered['rs-a'] ?? 0) > TOTAL / 2, `rs-a answered the rest: ${JSON.stringify(answered)}`);
      const c = h.plane.counters();
      const redispatched = Object.values(c.redispatches).reduce((x, y) => x + y, 0);
      assert.ok(redispatched >= 1, `redispatches counted: ${JSON.stringify(c.redispatches)}`);
      assert.ok(
        (c.connectFailures[`127.0.0.1:${b.server.port}`] ?? 0) >= redispatched,
        'each redispatch follows a counted connect failure',
      );
      // Failing servers are skipped for a while, so a dead one costs few redispatches, not one per two requests.
      assert.ok(redispatched < 100, `${redispatched} redispatches`);
      t.diagnostic(`answered ${JSON.stringify(answered)}, in flight failed ${failedInFlight}, redispatched ${redispatched}`);
    });
  });
}
