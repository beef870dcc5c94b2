/**
 * The control plane at scale (issue #12): for each size N, a fresh tsvsd with a --state
 * file gets N services × 4 real servers (wlc) with one `tsvsadm -R`, then single changes,
 * and its listings and memory are measured. "Every change costs the change, not the
 * table": the per-change figures should not grow with N.
 *
 *   node --import tsx bench/scale.ts [--plane nftables|userspace|both|none] [--sizes 1000,2000,5000,10000,20000]
 *        [--changes 50] [--step-timeout 120] [--budget 300] [--write] [--label TEXT]
 *        [--download [--download-size 10000] [--download-changes 1000] [--download-seconds 120]]
 *
 * Per size and plane:
 * - restore: `tsvsadm -R < rules` (5 lines per service, ipvsadm -S format), the whole call;
 * - one change: --changes whole tsvsadm calls (-a a new server, -e a weight, -d a server, on
 *   random services), then --changes API calls from the bench (the same kinds of change,
 *   POST /v1/ops on the control socket: the daemon's side without node's start-up), and the
 *   per-batch `ms` of tsvsd's log when it logs one;
 * - `tsvsadm -Sn` and `-Ln`, median of 3 (and -Sn must print 5 lines per service);
 * - tsvsd's VmRSS after the restore and after the changes, and VmHWM.
 * The nftables plane runs tsvsd in a namespace of the bench's own (tsvs-s-SUFFIX); the
 * userspace plane on loopback (VIPs 127.18.x.y:80, one listener each, RLIMIT_NOFILE raised).
 * Every step is bounded by --step-timeout; a series of changes by --budget. A size that
 * times out is recorded as such and the larger sizes of that plane are not run.
 *
 * `--download` (nftables plane, root): see scale-download.ts.
 * With --write, one section of bench/RESULTS.md per plane (and one for the download).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { onCleanup } from './cleanup.js';
import { writeSection } from './results.js';
import { downloadCheck, type DownloadResult } from './scale-download.js';
import {
  builtBin,
  hardNofile,
  loggedBatchMs,
  memoryMB,
  startBenchDaemon,
  timedCall,
  timedRun,
  tsvsadm,
  type BenchDaemon,
  type Timed,
} from './scale-daemon.js';
import { ChangeStream, changeArgs, changeOp, REALS_PER_SERVICE, rulesText, type Plan, type Plane } from './scale-plan.js';
import { downloadTable, flatness, quantile, sizeTable, type Series, type SizeResult } from './scale-report.js';
import { median } from './wrk.js';

const { values } = parseArgs({
  options: {
    plane: { type: 'string', default: 'both' },
    sizes: { type: 'string', default: '1000,2000,5000,10000,20000' },
    changes: { type: 'string', default: '50' },
    scheduler: { type: 'string', default: 'wlc' },
    'step-timeout': { type: 'string', default: '120' },
    budget: { type: 'string', default: '300' },
    'log-level': { type: 'string', default: 'info' },
    suffix: { type: 'string', default: `${process.pid % 100000}` },
    write: { type: 'boolean', default: false },
    label: { type: 'string', default: '' },
    download: { type: 'boolean', default: false },
    'download-size': { type: 'string', default: '10000' },
    'download-changes': { type: 'string', default: '1000' },
    'download-seconds': { type: 'string', default: '120' },
  },
});

function int(name: string, v: string | undefined, min: number, max: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name} "${v}": expected a whole number from ${min} to ${max}`);
  return n;
}

// `none`: only the download check.
const PLANES: Plane[] = values.plane === 'both' ? ['userspace', 'nftables'] : values.plane === 'none' ? [] : [values.plane as Plane];
if (!PLANES.every((p) => p === 'nftables' || p === 'userspace'))
  throw new Error(`--plane "${values.plane}": expected nftables, userspace, both or none`);
const SIZES = values
  .sizes!.split(',')
  .map((s) => int('sizes', s.trim(), 1, 60_000))
  .sort((a, b) => a - b);
const CHANGES = int('changes', values.changes, 0, 5000);
const STEP_MS = int('step-timeout', values['step-timeout'], 1, 3600) * 1000;
const BUDGET_MS = int('budget', values.budget, 1, 7200) * 1000;
const SUFFIX = values.suffix!;
if (!/^[a-z0-9]{1,7}$/.test(SUFFIX)) throw new Error(`--suffix "${SUFFIX}": 1 to 7 lower-case letters or digits`);
const LOG_LEVEL = values['log-level']!;
const SCHEDULER = values.scheduler!;
const timeoutText = `timeout (>${STEP_MS / 1000} s)`;
const say = (s: string) => process.stderr.write(`${s}\n`);

/** Null when a tsvsadm call succeeded, else why not ("timeout ..." or "failed: ..."). */
function failure(r: Timed): string | null {
  if (r.timedOut) return timeoutText;
  if (r.code === 0) return null;
  // tsvsadm's own client gives up (30 s without an answer) and says so.
  if (/timed out/.test(r.stderr)) return "timeout (tsvsadm's own client timeout)";
  return `failed: ${r.stderr.split('\n')[0]}`;
}

