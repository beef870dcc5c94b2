/**
 * Interop with keepalived 2.2.7 (Debian) on the HA lab (test/ha/halab.ts), as root: one
 * director runs tsvsd, the other keepalived (VRRP only, vrrp_version 3), same instance
 * (VRID 51, VIP 198.18.0.1 and gateway 198.19.0.1, advert_int 0.2 s).
 *
 *   tsvs MASTER + keepalived BACKUP: keepalived stays BACKUP on tsvs's adverts; tsvs stops
 *   (priority 0) -> keepalived MASTER; tsvs returns, validates keepalived's adverts and preempts.
 *   keepalived MASTER + tsvs BACKUP: tsvs follows keepalived's adverts; keepalived SIGKILLed
 *   -> tsvs MASTER; keepalived returns (clearing its stale VIPs) and preempts; tsvs drops the VIPs.
 * Exactly one director holds the VIP in every stable state.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  HA,
  haKeepalivedConfig,
  haLabDown,
  haLabUp,
  haTsvsdConfig,
  hasAddr,
  startKeepalived,
  startTsvsd,
  vrrpStatus,
  type HaLab,
  type LabProc,
} from './halab.js';
import { privileged } from '../privileged.js';

const gate = privileged(['ip', 'keepalived', 'arping']);
const ADV = 0.2;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

const holders = (l: HaLab) => [0, 1].filter((i) => hasAddr(l.directors[i]!, HA.vip) || hasAddr(l.directors[i]!, HA.gateway));
const count = (text: string, re: RegExp) => text.split('\n').filter((x) => re.test(x)).length;

describe('VRRP interop with keepalived 2.2.7', gate, () => {
  const version = spawnSync('keepalived', ['--version'], { encoding: 'utf8' });
  const v = `${version.stdout}${version.stderr}`;

  test('keepalived is the version the issue names', () => assert.match(v, /Keepalived v2\.2\.7/));

  describe('tsvs MASTER, keepalived BACKUP', () => {
    const S = `k${process.pid.toString(36).slice(-5)}`;
    let l: HaLab;
    const procs: LabProc[] = [];
    before(() => {
      l = haLabUp({ suffix: S, nginx: false });
    });
    after(async () => {
      for (const p of procs) await p.kill('SIGKILL');
      haLabDown(S);
    });

    test('keepalived stays BACKUP on tsvs adverts; priority 0 from tsvs makes it MASTER; tsvs preempts it back', async () => {
      let ts = await startTsvsd(l, 0, haTsvsdConfig(l, 0, { priority: 150, advertInt: ADV }));
      procs.push(ts);
      await until(async () => (await vrrpStatus(l, 0)).instances[0]?.state === 'master', 5000, 'tsvs MASTER');
      const ka = startKeepalived(l, 1, haKeepalivedConfig(l, 1, { priority: 100, advertInt: ADV }));
      procs.push(ka);
      await until(() => /Entering BACKUP STATE/.test(ka.log()), 10_000, 'keepalived BACKUP');
      await sleep(2000); // keepalived's Master_Down_Interval is 0.72 s: it must be hearing tsvs
      assert.equal(count(ka.log(), /Entering MASTER STATE/), 0, ka.log());
      assert.deepEqual(holders(l), [0]);

      assert.equal(await ts.kill('SIGTERM'), 0);
      await until(() => /Entering MASTER STATE/.test(ka.log()), 3000, 'keepalived MASTER');
      assert.match(ka.log(), /priority 0/i, 'keepalived saw the priority-0 advert');
      await until(() => holders(l).join() === '1', 3000, 'VIPs only on the keepalived director');

      ts = await startTsvsd(l, 0, haTsvsdConfig(l, 0, { priority: 150, advertInt: ADV }));
      procs.push(ts);
      await until(
        () => /Master received advert from 198\.18\.0\.2 with higher priority 150, ours 100/.test(ka.log()),
        5000,
        'keepalived yielding to tsvs',
      );
      await until(() => holders(l).join() === '0', 3000, 'VIPs only on the tsvs director');
      const st = (await vrrpStatus(l, 0)).instances[0]!;
      assert.equal(st.state, 'master');
      assert.ok(st.advertsReceived! >= 1, `tsvs validated ${st.advertsReceived} keepalived adverts`);
      assert.deepEqual(st.dropped, {}, 'no keepalived advert was rejected');
    });
  });

  describe('unicast peers, tsvs MASTER and keepalived BACKUP', () => {
    const S = `u${process.pid.toString(36).slice(-5)}`;
    let l: HaLab;
    const procs: LabProc[] = [];
    before(() => {
      l = haLabUp({ suffix: S, nginx: false });
    });
    after(async () => {
      for (const p of procs) await p.kill('SIGKILL');
      haLabDown(S);
    });

    test('unicast adverts (checksum over the peer address) pass both ways', async () => {
      let ts = await startTsvsd(l, 0, haTsvsdConfig(l, 0, { priority: 150, advertInt: ADV, unicast: true }));
      procs.push(ts);
      await until(async () => (await vrrpStatus(l, 0)).instances[0]?.state === 'master', 5000, 'tsvs MASTER');
      const ka = startKeepalived(l, 1, haKeepalivedConfig(l, 1, { priority: 100, advertInt: ADV, unicast: true }));
      procs.push(ka);
      await until(() => /Entering BACKUP STATE/.test(ka.log()), 10_000, 'keepalived BACKUP');
      await sleep(2000);
      assert.equal(count(ka.log(), /Entering MASTER STATE/), 0, ka.log());
      assert.equal(count(ka.log(), /checksum|Invalid|invalid/), 0, ka.log());
      assert.equal(await ts.kill('SIGTERM'), 0);
      await until(() => /Entering MASTER STATE/.test(ka.log()), 3000, 'keepalived MASTER');
      ts = await startTsvsd(l, 0, haTsvsdConfig(l, 0, { priority: 150, advertInt: ADV, unicast: true }));
      procs.push(ts);
      await until(() => holders(l).join() === '0', 5000, 'tsvs preempting over unicast');
      const st = (await vrrpStatus(l, 0)).instances[0]!;
      assert.ok(st.advertsReceived! >= 1);
      assert.deepEqual(st.dropped, {});
    });
  });

  describe('keepalived MASTER, tsvs BACKUP', () => {
    const S = `j${process.pid.toString(36).slice(-5)}`;
    let l: HaLab;
    const procs: LabProc[] = [];
    before(() => {
      l = haLabUp({ suffix: S, nginx: false });
    });
    after(async () => {
      for (const p of procs) await p.kill('SIGKILL');
      haLabDown(S);
    });

    test('tsvs follows keepalived; keepalived SIGKILLed -> tsvs MASTER; keepalived back -> tsvs BACKUP', async () => {
      let ka = startKeepalived(l, 0, haKeepalivedConfig(l, 0, { priority: 150, advertInt: ADV, state: 'MASTER' }));
      procs.push(ka);
      await until(() => /Entering MASTER STATE/.test(ka.log()) && holders(l).join() === '0', 10_000, 'keepalived MASTER');
      const ts = await startTsvsd(l, 1, haTsvsdConfig(l, 1, { priority: 100, advertInt: ADV }));
      procs.push(ts);
      await until(async () => (await vrrpStatus(l, 1)).instances[0]?.master === HA.dirClient[0], 5000, 'tsvs following keepalived');
      await sleep(1000);
      let st = (await vrrpStatus(l, 1)).instances[0]!;
      assert.equal(st.state, 'backup');
      assert.ok(st.advertsReceived! >= 3, `${st.advertsReceived} adverts`);
      assert.deepEqual(st.dropped, {}, 'keepalived adverts pass every check (checksum with pseudo-header, TTL, count)');
      assert.deepEqual(holders(l), [0]);

      // A crash: the VRRP child and the parent, by PID.
      const child = Number(readFileSync(join(l.dir, 'd1', 'vrrp.pid'), 'utf8').trim());
      process.kill(child, 'SIGKILL');
      await ka.kill('SIGKILL');
      await until(async () => (await vrrpStatus(l, 1)).instances[0]!.state === 'master', 3000, 'tsvs MASTER');
      await until(() => hasAddr(l.directors[1], HA.vip) && hasAddr(l.directors[1], HA.gateway), 2000, 'VIPs on the tsvs director');
      assert.equal(hasAddr(l.directors[0], HA.vip), true, 'keepalived killed with SIGKILL left its VIP behind');

      // The same log file goes on: count the lines rather than match them.
      const masters = count(ka.log(), /Entering MASTER STATE/);
      ka = startKeepalived(l, 0, haKeepalivedConfig(l, 0, { priority: 150, advertInt: ADV, state: 'MASTER' }));
      procs.push(ka);
      await until(() => count(ka.log(), /Entering MASTER STATE/) > masters, 10_000, 'keepalived MASTER again').catch((e: Error) =>
        assert.fail(`${e.message}\n${ka.log().slice(-1500)}`),
      );
      assert.match(ka.log(), /received lower priority \(100\) advert from 198\.18\.0\.3/, 'keepalived heard the tsvs master');
      await until(async () => (await vrrpStatus(l, 1)).instances[0]!.state === 'backup', 3000, 'tsvs BACKUP again');
      await until(() => holders(l).join() === '0', 3000, 'VIPs only on the keepalived director');
      st = (await vrrpStatus(l, 1)).instances[0]!;
      assert.match(st.reason!, /higher priority master 198\.18\.0\.2 \(priority 150/);
    });
  });
});
