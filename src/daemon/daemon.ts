/**
 * Starting and stopping a director process: logger, table, data plane, restored state,
 * health checks, state sync, VRRP, the control socket and the optional TCP API, one named
 * step each (startDaemon). `bin/tsvsd.ts` calls `runDaemon` with process.argv; `tsvs demo`
 * runs that bin as a child process.
 */
import { promises as fsp, readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { getRequestListener } from '@hono/node-server';
import { pino, type Logger } from 'pino';
import { createControlApp, reloadCounted, type ApiOptions } from '../api/server.js';
import {
  createApiServer,
  DEFAULT_API_MAX_CONNECTIONS,
  DEFAULT_BODY_TIMEOUT_MS,
  DEFAULT_HEADER_TIMEOUT_MS,
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_SOCKET_MAX_CONNECTIONS,
  HostNames,
  ListenerStats,
  parseApiHostName,
  type ListenerLimits,
} from '../api/listener.js';
import { defaultSocketPath, formatListenAddress, parseHostPort, prepareSocketPath, socketAnswers, socketInUse } from '../api/socket.js';
import { ERROR_CODES, isTsvsError } from '../core/errors.js';
import { destId, serviceLabel } from '../core/service.js';
import { VrrpSpeaker } from '../ha/speaker.js';
import { setupSync, type SyncSetup } from '../sync/ha.js';
import { IpvsTable } from '../core/table.js';
import { getScheduler } from '../schedulers/index.js';
import type { LogFn } from '../core/log.js';
import type { Op } from '../core/types.js';
import type { DataPlane } from '../dataplane/dataplane.js';
import { createDataPlane, DATAPLANE_NAMES, type DataPlaneName } from '../dataplane/index.js';
import { LIMIT_ARG_OPTIONS, LIMIT_ARG_USAGE, type LimitArgs, parseLimitArgs } from '../dataplane/limits-args.js';
import { loadConfig, type LoadedConfig } from '../config/load.js';
import { Director } from './director.js';
import { ConfigManager, type ReloadResult } from './reload.js';
import { configToOps, StateStore } from './state.js';
import { VERSION } from '../version.js';

/** tsvsd's command line, checked. */
interface DaemonOptions {
  config?: string | undefined;
  state?: string | undefined;
  socket: string;
  dataplane: DataPlaneName;
  api?: string | undefined;
  apiToken?: string | undefined;
  /** With a token: let reads through without it (the token still guards changes). */
  apiPublicRead?: boolean | undefined;
  /** --api-host: more names the TCP API answers to (DNS rebinding check). */
  apiHosts: string[];
  /** The bounds of the control socket's and the TCP API's connections. */
  socketLimits: ListenerLimits;
  apiLimits: ListenerLimits;
  logLevel: string;
  drainMs: number;
  /** Userspace plane worker threads (--workers N|auto); default 1. */
  workers?: number | undefined;
  /** Connection limits and redispatch (--max-conns ..., dataplane/limits-args.ts). */
  limits?: LimitArgs | undefined;
}

/** A running director process, as runDaemon holds it until a signal stops it. */
interface DaemonHandle {
  director: Director;
  log: Logger;
  /** The --config file as running, with its health engine; null without --config. */
  config: ConfigManager | null;
  /** Re-reads --config and applies the difference (SIGHUP does this). */
  reload(): Promise<ReloadResult>;
  /** Drains and stops everything; resolves when done. */
  stop(): Promise<void>;
}

const USAGE = `Usage: tsvsd [options]

The tsvs director daemon: holds the LVS table, carries traffic through a data plane,
and serves the control API that tsvsadm, tsvs and the dashboard use.

Options:
  --config FILE         the configuration: tsvs YAML or keepalived.conf (services,
                        real servers, health checks, VRRP instances (needs root);
                        SIGHUP reloads it as a diff),
                        or ipvsadm rules (ipvsadm -S format, loaded when there is
                        no saved state); the format is detected from the file
  --state FILE          the live table, restored at start: a snapshot in FILE
                        and every change since appended to FILE.journal; on a
                        full or read-only disk changes stay applied, tsvsd runs
                        unsaved and saves again by itself (docs/state.md)
  --socket PATH         control socket (default: $TSVS_SOCKET, else
                        /run/tsvs/tsvsd.sock as root, else $XDG_RUNTIME_DIR or
                        $TMPDIR/tsvs-UID/tsvsd.sock)
  --dataplane NAME      userspace (default) or nftables
  --api HOST:PORT       also serve the HTTP API on TCP
  --api-token-file FILE bearer token for the TCP API (also $TSVS_API_TOKEN), at
                        least 32 characters (openssl rand -hex 16); it is
                        required for every call, reads included; without one the
                        TCP API is read-only and open
  --api-public-read     with a token, let reads (GET routes, /metrics, the
                        dashboard) through without it; changes still need it
  --api-host NAME       a DNS name of this director that the TCP API answers to
                        (repeatable); besides it, only IP addresses and localhost
                        are accepted in Host (DNS rebinding protection)
  --api-max-conns N     open TCP API connections at most (default 256)
  --socket-max-conns N  open control socket connections at most (default 64)
  --api-header-timeout SECS  request headers must arrive within SECS (default 10)
  --api-body-timeout SECS    the whole request within SECS (default 60)
  --api-idle-timeout SECS    close a kept-alive connection idle for SECS (default 5)
  --drain-timeout SECS  on SIGTERM, wait this long for open connections (default 10)
  --workers N|auto      userspace plane: N threads carry TCP on SO_REUSEPORT
                        listeners, one scheduler (default 1; auto = one per core)
${LIMIT_ARG_USAGE}  --log-level LEVEL     trace, debug, info (default), warn, error
  -h, --help            this text
  -v, --version         print the version
`;

function parseDaemonArgs(argv: string[]): DaemonOptions | { help: true } | { version: true } {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      config: { type: 'string' },
      state: { type: 'string' },
      socket: { type: 'string' },
      dataplane: { type: 'string' },
      api: { type: 'string' },
      'api-token-file': { type: 'string' },
      'api-public-read': { type: 'boolean' },
      'api-host': { type: 'string', multiple: true },
      'api-max-conns': { type: 'string' },
      'socket-max-conns': { type: 'string' },
      'api-header-timeout': { type: 'string' },
      'api-body-timeout': { type: 'string' },
      'api-idle-timeout': { type: 'string' },
      'drain-timeout': { type: 'string' },
      workers: { type: 'string' },
      ...LIMIT_ARG_OPTIONS,
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'v' },
    },
  });
  if (values.help) return { help: true };
  if (values.version) return { version: true };
  if (positionals.length) throw new Error(`unexpected argument "${positionals[0]}"`);
  const dataplane = (values.dataplane ?? 'userspace') as DataPlaneName;
  if (!DATAPLANE_NAMES.includes(dataplane)) {
    throw new Error(`--dataplane "${dataplane}": must be ${DATAPLANE_NAMES.join(' or ')}`);
  }
  const level = values['log-level'] ?? 'info';
  if (!['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'].includes(level)) {
    throw new Error(`--log-level "${level}": must be trace, debug, info, warn or error`);
  }
  const drain = values['drain-timeout'] === undefined ? 10 : Number(values['drain-timeout']);
  if (!Number.isFinite(drain) || drain < 0)
    throw new Error(`--drain-timeout "${values['drain-timeout']}": must be a number of seconds >= 0`);
  if (values.api !== undefined) parseHostPort(values.api);
  const workers = values.workers === undefined ? 1 : values.workers === 'auto' ? availableParallelism() : Number(values.workers);
  if (!Number.isInteger(workers) || workers < 1 || workers > 256)
    throw new Error(`--workers "${values.workers}": must be a number from 1 to 256, or auto`);
  if (workers > 1 && dataplane !== 'userspace')
    throw new Error('--workers applies to the userspace data plane only (the nftables plane carries packets in the kernel)');
  let apiToken = process.env.TSVS_API_TOKEN || undefined;
  let tokenFrom = '$TSVS_API_TOKEN';
  if (values['api-token-file']) {
    apiToken = readFileSync(values['api-token-file'], 'utf8').trim();
    tokenFrom = `--api-token-file ${values['api-token-file']}`;
    if (!apiToken) throw new Error(`${tokenFrom}: file is empty`);
  }
  // 32 characters of `openssl rand -hex 16` are 128 random bits: beyond guessing over the network.
  if (apiToken !== undefined && (values.api !== undefined || values['api-token-file']) && apiToken.length < MIN_TOKEN_LENGTH) {
    throw new Error(
      `${tokenFrom}: the API token has ${apiToken.length} characters; tsvsd needs at least ${MIN_TOKEN_LENGTH} ` +
        '(a short token can be guessed by trying): make one with openssl rand -hex 16',
    );
  }
  const apiHosts = (values['api-host'] ?? []).map(parseApiHostName);
  const timeouts = {
    headerTimeoutMs: secondsOption(values['api-header-timeout'], '--api-header-timeout', DEFAULT_HEADER_TIMEOUT_MS),
    bodyTimeoutMs: secondsOption(values['api-body-timeout'], '--api-body-timeout', DEFAULT_BODY_TIMEOUT_MS),
    idleTimeoutMs: secondsOption(values['api-idle-timeout'], '--api-idle-timeout', DEFAULT_IDLE_TIMEOUT_MS),
  };
  if (timeouts.headerTimeoutMs > timeouts.bodyTimeoutMs) {
    throw new Error(
      `--api-header-timeout ${timeouts.headerTimeoutMs / 1000} is longer than --api-body-timeout ${timeouts.bodyTimeoutMs / 1000}: ` +
        'the body timeout counts the whole request, headers included',
    );
  }
  return {
    config: values.config,
    state: values.state,
    socket: values.socket ?? defaultSocketPath(),
    dataplane,
    api: values.api,
    apiToken,
    apiPublicRead: values['api-public-read'],
    apiHosts,
    socketLimits: {
      maxConnections: countOption(values['socket-max-conns'], '--socket-max-conns', DEFAULT_SOCKET_MAX_CONNECTIONS),
      ...timeouts,
    },
    apiLimits: { maxConnections: countOption(values['api-max-conns'], '--api-max-conns', DEFAULT_API_MAX_CONNECTIONS), ...timeouts },
    logLevel: level,
    drainMs: drain * 1000,
    workers,
    limits: parseLimitArgs(values),
  };
}

