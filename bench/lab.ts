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
 * With `--mode first-packet`: the cost of the nftables plane's first-packet path (NFQUEUE
 * to tsvsd for lc/wlc/...) against pure-kernel rr and direct, on one and on two servers:
 *
 *   direct                      client -> 198.19.0.11:80
 *   nftables rr,  one server    VIP:81 -> .11      nftables wlc, one server   VIP:84 -> .11
 *   nftables rr,  two servers   VIP:80 -> .11 .12  nftables wlc, two servers  VIP:83 -> .11 .12
 *
 * and how many new connections missed the decision bound (the round-robin fallback took
 * them), from tsvsd's log.
 *
 * Keep-alive and `Connection: close`; median of interleaved rounds; conntrack is flushed
 * in the director before every run so new-connection runs start from the same table.
 * Writes a section of bench/RESULTS.md with the ratios to direct and to haproxy.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { HttpControlClient } from '../src/api/client.js';
import type { Op, ServiceConfig } from '../src/core/types.js';
import { labDown, labUp, nsRun, REAL_ADDRS, toolCommand, VIP_ADDR, type LabNames } from '../src/lab/lab.js';
import { writeSection } from './results.js';
import { measure, median, need as needCmd, wrk as runWrk, type WrkResult } from './wrk.js';

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    conns: { type: 'string', default: '64' },
    suffix: { type: 'string', default: 'bench' },
    'no-write': { type: 'boolean', default: false },
    mode: { type: 'string', default: 'peers' },
  },
});
const DURATION = Number(values.duration);
const ROUNDS = Number(values.rounds);
const CONNS = Number(values.conns);

