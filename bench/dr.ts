/**
 * Direct routing against NAT and against no balancer, in one run on the DR lab (root;
 * `tsvs lab up --mode dr`): wrk in the client namespace, everything through the same
 * router, the same two nginx real servers:
 *
 *   direct          client -> 198.19.0.11:80 (router, no balancer)
 *   tsvs DR (-g)    VIP 198.19.0.100:80, rr over both; netdev ingress `fwd`, replies bypass the director
 *   tsvs NAT (-m)   VIP 198.19.0.100:8080 -> RIP:8080, rr over both; kernel DNAT, replies back via the director
 *
 *   node --import tsx bench/dr.ts [--duration 3] [--rounds 5] [--conns 64] [--no-write]
 *
 * Keep-alive and `Connection: close`; median of interleaved rounds; the director's
 * conntrack is flushed before every run. Writes a section of bench/RESULTS.md with the
 * ratios to direct and to NAT. Bounded: rounds x variants x 2 runs of --duration seconds.
 */
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { HttpControlClient } from '../src/api/client.js';
import type { Op, ServiceConfig } from '../src/core/types.js';
import { DR_NAT_PORT, DR_VIP_ADDR, labDown, labUp, nsRun, REAL_ADDRS } from '../src/lab/lab.js';
import { writeSection } from './results.js';
import { measure, need, wrk } from './wrk.js';

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '5' },
    conns: { type: 'string', default: '64' },
    suffix: { type: 'string', default: 'drb' },
    'no-write': { type: 'boolean', default: false },
  },
});
const DURATION = Math.min(30, Number(values.duration));
const ROUNDS = Math.min(15, Number(values.rounds));
const CONNS = Math.min(1000, Number(values.conns));

function service(port: number): ServiceConfig {
  return {
    af: 4,
    protocol: 'tcp',
    addr: DR_VIP_ADDR,
    port,
    fwmark: 0,
    scheduler: 'rr',
    schedFlags: 0,
    persistent: 0,
    netmask: 0xffffffff,
    ops: false,
    pe: '',
  };
}
function ops(port: number, rport: number, fwd: 'route' | 'masq'): Op[] {
  const svc = service(port);
  return [
    { op: 'add-service', service: svc },
    ...REAL_ADDRS.map((addr) => ({
      op: 'add-server' as const,
      service: svc,
      dest: { af: 4 as const, addr, port: rport, weight: 1, fwd, uThreshold: 0, lThreshold: 0 },
    })),
  ];
}

async function main(): Promise<void> {
  for (const c of ['wrk', 'nginx', 'conntrack']) need(c, 'wrk nginx-light conntrack');
  const load = loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
  const lab = await labUp({ suffix: values.suffix!, mode: 'dr', tsvsdArgs: ['--log-level', 'warn'] });
  try {
    const api = new HttpControlClient({ socketPath: lab.socket });
    await api.apply([...ops(80, 80, 'route'), ...ops(DR_NAT_PORT, DR_NAT_PORT, 'masq')]);
    const variants: Array<[string, string]> = [
      ['direct (one real server, via the router)', `http://${REAL_ADDRS[0]}/bench.html`],
      ['tsvs DR (-g, netdev fwd, rr over 2)', `http://${DR_VIP_ADDR}/bench.html`],
      ['tsvs NAT (-m, kernel DNAT, rr over 2)', `http://${DR_VIP_ADDR}:${DR_NAT_PORT}/bench.html`],
    ];
    const table = measure(
      variants.map(([name, url]) => ({
        name,
        run: (close: boolean) => {
          nsRun(lab.director, 'conntrack', ['-F'], { allowFail: true });
          return wrk({ url, close, conns: CONNS, durationS: DURATION, netns: lab.client });
        },
      })),
      ROUNDS,
      variants[0]![0],
      variants[2]![0],
    ).replaceAll('vs haproxy', 'vs NAT');
    const body = `Command: \`node --import tsx bench/dr.ts --duration ${DURATION} --rounds ${ROUNDS} --conns ${CONNS}\` (root)
(${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${cpus().length} cores shared by wrk, the router, the director and the real servers;
load average at the start: ${load}).
The DR lab (\`tsvs lab up --mode dr\`): wrk -t2 -c${CONNS} -d${DURATION}s from the client namespace through a router namespace to
one LAN with the director and two nginx real servers (1 worker each), 600-byte page; median of ${ROUNDS} interleaved rounds;
conntrack flushed in the director before every run. DR and NAT are services of the same tsvsd (--dataplane nftables) on the
same VIP (ports 80 and ${DR_NAT_PORT}); NAT replies come back through the director (policy routing on the real servers), DR
replies go from the real servers to the router. "direct" uses one nginx, the tsvs variants two.
${process.env.TSVS_BENCH_NOTE ?? ''}

${table}`;
    process.stdout.write(`${table}\n`);
    if (!values['no-write']) writeSection('Direct routing vs NAT on the DR lab (bench/dr.ts)', body);
  } finally {
    labDown(lab.suffix);
  }
}

await main();
