/**
 * The nftables data plane on the netns lab, as root: the real tsvsd (--dataplane nftables)
 * in the director namespace, nginx on the real servers, curl in the client namespace.
 *
 *   client 198.18.0.10 --- 198.18.0.1 [director: tsvsd, nft table ip tsvs] 198.19.0.1 --+-- 198.19.0.11 nginx
 *                                                                                       +-- 198.19.0.12 nginx
 *
 * Skips with the reason where root, nft, nginx or conntrack are missing; fails instead
 * under TSVS_REQUIRE_PRIVILEGED=1 (CI).
 */
import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { HttpControlClient } from '../../src/api/client.js';
import type { DestConfig, Op, ServiceConfig } from '../../src/core/types.js';
import { readNfqueueRules } from '../../src/dataplane/nftables/netsock.js';
import { labDown, labStatus, labUp, nsRun, toolCommand, type LabNames } from '../../src/lab/lab.js';
import { privileged } from '../privileged.js';

const VIP = '198.18.0.1';
const RS1 = '198.19.0.11';
const RS2 = '198.19.0.12';
const suffix = `t${process.pid % 1_000_000}`;

function service(port: number, extra: Partial<ServiceConfig> = {}): ServiceConfig {
  return {
    af: 4,
    protocol: 'tcp',
    addr: VIP,
    port,
    fwmark: 0,
    scheduler: 'rr',
    schedFlags: 0,
    persistent: 0,
    netmask: 0xffffffff,
    ops: false,
    pe: '',
    ...extra,
  };
}
function server(addr: string, port: number, extra: Partial<DestConfig> = {}): DestConfig {
  return { af: 4, addr, port, weight: 1, fwd: 'masq', uThreshold: 0, lThreshold: 0, ...extra };
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('nftables data plane on the netns lab', privileged(['ip', 'nft', 'nginx', 'conntrack', 'curl']), () => {
  let lab: LabNames;
  let client: HttpControlClient;

  function adm(args: string[]): { code: number | null; out: string; err: string } {
    const [cmd, ...pre] = toolCommand('tsvsadm');
    const r = spawnSync(cmd!, [...pre, ...args], { env: { ...process.env, TSVS_SOCKET: lab.socket }, encoding: 'utf8', timeout: 20_000 });
    return { code: r.status, out: r.stdout, err: r.stderr };
  }
  function ok(args: string[]): string {
    const r = adm(args);
    assert.equal(r.code, 0, `tsvsadm ${args.join(' ')}: ${r.err}${r.out}`);
    return r.out;
  }
  /** One new connection from the client: which real server answered. */
  const curlName = (port = 80) => nsRun(lab.client, 'curl', ['-s', '--max-time', '5', `http://${VIP}:${port}/name`]).trim();
  const accessLog = (i: 1 | 2) => readFileSync(join(lab.dir, `r${i}`, 'access.log'), 'utf8');
  /** Waits for the data plane's read-back (once a second) to catch up. */
  const settle = () => sleep(1600);

  before(async () => {
    lab = await labUp({ suffix });
    client = new HttpControlClient({ socketPath: lab.socket, timeoutMs: 10_000 });
  });
  after(() => {
    if (lab) labDown(lab.suffix);
  });

  test("the seed's ipvsadm commands: curl alternates and the real servers see the client's address", async () => {
    ok(['-A', '-t', `${VIP}:80`, '-s', 'rr']);
    ok(['-a', '-t', `${VIP}:80`, '-r', `${RS1}:80`, '-m']);
    ok(['-a', '-t', `${VIP}:80`, '-r', `${RS2}:80`, '-m']);
    const names = Array.from({ length: 6 }, () => curlName());
    // Kernel rr walks the list from its head: .12 (added last) first.
    assert.deepEqual(names, ['r2', 'r1', 'r2', 'r1', 'r2', 'r1']);
    for (const i of [1, 2] as const) {
      const lines = accessLog(i).trim().split('\n');
      assert.ok(lines.length >= 3, `r${i} served ${lines.length} requests`);
      for (const l of lines) assert.match(l, /^198\.18\.0\.10 /, `r${i} access log: ${l}`);
    }
    const tables = nsRun(lab.director, 'nft', ['list', 'tables']);
    assert.match(tables, /table ip tsvs/);
    // A listing right after the traffic shows it: the API reads the kernel back first.
    const svcRow = ok(['-Ln', '--stats'])
      .split('\n')
      .find((l) => l.startsWith('TCP'))!
      .trim()
      .split(/\s+/);
    assert.equal(Number(svcRow[2]), 6, `service Conns right after 6 curls: ${svcRow.join(' ')}`);
  });

  test('counters, connection counts and -Lnc come back from the kernel', async () => {
    await settle();
    const stats = ok(['-Ln', '--stats']);
    const row = (addr: string) =>
      stats
        .split('\n')
        .find((l) => l.includes(addr))!
        .trim()
        .split(/\s+/);
    const svc = stats
      .split('\n')
      .find((l) => l.startsWith('TCP'))!
      .trim()
      .split(/\s+/);
    assert.ok(Number(svc[2]) >= 6, `service Conns: ${stats}`);
    assert.ok(Number(svc[3]) > 0 && Number(svc[4]) > 0 && Number(svc[5]) > 0 && Number(svc[6]) > 0, stats);
    for (const rs of [RS1, RS2]) assert.ok(Number(row(`${rs}:80`)[2]) >= 3, `${rs} conns: ${stats}`);
    const conns = ok(['-Lnc']);
    assert.match(conns, /TCP\s+\S+\s+TIME_WAIT\s+198\.18\.0\.10:\d+\s+198\.18\.0\.1:80\s+198\.19\.0\.1[12]:80/);
    const list = ok(['-Ln']);
    // Closed connections linger in TIME_WAIT: InActConn, as on kernel IPVS.
    assert.match(list, new RegExp(`-> ${RS1.replaceAll('.', '\\.')}:80\\s+Masq\\s+1\\s+0\\s+[1-9]`));
  });

  test('one-packet scheduling, fwmark services and non-NAT methods are refused, not degraded', () => {
    const r = adm(['-A', '-u', `${VIP}:81`, '-s', 'wlc', '-o']);
    assert.notEqual(r.code, 0);
    assert.match(r.err + r.out, /one-packet scheduling \(-o\) is not supported/i);
    const f = adm(['-A', '-f', '7', '-s', 'rr']);
    assert.notEqual(f.code, 0);
    assert.match(f.err + f.out, /fwmark services are not supported/);
    assert.doesNotMatch(ok(['-Ln']), /:81|FWM/);
    const g = adm(['-a', '-t', `${VIP}:80`, '-r', '198.19.0.13:80', '-g']);
    assert.notEqual(g.code, 0);
  });

  test('weight 0 quiesces: no new connections to that server', async () => {
    ok(['-e', '-t', `${VIP}:80`, '-r', `${RS2}:80`, '-m', '-w', '0']);
    assert.deepEqual(
      Array.from({ length: 4 }, () => curlName()),
      ['r1', 'r1', 'r1', 'r1'],
    );
    ok(['-e', '-t', `${VIP}:80`, '-r', `${RS2}:80`, '-m', '-w', '1']);
    const names = new Set(Array.from({ length: 4 }, () => curlName()));
    assert.deepEqual([...names].sort(), ['r1', 'r2']);
  });

  test('persistence (-p): a client keeps its server, per -M network', async () => {
    ok(['-E', '-t', `${VIP}:80`, '-s', 'rr', '-p', '60']);
    const first = curlName();
    for (let i = 0; i < 5; i++) assert.equal(curlName(), first);
    const sets = nsRun(lab.director, 'nft', ['list', 'sets', 'table', 'ip', 'tsvs']);
    assert.match(sets, /198\.18\.0\.10 expires/);
    ok(['-E', '-t', `${VIP}:80`, '-s', 'rr']);
    assert.equal(new Set(Array.from({ length: 4 }, () => curlName())).size, 2);
  });

  test('wlc on the first-packet path: with long-lived connections held on r1, new ones keep going to r2', async () => {
    ok(['-A', '-t', `${VIP}:8082`, '-s', 'wlc']);
    ok(['-a', '-t', `${VIP}:8082`, '-r', `${RS1}:80`, '-m', '-w', '1']);
    ok(['-a', '-t', `${VIP}:8082`, '-r', `${RS2}:80`, '-m', '-w', '0']);
    // The NFQUEUE rule is in tsvs's own table, and nowhere else. Read back over netlink:
    // nft prints an xtables target only with iptables's libxt extensions installed.
    const rules = readNfqueueRules(`/run/netns/${lab.director}`, 'ip', 'tsvs', 'nfq');
    assert.equal(rules.length, 1, JSON.stringify(rules));
    assert.equal(rules[0]!.bypass, true);
    assert.deepEqual(
      nsRun(lab.director, 'nft', ['list', 'tables'])
        .trim()
        .split('\n')
        .filter((l) => !l.includes('netdev')),
      ['table ip tsvs', 'table ip6 tsvs'],
    );
    // Three idle keep-alive connections (nginx holds them 60 s), all on r1 while r2 is quiesced.
    const held = [0, 1, 2].map(() =>
      spawn('ip', ['netns', 'exec', lab.client, 'bash', '-c', `exec 3<>/dev/tcp/${VIP}/8082; sleep 30`], { stdio: 'ignore' }),
    );
    try {
      await settle();
      const lnc = ok(['-Lnc'])
        .split('\n')
        .filter((l) => l.includes(':8082') && l.includes('ESTABLISHED'));
      assert.equal(lnc.length, 3, `three held connections: ${lnc.join('\n')}`);
      assert.ok(lnc.every((l) => l.includes(`${RS1}:80`)));
      ok(['-e', '-t', `${VIP}:8082`, '-r', `${RS2}:80`, '-m', '-w', '1']);
      // wlc: r1 has 3 active (overhead 3*256), r2 only inactive TIME_WAITs: every new
      // connection goes to r2 (round robin, the fallback, would alternate).
      assert.deepEqual(
        Array.from({ length: 6 }, () => curlName(8082)),
        ['r2', 'r2', 'r2', 'r2', 'r2', 'r2'],
      );
      const row = ok(['-Ln'])
        .split('\n')
        .find((l) => l.includes(`${RS1}:80`) && l.includes('Masq'));
      assert.ok(row, 'r1 is listed');
      // The counts come from the same table the scheduler used: ActiveConn 3 on r1 for :8082.
      const svcBlock = ok(['-Ln', '-t', `${VIP}:8082`]);
      assert.match(svcBlock, new RegExp(`-> ${RS1.replaceAll('.', '\\.')}:80\\s+Masq\\s+1\\s+3\\s`));
      // Persistence through the core's templates: one client, one server.
      ok(['-E', '-t', `${VIP}:8082`, '-s', 'lc', '-p', '60']);
      const first = curlName(8082);
      for (let i = 0; i < 4; i++) assert.equal(curlName(8082), first);
      assert.match(ok(['-Lnc']), /TCP\s+\S+\s+(NONE|ASSURED)\s+198\.18\.0\.10:0\s+198\.18\.0\.1:8082/);
    } finally {
      for (const h of held) if (h.pid && h.exitCode === null) process.kill(h.pid, 'SIGKILL');
      ok(['-D', '-t', `${VIP}:8082`]);
    }
  });

  test('wrr and sh run in the kernel with their kernel semantics', async () => {
    ok(['-A', '-t', `${VIP}:8081`, '-s', 'wrr']);
    ok(['-a', '-t', `${VIP}:8081`, '-r', `${RS1}:80`, '-m', '-w', '2']);
    ok(['-a', '-t', `${VIP}:8081`, '-r', `${RS2}:80`, '-m', '-w', '1']);
    assert.deepEqual(
      Array.from({ length: 6 }, () => curlName(8081)),
      ['r2', 'r1', 'r1', 'r2', 'r1', 'r1'],
    );
    ok(['-E', '-t', `${VIP}:8081`, '-s', 'sh']);
    // sh: the client's last octet (.10) decides; every connection goes to the same server.
    assert.equal(new Set(Array.from({ length: 4 }, () => curlName(8081))).size, 1);
    ok(['-D', '-t', `${VIP}:8081`]);
  });

  test('a long transfer survives 50 rule changes to another service', async () => {
    const size = 24_000_000;
    const curl = spawn(
      'ip',
      [
        'netns',
        'exec',
        lab.client,
        'curl',
        '-s',
        '-o',
        '/dev/null',
        '--max-time',
        '90',
        '--limit-rate',
        '1500K',
        '-r',
        `0-${size - 1}`,
        '-w',
        '%{size_download} %{http_code}',
        `http://${VIP}/big.bin`,
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    curl.stdout.on('data', (b: Buffer) => (out += b.toString()));
    const done = new Promise<number | null>((r) => curl.once('exit', (c) => r(c)));
    await sleep(500);
    const other = service(8080);
    await client.apply([{ op: 'add-service', service: other }]);
    for (let i = 0; i < 50; i++) {
      const ops: Op[] =
        i % 2 === 0
          ? [{ op: 'add-server', service: other, dest: server(RS1, 80, { weight: 1 + (i % 5) }) }]
          : [{ op: 'delete-server', service: other, dest: { af: 4, addr: RS1, port: 80 } }];
      await client.apply(ops);
    }
    await client.apply([{ op: 'edit-service', service: { ...other, scheduler: 'wrr', persistent: 30 } }]);
    assert.equal(curl.exitCode, null, 'the 50 changes should happen while the transfer runs');
    const code = await done;
    assert.equal(code, 0, `curl exit ${code}`);
    assert.equal(out.trim(), `${size} 206`);
    await client.apply([{ op: 'delete-service', service: other }]);
  });

  test('UDP: datagram flows are balanced and keep the client address', async () => {
    const script = join(lab.dir, 'udp.mjs');
    writeFileSync(
      script,
      `import dgram from 'node:dgram';
const [mode, a, b] = process.argv.slice(2);
if (mode === 'serve') {
  const s = dgram.createSocket('udp4');
  s.on('message', (m, r) => s.send(a + ' ' + r.address, r.port, r.address));
  s.bind(5353, b);
} else {
  const s = dgram.createSocket('udp4');
  const t = setTimeout(() => { console.log('timeout'); process.exit(1); }, 3000);
  s.on('message', (m) => { console.log(m.toString()); clearTimeout(t); s.close(); });
  s.send('hi', 5353, a);
}
`,
    );
    const servers = [
      spawn('ip', ['netns', 'exec', lab.reals[0], process.execPath, script, 'serve', 'u1', RS1], { stdio: 'ignore' }),
      spawn('ip', ['netns', 'exec', lab.reals[1], process.execPath, script, 'serve', 'u2', RS2], { stdio: 'ignore' }),
    ];
    try {
      await sleep(700);
      ok(['-A', '-u', `${VIP}:5353`, '-s', 'rr']);
      ok(['-a', '-u', `${VIP}:5353`, '-r', `${RS1}:5353`, '-m']);
      ok(['-a', '-u', `${VIP}:5353`, '-r', `${RS2}:5353`, '-m']);
      const replies = Array.from({ length: 4 }, () => nsRun(lab.client, process.execPath, [script, 'send', VIP]).trim());
      assert.deepEqual(replies, ['u2 198.18.0.10', 'u1 198.18.0.10', 'u2 198.18.0.10', 'u1 198.18.0.10']);
      await settle();
      assert.match(ok(['-Lnc']), /UDP\s+\S+\s+UDP\s+198\.18\.0\.10:\d+\s+198\.18\.0\.1:5353\s+198\.19\.0\.1[12]:5353/);
      ok(['-D', '-u', `${VIP}:5353`]);
    } finally {
      for (const s of servers) if (s.pid) process.kill(s.pid, 'SIGKILL');
    }
  });

  test('thresholds (-x): a server at its upper threshold gets no new connections', async () => {
    // Closed connections linger in TIME_WAIT and count, as in the kernel (totalconns).
    ok(['-e', '-t', `${VIP}:80`, '-r', `${RS1}:80`, '-m', '-x', '2']);
    curlName();
    curlName();
    // The read-back binds the new entries, sets OVERLOAD and recompiles the rules.
    await settle();
    assert.deepEqual(
      Array.from({ length: 4 }, () => curlName()),
      ['r2', 'r2', 'r2', 'r2'],
    );
    // Raising or removing the threshold clears OVERLOAD at once (__ip_vs_update_dest).
    ok(['-e', '-t', `${VIP}:80`, '-r', `${RS1}:80`, '-m', '-x', '0']);
    assert.equal(new Set(Array.from({ length: 4 }, () => curlName())).size, 2);
  });

  test('removing a real server: new connections go elsewhere and its conntrack entries go (expire_nodest_conn)', async () => {
    // Open connections to both servers that stay established for a while.
    const slow = [0, 1].map(() =>
      spawn(
        'ip',
        ['netns', 'exec', lab.client, 'curl', '-s', '-o', '/dev/null', '--max-time', '20', '--limit-rate', '200K', `http://${VIP}/big.bin`],
        { stdio: 'ignore' },
      ),
    );
    try {
      await settle();
      assert.match(ok(['-Lnc']), /ESTABLISHED .*198\.19\.0\.12:80/);
      ok(['-d', '-t', `${VIP}:80`, '-r', `${RS2}:80`]);
      assert.deepEqual(
        Array.from({ length: 3 }, () => curlName()),
        ['r1', 'r1', 'r1'],
      );
      await settle();
      assert.doesNotMatch(ok(['-Lnc']), /198\.19\.0\.12/);
    } finally {
      for (const s of slow) if (s.pid && s.exitCode === null) process.kill(s.pid, 'SIGKILL');
    }
  });

  test('tsvsd removes its tables on a clean exit', async () => {
    const pid = Number(readFileSync(join(lab.dir, 'tsvsd.pid'), 'utf8'));
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 100; i++) {
      try {
        process.kill(pid, 0);
      } catch {
        break;
      }
      await sleep(100);
    }
    assert.doesNotMatch(nsRun(lab.director, 'nft', ['list', 'tables']), /tsvs/);
  });
});

describe('tsvs lab cleans up after itself', privileged(['ip', 'nft', 'nginx']), () => {
  const leftovers = (s: string) => {
    const nss = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      .stdout.split('\n')
      .filter((l) => l.includes(`-${s}`));
    const links = spawnSync('ip', ['-o', 'link'], { encoding: 'utf8' })
      .stdout.split('\n')
      .filter((l) => l.includes('tsvs') && l.includes(s));
    return [...nss, ...links];
  };

  test('a failed up (tsvsd cannot start) removes everything it had made', async () => {
    const s = `f${process.pid % 1_000_000}`;
    const old = process.env.TSVS_LAB_TSVSD;
    process.env.TSVS_LAB_TSVSD = '/bin/false';
    try {
      await assert.rejects(labUp({ suffix: s }), /tsvsd did not start/);
    } finally {
      if (old === undefined) delete process.env.TSVS_LAB_TSVSD;
      else process.env.TSVS_LAB_TSVSD = old;
      labDown(s);
    }
    assert.deepEqual(leftovers(s), []);
    assert.equal(spawnSync('test', ['-e', `/tmp/tsvs-lab-${s}`]).status, 1);
  });

  test('down after up leaves no namespace, link, process or file; status says so', async () => {
    const s = `d${process.pid % 1_000_000}`;
    try {
      const n = await labUp({ suffix: s, tsvsd: false });
      const pid = Number(readFileSync(join(n.dir, 'r1', 'nginx.pid'), 'utf8'));
      assert.ok(pid > 0);
      assert.ok(labStatus(s).exists);
      labDown(s);
      assert.throws(() => process.kill(pid, 0), 'nginx was stopped');
    } finally {
      labDown(s);
    }
    assert.deepEqual(leftovers(s), []);
    assert.equal(labStatus(s).exists, false);
  });
});
