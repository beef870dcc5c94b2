/**
 * The LVS-NAT walk-through an operator does on any LVS director, typed as tsvsadm
 * commands against the real tsvsd, with real HTTP servers and curl as the client.
 */
import { strict as assert } from 'node:assert';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startDemoServer, writeSharedContent, type DemoServer } from '../../src/demo/realserver.js';
import { BIN, startTsvsd, type Tsvsd } from '../daemon/spawn.js';
import { freePort } from '../helper.js';

let dir: string;
let d: Tsvsd;
let rs1: DemoServer;
let rs2: DemoServer;
let VIP: string;
let RS1: string;
let RS2: string;

// The real servers run in this process: every child is run asynchronously so they can answer.
function run(cmd: string, args: string[], input?: string): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env: { ...process.env, TSVS_SOCKET: d.socket } });
    let out = '';
    let err = '';
    p.stdout.on('data', (b: Buffer) => (out += b.toString()));
    p.stderr.on('data', (b: Buffer) => (err += b.toString()));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, out, err }));
    p.stdin.end(input ?? '');
  });
}
const adm = (args: string[], input?: string) => run(BIN('tsvsadm'), args, input);
async function ok(args: string[], input?: string): Promise<string> {
  const r = await adm(args, input);
  assert.equal(r.code, 0, `tsvsadm ${args.join(' ')}: ${r.err}`);
  return r.out;
}
const curlName = () =>
  new Promise<string>((resolve, reject) =>
    execFile('curl', ['-s', '--max-time', '5', `http://${VIP}/name`], (e, out) => (e ? reject(e) : resolve(out.trim()))),
  );
async function curlNames(n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(await curlName());
  return out;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tsvs-walk-'));
  await writeSharedContent(join(dir, 'www'));
  rs1 = await startDemoServer({ name: 'rs1', docroot: join(dir, 'www'), host: '127.0.0.1', port: 0 });
  rs2 = await startDemoServer({ name: 'rs2', docroot: join(dir, 'www'), host: '127.0.0.1', port: 0 });
  d = await startTsvsd([], { dir });
  VIP = `127.0.0.1:${await freePort()}`;
  RS1 = `127.0.0.1:${rs1.port}`;
  RS2 = `127.0.0.1:${rs2.port}`;
});
after(async () => {
  await d?.cleanup();
  await rs1?.close();
  await rs2?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('the LVS-NAT walk-through', async () => {
  await ok(['-C']);
  await ok(['-A', '-t', VIP, '-s', 'rr']);
  await ok(['-a', '-t', VIP, '-r', RS1, '-m']);
  await ok(['-a', '-t', VIP, '-r', RS2, '-m']);

  const listing = await ok(['-Ln']);
  const lines = listing.split('\n');
  assert.equal(lines[0], 'IP Virtual Server version 1.2.1 (size=4096)');
  assert.equal(lines[1], 'Prot LocalAddress:Port Scheduler Flags');
  assert.equal(lines[2], '  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn');
  assert.equal(lines[3], `TCP  ${VIP} rr`);
  const rows = lines.slice(4).filter(Boolean);
  assert.equal(rows.length, 2);
  for (const row of rows) assert.match(row, /^ {2}-> 127\.0\.0\.1:\d+ +Masq {4}1 {6}\d+ +\d+ +$/);

  // Ten new connections alternate, RS2 first (head insertion).
  const names = await curlNames(10);
  assert.deepEqual(
    names,
    Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? 'rs2' : 'rs1')),
  );

  // A kept-alive connection stays on one server.
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const viaAgent = () =>
    new Promise<string>((resolve, reject) => {
      get(`http://${VIP}/name`, { agent }, (res) => {
        let t = '';
        res.on('data', (c) => (t += c));
        res.on('end', () => resolve(t.trim()));
      }).on('error', reject);
    });
  const ka = [];
  for (let i = 0; i < 6; i++) ka.push(await viaAgent());
  agent.destroy();
  assert.equal(new Set(ka).size, 1, `keep-alive went to ${ka.join(',')}`);

  // Counters moved.
  const stats = await ok(['-Ln', '--stats']);
  const svcLine = stats.split('\n').find((l) => l.startsWith('TCP'))!;
  assert.equal(Number(svcLine.trim().split(/\s+/)[2]), 11);

  // -d removes RS1: every new connection goes to RS2.
  await ok(['-d', '-t', VIP, '-r', RS1]);
  assert.deepEqual(await curlNames(4), ['rs2', 'rs2', 'rs2', 'rs2']);

  // The table refuses what ipvsadm's kernel refuses, with ipvsadm's words and exit code.
  const dup = await adm(['-a', '-t', VIP, '-r', RS2, '-m']);
  assert.deepEqual([dup.code, dup.err], [255, 'Destination already exists\n']);
  const nosvc = await adm(['-D', '-t', '127.0.0.1:1']);
  assert.deepEqual([nosvc.code, nosvc.err], [255, 'No such service\n']);

  // -D removes the service: connections are refused.
  await ok(['-D', '-t', VIP]);
  assert.equal((await ok(['-Ln'])).split('\n').filter(Boolean).length, 3);
  assert.equal((await run('curl', ['-s', '--max-time', '3', `http://${VIP}/name`])).code, 7);
});

test('-S, -C, -R restores an identical table; restarting tsvsd with --state restores it too', async () => {
  await ok(['-C']);
  await ok(['--set', '600', '60', '120']);
  await ok(['-A', '-t', VIP, '-s', 'wrr', '-p', '120', '-M', '255.255.255.0']);
  await ok(['-a', '-t', VIP, '-r', RS1, '-m', '-w', '4']);
  await ok(['-a', '-t', VIP, '-r', RS2, '-m', '-w', '2']);
  const udp = `127.0.0.1:${await freePort()}`;
  await ok(['-A', '-u', udp, '-s', 'sh', '-b', 'sh-fallback,sh-port', '-o']);
  await ok(['-a', '-u', udp, '-r', RS1, '-m']);

  const saved = await ok(['-S', '-n']);
  assert.match(saved, new RegExp(`^-A -t ${VIP} -s wrr -p 120 -M 255\\.255\\.255\\.0$`, 'm'));
  assert.match(saved, new RegExp(`^-a -t ${VIP} -r ${RS1} -m -w 4$`, 'm'));
  const listing = await ok(['-Ln']);
  await ok(['-C']);
  assert.equal(await ok(['-S', '-n']), '');
  await ok(['-R'], saved);
  assert.equal(await ok(['-S', '-n']), saved);
  assert.equal(await ok(['-Ln']), listing);

  // A broken rules file changes nothing.
  const bad = await adm(['-R'], `${saved}-a -t ${VIP} -r ${RS1} -m -w 99999999\n`);
  assert.equal(bad.code, 2);
  assert.equal(await ok(['-S', '-n']), saved);

  // Restart with the same --state.
  assert.equal(await d.kill('SIGTERM'), 0);
  d = await startTsvsd([], { dir });
  assert.equal(await ok(['-S', '-n']), saved);
  assert.equal(await ok(['-L', '--timeout']), 'Timeout (tcp tcpfin udp): 600 60 120\n');
  // -S lists servers sorted by address:port and -R adds them in that order, so the last one
  // listed ends up at the head. Servers added one by one make the kernel's wrr run its first
  // pass at threshold 1, which picks the head.
  const lastListed = saved
    .split('\n')
    .filter((l) => l.startsWith(`-a -t ${VIP} `))
    .at(-1)!
    .split(' ')[4];
  assert.equal(await curlName(), lastListed === RS1 ? 'rs1' : 'rs2');
});
