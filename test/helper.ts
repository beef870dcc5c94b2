/**
 * Shared test helpers: small real servers that name themselves, clients that report which
 * server answered, and utilities (waitFor, freePort, sha256).
 *
 * Every server listens on port 0 of the address it is given (127.0.0.1 unless told), and
 * every helper that opens a client socket either closes it before it resolves or returns
 * it to the caller, who closes it (in `t.after`). Nothing here knows about tsvs: the
 * helpers are usable against any load balancer, or directly against the servers.
 *
 * Server kinds, all "shared storage": every instance serves the same content and differs
 * only in its name.
 * - http:   `X-Real-Server: <name>` on every response; GET / answers `<name>\n` followed by
 *           SHARED_CONTENT; GET /bytes/N answers N bytes of SHARED_CONTENT repeated.
 * - echo:   TCP; writes `<name>\n` on connect, then echoes every byte; ends when the client does.
 * - digest: TCP; reads until the client half-closes, then answers
 *           `<name> <bytes> <sha256 hex>\n` and closes.
 * - udp:    UDP echo; answers each datagram with `<name>:` followed by the datagram.
 */
import { createHash } from 'node:crypto';
import dgram from 'node:dgram';
import http from 'node:http';
import net from 'node:net';

/** The content every http test server serves, whatever its name. */
export const SHARED_CONTENT = 'tsvs test page: every real server serves this same content.\n';

export type TestServerKind = 'http' | 'echo' | 'digest' | 'udp';

/** A running test server. */
export interface TestServer {
  readonly name: string;
  readonly kind: TestServerKind;
  readonly addr: string;
  readonly port: number;
  /** TCP connections open now (0 for udp). */
  connections(): number;
  /** Requests (http), connections (echo, digest) or datagrams (udp) served so far. */
  hits(): number;
  /** Stops listening and closes every open connection. Safe to call more than once. */
  close(): Promise<void>;
}

/** Where a test server listens; port 0 (any free port) unless told. */
export interface ServerOptions {
  host?: string;
  port?: number;
}

function tcpServerHandle(name: string, kind: TestServerKind, server: net.Server, host: string, counter: { hits: number }): TestServer {
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  let closing: Promise<void> | null = null;
  return {
    name,
    kind,
    addr: host,
    port: (server.address() as net.AddressInfo).port,
    connections: () => sockets.size,
    hits: () => counter.hits,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      })),
  };
}

function listen(server: net.Server, opts: ServerOptions): Promise<string> {
  const host = opts.host ?? '127.0.0.1';
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port: opts.port ?? 0 }, () => {
      server.off('error', reject);
      resolve(host);
    });
  });
}

/** Starts an HTTP server named `name` (see the file comment for what it serves). */
export async function startHttpServer(name: string, opts: ServerOptions = {}): Promise<TestServer> {
  const counter = { hits: 0 };
  const page = Buffer.from(`${name}\n${SHARED_CONTENT}`);
  const server = http.createServer((req, res) => {
    counter.hits++;
    res.setHeader('X-Real-Server', name);
    res.setHeader('Content-Type', 'text/plain');
    const m = /^\/bytes\/(\d+)$/.exec(req.url ?? '');
    if (req.url === '/') {
      res.setHeader('Content-Length', page.length);
      res.end(page);
    } else if (m) {
      const n = Number(m[1]);
      res.setHeader('Content-Length', n);
      res.end(sharedBytes(n));
    } else {
      res.statusCode = 404;
      res.end(`${name}: not found\n`);
    }
  });
  const host = await listen(server, opts);
  return tcpServerHandle(name, 'http', server, host, counter);
}

/** `n` bytes of SHARED_CONTENT repeated: what GET /bytes/N returns. */
export function sharedBytes(n: number): Buffer {
  const unit = Buffer.from(SHARED_CONTENT);
  const out = Buffer.allocUnsafe(n);
  for (let o = 0; o < n; o += unit.length) unit.copy(out, o, 0, Math.min(unit.length, n - o));
  return out;
}

/** Starts a TCP echo server: greets with `<name>\n`, then echoes. */
export async function startEchoServer(name: string, opts: ServerOptions = {}): Promise<TestServer> {
  const counter = { hits: 0 };
  const server = net.createServer((s) => {
    counter.hits++;
    s.on('error', () => {});
    s.write(`${name}\n`);
    s.pipe(s);
  });
  const host = await listen(server, opts);
  return tcpServerHandle(name, 'echo', server, host, counter);
}

