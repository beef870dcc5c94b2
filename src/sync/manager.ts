/**
 * The director's connection sync daemons, as `ipvsadm --start-daemon` / `--stop-daemon`
 * manage them in the kernel: at most one master and one backup, each on a multicast
 * interface with a syncid, group, port, TTL and maximum message length. The master scans
 * the core table every `scanMs` and multicasts what is due (syncd.ts); the backup imports
 * what it receives into the core table, or, for a data plane whose kernel keeps the
 * persistence state (nftables), hands templates to the plane so that the kernel's sets get
 * them.
 *
 * `follow()` is keepalived's `lvs_sync_daemon IF INSTANCE`: the daemon's role tracks the
 * VRRP instance's state (the HA hooks call it).
 */
import type { LogFn } from '../core/log.js';
import { CONN_F_SYNC } from '../core/conn.js';
import { TsvsError } from '../core/errors.js';
import { canonicalAddr, parseIPv4 } from '../core/addr.js';
import type { Dest, VirtualService } from '../core/service.js';
import type { SyncedEntry } from '../core/synced.js';
import type { IpvsTable } from '../core/table.js';
import { DEFAULT_SYNC_MAXLEN, MAX_SYNC_MAXLEN, MESG_HEADER_LEN, SYNC_GROUP, SYNC_PORT } from './proto.js';
import { SyncBackup, SyncMaster, tableImporter, type BackupCounters, type MasterCounters, type SyncImporter } from './syncd.js';
import { interfaceMtu, openBackupSocket, openMasterSocket, type SocketParams, type SyncSocket } from './transport.js';

export type SyncState = 'master' | 'backup';

/** One daemon's settings, as --start-daemon takes them (ipvsadm's names). */
export interface SyncDaemonConfig {
  state: SyncState;
  mcastIfn: string;
  syncid: number;
  maxlen?: number;
  group?: string;
  port?: number;
  ttl?: number;
}

/** A running daemon as GET /v1/sync reports it: its settings and its counters. */
export type SyncDaemonStatus = SyncDaemonConfig & {
  counters: MasterCounters | BackupCounters;
};

/** A persistence entry for a data plane that keeps templates in the kernel. */
export interface PersistenceImport {
  svc: VirtualService;
  dest: Dest;
  /** The client network (address under the service's netmask). */
  addr: string;
  /** Seconds. */
  timeout: number;
}

/** A data plane that takes synced templates itself (nftables: the per-server sets). */
export interface PersistenceSink {
  importPersistence(entries: PersistenceImport[]): Promise<void>;
}

export function isPersistenceSink(x: unknown): x is PersistenceSink {
  return !!x && typeof (x as { importPersistence?: unknown }).importPersistence === 'function';
}

export interface SyncManagerOptions {
  table: IpvsTable;
  /** The data plane; when it is a PersistenceSink, synced templates go to it. */
  dataplane?: unknown;
  log: LogFn;
  /** How often the master scans the table (default 200 ms). */
  scanMs?: number;
  /** sysctl sync_refresh_period, ms (default 0: half the timeout, at least 10 s). */
  refreshPeriodMs?: number;
  /** Socket openers, replaceable in tests. */
  sockets?: { master: typeof openMasterSocket; backup: typeof openBackupSocket };
}

interface Running {
  cfg: SyncDaemonConfig;
  sock: SyncSocket;
  master?: SyncMaster;
  backup?: SyncBackup;
  timer?: NodeJS.Timeout;
}

function bad(detail: string): never {
  throw new TsvsError('BAD_REQUEST', detail, detail);
}

function intIn(v: unknown, lo: number, hi: number, what: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi)
    bad(`sync daemon: ${what} ${JSON.stringify(v)} must be an integer ${lo}..${hi}`);
  return v;
}

