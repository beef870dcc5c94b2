/**
 * Chaos: a storm of reloads (SIGHUP every ~150 ms, 16 of them) of a real tsvsd under wrk,
 * each with another config (weights, schedulers, a server added and taken out through
 * inhibit_on_failure, an unrelated service coming and going) and a bad file in the middle,
 * while tsvsadm changes another service. wrk, half of its connections new per request and
 * half kept alive, sees no socket error and no non-2xx answer. Without wrk a bounded Node
 * loop of new connections stands in.
 *
 * test/config/reload.test.ts has three spaced reloads under wrk; this one is the storm.
 */
import { strict as assert } from 'node:assert';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ENTRY, startTsvsd, type Tsvsd } from '../daemon/spawn.js';
import { freePort, RsProcess } from '../health/helper.js';
import { hup, load, sleep, until, yaml, type Svc } from './helper.js';

const hasWrk = spawnSync('wrk', ['--version']).error === undefined;

function wrk(url: string, seconds: number, extra: string[]): Promise<string> {
  return new Promise((resolve) => {
    const p = spawn('wrk', ['-t1', '-c8', `-d${seconds}s`, '--timeout', '5s', ...extra, url], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (x: Buffer) => (out += x));
    p.stderr.on('data', (x: Buffer) => (out += x));
    p.on('exit', () => resolve(out));
  });
}

describe('chaos: a storm of reloads under load', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsvs-chaos-hup-'));
  const rs = ['s1', 's2', 's3', 's4'].map((n) => new RsProcess(n));
  let d: Tsvsd | null = null;
  after(async () => {
    await d?.cleanup();
    await Promise.all(rs.map((r) => r.kill()));
    rmSync(dir, { recursive: true, force: true });
  });

  test(`16 reloads ~150 ms apart and tsvsadm changes: no failed request (${hasWrk ? 'wrk' : 'a Node load loop: wrk is not installed'})`, {
    timeout: 90_000,
  }, async (t) => {
    await Promise.all(rs.map((r) => r.start(0)));
    const [s1, s2, s3, s4] = rs as [RsProcess, RsProcess, RsProcess, RsProcess];
    const web = await freePort();
    const other = await freePort();
    const adm = await freePort();
    const cfg = join(dir, 'tsvs.yaml');
    // The web service keeps s1 and s2 in every config; s3 comes in, and leaves only after
    // an inhibited config has drained it to weight 0 (as an operator would take it out).
    const configs: Svc[][] = [];
    const schedulers = ['rr', 'wrr', 'wlc', 'lc', 'sh'];
    for (let i = 0; i < 16; i++) {
      const servers: Svc['servers'] = [
        { port: s1.port, weight: 1 + (i % 3) },
        { port: s2.port, weight: 1 + ((i + 1) % 4) },
      ];
      if (i % 4 === 1) servers.push({ port: s3.port });
      if (i % 4 === 2) servers.push({ port: s3.port, weight: 0, inhibit: true });
      const svcs: Svc[] = [{ vport: web, scheduler: schedulers[i % schedulers.length]!, servers }];
      if (i % 2) svcs.push({ vport: other, servers: [{ port: s4.port }] });
      configs.push(svcs);
    }
    writeFileSync(cfg, yaml(configs[0]!));
    d = await startTsvsd(['--config', cfg], { dir });
    await until(async () => (await d!.client.getTable()).services.length === 1, 10_000, 'the first config');

    const url = `http://127.0.0.1:${web}/`;
    // Long enough for 17 reloads: each one now reads its config in a worker thread (a few hundred ms under load).
    const seconds = 25;
    const loadEnd = Date.now() + seconds * 1000;
    const loads = hasWrk ? [wrk(url, seconds, []), wrk(url, seconds, ['-H', 'Connection: close'])] : [];
    const nodeLoad = hasWrk ? null : load(web, 8, seconds * 1000);
    // tsvsadm changes its own service meanwhile (a reload keeps what tsvsadm added).
    let admStop = false;
    let admOk = 0;
    const admLoop = (async () => {
      const run = (args: string[]) =>
        new Promise<boolean>((r) =>
          execFile(process.execPath, [ENTRY('tsvsadm'), ...args], { env: { ...process.env, TSVS_SOCKET: d!.socket } }, (e) => r(!e)),
        );
      assert.ok(await run(['-A', '-t', `127.0.0.1:${adm}`, '-s', 'rr']));
      for (let w = 1; !admStop; w++) {
        assert.ok(
          await run([w % 2 ? '-a' : '-d', '-t', `127.0.0.1:${adm}`, '-r', `127.0.0.1:${s4.port}`, ...(w % 2 ? ['-m', '-w', '1'] : [])]),
        );
        admOk++;
      }
    })();
    await sleep(500);
    let reloaded = 0;
    let refused = 0;
    for (let i = 1; i < configs.length; i++) {
      if (i === 8) {
        writeFileSync(cfg, 'services:\n  - address: 127.0.0.1\n    port: not-a-port\n');
        assert.match(await hup(d), /"msg":"reload refused/);
        refused++;
      }
      writeFileSync(cfg, yaml(configs[i]!));
      assert.match(await hup(d), /"msg":"reloaded/, `reload ${i}`);
      reloaded++;
      await sleep(150);
    }
    assert.ok(Date.now() < loadEnd, 'every reload happened under load');
    admStop = true;
    await admLoop;
    if (hasWrk) {
      for (const out of await Promise.all(loads)) {
        const reqs = /(\d+) requests in/.exec(out);
        assert.ok(reqs && Number(reqs[1]) > 50, out);
        assert.doesNotMatch(out, /Socket errors|Non-2xx/, out);
        t.diagnostic(`wrk: ${reqs![1]} requests, no socket error, no non-2xx`);
      }
    } else {
      const s = await nodeLoad!.stop();
      assert.ok(s.ok > 50);
      assert.equal(s.failed, 0, [...new Set(s.errors)].join('; '));
    }
    t.diagnostic(`${reloaded} reloads, ${refused} refused, ${admOk} tsvsadm changes during them`);
    const table = await d.client.getTable();
    assert.ok(
      table.services.some((s) => s.port === adm),
      "tsvsadm's service survived the reloads",
    );
    assert.equal(d.proc.exitCode, null);
  });
});
