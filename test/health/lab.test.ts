/**
 * Fault isolation on the seed cluster: tsvsd with the nftables plane in the lab's director
 * namespace, HTTP checks on both nginx real servers. Stopping one nginx takes it out of
 * the table (and the kernel's rules); starting it again puts it back.
 *
 *   client 198.18.0.10 --> director 198.18.0.1 / 198.19.0.1 --> nginx 198.19.0.11, .12
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { labDown, labUp, nsRun, toolCommand, REAL_ADDRS, VIP_ADDR, type LabNames } from '../../src/lab/lab.js';
import { waitFor } from '../helper.js';
import { privileged } from '../privileged.js';

describe('health checks on the netns lab (nftables plane)', privileged(['ip', 'nft', 'nginx', 'curl']), () => {
  const suffix = `h${process.pid % 1_000_000}`;
  const dir = mkdtempSync(join(tmpdir(), 'tsvs-health-lab-'));
  const config = join(dir, 'tsvs.yaml');
  let lab: LabNames | undefined;

  const curlName = () => nsRun(lab!.client, 'curl', ['-s', '--max-time', '5', `http://${VIP_ADDR}/name`]).trim();
  const [adm0, ...admArgs] = toolCommand('tsvsadm');
  const listing = () => execFileSync(adm0!, [...admArgs, '-Ln'], { encoding: 'utf8', env: { ...process.env, TSVS_SOCKET: lab!.socket } });
  const dests = () =>
    listing()
      .split('\n')
      .filter((l) => l.startsWith('  -> 198.19'));
  const nginxConf = (i: 0 | 1) => join(lab!.dir, `r${i + 1}`, 'nginx.conf');
  const nginxPid = (i: 0 | 1) => Number(readFileSync(join(lab!.dir, `r${i + 1}`, 'nginx.pid'), 'utf8').trim());

  before(async () => {
    writeFileSync(
      config,
      `services:
  - address: ${VIP_ADDR}
    port: 80
    scheduler: rr
    method: nat
    check_defaults: { interval: 300ms, timeout: 1s, retry: 1, delay_before_retry: 200ms, rise: 1 }
    real_servers:
${REAL_ADDRS.map((a) => `      - address: ${a}\n        port: 80\n        checks: [{ type: http, path: /name, status: 200 }]\n`).join('')}`,
    );
    lab = await labUp({ suffix, tsvsdArgs: ['--config', config, '--log-level', 'warn'] });
  });
  after(() => {
    if (lab) labDown(lab.suffix);
    rmSync(dir, { recursive: true, force: true });
  });

  test('a stopped real server leaves the pool and comes back once it passes again', async () => {
    assert.equal(dests().length, 2, listing());
    const both = new Set(Array.from({ length: 4 }, curlName));
    assert.deepEqual(both, new Set(['r1', 'r2']));

    process.kill(nginxPid(0), 'SIGTERM');
    await waitFor(() => dests().length === 1, 15_000);
    assert.match(dests()[0]!, /198\.19\.0\.12:80/);
    // Every new connection now reaches the healthy server.
    assert.deepEqual(Array.from({ length: 6 }, curlName), Array(6).fill('r2'));

    nsRun(lab!.reals[0], 'nginx', ['-c', nginxConf(0), '-p', join(lab!.dir, 'r1')]);
    await waitFor(() => dests().length === 2, 15_000);
    assert.deepEqual(new Set(Array.from({ length: 4 }, curlName)), new Set(['r1', 'r2']));
  });
});