/** Checks a daemon's settings (the API's input) and fills nothing in: defaults apply at start. */
export function checkSyncDaemonConfig(raw: unknown): SyncDaemonConfig {
  if (!raw || typeof raw !== 'object') bad('sync daemon: expected an object with state and mcastIfn');
  const r = raw as Record<string, unknown>;
  if (r.state !== 'master' && r.state !== 'backup') bad(`sync daemon: state ${JSON.stringify(r.state)} must be "master" or "backup"`);
  const ifn = r.mcastIfn ?? 'eth0';
  if (typeof ifn !== 'string' || !/^[^\s/:]{1,15}$/.test(ifn))
    bad(`sync daemon: mcastIfn ${JSON.stringify(r.mcastIfn)} is not an interface name`);
  const cfg: SyncDaemonConfig = { state: r.state, mcastIfn: ifn, syncid: intIn(r.syncid, 0, 255, 'syncid') ?? 0 };
  const maxlen = intIn(r.maxlen, 1, MAX_SYNC_MAXLEN, 'maxlen');
  if (maxlen !== undefined) cfg.maxlen = maxlen;
  if (r.group !== undefined && r.group !== null) {
    const g = typeof r.group === 'string' ? canonicalAddr(r.group) : null;
    const v4 = g === null ? null : parseIPv4(g);
    if (!g || (v4 !== null ? v4 >>> 28 !== 0xe : !g.startsWith('ff')))
      bad(`sync daemon: group ${JSON.stringify(r.group)} is not a multicast address`);
    cfg.group = g;
  }
  const port = intIn(r.port, 1, 65535, 'port');
  if (port !== undefined) cfg.port = port;
  const ttl = intIn(r.ttl, 1, 255, 'ttl');
  if (ttl !== undefined) cfg.ttl = ttl;
  return cfg;
}

export class SyncManager {
  private readonly running = new Map<SyncState, Running>();
  /** Serializes start/stop/follow. */
  private queue: Promise<unknown> = Promise.resolve();
  private readonly sockets: NonNullable<SyncManagerOptions['sockets']>;

  constructor(private readonly opts: SyncManagerOptions) {
    this.sockets = opts.sockets ?? { master: openMasterSocket, backup: openBackupSocket };
  }