/** The shortest API token tsvsd takes (32 hex characters are 16 random bytes). */
const MIN_TOKEN_LENGTH = 32;

/** A --*-timeout option in seconds (fractions allowed), as milliseconds. */
function secondsOption(v: string | undefined, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!/^\d+(\.\d+)?$/.test(v) || n <= 0 || n > 86_400) throw new Error(`${name} "${v}": must be a number of seconds > 0 and <= 86400`);
  return Math.max(1, Math.round(n * 1000));
}

/** A --*-max-conns option. */
function countOption(v: string | undefined, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!/^\d{1,6}$/.test(v) || n < 1) throw new Error(`${name} "${v}": must be a number of connections from 1 to 999999`);
  return n;
}

/**
 * Binds the control socket, refusing to take over one that a live tsvsd still answers on,
 * an unsafe directory, or a path that is not a stale socket (prepareSocketPath).
 */
async function listenControlSocket(server: Server, path: string): Promise<void> {
  await prepareSocketPath(path);
  // The socket is created 0600: only its owner (root on a director) may change the table.
  const old = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } finally {
    process.umask(old);
  }
}

/** What a failed start takes down again: the steps already started, last first. */
type Undo = Array<() => unknown>;

/** Builds the core table and the data plane, and starts the director over them (state file not read yet). */
async function buildDirector(opts: DaemonOptions, log: Logger): Promise<{ director: Director; store: StateStore | null }> {
  const table = new IpvsTable({ schedulers: getScheduler });
  const dataplane = await createDataPlane(opts.dataplane, {
    log: (level, msg, fields) => log[level]({ ...fields, component: opts.dataplane }, msg),
    workers: opts.workers,
    limits: opts.limits,
  });
  const store = opts.state
    ? new StateStore(opts.state, { log: (level, msg, fields) => log[level]({ ...fields, component: 'state' }, msg) })
    : null;
  const director = new Director(table, dataplane, store, log);
  await director.start();
  return { director, store };
}

