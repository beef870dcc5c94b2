/**
 * The data-plane conformance suite: the same scenarios, over real connections to real
 * servers, for every data plane. A plane runs it with
 *
 *   runDataPlaneScenarios('userspace', makeHarness)
 *
 * where `makeHarness` builds a fresh, empty director for one scenario:
 *
 *     test process (client)                     director                  real servers
 *     sources: clientAddrs  ----->  vip:vport  [table + data plane]  ----->  rs.addr:rs.port
 *
 * - userspace: everything on loopback in this process. vip 127.0.0.1, real servers on
 *   127.0.0.1:<port 0>, clients from 127.0.0.2 / 127.0.0.3 for the netmask case.
 * - nftables (test/nftables/scenarios.test.ts): the director and the real servers in network namespaces; the test
 *   process reaches `vip` through a veth (it is the client), `clientAddrs` are addresses
 *   on the test side of that veth, and `makeRealServers` starts the same kinds of server
 *   (test/helper.ts) inside the real-server namespaces and returns their namespace
 *   addresses (198.19.0.x), which is what the table holds.
 *
 * What the harness must give:
 * - `vip`, `vport`: where scenarios put their one service; the port is free for TCP and UDP.
 * - `fwd`: the forwarding method scenarios give real servers (`masq` works for both planes).
 * - `clientAddrs`: local source addresses the test can bind (`localAddress`) that the
 *   director sees as different clients of one `clientNetmask` network; fewer than two
 *   skips the netmask part of the persistence scenario.
 * - `apply(ops)`: the way the daemon applies a batch: validate, `plane.prepare`,
 *   `table.applyAll`, `plane.abort` on failure. Rejects with the TsvsError.
 * - `view()`, `connView()`: the table as `ipvsadm -Ln` / `-Lnc` sees it, counters included
 *   (a plane that reads counters back asynchronously resolves once they are current, or
 *   the scenarios' waitFor absorbs the lag).
 * - `makeRealServers(kind, names)`: started servers (helper.ts kinds), closed by `close()`.
 *   `TestServer.close()` on one of them must make its port refuse connections.
 * - `expireClosed()`: entries of closed connections (TIME_WAIT, CLOSE) leave the table now,
 *   as if their timers had run out; open connections keep theirs. (Userspace jumps the
 *   table's clock; a kernel plane can delete those conntrack entries.)
 * - `counters()` (optional): the plane's own refusal / connect-failure counters.
 * - `close()`: stops the plane and every server; must leave nothing open.
 *
 * Each scenario asserts behaviour only (who answered, what arrived, what the table shows),
 * never timing. A plane that cannot pass one declares it in `opts.skip` with the reason.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { familyOf, formatAddrPort } from '../../src/core/addr.js';
import type { ConnView, DestConfig, FwdMethod, Op, ServiceConfig, ServiceView, TableView } from '../../src/core/types.js';
import {
  keepAliveClient,
  newEchoConnections,
  newHttpConnections,
  openEcho,
  rawHttpGet,
  sha256,
  tcpOutcome,
  udpClient,
  waitFor,
  type HttpReply,
  type TestServer,
  type TestServerKind,
} from '../helper.js';

/** A fresh director for one scenario; see the file comment. */
export interface Harness {
  readonly vip: string;
  readonly vport: number;
  readonly fwd: FwdMethod;
  readonly clientAddrs: readonly string[];
  /** Netmask grouping all of clientAddrs: an IPv4 mask as a number, or an IPv6 prefix length. */
  readonly clientNetmask: number;
  apply(ops: Op[]): Promise<void>;
  view(): Promise<TableView>;
  connView(): Promise<ConnView[]>;
  makeRealServers(kind: TestServerKind, names: string[]): Promise<TestServer[]>;
  expireClosed(): Promise<void>;
  counters?(): { noDestination: number; connectFailures: Record<string, number> };
  close(): Promise<void>;
}

export type ScenarioId =
  | 'rr'
  | 'keepalive'
  | 'remove-server'
  | 'wrr'
  | 'lc'
  | 'persistence'
  | 'weight-zero'
  | 'threshold'
  | 'udp'
  | 'udp-lc'
  | 'server-down'
  | 'counters'
  | 'half-close';

