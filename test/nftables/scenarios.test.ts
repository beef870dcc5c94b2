/**
 * The data-plane conformance scenarios (test/dataplane/scenarios.ts) on the nftables
 * plane, as root. This test process is the client; the director and the real servers are
 * namespaces of its own:
 *
 *   this process (host ns)             ns tsvs-hd-S (director)              ns tsvs-hr-S
 *   198.18.N.10, 198.18.N.11 --veth-- 198.18.N.1 VIP   198.19.0.1 --veth-- 198.19.0.11
 *   (clients)                          nft table ip tsvs, conntrack          test servers
 *                                                                            (one process each)
 *
 * The plane runs in this process with its nft/conntrack commands executed in the
 * director namespace (`netns` option); the real servers are test/helper.ts servers
 * started in the real-server namespace by rs-runner.ts. The host gets only the connected
 * route 198.18.N.0/24 to the director; the director has no route beyond its two links.
 * The IPv6 run uses the same shape with 2001:2:0:18NN::/64 (NN: N in hex) and
 * 2001:2:0:19::/64 (the IPv6 benchmarking range, RFC 5180, the counterpart of
 * 198.18.0.0/15).
 *
 * N (1-254) is picked per network build so that no other link in the host namespace has
 * a route to that subnet: the host namespace is shared, and another run of this file (in
 * another checkout) with the same subnet would take this run's packets to its director.
 *
 * The director forwards with IPv6 link-local addresses that must not be tentative: the
 * kernel sends a neighbour solicitation for a forwarded packet (whose source is not the
 * director's) only from a usable link-local address, so while DAD runs on a fresh link
 * (1-2 s) the first datagram of a flow waits in the neighbour queue or is dropped. DAD is
 * off in this test's namespaces, and the build waits until no address is tentative.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { strict as assert } from 'node:assert';
import { after, describe, test } from 'node:test';
import { newTable } from '../table.js';
import type { Op } from '../../src/core/types.js';
import { NftablesDataPlane } from '../../src/dataplane/nftables/plane.js';
import { newEchoConnections, openEcho, waitFor, type TestServer, type TestServerKind } from '../helper.js';
import { runDataPlaneScenarios, type Harness } from '../dataplane/scenarios.js';
import { privileged } from '../privileged.js';

const sfx = `${process.pid % 1_000_000}`;
const DIRECTOR = `tsvs-hd-${sfx}`;
const REALS = `tsvs-hr-${sfx}`;
const HOST_LINK = `tsvsh${sfx}`;
const RUNNER = join(import.meta.dirname, 'rs-runner.ts');

function sh(cmd: string, args: string[], allowFail = false): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 15_000 });
  if (r.status !== 0 && !allowFail) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}
const ns = (name: string, cmd: string, args: string[], allowFail = false) => sh('ip', ['netns', 'exec', name, cmd, ...args], allowFail);

function teardown(): void {
  for (const n of [DIRECTOR, REALS]) {
    for (const pid of sh('ip', ['netns', 'pids', n], true)
      .split('\n')
      .map(Number)
      .filter((p) => p > 0)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    sh('ip', ['netns', 'del', n], true);
  }
  sh('ip', ['link', 'del', HOST_LINK], true);
}

/** The client side's addresses for subnet number n (see the file comment). */
function clientSide(n: number) {
  const v6 = `2001:2:0:18${n.toString(16).padStart(2, '0')}`;
  return {
    v4: { client: [`198.18.${n}.10`, `198.18.${n}.11`], vip: `198.18.${n}.1` },
    v6: { client: [`${v6}::10`, `${v6}::11`], vip: `${v6}::1` },
  };
}
const V4_RS = { rip: '198.19.0.1', rs: '198.19.0.11' };
const V6_RS = { rip: '2001:2:0:19::1', rs: '2001:2:0:19::11' };
/** The client side of the network built last. */
let side = clientSide(0);

/** A subnet number whose IPv4 and IPv6 client subnets no link in the host namespace routes to (starting from one derived from the pid). */
function freeSubnet(): number {
  for (let i = 0; i < 254; i++) {
    const n = ((process.pid + i) % 254) + 1;
    const c = clientSide(n);
    const taken =
      sh('ip', ['-4', 'route', 'show', 'to', 'match', c.v4.vip]).includes(` dev tsvs`) ||
      sh('ip', ['-6', 'route', 'show', 'to', 'match', c.v6.vip]).includes(' dev tsvs');
    if (!taken) return n;
  }
  throw new Error('no free client subnet 198.18.N.0/24 in the host namespace (254 taken by other links named tsvs*)');
}