const need = (cmd: string) => needCmd(cmd, 'wrk haproxy nginx-light libnginx-mod-stream conntrack');
const wrk = (lab: LabNames, url: string, close: boolean) => runWrk({ url, close, conns: CONNS, durationS: DURATION, netns: lab.client });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function rrService(port: number, scheduler = 'rr'): ServiceConfig {
  return {
    af: 4,
    protocol: 'tcp',
    addr: VIP_ADDR,
    port,
    fwmark: 0,
    scheduler,
    schedFlags: 0,
    persistent: 0,
    netmask: 0xffffffff,
    ops: false,
    pe: '',
  };
}
function rrOps(port: number, reals: readonly string[] = REAL_ADDRS, scheduler = 'rr'): Op[] {
  const svc = rrService(port, scheduler);
  return [
    { op: 'add-service', service: svc },
    ...reals.map((addr) => ({
      op: 'add-server' as const,
      service: svc,
      dest: { af: 4 as const, addr, port: 80, weight: 1, fwd: 'masq' as const, uThreshold: 0, lThreshold: 0 },
    })),
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

/** Medians of interleaved rounds with ratios to direct and to pure-kernel rr (same server set). */
function firstPacketTable(variants: Array<{ name: string; base: string; run: (close: boolean) => WrkResult }>, direct: string): string {
  const t = new Map(variants.map((v) => [v.name, { ka: [] as number[], close: [] as number[], errors: 0 }]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const v of variants) {
      for (const close of [false, true]) {
        const r = v.run(close);
        const x = t.get(v.name)!;
        (close ? x.close : x.ka).push(r.rps);
        x.errors += r.errors;
        process.stderr.write(
          `round ${round + 1} ${v.name} ${close ? 'close' : 'keep-alive'}: ${r.rps.toFixed(0)} req/s${r.errors ? `, ${r.errors} errors` : ''}\n`,
        );
      }
    }
  }
  const med = (name: string, k: 'ka' | 'close') => median(t.get(name)![k]);
  const ratio = (name: string, base: string, k: 'ka' | 'close') => `${(med(name, k) / med(base, k)).toFixed(2)}x`;
  return [
    '| variant | keep-alive req/s | vs direct | vs nftables rr | `Connection: close` req/s | vs direct | vs nftables rr | errors |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    ...variants.map(
      (v) =>
        `| ${v.name} | ${med(v.name, 'ka').toFixed(0)} | ${ratio(v.name, direct, 'ka')} | ${ratio(v.name, v.base, 'ka')} | ${med(v.name, 'close').toFixed(0)} | ${ratio(v.name, direct, 'close')} | ${ratio(v.name, v.base, 'close')} | ${t.get(v.name)!.errors} |`,
    ),
  ].join('\n');
}

async function firstPacket(): Promise<void> {
  for (const c of ['wrk', 'nginx', 'conntrack']) need(c);
  // info level: tsvsd logs how many new connections missed the decision bound.
  const load = loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
  const lab = await labUp({ suffix: values.suffix!, tsvsdArgs: ['--log-level', 'info'] });
  try {
    const [rs1] = REAL_ADDRS;
    const nft = new HttpControlClient({ socketPath: lab.socket });
    await nft.apply(rrOps(80));
    await nft.apply(rrOps(81, [rs1!]));
    await nft.apply(rrOps(83, REAL_ADDRS, 'wlc'));
    await nft.apply(rrOps(84, [rs1!], 'wlc'));
    await sleep(500);
    const direct = 'direct (one real server, routed)';
    const rr1 = 'nftables rr, one server (pure kernel)';
    const rr2 = 'nftables rr, two servers (pure kernel)';
    // Every variant reaches the same real servers' port 80 through a different VIP port,
    // so one variant's client ports would collide with another's TIME_WAIT sockets on the
    // real servers (a new SYN with an unrelated sequence number is not accepted there, and
    // the client waits for its 1 s retransmission). Disjoint client port ranges avoid that.
    let nextRange = 0;
    const run = (url: string) => {
      const lo = 10000 + 10000 * nextRange++;
      return (close: boolean) => {
        nsRun(lab.client, 'sysctl', ['-qw', `net.ipv4.ip_local_port_range=${lo} ${lo + 9999}`]);
        nsRun(lab.director, 'conntrack', ['-F'], { allowFail: true });
        return wrk(lab, url, close);
      };
    };
    const table = firstPacketTable(
      [
        { name: direct, base: direct, run: run(`http://${rs1}/bench.html`) },
        { name: rr1, base: rr1, run: run(`http://${VIP_ADDR}:81/bench.html`) },
        { name: 'nftables wlc, one server (first-packet path)', base: rr1, run: run(`http://${VIP_ADDR}:84/bench.html`) },
        { name: rr2, base: rr2, run: run(`http://${VIP_ADDR}:80/bench.html`) },
        { name: 'nftables wlc, two servers (first-packet path)', base: rr2, run: run(`http://${VIP_ADDR}:83/bench.html`) },
      ],
      direct,
    );
    let late = 0;
    let queued = 0;
    try {
      for (const l of readFileSync(join(lab.dir, 'tsvsd.log'), 'utf8').split('\n')) {
        const m = /(\d+) of (\d+) new connections were not scheduled/.exec(l);
        if (m) late += Number(m[1]);
      }
    } catch {
      /* no log */
    }
    // tsvsadm, as an operator would read it (Conns of the two wlc services); n/a if that fails.
    let queuedText = 'n/a';
    {
      const [adm, ...pre] = toolCommand('tsvsadm');
      const r = spawnSync(adm!, [...pre, '-Ln', '--stats'], {
        env: { ...process.env, TSVS_SOCKET: lab.socket },
        encoding: 'utf8',
        timeout: 20_000,
      });
      for (const l of r.stdout?.split('\n') ?? []) {
        const m = /^TCP\s+\S+:(83|84)\s+(\d+)/.exec(l);
        if (m) queued += Number(m[2]);
      }
      if (r.status === 0) queuedText = String(queued);
      else process.stderr.write(`tsvsadm -Ln --stats failed: ${r.stderr}\n`);
    }
    const body = `Command: \`node --import tsx bench/lab.ts --mode first-packet --duration ${DURATION} --rounds ${ROUNDS} --conns ${CONNS}\` (root)
(${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${cpus().length} cores shared by wrk, the director with tsvsd and the real servers;
load average at the start: ${load}, other work shares these cores: read the same-run ratios).
Same lab and method as the section above (wrk -t2 -c${CONNS} -d${DURATION}s, median of ${ROUNDS} interleaved rounds, conntrack flushed
before every run). "wlc" takes the first-packet path: each new connection's first packet goes through NFQUEUE to tsvsd's
reader thread, the core's wlc picks the server, and the verdict's mark selects it in the kernel; later packets stay in
the kernel. "vs nftables rr" compares with pure-kernel rr over the same servers. Each variant uses its own range of
client ports, so that it does not collide with another variant's TIME_WAIT sockets on the real servers. New connections to the wlc services
during the run: ${queuedText}; of them ${late} missed the decision bound (200 ms) and went to the kernel's round-robin fallback.
${process.env.TSVS_BENCH_NOTE ?? ''}

${table}`;
    process.stdout.write(`${table}\nwlc connections ${queuedText}, missed the bound ${late}\n`);
    if (!values['no-write'])
      writeSection('nftables first-packet path (lc/wlc/...) on the netns lab (bench/lab.ts --mode first-packet)', body);
  } finally {
    labDown(lab.suffix);
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

if (values.mode === 'first-packet') await firstPacket();
else if (values.mode === 'peers') await main();
else throw new Error(`--mode ${values.mode}: expected peers or first-packet`);
