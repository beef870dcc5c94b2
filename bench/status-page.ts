/**
 * What the dashboard and `tsvs top` cost the daemon on a big table: GET /v1/status/page
 * (totals plus one page) against GET /v1/status (every service), in process, on a table of
 * N services × 4 real servers built through the core (test/dashboard/big-table.ts). Not a
 * test: it prints milliseconds per request and response sizes.
 *
 *   node --import tsx bench/status-page.ts [--n=10000] [--runs=10]
 */
import { bigDirector } from '../test/dashboard/big-table.js';

const arg = (name: string, dflt: number) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? dflt);
const N = arg('n', 10_000);
const RUNS = arg('runs', 10);

const b = await bigDirector(N);
const cases = [
  '/v1/status/page',
  '/v1/status/page?q=198.18.4.210:',
  '/v1/status/page?filter=down,quiesced',
  '/v1/status/page?sort=rate&limit=200',
  '/v1/status/page?sort=name&offset=5000',
  '/v1/status',
];
console.log(`| request (${N} services × 4 real servers) | ms per request (median of ${RUNS}) | bytes |`);
console.log('|---|---:|---:|');
for (const path of cases) {
  const times: number[] = [];
  let bytes = 0;
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    const r = await b.app.request(path);
    bytes = (await r.text()).length;
    times.push(performance.now() - t);
  }
  times.sort((x, y) => x - y);
  console.log(`| \`${path}\` | ${times[Math.floor(times.length / 2)]!.toFixed(1)} | ${bytes} |`);
}
await b.stop();