/** Starts a TCP server that answers `<name> <bytes> <sha256>\n` only after the client half-closes. */
export async function startDigestServer(name: string, opts: ServerOptions = {}): Promise<TestServer> {
  const counter = { hits: 0 };
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    counter.hits++;
    s.on('error', () => {});
    const h = createHash('sha256');
    let n = 0;
    s.on('data', (d: Buffer) => {
      h.update(d);
      n += d.length;
    });
    // Answer on a later turn, so the reply visibly travels after the client's EOF.
    s.on('end', () => setImmediate(() => s.end(`${name} ${n} ${h.digest('hex')}\n`)));
  });
  const host = await listen(server, opts);
  return tcpServerHandle(name, 'digest', server, host, counter);
}

/** Starts a UDP echo server that prefixes each reply with `<name>:`. */
export async function startUdpEchoServer(name: string, opts: ServerOptions = {}): Promise<TestServer> {
  const host = opts.host ?? '127.0.0.1';
  const sock = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
  let hits = 0;
  const prefix = Buffer.from(`${name}:`);
  sock.on('message', (m, r) => {
    hits++;
    sock.send([prefix, m], r.port, r.address);
  });
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind({ address: host, port: opts.port ?? 0 }, () => {
      sock.off('error', reject);
      resolve();
    });
  });
  sock.on('error', () => {});
  let closing: Promise<void> | null = null;
  return {
    name,
    kind: 'udp',
    addr: host,
    port: sock.address().port,
    connections: () => 0,
    hits: () => hits,
    close: () => (closing ??= new Promise<void>((resolve) => sock.close(() => resolve()))),
  };
}

/** Starts a server of the given kind. */
export function startServer(kind: TestServerKind, name: string, opts: ServerOptions = {}): Promise<TestServer> {
  switch (kind) {
    case 'http':
      return startHttpServer(name, opts);
    case 'echo':
      return startEchoServer(name, opts);
    case 'digest':
      return startDigestServer(name, opts);
    case 'udp':
      return startUdpEchoServer(name, opts);
  }
}

// ------------------------------------------------------------------ utilities

/**
 * A port that is free for both TCP and UDP on `host` right now (bound to port 0 and
 * released; a race with other programs is possible but unlikely).
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const srv = net.createServer();
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen({ host, port: 0 }, () => resolve());
    });
    const port = (srv.address() as net.AddressInfo).port;
    const udp = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    const ok = await new Promise<boolean>((resolve) => {
      udp.once('error', () => resolve(false));
      udp.bind({ address: host, port }, () => resolve(true));
    });
    await new Promise<void>((resolve) => srv.close(() => resolve()));
    if (ok) {
      await new Promise<void>((resolve) => udp.close(() => resolve()));
      return port;
    }
  }
  throw new Error(`no port free for both TCP and UDP on ${host}`);
}

/**
 * Polls `cond` every 10 ms until it returns true; rejects after `timeoutMs` with an error
 * naming `what`.
 */
export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Hex SHA-256 of a buffer. */
export function sha256(b: Buffer | string): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Client options shared by the helpers below. */
export interface ClientOptions {
  /** Source address, e.g. 127.0.0.2 to appear as another client on loopback. */
  localAddress?: string;
  /** Give up after this long (default 5000 ms). */
  timeoutMs?: number;
}

// ------------------------------------------------------------------ HTTP clients

/** One HTTP response: which server sent it, and what it sent. */
export interface HttpReply {
  status: number;
  /** The X-Real-Server header ('' when absent). */
  server: string;
  body: Buffer;
  /** The request went over a socket that had already carried one (keep-alive). */
  reusedSocket: boolean;
  socket: net.Socket;
}

/**
 * GET `path` from host:port. Without `agent`, each call opens a new connection and closes
 * it after the response (Connection: close).
 */
export function httpGet(host: string, port: number, opts: ClientOptions & { path?: string; agent?: http.Agent } = {}): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = http.get({
      host,
      port,
      path: opts.path ?? '/',
      agent: opts.agent ?? false,
      localAddress: opts.localAddress,
      timeout: opts.timeoutMs ?? 5000,
    });
    req.on('timeout', () => req.destroy(new Error(`GET http://${host}:${port}${opts.path ?? '/'} timed out`)));
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('error', reject);
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          server: String(res.headers['x-real-server'] ?? ''),
          body: Buffer.concat(chunks),
          reusedSocket: req.reusedSocket,
          socket: res.socket,
        }),
      );
    });
  });
}

/** Makes `n` requests one after the other, each on a new connection; returns who answered each. */
export async function newHttpConnections(n: number, host: string, port: number, opts: ClientOptions = {}): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push((await httpGet(host, port, opts)).server);
  return out;
}