  private serial<T>(f: () => Promise<T>): Promise<T> {
    const run = this.queue.then(f);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** --start-daemon: DAEMON_EXISTS when that state already runs, NO_DEVICE for a missing interface. */
  start(raw: SyncDaemonConfig): Promise<void> {
    const cfg = checkSyncDaemonConfig(raw);
    return this.serial(() => this.startNow(cfg));
  }

  /** --stop-daemon: NO_DAEMON when that state does not run. */
  stop(state: SyncState): Promise<void> {
    return this.serial(() => this.stopNow(state));
  }

  /** Stops whatever runs (tsvsd's shutdown). */
  close(): Promise<void> {
    return this.serial(async () => {
      for (const s of [...this.running.keys()]) await this.stopNow(s);
    });
  }

  /** The running daemons, master first (ipvsadm -L --daemon order). */
  list(): SyncDaemonStatus[] {
    const out: SyncDaemonStatus[] = [];
    for (const state of ['master', 'backup'] as const) {
      const r = this.running.get(state);
      if (r) out.push({ ...r.cfg, counters: r.master?.counters ?? r.backup!.counters });
    }
    return out;
  }

  /**
   * Runs exactly the daemon for `role` with `base`'s settings (lvs_sync_daemon tied to a
   * VRRP instance). On becoming master, the templates that came from the old master become
   * this director's own, so that they are announced to the new backup; synced connection
   * entries are dropped (see adoptSynced).
   */
  follow(role: SyncState, base: Omit<SyncDaemonConfig, 'state'>): Promise<void> {
    const cfg = checkSyncDaemonConfig({ ...base, state: role });
    return this.serial(async () => {
      const other: SyncState = role === 'master' ? 'backup' : 'master';
      if (this.running.has(other)) await this.stopNow(other);
      if (role === 'master') this.adoptSynced();
      if (!this.running.has(role)) await this.startNow(cfg);
    });
  }

  private adoptSynced(): void {
    const t = this.opts.table;
    // Synced connection entries stand for connections that lived on the old master: with
    // the nftables plane conntrack has the real ones now (conntrackd committed them), and
    // the userspace plane's proxied connections died with the old master. Templates stay.
    const dropped = t.dropSyncedConns();
    let adopted = 0;
    for (const c of t.syncedEntries()) {
      c.flags &= ~CONN_F_SYNC;
      adopted++;
    }
    if (dropped || adopted) this.opts.log('info', 'sync: taking over synced entries as master', { adopted, dropped });
  }

  private params(cfg: SyncDaemonConfig): SocketParams {
    return { ifname: cfg.mcastIfn, group: cfg.group ?? SYNC_GROUP, port: cfg.port ?? SYNC_PORT, ttl: cfg.ttl ?? 1 };
  }

  private async startNow(cfg: SyncDaemonConfig): Promise<void> {
    if (this.running.has(cfg.state)) {
      throw new TsvsError(
        'DAEMON_EXISTS',
        `sync daemon: a ${cfg.state} sync daemon is already running (mcast=${this.running.get(cfg.state)!.cfg.mcastIfn})`,
      );
    }
    const p = this.params(cfg);
    const { log } = this.opts;
    const onError = (e: Error) => log('warn', `sync ${cfg.state}: socket error on ${cfg.mcastIfn}: ${e.message}`);
    const desc = { mcastIfn: cfg.mcastIfn, syncid: cfg.syncid, group: p.group, port: p.port };
    if (cfg.state === 'master') {
      // Like the kernel: the configured maxlen, never more than the interface's MTU allows.
      const maxlen = Math.max(MESG_HEADER_LEN + 72, Math.min(cfg.maxlen ?? DEFAULT_SYNC_MAXLEN, interfaceMtu(cfg.mcastIfn) - 28));
      const sock = await this.sockets.master(p, onError);
      const master = new SyncMaster(this.opts.table, { syncid: cfg.syncid, maxlen, refreshPeriodMs: this.opts.refreshPeriodMs ?? 0 }, (m) =>
        sock.send(m),
      );
      const r: Running = { cfg, sock, master };
      // A scan walks the whole table: on a huge table, scan less often (at most ~10% busy).
      const tick = () => {
        const t0 = performance.now();
        master.scan();
        const took = performance.now() - t0;
        if (this.running.get('master') !== r) return;
        r.timer = setTimeout(tick, Math.max(this.opts.scanMs ?? 200, took * 10));
        r.timer.unref();
      };
      this.running.set('master', r);
      log('info', `sync daemon master started on ${cfg.mcastIfn}`, { ...desc, ttl: p.ttl, maxlen });
      tick();
    } else {
      const backup = new SyncBackup(
        { syncid: cfg.syncid, onDrop: (reason, detail) => log('debug', `sync backup: message dropped (${reason}): ${detail}`) },
        this.importer(),
      );
      const sock = await this.sockets.backup(p, (m) => backup.receive(m), onError);
      this.running.set('backup', { cfg, sock, backup });
      log('info', `sync daemon backup started on ${cfg.mcastIfn}`, desc);
    }
  }

  private async stopNow(state: SyncState): Promise<void> {
    const r = this.running.get(state);
    if (!r) throw new TsvsError('NO_DAEMON', `sync daemon: no ${state} sync daemon is running`);
    this.running.delete(state);
    if (r.timer) clearTimeout(r.timer);
    await r.sock.close();
    this.opts.log('info', `sync daemon ${state} stopped`, { mcastIfn: r.cfg.mcastIfn, counters: r.master?.counters ?? r.backup?.counters });
  }

  /** Where synced entries go: the core table, templates to a PersistenceSink plane, batched per message. */
  private importer(): SyncImporter {
    const { table, dataplane, log } = this.opts;
    const toTable = tableImporter(table);
    if (!isPersistenceSink(dataplane)) return toTable;
    let batch: PersistenceImport[] = [];
    const flush = () => {
      const b = batch;
      batch = [];
      dataplane
        .importPersistence(b)
        .catch((e: Error) => log('warn', `sync backup: could not put ${b.length} synced templates into the data plane: ${e.message}`));
    };
    return (e: SyncedEntry) => {
      if (!e.template) return toTable(e);
      const svc = table.syncedService(e);
      if (!svc) return 'no-service';
      const dest = table.syncedDest(svc, e.daddr, e.dport);
      if (!dest) return 'no-dest';
      if (!batch.length) queueMicrotask(flush);
      batch.push({ svc, dest, addr: e.caddr, timeout: e.timeout || 180 });
      return undefined;
    };
  }
}