/** Reads --config and refuses one that this host cannot run (VRRP without raw sockets or non-local binds). */
async function loadDaemonConfig(path: string, dataplane: DataPlane): Promise<LoadedConfig> {
  let loaded: LoadedConfig;
  try {
    loaded = await loadConfig(path, { thread: 'worker' });
  } catch (e) {
    // Every error of the file, one "file:line:column: message" per line.
    throw new Error(isTsvsError(e) ? `invalid configuration:\n${e.detail}` : (e as Error).message);
  }
  // VRRP needs raw sockets: refuse to start rather than run without failover.
  const n = loaded.config.vrrp.length;
  const problem = n ? VrrpSpeaker.problem() : null;
  if (problem) throw new Error(`VRRP cannot run, so tsvsd will not start (${path} configures ${n} vrrp instance(s)): ${problem}`);
  const nonlocal = n && dataplane.name === 'userspace' ? vipBindProblem(loaded.config) : null;
  if (nonlocal) throw new Error(nonlocal);
  return loaded;
}

/**
 * Restores the table from the state file, or else from a rules file, and opens the state
 * file for the changes to come. A rules file (ipvsadm -S): the saved table wins, as it
 * holds every change made since. YAML / keepalived.conf: the saved table is restored, then
 * the config applied over it as a reload would (startHealth; see src/config/diff.ts).
 */
