/**
 * conntrackd supervision (src/sync/conntrackd.ts) with the real Debian conntrackd, inside
 * a network namespace of the test's own (a veth pair whose two ends both live in it:
 * tsvsqaS 198.18.0.2/24 <-> tsvsqbS 198.18.0.3/24), as root: it starts and answers on its
 * own UNIX socket, is restarted when it dies, a stale one of the same director is killed
 * by PID before a new one starts (never two), and stop leaves nothing running.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConntrackdSupervisor, conntrackdProblem, renderConntrackdConf } from '../../src/sync/conntrackd.js';
import { privileged } from '../privileged.js';

const S = Math.random()
  .toString(36)
  .slice(2, 7)
  .replace(/[^a-z0-9]/g, 'q');
const NS = `tsvs-q-${S}`;
const SETTINGS = { interface: `tsvsqa${S}`, address: '198.18.0.2', peer: '198.18.0.3' };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const alive = (pid: number) => existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, 'utf8').split(' ')[2]!.startsWith('Z');

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('conntrackd supervision', privileged(['ip', 'conntrackd']), () => {
  let dir: string;
  const logs: string[] = [];
  const log = (_level: string, msg: string) => logs.push(msg);
  const stale: number[] = [];

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'tsvs-ct-'));
    spawnSync('ip', ['netns', 'add', NS]);
    const run = (...a: string[]) => {
      const r = spawnSync('ip', ['netns', 'exec', NS, ...a], { encoding: 'utf8' });
      assert.equal(r.status, 0, `${a.join(' ')}: ${r.stderr}`);
    };
    run('ip', 'link', 'set', 'lo', 'up');
    run('ip', 'link', 'add', `tsvsqa${S}`, 'type', 'veth', 'peer', 'name', `tsvsqb${S}`);
    run('ip', 'addr', 'add', '198.18.0.2/24', 'dev', `tsvsqa${S}`);
    run('ip', 'addr', 'add', '198.18.0.3/24', 'dev', `tsvsqb${S}`);
    run('ip', 'link', 'set', `tsvsqa${S}`, 'up');
    run('ip', 'link', 'set', `tsvsqb${S}`, 'up');
  });
  after(() => {
    for (const p of stale) if (alive(p)) process.kill(p, 'SIGKILL');
    spawnSync('ip', ['netns', 'del', NS]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('starts, answers, is restarted after SIGKILL, and stop leaves nothing', async () => {
    const sup = new ConntrackdSupervisor(SETTINGS, join(dir, 'a'), log, NS);
    await sup.start();
    const pid = sup.pid!;
    assert.ok(alive(pid));
    assert.match(readFileSync(`/proc/${pid}/cmdline`, 'utf8'), new RegExp(`conntrackd\0-C\0${join(dir, 'a', 'conntrackd.conf')}`));
    assert.equal(readFileSync(join(dir, 'a', 'conntrackd.conf'), 'utf8'), renderConntrackdConf(SETTINGS, sup.paths));
    assert.ok(await sup.ctl(['-s', 'runtime']));
    // The commands of a transition all succeed against it.
    for (const a of ['-c', '-f', '-R', '-B', '-t', '-n']) assert.ok(await sup.ctl([a]), `conntrackd ${a}`);

    process.kill(pid, 'SIGKILL');
    await until(() => sup.pid !== null && sup.pid !== pid && alive(sup.pid), 5000, 'a restarted conntrackd');
    await until(() => existsSync(sup.paths.ctl), 5000, 'its control socket');
    await sleep(300);
    assert.ok(await sup.ctl(['-s', 'runtime']), 'the restarted conntrackd answers');
    assert.ok(
      logs.some((m) => /conntrackd exited .*restarting in 1 s/.test(m)),
      logs.join('\n'),
    );

    const second = sup.pid!;
    await sup.stop();
    await until(() => !alive(second), 3000, 'conntrackd to exit');
    assert.equal(existsSync(sup.paths.ctl), false);
    assert.equal(existsSync(sup.paths.lock), false);
  });

  it('kills a stale conntrackd of the same director by PID before starting its own', async () => {
    const first = new ConntrackdSupervisor(SETTINGS, join(dir, 'b'), log, NS);
    await first.start();
    await first.stop(); // leaves the config behind
    // What a tsvsd that died without its child leaves: a conntrackd of this director nobody supervises.
    const o2 = spawn('ip', ['netns', 'exec', NS, 'conntrackd', '-C', first.paths.conf], { stdio: 'ignore' });
    stale.push(o2.pid!);
    await until(() => existsSync(first.paths.ctl), 5000, 'the orphan conntrackd');
    writeFileSync(first.paths.pid, `${o2.pid}\n`);

    const next = new ConntrackdSupervisor(SETTINGS, join(dir, 'b'), log, NS);
    await next.start();
    await until(() => !alive(o2.pid!), 3000, 'the stale conntrackd to be killed');
    assert.notEqual(next.pid, o2.pid);
    assert.ok(alive(next.pid!));
    assert.ok(logs.some((m) => m.includes(`killing a stale conntrackd of this director (pid ${o2.pid})`)));
    // Exactly one conntrackd runs for this state directory.
    const mine = spawnSync('sh', ['-c', `grep -l -a -- '${join(dir, 'b')}' /proc/[0-9]*/cmdline 2>/dev/null`], { encoding: 'utf8' })
      .stdout.split('\n')
      .filter(Boolean)
      .map((p) => Number(p.split('/')[2]))
      .filter((p) => alive(p) && readFileSync(`/proc/${p}/cmdline`, 'utf8').startsWith('conntrackd'));
    assert.deepEqual(mine, [next.pid]);
    await next.stop();
  });

  it('says how to install conntrackd when it is missing', () => {
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      assert.match(conntrackdProblem() ?? '', /conntrackd is not installed \(apt-get install conntrackd\)/);
    } finally {
      process.env.PATH = path;
    }
  });
});
