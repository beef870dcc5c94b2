/**
 * `tsvs demo` (what `npm start` runs): the LVS-NAT test cluster on loopback. Two real
 * servers share one document root and name themselves; a director holds VIP
 * 127.0.0.1:8080 with rr, built with the same operations `tsvsadm` sends. The director is
 * the real tsvsd, run as a child process and reached only through the control API; the
 * demo stops it by its PID.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { HttpControlClient } from '../api/client.js';
import { defaultSocketPath, formatListenAddress, parseHostPort } from '../api/socket.js';
import { isTsvsError } from '../core/errors.js';
import type { Op, ServiceConfig } from '../core/types.js';
import { startDemoServer, writeSharedContent, type DemoServer } from '../demo/realserver.js';

/** How long tsvsd may take to answer on its control socket. */
const START_TIMEOUT_MS = 30_000;

/** The tsvsd child: its process and how to stop it. */
interface Tsvsd {
  proc: ChildProcess;
  /** Resolves with the exit code once the process has exited. */
  exited: Promise<number | null>;
  /** SIGTERM by PID (tsvsd drains, then exits); resolves once it has exited. */
  stop(): Promise<void>;
}

/**
 * The command that runs tsvsd: the built bin next to this module (dist/src/cli/demo.js ->
 * dist/bin/tsvsd.js), or, when the demo itself runs from source through tsx, bin/tsvsd.ts.
 */
function tsvsdCommand(): string[] {
  if (import.meta.url.endsWith('.ts'))
    return [process.execPath, '--import', 'tsx', fileURLToPath(new URL('../../bin/tsvsd.ts', import.meta.url))];
  return [process.execPath, fileURLToPath(new URL('../../bin/tsvsd.js', import.meta.url))];
}

/**
 * The address the demo's API will take: `api` itself when it can be bound, a free port on
 * its host when that port is taken or 0 (so the dashboard link names a real port). Any
 * other problem is left for tsvsd to report.
 */
async function apiAddressFor(api: string, anyPort = false): Promise<string> {
  let host: string;
  let port: number;
  try {
    ({ host, port } = parseHostPort(api));
  } catch {
    return api;
  }
  const probe = (p: number) =>
    new Promise<string | null>((resolve, reject) => {
      const srv = createServer();
      srv.once('error', reject);
      srv.listen(p, host, () => {
        const a = formatListenAddress(srv.address());
        srv.close(() => resolve(a));
      });
    });
  try {
    return (await probe(anyPort ? 0 : port)) ?? api;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') return api;
    return (await probe(0).catch(() => null)) ?? api;
  }
}

/**
 * Starts tsvsd and waits until it answers on `socket` (its own PID in /v1/info, not another
 * tsvsd's). Rejects with tsvsd's own message when it exits first.
 */
async function startTsvsd(args: string[], env: NodeJS.ProcessEnv, socket: string): Promise<Tsvsd> {
  const [cmd, ...pre] = tsvsdCommand();
  // Its log lines go where the in-process director's went: this terminal's stdout.
  const proc = spawn(cmd!, [...pre, ...args], { env, stdio: ['ignore', 'inherit', 'pipe'] });
  let err = '';
  let started = false;
  proc.stderr!.on('data', (d: Buffer) => {
    if (started) process.stderr.write(d);
    else err += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) process.kill(proc.pid!, 'SIGTERM');
    await exited;
  };
  const client = new HttpControlClient({ socketPath: socket, timeoutMs: 5000 });
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      // tsvsd's message without its "tsvsd: " prefix and usage hint: tsvs demo names itself.
      throw new Error(
        err
          .replace(/^tsvsd: /, '')
          .replace(/\nTry 'tsvsd --help'.*$/s, '')
          .trim() || `tsvsd exited (${proc.exitCode ?? proc.signalCode})`,
      );
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`tsvsd did not answer on ${socket} within ${START_TIMEOUT_MS / 1000} s`);
    }
    const info = await client.info().catch(() => null);
    if (info?.pid === proc.pid) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  started = true;
  if (err) process.stderr.write(err);
  return { proc, exited, stop };
}

