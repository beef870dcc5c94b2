/** Shared helpers for the health and config tests: a director on a fake data plane, loopback servers, log capture. */
import { createServer as createHttp, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTcp, type AddressInfo, type Server } from 'node:net';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import type { IpvsTable } from '../../src/core/table.js';
import { newTable } from '../table.js';
import type { DataPlane } from '../../src/dataplane/dataplane.js';
import { Director } from '../../src/daemon/director.js';
import type { RealServerConfig, VirtualServiceConfig } from '../../src/config/model.js';
import { checkerDefaults, type CheckerConfig, type CheckerType } from '../../src/health/model.js';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `f` until it returns true; throws with `what` after `ms`. */
export async function waitFor(f: () => boolean, ms: number, what: string): Promise<number> {
  const t0 = Date.now();
  while (!f()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
  return Date.now() - t0;
}

export const fakePlane = (): DataPlane => ({
  name: 'fake',
  methods: new Set(['masq', 'route', 'tunnel', 'fullnat']),
  start: async () => undefined,
  prepare: async () => undefined,
  abort: () => undefined,
  stop: async () => undefined,
});

export interface LogCapture {
  log: Logger;
  lines: () => Array<{ msg: string; level: number } & Record<string, unknown>>;
  messages: () => string[];
}

export function captureLog(): LogCapture {
  const out: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      out.push(...chunk.toString().split('\n').filter(Boolean));
      cb();
    },
  });
  const log = pino({ level: 'debug' }, stream);
  const lines = () => out.map((l) => JSON.parse(l));
  return { log, lines, messages: () => lines().map((l) => l.msg) };
}

export async function makeDirector(): Promise<{ director: Director; table: IpvsTable; logs: LogCapture }> {
  const logs = captureLog();
  const table = newTable();
  const director = new Director(table, fakePlane(), null, logs.log);
  await director.start();
  return { director, table, logs };
}

export function checker(type: CheckerType, over: Partial<CheckerConfig> = {}): CheckerConfig {
  return { type, ...checkerDefaults(type), interval: 0.1, timeout: 0.5, retry: 1, delayBeforeRetry: 0.05, ...over };
}

export function realServer(port: number, over: Partial<RealServerConfig> = {}): RealServerConfig {
  return {
    af: 4,
    addr: '127.0.0.1',
    port,
    weight: 1,
    fwd: 'masq',
    uThreshold: 0,
    lThreshold: 0,
    inhibitOnFailure: false,
    checkers: [],
    ...over,
  };
}

export function vservice(port: number, realServers: RealServerConfig[], over: Partial<VirtualServiceConfig> = {}): VirtualServiceConfig {
  return {
    af: 4,
    protocol: 'tcp',
    addr: '127.0.0.1',
    port,
    fwmark: 0,
    scheduler: 'rr',
    schedFlags: 0,
    persistent: 0,
    netmask: 0xffffffff,
    ops: false,
    pe: '',
    realServers,
    quorum: 1,
    hysteresis: 0,
    omega: false,
    ...over,
  };
}

/** A TCP listener on a loopback port; `close` stops it and drops its connections, `reopen` listens on the same port again. */
export class TcpServer {
  server: Server | null = null;
  port = 0;
  private sockets = new Set<import('node:net').Socket>();
  async open(port = 0): Promise<this> {
    const s = createTcp((c) => {
      this.sockets.add(c);
      c.on('close', () => this.sockets.delete(c));
      c.on('error', () => undefined);
    });
    await new Promise<void>((r) => s.listen(port, '127.0.0.1', r));
    this.server = s;
    this.port = (s.address() as AddressInfo).port;
    return this;
  }
  async close(): Promise<void> {
    if (!this.server) return;
    for (const c of this.sockets) c.destroy();
    await new Promise((r) => this.server!.close(r));
    this.server = null;
  }
}

export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

export async function httpServer(
  handler: Handler,
): Promise<{ port: number; close: () => Promise<void>; setHandler: (h: Handler) => void }> {
  let h = handler;
  const s = createHttp((req, res) => h(req, res));
  s.keepAliveTimeout = 100;
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return {
    port: (s.address() as AddressInfo).port,
    close: () =>
      new Promise((r) => {
        s.closeAllConnections();
        s.close(() => r());
      }),
    setHandler: (nh) => (h = nh),
  };
}

/** A real server in its own process (test/health/fixtures/rs.mjs), so that tests can kill it. */
export class RsProcess {
  proc: import('node:child_process').ChildProcess | null = null;
  port = 0;
  constructor(readonly name: string) {}
  async start(port = this.port): Promise<this> {
    const { spawn } = await import('node:child_process');
    const p = spawn(process.execPath, [new URL('./fixtures/rs.mjs', import.meta.url).pathname, String(port), this.name], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    this.proc = p;
    this.port = await new Promise<number>((resolve, reject) => {
      p.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
      p.once('exit', (c) => reject(new Error(`real server ${this.name} exited ${c}`)));
    });
    return this;
  }
  /** SIGKILL: the process dies with its connections. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise((r) => p.once('exit', r));
    p.kill(signal);
    await gone;
    this.proc = null;
  }
}

/** One HTTP GET; resolves with status and body, or rejects. */
export function httpGet(port: number, path = '/', timeoutMs = 5000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    import('node:http').then(({ request }) => {
      const req = request({ host: '127.0.0.1', port, path, agent: false, timeout: timeoutMs }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
      req.end();
    }, reject);
  });
}

/** A free TCP port on loopback (for VIPs). */
export async function freePort(): Promise<number> {
  const s = createTcp();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}
