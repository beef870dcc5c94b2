/**
 * tsvs on the netns lab against its peers, in one run (root): wrk in the client namespace,
 * everything balancing over the lab's two nginx real servers, all through the same
 * director namespace:
 *
 *   direct        client -> 198.19.0.11:80, routed by the director (no balancer, no NAT)
 *   tsvs nftables, one real server: VIP 198.18.0.1:81 -> 198.19.0.11:80 only, so the ratio
 *                 to direct is the cost of the DNAT path itself (same server, same route)
 *   tsvs nftables VIP 198.18.0.1:80, kernel DNAT (tsvsd --dataplane nftables), rr
 *   tsvs userspace VIP 198.18.0.1:8080, a second tsvsd with --dataplane userspace, rr
 *   haproxy       198.18.0.1:8081, mode tcp, 1 thread, roundrobin
 *   nginx stream  198.18.0.1:8082, 1 worker
 *
 *   node --import tsx bench/lab.ts [--duration 5] [--rounds 3] [--conns 64] [--no-write]
 *
 * Keep-alive and `Connection: close`; median of interleaved rounds; conntrack is flushed
 * in the director before every run so new-connection runs start from the same table.
 * Writes a section of bench/RESULTS.md with the ratios to direct and to haproxy.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { HttpControlClient } from '../src/api/client.js';
import type { Op, ServiceConfig } from '../src/core/types.js';
import { labDown, labUp, nsRun, REAL_ADDRS, toolCommand, VIP_ADDR, type LabNames } from '../src/lab/lab.js';
import { writeSection } from './results.js';
import { measure, need as needCmd, wrk as runWrk } from './wrk.js';

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    conns: { type: 'string', default: '64' },
    suffix: { type: 'string', default: 'bench' },
    'no-write': { type: 'boolean', default: false },
  },
});
const DURATION = Number(values.duration);
const ROUNDS = Number(values.rounds);
const CONNS = Number(values.conns);

const need = (cmd: string) => needCmd(cmd, 'wrk haproxy nginx-light libnginx-mod-stream conntrack');
const wrk = (lab: LabNames, url: string, close: boolean) =>
  runWrk({ url, close, conns: CONNS, durationS: DURATION, netns: lab.client });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function rrService(port: number): ServiceConfig {
  return { af: 4, protocol: 'tcp', addr: VIP_ADDR, port, fwmark: 0, scheduler: 'rr', schedFlags: 0, persistent: 0, netmask: 0xffffffff, ops: false, pe: '' };
}
function rrOps(port: number, reals: readonly string[] = REAL_ADDRS): Op[] {
  const svc = rrService(port);
  return [
    { op: 'add-service', service: svc },
    ...reals.map((addr) => ({ op: 'add-server' as const, service: svc, dest: { af: 4 as const, addr, port: 80, weight: 1, fwd: 'masq' as const, uThreshold: 0, lThreshold: 0 } })),
  ];
}

async function waitApi(client: HttpControlClient): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await client.info();
      return;
    } catch (e) {
      if (i > 300) throw e;
      await sleep(50);
    }
  }
}

async function main(): Promise<void> {
  for (const c of ['wrk', 'nginx', 'haproxy', 'conntrack']) need(c);
  const lab = await labUp({ suffix: values.suffix!, tsvsdArgs: ['--log-level', 'warn'] });
  const procs: ChildProcess[] = [];
  const inDirector = (cmd: string, args: string[]) => {
    const p = spawn('ip', ['netns', 'exec', lab.director, cmd, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
    procs.push(p);
    return p;
  };
  try {
    const [rs1, rs2] = REAL_ADDRS;
    writeFileSync(
      join(lab.dir, 'lb-nginx.conf'),
      `daemon off; worker_processes 1; pid ${lab.dir}/lb-nginx.pid; error_log ${lab.dir}/lb-nginx.err warn;
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
events { worker_connections 16384; }
stream { upstream rs { server ${rs1}:80; server ${rs2}:80; }
  server { listen ${VIP_ADDR}:8082; proxy_pass rs; } }
`,
    );
    writeFileSync(
      join(lab.dir, 'haproxy.cfg'),
      `global
  nbthread 1
  maxconn 9000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend fe
  bind ${VIP_ADDR}:8081
  default_backend rs
backend rs
  balance roundrobin
  server rs1 ${rs1}:80
  server rs2 ${rs2}:80
`,
    );
    inDirector('nginx', ['-c', join(lab.dir, 'lb-nginx.conf'), '-p', lab.dir]);
    inDirector('haproxy', ['-f', join(lab.dir, 'haproxy.cfg'), '-db']);
    const usSock = join(lab.dir, 'userspace.sock');
    const [tsvsd, ...pre] = toolCommand('tsvsd');
    inDirector(tsvsd!, [...pre, '--dataplane', 'userspace', '--socket', usSock, '--log-level', 'warn']);

    const nft = new HttpControlClient({ socketPath: lab.socket });
    const us = new HttpControlClient({ socketPath: usSock });
    await waitApi(us);
    await nft.apply(rrOps(80));
    await nft.apply(rrOps(81, [REAL_ADDRS[0]]));
    await us.apply(rrOps(8080));
    await sleep(500);

    const variants: Array<[string, string]> = [
      ['direct (one real server, routed)', `http://${rs1}/bench.html`],
      ['tsvs nftables, one real server (DNAT cost)', `http://${VIP_ADDR}:81/bench.html`],
      ['tsvs nftables (kernel DNAT, rr)', `http://${VIP_ADDR}/bench.html`],
      ['tsvs userspace (rr)', `http://${VIP_ADDR}:8080/bench.html`],
      ['haproxy (tcp, 1 thread)', `http://${VIP_ADDR}:8081/bench.html`],
      ['nginx stream (1 worker)', `http://${VIP_ADDR}:8082/bench.html`],
    ];
    const table = measure(
      variants.map(([name, url]) => ({
        name,
        run: (close: boolean) => {
          // Every run starts from an empty connection table.
          nsRun(lab.director, 'conntrack', ['-F'], { allowFail: true });
          return wrk(lab, url, close);
        },
      })),
      ROUNDS,
      variants[0]![0],
      'haproxy (tcp, 1 thread)',
    );
    const body = `Command: \`node --import tsx bench/lab.ts --duration ${DURATION} --rounds ${ROUNDS} --conns ${CONNS}\` (root)
(${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${cpus().length} cores shared by wrk, the director and the real servers).
The netns lab (\`tsvs lab\`): wrk -t2 -c${CONNS} -d${DURATION}s from the client namespace, 600-byte page, two nginx real
servers (1 worker each) routed through the director namespace; median of ${ROUNDS} interleaved rounds; conntrack flushed
before every run. tsvs nftables reads counters and conntrack back once a second during the runs, as in production.
"direct" and "one real server" use one nginx; the rr variants spread over two (so they can exceed direct on 2 cores).
${process.env.TSVS_BENCH_NOTE ?? ''}

${table}`;
    process.stdout.write(`${table}\n`);
    if (!values['no-write']) writeSection('nftables data plane on the netns lab (bench/lab.ts)', body);
  } finally {
    for (const p of procs) if (p.exitCode === null && p.pid) p.kill('SIGTERM');
    await sleep(300);
    labDown(lab.suffix);
  }
}

await main();
