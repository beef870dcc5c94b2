import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { serviceId } from '../../src/core/service.js';
import type { TsvsConfig, VirtualServiceConfig } from '../../src/config/model.js';
import { planReload } from '../../src/config/diff.js';
import { desiredDests, HealthEngine, nextQuorum, stepChecker } from '../../src/health/engine.js';
import { checker, httpServer, makeDirector, realServer, sleep, TcpServer, vservice, waitFor } from './helper.js';

const config = (services: VirtualServiceConfig[]): TsvsConfig => ({ format: 'yaml', file: 'test', services, vrrp: [], unsupported: [] });

async function startEngine(services: VirtualServiceConfig[], opts: { scripts?: string[] } = {}) {
  const { director, table, logs } = await makeDirector();
  const scripts = opts.scripts ?? [];
  const engine = new HealthEngine({ director, log: logs.log, runScript: (cmd, env) => scripts.push(`${cmd} ${env.TSVS_STATE}`) });
  const cfg = config(services);
  const prepared = engine.prepare(cfg);
  await director.apply(planReload(table.config(), null, prepared.desired()).ops);
  engine.commit(prepared);
  engine.start();
  return { director, table, logs, engine, scripts };
}

const destsOf = (table: import('../../src/core/table.js').IpvsTable, port: number) =>
  new Map(table.get({ af: 4, protocol: 'tcp', addr: '127.0.0.1', port, fwmark: 0 })!.dests.map((d) => [d.port, d.weight]));

/** Schedules n new connections and counts them per real-server port. */
function scheduleMany(table: import('../../src/core/table.js').IpvsTable, vport: number, n: number): Map<number, number> {
  const svc = table.lookup('tcp', '127.0.0.1', vport)!;
  const out = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const c = table.schedule(svc, { caddr: '10.9.0.1', cport: 10000 + i, vaddr: '127.0.0.1', vport });
    if (c) out.set(c.dport, (out.get(c.dport) ?? 0) + 1);
  }
  return out;
}

describe('checker state machine (pure)', () => {
  const p = { rise: 2, fall: 3 };
  test('fall: down only after `fall` consecutive failures, a pass resets the count', () => {
    let s = { state: 'up' as const, okStreak: 0, failStreak: 0 } as Parameters<typeof stepChecker>[0];
    for (const ok of [false, false, true, false, false]) {
      const r = stepChecker(s, ok, p);
      assert.equal(r.changed, false);
      s = r.next;
    }
    const r = stepChecker(s, false, p);
    assert.deepEqual([r.changed, r.next.state], [true, 'down']);
  });
  test('rise: up only after `rise` consecutive passes; only transitions are reported', () => {
    let s = { state: 'down' as const, okStreak: 0, failStreak: 0 } as Parameters<typeof stepChecker>[0];
    let r = stepChecker(s, true, p);
    assert.equal(r.changed, false);
    r = stepChecker(r.next, false, p);
    r = stepChecker(r.next, true, p);
    assert.equal(r.changed, false);
    r = stepChecker(r.next, true, p);
    assert.deepEqual([r.changed, r.next.state], [true, 'up']);
    s = r.next;
    assert.equal(stepChecker(s, true, p).changed, false);
  });
  test('quorum with hysteresis: lost below quorum - h, regained at quorum + h', () => {
    assert.equal(nextQuorum(true, 2, 3, 1), true);
    assert.equal(nextQuorum(true, 1, 3, 1), false);
    assert.equal(nextQuorum(false, 3, 3, 1), false);
    assert.equal(nextQuorum(false, 4, 3, 1), true);
  });
  test('desired table: dead server removed, or weight 0 with inhibit; sorry server replaces all when quorum is lost', () => {
    const a = realServer(1, { weight: 3 });
    const b = realServer(2, { inhibitOnFailure: true, weight: 2 });
    const svc = vservice(80, [a, b], { sorryServer: { addr: '127.0.0.9', port: 9, fwd: 'masq', inhibit: false } });
    const dead = (rs: typeof a) => ({ alive: rs.port === 1 });
    const w = desiredDests(svc, dead, true);
    assert.equal(w.get('127.0.0.1:1')!.weight, 3);
    assert.equal(w.get('127.0.0.1:2')!.weight, 0);
    assert.equal(w.get('127.0.0.9:9'), null);
    const lost = desiredDests(svc, () => ({ alive: false }), false);
    assert.equal(lost.get('127.0.0.1:1'), null);
    assert.equal(lost.get('127.0.0.9:9')!.weight, 1);
  });
});

