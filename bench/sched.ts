/**
 * Micro-benchmark of Scheduler.schedule() throughput: every registered scheduler with
 * 10, 100 and 1000 real servers of random-ish weights and connection counts, fed
 * rotating client addresses, ports and virtual addresses. Not a test: it prints a
 * markdown table of picks per second, and with --write also records it in
 * bench/RESULTS.md under its own heading.
 *
 *   node --import tsx bench/sched.ts [--write] [--ms=<per case>]
 */
import { cpus } from 'node:os';
import { getScheduler, schedulerNames } from '../src/schedulers/index.js';
import type { SchedInput } from '../src/core/scheduler.js';
import { FakeService, ip4, seededEnv, seededRandom } from '../test/schedulers/fake.js';
import { writeSection } from './results.js';

const SIZES = [10, 100, 1000];
const msArg = process.argv.find((a) => a.startsWith('--ms='));
const CASE_MS = msArg ? Number(msArg.slice(5)) : 350;
const WARMUP_MS = 100;

/** 4096 packets: distinct clients and ports, 64 virtual addresses (dh, lblc, lblcr hash those). */
function packets(): SchedInput[] {
  const rand = seededRandom(42);
  return Array.from({ length: 4096 }, (_, i) => ({
    caddr: ip4(0xc6120000 + (rand() & 0xffff)),
    cport: 1024 + (rand() % 64000),
    vaddr: ip4(0xc0000200 + (i % 64)),
    vport: 80,
    now: i,
  }));
}

function setup(name: string, n: number): FakeService {
  const svc = new FakeService();
  const rand = seededRandom(n);
  for (let i = 0; i < n; i++) {
    svc.add(`S${i}`, {
      weight: 1 + (rand() % 100),
      activeconns: rand() % 200,
      inactconns: rand() % 2000,
    });
  }
  svc.use(getScheduler(name)!, seededEnv(n));
  return svc;
}

/** Picks per second over about `ms` milliseconds, checking the clock every 1024 picks. */
function measure(svc: FakeService, input: SchedInput[], ms: number): number {
  const s = svc.scheduler;
  const mask = input.length - 1;
  let picks = 0;
  let sink = 0;
  const start = process.hrtime.bigint();
  const limit = BigInt(ms) * 1_000_000n;
  let elapsed = 0n;
  do {
    for (let k = 0; k < 1024; k++) {
      if (s.schedule(input[picks++ & mask]!) !== null) sink++;
    }
    elapsed = process.hrtime.bigint() - start;
  } while (elapsed < limit);
  if (sink < 0) console.log(sink); // keep the results alive
  return (picks * 1e9) / Number(elapsed);
}

function fmt(opsPerSec: number): string {
  if (opsPerSec >= 1e6) return `${(opsPerSec / 1e6).toFixed(2)} M`;
  return `${(opsPerSec / 1e3).toFixed(0)} k`;
}

const input = packets();
const rows: string[] = [];
rows.push(`| scheduler | ${SIZES.map((n) => `${n} servers`).join(' | ')} |`);
rows.push(`|---|${SIZES.map(() => '---:').join('|')}|`);
for (const name of schedulerNames()) {
  const cells: string[] = [];
  for (const n of SIZES) {
    const svc = setup(name, n);
    measure(svc, input, WARMUP_MS);
    cells.push(fmt(measure(svc, input, CASE_MS)));
  }
  rows.push(`| ${name} | ${cells.join(' | ')} |`);
  console.error(`${name} done`);
}
const table = rows.join('\n');
console.log(table);

if (process.argv.includes('--write')) {
  const cpu = cpus();
  writeSection(
    'Scheduler throughput (bench/sched.ts)',
    [
      `Command: \`node --import tsx bench/sched.ts --write\` (${CASE_MS} ms per case after ${WARMUP_MS} ms warm-up)  `,
      `Date: ${new Date().toISOString().slice(0, 10)}  `,
      `Node: ${process.version}  `,
      `Machine: ${cpu.length} cores, ${cpu[0]?.model.trim() ?? 'unknown CPU'}`,
      '',
      'Picks per second of `schedule()` (M = millions, k = thousands), single-threaded. Servers',
      'have weights 1..100 and random active/inactive counts that stay fixed during the run;',
      '4096 rotating packets with distinct client addresses and ports and 64 virtual addresses',
      '(the keys of dh, lblc and lblcr). lc, wlc, sed, ovf, fo and twos scan the whole list per',
      'pick, as in the kernel, so they scale with the number of servers; nq stops at the first',
      'idle server, so its cost depends on where that is; rr, wrr and the hash tables do not',
      'depend on the pool size (mh pays one SipHash-1-3 per pick). The machine is shared with',
      'other work, so repeated runs differ by up to about a third.',
      '',
      table,
    ].join('\n'),
  );
}