/** Median of 3 whole tsvsadm listings; the line count of the first. */
async function listing(d: BenchDaemon, args: string[]): Promise<{ s: number | string; lines: number }> {
  const times: number[] = [];
  let lines = -1;
  for (let i = 0; i < 3; i++) {
    const r = await tsvsadm(d.socket, args, { timeoutMs: STEP_MS });
    const bad = failure(r);
    if (bad) return { s: bad, lines };
    if (lines < 0) lines = r.lines;
    times.push(r.ms / 1000);
  }
  return { s: median(times), lines };
}

/** --changes single changes, one after the other, within the budget; stops at the first that times out or fails. */
async function series(step: () => Promise<{ ms: number; bad: string | null }>): Promise<Series> {
  const s: Series = { ms: [], asked: CHANGES, note: '' };
  const t0 = Date.now();
  for (let k = 0; k < CHANGES; k++) {
    if (Date.now() - t0 > BUDGET_MS) return { ...s, note: `budget of ${BUDGET_MS / 1000} s spent` };
    const r = await step();
    if (r.bad) return { ...s, note: r.bad };
    s.ms.push(r.ms);
  }
  return s;
}

/** Whole tsvsadm calls, one change each. */
const callChanges = (d: BenchDaemon, plan: Plan, stream: ChangeStream) =>
  series(async () => {
    const r = await tsvsadm(d.socket, changeArgs(plan, stream.next()), { timeoutMs: STEP_MS });
    return { ms: r.ms, bad: failure(r) };
  });

/** API calls from the bench, one change each. */
const apiChanges = (d: BenchDaemon, plan: Plan, stream: ChangeStream) =>
  series(async () => {
    const op = changeOp(plan, stream.next());
    const r = await timedCall(() => d.client.apply([op]));
    return { ms: r.ms, bad: r.error && (r.error.endsWith('timed out') ? timeoutText : `failed: ${r.error}`) };
  });

const empty = (note: string): Series => ({ ms: [], asked: CHANGES, note });

