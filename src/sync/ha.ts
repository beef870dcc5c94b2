/**
 * State sync wired into a director: the IPVS-format sync daemons (manager.ts) and
 * conntrackd (conntrackd.ts), started from the configuration's `sync` section, and the
 * HaTransitionHooks the VRRP speaker calls around its VIP changes.
 *
 * Transition order (DESIGN.md, measured; keepalived's primary-backup.sh):
 *   becoming MASTER: beforeMaster: conntrackd -c  | speaker: VIPs + GARP |
 *                    afterMaster: conntrackd -f, -R, -B; sync daemon -> master
 *   becoming BACKUP: speaker: drop VIPs | afterBackup: conntrackd -t, -n; sync daemon -> backup
 * Transitions are run one after the other: a new one waits for the previous one to finish.
 *
 * `lvs_sync_daemon IF` without an instance runs both daemons at once (keepalived does the
 * same); with an instance, the backup daemon runs until that instance becomes MASTER.
 */
import type { LogFn } from '../core/log.js';
import { dirname, join } from 'node:path';
import type { IpvsTable } from '../core/table.js';
import type { HaTransitionHooks } from '../ha/hooks.js';
import { ConntrackdSupervisor, checkConntrackdSettings, type ConntrackdSettings } from './conntrackd.js';
import { SyncManager, checkSyncDaemonConfig, type SyncDaemonConfig, type SyncManagerOptions } from './manager.js';

/** The sync daemon of the configuration (keepalived's lvs_sync_daemon). */
export interface SyncDaemonSettings extends Omit<SyncDaemonConfig, 'state' | 'syncid'> {
  /** Follow this VRRP instance's state; without it both daemons run. */
  instance?: string;
  /** Default: the instance's virtual_router_id, else 0 (keepalived's default). */
  syncid?: number;
}

/** The `sync` section of a tsvs configuration. */
export interface SyncSettings {
  daemon?: SyncDaemonSettings;
  conntrackd?: ConntrackdSettings;
}

export interface SyncSetupOptions {
  table: IpvsTable;
  dataplane?: unknown;
  log: LogFn;
  settings?: SyncSettings | undefined;
  /** VRRP instances by name with their VRID, for the default syncid. */
  vrids?: ReadonlyMap<string, number>;
  /** tsvsd's control socket; conntrackd's files go into a directory next to it. */
  socketPath: string;
  /** Master scan period (tests). */
  scanMs?: number;
  /** Sync daemon socket openers (tests). */
  sockets?: SyncManagerOptions['sockets'];
  /** Builds the conntrackd supervisor (tests substitute one that records its commands). */
  makeConntrackd?: (settings: ConntrackdSettings, stateDir: string, log: LogFn) => ConntrackdControl;
}

/** What the hooks need of conntrackd (ConntrackdSupervisor). */
export type ConntrackdControl = Pick<ConntrackdSupervisor, 'settings' | 'start' | 'stop' | 'ctl'>;

/** What tsvsd holds: the sync daemons (for the API), the hooks (for VRRP), and a stop. */
export interface SyncSetup {
  manager: SyncManager;
  conntrackd: ConntrackdControl | null;
  hooks: HaTransitionHooks;
  stop(): Promise<void>;
}

export async function setupSync(o: SyncSetupOptions): Promise<SyncSetup> {
  const manager = new SyncManager({
    table: o.table,
    dataplane: o.dataplane,
    log: o.log,
    ...(o.scanMs ? { scanMs: o.scanMs } : {}),
    ...(o.sockets ? { sockets: o.sockets } : {}),
  });
  const s = o.settings ?? {};
  let ct: ConntrackdControl | null = null;
  if (s.conntrackd) {
    checkConntrackdSettings(s.conntrackd, 'sync.conntrackd');
    const make = o.makeConntrackd ?? ((st, dir, log) => new ConntrackdSupervisor(st, dir, log));
    ct = make(s.conntrackd, s.conntrackd.stateDir ?? join(dirname(o.socketPath), 'conntrackd'), o.log);
    await ct.start();
    // A director starts as backup: ask the peer for its table.
    await ct.ctl(['-n']);
  }
  let base: Omit<SyncDaemonConfig, 'state'> | null = null;
  const d = s.daemon;
  try {
    if (d) {
      const syncid = d.syncid ?? (d.instance ? o.vrids?.get(d.instance) : undefined) ?? 0;
      const { instance: _i, ...rest } = d;
      base = { ...rest, syncid };
      checkSyncDaemonConfig({ ...base, state: 'backup' });
      if (!d.instance) await manager.start({ ...base, state: 'master' });
      await manager.start({ ...base, state: 'backup' });
    }
  } catch (e) {
    await manager.close();
    await ct?.stop();
    throw e;
  }

  const follows = (instance: string, name: string | undefined) => name === undefined || name === instance;
  let chain: Promise<unknown> = Promise.resolve();
  const serial = (f: () => Promise<void>): Promise<void> => {
    const run = chain.then(f);
    chain = run.catch((e: Error) => o.log('error', `sync: transition hook failed: ${e.message}`));
    return run;
  };
  const hooks: HaTransitionHooks = {
    beforeMaster: (instance) =>
      serial(async () => {
        if (ct && follows(instance, ct.settings.instance)) await ct.ctl(['-c']);
      }),
    afterMaster: (instance) =>
      serial(async () => {
        if (ct && follows(instance, ct.settings.instance)) {
          for (const a of ['-f', '-R', '-B']) await ct.ctl([a]);
        }
        if (base && d?.instance === instance) await manager.follow('master', base);
      }),
    afterBackup: (instance) =>
      serial(async () => {
        if (ct && follows(instance, ct.settings.instance)) {
          for (const a of ['-t', '-n']) await ct.ctl([a]);
        }
        if (base && d?.instance === instance) await manager.follow('backup', base);
      }),
  };
  return {
    manager,
    conntrackd: ct,
    hooks,
    stop: async () => {
      await chain.catch(() => undefined);
      await manager.close();
      await ct?.stop();
    },
  };
}
