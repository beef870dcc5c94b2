/**
 * State sync across a real failover on the HA lab (test/ha/halab.ts draws it), as root:
 *
 *   client 198.18.0.10 --[switch]-- d1 198.18.0.2 (VRRP master, prio 150) --[switch]-- r1, r2 (nginx)
 *                              \--- d2 198.18.0.3 (backup, prio 100) -------/
 *   VIP 198.18.0.1 and gateway 198.19.0.1 float in VRRP instance VI_1 (advert_int 0.2 s).
 *
 * Both directors run tsvsd with the nftables plane and a `sync:` section: conntrackd (FTFW
 * over UDP between 198.18.0.2 and .3) and the IPVS sync daemon following VI_1. The master
 * is killed with SIGKILL while long downloads run and after a persistent client was given
 * a real server. Shown: every download finishes byte for byte without a reset (conntrack
 * state; nf_conntrack_tcp_loose=0, so nothing else could carry them), and the persistent client's new connections still go to its real server on the
 * new master (persistence templates put into the backup's nftables sets).
 */
import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { HA, haLabDown, haLabUp, haTsvsdConfig, hasAddr, labApi, startTsvsd, type HaLab, type LabProc } from './halab.js';
import { privileged } from '../privileged.js';

const gate = privileged(['ip', 'nginx', 'arping', 'bridge', 'conntrackd', 'curl']);
const SUFFIX = `s${process.pid.toString(36).slice(-5)}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const DOWNLOADS = 4;
const SIZE = 16 * 1024 * 1024;
/** 16 MiB at 2 MiB/s: about 8 s per download, the master dies after 2.5 s. */
const RATE = '2M';

async function until(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** The director config: the lab's, with a persistent service and the sync section. */
function config(l: HaLab, i: 0 | 1): string {
  const base = haTsvsdConfig(l, i, { priority: i === 0 ? 150 : 100, advertInt: 0.2 }).replace(
    '    scheduler: rr\n',
    '    scheduler: rr\n    persistence: 300\n',
  );
  assert.match(base, /persistence: 300/);
  return `${base}sync:
  daemon:
    interface: ${l.ifClient}
    instance: VI_1
  conntrackd:
    interface: ${l.ifClient}
    address: ${HA.dirClient[i]}
    peer: ${HA.dirClient[1 - i]}
`;
}

/** GET /name from the client: which real server answered, on a new connection. */
function whoAnswers(l: HaLab): string {
  const r = spawnSync('ip', ['netns', 'exec', l.client, 'curl', '-sS', '--max-time', '3', `http://${HA.vip}/name`], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  return (r.stdout ?? '').trim() || `ERR ${r.stderr.trim()}`;
}

interface Download {
  file: string;
  done: Promise<{ code: number | null; out: string }>;
}

function startDownload(l: HaLab, k: number): Download {
  const file = join(l.dir, `dl${k}.bin`);
  const p = spawn(
    'ip',
    [
      'netns',
      'exec',
      l.client,
      'curl',
      '-sS',
      '--max-time',
      '45',
      '--limit-rate',
      RATE,
      '-o',
      file,
      '-w',
      '%{http_code} %{size_download}',
      `http://${HA.vip}/big.bin`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr.on('data', (d: Buffer) => (out += d.toString()));
  return { file, done: new Promise((r) => p.once('exit', (code) => r({ code, out }))) };
}

describe('state sync across a SIGKILL of the master (nftables plane, conntrackd, sync daemon)', gate, () => {
  let l: HaLab;
  const procs: LabProc[] = [];
  let bigSha = '';

  before(async () => {
    haLabDown(SUFFIX);
    l = haLabUp({ suffix: SUFFIX });
    const big = randomBytes(SIZE);
    bigSha = createHash('sha256').update(big).digest('hex');
    writeFileSync(join(l.dir, 'www', 'big.bin'), big);
    // Mid-stream packets without a conntrack entry are INVALID rather than picked up (and
    // re-NATed by the persistence set): the downloads then survive only through conntrackd.
    for (const d of l.directors) {
      spawnSync('ip', ['netns', 'exec', d, 'sysctl', '-qw', 'net.netfilter.nf_conntrack_tcp_loose=0']);
      assert.equal(
        spawnSync('ip', ['netns', 'exec', d, 'cat', '/proc/sys/net/netfilter/nf_conntrack_tcp_loose'], { encoding: 'utf8' }).stdout.trim(),
        '0',
      );
    }
    procs.push(await startTsvsd(l, 0, config(l, 0)));
    procs.push(await startTsvsd(l, 1, config(l, 1)));
    await until(() => hasAddr(l.directors[0], HA.vip) && !hasAddr(l.directors[1], HA.vip), 10_000, 'd1 to hold the VIP alone');
  });

  after(async () => {
    for (const p of procs) await p.kill('SIGKILL');
    if (l) haLabDown(SUFFIX);
  });

  test('long downloads survive without reset and a -p client keeps its real server', async () => {
    // A persistent client: every new connection goes to one real server.
    const first = whoAnswers(l);
    assert.match(first, /^r[12]$/);
    for (let k = 0; k < 3; k++) assert.equal(whoAnswers(l), first);
    const rip = HA.reals[first === 'r1' ? 0 : 1];

    // The backup got the template from the master's sync daemon into its kernel set.
    await until(
      async () => {
        const conns = (await labApi(l, 1, '/v1/connections')) as Array<{ template: boolean; caddr: string; daddr: string }>;
        return conns.some((c) => c.template && c.caddr === HA.client && c.daddr === rip);
      },
      8000,
      `the template ${HA.client} -> ${rip} on the backup`,
    );

    const downloads = Array.from({ length: DOWNLOADS }, (_, k) => startDownload(l, k));
    await sleep(2500);
    const t0 = Date.now();
    await procs[0]!.kill('SIGKILL');
    await until(() => hasAddr(l.directors[1], HA.vip), 5000, 'd2 to take the VIP');
    const takeover = Date.now() - t0;

    const results = await Promise.all(downloads.map((d) => d.done));
    for (const [k, r] of results.entries()) {
      assert.equal(r.code, 0, `download ${k}: curl exit ${r.code}: ${r.out}`);
      assert.equal(r.out, `200 ${SIZE}`, `download ${k}`);
      assert.equal(createHash('sha256').update(readFileSync(downloads[k]!.file)).digest('hex'), bigSha, `download ${k}: content differs`);
    }

    // New connections of the persistent client, now through d2, reach the same server.
    for (let k = 0; k < 4; k++) assert.equal(whoAnswers(l), first, `connection ${k} after failover`);
    process.stderr.write(`# sync failover: VIP on the backup ${takeover} ms after SIGKILL; ${DOWNLOADS}/${DOWNLOADS} downloads intact\n`);
  });
});
