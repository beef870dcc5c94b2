/**
 * tsvsadm at scale against a real tsvsd (userspace plane, this checkout's dist/):
 *
 *   1. start-up: `node` on an empty file against `tsvsadm -Ln` of an empty table;
 *   2. `tsvsadm -R` of SERVICES × PER lines, then `-Ln`, `-Sn`, `-Ln --stats`, `-Ln --rate`
 *      of that table (wall time of the whole command, and the daemon's CPU per listing);
 *   3. responsiveness: a second, empty tsvsd restores a 50,000-line batch while another
 *      client asks `GET /v1/info` every 20 ms and runs `tsvsadm -Ln` in a loop.
 *
 *   npm run build && node --import tsx bench/tsvsadm.ts [--services 10000] [--per 4] [--runs 10]
 *
 * Wall times on a shared machine are noisy: the minimum is the cost, the median the weather.
 * Services listen on 127.0.0.1 ports (10,000 listeners need `ulimit -n` above that).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..');
const DIST = (name: string) => join(ROOT, 'dist', 'bin', `${name}.js`);

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}
const SERVICES = arg('services', 10_000);
const PER = arg('per', 4);
const RUNS = arg('runs', 10);

const dir = mkdtempSync(join(tmpdir(), 'tsvs-bench-adm-'));
const daemons: ChildProcess[] = [];

/** One tsvsd with its own socket; resolves once it answers. */
async function startDaemon(name: string): Promise<{ socket: string; pid: number }> {
  const socket = join(dir, `${name}.sock`);
  const p = spawn(process.execPath, [DIST('tsvsd'), '--socket', socket, '--log-level', 'warn'], { stdio: 'ignore' });
  daemons.push(p);
  for (let i = 0; i < 200; i++) {
    if (
      await info(socket).then(
        () => true,
        () => false,
      )
    )
      return { socket, pid: p.pid! };
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`tsvsd ${name} did not start`);
}

function info(socket: string): Promise<void> {
  return new Promise((res, rej) => {
    // A new connection each time, as tsvsadm makes: a kept-alive one may be closed by the
    // daemon's idle timer and reset under the next request.
    request({ socketPath: socket, path: '/v1/info', agent: false }, (r) => {
      r.resume();
      r.on('end', () => res());
    })
      .on('error', rej)
      .end();
  });
}

/** CPU time (user + system) of a process so far, in ms. */
function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

/** CPU time (user + system) of this process's finished children so far, in ms. */
function childCpuMs(): number {
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[13]) + Number(f[14])) * 10;
}

interface Times {
  wall: number[];
  /** Mean CPU time of one run (user + system), less sensitive than wall time to a busy machine. */
  cpu: number;
}

/** Runs a command `n` times: wall times in ms, sorted, and the mean CPU time. */
function times(n: number, cmd: string, args: string[], env: NodeJS.ProcessEnv, input?: string): Times {
  const wall: number[] = [];
  const cpu0 = childCpuMs();
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    const r = spawnSync(cmd, args, { env, input, stdio: [input === undefined ? 'ignore' : 'pipe', 'ignore', 'pipe'], maxBuffer: 1 << 30 });
    wall.push(performance.now() - s);
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
  }
  return { wall: wall.sort((a, b) => a - b), cpu: (childCpuMs() - cpu0) / n };
}

const fmt = (t: Times) =>
  `wall min ${t.wall[0]!.toFixed(0)} ms, median ${t.wall[t.wall.length >> 1]!.toFixed(0)} ms; CPU ${t.cpu.toFixed(0)} ms (${t.wall.length} runs)`;

function rules(addr: string, services: number, per: number, firstPort: number): string {
  let s = '';
  for (let i = 0; i < services; i++) {
    const vs = `-t ${addr}:${firstPort + i}`;
    s += `-A ${vs} -s wrr\n`;
    for (let j = 1; j <= per; j++) s += `-a ${vs} -r 127.0.1.${j}:${8000 + (i % 1000)} -m -w ${j}\n`;
  }
  return s;
}

async function main(): Promise<void> {
  console.log(
    `# tsvsadm bench: node ${process.version}, ${SERVICES} services x ${PER} servers, load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`,
  );
  const empty = join(dir, 'empty.mjs');
  writeFileSync(empty, '');

  // 1. Start-up.
  const a = await startDaemon('a');
  const envA = { ...process.env, TSVS_SOCKET: a.socket };
  console.log(`node, empty file:          ${fmt(times(RUNS * 3, process.execPath, [empty], envA))}`);
  console.log(`tsvsadm -Ln, empty table:  ${fmt(times(RUNS * 3, process.execPath, [DIST('tsvsadm'), '-Ln'], envA))}`);

  // 2. A big table.
  const text = rules('127.0.0.1', SERVICES, PER, 20000);
  console.log(
    `tsvsadm -R of ${text.split('\n').length - 1} lines: ${fmt(times(1, process.execPath, [DIST('tsvsadm'), '-R'], envA, text))}`,
  );
  for (const args of [['-Ln'], ['-Sn'], ['-Ln', '--stats'], ['-Ln', '--rate']]) {
    const before = cpuMs(a.pid);
    const t = times(RUNS, process.execPath, [DIST('tsvsadm'), ...args], envA);
    const daemonCpu = (cpuMs(a.pid) - before) / RUNS;
    console.log(`tsvsadm ${args.join(' ').padEnd(12)} ${fmt(t)}; tsvsd CPU ${daemonCpu.toFixed(0)} ms per listing`);
  }

  // 3. Another client during a 50,000-line restore.
  const b = await startDaemon('b');
  const envB = { ...process.env, TSVS_SOCKET: b.socket };
  const big = rules('127.0.0.2', 10_000, 4, 20000);
  const probes: number[] = [];
  let probeErrors = 0;
  let restoring = true;
  const probe = (async () => {
    while (restoring) {
      const s = performance.now();
      await info(b.socket).catch(() => probeErrors++);
      probes.push(performance.now() - s);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const lists: number[] = [];
  const lister = (async () => {
    while (restoring) {
      const s = performance.now();
      await new Promise<void>((r) =>
        spawn(process.execPath, [DIST('tsvsadm'), '-Ln'], { env: envB, stdio: 'ignore' }).once('exit', () => r()),
      );
      lists.push(performance.now() - s);
    }
  })();
  const s = performance.now();
  const restore = spawn(process.execPath, [DIST('tsvsadm'), '-R'], { env: envB, stdio: ['pipe', 'ignore', 'inherit'] });
  restore.stdin!.end(big);
  const code = await new Promise<number | null>((r) => restore.once('exit', r));
  const took = performance.now() - s;
  restoring = false;
  await Promise.all([probe, lister]);
  probes.sort((x, y) => x - y);
  lists.sort((x, y) => x - y);
  console.log(`50,000-line restore while another client asks: exit ${code}, ${took.toFixed(0)} ms`);
  console.log(
    `  GET /v1/info meanwhile: ${probes.length} asked, ${probeErrors} failed, median ${probes[probes.length >> 1]?.toFixed(0)} ms, max ${probes.at(-1)?.toFixed(0)} ms`,
  );
  console.log(
    `  tsvsadm -Ln meanwhile: ${lists.length} runs, median ${lists[lists.length >> 1]?.toFixed(0)} ms, max ${lists.at(-1)?.toFixed(0)} ms`,
  );
}

// Leave no daemon behind when interrupted.
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    for (const p of daemons) p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    process.exit(130);
  });
}

try {
  await main();
} finally {
  for (const p of daemons) p.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
}
