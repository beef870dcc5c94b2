/**
 * The long fuzz run: the properties of test/fuzz/targets/*.ts (the short run is in npm
 * test) with 10^6 inputs per target, shared out over the target's properties in the
 * proportions of their short runs (a costly property has a cap, `maxRuns`), each
 * target in its own child process, `--jobs` at a time. Prints inputs per second per
 * target, and every counterexample with the seed and path that replay it:
 *
 *   TSVS_FUZZ_SEED=<seed> TSVS_FUZZ_RUNS=<n> node --import tsx --test test/fuzz/<target>.test.ts
 *
 * Properties marked todo in the suite (a bug another branch fixes) run too and are
 * reported as known, not as crashes.
 *
 *   node --import tsx bench/fuzz.ts [--runs 1000000] [--targets ipvsadm,yaml,...] [--jobs 2]
 *        [--seed N] [--seconds S (per target: stop there and report how many ran)] [--write]
 */
import { spawn } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import fc from 'fast-check';
import type { FuzzTarget } from '../test/fuzz/fuzz.js';
import { writeSection } from './results.js';

/** Target name on the command line -> its module and export. */
const TARGETS: Record<string, () => Promise<FuzzTarget>> = {
  ipvsadm: async () => (await import('../test/fuzz/targets/ipvsadm.js')).ipvsadmTarget,
  yaml: async () => (await import('../test/fuzz/targets/yaml.js')).yamlTarget,
  keepalived: async () => (await import('../test/fuzz/targets/keepalived.js')).keepalivedTarget,
  api: async () => (await import('../test/fuzz/targets/api.js')).apiTarget,
  vrrp: async () => (await import('../test/fuzz/targets/vrrp.js')).vrrpTarget,
  sync: async () => (await import('../test/fuzz/targets/sync.js')).syncTarget,
  nfqueue: async () => (await import('../test/fuzz/targets/nfqueue.js')).nfqueueTarget,
};

interface PropertyResult {
  property: string;
  runs: number;
  ms: number;
  failed: boolean;
  known?: string;
  seed: number;
  path?: string;
  counterexample?: string;
  error?: string;
}
interface TargetResult {
  target: string;
  results: PropertyResult[];
}

const { values: opt } = parseArgs({
  options: {
    runs: { type: 'string', default: '1000000' },
    targets: { type: 'string', default: Object.keys(TARGETS).join(',') },
    jobs: { type: 'string', default: '2' },
    seed: { type: 'string', default: String(Date.now() % 2 ** 31) },
    seconds: { type: 'string' },
    write: { type: 'boolean', default: false },
    child: { type: 'string' },
  },
});

/** In a child: runs one target's properties and prints one JSON line. */
async function runChild(name: string): Promise<void> {
  const target = await TARGETS[name]!();
  const total = target.properties.reduce((n, p) => n + p.runs, 0);
  const budgetMs = opt.seconds ? Number(opt.seconds) * 1000 : undefined;
  const seed = Number(opt.seed);
  const results: PropertyResult[] = [];
  for (const p of target.properties) {
    const t0 = performance.now();
    const share = p.runs / total;
    const perProperty = Math.max(1, Math.min(p.maxRuns ?? Infinity, Math.ceil(Number(opt.runs) * share)));
    const d = await fc.check(p.property() as fc.IAsyncProperty<unknown>, {
      seed,
      numRuns: perProperty,
      ...(budgetMs ? { interruptAfterTimeLimit: Math.max(1000, budgetMs * share), markInterruptAsFailure: false } : {}),
    });
    const r: PropertyResult = { property: p.name, runs: d.numRuns, ms: performance.now() - t0, failed: d.failed, seed: d.seed };
    if (d.failed) {
      r.path = d.counterexamplePath ?? undefined;
      r.counterexample = fc.stringify(d.counterexample).slice(0, 2000);
      r.error = String((d.errorInstance as Error | undefined)?.message ?? d.errorInstance).slice(0, 2000);
      if (p.todo) r.known = p.todo;
    }
    results.push(r);
    process.stderr.write(`# ${name}: ${p.name}: ${d.numRuns} inputs in ${(r.ms / 1000).toFixed(1)} s${d.failed ? ' FAILED' : ''}\n`);
  }
  process.stdout.write(`${JSON.stringify({ target: name, results } satisfies TargetResult)}\n`);
}