async function openState(
  opts: DaemonOptions,
  director: Director,
  store: StateStore | null,
  loaded: LoadedConfig | null,
  log: Logger,
): Promise<void> {
  // A second tsvsd on the same socket must not touch the running one's state file.
  if (store && (await socketAnswers(opts.socket))) throw new Error(socketInUse(opts.socket));
  const saved = store ? await store.load() : null;
  let initial: Op[] = [];
  let source = '';
  if (saved) {
    initial = configToOps(saved);
    source = `state file ${opts.state}`;
  } else if (loaded?.ops) {
    initial = loaded.ops;
    source = `config ${opts.config}`;
  }
  if (initial.length) {
    try {
      // Saved whole just below, rather than journaled as one huge batch.
      await director.restore(initial);
    } catch (e) {
      const why = isTsvsError(e) ? `${e.detail} (${e.message})` : (e as Error).message;
      log.warn({ source, err: why }, `the table from ${source} does not come up whole (${why}); restoring it one service at a time`);
      await restoreEach(director, initial, source, saved && store ? store : null, log);
    }
    log.info({ services: director.table.list().length, source }, 'table restored');
  }
  if (store) {
    // A fresh snapshot of the restored table and an empty journal; then every change is journaled.
    // A full or read-only disk does not stop the start: tsvsd runs unsaved, says so, and retries (docs/state.md).
    try {
      await store.open(() => director.table.config());
    } catch (e) {
      throw new Error(`cannot write the state file ${store.path}: ${(e as Error).message} (check the --state path)`);
    }
    const st = store.status();
    if (!st.saved) {
      process.stderr.write(
        `tsvsd: warning: state file ${store.path} cannot be written (${st.lastError}): running UNSAVED; changes are applied but a restart loses them until the disk takes the table again (tsvsadm exits 3 for each)\n`,
      );
    }
  }
}

/**
 * Brings up every service of a restore that did not apply whole (Director.restoreEach) and
 * reports the rest. A service whose port another program holds is in the table, and the
 * data plane retries it. A service whose saved entry does not apply is left out; the state
 * files are then copied to FILE.corrupt-<time> first, since the fresh snapshot written next
 * no longer holds it (no copy, no start).
 */
