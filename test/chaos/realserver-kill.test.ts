/**
 * Chaos: a real server killed (kill -9) in the middle of transfers through a real tsvsd
 * (userspace plane, TCP checks every 0.2 s). The transfer it was serving may fail; the one
 * on the other server completes; the director stays up and answers its API; once the
 * check has taken the dead server out, every new connection goes to the other one.
 *
 * In the window between the kill and the check, a failed connect of a new connection tries
 * another server (redispatch, issue #13 item 7), so no new connection fails.
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { startTsvsd, type Tsvsd } from '../daemon/spawn.js';
import { freePort, RsProcess } from '../health/helper.js';
import { get, load, sleep, until, yaml } from './helper.js';

/** A GET of /slow through the VIP: resolves with the server's name from the first chunk, then with how it ended. */
function slowTransfer(vport: number, ms: number): { server: Promise<string>; done: Promise<'complete' | 'failed'> } {
  let onServer: (s: string) => void = () => {};
  const server = new Promise<string>((r) => (onServer = r));
  const done = new Promise<'complete' | 'failed'>((resolve) => {
    const req = request({ host: '127.0.0.1', port: vport, path: `/slow?ms=${ms}`, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => {
        body += d.toString();
        const m = /^(\S+) start/.exec(body);
        if (m) onServer(m[1]!);
      });
      res.on('end', () => resolve(/ end\n$/.test(body) ? 'complete' : 'failed'));
      res.on('error', () => resolve('failed'));
      res.on('aborted', () => resolve('failed'));
    });
    req.on('error', () => {
      onServer('none');
      resolve('failed');
    });
    req.end();
  });
  return { server, done };
}

describe('chaos: a real server killed mid-transfer (userspace plane)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsvs-chaos-rs-'));
  const rs = [new RsProcess('a'), new RsProcess('b')];
  let d: Tsvsd | null = null;
  let vport = 0;
  after(async () => {
    await d?.cleanup();
    await Promise.all(rs.map((r) => r.kill()));
    rmSync(dir, { recursive: true, force: true });
  });

  async function setUp(): Promise<void> {
    await Promise.all(rs.map((r) => r.start(0)));
    vport = await freePort();
    const cfg = join(dir, 'tsvs.yaml');
    writeFileSync(cfg, yaml([{ vport, servers: rs.map((r) => ({ port: r.port })) }]));
    d = await startTsvsd(['--config', cfg], { dir });
    await until(async () => (await d!.client.getTable()).services[0]?.dests.length === 2, 10_000, 'both servers in the table');
  }

  test('in-flight on the dead server may fail; the director stays up; after the check, new connections all go to the other', {
    timeout: 60_000,
  }, async (t) => {
    await setUp();
    const [a, b] = rs as [RsProcess, RsProcess];
    // Two transfers of 3 s: rr puts one on each server.
    const transfers = [slowTransfer(vport, 3000), slowTransfer(vport, 3000)];
    const names = await Promise.all(transfers.map((x) => x.server));
    assert.deepEqual([...names].sort(), ['a', 'b'], `each server serves one transfer: ${names}`);
    await sleep(300);
    await a.kill('SIGKILL');
    const ends = await Promise.all(transfers.map((x) => x.done));
    const onB = ends[names.indexOf('b')];
    assert.equal(onB, 'complete', 'the transfer on the surviving server completes');
    t.diagnostic(`the transfer on the killed server: ${ends[names.indexOf('a')]}`);
    // The director is up: its process runs and its API answers.
    assert.equal(d!.proc.exitCode, null);
    assert.ok((await d!.client.info()).version);
    await until(
      async () => {
        const dests = (await d!.client.getTable()).services[0]?.dests ?? [];
        return !dests.some((x) => x.port === a.port && x.weight > 0);
      },
      5000,
      'the check to take the dead server out',
    );
    const got: string[] = [];
    for (let i = 0; i < 30; i++) {
      const r = await get(vport);
      assert.equal(r.status, 200);
      got.push(r.body.trim());
    }
    assert.deepEqual(new Set(got), new Set(['b']), `every new connection on b: ${got.join(' ')}`);
    assert.equal(b.proc?.exitCode, null);
  });

  test('no new connection fails in the window between the kill and the check (redispatch)', {
    timeout: 60_000,
  }, async () => {
    const [a, b] = rs as [RsProcess, RsProcess];
    if (!a.proc) await a.start(a.port); // back on its port, so the check puts it back
    await until(
      async () => ((await d!.client.getTable()).services[0]?.dests ?? []).filter((x) => x.weight > 0).length === 2,
      10_000,
      'both servers in service again',
    );
    const l = load(vport, 4, 20_000);
    await sleep(500);
    await a.kill('SIGKILL');
    // Requests that started before the kill was done may have been on the dead server: those are in flight.
    const killed = performance.now();
    await until(
      async () => !((await d!.client.getTable()).services[0]?.dests ?? []).some((x) => x.port === a.port && x.weight > 0),
      5000,
      'the check to take the dead server out',
    );
    await sleep(300);
    const s = await l.stop();
    assert.ok(s.ok > 0 && (s.by.get('b') ?? 0) > 0);
    const afterKill = s.failedStarts.filter((t) => t >= killed).length;
    assert.equal(
      afterKill,
      0,
      `${afterKill} new connections failed after the kill (${s.failed} in all, of ${s.ok + s.failed}): ${[...new Set(s.errors)].join('; ')}`,
    );
    assert.equal(b.proc?.exitCode, null);
  });
});
