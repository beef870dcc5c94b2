/**
 * The soak: a real tsvsd (userspace plane, this checkout's dist/) under mixed load for
 * --minutes (30 unless told), sampling its RSS (VmRSS) and open file descriptors every
 * --sample seconds (10). Reports whether RSS stays within 10% of its value after the
 * warm-up (--warmup minutes: 10% of the run, at least 1) and whether the fd count stays flat.
 *
 * The load, all on loopback and paced (not flat out: the machine is shared):
 * - HTTP over kept-alive connections (4 clients, each one connection) and HTTP with a new
 *   connection per request (4 loops), through a TCP VIP over two real servers with checks;
 * - UDP: 2 loops asking a UDP VIP over two echo servers, each with a new flow (source port)
 *   every 20 datagrams; the config's UDP timeout is 20 s, so flows come and go;
 * - changes: every 5 s a tsvsadm call (add, then delete, a third real server);
 * - reloads: every 30 s a new weight in the config and SIGHUP.
 *
 *   npx tsc -p tsconfig.build.json && node --import tsx bench/soak.ts [--minutes 30] [--warmup M] [--sample 10] [--write]
 */
import { execFile } from 'node:child_process';
import http from 'node:http';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ENTRY, startTsvsd, type Tsvsd } from '../test/daemon/spawn.js';
import { freePort, httpGet, startHttpServer, startUdpEchoServer, udpClient, type TestServer } from '../test/helper.js';
import { writeSection } from './results.js';

const { values: opt } = parseArgs({
  options: {
    minutes: { type: 'string', default: '30' },
    warmup: { type: 'string' },
    sample: { type: 'string', default: '10' },
    write: { type: 'boolean', default: false },
  },
});
const MINUTES = Number(opt.minutes);
const WARMUP_MIN = opt.warmup !== undefined ? Number(opt.warmup) : Math.max(1, MINUTES / 10);
const SAMPLE_S = Number(opt.sample);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Sample {
  t: number;
  rssKb: number;
  fds: number;
  ok: number;
  failed: number;
}

function procSample(pid: number): { rssKb: number; fds: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return { rssKb, fds: readdirSync(`/proc/${pid}/fd`).length };
}

function config(web: number, dns: number, rs: TestServer[], udp: TestServer[], weight: number): string {
  return `timeouts: { tcp: 900, tcpfin: 120, udp: 20 }
services:
  - address: 127.0.0.1
    port: ${web}
    scheduler: wlc
    check_defaults: { interval: 1, timeout: 1, retry: 1 }
    real_servers:
      - { address: 127.0.0.1, port: ${rs[0]!.port}, weight: ${weight}, checks: [{ type: tcp }] }
      - { address: 127.0.0.1, port: ${rs[1]!.port}, weight: 1, checks: [{ type: tcp }] }
  - address: 127.0.0.1
    port: ${dns}
    protocol: udp
    scheduler: rr
    real_servers:
      - { address: 127.0.0.1, port: ${udp[0]!.port} }
      - { address: 127.0.0.1, port: ${udp[1]!.port} }
`;
}