async function restoreEach(director: Director, ops: Op[], source: string, store: StateStore | null, log: Logger): Promise<void> {
  const report = await director.restoreEach(ops);
  for (const s of report.unbound) {
    log.error(
      { service: s, source },
      `${s}: restored into the table, but the data plane cannot carry it yet; it keeps trying (GET /v1/status "unbound")`,
    );
  }
  if (!report.skipped.length) return;
  let kept = '';
  if (store) {
    const stamp = new Date().toISOString().replace(/[-:]|\.\d+/g, '');
    try {
      for (const f of [store.path, store.journalPath]) {
        await fsp.copyFile(f, `${f}.corrupt-${stamp}`).catch((e: NodeJS.ErrnoException) => {
          if (e.code !== 'ENOENT') throw e;
        });
      }
    } catch (e) {
      const first = report.skipped[0]!;
      throw new Error(
        `cannot restore ${first.service} from ${source} (${first.reason}), and cannot keep a copy of the state file to start without it: ${(e as Error).message}`,
      );
    }
    kept = ` The state files as they were are kept as ${store.path}.corrupt-${stamp} (and .journal.corrupt-${stamp}).`;
  }
  for (const s of report.skipped) {
    const msg = `${s.service}: not restored from ${source}: ${s.reason}; every other service is up.${kept} Add it again once fixed (tsvsadm -A ...).`;
    log.error({ service: s.service, source, reason: s.reason }, msg);
    process.stderr.write(`tsvsd: ${msg}\n`);
  }
}

/** Applies the config's services over the table and starts its health checks (ConfigManager). */
async function startHealth(manager: ConfigManager, loaded: LoadedConfig, path: string): Promise<void> {
  try {
    await manager.start(loaded);
  } catch (e) {
    const why = isTsvsError(e) ? `${e.detail} (${e.message})` : (e as Error).message;
    throw new Error(`cannot apply config ${path}: ${why}`);
  }
}

/** State sync (src/sync): the config's sync daemons and conntrackd, and the VRRP hooks. */
async function startSync(opts: DaemonOptions, director: Director, loaded: LoadedConfig | null, log: Logger): Promise<SyncSetup> {
  try {
    return await setupSync({
      table: director.table,
      dataplane: director.dataplane,
      log: (level, msg, fields) => log[level]({ ...fields, component: 'sync' }, msg),
      settings: loaded?.config.sync,
      vrids: new Map((loaded?.config.vrrp ?? []).map((v) => [v.name, v.virtualRouterId ?? 0])),
      socketPath: opts.socket,
    });
  } catch (e) {
    throw new Error(`cannot start state sync: ${isTsvsError(e) ? e.detail : (e as Error).message}`);
  }
}

/** The VRRP side: the speaker, once the config has instances (at start or on a later reload). */
interface Ha {
  speaker: VrrpSpeaker | null;
  readonly deps: ConstructorParameters<typeof VrrpSpeaker>[0];
}

/** VRRP, once the table is in place: a director that becomes master serves at once. */
async function startHa(manager: ConfigManager | null, loaded: LoadedConfig | null, sync: SyncSetup, log: Logger, undo: Undo): Promise<Ha> {
  const ha: Ha = {
    speaker: null,
    deps: {
      log,
      hooks: sync.hooks,
      healthDown: () => {
        const cur = manager?.current;
        if (!cur || !manager) return [];
        return cur.services
          .filter((s) => s.realServers.length > 0 && s.realServers.every((rs) => manager.engine.get(s, destId(rs)).state === 'down'))
          .map((s) => serviceLabel(s));
      },
    },
  };
  // A speaker that a reload starts later is stopped too.
  undo.push(() => ha.speaker?.stop());
  if (loaded?.config.vrrp.length) {
    ha.speaker = new VrrpSpeaker(ha.deps);
    try {
      await ha.speaker.start(loaded.config.vrrp, loaded.config.vrrpScripts ?? []);
    } catch (e) {
      throw new Error(`cannot start VRRP: ${isTsvsError(e) ? e.detail : (e as Error).message}`);
    }
  }
  return ha;
}