export interface ScenarioOptions {
  /** Scenarios the plane cannot pass, each with the reason. */
  skip?: Partial<Record<ScenarioId, string>>;
  /**
   * The plane refuses one-packet scheduling (-o), for this reason: the udp scenario then
   * checks the refusal (NOT_SUPPORTED, the flows untouched) instead of the alternation.
   */
  oneShotRefused?: string;
  /** Per-scenario limit, so a hang fails instead of stalling the run (default 30 s). */
  timeoutMs?: number;
  /**
   * The plane sends a client whose connect failed to another server (the userspace
   * plane's redispatch): server-down then expects an answer from the live server.
   */
  redispatch?: boolean;
}

// ------------------------------------------------------------------ building ops

/** The scenario's service on vip:vport with ipvsadm's defaults, overridden by `over`. */
export function serviceOf(h: Harness, over: Partial<ServiceConfig> = {}): ServiceConfig {
  const af = familyOf(h.vip) ?? 4;
  return {
    af,
    protocol: 'tcp',
    addr: h.vip,
    port: h.vport,
    fwmark: 0,
    scheduler: 'rr',
    schedFlags: 0,
    persistent: 0,
    netmask: af === 4 ? 0xffffffff : 128,
    ops: false,
    pe: '',
    ...over,
  };
}

/** A real server entry for a test server, overridden by `over`. */
export function destOf(h: Harness, rs: TestServer, over: Partial<DestConfig> = {}): DestConfig {
  return { af: familyOf(rs.addr) ?? 4, addr: rs.addr, port: rs.port, weight: 1, fwd: h.fwd, uThreshold: 0, lThreshold: 0, ...over };
}

function addServers(h: Harness, svc: ServiceConfig, servers: TestServer[], over: Partial<DestConfig>[] = []): Op[] {
  return servers.map((rs, i) => ({ op: 'add-server', service: svc, dest: destOf(h, rs, over[i]) }));
}

async function serviceView(h: Harness, protocol: 'tcp' | 'udp' = 'tcp'): Promise<ServiceView> {
  const v = await h.view();
  const s = v.services.find((x) => x.protocol === protocol && x.addr === h.vip && x.port === h.vport);
  assert.ok(s, `service ${protocol} ${h.vip}:${h.vport} is in the table`);
  return s;
}

async function destView(h: Harness, rs: TestServer, protocol: 'tcp' | 'udp' = 'tcp') {
  const s = await serviceView(h, protocol);
  const d = s.dests.find((x) => x.addr === rs.addr && x.port === rs.port);
  assert.ok(d, `real server ${rs.name} is in the service`);
  return d;
}

function count(names: string[], name: string): number {
  return names.filter((n) => n === name).length;
}

// ------------------------------------------------------------------ the suite