async function main(): Promise<void> {
  const started = new Date();
  const load0 = loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
  const rs = await Promise.all([startHttpServer('h1'), startHttpServer('h2'), startHttpServer('h3')]);
  const udp = await Promise.all([startUdpEchoServer('u1'), startUdpEchoServer('u2')]);
  const web = await freePort();
  const dns = await freePort();
  let d: Tsvsd | null = null;
  const stats = { ok: 0, failed: 0, errors: new Map<string, number>(), changes: 0, changesFailed: 0, reloads: 0, reloadsFailed: 0 };
  /** When each failure and each change happened (ms since the start), to tell what a failure coincided with. */
  const failedAt: number[] = [];
  const events: Array<{ at: number; what: string }> = [];
  const tStart = Date.now();
  const fail = (what: string) => {
    failedAt.push(Date.now() - tStart);
    stats.failed++;
    stats.errors.set(what, (stats.errors.get(what) ?? 0) + 1);
  };
  let running = true;
  const end = Date.now() + MINUTES * 60_000;
  try {
    const dir = (await import('node:fs')).mkdtempSync(join((await import('node:os')).tmpdir(), 'tsvs-soak-'));
    const cfg = join(dir, 'tsvs.yaml');
    writeFileSync(cfg, config(web, dns, rs, udp, 1));
    d = await startTsvsd(['--config', cfg], { dir });
    const daemon = d;
    const pid = daemon.proc.pid!;
    process.stderr.write(`# soak: tsvsd pid ${pid}, ${MINUTES} min, warm-up ${WARMUP_MIN} min, sample every ${SAMPLE_S} s\n`);

    const loops: Array<Promise<void>> = [];
    const until = () => running && Date.now() < end;
    // HTTP, kept alive: each client holds one connection.
    for (let i = 0; i < 4; i++) {
      loops.push(
        (async () => {
          const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
          while (until()) {
            try {
              const r = await httpGet('127.0.0.1', web, { agent });
              if (r.status === 200) stats.ok++;
              else fail(`HTTP ${r.status}`);
            } catch (e) {
              fail(`keep-alive: ${(e as Error).message}`);
            }
            await sleep(10);
          }
          agent.destroy();
        })(),
      );
    }
    // HTTP, a new connection per request.
    for (let i = 0; i < 4; i++) {
      loops.push(
        (async () => {
          while (until()) {
            try {
              const r = await httpGet('127.0.0.1', web);
              if (r.status === 200) stats.ok++;
              else fail(`HTTP ${r.status}`);
            } catch (e) {
              fail(`close: ${(e as Error).message}`);
            }
            await sleep(10);
          }
        })(),
      );
    }
    // UDP: a new flow every 20 datagrams.
    for (let i = 0; i < 2; i++) {
      loops.push(
        (async () => {
          while (until()) {
            const c = await udpClient('127.0.0.1', dns);
            for (let k = 0; k < 20 && until(); k++) {
              try {
                await c.ask(`soak ${k}`, 2000);
                stats.ok++;
              } catch (e) {
                fail(`udp: ${(e as Error).message.replace(/\d+/g, 'N')}`);
              }
              await sleep(20);
            }
            c.close();
          }
        })(),
      );
    }
    // Changes through tsvsadm: add then delete a third real server.
    loops.push(
      (async () => {
        for (let k = 0; until(); k++) {
          await sleep(5000);
          const args =
            k % 2 === 0
              ? ['-a', '-t', `127.0.0.1:${web}`, '-r', `127.0.0.1:${rs[2]!.port}`, '-m', '-w', '1']
              : ['-d', '-t', `127.0.0.1:${web}`, '-r', `127.0.0.1:${rs[2]!.port}`];
          events.push({ at: Date.now() - tStart, what: k % 2 === 0 ? 'tsvsadm -a' : 'tsvsadm -d' });
          const ok = await new Promise<boolean>((r) =>
            execFile(
              process.execPath,
              [ENTRY('tsvsadm'), ...args],
              { env: { ...process.env, TSVS_SOCKET: daemon.socket }, timeout: 30_000 },
              (e) => r(!e),
            ),
          );
          if (ok) stats.changes++;
          else stats.changesFailed++;
        }
      })(),
    );
    // Reloads: a new weight, SIGHUP.
    loops.push(
      (async () => {
        for (let k = 0; until(); k++) {
          await sleep(30_000);
          if (!until()) break;
          writeFileSync(cfg, config(web, dns, rs, udp, 1 + (k % 3)));
          const before = daemon.logs().length;
          events.push({ at: Date.now() - tStart, what: 'reload' });
          daemon.proc.kill('SIGHUP');
          const t0 = Date.now();
          while (!/"msg":"(reloaded|reload refused)/.test(daemon.logs().slice(before)) && Date.now() - t0 < 10_000) await sleep(50);
          if (/"msg":"reloaded/.test(daemon.logs().slice(before))) stats.reloads++;
          else stats.reloadsFailed++;
        }
      })(),
    );

    const samples: Sample[] = [];
    const t0 = Date.now();
    while (Date.now() < end) {
      await sleep(Math.min(SAMPLE_S * 1000, Math.max(0, end - Date.now())));
      if (daemon.proc.exitCode !== null) throw new Error(`tsvsd exited ${daemon.proc.exitCode}: ${daemon.stderr().slice(-2000)}`);
      const s = { t: (Date.now() - t0) / 1000, ...procSample(pid), ok: stats.ok, failed: stats.failed };
      samples.push(s);
      process.stderr.write(`# ${s.t.toFixed(0)} s: RSS ${(s.rssKb / 1024).toFixed(1)} MB, ${s.fds} fds, ${s.ok} ok, ${s.failed} failed\n`);
    }
    running = false;
    await Promise.all(loops);

    const warm = samples.filter((s) => s.t >= WARMUP_MIN * 60);
    if (!warm.length) throw new Error('no sample after the warm-up: run longer than --warmup');
    const base = warm[0]!;
    const rssMax = Math.max(...warm.map((s) => s.rssKb));
    const rssMin = Math.min(...warm.map((s) => s.rssKb));
    const rssDev = Math.max(rssMax - base.rssKb, base.rssKb - rssMin) / base.rssKb;
    const fdMax = Math.max(...warm.map((s) => s.fds));
    const fdMin = Math.min(...warm.map((s) => s.fds));
    const last = warm[warm.length - 1]!;
    // Flat: no growth from the first half after the warm-up to the second. The count itself
    // moves with the load (each UDP flow holds an fd until its 20 s timeout, so more
    // datagrams per second mean more fds); a leak shows as a second half above the first.
    const FD_SLACK = 16;
    const half = Math.floor(warm.length / 2);
    const firstMax = Math.max(...warm.slice(0, Math.max(1, half)).map((s) => s.fds));
    const secondMax = Math.max(...warm.slice(half).map((s) => s.fds));
    const fdFlat = secondMax - firstMax <= FD_SLACK;
    // A failure within 1.5 s after a change or a reload is counted against it.
    const near = (what: string) =>
      failedAt.filter((f) => events.some((e) => e.what.startsWith(what) && f >= e.at && f - e.at <= 1500)).length;
    const attributed = `${near('tsvsadm -d')} within 1.5 s after a tsvsadm -d (the deleted server's connections end), ${near('tsvsadm -a')} after a tsvsadm -a, ${near('reload')} after a reload`;
    const rssOk = rssDev <= 0.1;
    const rows = samples
      .filter((_, i) => i % Math.max(1, Math.round(samples.length / 30)) === 0 || _ === last)
      .map(
        (s) =>
          `| ${s.t.toFixed(0).padStart(6)} | ${(s.rssKb / 1024).toFixed(1).padStart(7)} | ${String(s.fds).padStart(4)} | ${String(s.ok).padStart(8)} | ${String(s.failed).padStart(6)} |`,
      );
    const errors = [...stats.errors].map(([k, v]) => `${v}× ${k}`).join('; ');
    const cmd = `node --import tsx bench/soak.ts --minutes ${MINUTES}${opt.warmup !== undefined ? ` --warmup ${opt.warmup}` : ''} --sample ${SAMPLE_S}`;
    const report = `Command: \`npx tsc -p tsconfig.build.json && ${cmd}\` (root not needed; the 30-minute run is \`node --import tsx bench/soak.ts --minutes 30\`)
(${started.toISOString().slice(0, 10)}, Node ${process.version}, ${cpus().length} cores shared with other work; load average at the start: ${load0}).
A real tsvsd (userspace plane) on loopback under paced mixed load: 4 kept-alive HTTP clients, 4 loops of one new connection per
request, 2 UDP loops with a new flow every 20 datagrams (UDP timeout 20 s), a tsvsadm change every 5 s, a reload (SIGHUP) every 30 s.
Samples of tsvsd's VmRSS and open fds every ${SAMPLE_S} s; the baseline is the first sample after the ${WARMUP_MIN}-minute warm-up.

- RSS after warm-up ${(base.rssKb / 1024).toFixed(1)} MB, then between ${(rssMin / 1024).toFixed(1)} and ${(rssMax / 1024).toFixed(1)} MB, at the end ${(last.rssKb / 1024).toFixed(1)} MB: largest deviation ${(rssDev * 100).toFixed(1)}% — **${rssOk ? 'within' : 'NOT within'} 10%**.
- fds after warm-up ${base.fds}, then between ${fdMin} and ${fdMax}, at the end ${last.fds}; highest in the first half after the warm-up ${firstMax}, in the second ${secondMax} — **${fdFlat ? 'flat' : 'NOT flat'}** (flat: the second half's highest at most ${FD_SLACK} above the first's).
- ${stats.ok} requests and datagrams answered, ${stats.failed} failed${errors ? ` (${errors}; of the failures ${attributed})` : ''}; ${stats.changes} tsvsadm changes (${stats.changesFailed} failed); ${stats.reloads} reloads (${stats.reloadsFailed} refused or timed out).

|    t s |  RSS MB |  fds | answered | failed |
| -----: | ------: | ---: | -------: | -----: |
${rows.join('\n')}
`;
    process.stdout.write(`${report}\n`);
    if (opt.write) writeSection(`Soak (bench/soak.ts), ${MINUTES} minutes`, report);
    process.exitCode = rssOk && fdFlat ? 0 : 1;
    rmSync(dir, { recursive: true, force: true });
  } finally {
    running = false;
    await d?.cleanup();
    await Promise.all([...rs, ...udp].map((s) => s.close()));
  }
}

await main();