/** Everything at one size on one plane, on a fresh daemon that is stopped afterwards. */
async function measureSize(plane: Plane, size: number): Promise<SizeResult> {
  const plan: Plan = { plane, size, scheduler: SCHEDULER };
  const dir = mkdtempSync(join(tmpdir(), `tsvs-scale-${plane}-${size}-`));
  const undoDir = onCleanup(dir, () => rmSync(dir, { recursive: true, force: true }));
  let undoNs: (() => void) | null = null;
  const r = rowNotRun(size);
  try {
    let netns: string | undefined;
    if (plane === 'nftables') {
      const ns = `tsvs-s-${SUFFIX}`;
      const add = spawnSync('ip', ['netns', 'add', ns], { encoding: 'utf8' });
      if (add.status !== 0) throw new Error(`ip netns add ${ns}: ${add.stderr.trim()}`);
      undoNs = onCleanup(ns, () => spawnSync('ip', ['netns', 'del', ns]));
      spawnSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
      netns = ns;
    }
    // A listener per service on the userspace plane, plus the log, state and API sockets.
    const nofile = size + 4096;
    if (plane === 'userspace' && nofile > hardNofile())
      r.notes.push(
        `RLIMIT_NOFILE is capped at the hard limit ${hardNofile()} here (no CAP_SYS_RESOURCE to raise it), below the ${nofile} descriptors a listener per service needs`,
      );
    const d = await startBenchDaemon({ plane, dir, netns, logLevel: LOG_LEVEL, nofile, timeoutMs: STEP_MS });
    try {
      const rules = join(dir, 'rules');
      writeFileSync(rules, rulesText(plan));
      const restore = await tsvsadm(d.socket, ['-R'], { stdinFile: rules, timeoutMs: STEP_MS });
      const bad = failure(restore);
      if (bad) {
        r.restoreS = bad;
        return r;
      }
      r.restoreS = restore.ms / 1000;
      const m0 = memoryMB(d.pid);
      r.rssRestoreMB = m0.rss;
      say(`${plane} ${size}: restore ${r.restoreS.toFixed(2)} s, RSS ${m0.rss.toFixed(0)} MB`);

      const save = await listing(d, ['-Sn']);
      r.saveS = save.s;
      const want = size * (1 + REALS_PER_SERVICE);
      if (save.lines >= 0 && save.lines !== want) r.notes.push(`-Sn printed ${save.lines} lines after the restore, expected ${want}`);
      r.listS = (await listing(d, ['-Ln'])).s;
      say(`${plane} ${size}: -Sn ${r.saveS} s, -Ln ${r.listS} s`);

      const stream = new ChangeStream(plan, size);
      const logFrom = statSync(d.log).size;
      r.call = await callChanges(d, plan, stream);
      say(
        `${plane} ${size}: ${r.call.ms.length} tsvsadm changes, p50 ${r.call.ms.length ? quantile(r.call.ms, 0.5).toFixed(1) : '-'} ms ${r.call.note}`,
      );
      // After a timed-out or failed change the daemon may still be busy with it: the API series would measure that.
      const broken = /^(timeout|failed)/.test(r.call.note);
      r.api = broken ? empty(`not run (${r.call.note})`) : await apiChanges(d, plan, stream);
      say(
        `${plane} ${size}: ${r.api.ms.length} API changes, p50 ${r.api.ms.length ? quantile(r.api.ms, 0.5).toFixed(1) : '-'} ms ${r.api.note}`,
      );
      r.daemonMs = loggedBatchMs(d.log, logFrom);
      const m1 = memoryMB(d.pid);
      r.rssChangesMB = m1.rss;
      r.peakMB = m1.peak;
      return r;
    } finally {
      d.stop();
    }
  } finally {
    undoNs?.();
    undoDir();
  }
}

/** Median start-up of a command, 5 runs. */
async function startup(cmd: string, args: string[]): Promise<number> {
  const ms: number[] = [];
  for (let i = 0; i < 5; i++) ms.push((await timedRun(cmd, args, { timeoutMs: 30_000 })).ms);
  return median(ms);
}

