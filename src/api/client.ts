/**
 * ControlApi over HTTP on tsvsd's Unix control socket (or TCP with a token). This is how
 * tsvsadm and the other tools reach the daemon.
 */
import { request } from 'node:http';
import { TsvsError, ERROR_CODES, type ErrorCode } from '../core/errors.js';
import type { ConnView, Op, TableView } from '../core/types.js';
import type { ControlApi, SyncDaemonView } from './control.js';
import type { ServerStatus, ServiceStatus, StatusView } from './routes/view.js';

/** The daemon could not be reached at all. */
export class ConnectError extends Error {
  constructor(
    readonly target: string,
    override readonly cause: Error,
  ) {
    super(`cannot reach tsvsd at ${target}: ${cause.message}`);
    this.name = 'ConnectError';
  }
}

export interface ClientOptions {
  socketPath?: string;
  /** "http://host:port" instead of the socket. */
  baseUrl?: string;
  token?: string;
  timeoutMs?: number;
}

export class HttpControlClient implements ControlApi {
  constructor(private readonly opts: ClientOptions) {}

  get target(): string {
    return this.opts.baseUrl ?? this.opts.socketPath ?? '?';
  }

  private call<T>(method: string, path: string, body?: unknown): Promise<T> {
    return this.callWithHeaders<T>(method, path, body).then((r) => r.body);
  }

  private callWithHeaders<T>(method: string, path: string, body?: unknown): Promise<{ body: T; headers: Record<string, string | string[] | undefined> }> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(payload));
    }
    if (this.opts.token) headers.authorization = `Bearer ${this.opts.token}`;
    const url = this.opts.baseUrl ? new URL(path, this.opts.baseUrl) : undefined;
    return new Promise((resolve, reject) => {
      const req = request(
        url
          ? { method, hostname: url.hostname, port: url.port, path: url.pathname + url.search, headers }
          : { method, socketPath: this.opts.socketPath, path, headers },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (d: Buffer) => chunks.push(d));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let json: unknown;
            try {
              json = text ? JSON.parse(text) : undefined;
            } catch {
              reject(new TsvsError('INTERNAL', `tsvsd answered ${res.statusCode} with non-JSON: ${text.slice(0, 200)}`));
              return;
            }
            if ((res.statusCode ?? 500) >= 400) {
              const e = (json as { error?: { code?: string; message?: string; detail?: string } })?.error;
              const code = (e?.code && e.code in ERROR_CODES ? e.code : 'INTERNAL') as ErrorCode;
              reject(new TsvsError(code, e?.detail ?? `HTTP ${res.statusCode}`, e?.message));
              return;
            }
            resolve({ body: json as T, headers: res.headers });
          });
          res.on('error', reject);
        },
      );
      req.setTimeout(this.opts.timeoutMs ?? 30_000, () => req.destroy(new Error('timed out')));
      req.on('error', (e) => reject(new ConnectError(this.target, e)));
      if (payload !== undefined) req.write(payload);
      req.end();
    });
  }

  getTable(): Promise<TableView> {
    return this.call('GET', '/v1/table');
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
    return this.call('POST', `/v1/services/${encodeURIComponent(serviceId)}/servers/${encodeURIComponent(serverId)}/restore`, weight === undefined ? {} : { weight });
  }

  /** One page of the connection table and the total number of entries. */
  async connectionsPage(q: { offset?: number; limit?: number; service?: string; server?: string } = {}): Promise<{ total: number; items: ConnView[] }> {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v !== undefined) params.set(k, String(v));
    const r = await this.callWithHeaders<ConnView[]>('GET', `/v1/connections${params.size ? `?${params}` : ''}`);
    return { total: Number(r.headers['x-total-count'] ?? r.body.length), items: r.body };
  }

  /** The Prometheus text of /metrics. */
  metrics(): Promise<string> {
    return this.raw('GET', '/metrics');
  }

  private raw(method: string, path: string): Promise<string> {
    const headers: Record<string, string> = {};
    if (this.opts.token) headers.authorization = `Bearer ${this.opts.token}`;
    const url = this.opts.baseUrl ? new URL(path, this.opts.baseUrl) : undefined;
    return new Promise((resolve, reject) => {
      const req = request(
        url ? { method, hostname: url.hostname, port: url.port, path: url.pathname, headers } : { method, socketPath: this.opts.socketPath, path, headers },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (d: Buffer) => chunks.push(d));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            if ((res.statusCode ?? 500) >= 400) reject(new TsvsError('INTERNAL', `${path}: HTTP ${res.statusCode}: ${text.slice(0, 200)}`));
            else resolve(text);
          });
          res.on('error', reject);
        },
      );
      req.setTimeout(this.opts.timeoutMs ?? 30_000, () => req.destroy(new Error('timed out')));
      req.on('error', (e) => reject(new ConnectError(this.target, e)));
      req.end();
    });
  }
}