export async function runDemo(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        vip: { type: 'string', default: '127.0.0.1:8080' },
        socket: { type: 'string' },
        api: { type: 'string', default: '127.0.0.1:9180' },
        'log-level': { type: 'string', default: 'warn' },
      },
    }));
  } catch (e) {
    process.stderr.write(`tsvs demo: ${(e as Error).message}\n`);
    return 2;
  }
  const m = /^(\d+\.\d+\.\d+\.\d+):(\d+)$/.exec(values.vip);
  if (!m) {
    process.stderr.write(`tsvs demo: --vip "${values.vip}": expected an IPv4 address:port on loopback, e.g. 127.0.0.1:8080\n`);
    return 2;
  }
  const vip = { addr: m[1]!, port: Number(m[2]) };
  const docroot = mkdtempSync(join(tmpdir(), 'tsvs-demo-'));
  const servers: DemoServer[] = [];
  let daemon: Tsvsd | null = null;
  const cleanup = async () => {
    await daemon?.stop();
    await Promise.all(servers.map((s) => s.close()));
    rmSync(docroot, { recursive: true, force: true });
  };
  try {
    await writeSharedContent(docroot);
    for (const [i, name] of ['rs1', 'rs2'].entries()) {
      // Prefer the ports next to the VIP's; take any free one if they are busy.
      const preferred = vip.port + 1 + i;
      let rs: DemoServer;
      try {
        rs = await startDemoServer({ name, docroot, host: '127.0.0.1', port: preferred });
      } catch {
        rs = await startDemoServer({ name, docroot, host: '127.0.0.1', port: 0 });
      }
      servers.push(rs);
    }
    const socket = values.socket ?? defaultSocketPath();
    // The dashboard and the API on TCP, with a fresh token that only this run's URL carries.
    const apiToken = randomBytes(24).toString('base64url');
    // Reads are open (curl /metrics works); drain and weight changes need the token, which
    // goes in the environment rather than on tsvsd's command line (ps shows that).
    const env = { ...process.env, TSVS_API_TOKEN: apiToken };
    const args = (api: string) => [
      ...['--socket', socket, '--dataplane', 'userspace', '--log-level', values['log-level'], '--drain-timeout', '2'],
      ...['--api', api, '--api-public-read'],
    ];
    let apiAddress = await apiAddressFor(values.api);
    try {
      daemon = await startTsvsd(args(apiAddress), env, socket);
    } catch (e) {
      // Taken between the probe and tsvsd's listen: any free port.
      if (!/EADDRINUSE/.test((e as Error).message)) throw e;
      apiAddress = await apiAddressFor(values.api, true);
      daemon = await startTsvsd(args(apiAddress), env, socket);
    }
    const dashboard = `http://${apiAddress}/#token=${apiToken}`;
    const service: ServiceConfig = {
      af: 4,
      protocol: 'tcp',
      addr: vip.addr,
      port: vip.port,
      fwmark: 0,
      scheduler: 'rr',
      schedFlags: 0,
      persistent: 0,
      netmask: 0xffffffff,
      ops: false,
      pe: '',
    };
    const ops: Op[] = [{ op: 'add-service', service }];
    for (const rs of servers) {
      ops.push({
        op: 'add-server',
        service,
        dest: { af: 4, addr: rs.host, port: rs.port, weight: 1, fwd: 'masq', uThreshold: 0, lThreshold: 0 },
      });
    }
    await new HttpControlClient({ socketPath: socket }).apply(ops);
    const envHint = socket === defaultSocketPath({ ...process.env, TSVS_SOCKET: '' }) ? '' : `TSVS_SOCKET=${socket} `;
    const v = `${vip.addr}:${vip.port}`;
    process.stdout.write(`tsvs demo: an LVS-NAT cluster on loopback

  director  VIP ${v} (TCP, rr)       control socket ${socket}
  dashboard ${dashboard}
            (API, /metrics and the dashboard; the token in the link allows drain and weight changes)
  rs1       ${servers[0]!.host}:${servers[0]!.port}   serving ${docroot}
  rs2       ${servers[1]!.host}:${servers[1]!.port}   (same shared content)

Try, in another terminal:
  curl -s http://${v}/name                 # run it a few times: rs2, rs1, rs2, ...
  curl -si http://${v}/ | grep -i real-server
  ${envHint}npx tsvsadm -Ln                     # the table, as ipvsadm shows it
  ${envHint}npx tsvsadm -Ln --stats             # counters; --rate for rates
  ${envHint}npx tsvsadm -e -t ${v} -r ${servers[0]!.host}:${servers[0]!.port} -m -w 0   # quiesce rs1
  ${envHint}npx tsvsadm -Lnc                    # the connection table
  ${envHint}npx tsvs top                        # live rates and connections (q quits)
  curl -s http://${apiAddress}/metrics | grep node_ipvs

Ctrl-C stops the demo.
`);
  } catch (e) {
    const msg = isTsvsError(e) ? `${e.message} (${e.detail})` : (e as Error).message;
    process.stderr.write(`tsvs demo: ${msg}\n`);
    await cleanup();
    return 1;
  }
  const child = daemon!;
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = () => {
      stopping = true;
      process.stdout.write('\nstopping the demo...\n');
      cleanup().then(
        () => resolve(0),
        () => resolve(1),
      );
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    // A director that dies on its own ends the demo: nothing would carry the VIP.
    void child.exited.then((code) => {
      if (stopping) return;
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      process.stderr.write(`tsvs demo: tsvsd exited (${code ?? child.proc.signalCode}); stopping the demo\n`);
      cleanup().then(
        () => resolve(1),
        () => resolve(1),
      );
    });
  });
}