/** The floor of a tsvsadm call and the kernel peer, as text. */
async function peers(): Promise<string> {
  const node = await startup(process.execPath, ['-e', '0']);
  const adm = await startup(process.execPath, [builtBin('tsvsadm'), '-v']);
  const ipvs = spawnSync('ipvsadm', ['-Sn'], { encoding: 'utf8', timeout: 10_000 });
  const ipvsText = ipvs.error
    ? 'ipvsadm is not installed here'
    : ipvs.status === 0
      ? 'ipvsadm -Sn ran here (this kernel has IPVS): compare it directly'
      : `real ipvsadm is installed here but cannot program IPVS on this kernel (no ip_vs module): \`ipvsadm -Sn\` exits ${ipvs.status} with "${ipvs.stderr.split('\n')[0]}"`;
  return `Floors and peers: \`node -e 0\` starts in ${node.toFixed(0)} ms and \`tsvsadm -v\` (node plus tsvsadm's modules, no daemon call) in ${adm.toFixed(0)} ms here (median of 5): no whole tsvsadm call can be faster. The kernel peer: ${ipvsText}, so the figures to compare with are ipvsadm-validate's published ones, \`ipvsadm -Sn\` in 26 ms for 1,000 services and 363 ms for 16,000, with one netlink message per change.`;
}

/** The commit measured: HEAD, and the last commit that changed the programs (bench-only commits do not). */
function commit(): string {
  const git = (...args: string[]) =>
    spawnSync('git', ['-C', join(import.meta.dirname, '..'), ...args], { encoding: 'utf8' }).stdout?.trim() ?? '';
  const head = git('rev-parse', '--short', 'HEAD');
  const programs = git('log', '-1', '--format=%h', '--', 'src', 'bin');
  const dirty = git('status', '--porcelain', '--', 'src', 'bin');
  return `${head || 'unknown'} (src/ and bin/ as of ${programs || 'unknown'}${dirty ? ', plus uncommitted changes' : ''})`;
}

/** Read once at the start: the programs measured, not whatever is checked out when a section is written. */
const COMMIT = commit();
const quote = (a: string) => (/^[\w.,=/:-]+$/.test(a) ? a : `"${a}"`);

function header(load: string): string {
  return `Command: \`node --import tsx bench/scale.ts ${process.argv.slice(2).map(quote).join(' ')}\` (root)
(${new Date().toISOString().slice(0, 10)}, commit ${COMMIT}, Node ${process.version}, ${cpus().length} cores shared with other work;
load average at the start: ${load}).`;
}

const TARGETS = `Targets of issue #12 for 10,000 × 4 on the nftables plane: restore ≤ 1 s; one change ≤ 20 ms inside the daemon
and ≤ 100 ms for a whole tsvsadm call; \`-Sn\` ≤ 0.5 s; RSS ≤ 300 MB; per-change cost flat from 1k to 20k.`;

function planeBody(plane: Plane, rows: SizeResult[], load: string, peerText: string): string {
  const flat = flatness(rows);
  const notes = rows.flatMap((r) => r.notes.map((n) => `${r.size}: ${n}`));
  const where =
    plane === 'nftables'
      ? 'tsvsd --dataplane nftables in a network namespace of the bench (VIPs 198.18.x.y:80, real servers 198.19.x.y:80; no traffic)'
      : 'tsvsd --dataplane userspace on loopback (VIPs 127.18.x.y:80, one listener each; real servers 127.19.x.y:80, never connected to)';
  return `${header(load)}
${where}, fresh for each size, with a --state file and its JSON log (level ${LOG_LEVEL}) in a file.
Restore: one \`tsvsadm -R\` of N services × ${REALS_PER_SERVICE} real servers (${SCHEDULER}, -m, 5 lines per service), timed as a whole call.
One change: ${CHANGES} whole \`tsvsadm\` calls (-a a new server, -e a weight, -d a server, in turn, on random services), then
${CHANGES} more of the same kinds as API calls from the bench (POST /v1/ops on the control socket: the daemon's side, without
node's start-up and tsvsadm's parsing). "In the daemon (logged)" is the per-batch \`ms\` of tsvsd's log when it logs one.
\`-Sn\` and \`-Ln\`: median of 3 whole calls. RSS: VmRSS of tsvsd after the restore and after the changes, VmHWM in brackets.
Each step is bounded (${STEP_MS / 1000} s); a size that times out ends the plane's curve.
${[peerText, plane === 'nftables' ? TARGETS : '', process.env.TSVS_BENCH_NOTE ?? ''].filter(Boolean).join('\n')}

${sizeTable(rows)}
${flat ? `\n${flat}\n` : ''}${notes.length ? `\nNotes: ${notes.join('; ')}.\n` : ''}`;
}

