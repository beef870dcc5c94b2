/**
 * What a pathological config reload costs the traffic: a real tsvsd (userspace plane) serves
 * a VIP on loopback; a prober opens a new connection to it every 10 ms and times each HTTP
 * request; then the config is rewritten into a pathological one and reloaded (POST
 * /v1/reload), and the bench reports the reload's time and the VIP's latency during it.
 *
 *   node --import tsx bench/config-reload.ts [--root DIR] [--case fanout4|fanout5|fifo|big|all]
 *
 * --root: the checkout whose dist/bin/tsvsd.js runs (default this one; build it first with
 * `npx tsc -p tsconfig.build.json`), so that a before/after pair is two runs.
 * Cases: fanout4/fanout5: the file includes itself 4/5 times per level (issue #13 item 1);
 * fifo: an `include` of a FIFO that the bench writes a newline into after 5 s (so that a
 * daemon blocked on it comes back); big: 4,000 virtual servers (about 3 MB) in
 * included files, a large legitimate config; bigbad: the same with one error at the end
 * (refused after a full parse, so only reading counts). Every run is bounded: 60 s per case at most.
 */
import { spawn, execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { root: { type: 'string' }, case: { type: 'string' } } });
const ROOT = resolve(values.root ?? join(import.meta.dirname, '..'));
const CASES = values.case && values.case !== 'all' ? [values.case] : ['fanout4', 'fanout5', 'fifo', 'bigbad', 'big'];
const CASE_MS = 60_000;

const base = (vport: number, rport: number) => `virtual_server 127.0.0.1 ${vport} {
  lb_algo rr
  lb_kind NAT
  protocol TCP
  real_server 127.0.0.1 ${rport} {
    weight 1
  }
}
`;

function pathological(kind: string, dir: string, conf: string, vport: number, rport: number): void {
  if (kind === 'fanout4' || kind === 'fanout5') {
    const n = kind === 'fanout4' ? 4 : 5;
    writeFileSync(conf, `${base(vport, rport)}${'include keepalived.conf\n'.repeat(n)}`);
  } else if (kind === 'fifo') {
    execFileSync('mkfifo', [join(dir, 'pipe.conf')]);
    writeFileSync(conf, `${base(vport, rport)}include pipe.conf\n`);
  } else if (kind === 'big' || kind === 'bigbad') {
    const parts: string[] = [];
    for (let f = 0; f < 40; f++) {
      let t = '';
      for (let i = 0; i < 100; i++) {
        const k = f * 100 + i;
        t += `virtual_server 127.1.${(k >> 8) & 255}.${k & 255} 80 {\n  lb_algo wlc\n  lb_kind NAT\n  protocol TCP\n`;
        for (let r = 1; r <= 4; r++)
          t += `  real_server 127.2.${k & 255}.${r} 80 {\n    weight 1\n    TCP_CHECK {\n      connect_timeout 3\n    }\n  }\n`;
        t += '}\n';
      }
      writeFileSync(join(dir, `vs${String(f).padStart(2, '0')}.conf`), t);
      parts.push(`vs${String(f).padStart(2, '0')}.conf`);
    }
    // bigbad: the same files and one error at the end, so the reload is refused after a full parse (no apply).
    writeFileSync(conf, `${base(vport, rport)}include vs*.conf\n${kind === 'bigbad' ? 'virtual_server 127.0.0.1\n' : ''}`);
  } else throw new Error(`unknown case ${kind}`);
}

const free = (s: Server) => (s.address() as AddressInfo).port;

function get(port: number): Promise<number> {
  const t0 = performance.now();
  return new Promise((res) => {
    const r = request({ host: '127.0.0.1', port, path: '/', agent: false, timeout: 30_000 }, (x) => {
      x.resume();
      x.on('end', () => res(performance.now() - t0));
    });
    r.on('error', () => res(-1));
    r.on('timeout', () => r.destroy());
    r.end();
  });
}