function buildNetwork(): void {
  teardown();
  side = clientSide(freeSubnet());
  const { v4, v6 } = side;
  sh('ip', ['netns', 'add', DIRECTOR]);
  sh('ip', ['netns', 'add', REALS]);
  for (const n of [DIRECTOR, REALS]) {
    ns(n, 'ip', ['link', 'set', 'lo', 'up']);
    // Before any link exists here: link-local addresses usable at once (see the file comment).
    ns(n, 'sysctl', ['-qw', 'net.ipv6.conf.default.accept_dad=0']);
  }
  sh('ip', ['link', 'add', HOST_LINK, 'type', 'veth', 'peer', 'name', `${HOST_LINK}d`, 'netns', DIRECTOR]);
  for (const a of v4.client) sh('ip', ['addr', 'add', `${a}/24`, 'dev', HOST_LINK]);
  sh('ip', ['link', 'set', HOST_LINK, 'up']);
  ns(DIRECTOR, 'ip', ['addr', 'add', `${v4.vip}/24`, 'dev', `${HOST_LINK}d`]);
  ns(DIRECTOR, 'ip', ['link', 'set', `${HOST_LINK}d`, 'up']);
  sh('ip', ['link', 'add', `${HOST_LINK}r`, 'netns', DIRECTOR, 'type', 'veth', 'peer', 'name', `${HOST_LINK}s`, 'netns', REALS]);
  ns(DIRECTOR, 'ip', ['addr', 'add', `${V4_RS.rip}/24`, 'dev', `${HOST_LINK}r`]);
  ns(DIRECTOR, 'ip', ['link', 'set', `${HOST_LINK}r`, 'up']);
  ns(REALS, 'ip', ['addr', 'add', `${V4_RS.rs}/24`, 'dev', `${HOST_LINK}s`]);
  ns(REALS, 'ip', ['link', 'set', `${HOST_LINK}s`, 'up']);
  ns(REALS, 'ip', ['route', 'add', 'default', 'via', V4_RS.rip]);
  for (const n of [DIRECTOR, REALS]) {
    ns(n, 'sysctl', ['-qw', 'net.ipv4.conf.all.rp_filter=0']);
    ns(n, 'sysctl', ['-qw', 'net.ipv4.conf.default.rp_filter=0']);
  }
  ns(DIRECTOR, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  ns(DIRECTOR, 'sysctl', ['-qw', 'net.ipv6.conf.all.forwarding=1']);
  // IPv6: the same links, addresses usable at once (nodad: the host namespace's defaults are not ours to change).
  for (const a of v6.client) sh('ip', ['-6', 'addr', 'add', `${a}/64`, 'dev', HOST_LINK, 'nodad']);
  ns(DIRECTOR, 'ip', ['-6', 'addr', 'add', `${v6.vip}/64`, 'dev', `${HOST_LINK}d`, 'nodad']);
  ns(DIRECTOR, 'ip', ['-6', 'addr', 'add', `${V6_RS.rip}/64`, 'dev', `${HOST_LINK}r`, 'nodad']);
  ns(REALS, 'ip', ['-6', 'addr', 'add', `${V6_RS.rs}/64`, 'dev', `${HOST_LINK}s`, 'nodad']);
  ns(REALS, 'ip', ['-6', 'route', 'add', 'default', 'via', V6_RS.rip]);
  waitLinksReady();
}

/**
 * Waits (bounded) until the host's link has carrier and no IPv6 address in the director
 * or real-server namespace is tentative; throws naming what is not ready.
 */
function waitLinksReady(): void {
  let pending = '';
  for (let i = 0; i < 100; i++) {
    pending = [
      sh('ip', ['-o', 'link', 'show', HOST_LINK]).includes('LOWER_UP') ? '' : `${HOST_LINK} has no carrier`,
      ...[DIRECTOR, REALS].map((n) => sh('ip', ['-n', n, '-6', '-o', 'addr', 'show', 'tentative']).trim()).filter(Boolean),
    ]
      .filter(Boolean)
      .join('; ');
    if (!pending) return;
    spawnSync('sleep', ['0.05']);
  }
  throw new Error(`the test network is not ready after 5 s: ${pending}`);
}

function startDemoServer(kind: TestServerKind, name: string, addr: string): Promise<TestServer & { proc: ChildProcess }> {
  const proc = spawn('ip', ['netns', 'exec', REALS, process.execPath, '--import', 'tsx', RUNNER, kind, name, addr], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`real server ${name} did not start`)), 20_000);
    proc.once('exit', (c) => reject(new Error(`real server ${name} exited ${c}`)));
    proc.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const line = out.split('\n')[0];
      if (!out.includes('\n')) return;
      clearTimeout(timer);
      const { port } = JSON.parse(line!) as { port: number };
      let closing: Promise<void> | null = null;
      resolve({
        name,
        kind,
        addr,
        port,
        proc,
        connections: () => {
          throw new Error('connections() is not available for a server in another namespace');
        },
        hits: () => {
          throw new Error('hits() is not available for a server in another namespace');
        },
        close: () =>
          (closing ??= new Promise<void>((res) => {
            if (proc.exitCode !== null || proc.signalCode !== null) return res();
            proc.once('exit', () => res());
            proc.kill('SIGTERM');
          })),
      });
    });
  });
}