function downloadBody(d: DownloadResult, load: string, changes: number, seconds: number): string {
  return `${header(load)}
The netns lab of \`tsvs lab\` (client, director, two nginx real servers routed through the director) with the bench's
own tsvsd --dataplane nftables in the director: ${d.size} services × ${REALS_PER_SERVICE} restored (restore ${d.restoreS?.toFixed(2)} s), of which one
is the lab's VIP 198.18.0.1:80 over the two real servers (${SCHEDULER}). curl in the client namespace fetches a 64 MiB file of
random bytes through the VIP, rate-limited to last about ${seconds} s (curl 7.88's limit runs fast: read "download s"), while the bench makes ${changes} single changes to
other services through the API, one after the other; then the SHA-256 of what arrived is compared with the file's.
tsvsd's RSS at the end: ${d.rssMB.toFixed(0)} MB.${process.env.TSVS_BENCH_NOTE ? `\n${process.env.TSVS_BENCH_NOTE}` : ''}

${downloadTable(d)}`;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0 && (PLANES.includes('nftables') || values.download))
    throw new Error('the nftables plane and --download need root (network namespaces, nftables)');
  builtBin('tsvsd');
  const load = loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
  const label = values.label ? `, ${values.label}` : '';
  const peerText = await peers();
  say(peerText);
  for (const plane of PLANES) {
    const rows: SizeResult[] = [];
    let stopped = '';
    for (const size of SIZES) {
      if (stopped) {
        rows.push({ ...rowNotRun(size), restoreS: stopped });
        continue;
      }
      let r: SizeResult;
      try {
        r = await measureSize(plane, size);
      } catch (e) {
        // A daemon that would not start or died: record it and end this plane's curve.
        r = { ...rowNotRun(size), restoreS: `error: ${(e as Error).message.slice(0, 200)}` };
        say(`${plane} ${size}: ${(e as Error).message}`);
        stopped = `not run (${size} failed)`;
      }
      rows.push(r);
      const timedOut = [r.restoreS, r.call.note, r.api.note, r.saveS, r.listS].some(
        (x) => typeof x === 'string' && x.startsWith('timeout'),
      );
      if (timedOut) stopped = `not run (${size} timed out)`;
    }
    const body = planeBody(plane, rows, load, peerText);
    process.stdout.write(`\n### ${plane} plane\n\n${sizeTable(rows)}\n${flatness(rows) ?? ''}\n`);
    if (values.write) writeSection(`Scale, ${plane} plane${label} (bench/scale.ts)`, body);
  }
  if (values.download) {
    const changes = int('download-changes', values['download-changes'], 1, 5000);
    const seconds = int('download-seconds', values['download-seconds'], 5, 1200);
    const d = await downloadCheck({
      size: int('download-size', values['download-size'], 2, 60_000),
      changes,
      seconds,
      scheduler: SCHEDULER,
      suffix: `k${SUFFIX}`.slice(0, 7),
      stepTimeoutMs: STEP_MS,
      budgetMs: BUDGET_MS,
      logLevel: LOG_LEVEL,
    });
    process.stdout.write(`\n### download during changes\n\n${downloadTable(d)}\n`);
    if (values.write)
      writeSection(`Scale, a long download during changes${label} (bench/scale.ts --download)`, downloadBody(d, load, changes, seconds));
  }
}

function rowNotRun(size: number): SizeResult {
  const n = 'not run';
  return {
    size,
    restoreS: n,
    call: empty(n),
    api: empty(n),
    daemonMs: [],
    saveS: n,
    listS: n,
    rssRestoreMB: n,
    rssChangesMB: n,
    peakMB: n,
    notes: [],
  };
}

await main();
