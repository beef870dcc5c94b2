/**
 * What saving one change costs with a large table: N services × 4 real servers, one
 * edit-server at a time. "whole file" is what tsvsd did before the journal (table.config(),
 * JSON, write + fsync + rename + directory fsync of the whole table per change, as
 * StateStore.save did); "journal" is StateStore.record (one line + fdatasync). Also: a
 * burst of concurrent changes (group commit), a compaction's snapshot, and a load
 * (snapshot + journal replay). Not a test: prints a markdown table, and with --write
 * records it in bench/RESULTS.md.
 *
 *   node --import tsx bench/state.ts [--services=10000] [--write] [--dir=PATH]
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { IpvsTable } from '../src/core/table.js';
import { getScheduler } from '../src/schedulers/index.js';
import type { DestConfig, Op, ServiceConfig } from '../src/core/types.js';
import { StateStore, writeFileAtomic } from '../src/daemon/state.js';
import { writeSection } from './results.js';

const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const N = Number(arg('services') ?? 10000);
const WHOLE_RUNS = 15;
const JOURNAL_RUNS = 200;
const BURST = 1000;

const svc = (i: number): ServiceConfig => ({
  af: 4,
  protocol: 'tcp',
  addr: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
  port: 80,
  fwmark: 0,
  scheduler: 'wrr',
  schedFlags: 0,
  persistent: 0,
  netmask: 0xffffffff,
  ops: false,
  pe: '',
});
const dest = (j: number, weight: number): DestConfig => ({
  af: 4,
  addr: `192.168.0.${j + 1}`,
  port: 8080,
  weight,
  fwd: 'masq',
  uThreshold: 0,
  lThreshold: 0,
});

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}
const ms = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));

async function main(): Promise<void> {
  const dir = arg('dir') ?? mkdtempSync(join(tmpdir(), 'tsvs-bench-state-'));
  const table = new IpvsTable({ schedulers: getScheduler });
  const build: Op[] = [];
  for (let i = 0; i < N; i++) {
    build.push({ op: 'add-service', service: svc(i) });
    for (let j = 0; j < 4; j++) build.push({ op: 'add-server', service: svc(i), dest: dest(j, 1) });
  }
  table.applyAll(build);
  let w = 1;
  const change = (): Op[] => {
    const ops = table.validate([{ op: 'edit-server', service: svc(w % N), dest: dest(0, 1 + (w++ % 100)) }]);
    table.applyAll(ops);
    return ops;
  };
  const rows: string[][] = [];
  try {
    // Before: the whole table per change.
    const oldPath = join(dir, 'old.json');
    const whole: number[] = [];
    for (let k = 0; k < WHOLE_RUNS; k++) {
      change();
      const t0 = performance.now();
      const body = { format: 'tsvs-state', version: 1, savedAt: new Date().toISOString(), table: table.config() };
      await writeFileAtomic(oldPath, `${JSON.stringify(body, null, 2)}\n`);
      whole.push(performance.now() - t0);
    }
    const oldSize = statSync(oldPath).size;
    rows.push([
      'whole file per change (before)',
      ms(quantile(whole, 0.5)),
      ms(quantile(whole, 0.9)),
      `${(oldSize / 1e6).toFixed(1)} MB written per change`,
    ]);

    // After: one journal line per change.
    const path = join(dir, 'state.json');
    const store = new StateStore(path);
    let t0 = performance.now();
    await store.open(() => table.config());
    const openMs = performance.now() - t0;
    const snapSize = statSync(path).size;
    const one: number[] = [];
    const j0 = statSync(`${path}.journal`).size;
    for (let k = 0; k < JOURNAL_RUNS; k++) {
      const ops = change();
      const t = performance.now();
      await store.record(ops);
      one.push(performance.now() - t);
    }
    const perRecord = (statSync(`${path}.journal`).size - j0) / JOURNAL_RUNS;
    rows.push([
      'journal, one change at a time (after)',
      ms(quantile(one, 0.5)),
      ms(quantile(one, 0.9)),
      `${perRecord.toFixed(0)} bytes written per change`,
    ]);

    // The table's own check of each batch is not timed: apply them all, then record them at once.
    const burst = Array.from({ length: BURST }, () => change());
    t0 = performance.now();
    await Promise.all(burst.map((ops) => store.record(ops)));
    const burstMs = performance.now() - t0;
    rows.push([
      `journal, ${BURST} concurrent changes (group commit)`,
      ms(burstMs / BURST),
      '',
      `all ${BURST} durable in ${ms(burstMs)} ms`,
    ]);
    rows.push([
      'snapshot of the whole table (start, stop, compaction)',
      ms(openMs),
      '',
      `${(snapSize / 1e6).toFixed(1)} MB; a compaction writes it beside the running journal`,
    ]);
    // What a compaction does in one tick (the JSON is built a few hundred services per tick, and the rest is I/O).
    t0 = performance.now();
    table.config();
    rows.push([
      'compaction: its longest stall of the event loop (table.config())',
      ms(performance.now() - t0),
      '',
      `once per ~${(snapSize / perRecord / 1000).toFixed(0)}k changes of this size`,
    ]);
    // As a kill -9 would leave them (close() folds the journal into the snapshot).
    mkdirSync(join(dir, 'crashed'));
    copyFileSync(path, join(dir, 'crashed', 'state.json'));
    copyFileSync(`${path}.journal`, join(dir, 'crashed', 'state.json.journal'));
    await store.close();

    t0 = performance.now();
    let loaded = await new StateStore(join(dir, 'crashed', 'state.json')).load();
    rows.push([
      `load after a crash: snapshot + ${JOURNAL_RUNS + BURST} journal records`,
      ms(performance.now() - t0),
      '',
      `${loaded!.services.length} services; the replay builds a table`,
    ]);
    t0 = performance.now();
    loaded = await new StateStore(path).load();
    rows.push(['load after a clean stop: snapshot alone', ms(performance.now() - t0), '', `${loaded!.services.length} services`]);
  } finally {
    if (!arg('dir')) rmSync(dir, { recursive: true, force: true });
  }

  const body = [
    `Command: \`node --import tsx bench/state.ts --services=${N}${process.argv.includes('--write') ? ' --write' : ''}\`  `,
    `Date: ${new Date().toISOString().slice(0, 10)}  `,
    `Node: ${process.version}  `,
    `Machine: ${cpus().length} cores, ${cpus()[0]?.model.trim() ?? 'unknown'}; state files in ${arg('dir') ? 'the --dir given' : tmpdir()}`,
    '',
    `${N} services × 4 real servers; each change is one edit-server. Times are for saving the change only`,
    '(the table update itself is not included), in milliseconds. The machine is shared, so runs vary.',
    '',
    '| what | median ms | p90 ms | notes |',
    '|---|---:|---:|---|',
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
  process.stdout.write(`${body}\n`);
  if (process.argv.includes('--write')) writeSection('Saving a change to the state file (bench/state.ts)', body);
}

await main();
