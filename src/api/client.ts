/**
 * ControlApi over HTTP on tsvsd's Unix control socket (or TCP with a token). This is how
 * tsvsadm and the other tools reach the daemon.
 */
import { request, type IncomingMessage } from 'node:http';
import { StringDecoder } from 'node:string_decoder';
import { TsvsError, ERROR_CODES, type ErrorCode } from '../core/errors.js';
import type { ConnView, Op, ServiceView, TableView, Timeouts } from '../core/types.js';
import type { ControlApi, SyncDaemonView, TableHead, TableStream } from './control.js';
import type { ServerStatus, ServiceStatus, StatusView } from './routes/view.js';

/** The daemon could not be reached at all: nothing was sent, so nothing changed. */
export class ConnectError extends Error {
  constructor(
    readonly target: string,
    override readonly cause: Error,
  ) {
    super(`cannot reach tsvsd at ${target}: ${cause.message}`);
    this.name = 'ConnectError';
  }
}

/**
 * The request reached tsvsd but no complete answer came back (timeout, connection lost,
 * answer cut short). For a change this means it may or may not have been applied.
 */
export class NoAnswerError extends Error {
  constructor(
    readonly target: string,
    readonly why: string,
    /** Whether the request would have changed the table. */
    readonly change: boolean,
  ) {
    super(
      change
        ? `tsvsd at ${target} did not answer (${why}): the change may or may not have been applied; check with tsvsadm -Sn`
        : `tsvsd at ${target} did not answer (${why})`,
    );
    this.name = 'NoAnswerError';
  }
}

export interface ClientOptions {
  socketPath?: string;
  /** "http://host:port" instead of the socket. */
  baseUrl?: string;
  token?: string;
  /** Longest silence while waiting for a read, in ms (default 30 s). */
  timeoutMs?: number;
  /**
   * How long a change may take before the client gives up, in ms (default 10 minutes:
   * a 50,000-line batch is validated and applied before tsvsd answers, and giving up
   * early would leave the caller unsure whether it was applied).
   */
  applyTimeoutMs?: number;
}

/** Default wait for reads and for changes. */
const READ_TIMEOUT_MS = 30_000;
const APPLY_TIMEOUT_MS = 600_000;
/** The most of a non-JSON answer an error message quotes. */
const QUOTE_CHARS = 200;

export class HttpControlClient implements ControlApi {
  constructor(private readonly opts: ClientOptions) {}

  get target(): string {
    return this.opts.baseUrl ?? this.opts.socketPath ?? '?';
  }

  private call<T>(method: string, path: string, body?: unknown): Promise<T> {
    return this.callWithHeaders<T>(method, path, body).then((r) => r.body);
  }