export function runDataPlaneScenarios(name: string, makeHarness: () => Promise<Harness>, opts: ScenarioOptions = {}): void {
  const scenario = (id: ScenarioId, title: string, fn: (h: Harness, t: import('node:test').TestContext) => Promise<void>) =>
    test(`${id}: ${title}`, { skip: opts.skip?.[id] ?? false, timeout: opts.timeoutMs ?? 30_000 }, async (t) => {
      const h = await makeHarness();
      t.after(() => h.close());
      await fn(h, t);
    });

  describe(`data plane ${name}: conformance scenarios`, () => {
    scenario('rr', 'new connections alternate, the server added last first', async (h) => {
      const [a, b] = await h.makeRealServers('http', ['rs-a', 'rs-b']);
      const svc = serviceOf(h);
      await h.apply([{ op: 'add-service', service: svc }, ...addServers(h, svc, [a!, b!])]);
      const got = await newHttpConnections(10, h.vip, h.vport);
      assert.deepEqual(got, ['rs-b', 'rs-a', 'rs-b', 'rs-a', 'rs-b', 'rs-a', 'rs-b', 'rs-a', 'rs-b', 'rs-a']);
    });

    scenario('keepalive', 'requests over one kept-alive connection stay on one server', async (h, t) => {
      const [a, b] = await h.makeRealServers('http', ['rs-a', 'rs-b']);
      const svc = serviceOf(h);
      await h.apply([{ op: 'add-service', service: svc }, ...addServers(h, svc, [a!, b!])]);
      const ka = keepAliveClient(h.vip, h.vport);
      t.after(() => ka.close());
      const replies: HttpReply[] = [];
      for (let i = 0; i < 6; i++) replies.push(await ka.get('/'));
      assert.equal(ka.socketsUsed(), 1, 'one connection carried every request');
      assert.ok(
        replies.every((r) => r.status === 200 && r.server === replies[0]!.server),
        `all on one server: ${replies.map((r) => r.server)}`,
      );
      assert.ok(replies.slice(1).every((r) => r.reusedSocket));
      // The next new connections are scheduled as usual: the other server first.
      const fresh = await newHttpConnections(2, h.vip, h.vport);
      assert.notEqual(fresh[0], replies[0]!.server);
      assert.deepEqual(new Set(fresh), new Set(['rs-a', 'rs-b']));
    });

    scenario('remove-server', 'a removed server gets no new connections; re-adding it works', async (h) => {
      const [a, b] = await h.makeRealServers('http', ['rs-a', 'rs-b']);
      const svc = serviceOf(h);
      await h.apply([{ op: 'add-service', service: svc }, ...addServers(h, svc, [a!, b!])]);
      assert.deepEqual(new Set(await newHttpConnections(2, h.vip, h.vport)), new Set(['rs-a', 'rs-b']));
      await h.apply([{ op: 'delete-server', service: svc, dest: { af: svc.af, addr: b!.addr, port: b!.port } }]);
      assert.deepEqual(await newHttpConnections(4, h.vip, h.vport), ['rs-a', 'rs-a', 'rs-a', 'rs-a']);
      await h.apply(addServers(h, svc, [b!]));
      const again = await newHttpConnections(4, h.vip, h.vport);
      assert.equal(count(again, 'rs-a'), 2, `${again}`);
      assert.equal(count(again, 'rs-b'), 2, `${again}`);
    });

    scenario('wrr', 'weights 4/3/2 give the kernel sequence A B A C B A C B A', async (h) => {
      const [a, b, c] = await h.makeRealServers('http', ['A', 'B', 'C']);
      const svc = serviceOf(h, { scheduler: 'wrr' });
      await h.apply([
        { op: 'add-service', service: svc },
        ...addServers(h, svc, [a!, b!, c!], [{ weight: 4 }, { weight: 3 }, { weight: 2 }]),
      ]);
      // Servers added one by one after the service (as ipvsadm -A, -a, -a, -a does): the
      // kernel's dest_changed leaves cw at 1 from the first add (mw = 4 - (4 - 1)), so one
      // pass at cw = 1 (C B A) comes before the cycle. See test/schedulers/sequences.test.ts.
      const got = await newHttpConnections(12, h.vip, h.vport);
      assert.equal(got.join(' '), 'C B A ' + 'A B A C B A C B A');
    });

    scenario('lc', 'with a connection held on one server, new ones go to the other', async (h, t) => {
      const [a, b] = await h.makeRealServers('echo', ['rs-a', 'rs-b']);
      const svc = serviceOf(h, { scheduler: 'lc' });
      await h.apply([{ op: 'add-service', service: svc }, ...addServers(h, svc, [a!, b!])]);
      const held = await openEcho(h.vip, h.vport);
      t.after(() => held.destroy());
      const busy = held.server === 'rs-a' ? a! : b!;
      const idle = busy === a ? b! : a!;
      for (let i = 0; i < 4; i++) {
        // The previous short connection must be seen closed (inactive) before the next one.
        await waitFor(async () => (await destView(h, idle)).activeconns === 0, 5000, `${idle.name} has no active connection`);
        assert.deepEqual(await newEchoConnections(1, h.vip, h.vport), [idle.name]);
      }
      const d = await destView(h, busy);
      assert.equal(d.activeconns, 1, 'the held connection is active');
      assert.equal((await held.echo('still open')).toString(), 'still open');
    });

    scenario('persistence', 'one client sticks to one server; -M groups clients of a network', async (h) => {
      const [a, b] = await h.makeRealServers('http', ['rs-a', 'rs-b']);
      const svc = serviceOf(h, { persistent: 60 });
      await h.apply([{ op: 'add-service', service: svc }, ...addServers(h, svc, [a!, b!])]);
      const got = await newHttpConnections(6, h.vip, h.vport);
      assert.ok(
        got.every((n) => n === got[0]),
        `all on one server: ${got}`,
      );
      const tpl = (await h.connView()).filter((c) => c.template && c.vport === h.vport);
      assert.equal(tpl.length, 1, 'one persistence template');

      if (h.clientAddrs.length < 2) return;
      const [c1, c2] = h.clientAddrs as [string, string];
      // Per-address persistence: each client gets its own template, and rr gives the
      // second one the next server.
      const s1 = await newHttpConnections(3, h.vip, h.vport, { localAddress: c1 });
      const s2 = await newHttpConnections(3, h.vip, h.vport, { localAddress: c2 });
      assert.ok(s1.every((n) => n === s1[0]) && s2.every((n) => n === s2[0]), `${s1} / ${s2}`);
      assert.notEqual(s1[0], s2[0], 'two clients, two templates, two servers');
      // -M: one template for the whole network.
      await h.apply([{ op: 'edit-service', service: { ...svc, netmask: h.clientNetmask } }]);
      const g1 = await newHttpConnections(3, h.vip, h.vport, { localAddress: c1 });
      const g2 = await newHttpConnections(3, h.vip, h.vport, { localAddress: c2 });
      const all = [...g1, ...g2];
      assert.ok(
        all.every((n) => n === all[0]),
        `one server for the network: ${all}`,
      );
    });

    scenario('weight-zero', 'weight 0 stops new connections while an open one keeps working', async (h, t) => {
      const [a, b] = await h.makeRealServers('echo', ['rs-a', 'rs-b']);
      const svc = serviceOf(h);
      await h.apply([{ op: 'add-service', service: svc }, ...addServers(h, svc, [a!, b!])]);
      const held = await openEcho(h.vip, h.vport);
      t.after(() => held.destroy());
      const quiet = held.server === 'rs-a' ? a! : b!;
      const other = quiet === a ? b! : a!;
      await h.apply([{ op: 'edit-server', service: svc, dest: destOf(h, quiet, { weight: 0 }) }]);
      assert.deepEqual(await newEchoConnections(4, h.vip, h.vport), Array(4).fill(other.name));
      // Both ways, after the change.
      assert.equal((await held.echo('after weight 0')).toString(), 'after weight 0');
      assert.equal((await held.echo(Buffer.alloc(100_000, 7))).length, 100_000);
      assert.equal((await destView(h, quiet)).activeconns, 1);
    });

    scenario('threshold', '-x 2: an overloaded server is skipped until its entries are gone', async (h, t) => {
      const [a, b] = await h.makeRealServers('echo', ['rs-a', 'rs-b']);
      const svc = serviceOf(h);
      await h.apply([{ op: 'add-service', service: svc }, ...addServers(h, svc, [a!], [{ uThreshold: 2 }])]);
      const h1 = await openEcho(h.vip, h.vport);
      const h2 = await openEcho(h.vip, h.vport);
      t.after(() => {
        h1.destroy();
        h2.destroy();
      });
      assert.deepEqual([h1.server, h2.server], ['rs-a', 'rs-a']);
      assert.equal((await destView(h, a!)).overloaded, true, 'rs-a is overloaded at 2 connections');
      await h.apply(addServers(h, svc, [b!]));
      assert.deepEqual(await newEchoConnections(3, h.vip, h.vport), ['rs-b', 'rs-b', 'rs-b']);
      // Closed connections still count (TIME_WAIT is an InActConn) and the flag clears only
      // below 3/4 of the threshold, as in the kernel.
      await h1.end();
      await h2.end();
      await waitFor(async () => (await destView(h, a!)).activeconns === 0, 5000, 'rs-a connections closed');
      assert.equal((await destView(h, a!)).overloaded, true, 'TIME_WAIT entries keep rs-a overloaded');
      assert.deepEqual(await newEchoConnections(2, h.vip, h.vport), ['rs-b', 'rs-b']);
      await h.expireClosed();
      await waitFor(
        async () => {
          const d = await destView(h, a!);
          return d.inactconns === 0 && !d.overloaded;
        },
        5000,
        'rs-a entries expired and overload cleared',
      );
      const after = await newEchoConnections(4, h.vip, h.vport);
      assert.equal(count(after, 'rs-a'), 2, `rs-a is scheduled again: ${after}`);
    });

    scenario('udp', 'flows stick per client socket; one-packet scheduling alternates per datagram', async (h, t) => {
      const [a, b] = await h.makeRealServers('udp', ['rs-a', 'rs-b']);
      const svc = serviceOf(h, { protocol: 'udp' });
      await h.apply([{ op: 'add-service', service: svc }, ...addServers(h, svc, [a!, b!])]);
      const clients = await Promise.all([0, 1, 2, 3].map(() => udpClient(h.vip, h.vport)));
      t.after(() => {
        for (const c of clients) c.close();
      });
      const [c1, c2, c3, c4] = clients as [(typeof clients)[0], (typeof clients)[0], (typeof clients)[0], (typeof clients)[0]];
      const r1: Array<{ server: string; payload: string }> = [];
      for (let i = 0; i < 6; i++) r1.push(await c1.ask(`c1 #${i}`));
      assert.ok(
        r1.every((r, i) => r.server === r1[0]!.server && r.payload === `c1 #${i}`),
        JSON.stringify(r1),
      );
      const r2 = [await c2.ask('c2 #0'), await c2.ask('c2 #1'), await c2.ask('c2 #2')];
      assert.ok(r2.every((r) => r.server === r2[0]!.server));
      assert.notEqual(r2[0]!.server, r1[0]!.server, 'a second client socket goes to the other server');
      assert.equal((await c3.ask('c3')).server, r1[0]!.server, 'the third goes round again');
      const sv = await serviceView(h, 'udp');
      assert.equal(sv.stats.conns, 3, 'one entry per flow');

      if (opts.oneShotRefused) {
        t.diagnostic(`-o: ${opts.oneShotRefused}`);
        await assert.rejects(
          h.apply([{ op: 'edit-service', service: { ...svc, ops: true } }]),
          (e: Error & { code?: string }) => e.code === 'NOT_SUPPORTED' && /one-packet/.test(e.message),
        );
        assert.equal((await c1.ask('c1 again')).server, r1[0]!.server, 'the refused change left the flows alone');
        return;
      }
      await h.apply([{ op: 'edit-service', service: { ...svc, ops: true } }]);
      const r4: string[] = [];
      for (let i = 0; i < 4; i++) r4.push((await c4.ask(`c4 #${i}`)).server);
      for (let i = 1; i < r4.length; i++) assert.notEqual(r4[i], r4[i - 1], `one-packet scheduling alternates: ${r4}`);
      // A flow that existed before -o keeps its entry and its server, as in the kernel.
      assert.equal((await c1.ask('c1 again')).server, r1[0]!.server);
    });

    scenario('udp-lc', 'lc over UDP flows: new flows go to the server with fewer entries', async (h, t) => {
      const [a, b] = await h.makeRealServers('udp', ['rs-a', 'rs-b']);
      const svc = serviceOf(h, { protocol: 'udp', scheduler: 'lc' });
      await h.apply([{ op: 'add-service', service: svc }, ...addServers(h, svc, [a!, b!], [{ weight: 0 }, {}])]);
      const clients = await Promise.all([0, 1, 2, 3].map(() => udpClient(h.vip, h.vport)));
      t.after(() => {
        for (const c of clients) c.close();
      });
      // Two flows while rs-a is quiesced: both on rs-b.
      assert.equal((await clients[0]!.ask('c0')).server, 'rs-b');
      assert.equal((await clients[1]!.ask('c1')).server, 'rs-b');
      await h.apply([{ op: 'edit-server', service: svc, dest: destOf(h, a!) }]);
      // rs-a has no entry, rs-b two: the next two flows both go to rs-a (round robin would alternate).
      assert.equal((await clients[2]!.ask('c2')).server, 'rs-a');
      assert.equal((await clients[3]!.ask('c3')).server, 'rs-a');
      // Each flow keeps its server.
      assert.equal((await clients[1]!.ask('c1 again')).server, 'rs-b');
      assert.equal((await clients[2]!.ask('c2 again')).server, 'rs-a');
      const sv = await serviceView(h, 'udp');
      assert.equal(sv.stats.conns, 4, 'one entry per flow');
    });

    scenario('server-down', 'a real server with its port closed: the client is closed, the next works', async (h) => {
      const [a, b] = await h.makeRealServers('http', ['rs-a', 'rs-b']);
      const svc = serviceOf(h);
      await h.apply([{ op: 'add-service', service: svc }, ...addServers(h, svc, [a!, b!])]);
      await b!.close(); // rs-b, added last, is scheduled first
      if (opts.redispatch) {
        // Nothing reached the client when the connect failed: it is sent on to rs-a.
        assert.deepEqual(await newHttpConnections(1, h.vip, h.vport), ['rs-a'], 'redispatched to the live server');
      } else {
        const first = await tcpOutcome(h.vip, h.vport, { send: 'GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n' });
        assert.equal(first.received.length, 0, 'nothing but a close came back');
      }
      const second = await newHttpConnections(1, h.vip, h.vport);
      assert.deepEqual(second, ['rs-a']);
      assert.equal((await destView(h, b!)).stats.conns, 1, 'the failed connection was scheduled to rs-b');
      if (h.counters) assert.equal(h.counters().connectFailures[formatAddrPort(b!.addr, b!.port)], 1, 'the failure is counted');
    });

    scenario('counters', 'conns, packets and bytes add up per service and per server', async (h) => {
      const [a, b] = await h.makeRealServers('http', ['rs-a', 'rs-b']);
      const svc = serviceOf(h);
      await h.apply([{ op: 'add-service', service: svc }, ...addServers(h, svc, [a!, b!])]);
      const n = 6;
      let sent = 0;
      let received = 0;
      for (let i = 0; i < n; i++) {
        const r = await rawHttpGet(h.vip, h.vport);
        assert.equal(r.status, 200);
        sent += r.bytesSent;
        received += r.bytesReceived;
      }
      await waitFor(
        async () => {
          const s = await serviceView(h);
          return s.stats.conns === n && s.stats.inbytes >= sent && s.stats.outbytes >= received;
        },
        5000,
        'counters to catch up',
      );
      const s = await serviceView(h);
      assert.equal(s.stats.conns, n);
      assert.deepEqual(s.dests.map((d) => d.stats.conns).sort(), [n / 2, n / 2]);
      const sum = (f: (d: ServiceView['dests'][number]) => number) => s.dests.reduce((acc, d) => acc + f(d), 0);
      for (const k of ['conns', 'inpkts', 'outpkts', 'inbytes', 'outbytes'] as const) {
        assert.equal(
          sum((d) => d.stats[k]),
          s.stats[k],
          `per-server ${k} add up to the service's`,
        );
      }
      assert.ok(s.stats.inpkts >= n && s.stats.outpkts >= n, `packets: ${s.stats.inpkts} in, ${s.stats.outpkts} out`);
      // Plausible: at least the payload, at most payload plus generous per-packet headers.
      assert.ok(s.stats.inbytes <= sent + s.stats.inpkts * 100, `inbytes ${s.stats.inbytes} for ${sent} sent`);
      assert.ok(s.stats.outbytes <= received + s.stats.outpkts * 100, `outbytes ${s.stats.outbytes} for ${received} received`);
      const total = (await h.view()).stats;
      assert.ok(total.conns >= n && total.inbytes >= s.stats.inbytes);
    });

    scenario('half-close', 'the server answers after the client half-closes; all of it arrives', async (h) => {
      const [a, b] = await h.makeRealServers('digest', ['rs-a', 'rs-b']);
      const svc = serviceOf(h);
      await h.apply([{ op: 'add-service', service: svc }, ...addServers(h, svc, [a!, b!])]);
      const seen = new Set<string>();
      for (let i = 0; i < 2; i++) {
        const data = Buffer.alloc(300_000 + i, i + 1);
        const out = await tcpOutcome(h.vip, h.vport, { send: data, end: true });
        assert.equal(out.error, null, 'closed cleanly');
        const [server, bytes, digest] = out.received.toString().trim().split(' ');
        assert.equal(Number(bytes), data.length, 'the server received everything before EOF');
        assert.equal(digest, sha256(data));
        seen.add(server!);
      }
      assert.deepEqual(seen, new Set(['rs-a', 'rs-b']));
      // Both sides closed: the entries wait in TIME_WAIT as inactive connections.
      await waitFor(
        async () => {
          const conns = (await h.connView()).filter((c) => !c.template && c.protocol === 'TCP' && c.vport === h.vport);
          return conns.length === 2 && conns.every((c) => c.state === 'TIME_WAIT');
        },
        5000,
        'two TIME_WAIT entries',
      );
      const s = await serviceView(h);
      assert.equal(
        s.dests.reduce((n, d) => n + d.inactconns, 0),
        2,
      );
      assert.equal(
        s.dests.reduce((n, d) => n + d.activeconns, 0),
        0,
      );
    });
  });
}
