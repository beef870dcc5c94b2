/**
 * Cost of one change on a large table: validate + preview of a one-server edit, against
 * a table of N services with 4 wrr servers each (the shape of DESIGN.md's control-plane
 * scale test). Prints microseconds per change, median of many runs.
 *
 *   node --import tsx bench/preview.ts [N]
 */
import { IpvsTable } from '../src/core/table.js';
import { getScheduler } from '../src/schedulers/index.js';
import type { Op } from '../src/core/types.js';

const N = Number(process.argv[2] ?? 10_000);
const table = new IpvsTable({ schedulers: getScheduler });
const ops: Op[] = [];
const svcOf = (i: number) => ({
  af: 4 as const,
  protocol: 'tcp' as const,
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
const destOf = (j: number, weight = 1) => ({
  af: 4 as const,
  addr: `198.19.0.${j}`,
  port: 80,
  weight,
  fwd: 'masq' as const,
  uThreshold: 0,
  lThreshold: 0,
});
for (let i = 0; i < N; i++) {
  ops.push({ op: 'add-service', service: svcOf(i) });
  for (let j = 1; j <= 4; j++) ops.push({ op: 'add-server', service: svcOf(i), dest: destOf(j) });
}
let t = performance.now();
table.applyAll(ops);
const loadMs = performance.now() - t;

const samples: number[] = [];
for (let k = 0; k < 2000; k++) {
  const i = k % N;
  t = performance.now();
  const checked = table.validate([{ op: 'edit-server', service: svcOf(i), dest: destOf(1 + (k % 4), 1 + (k % 7)) }]);
  const p = table.preview(checked);
  samples.push(performance.now() - t);
  if (p.services.size !== 1) throw new Error('preview touched more than one service');
}
samples.sort((a, b) => a - b);
console.log(
  JSON.stringify({
    services: N,
    servers: N * 4,
    loadMs: Math.round(loadMs),
    validatePlusPreviewUsMedian: Math.round(samples[samples.length >> 1]! * 1000),
    p99Us: Math.round(samples[Math.floor(samples.length * 0.99)]! * 1000),
  }),
);