describe('health engine on loopback', () => {
  test('a killed server is out of rotation within interval x (retry+1) + margin, gets no new connection, and is back after rise checks', async () => {
    const a = await new TcpServer().open();
    const b = await new TcpServer().open();
    const tcp = checker('tcp', { interval: 0.2, retry: 2, delayBeforeRetry: 0.2, timeout: 0.5, rise: 2 });
    const { table, logs, engine, scripts } = await startEngine([
      vservice(8080, [
        realServer(a.port, { checkers: [tcp], notifyDown: '/bin/notify down', notifyUp: '/bin/notify up' }),
        realServer(b.port, { checkers: [tcp] }),
      ]),
    ]);
    try {
      assert.deepEqual([...destsOf(table, 8080).keys()].sort(), [a.port, b.port].sort());
      await sleep(300);
      await a.close();
      // Detection needs up to one interval, then 1 + retry attempts with delay_before_retry between them.
      const took = await waitFor(() => !destsOf(table, 8080).has(a.port), 0.2 * 1000 * 3 + 1500, 'removal');
      assert.ok(took >= 300, `removed after ${took} ms: retries must have been made`);
      const picks = scheduleMany(table, 8080, 50);
      assert.deepEqual([...picks.keys()], [b.port]);
      assert.ok(
        logs
          .messages()
          .includes(`TCP check of 127.0.0.1:${a.port} in TCP 127.0.0.1:8080 failed after 2 retries (connect: ECONNREFUSED); removed`),
        logs.messages().join('\n'),
      );
      assert.deepEqual(
        engine.get({ af: 4, protocol: 'tcp', addr: '127.0.0.1', port: 8080, fwmark: 0 }, `127.0.0.1:${a.port}`).state,
        'down',
      );
      await a.open(a.port);
      await waitFor(() => destsOf(table, 8080).get(a.port) === 1, 3000, 'restore');
      const after = scheduleMany(table, 8080, 10);
      assert.equal(after.get(a.port), 5);
      assert.ok(
        logs
          .messages()
          .some((m) => m === `TCP check of 127.0.0.1:${a.port} in TCP 127.0.0.1:8080 passed 2 times (connected); restored with weight 1`),
      );
      assert.deepEqual(scripts, ['/bin/notify down DOWN', '/bin/notify up UP']);
      const h = engine.get({ af: 4, protocol: 'tcp', addr: '127.0.0.1', port: 8080, fwmark: 0 }, `127.0.0.1:${a.port}`);
      assert.equal(h.state, 'up');
      assert.equal(h.lastCheck?.ok, true);
    } finally {
      await engine.stop();
      await a.close();
      await b.close();
    }
  });

  test('inhibit_on_failure: weight 0 instead of removal, connections stay; configured weight comes back', async () => {
    const a = await new TcpServer().open();
    const b = await new TcpServer().open();
    const tcp = checker('tcp', { interval: 0.1, retry: 0 });
    const { table, logs, engine } = await startEngine([
      vservice(8081, [realServer(a.port, { checkers: [tcp], inhibitOnFailure: true, weight: 5 }), realServer(b.port, { checkers: [tcp] })]),
    ]);
    try {
      const svc = table.lookup('tcp', '127.0.0.1', 8081)!;
      // An open connection to a, made before it fails.
      let open = null;
      for (let i = 0; i < 10 && !open; i++) {
        const c = table.schedule(svc, { caddr: '10.9.0.2', cport: 2000 + i, vaddr: '127.0.0.1', vport: 8081 });
        if (c?.dport === a.port) open = c;
      }
      assert.ok(open);
      await a.close();
      await waitFor(() => destsOf(table, 8081).get(a.port) === 0, 2000, 'weight 0');
      assert.ok(logs.messages().some((m) => m.endsWith('weight set to 0 (inhibit_on_failure)')));
      assert.equal(
        svc.dests.find((d) => d.port === a.port)!.activeconns + svc.dests.find((d) => d.port === a.port)!.inactconns,
        1,
        'the open connection is still counted',
      );
      assert.deepEqual([...scheduleMany(table, 8081, 20).keys()], [b.port]);
      await a.open(a.port);
      await waitFor(() => destsOf(table, 8081).get(a.port) === 5, 2000, 'weight 5 back');
    } finally {
      await engine.stop();
      await a.close();
      await b.close();
    }
  });

  test('HTTP check expecting 200 takes out a server answering 500', async () => {
    const good = await httpServer((_q, r) => r.end('ok'));
    const bad = await httpServer((_q, r) => r.end('ok'));
    const http = checker('http', {
      interval: 0.1,
      retry: 1,
      delayBeforeRetry: 0.05,
      http: { urls: [{ path: '/', statusCodes: [[200, 200]] }], sni: false },
    });
    const { table, logs, engine } = await startEngine([
      vservice(8082, [realServer(good.port, { checkers: [http] }), realServer(bad.port, { checkers: [http] })]),
    ]);
    try {
      bad.setHandler((_q, r) => {
        r.statusCode = 500;
        r.end();
      });
      await waitFor(() => !destsOf(table, 8082).has(bad.port), 2000, 'removal of the 500 server');
      assert.ok(
        logs
          .messages()
          .some((m) =>
            m.startsWith(
              `HTTP check of 127.0.0.1:${bad.port} in TCP 127.0.0.1:8082 failed after 1 retry (/: HTTP status 500, expected 200)`,
            ),
          ),
      );
      assert.ok(destsOf(table, 8082).has(good.port));
    } finally {
      await engine.stop();
      await good.close();
      await bad.close();
    }
  });

  test('sorry server takes over when every real server is down and leaves when one returns; quorum scripts run', async () => {
    const a = await new TcpServer().open();
    const sorry = await new TcpServer().open();
    const tcp = checker('tcp', { interval: 0.1, retry: 0 });
    const scripts: string[] = [];
    const { table, logs, engine } = await startEngine(
      [
        vservice(8083, [realServer(a.port, { checkers: [tcp] })], {
          sorryServer: { addr: '127.0.0.1', port: sorry.port, fwd: 'masq', inhibit: false },
          quorumUp: '/q up',
          quorumDown: '/q down',
        }),
      ],
      { scripts },
    );
    try {
      assert.deepEqual([...destsOf(table, 8083).keys()], [a.port]);
      await a.close();
      await waitFor(() => destsOf(table, 8083).has(sorry.port), 2000, 'sorry server in');
      assert.deepEqual([...scheduleMany(table, 8083, 5).keys()], [sorry.port]);
      assert.ok(logs.messages().includes('TCP 127.0.0.1:8083: quorum lost (live weight 0 < 1); real servers out, sorry server in'));
      await a.open(a.port);
      await waitFor(() => !destsOf(table, 8083).has(sorry.port) && destsOf(table, 8083).has(a.port), 2000, 'sorry server out');
      assert.deepEqual([...scheduleMany(table, 8083, 5).keys()], [a.port]);
      assert.deepEqual(scripts, ['/q down QUORUM_DOWN', '/q up QUORUM_UP']);
    } finally {
      await engine.stop();
      await a.close();
      await sorry.close();
    }
  });

  test('alpha: servers start down and join after passing; misc_dynamic sets the weight', async () => {
    const a = await new TcpServer().open();
    const { table, engine } = await startEngine([
      vservice(8084, [
        realServer(a.port, { checkers: [checker('tcp', { interval: 0.1, alpha: true, rise: 2 })] }),
        realServer(a.port + 1 === 65536 ? 1 : a.port + 1, {
          addr: '127.0.0.2',
          checkers: [checker('misc', { interval: 0.1, misc: { path: '/bin/sh -c "exit 9"', timeout: 2, dynamic: true } })],
        }),
      ]),
    ]);
    try {
      assert.equal(destsOf(table, 8084).has(a.port), false, 'alpha: not in the table before its checks pass');
      await waitFor(() => destsOf(table, 8084).get(a.port) === 1, 2000, 'alpha server joins');
      const svc = table.lookup('tcp', '127.0.0.1', 8084)!;
      await waitFor(() => svc.dests.find((d) => d.addr === '127.0.0.2')?.weight === 7, 2000, 'dynamic weight 7');
    } finally {
      await engine.stop();
      await a.close();
    }
  });

  test('reload keeps checker state: an unchanged down server stays down without flapping', async () => {
    const a = await new TcpServer().open();
    const b = await new TcpServer().open();
    const tcp = checker('tcp', { interval: 0.1, retry: 0 });
    const svcCfg = vservice(8085, [realServer(a.port, { checkers: [tcp] }), realServer(b.port, { checkers: [tcp] })]);
    const { table, engine, director } = await startEngine([svcCfg]);
    try {
      await a.close();
      await waitFor(() => !destsOf(table, 8085).has(a.port), 2000, 'a removed');
      const next = vservice(8085, [...svcCfg.realServers, realServer(7, { addr: '127.0.0.3' })]);
      const prepared = engine.prepare(config([next]));
      const plan = planReload(table.config(), [svcCfg], prepared.desired());
      assert.deepEqual(plan.summary, [`add-server tcp:127.0.0.1:8085 -> 127.0.0.3:7`]);
      await director.apply(plan.ops);
      engine.commit(prepared);
      await sleep(300);
      assert.equal(destsOf(table, 8085).has(a.port), false);
      assert.equal(engine.get(next, `127.0.0.1:${a.port}`).state, 'down');
      assert.equal(engine.get(next, '127.0.0.3:7').state, 'unchecked');
      assert.equal(serviceId(next), 'tcp:127.0.0.1:8085');
    } finally {
      await engine.stop();
      await a.close();
      await b.close();
    }
  });

  test('quorum with hysteresis over weights: lost below quorum - h, back only at quorum + h; omega runs down notifiers at stop', async () => {
    const servers = await Promise.all([1, 2, 3].map(() => new TcpServer().open()));
    const [a, b, c] = servers as [TcpServer, TcpServer, TcpServer];
    const tcp = checker('tcp', { interval: 0.1, retry: 0 });
    const scripts: string[] = [];
    const { table, engine } = await startEngine(
      [
        vservice(
          8086,
          [
            realServer(a.port, { weight: 2, checkers: [tcp] }),
            realServer(b.port, { weight: 2, checkers: [tcp], notifyDown: '/rs-b' }),
            realServer(c.port, { weight: 2, checkers: [tcp] }),
          ],
          {
            quorum: 4,
            hysteresis: 1,
            quorumUp: '/up',
            quorumDown: '/down',
            omega: true,
          },
        ),
      ],
      { scripts },
    );
    try {
      await a.close(); // live weight 4 >= 4 - 1: quorum holds
      await waitFor(() => !destsOf(table, 8086).has(a.port), 2000, 'a out');
      await b.close(); // live weight 2 < 3: lost
      await waitFor(() => scripts.includes('/down QUORUM_DOWN'), 2000, 'quorum down');
      await a.open(a.port); // live weight 4 < 4 + 1: not regained yet
      await waitFor(() => destsOf(table, 8086).has(a.port), 2000, 'a back');
      await sleep(300);
      assert.equal(scripts.includes('/up QUORUM_UP'), false, 'hysteresis holds the quorum down at weight 4');
      await b.open(b.port); // live weight 6 >= 5: regained
      await waitFor(() => scripts.includes('/up QUORUM_UP'), 2000, 'quorum up');
    } finally {
      await engine.stop();
      for (const s of servers) await s.close();
    }
    // omega: at stop, the down notifier of the live server b and quorum_down run.
    assert.deepEqual(scripts.slice(-2), ['/rs-b DOWN', '/down QUORUM_DOWN']);
  });
});

