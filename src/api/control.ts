/**
 * The control API as its clients see it. tsvsadm, `tsvs top` and the dashboard all talk
 * to tsvsd through this one interface; `src/api/client.ts` implements it over HTTP on the
 * control socket.
 */
import type { ConnView, Op, ServiceView, TableView, Timeouts } from '../core/types.js';
import type { SyncDaemonConfig } from '../sync/manager.js';

/** Sync daemon state as `ipvsadm -L --daemon` lists it. */
export interface SyncDaemonView extends SyncDaemonConfig {
  /** The daemon's message counters (tsvs extension; not printed by -L --daemon). */
  counters?: unknown;
}

/** The table's header as a streamed listing sends it first: a TableView without services. */
export type TableHead = Omit<TableView, 'services'> & { count: number };

/** A listing read service by service. */
export interface TableStream {
  head: TableHead;
  /** The head's `count` services in the daemon's order; throws if the listing is cut short. */
  services: AsyncIterable<ServiceView>;
}

export interface ControlApi {
  /** The whole table with counters and rates; services and servers in kernel order. */
  getTable(): Promise<TableView>;
  /**
   * The same table streamed service by service, for large tables. Optional: without it a
   * client reads getTable().
   */
  streamTable?(): Promise<TableStream>;
  /** The connection timeouts alone (-L --timeout). Optional: without it, from getTable(). */
  getTimeouts?(): Promise<Timeouts>;
  /** The connection table, persistence templates included. */
  getConnections(): Promise<ConnView[]>;
  /**
   * Applies the operations as one transaction: either all take effect or none do.
   * Rejects with a TsvsError carrying the failing operation's code and ipvsadm message.
   */
  apply(ops: Op[]): Promise<void>;
  /** Connection sync daemons; empty when none run. */
  getSyncDaemons(): Promise<SyncDaemonView[]>;
  /**
   * --start-daemon: rejects with DAEMON_EXISTS ("Daemon has already run") when that state
   * runs, NO_DEVICE for a missing interface. Optional: a client without it declines.
   */
  startSyncDaemon?(d: SyncDaemonView): Promise<void>;
  /** --stop-daemon: rejects with NO_DAEMON ("No daemon is running"). */
  stopSyncDaemon?(state: 'master' | 'backup'): Promise<void>;
}
