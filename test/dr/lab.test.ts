/**
 * Direct routing (LVS-DR, -g) on the netns lab, as root: `tsvs lab up --mode dr`, the real
 * tsvsd (--dataplane nftables) in the director, nginx on the real servers, curl in the
 * client namespace.
 *
 *   client 198.18.0.10 -- router 198.18.0.254 | 198.19.0.254 (bridge) --+-- director 198.19.0.1, VIP 198.19.0.100
 *                                                                       +-- 198.19.0.11 nginx (VIP on lo)
 *                                                                       +-- 198.19.0.12 nginx (VIP on lo)
 *
 * Shown: curl alternates between the real servers, each real server logs the client's
 * own address, and a capture on the director's real-server-side interface holds only
 * client-to-server packets (each twice: in from the router, out to the real server's MAC),
 * never a reply. Also the counters and connection listing, a download that keeps its
 * server while the table changes, and the refusals (mixed methods, port mapping, -i
 * naming the missing kernel module, a connection-count scheduler).
 */
import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { HttpControlClient } from '../../src/api/client.js';
import type { DestConfig, Op, ServiceConfig } from '../../src/core/types.js';
import { DR_VIP_ADDR, labDown, labStatus, labUp, nsRun, REAL_ADDRS, type LabNames } from '../../src/lab/lab.js';
import { privileged } from '../privileged.js';

const VIP = DR_VIP_ADDR;
const [RS1, RS2] = REAL_ADDRS;
const suffix = `dr${(process.pid % 100000).toString(36)}`;

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
  return { af: 4, addr, port, weight: 1, fwd: 'route', uThreshold: 0, lThreshold: 0, ...extra };
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The packets of a capture as tcpdump prints them (link-layer headers, absolute sequence numbers). */
const readPcap = (file: string): string[] =>
  spawnSync('tcpdump', ['-nn', '-S', '-e', '-r', file], { encoding: 'utf8' }).stdout.trim().split('\n').filter(Boolean);