function runTarget(name: string): Promise<TargetResult> {
  return new Promise((resolve, reject) => {
    const args = ['--import', 'tsx', import.meta.filename, '--child', name, '--runs', opt.runs!, '--seed', opt.seed!];
    if (opt.seconds) args.push('--seconds', opt.seconds);
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.on('exit', (code, signal) => {
      const line = out.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(line) as TargetResult);
      } catch {
        reject(new Error(`target ${name}: the child exited ${code ?? signal} without a result (a crash outside the properties?)`));
      }
    });
  });
}

async function main(): Promise<void> {
  if (opt.child) return runChild(opt.child);
  const names = opt.targets!.split(',').filter(Boolean);
  for (const n of names) if (!TARGETS[n]) throw new Error(`unknown target ${n}: one of ${Object.keys(TARGETS).join(', ')}`);
  const started = new Date();
  const load = loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
  const queue = [...names];
  const done: TargetResult[] = [];
  const worker = async () => {
    for (let n = queue.shift(); n; n = queue.shift()) done.push(await runTarget(n));
  };
  await Promise.all(Array.from({ length: Math.max(1, Number(opt.jobs)) }, worker));
  done.sort((a, b) => names.indexOf(a.target) - names.indexOf(b.target));

  const rows: string[] = [];
  const problems: string[] = [];
  let crashes = 0;
  for (const t of done) {
    const runs = t.results.reduce((n, r) => n + r.runs, 0);
    const ms = t.results.reduce((n, r) => n + r.ms, 0);
    const failed = t.results.filter((r) => r.failed && !r.known);
    const known = t.results.filter((r) => r.failed && r.known);
    crashes += failed.length;
    rows.push(
      `| ${t.target.padEnd(10)} | ${runs.toLocaleString('en-US').padStart(9)} | ${(ms / 1000).toFixed(0).padStart(5)} | ${Math.round(
        (runs * 1000) / ms,
      )
        .toLocaleString('en-US')
        .padStart(
          8,
        )} | ${failed.length ? `**${failed.length} failed**` : '0'}${known.length ? ` (+${known.length} known: ${known.map((k) => k.known).join('; ')})` : ''} |`,
    );
    for (const r of [...failed, ...known]) {
      problems.push(
        `- ${t.target}: ${r.property}${r.known ? ` (known: ${r.known})` : ''}: seed ${r.seed}, path "${r.path}"\n  counterexample ${r.counterexample}\n  ${r.error?.split('\n')[0]}`,
      );
    }
  }
  const table = [
    '| target     |    inputs |     s | inputs/s | failures |',
    '| ---------- | --------: | ----: | -------: | -------- |',
    ...rows,
  ].join('\n');
  const cmd = `node --import tsx bench/fuzz.ts --runs ${opt.runs} --targets ${names.join(',')} --jobs ${opt.jobs} --seed ${opt.seed}${opt.seconds ? ` --seconds ${opt.seconds}` : ''}`;
  const report = `Command: \`${cmd}\`
(${started.toISOString().slice(0, 10)}, Node ${process.version}, ${cpus().length} cores shared with other work; load average at the start: ${load}).
Each target runs in its own process, ${opt.jobs} at a time; its inputs are shared out over its properties as in the short run (costly ones capped)${opt.seconds ? `, and each target stops after ${opt.seconds} s (the inputs column says how many ran)` : ''}.
Replay a counterexample with \`TSVS_FUZZ_SEED=<seed> node --import tsx --test test/fuzz/<target>.test.ts\` (fast-check's path in the line narrows it down).

${table}

${problems.length ? `Counterexamples:\n${problems.join('\n')}` : 'No counterexample.'}
`;
  process.stdout.write(`${report}\n`);
  if (opt.write) writeSection('Fuzz (bench/fuzz.ts)', report);
  process.exitCode = crashes ? 1 : 0;
}

await main();