let nextPort = 8000;
const ONE_SHOT =
  'refused by the nftables plane: conntrack keeps one NAT binding per UDP flow, so its datagrams cannot go to different servers (docs/nftables.md)';

async function makeNftablesHarness(
  af: 4 | 6 = 4,
  limits?: { maxConns: number; perService: number; perClient: number },
): Promise<Harness & { plane: NftablesDataPlane }> {
  buildNetwork();
  const table = newTable();
  const plane = new NftablesDataPlane({ log: () => {}, netns: DIRECTOR, ...(limits ? { limits } : {}) });
  try {
    await plane.start(table);
  } catch (e) {
    teardown();
    throw e;
  }
  const tick = setInterval(() => table.tick(), 1000);
  const servers: TestServer[] = [];
  return {
    plane,
    vip: side[af === 4 ? 'v4' : 'v6'].vip,
    vport: nextPort++,
    fwd: 'masq',
    clientAddrs: side[af === 4 ? 'v4' : 'v6'].client,
    clientNetmask: af === 4 ? 0xfffffff0 : 120,
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
    // Counters and connections are read back from the kernel: wait for a fresh round.
    async view() {
      await plane.poll();
      return table.view();
    },
    async connView() {
      await plane.poll();
      return table.connView();
    },
    async makeRealServers(kind: TestServerKind, names: string[]) {
      const made = await Promise.all(names.map((n) => startDemoServer(kind, n, af === 4 ? V4_RS.rs : V6_RS.rs)));
      servers.push(...made);
      return made;
    },
    async expireClosed() {
      // What the kernel does when TIME_WAIT / CLOSE timers run out: the entries go.
      for (const state of ['TIME_WAIT', 'CLOSE']) ns(DIRECTOR, 'conntrack', ['-D', '-p', 'tcp', '--state', state], true);
      await plane.poll();
    },
    async close() {
      clearInterval(tick);
      await plane.stop(0);
      await Promise.all(servers.map((s) => s.close()));
      teardown();
    },
  };
}