  /**
   * Sends one request and resolves with the response once its headers are in. Failing
   * before the request went out is a ConnectError (nothing sent); failing after is a
   * NoAnswerError, so that a caller can say whether a change may have been applied.
   */
  private send(method: string, path: string, payload: string | undefined, accept: string, timeoutMs: number): Promise<IncomingMessage> {
    const headers: Record<string, string> = { accept };
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(payload));
    }
    if (this.opts.token) headers.authorization = `Bearer ${this.opts.token}`;
    const url = this.opts.baseUrl ? new URL(path, this.opts.baseUrl) : undefined;
    const change = method !== 'GET';
    return new Promise((resolve, reject) => {
      let connected = false;
      const req = request(
        url
          ? { method, hostname: url.hostname, port: url.port, path: url.pathname + url.search, headers }
          : { method, socketPath: this.opts.socketPath, path, headers },
        // The timeout below stays armed while the body is read: a silence that long in the
        // middle of an answer ends it too (the body's reader sees it as cut short).
        (res) => resolve(res),
      );
      req.on('socket', (sock) => {
        if (!sock.connecting) connected = true;
        else sock.once('connect', () => (connected = true));
      });
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${Math.round(timeoutMs / 1000)} s`)));
      req.on('error', (e) => reject(connected ? new NoAnswerError(this.target, e.message, change) : new ConnectError(this.target, e)));
      if (payload !== undefined) req.write(payload);
      req.end();
    });
  }

  private async callWithHeaders<T>(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ body: T; headers: Record<string, string | string[] | undefined> }> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const change = method !== 'GET';
    const timeoutMs = change ? (this.opts.applyTimeoutMs ?? APPLY_TIMEOUT_MS) : (this.opts.timeoutMs ?? READ_TIMEOUT_MS);
    const res = await this.send(method, path, payload, 'application/json', timeoutMs);
    const text = await readBody(res, this.target, change);
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      throw new TsvsError('INTERNAL', `tsvsd answered ${res.statusCode} with non-JSON: ${text.slice(0, QUOTE_CHARS)}`);
    }
    if ((res.statusCode ?? 500) >= 400) throw errorFromBody(json, res.statusCode);
    return { body: json as T, headers: res.headers };
  }

  /**
   * The table as NDJSON: a head line, then one service per line, then an end line. Nothing
   * holds the whole listing as one string on either side, and tsvsd keeps serving other
   * clients between batches. Each service is consistent in itself; a change applied while
   * the listing is sent shows in the services not yet sent (as a kernel netlink dump).
   */
  async streamTable(): Promise<TableStream> {
    const res = await this.send('GET', '/v1/table', undefined, NDJSON, this.opts.timeoutMs ?? READ_TIMEOUT_MS);
    if ((res.statusCode ?? 500) >= 400 || !String(res.headers['content-type'] ?? '').startsWith(NDJSON)) {
      // An error, or an older tsvsd that answers with the whole table as JSON.
      const text = await readBody(res, this.target, false);
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        throw new TsvsError('INTERNAL', `tsvsd answered ${res.statusCode} with non-JSON: ${text.slice(0, QUOTE_CHARS)}`);
      }
      if ((res.statusCode ?? 500) >= 400) throw errorFromBody(json, res.statusCode);
      const { services, ...rest } = json as TableView;
      return {
        head: { ...rest, count: services.length },
        services: (async function* () {
          yield* services;
        })(),
      };
    }
    const lines = ndjsonLines(res, this.target)[Symbol.asyncIterator]();
    const first = await lines.next();
    if (first.done) throw new NoAnswerError(this.target, 'the listing ended before its first line', false);
    const head = first.value as TableHead;
    const target = this.target;
    async function* services(): AsyncGenerator<ServiceView> {
      for (let i = 0; i < head.count; i++) {
        const r = await lines.next();
        if (r.done) throw new NoAnswerError(target, `the listing was cut short after ${i} of ${head.count} services`, false);
        yield r.value as ServiceView;
      }
      const end = await lines.next();
      if (end.done || !(end.value as { end?: unknown }).end)
        throw new NoAnswerError(target, 'the listing did not end where its head said', false);
      // Read the answer to its very end: a response left half-read keeps its socket open,
      // and the process waiting for tsvsd's keep-alive timer (5 s) before it can exit.
      while (!(await lines.next()).done);
    }
    return { head, services: services() };
  }

  getTable(): Promise<TableView> {
    return this.call('GET', '/v1/table');
  }

  getTimeouts(): Promise<Timeouts> {
    return this.call('GET', '/v1/timeouts');
  }

  getConnections(): Promise<ConnView[]> {
    return this.call('GET', '/v1/connections');
  }

  async apply(ops: Op[]): Promise<void> {
    await this.call('POST', '/v1/ops', { ops });
  }

  getSyncDaemons(): Promise<SyncDaemonView[]> {
    return this.call('GET', '/v1/sync');
  }

  async startSyncDaemon(d: SyncDaemonView): Promise<void> {
    await this.call('POST', '/v1/sync', d);
  }

  async stopSyncDaemon(state: 'master' | 'backup'): Promise<void> {
    await this.call('DELETE', `/v1/sync/${state}`);
  }

  info(): Promise<{ name: string; version: string; pid: number; dataplane: string }> {
    return this.call('GET', '/v1/info');
  }

  /** Services, real servers, health, counters, rates and data plane errors in one snapshot. */
  status(): Promise<StatusView> {
    return this.call('GET', '/v1/status');
  }

  server(serviceId: string, serverId: string): Promise<ServerStatus> {
    return this.call('GET', `/v1/services/${encodeURIComponent(serviceId)}/servers/${encodeURIComponent(serverId)}`);
  }

  service(serviceId: string): Promise<ServiceStatus> {
    return this.call('GET', `/v1/services/${encodeURIComponent(serviceId)}`);
  }

  /** Weight 0 through the API; the answer counts the connections still open. */
  drain(serviceId: string, serverId: string): Promise<ServerStatus & { previousWeight: number; remaining: number }> {
    return this.call('POST', `/v1/services/${encodeURIComponent(serviceId)}/servers/${encodeURIComponent(serverId)}/drain`);
  }

  restore(serviceId: string, serverId: string, weight?: number): Promise<ServerStatus> {
    return this.call(
      'POST',
      `/v1/services/${encodeURIComponent(serviceId)}/servers/${encodeURIComponent(serverId)}/restore`,
      weight === undefined ? {} : { weight },
    );
  }

  /** One page of the connection table and the total number of entries. */
  async connectionsPage(
    q: { offset?: number; limit?: number; service?: string; server?: string } = {},
  ): Promise<{ total: number; items: ConnView[] }> {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v !== undefined) params.set(k, String(v));
    const r = await this.callWithHeaders<ConnView[]>('GET', `/v1/connections${params.size ? `?${params}` : ''}`);
    return { total: Number(r.headers['x-total-count'] ?? r.body.length), items: r.body };
  }

  /** The Prometheus text of /metrics. */
  metrics(): Promise<string> {
    return this.raw('GET', '/metrics');
  }

  private async raw(method: string, path: string): Promise<string> {
    const res = await this.send(method, path, undefined, '*/*', this.opts.timeoutMs ?? READ_TIMEOUT_MS);
    const text = await readBody(res, this.target, false);
    if ((res.statusCode ?? 500) >= 400) throw new TsvsError('INTERNAL', `${path}: HTTP ${res.statusCode}: ${text.slice(0, QUOTE_CHARS)}`);
    return text;
  }
}

const NDJSON = 'application/x-ndjson';

/** A refusal of one operation in a batch: `index` says which (POST /v1/ops). */
export class BatchError extends TsvsError {
  constructor(
    code: ErrorCode,
    detail: string,
    message: string | undefined,
    readonly index: number,
  ) {
    super(code, detail, message);
  }
}

/** A TsvsError from an error answer's `{ error: { code, message, detail, index? } }`. */
function errorFromBody(json: unknown, status: number | undefined): TsvsError {
  const e = (json as { error?: { code?: string; message?: string; detail?: string; index?: unknown } })?.error;
  const code = (e?.code && e.code in ERROR_CODES ? e.code : 'INTERNAL') as ErrorCode;
  const detail = e?.detail ?? `HTTP ${status}`;
  if (typeof e?.index === 'number') return new BatchError(code, detail, e.message, e.index);
  return new TsvsError(code, detail, e?.message);
}

/** The whole body as text; a body cut short is a NoAnswerError. */
function readBody(res: IncomingMessage, target: string, change: boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (d: Buffer) => chunks.push(d));
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', (e) => reject(new NoAnswerError(target, e.message, change)));
    res.on('aborted', () => reject(new NoAnswerError(target, 'the answer was cut short', change)));
  });
}

/** Parsed lines of an NDJSON body, read as they arrive. */
async function* ndjsonLines(res: IncomingMessage, target: string): AsyncGenerator<unknown> {
  // A chunk may end inside a UTF-8 sequence; the decoder carries it over.
  const decoder = new StringDecoder('utf8');
  let rest = '';
  try {
    for await (const chunk of res as AsyncIterable<Buffer>) {
      const text = rest + decoder.write(chunk);
      let from = 0;
      for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', from)) {
        if (nl > from) yield JSON.parse(text.slice(from, nl));
        from = nl + 1;
      }
      rest = text.slice(from);
    }
  } catch (e) {
    if (e instanceof SyntaxError) throw new TsvsError('INTERNAL', `tsvsd sent a listing line that is not JSON: ${e.message}`);
    throw new NoAnswerError(target, (e as Error).message, false);
  }
  if (rest.trim() !== '') yield JSON.parse(rest);
}