describe('direct routing on the netns lab', privileged(['ip', 'nft', 'nginx', 'curl', 'tcpdump']), () => {
  let lab: LabNames;
  let client: HttpControlClient;
  let tmp: string;

  const curlName = (port = 80) => nsRun(lab.client, 'curl', ['-s', '--max-time', '5', `http://${VIP}:${port}/name`]).trim();
  const accessLog = (i: 1 | 2) => readFileSync(join(lab.dir, `r${i}`, 'access.log'), 'utf8');
  const apply = (ops: Op[]) => client.apply(ops);
  const refusal = async (ops: Op[]): Promise<{ code: string; message: string }> => {
    try {
      await apply(ops);
    } catch (e) {
      return { code: (e as { code: string }).code, message: `${(e as Error).message} ${(e as { detail?: string }).detail ?? ''}` };
    }
    assert.fail(`expected a refusal of ${JSON.stringify(ops)}`);
  };

  before(async () => {
    lab = await labUp({ suffix, mode: 'dr', tsvsdArgs: ['--log-level', 'warn'] });
    client = new HttpControlClient({ socketPath: lab.socket, timeoutMs: 15_000 });
    tmp = mkdtempSync(join(tmpdir(), 'tsvs-drlab-'));
  });
  after(() => {
    if (lab) labDown(lab.suffix);
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test("the lab: DR mode, the VIP on the director and on the real servers' lo, ARP sysctls set", () => {
    assert.match(labStatus(lab.suffix).lines.join('\n'), /mode: dr/);
    assert.match(nsRun(lab.director, 'ip', ['-4', 'addr', 'show', 'dev', lab.linkDirLan]), /inet 198\.19\.0\.100\/32/);
    for (const ns of lab.reals) {
      assert.match(nsRun(ns, 'ip', ['-4', 'addr', 'show', 'dev', 'lo']), /inet 198\.19\.0\.100\/32/);
      assert.equal(nsRun(ns, 'cat', ['/proc/sys/net/ipv4/conf/all/arp_ignore']).trim(), '1');
      assert.equal(nsRun(ns, 'cat', ['/proc/sys/net/ipv4/conf/all/arp_announce']).trim(), '2');
    }
    // Only the director answers ARP for the VIP: the router's neighbour entry is its MAC.
    nsRun(lab.router, 'ping', ['-c', '1', '-W', '2', VIP], { allowFail: true });
    const dirMac = JSON.parse(nsRun(lab.director, 'ip', ['-j', 'link', 'show', 'dev', lab.linkDirLan]))[0].address as string;
    assert.match(nsRun(lab.router, 'ip', ['neigh', 'show', VIP]), new RegExp(dirMac));
  });

  test('curl alternates, real servers log the client address, and the director sees only client-to-server packets', async () => {
    await apply([
      { op: 'add-service', service: service(80) },
      { op: 'add-server', service: service(80), dest: server(RS1, 80) },
      { op: 'add-server', service: service(80), dest: server(RS2, 80) },
    ]);
    assert.match(nsRun(lab.director, 'nft', ['list', 'tables']), /table netdev tsvs/);
    const pcap = join(tmp, 'director.pcap');
    const dump = spawn(
      'ip',
      ['netns', 'exec', lab.director, 'tcpdump', '-i', lab.linkDirLan, '-nn', '-U', '-Z', 'root', '-w', pcap, 'tcp', 'port', '80'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let dumpErr = '';
    dump.stderr.on('data', (b) => (dumpErr += b));
    try {
      for (let i = 0; i < 50 && !/listening on/.test(dumpErr); i++) await sleep(100);
      assert.match(dumpErr, /listening on/, `tcpdump did not start: ${dumpErr}`);
      const names = Array.from({ length: 6 }, () => curlName());
      // Kernel rr from the head of the list: .12 (added last) first.
      assert.deepEqual(names, ['r2', 'r1', 'r2', 'r1', 'r2', 'r1']);
      // A loaded machine delays tcpdump: wait until the capture holds the 6 connections.
      for (let i = 0; i < 50 && readPcap(pcap).length < 60; i++) await sleep(100);
    } finally {
      dump.kill('SIGINT');
      await new Promise((r) => dump.once('exit', r));
    }
    for (const i of [1, 2] as const) {
      const lines = accessLog(i).trim().split('\n');
      assert.equal(lines.length, 3, `r${i} served ${lines.length} requests`);
      for (const l of lines) assert.match(l, /^198\.18\.0\.10 \d+ "GET \/name/, `r${i} access log: ${l}`);
    }
    const packets = readPcap(pcap);
    const toVip = packets.filter((p) => /198\.18\.0\.10\.\d+ > 198\.19\.0\.100\.80:/.test(p));
    const fromVip = packets.filter((p) => /198\.19\.0\.100\.80 > /.test(p));
    assert.equal(fromVip.length, 0, `replies passed the director:\n${fromVip.join('\n')}`);
    assert.equal(toVip.length, packets.length, `only client-to-VIP packets: ${packets.join('\n')}`);
    // 6 connections of at least SYN, ACK, request, ACK, FIN: each seen arriving and leaving.
    assert.ok(toVip.length >= 6 * 5 * 2, `${toVip.length} packets`);
    assert.equal(toVip.length % 2, 0);
    // Leaving copies go to the real servers' MACs; the IP packet is unchanged (same line after the MACs).
    const macs = REAL_ADDRS.map(
      (_, i) => JSON.parse(nsRun(lab.reals[i]!, 'ip', ['-j', 'link', 'show', 'dev', lab.linkReal[i]!]))[0].address as string,
    );
    const dirMac = JSON.parse(nsRun(lab.director, 'ip', ['-j', 'link', 'show', 'dev', lab.linkDirLan]))[0].address as string;
    const out = toVip.filter((p) => p.includes(`${dirMac} > `));
    assert.equal(out.length, toVip.length / 2);
    for (const p of out)
      assert.ok(
        macs.some((m) => p.includes(`> ${m},`)),
        `leaves to a real server's MAC: ${p}`,
      );
    const ipPart = (p: string) => p.slice(p.indexOf(': ') + 2);
    const inn = toVip.filter((p) => !p.includes(`${dirMac} > `));
    assert.deepEqual(out.map(ipPart), inn.map(ipPart), 'the IP packets leave exactly as they arrived');
  });

  test('counters and connections: Route servers, conns and in-packets counted, out-packets 0 (replies bypass), flows listed', async () => {
    await sleep(1300);
    const table = await client.getTable();
    const svc = table.services.find((s) => s.addr === VIP && s.port === 80)!;
    assert.deepEqual(
      svc.dests.map((d) => d.fwd),
      ['route', 'route'],
    );
    assert.equal(svc.stats.conns, 6);
    assert.ok(svc.stats.inpkts >= 30, `inpkts ${svc.stats.inpkts}`);
    assert.equal(svc.stats.outpkts, 0);
    const conns = (await client.getConnections()).filter((c) => !c.template);
    assert.equal(conns.length, 6, JSON.stringify(conns));
    for (const c of conns) {
      assert.equal(c.caddr, '198.18.0.10');
      assert.ok(['FIN_WAIT', 'CLOSE', 'TIME_WAIT'].includes(c.state), `closed connection state ${c.state}`);
    }
    assert.deepEqual(new Set(conns.map((c) => c.daddr)), new Set([RS1, RS2]));
  });

  test('a connection keeps its real server while the table changes (weight 0, another service added)', async () => {
    const out = join(tmp, 'big.bin');
    const dl = spawn(
      'ip',
      [
        'netns',
        'exec',
        lab.client,
        'curl',
        '-s',
        '--max-time',
        '30',
        '--limit-rate',
        '3M',
        '-o',
        out,
        '-w',
        '%{size_download}',
        `http://${VIP}/big.bin`,
        '-r',
        '0-25165823',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let size = '';
    let err = '';
    dl.stdout.on('data', (b) => (size += b));
    dl.stderr.on('data', (b) => (err += b));
    const exited = new Promise<number | null>((r) => dl.once('exit', r));
    await sleep(600);
    assert.equal(dl.exitCode, null, `the download is still running when the table changes: ${err}`);
    // Both servers quiesced, then a second service: new flows have nowhere to go, old ones continue.
    await apply([
      { op: 'edit-server', service: service(80), dest: server(RS1, 80, { weight: 0 }) },
      { op: 'edit-server', service: service(80), dest: server(RS2, 80, { weight: 0 }) },
      { op: 'add-service', service: service(8080) },
      { op: 'add-server', service: service(8080), dest: server(RS1, 8080) },
    ]);
    // The open download is listed as an ESTABLISHED DR connection (read back from its flow set).
    await sleep(1300);
    const open = (await client.getConnections()).filter((c) => !c.template && c.state === 'ESTABLISHED' && c.vport === 80);
    assert.equal(open.length, 1, JSON.stringify(open));
    assert.ok(open[0]!.expires > 800, `established timeout ${open[0]!.expires}`);
    const refused = nsRun(lab.client, 'curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '3', `http://${VIP}/name`], {
      allowFail: true,
    }).trim();
    assert.equal(refused, '000', 'a new connection finds no usable server');
    assert.equal(dl.exitCode, null, 'the download outlived the changes and the checks');
    const code = await exited;
    assert.equal(code, 0, `download: ${err}`);
    assert.equal(size.trim(), String(24 * 1024 * 1024));
    await apply([
      { op: 'edit-server', service: service(80), dest: server(RS1, 80) },
      { op: 'edit-server', service: service(80), dest: server(RS2, 80) },
      { op: 'delete-service', service: service(8080) },
    ]);
    assert.match(curlName(), /^r[12]$/);
  });

  test('persistence (-p): every new connection of the client goes to the same real server', async () => {
    await apply([{ op: 'edit-service', service: service(80, { persistent: 60 }) }]);
    const names = Array.from({ length: 4 }, () => curlName());
    assert.equal(new Set(names).size, 1, names.join(' '));
    assert.match(nsRun(lab.director, 'nft', ['list', 'table', 'netdev', 'tsvs']), /update @persist\d+_60_32 \{ ip saddr \}/);
    await apply([{ op: 'edit-service', service: service(80) }]);
    const again = Array.from({ length: 4 }, () => curlName());
    assert.equal(new Set(again).size, 2, `rr again without persistence: ${again.join(' ')}`);
  });

  test('refusals name the object: mixed methods, port mapping, -i without kernel support, wlc', async () => {
    let r = await refusal([{ op: 'add-server', service: service(80), dest: server('198.19.0.13', 80, { fwd: 'masq' }) }]);
    assert.equal(r.code, 'NOT_SUPPORTED');
    assert.match(r.message, /TCP 198\.19\.0\.100:80: real server 198\.19\.0\.13 uses masq while .* uses route/);
    r = await refusal([
      { op: 'add-service', service: service(81) },
      { op: 'add-server', service: service(81), dest: server(RS1, 8080) },
    ]);
    assert.match(r.message, /198\.19\.0\.11:8080: direct routing \(-g\) cannot map ports/);
    r = await refusal([
      { op: 'add-service', service: service(82) },
      { op: 'add-server', service: service(82), dest: { ...server(RS1, 82), fwd: 'tunnel', tunnel: { type: 'gre', csum: 'nocsum' } } },
    ]);
    assert.equal(r.code, 'NOT_SUPPORTED');
    assert.match(
      r.message,
      /real server 198\.19\.0\.11: tunnelling \(-i\) is not supported here: tunnel type gre \(IPv4\) needs the kernel module ip_gre/,
    );
    r = await refusal([
      { op: 'add-service', service: service(83, { scheduler: 'wlc' }) },
      { op: 'add-server', service: service(83), dest: server(RS1, 83) },
    ]);
    assert.equal(r.code, 'NOT_SUPPORTED');
    assert.match(r.message, /wlc/);
    // A DR server that is not on a directly connected network.
    r = await refusal([
      { op: 'add-service', service: service(84) },
      { op: 'add-server', service: service(84), dest: server('198.18.0.10', 84) },
    ]);
    assert.match(
      r.message,
      /198\.18\.0\.10: direct routing \(-g\) needs the real server on a network directly connected to the director, but it is reached via the gateway 198\.19\.0\.254/,
    );
    // Nothing of the refused batches is left.
    const table = await client.getTable();
    assert.deepEqual(
      table.services.map((s) => s.port),
      [80],
    );
  });

  test('SIGTERM removes netdev tsvs with the other tables', async () => {
    const pid = Number(readFileSync(join(lab.dir, 'tsvsd.pid'), 'utf8'));
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 100; i++) {
      try {
        process.kill(pid, 0);
        await sleep(50);
      } catch {
        break;
      }
    }
    assert.equal(nsRun(lab.director, 'nft', ['list', 'tables']).trim(), '');
  });
});