describe('nftables plane', privileged(['ip', 'nft', 'conntrack']), () => {
  // Whatever a failed scenario left: the namespaces, the host's veth end and its addresses.
  after(() => teardown());
  runDataPlaneScenarios('nftables', () => makeNftablesHarness(4), {
    oneShotRefused: ONE_SHOT,
  });
  // IPv6: the family-specific parts (ip6 table, addresses, masks, conntrack -f ipv6).
  const sameAsV4 = 'same code path as IPv4 apart from the family; run in the IPv4 suite';
  // The first-packet path's degradations: what happens to new connections of a wlc
  // service when tsvsd cannot answer.
  describe('first-packet path: fallback', () => {
    async function wlcService() {
      const h = await makeNftablesHarness(4);
      const [a, b] = await h.makeRealServers('http', ['rs-a', 'rs-b']);
      const svc = {
        af: 4 as const,
        protocol: 'tcp' as const,
        addr: h.vip,
        port: h.vport,
        fwmark: 0,
        scheduler: 'wlc',
        schedFlags: 0,
        persistent: 0,
        netmask: 0xffffffff,
        ops: false,
        pe: '',
      };
      const dest = (rs: TestServer) => ({
        af: 4 as const,
        addr: rs.addr,
        port: rs.port,
        weight: 1,
        fwd: 'masq' as const,
        uThreshold: 0,
        lThreshold: 0,
      });
      await h.apply([
        { op: 'add-service', service: svc },
        { op: 'add-server', service: svc, dest: dest(a!) },
        { op: 'add-server', service: svc, dest: dest(b!) },
      ]);
      return h;
    }
    /** curl as a child process: it runs while this thread is blocked. Resolves with "name seconds". */
    const curl = (h: Harness) =>
      new Promise<string>((resolve) => {
        const p = spawn('curl', ['-s', '--max-time', '5', '-w', ' %{time_total}', `http://${h.vip}:${h.vport}/name`], {
          stdio: ['ignore', 'pipe', 'ignore'],
        });
        let out = '';
        p.stdout!.on('data', (b: Buffer) => (out += b.toString()));
        // The test server answers with its name first ("rs-a: ..."); time_total comes last.
        p.on('close', () => resolve(`${/^(rs-[ab])\b/.exec(out)?.[1] ?? out} ${out.trim().split(/\s+/).pop()}`));
      });

    test('a blocked main loop does not hang new connections: after the bound, the kernel fallback (rr) takes them', {
      timeout: 60_000,
    }, async (t) => {
      const h = await wlcService();
      t.after(() => h.close());
      const pending = [0, 1, 2, 3].map(() => curl(h));
      // Block this thread (where the scheduler runs) for 1.5 s; the reader thread is not blocked.
      const end = Date.now() + 1500;
      while (Date.now() < end) {
        /* a stalled main loop */
      }
      const got = (await Promise.all(pending)).map((x) => x.split(' '));
      for (const [name, secs] of got) {
        assert.match(name!, /^rs-[ab]$/, `answered: ${got.join(' | ')}`);
        assert.ok(Number(secs) < 1.0, `completed without waiting for the blocked thread: ${secs} s`);
      }
      assert.equal(new Set(got.map((x) => x[0])).size, 2, 'the fallback spreads them round robin');
    });

    test('wlc with -x on the first-packet path: an overloaded server is skipped at once; removing a server ends its connections', {
      timeout: 60_000,
    }, async (t) => {
      const h = await makeNftablesHarness(4);
      t.after(() => h.close());
      const [a, b] = await h.makeRealServers('echo', ['rs-a', 'rs-b']);
      const svc = {
        af: 4 as const,
        protocol: 'tcp' as const,
        addr: h.vip,
        port: h.vport,
        fwmark: 0,
        scheduler: 'wlc',
        schedFlags: 0,
        persistent: 0,
        netmask: 0xffffffff,
        ops: false,
        pe: '',
      };
      const dest = (rs: TestServer, uThreshold = 0) => ({
        af: 4 as const,
        addr: rs.addr,
        port: rs.port,
        weight: 1,
        fwd: 'masq' as const,
        uThreshold,
        lThreshold: 0,
      });
      await h.apply([
        { op: 'add-service', service: svc },
        { op: 'add-server', service: svc, dest: dest(a!, 1) },
        { op: 'add-server', service: svc, dest: dest(b!) },
      ]);
      // wlc with nothing open picks the list head (rs-b, added last), then the idle rs-a.
      const onB = await openEcho(h.vip, h.vport);
      t.after(() => onB.destroy());
      const onA = await openEcho(h.vip, h.vport);
      t.after(() => onA.destroy());
      assert.deepEqual([onB.server, onA.server], ['rs-b', 'rs-a']);
      // rs-a is at its upper threshold (1 connection): OVERLOAD is set by the decision
      // itself, no read-back needed, so the very next connections go to the busier rs-b.
      assert.deepEqual(await newEchoConnections(3, h.vip, h.vport), ['rs-b', 'rs-b', 'rs-b']);
      const view = await h.view();
      assert.equal(view.services[0]!.dests.find((d) => d.addr === a!.addr && d.port === a!.port)!.overloaded, true);
      // Its connection closes and its entry goes: rs-a takes connections again.
      await onA.end();
      await h.expireClosed();
      await waitFor(
        async () => !(await h.view()).services[0]!.dests.find((d) => d.port === a!.port)!.overloaded,
        5000,
        'rs-a no longer overloaded',
      );
      assert.deepEqual(await newEchoConnections(1, h.vip, h.vport), ['rs-a']);
      // Removing rs-b deletes its conntrack entries (expire_nodest_conn): its held
      // connection ends instead of hanging; new ones go to rs-a.
      await h.apply([{ op: 'delete-server', service: svc, dest: dest(b!) }]);
      await waitFor(async () => !(await h.connView()).some((c) => c.daddr === b!.addr && c.dport === b!.port), 5000, 'rs-b entries gone');
      await assert.rejects(onB.echo('anyone there?'));
      await h.expireClosed();
      assert.deepEqual(await newEchoConnections(1, h.vip, h.vport), ['rs-a']);
      // That one lingers in TIME_WAIT and counts (totalconns 1 >= -x 1): rs-a is overloaded
      // and the only server left, so the next connection is refused, as ip_vs_leave does.
      await assert.rejects(openEcho(h.vip, h.vport), /ECONNREFUSED/);
    });

    test('with no queue reader (tsvsd gone), --queue-bypass lets the fallback schedule every connection', {
      timeout: 60_000,
    }, async (t) => {
      const h = await wlcService();
      t.after(() => h.close());
      await (h.plane as unknown as { firstPacket: { nfq: { stop(): Promise<void> } } }).firstPacket.nfq.stop();
      const names: string[] = [];
      for (let i = 0; i < 4; i++) names.push((await curl(h)).split(' ')[0]!);
      assert.deepEqual(names.slice().sort(), ['rs-a', 'rs-a', 'rs-b', 'rs-b'], `${names}`);
    });
  });

  test('connection limits: ct count per client and per service drop the connection over the limit, counted in limitRefused', {
    timeout: 60_000,
  }, async (t) => {
    const h = await makeNftablesHarness(4, { maxConns: 0, perService: 3, perClient: 0 });
    t.after(() => h.close());
    const [a] = await h.makeRealServers('echo', ['rs-a']);
    const svc = {
      af: 4 as const,
      protocol: 'tcp' as const,
      addr: h.vip,
      port: h.vport,
      fwmark: 0,
      scheduler: 'rr',
      schedFlags: 0,
      persistent: 0,
      netmask: 0xffffffff,
      ops: false,
      pe: '',
      // Its own per-client limit; the service limit comes from the plane (--max-conns-per-service 3).
      maxConnsPerClient: 2,
    };
    await h.apply([
      { op: 'add-service', service: svc },
      {
        op: 'add-server',
        service: svc,
        dest: { af: 4, addr: a!.addr, port: a!.port, weight: 1, fwd: 'masq', uThreshold: 0, lThreshold: 0 },
      },
    ]);
    const [c1, c2] = h.clientAddrs;
    const open = (localAddress: string) => openEcho(h.vip, h.vport, { localAddress, timeoutMs: 1500 });
    const held = [await open(c1!), await open(c1!)];
    t.after(() => {
      for (const c of held) c.destroy();
    });
    // A third from the same client: its SYN is dropped (no answer), the client limit counts it.
    await assert.rejects(open(c1!), /timed out/);
    // Another client still gets in, up to the service's 3.
    held.push(await open(c2!));
    await assert.rejects(open(c2!), /timed out/);
    assert.equal((await held[0]!.echo('still there')).toString(), 'still there');
    await h.plane.pollLimits();
    const rows = h.plane.counters().limitRefused;
    const label = `TCP ${h.vip}:${h.vport}`;
    assert.ok(
      rows.find((r) => r.service === label && r.limit === 'client' && r.count >= 1),
      JSON.stringify(rows),
    );
    assert.ok(
      rows.find((r) => r.service === label && r.limit === 'service' && r.count >= 1),
      JSON.stringify(rows),
    );
  });

  runDataPlaneScenarios('nftables IPv6', () => makeNftablesHarness(6), {
    oneShotRefused: ONE_SHOT,
    skip: {
      keepalive: sameAsV4,
      'remove-server': sameAsV4,
      wrr: sameAsV4,
      threshold: sameAsV4,
      'server-down': sameAsV4,
    },
  });
});