/** Re-reads --config and applies the difference, VRRP included (SIGHUP and POST /v1/reload). */
function reloader(manager: ConfigManager | null, ha: Ha, log: Logger): () => Promise<ReloadResult> {
  return async () => {
    if (!manager) {
      log.warn('reload: tsvsd was started without --config; nothing to reload, the table is unchanged');
      return { ok: false, changes: [], error: 'tsvsd was started without --config' };
    }
    const res = await manager.reload();
    if (!res.ok || !manager.current) return res;
    // VRRP follows the file too: instances added, removed, restarted or updated in place.
    const cur = manager.current;
    try {
      if (ha.speaker) res.changes.push(...(await ha.speaker.reload(cur.vrrp, cur.vrrpScripts ?? [])));
      else if (cur.vrrp.length) {
        const problem = VrrpSpeaker.problem();
        if (problem) throw new Error(`VRRP cannot run: ${problem}`);
        const sp = new VrrpSpeaker(ha.deps);
        try {
          await sp.start(cur.vrrp, cur.vrrpScripts ?? []);
        } catch (e) {
          // A half-started speaker holds sockets, timers and scripts: release them, retry on the next reload.
          await sp.stop();
          throw e;
        }
        ha.speaker = sp;
        res.changes.push(`vrrp: started ${cur.vrrp.length} instance(s)`);
      }
    } catch (e) {
      const why = isTsvsError(e) ? e.detail : (e as Error).message;
      log.error({ component: 'vrrp', err: why }, `reload: VRRP change not applied: ${why}`);
      return { ok: false, changes: res.changes, error: why };
    }
    return res;
  };
}

/**
 * Serves the control API on the control socket and, with --api, on TCP. If the TCP
 * listener fails, the control socket is closed and removed again, so that the caller may
 * retry (tsvs demo falls back to a free port).
 */
async function startApi(
  opts: DaemonOptions,
  director: Director,
  api: ApiOptions,
  log: Logger,
): Promise<{ control: Server; apiServer: Server | null; apiAddress: string | null }> {
  // Each listener has its own connection cap, so the TCP port cannot use up the socket's.
  const logFn: LogFn = (level, msg, fields) => log[level]({ ...fields }, msg);
  const socketStats = new ListenerStats('socket', opts.socketLimits, logFn, opts.socket);
  const tcpStats = opts.api ? new ListenerStats('tcp', opts.apiLimits, logFn, opts.api) : null;
  const listeners = tcpStats ? [socketStats, tcpStats] : [socketStats];
  const control = createApiServer(getRequestListener(createControlApp(director, { ...api, listeners }).fetch), socketStats);
  await listenControlSocket(control, opts.socket);
  if (!opts.api || !tcpStats) return { control, apiServer: null, apiAddress: null };
  const { host, port } = parseHostPort(opts.api);
  const tcpApp = createControlApp(director, {
    token: opts.apiToken,
    readOnly: true,
    protectReads: !opts.apiPublicRead,
    ...api,
    hostNames: new HostNames(host, opts.apiHosts),
    listener: tcpStats,
    listeners,
  });
  const apiServer = createApiServer(getRequestListener(tcpApp.fetch), tcpStats);
  try {
    await new Promise<void>((resolve, reject) => {
      apiServer.once('error', reject);
      apiServer.listen(port, host, () => resolve());
    });
  } catch (e) {
    control.close();
    await fsp.rm(opts.socket, { force: true });
    throw new Error(`--api ${opts.api}: ${(e as Error).message}`);
  }
  const apiAddress = formatListenAddress(apiServer.address());
  tcpStats.address = apiAddress ?? opts.api;
  return { control, apiServer, apiAddress };
}

