/**
 * The API's HTTP listeners and their bounds: a cap on open connections per listener, a
 * header timeout (slowloris), a body timeout and a keep-alive idle timeout. The control
 * socket and the TCP API each have their own cap, so that clients of the TCP port can
 * never use up the connections (and file descriptors) that tsvsadm needs on the socket.
 *
 * Every bound, when hit, counts in ListenerStats (shown in /metrics) and logs a line, at
 * most one per listener and reason every LOG_EVERY_MS (with the number not logged since).
 */
import { createServer, type IncomingMessage, type RequestListener, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { LogFn } from '../core/log.js';

/** The bounds of one listener. */
export interface ListenerLimits {
  /** Open connections at most; one more is closed at once (counted as refused). */
  maxConnections: number;
  /** A request's headers must arrive within this time of its first byte (or of the connection). */
  headerTimeoutMs: number;
  /** The whole request, body included, must arrive within this time. */
  bodyTimeoutMs: number;
  /** A kept-alive connection with no request for this long is closed. */
  idleTimeoutMs: number;
}

/** The control socket's cap: tsvsadm, `tsvs top` and scripts of the socket's owner. */
export const DEFAULT_SOCKET_MAX_CONNECTIONS = 64;
/** The TCP API's cap: dashboards, Prometheus and remote tools. */
export const DEFAULT_API_MAX_CONNECTIONS = 256;
/** As haproxy's usual `timeout http-request 10s`. */
export const DEFAULT_HEADER_TIMEOUT_MS = 10_000;
/** 64 MiB (the largest batch) in 60 s needs about 1.1 MB/s. */
export const DEFAULT_BODY_TIMEOUT_MS = 60_000;
/** Node's own default for keep-alive. */
export const DEFAULT_IDLE_TIMEOUT_MS = 5_000;

/** How often one listener logs the same reason at most. */
const LOG_EVERY_MS = 10_000;

/** Why a listener closed or refused a connection, or refused a request. */
export type LimitReason = 'max-connections' | 'header-timeout' | 'body-timeout' | 'idle-timeout' | 'bad-host';

const REASONS: readonly LimitReason[] = ['max-connections', 'header-timeout', 'body-timeout', 'idle-timeout', 'bad-host'];

/** One listener's counters, for /metrics. */
export class ListenerStats {
  /** Open connections now. */
  open = 0;
  /** Times each bound was hit. */
  readonly hits: Record<LimitReason, number> = {
    'max-connections': 0,
    'header-timeout': 0,
    'body-timeout': 0,
    'idle-timeout': 0,
    'bad-host': 0,
  };
  private readonly lastLog = new Map<LimitReason, { at: number; unlogged: number }>();

  constructor(
    /** "socket" or "tcp", the metrics' listener label. */
    readonly name: 'socket' | 'tcp',
    readonly limits: ListenerLimits,
    private readonly log: LogFn,
    /** The address for messages: the socket path or HOST:PORT (set once bound). */
    public address = '',
  ) {}

  /** Counts a hit and logs it, unless this reason was logged less than LOG_EVERY_MS ago. */
  hit(reason: LimitReason, what: string, level: 'debug' | 'warn' = 'warn', now = Date.now()): void {
    this.hits[reason]++;
    const last = this.lastLog.get(reason);
    if (last && now - last.at < LOG_EVERY_MS) {
      last.unlogged++;
      return;
    }
    const unlogged = last?.unlogged ?? 0;
    this.lastLog.set(reason, { at: now, unlogged: 0 });
    const more = unlogged ? ` (and ${unlogged} more since the last such line)` : '';
    this.log(level, `API ${this.name} ${this.address}: ${what}${more}`, {
      component: 'api',
      listener: this.name,
      reason,
      total: this.hits[reason],
    });
  }
}

/** The reasons in a fixed order, for /metrics. */
export function limitReasons(): readonly LimitReason[] {
  return REASONS;
}

function plainResponse(status: string, body: string): string {
  return `HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

function timeoutResponse(kind: 'header' | 'body', ms: number): string {
  const what = kind === 'header' ? 'request headers' : 'request body';
  const detail = `the ${what} did not arrive within ${ms / 1000} s; the connection is closed`;
  return plainResponse('408 Request Timeout', JSON.stringify({ error: { code: 'REQUEST_TIMEOUT', message: 'Request timeout', detail } }));
}

/**
 * An HTTP server for the API with the bounds of `stats.limits`. Its timeouts are checked
 * every quarter of the header timeout (at most every second), so a slow client is cut
 * within that much of its deadline.
 */
export function createApiServer(listener: RequestListener, stats: ListenerStats): Server {
  const l = stats.limits;
  const server = createServer(
    {
      headersTimeout: l.headerTimeoutMs,
      requestTimeout: l.bodyTimeoutMs,
      keepAliveTimeout: l.idleTimeoutMs,
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(l.headerTimeoutMs / 4))),
    },
    listener,
  );
  // Node closes a connection over the cap at once ('drop'): no request is read, no fd is kept.
  server.maxConnections = l.maxConnections;
  server.on('drop', (d?: { remoteAddress?: string; remotePort?: number }) => {
    const from = d?.remoteAddress ? ` from ${d.remoteAddress}:${d.remotePort}` : '';
    stats.hit('max-connections', `connection${from} refused: ${l.maxConnections} connections are open, the most this listener takes`);
  });
  server.on('connection', (socket: Socket) => {
    stats.open++;
    socket.once('close', () => stats.open--);
  });
  // The request each connection is reading, to tell a slow body from slow headers.
  const reading = new WeakMap<Socket, IncomingMessage>();
  server.on('request', (req: IncomingMessage) => reading.set(req.socket, req));
  // Node's default answer (400, 431, 408) and close; timeouts are counted and logged first.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    let response =
      err.code === 'HPE_HEADER_OVERFLOW' ? plainResponse('431 Request Header Fields Too Large', '') : plainResponse('400 Bad Request', '');
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      const req = reading.get(socket);
      const kind = req && !req.complete ? 'body' : 'header';
      const ms = kind === 'body' ? l.bodyTimeoutMs : l.headerTimeoutMs;
      const from = socket.remoteAddress ? ` from ${socket.remoteAddress}:${socket.remotePort}` : '';
      stats.hit(
        `${kind}-timeout`,
        `connection${from} closed: its ${kind === 'body' ? 'request' : 'request headers'} did not arrive within ${ms / 1000} s`,
      );
      response = timeoutResponse(kind, ms);
    }
    const res = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (socket.writable && !res?.headersSent && err.code !== 'ECONNRESET') socket.write(response);
    socket.destroy();
  });
  // Only the keep-alive timer is set on API sockets (no server.timeout), so this is an idle connection.
  server.on('timeout', (socket: Socket) => {
    stats.hit('idle-timeout', `idle keep-alive connection closed after ${l.idleTimeoutMs / 1000} s`, 'debug');
    socket.destroy();
  });
  return server;
}

/** `--api-host NAME`: a DNS name (no port, no address), checked. */
export function parseApiHostName(s: string): string {
  const name = s.toLowerCase().replace(/\.$/, '');
  if (name.length > 253 || !/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/.test(name)) {
    throw new Error(`--api-host "${s.slice(0, 64)}": expected a DNS name such as director1.example.com (no port, no scheme)`);
  }
  return name;
}

/** A Host header's name, lower-case, without its port or a trailing dot; null when it does not parse. */
function hostName(header: string): string | null {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+))(?::\d{1,5})?$/.exec(header.trim());
  if (!m) return null;
  return (m[1] ?? m[2]!).toLowerCase().replace(/\.$/, '');
}

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/**
 * The names the TCP API answers to, against DNS rebinding: a web page of evil.example whose
 * name an attacker points at the director's address reaches the API with
 * `Host: evil.example`, and is refused. Accepted are an IP address (a page loaded from an
 * address is not an attacker's origin), `localhost` and `*.localhost` (browsers resolve
 * them to loopback themselves), the listen host when it is a name, and the `--api-host`
 * names. The port is not checked: a forwarded port (ssh -L) changes it, and rebinding
 * works through the name. A request without Host (HTTP/1.0) is not from a browser.
 */
export class HostNames {
  private readonly names: Set<string>;

  constructor(listenHost: string, extra: readonly string[] = []) {
    this.names = new Set(extra.map((n) => n.toLowerCase().replace(/\.$/, '')));
    const h = listenHost.toLowerCase().replace(/\.$/, '');
    if (!IPV4.test(h) && !h.includes(':')) this.names.add(h);
  }

  /** True when a request with this Host header may be served. */
  allows(header: string | undefined): boolean {
    if (header === undefined || header === '') return true;
    const name = hostName(header);
    if (name === null) return false;
    if (IPV4.test(name) || name.includes(':')) return true;
    return name === 'localhost' || name.endsWith('.localhost') || this.names.has(name);
  }
}
