/**
 * Chaos: SIGSTOP of a real tsvsd on the nftables plane with the first-packet path (a wlc
 * service: the first packet of each new flow goes through NFQUEUE to tsvsd's reader
 * thread). While tsvsd is stopped, the kernel must keep serving new connections through
 * its own fallback (the numgen round-robin rule); after SIGCONT tsvsd answers again and
 * schedules as before.
 *
 *   client 198.18.0.10 --- 198.18.0.1 [director: tsvsd --dataplane nftables] 198.19.0.1 --+-- 198.19.0.11 nginx
 *                                                                                         +-- 198.19.0.12 nginx
 *
 * The NFQUEUE rule carries `bypass` (no reader bound: accept) and the queue is configured
 * fail-open (queue full: accept); a reader that is bound but stopped is neither, and the
 * 200 ms answer bound lives in the reader thread, which SIGSTOP stops with the process.
 * Today the connections wait (curl times out after 3 s each): the test is a todo until the
 * plane has a fallback that a stopped tsvsd cannot hold up.
 */
import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { HttpControlClient } from '../../src/api/client.js';
import { labDown, labUp, nsRun, REAL_ADDRS, socketAnswers, VIP_ADDR, type LabNames } from '../../src/lab/lab.js';
import { ENTRY } from '../daemon/spawn.js';
import { privileged } from '../privileged.js';
import { sleep, until } from './helper.js';

const suffix = `k${process.pid % 1_000_000}`;

describe('chaos: SIGSTOP of tsvsd with the first-packet path', privileged(['ip', 'nft', 'nginx', 'curl']), () => {
  let lab: LabNames | null = null;
  let tsvsd: ChildProcess | null = null;
  let client: HttpControlClient;

  /** One new connection from the client: the real server's name, or "" on failure; and how long it took. */
  const curl = () =>
    new Promise<{ name: string; secs: number }>((resolve) => {
      const p = spawn(
        'ip',
        ['netns', 'exec', lab!.client, 'curl', '-s', '--max-time', '3', '-w', ' %{time_total}', `http://${VIP_ADDR}/name`],
        {
          stdio: ['ignore', 'pipe', 'ignore'],
        },
      );
      let out = '';
      p.stdout!.on('data', (b: Buffer) => (out += b.toString()));
      p.on('close', () => {
        const secs = Number(out.trim().split(/\s+/).pop());
        resolve({ name: /^(r[12])\b/.exec(out)?.[1] ?? '', secs });
      });
    });

  before(async () => {
    lab = await labUp({ suffix, tsvsd: false });
    const log = openSync(join(lab.dir, 'tsvsd.log'), 'a');
    // `ip netns exec` execs node: this pid is tsvsd's.
    tsvsd = spawn(
      'ip',
      [
        'netns',
        'exec',
        lab.director,
        process.execPath,
        ENTRY('tsvsd'),
        '--dataplane',
        'nftables',
        '--socket',
        lab.socket,
        '--state',
        lab.state,
      ],
      {
        stdio: ['ignore', log, log],
      },
    );
    closeSync(log);
    await until(() => socketAnswers(lab!.socket), 20_000, `tsvsd in ${lab.director}`);
    client = new HttpControlClient({ socketPath: lab.socket, timeoutMs: 10_000 });
    const svc = {
      af: 4 as const,
      protocol: 'tcp' as const,
      addr: VIP_ADDR,
      port: 80,
      fwmark: 0,
      scheduler: 'wlc',
      schedFlags: 0,
      persistent: 0,
      netmask: 0xffffffff,
      ops: false,
      pe: '',
    };
    await client.apply([
      { op: 'add-service', service: svc },
      ...REAL_ADDRS.map((addr) => ({
        op: 'add-server' as const,
        service: svc,
        dest: { af: 4 as const, addr, port: 80, weight: 1, fwd: 'masq' as const, uThreshold: 0, lThreshold: 0 },
      })),
    ]);
  });
  after(() => {
    if (tsvsd?.pid && tsvsd.exitCode === null) {
      process.kill(tsvsd.pid, 'SIGCONT');
      process.kill(tsvsd.pid, 'SIGKILL');
    }
    if (lab) labDown(lab.suffix);
  });

  test('while tsvsd is stopped, new connections are served by the kernel fallback; after SIGCONT tsvsd schedules again', {
    timeout: 90_000,
    // Found by this test: the reader thread stops with the process, its queue stays bound, so
    // neither `bypass` nor fail-open applies and every new first packet waits in the queue.
    todo: 'NEW (issue 13, chaos suite): a stopped tsvsd hangs new first-packet connections; not fixed yet (src/dataplane/nftables)',
  }, async (t) => {
    assert.match(nsRun(lab!.director, 'nft', ['list', 'ruleset']), /queue/, 'the first-packet path (NFQUEUE rule) is in place');
    for (let i = 0; i < 2; i++) assert.match((await curl()).name, /^r[12]$/, 'served before the stop');
    const pid = tsvsd!.pid!;
    process.kill(pid, 'SIGSTOP');
    let stopped: Array<{ name: string; secs: number }>;
    try {
      await sleep(200);
      stopped = [];
      for (let i = 0; i < 3; i++) stopped.push(await curl());
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    t.diagnostic(`while stopped: ${stopped.map((x) => `${x.name || 'FAILED'} ${x.secs.toFixed(2)} s`).join(', ')}`);
    // After SIGCONT: the API answers and new connections are scheduled again.
    assert.ok((await client.info()).version);
    const afterCont = [await curl(), await curl()];
    for (const c of afterCont) assert.match(c.name, /^r[12]$/, 'served after SIGCONT');
    assert.equal(tsvsd!.exitCode, null, readFileSync(join(lab!.dir, 'tsvsd.log'), 'utf8').slice(-2000));
    for (const c of stopped)
      assert.match(c.name, /^r[12]$/, `every new connection is served while tsvsd is stopped: ${JSON.stringify(stopped)}`);
  });
});