/** Starts a director process: each step below, in order; a step that fails takes the earlier ones down again. */
async function startDaemon(opts: DaemonOptions): Promise<DaemonHandle> {
  const log = pino({ level: opts.logLevel, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
  const { director, store } = await buildDirector(opts, log);
  const undo: Undo = [() => director.stop(0)];
  try {
    const loaded = opts.config ? await loadDaemonConfig(opts.config, director.dataplane) : null;
    await openState(opts, director, store, loaded, log);
    const manager = loaded && opts.config ? new ConfigManager(director, log, opts.config) : null;
    if (manager && loaded) {
      undo.push(() => manager.stop());
      await startHealth(manager, loaded, opts.config!);
    }
    const sync = await startSync(opts, director, loaded, log);
    undo.push(() => sync.stop());
    const ha = await startHa(manager, loaded, sync, log, undo);
    const reload = reloader(manager, ha, log);
    const vrrpSource = { status: () => (ha.speaker ? ha.speaker.status() : { configured: false, instances: [] }) };
    // Health and reload for the API (POST /v1/reload), when there is a config to follow.
    const configApi: ApiOptions = manager
      ? { health: manager.engine, reload, vrrp: vrrpSource, sync: sync.manager }
      : { vrrp: vrrpSource, sync: sync.manager };
    configApi.syncInterface = loaded?.config.sync?.daemon?.mcastIfn || undefined;
    const { control, apiServer, apiAddress } = await startApi(opts, director, configApi, log);
    log.info({ socket: opts.socket, api: apiAddress, dataplane: director.dataplane.name, state: opts.state ?? null }, 'tsvsd started');

    let stopping: Promise<void> | null = null;
    const stop = () =>
      (stopping ??= (async () => {
        // Priority 0 first, so the backup takes over after Skew_Time while we drain.
        await ha.speaker?.stop();
        log.info({ drainMs: opts.drainMs }, 'draining');
        control.close();
        apiServer?.close();
        await manager?.stop();
        await director.stop(opts.drainMs);
        await sync.stop();
        control.closeAllConnections();
        apiServer?.closeAllConnections();
        await fsp.rm(opts.socket, { force: true });
        log.info('stopped');
      })());
    return { director, log, config: manager, reload, stop };
  } catch (e) {
    for (const step of undo.reverse()) await step();
    throw e;
  }
}

/**
 * The userspace plane binds each service address. A VRRP backup does not hold its VIPs yet,
 * so that bind fails unless the kernel allows non-local binds (as for haproxy + keepalived).
 */
function vipBindProblem(cfg: LoadedConfig['config']): string | null {
  const vips = new Set(cfg.vrrp.flatMap((v) => v.virtualIpaddress.map((t) => t.trim().split(/[\s/]/)[0]!)));
  const svc = cfg.services.find((s) => !s.fwmark && vips.has(s.addr));
  if (!svc) return null;
  let v = '';
  try {
    v = readFileSync('/proc/sys/net/ipv4/ip_nonlocal_bind', 'utf8').trim();
  } catch {
    return null;
  }
  if (v === '1') return null;
  return (
    `service ${svc.addr}:${svc.port} is on a VRRP virtual address: with the userspace data plane a backup director must bind it before it holds it, ` +
    'which needs net.ipv4.ip_nonlocal_bind=1 (sysctl -w net.ipv4.ip_nonlocal_bind=1, as for haproxy with keepalived), or use --dataplane nftables'
  );
}

/** The tsvsd command line. Resolves with the exit code once the daemon has stopped. */
export async function runDaemon(argv: string[]): Promise<number> {
  let opts: ReturnType<typeof parseDaemonArgs>;
  try {
    opts = parseDaemonArgs(argv);
  } catch (e) {
    process.stderr.write(`tsvsd: ${(e as Error).message}\nTry 'tsvsd --help' for more information.\n`);
    return 2;
  }
  if ('help' in opts) {
    process.stdout.write(USAGE);
    return 0;
  }
  if ('version' in opts) {
    process.stdout.write(`tsvsd ${VERSION}\n`);
    return 0;
  }
  let handle: DaemonHandle;
  try {
    handle = await startDaemon(opts);
  } catch (e) {
    // The detail names the object and what to do, and may end with a command to copy: it goes last.
    const msg = isTsvsError(e)
      ? e.message === ERROR_CODES[e.code].message
        ? e.detail
        : `${e.message}: ${e.detail}`
      : (e as Error).message;
    process.stderr.write(`tsvsd: ${msg}\n`);
    return 1;
  }
  return untilSignalled(handle);
}

/**
 * Signal handling: SIGTERM and SIGINT drain and stop the daemon (resolving with the exit
 * code), SIGHUP reloads the configuration.
 */
function untilSignalled(handle: DaemonHandle): Promise<number> {
  return new Promise<number>((resolve) => {
    const shutdown = (signal: string) => {
      handle.log.info({ signal }, 'shutting down');
      handle.stop().then(
        () => resolve(0),
        (e) => {
          handle.log.error({ err: (e as Error).message }, 'error while stopping');
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
    process.on('SIGHUP', () => {
      handle.log.info({ signal: 'SIGHUP' }, 'reloading configuration');
      // Through the API's runner when there is a config, so /metrics counts SIGHUP reloads too.
      void (handle.config ? reloadCounted(handle.director) : handle.reload());
    });
  });
}
