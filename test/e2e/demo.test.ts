/**
 * `npm start` (tsvs demo) as a user runs it: the real binary, curl as the client.
 */
import { strict as assert } from 'node:assert';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ENTRY } from '../daemon/spawn.js';
import { freePort } from '../helper.js';

test('tsvs demo: curl through the VIP alternates between rs2 and rs1 serving the same page', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsvs-demo-test-'));
  const vport = await freePort();
  const env = { ...process.env, TSVS_SOCKET: join(dir, 'tsvsd.sock') };
  const demo = spawn(process.execPath, [ENTRY('tsvs'), 'demo', '--vip', `127.0.0.1:${vport}`], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  demo.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  demo.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => demo.once('exit', (c) => r(c)));
  try {
    const deadline = Date.now() + 20_000;
    while (!out.includes('Ctrl-C stops the demo')) {
      assert.equal(demo.exitCode, null, `demo exited early: ${out}`);
      assert.ok(Date.now() < deadline, `demo did not start: ${out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const curl = (path: string, ...extra: string[]) =>
      execFileSync('curl', ['-s', '--max-time', '5', ...extra, `http://127.0.0.1:${vport}${path}`], { encoding: 'utf8' });
    const names = Array.from({ length: 6 }, () => curl('/name').trim());
    assert.deepEqual(names, ['rs2', 'rs1', 'rs2', 'rs1', 'rs2', 'rs1']);
    // Same shared content from both, each naming itself in the header and the page.
    const pages = [curl('/', '-i'), curl('/', '-i')];
    for (const p of pages) assert.match(p, /This page lives on shared storage/);
    const served = pages.map((p) => /X-Real-Server: (rs\d)/i.exec(p)?.[1]);
    assert.deepEqual(new Set(served), new Set(['rs1', 'rs2']));
    for (const [i, p] of pages.entries()) assert.match(p, new RegExp(`served by <b>${served[i]}</b>`));
    assert.equal(curl('/hello.txt'), 'the same bytes from every real server\n');

    // tsvsadm against the demo's director, as the printed instructions say.
    const listing = execFileSync(process.execPath, [ENTRY('tsvsadm'), '-Ln'], { env, encoding: 'utf8' });
    assert.match(listing, new RegExp(`TCP  127\\.0\\.0\\.1:${vport} rr`));
    assert.equal((listing.match(/Masq {4}1 /g) ?? []).length, 2);
  } finally {
    demo.kill('SIGINT');
    const code = await exited;
    rmSync(dir, { recursive: true, force: true });
    assert.equal(code, 0, out);
  }
});