function reload(socket: string): Promise<{ ms: number; status: number; bytes: number }> {
  const t0 = performance.now();
  return new Promise((res) => {
    const r = request({ socketPath: socket, method: 'POST', path: '/v1/reload', timeout: CASE_MS }, (x) => {
      let bytes = 0;
      let head = '';
      x.on('data', (d: Buffer) => {
        if (bytes < 400) head += d.toString().slice(0, 400 - bytes);
        bytes += d.length;
      });
      x.on('end', () => {
        if (process.env.VERBOSE) console.error(head);
        res({ ms: performance.now() - t0, status: x.statusCode ?? 0, bytes });
      });
    });
    r.on('error', () => res({ ms: performance.now() - t0, status: -1, bytes: 0 }));
    r.on('timeout', () => r.destroy());
    r.end();
  });
}

async function runCase(kind: string): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'tsvs-bench-reload-'));
  const rs = createServer((_q, r) => r.end('ok'));
  await new Promise<void>((r) => rs.listen(0, '127.0.0.1', r));
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const vport = free(probe);
  await new Promise((r) => probe.close(r));
  const conf = join(dir, 'keepalived.conf');
  writeFileSync(conf, base(vport, free(rs)));
  const socket = join(dir, 'tsvsd.sock');
  const proc = spawn(
    process.execPath,
    [join(ROOT, 'dist/bin/tsvsd.js'), '--socket', socket, '--state', join(dir, 's.json'), '--config', conf],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let log = '';
  proc.stdout!.on('data', (d: Buffer) => {
    log = (log + d.toString()).slice(-20_000);
  });
  const hard = setTimeout(() => proc.kill('SIGKILL'), CASE_MS);
  try {
    for (let i = 0; i < 200 && (await get(vport)) < 0; i++) await new Promise((r) => setTimeout(r, 50));
    pathological(kind, dir, conf, vport, free(rs));
    const lat: number[] = [];
    let failed = 0;
    let probing = true;
    const prober = (async () => {
      while (probing) {
        const ms = await get(vport);
        if (ms < 0) failed++;
        else lat.push(ms);
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    await new Promise((r) => setTimeout(r, 300));
    const unblock =
      kind === 'fifo'
        ? setTimeout(() => {
            try {
              const fd = openSync(join(dir, 'pipe.conf'), constants.O_WRONLY | constants.O_NONBLOCK);
              writeSync(fd, '\n');
              closeSync(fd);
            } catch {
              /* ENXIO: nobody reads it */
            }
          }, 5000)
        : null;
    const rl = await reload(socket);
    if (unblock) clearTimeout(unblock);
    await new Promise((r) => setTimeout(r, 300));
    probing = false;
    await prober;
    const alive = proc.exitCode === null && proc.signalCode === null;
    // The daemon's own split of a successful reload: reading (worker) and applying (event loop).
    const split = /"readMs":(\d+),"applyMs":(\d+)/.exec(log);
    lat.sort((a, b) => a - b);
    const p = (q: number) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(q * lat.length))]!.toFixed(1) : '-');
    return `| ${kind} | ${rl.ms.toFixed(0)}${split ? ` (read ${split[1]}, apply ${split[2]})` : ''} | ${rl.status} | ${rl.bytes} | ${lat.length} | ${failed} | ${p(0.5)} | ${p(0.99)} | ${lat.length ? lat[lat.length - 1]!.toFixed(1) : '-'} | ${alive ? 'yes' : `no (${proc.signalCode ?? proc.exitCode})`} |`;
  } finally {
    clearTimeout(hard);
    if (proc.exitCode === null) proc.kill('SIGKILL');
    rs.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

console.log(`tsvsd: ${join(ROOT, 'dist/bin/tsvsd.js')}`);
console.log('| case | reload ms | status | reply bytes | probes | failed | p50 ms | p99 ms | max ms | tsvsd alive |');
console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---|');
for (const c of CASES) console.log(await runCase(c));