/** A keep-alive HTTP client that holds at most one connection. */
export interface KeepAliveClient {
  get(path?: string): Promise<HttpReply>;
  /** How many distinct connections the requests so far used. */
  socketsUsed(): number;
  close(): void;
}

/** Opens a keep-alive client: every request reuses one connection while it stays open. */
export function keepAliveClient(host: string, port: number, opts: ClientOptions = {}): KeepAliveClient {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const sockets = new Set<net.Socket>();
  return {
    async get(path = '/') {
      const r = await httpGet(host, port, { ...opts, path, agent });
      sockets.add(r.socket);
      return r;
    },
    socketsUsed: () => sockets.size,
    close: () => agent.destroy(),
  };
}

/** A request/response over a raw socket with exact byte counts on both sides. */
export interface RawHttpResult {
  server: string;
  status: number;
  bytesSent: number;
  bytesReceived: number;
}

/** GET over a plain TCP socket (Connection: close), counting the bytes each way. */
export function rawHttpGet(host: string, port: number, opts: ClientOptions & { path?: string } = {}): Promise<RawHttpResult> {
  const request = `GET ${opts.path ?? '/'} HTTP/1.1\r\nHost: tsvs-test\r\nConnection: close\r\n\r\n`;
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, localAddress: opts.localAddress });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => s.destroy(new Error(`raw GET to ${host}:${port} timed out`)), opts.timeoutMs ?? 5000);
    s.on('connect', () => s.write(request));
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.on('close', (hadError) => {
      clearTimeout(timer);
      if (hadError) return;
      const all = Buffer.concat(chunks);
      const head = all.toString('latin1', 0, Math.max(0, all.indexOf('\r\n\r\n')));
      resolve({
        server: /^x-real-server:\s*(.*)$/im.exec(head)?.[1]?.trim() ?? '',
        status: Number(/^HTTP\/1\.\d (\d+)/.exec(head)?.[1] ?? 0),
        bytesSent: Buffer.byteLength(request),
        bytesReceived: all.length,
      });
    });
  });
}

// ------------------------------------------------------------------ TCP clients

/** An open connection to an echo server (through whatever is in between). */
export interface EchoConn {
  /** The name in the server's greeting. */
  readonly server: string;
  readonly socket: net.Socket;
  /** Sends `data` and resolves with the same number of bytes read back. */
  echo(data: string | Buffer): Promise<Buffer>;
  /** Half-closes, then waits until the server has closed too. */
  end(): Promise<void>;
  /** Closes at once (no wait). */
  destroy(): void;
}

/** Connects to an echo server and reads its greeting; the caller closes the connection. */
export function openEcho(host: string, port: number, opts: ClientOptions = {}): Promise<EchoConn> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, localAddress: opts.localAddress });
    const timeoutMs = opts.timeoutMs ?? 5000;
    let buf: Buffer = Buffer.alloc(0);
    let waiter: (() => void) | null = null;
    let failure: Error | null = null;
    let closed = false;
    const closedP = new Promise<void>((r) => socket.once('close', () => r()));
    socket.on('close', () => {
      closed = true;
      waiter?.();
    });
    socket.on('error', (e) => {
      failure = e;
      waiter?.();
    });
    socket.on('data', (d: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      waiter?.();
    });
    /** Resolves when `ready()` holds, or rejects on error, close or timeout. */
    const until = (ready: () => boolean, what: string) =>
      new Promise<void>((res, rej) => {
        const timer = setTimeout(() => done(new Error(`${what}: timed out after ${timeoutMs} ms`)), timeoutMs);
        const done = (e?: Error) => {
          clearTimeout(timer);
          waiter = null;
          if (e) rej(e);
          else res();
        };
        const check = () => {
          if (ready()) done();
          else if (failure) done(failure);
          else if (closed) done(new Error(`${what}: connection closed`));
        };
        waiter = check;
        check();
      });
    until(() => buf.includes(10), `greeting from ${host}:${port}`).then(
      () => {
        const nl = buf.indexOf(10);
        const server = buf.toString('utf8', 0, nl);
        buf = buf.subarray(nl + 1);
        resolve({
          server,
          socket,
          async echo(data) {
            const b = typeof data === 'string' ? Buffer.from(data) : data;
            socket.write(b);
            await until(() => buf.length >= b.length, `echo of ${b.length} bytes from ${server}`);
            const out = buf.subarray(0, b.length);
            buf = buf.subarray(b.length);
            return out;
          },
          async end() {
            socket.end();
            await Promise.race([closedP, new Promise<void>((r) => setTimeout(r, timeoutMs).unref())]);
            socket.destroy();
          },
          destroy: () => socket.destroy(),
        });
      },
      (e: unknown) => {
        socket.destroy();
        reject(e);
      },
    );
  });
}

