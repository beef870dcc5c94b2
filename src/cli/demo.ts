/**
 * `tsvs demo` (what `npm start` runs): the LVS-NAT test cluster on loopback. Two real
 * servers share one document root and name themselves; a director holds VIP
 * 127.0.0.1:8080 with rr, built with the same operations `tsvsadm` sends.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { defaultSocketPath } from '../api/socket.js';
import { isTsvsError } from '../core/errors.js';
import type { Op, ServiceConfig } from '../core/types.js';
import { startDaemon, type DaemonHandle } from '../daemon/daemon.js';
import { startRealServer, writeSharedContent, type RealServer } from '../demo/realserver.js';

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
  const servers: RealServer[] = [];
  let daemon: DaemonHandle | null = null;
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
      let rs: RealServer;
      try {
        rs = await startRealServer({ name, docroot, host: '127.0.0.1', port: preferred });
      } catch {
        rs = await startRealServer({ name, docroot, host: '127.0.0.1', port: 0 });
      }
      servers.push(rs);
    }
    const socket = values.socket ?? defaultSocketPath();
    // The dashboard and the API on TCP, with a fresh token that only this run's URL carries.
    const apiToken = randomBytes(18).toString('base64url');
    // Reads are open (curl /metrics works); drain and weight changes need the token.
    const base = { socket, dataplane: 'userspace' as const, logLevel: values['log-level'], drainMs: 2000, apiToken, apiPublicRead: true };
    try {
      daemon = await startDaemon({ ...base, api: values.api });
    } catch (e) {
      if (!/EADDRINUSE/.test((e as Error).message)) throw e;
      daemon = await startDaemon({ ...base, api: values.api.replace(/:\d+$/, ':0') });
    }
    const dashboard = `http://${daemon.apiAddress}/#token=${apiToken}`;
    const service: ServiceConfig = {
      af: 4, protocol: 'tcp', addr: vip.addr, port: vip.port, fwmark: 0,
      scheduler: 'rr', schedFlags: 0, persistent: 0, netmask: 0xffffffff, ops: false, pe: '',
    };
    const ops: Op[] = [{ op: 'add-service', service }];
    for (const rs of servers) {
      ops.push({ op: 'add-server', service, dest: { af: 4, addr: rs.host, port: rs.port, weight: 1, fwd: 'masq', uThreshold: 0, lThreshold: 0 } });
    }
    await daemon.director.apply(ops);
    const env = socket === defaultSocketPath({ ...process.env, TSVS_SOCKET: '' }) ? '' : `TSVS_SOCKET=${socket} `;
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
  ${env}npx tsvsadm -Ln                     # the table, as ipvsadm shows it
  ${env}npx tsvsadm -Ln --stats             # counters; --rate for rates
  ${env}npx tsvsadm -e -t ${v} -r ${servers[0]!.host}:${servers[0]!.port} -m -w 0   # quiesce rs1
  ${env}npx tsvsadm -Lnc                    # the connection table
  ${env}npx tsvs top                        # live rates and connections (q quits)
  curl -s http://${daemon.apiAddress}/metrics | grep node_ipvs

Ctrl-C stops the demo.
`);
  } catch (e) {
    const msg = isTsvsError(e) ? `${e.message} (${e.detail})` : (e as Error).message;
    process.stderr.write(`tsvs demo: ${msg}\n`);
    await cleanup();
    return 1;
  }
  return new Promise<number>((resolve) => {
    const stop = () => {
      process.stdout.write('\nstopping the demo...\n');
      cleanup().then(() => resolve(0), () => resolve(1));
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
