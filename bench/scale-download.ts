/**
 * The download check of bench/scale.ts (`--download`, root): a long download through the
 * nftables plane must complete byte for byte while the bench changes other services.
 *
 * The netns lab of `tsvs lab` (client, director, two nginx real servers routed through the
 * director) without its tsvsd: the bench starts its own tsvsd in the director namespace,
 * restores N services × 4 of which service 0 is the lab's VIP 198.18.0.1:80 over the two
 * real servers, and has curl in the client namespace fetch a 64 MiB file of random bytes
 * through the VIP at a limited rate (so that it lasts about --download-seconds). Meanwhile
 * it makes single changes to other services through the API, one after the other, as fast
 * as the daemon takes them, then compares the SHA-256 of what curl received with the file's.
 * Bounded: curl --max-time, a count of changes and a time budget for them.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, closeSync, existsSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { labDown, labUp, REAL_ADDRS, VIP_ADDR } from '../src/lab/lab.js';
import { onCleanup, stopPid } from './cleanup.js';
import { memoryMB, startBenchDaemon, timedCall, timedRun, tsvsadm } from './scale-daemon.js';
import { ChangeStream, changeOp, rulesText, type Plan } from './scale-plan.js';

const FILE_BYTES = 64 * 1024 * 1024;

export interface DownloadOptions {
  size: number;
  changes: number;
  /** How long the download should last (sets curl's rate limit). */
  seconds: number;
  scheduler: string;
  suffix: string;
  stepTimeoutMs: number;
  /** Time budget for the changes. */
  budgetMs: number;
  logLevel: string;
}

export interface DownloadResult {
  size: number;
  restoreS: number | null;
  /** Changes made, and how many of them completed while curl was still receiving. */
  changes: number;
  changesDuringDownload: number;
  changeMs: number[];
  changesPerS: number;
  /** Why the changes stopped early, if they did. */
  note: string;
  rateKBs: number;
  bytes: number;
  httpCode: string;
  curlExit: number | null;
  downloadS: number;
  sha256Match: boolean;
  /** The file arrived whole and intact (whether every change fell inside the download is `changesDuringDownload`). */
  pass: boolean;
  rssMB: number;
}

/** A 64 MiB file of random bytes; returns its SHA-256. */
function writeRandomFile(path: string): string {
  const h = createHash('sha256');
  const fd = openSync(path, 'w');
  try {
    for (let off = 0; off < FILE_BYTES; off += 1 << 20) {
      const chunk = randomBytes(1 << 20);
      h.update(chunk);
      writeSync(fd, chunk);
    }
  } finally {
    closeSync(fd);
  }
  chmodSync(path, 0o644);
  return h.digest('hex');
}

const sha256File = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

/** Runs the check and tears the lab down, whatever happens. */
export async function downloadCheck(o: DownloadOptions): Promise<DownloadResult> {
  const undoLab = onCleanup(`lab ${o.suffix}`, () => labDown(o.suffix));
  try {
    const lab = await labUp({ suffix: o.suffix, tsvsd: false });
    const expected = writeRandomFile(join(lab.www, 'scale.bin'));
    const plan: Plan = {
      plane: 'nftables',
      size: o.size,
      scheduler: o.scheduler,
      special: { vip: VIP_ADDR, port: 80, reals: [...REAL_ADDRS] },
    };
    const d = await startBenchDaemon({
      plane: 'nftables',
      dir: lab.dir,
      netns: lab.director,
      logLevel: o.logLevel,
      nofile: 8192,
      timeoutMs: o.stepTimeoutMs,
    });
    try {
      const rules = join(lab.dir, 'rules');
      writeFileSync(rules, rulesText(plan));
      const r = await tsvsadm(d.socket, ['-R'], { stdinFile: rules, timeoutMs: o.stepTimeoutMs });
      if (r.timedOut || r.code !== 0)
        throw new Error(
          `tsvsadm -R of ${o.size} services ${r.timedOut ? `timed out after ${o.stepTimeoutMs / 1000} s` : `failed: ${r.stderr}`}`,
        );
      const restoreS = r.ms / 1000;
      const curl = (args: string[]) => ['netns', 'exec', lab.client, 'curl', '-sS', ...args];
      // The path works before the long download starts.
      const probe = await timedRun(
        'ip',
        curl(['--max-time', '10', '-o', '/dev/null', '-w', '%{http_code}', `http://${VIP_ADDR}/index.html`]),
        { timeoutMs: 20_000 },
      );
      if (probe.code !== 0) throw new Error(`GET http://${VIP_ADDR}/index.html through the director failed: ${probe.stderr}`);

      const rateKBs = Math.ceil(FILE_BYTES / 1024 / o.seconds);
      const out = join(lab.dir, 'received.bin');
      const maxTime = o.seconds * 3 + 60;
      const t0 = performance.now();
      const child = spawn(
        'ip',
        curl([
          '--limit-rate',
          `${rateKBs}k`,
          '--max-time',
          String(maxTime),
          '-o',
          out,
          '-w',
          '%{http_code}',
          `http://${VIP_ADDR}/scale.bin`,
        ]),
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      const undoCurl = onCleanup(`curl ${child.pid}`, () => stopPid(child.pid!, 2000));
      let httpCode = '';
      child.stdout.on('data', (b: Buffer) => (httpCode += b.toString()));
      child.stderr.on('data', (b: Buffer) => process.stderr.write(`curl: ${b.toString().slice(0, 500)}`));
      let downloadS = 0;
      const done = new Promise<number | null>((res) =>
        child.once('close', (c) => {
          downloadS = (performance.now() - t0) / 1000;
          res(c);
        }),
      );
      let running = true;
      void done.then(() => (running = false));
      // Changes start once bytes flow, so that they all fall inside the download.
      for (let i = 0; i < 100 && running && !(existsSync(out) && statSync(out).size > 0); i++) await new Promise((r) => setTimeout(r, 100));

      const stream = new ChangeStream(plan, 7);
      const changeMs: number[] = [];
      let during = 0;
      let note = '';
      const c0 = performance.now();
      for (let k = 0; k < o.changes; k++) {
        if (performance.now() - c0 > o.budgetMs) {
          note = `time budget of ${o.budgetMs / 1000} s spent after ${k} changes`;
          break;
        }
        const op = changeOp(plan, stream.next());
        const t = await timedCall(() => d.client.apply([op]));
        if (t.error) {
          note = `change ${k + 1} failed: ${t.error}`;
          break;
        }
        changeMs.push(t.ms);
        if (running) during++;
      }
      const changesS = (performance.now() - c0) / 1000;
      const curlExit = await done;
      undoCurl();
      const bytes = existsSync(out) ? statSync(out).size : 0;
      const sha256Match = bytes === FILE_BYTES && sha256File(out) === expected;
      return {
        size: o.size,
        restoreS,
        changes: changeMs.length,
        changesDuringDownload: during,
        changeMs,
        changesPerS: changeMs.length / changesS,
        note,
        rateKBs,
        bytes,
        httpCode: httpCode.trim(),
        curlExit,
        downloadS,
        sha256Match,
        pass: sha256Match && curlExit === 0 && httpCode.trim() === '200',
        rssMB: memoryMB(d.pid).rss,
      };
    } finally {
      d.stop();
    }
  } finally {
    undoLab();
  }
}