/** Opens `n` echo connections one after the other, each closed cleanly; returns who greeted each. */
export async function newEchoConnections(n: number, host: string, port: number, opts: ClientOptions = {}): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const c = await openEcho(host, port, opts);
    out.push(c.server);
    await c.end();
  }
  return out;
}

/** What happened to a connection: the bytes it received and how it ended. */
export interface TcpOutcome {
  /** Whether the TCP handshake completed. */
  connected: boolean;
  received: Buffer;
  /** Error code it ended with (ECONNRESET, ECONNREFUSED, ...), or null for a clean close. */
  error: string | null;
}

/**
 * Connects, optionally sends `send` (and half-closes when `end`), and waits for the
 * connection to be closed by the other side. Rejects only on timeout.
 */
export function tcpOutcome(
  host: string,
  port: number,
  opts: ClientOptions & { send?: string | Buffer; end?: boolean } = {},
): Promise<TcpOutcome> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, localAddress: opts.localAddress, allowHalfOpen: true });
    const chunks: Buffer[] = [];
    let connected = false;
    let error: string | null = null;
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`connection to ${host}:${port} still open after ${opts.timeoutMs ?? 5000} ms`));
    }, opts.timeoutMs ?? 5000);
    s.on('connect', () => {
      connected = true;
      if (opts.send !== undefined) s.write(opts.send);
      if (opts.end) s.end();
    });
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('end', () => s.end());
    s.on('error', (e: NodeJS.ErrnoException) => {
      error = e.code ?? e.message;
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ connected, received: Buffer.concat(chunks), error });
    });
  });
}

/**
 * Connects to an echo server, streams `data` through it with backpressure while reading
 * the echo, half-closes, and resolves with the greeting name and every byte echoed.
 */
export function echoTransfer(
  host: string,
  port: number,
  data: Buffer,
  opts: ClientOptions = {},
): Promise<{ server: string; echoed: Buffer }> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, localAddress: opts.localAddress });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => s.destroy(new Error(`echo transfer to ${host}:${port} timed out`)), opts.timeoutMs ?? 30_000);
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.on('connect', async () => {
      const step = 64 * 1024;
      for (let o = 0; o < data.length; o += step) {
        if (!s.write(data.subarray(o, o + step))) await new Promise((r) => s.once('drain', r));
        if (s.destroyed) return;
      }
      s.end();
    });
    s.on('close', (hadError) => {
      clearTimeout(timer);
      if (hadError) return;
      const all = Buffer.concat(chunks);
      const nl = all.indexOf(10);
      resolve({ server: all.toString('utf8', 0, nl), echoed: all.subarray(nl + 1) });
    });
  });
}

// ------------------------------------------------------------------ UDP clients

/** A UDP client socket: one local address:port, i.e. one flow. */
export interface UdpClient {
  /** The local port (the flow's identity). */
  readonly port: number;
  /** Sends a datagram and resolves with the next reply, split into `<name>:` and the rest. */
  ask(payload: string | Buffer, timeoutMs?: number): Promise<{ server: string; payload: string }>;
  close(): void;
}

/** Opens a UDP client towards host:port. */
export async function udpClient(host: string, port: number, opts: { localAddress?: string } = {}): Promise<UdpClient> {
  const sock = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind({ address: opts.localAddress, port: 0 }, () => {
      sock.off('error', reject);
      resolve();
    });
  });
  const replies: Buffer[] = [];
  let waiter: (() => void) | null = null;
  sock.on('message', (m) => {
    replies.push(m);
    waiter?.();
  });
  sock.on('error', () => {});
  let closed = false;
  return {
    port: sock.address().port,
    async ask(payload, timeoutMs = 2000) {
      replies.length = 0;
      sock.send(typeof payload === 'string' ? Buffer.from(payload) : payload, port, host);
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiter = null;
          reject(new Error(`no UDP reply from ${host}:${port} within ${timeoutMs} ms`));
        }, timeoutMs);
        waiter = () => {
          clearTimeout(timer);
          waiter = null;
          resolve();
        };
        if (replies.length) waiter();
      });
      const m = replies.shift()!.toString();
      const colon = m.indexOf(':');
      return { server: m.slice(0, colon), payload: m.slice(colon + 1) };
    },
    close() {
      if (!closed) sock.close();
      closed = true;
    },
  };
}

/** Resolves when `socket` has closed; rejects if it is still open after `timeoutMs`. */
export function socketClosed(socket: net.Socket, timeoutMs = 5000): Promise<void> {
  if (socket.destroyed && socket.closed) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`socket still open after ${timeoutMs} ms`)), timeoutMs);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