describe('a checker that cannot probe or throws (issue #13 item 6)', () => {
  test('UDP_CHECK of a port-0 real server (fwmark, DR) is a failed check with a reason, not an uncaught ERR_SOCKET_BAD_PORT', async () => {
    const uncaught: unknown[] = [];
    const onErr = (e: unknown) => uncaught.push(e);
    process.on('uncaughtException', onErr);
    process.on('unhandledRejection', onErr);
    const udp = checker('udp', { interval: 0.1, retry: 0, bindto: '127.0.0.1' });
    const svc = vservice(0, [realServer(0, { fwd: 'route', checkers: [udp] }), realServer(0, { addr: '127.0.0.2', fwd: 'route' })], {
      addr: '',
      fwmark: 7,
    });
    const { table, logs, engine } = await startEngine([svc]);
    const key = { af: 4 as const, protocol: 'tcp' as const, addr: '', port: 0, fwmark: 7 };
    try {
      await waitFor(() => table.get(key)!.dests.length === 1, 3000, 'the unprobeable server removed');
      await sleep(300);
      assert.deepEqual(uncaught, [], 'nothing escaped the checker');
      assert.ok(
        logs.messages().some((m) => /UDP check of 127\.0\.0\.1:0 .* failed \(no port to check \(port 0\)/.test(m)),
        logs.messages().join('\n'),
      );
      const removed = engine.removed(key);
      assert.deepEqual(
        removed.map((r) => [r.id, r.health.state]),
        [['127.0.0.1:0', 'down']],
      );
    } finally {
      await engine.stop();
      process.off('uncaughtException', onErr);
      process.off('unhandledRejection', onErr);
    }
  });

  test('a checker that throws or rejects gives a failed check with the error as reason', async () => {
    const { director, table, logs } = await makeDirector();
    const engine = new HealthEngine({
      director,
      log: logs.log,
      checkers: {
        tcp: () => {
          throw new RangeError('boom from the checker');
        },
      },
    });
    const a = realServer(5001, { checkers: [checker('tcp', { interval: 0.1, retry: 0 })] });
    const prepared = engine.prepare(config([vservice(8095, [a, realServer(5002)])]));
    await director.apply(planReload(table.config(), null, prepared.desired()).ops);
    engine.commit(prepared);
    engine.start();
    try {
      await waitFor(() => !destsOf(table, 8095).has(5001), 3000, 'removal');
      assert.ok(
        logs.messages().some((m) => m.includes('failed (boom from the checker); removed')),
        logs.messages().join('\n'),
      );
      const key = { af: 4 as const, protocol: 'tcp' as const, addr: '127.0.0.1', port: 8095, fwmark: 0 };
      assert.equal(engine.removed(key)[0]?.health.lastCheck?.reason, 'boom from the checker');
    } finally {
      await engine.stop();
    }
  });
});
