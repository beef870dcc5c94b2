/**
 * Loads a config file (`tsvsd --config FILE`, `tsvs config check FILE`). Three formats,
 * detected from the file (detect.ts):
 *   - YAML, the tsvs format (docs/config.md): services, real servers, health checks;
 *   - keepalived.conf: its LVS part (and vrrp_instance, kept for the HA work);
 *   - ipvsadm rules (`ipvsadm -S` / `ipvsadm-save` output, the file an LVS director
 *     restores at boot): each line parsed exactly as `tsvsadm -R` parses it.
 * All three become the same model (TsvsConfig); rules files have no health checks.
 */
import { readFileSync } from 'node:fs';
import { lookup } from 'node:dns/promises';
import { type ErrorCode, TsvsError } from '../core/errors.js';
import { serviceId } from '../core/service.js';
import type { Op } from '../core/types.js';
import { parseCommand } from '../ipvsadm/parse.js';
import { builtinServices, parseServices, type ServicesDb } from '../ipvsadm/services.js';
import { detectFormat, type ConfigFormat } from './detect.js';
import { ConfigError } from './errors.js';
import { parseKeepalivedConfigAsync } from './keepalived/index.js';
import { type ConfigLimit, ConfigReadError, countLimit, readConfigFile } from './read.js';
import { Worker } from 'node:worker_threads';
import { clip, quote } from '../core/quote.js';
import type { Diagnostic, TsvsConfig, VirtualServiceConfig } from './model.js';
import { validateServices } from './validate.js';
import { parseYamlConfig } from './yaml/parse.js';

function loadServicesDb(): ServicesDb {
  try {
    return parseServices(readFileSync('/etc/services', 'utf8'));
  } catch {
    return builtinServices;
  }
}

/** Parses ipvsadm rules into operations, each with its line; an error names the file and line. */
async function parseRulesWithLines(text: string, file: string): Promise<Array<{ op: Op; line: number }>> {
  const env = {
    progName: 'tsvsd',
    services: loadServicesDb(),
    lookupHost: async (name: string) => {
      try {
        return (await lookup(name, { family: 4 })).address;
      } catch {
        return null;
      }
    },
  };
  const ops: Array<{ op: Op; line: number }> = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (!line || line.startsWith('#')) continue;
    const argv = line.split(/\s+/).filter((w) => w !== 'ipvsadm');
    const cmd = await parseCommand(argv, env);
    if (cmd.cmd === 'error') {
      throw new TsvsError('BAD_REQUEST', `${file}:${i + 1}: ${cmd.text.trim()}`, `${file}:${i + 1}: ${cmd.text.trim()}`);
    }
    if (cmd.cmd !== 'apply') {
      throw new TsvsError('BAD_REQUEST', `${file}:${i + 1}: only rule lines (-A, -a, -C, --set, ...) belong in a rules file`);
    }
    ops.push({ op: cmd.op, line: i + 1 });
  }
  return ops;
}

/** A loaded config file: the model, and for rules files the exact operations too. */
export interface LoadedConfig {
  format: ConfigFormat;
  config: TsvsConfig;
  /** ipvsadm rules only: the operations as written (what start applies, as before). */
  ops?: Op[];
}

async function readText(path: string): Promise<string> {
  try {
    return await readConfigFile(path);
  } catch (e) {
    if (e instanceof ConfigReadError) countLimit(e.limit);
    const why = e instanceof ConfigReadError ? e.message : (e as Error).message;
    throw new TsvsError('BAD_REQUEST', `config ${clip(path)}: ${why}`, `Cannot read config ${clip(path)}: ${why}`);
  }
}

export interface LoadOptions {
  /**
   * 'worker': read, parse and validate in a worker thread, so that the event loop serving
   * traffic never waits on a large file (seconds of CPU for thousands of services) and a
   * pathological one cannot exhaust the daemon's heap. Default: this thread (async reads).
   */
  thread?: 'this' | 'worker';
}

/** What a load worker posts back (load-worker.ts). */
export type WorkerReply = { limits: Array<[ConfigLimit, number]> } & (
  | { ok: true; loaded: LoadedConfig }
  | { ok: false; kind: 'config'; diagnostics: Diagnostic[]; total: number }
  | { ok: false; kind: 'tsvs'; code: ErrorCode; detail: string; message: string }
  | { ok: false; kind: 'error'; message: string }
);

/** The most heap a load worker may use: a config that needs more is refused, the daemon stays up. */
export const WORKER_HEAP_MB = 512;
/** The longest a load may take in a worker before it is stopped and refused. */
export const WORKER_TIMEOUT_MS = 60_000;

function loadInWorker(path: string): Promise<LoadedConfig> {
  // Run from source (tsx, in-process tests), a worker cannot load .ts: read on this thread,
  // asynchronously. The built daemon (dist/, what test/config/reload-pathological runs) uses the worker.
  if (import.meta.url.endsWith('.ts')) return loadConfig(path);
  const worker = new Worker(new URL('./load-worker.js', import.meta.url), {
    workerData: { path },
    resourceLimits: { maxOldGenerationSizeMb: WORKER_HEAP_MB },
  });
  return new Promise<LoadedConfig>((resolve, reject) => {
    let settled = false;
    const finish = (f: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      f();
      void worker.terminate();
    };
    const timer = setTimeout(
      () => finish(() => reject(new TsvsError('BAD_REQUEST', `config ${clip(path)}: not read within ${WORKER_TIMEOUT_MS / 1000} s`))),
      WORKER_TIMEOUT_MS,
    );
    worker.once('message', (r: WorkerReply) =>
      finish(() => {
        for (const [limit, n] of r.limits) countLimit(limit, n);
        if (r.ok) resolve(r.loaded);
        else if (r.kind === 'config') reject(new ConfigError(r.diagnostics, r.total));
        else if (r.kind === 'tsvs') reject(new TsvsError(r.code, r.detail, r.message));
        else reject(new Error(r.message));
      }),
    );
    worker.once('error', (e) =>
      finish(() => {
        const heap = (e as NodeJS.ErrnoException).code === 'ERR_WORKER_OUT_OF_MEMORY';
        const why = heap ? `needs more than ${WORKER_HEAP_MB} MB to read` : `could not be read (${(e as Error).message})`;
        reject(new TsvsError('BAD_REQUEST', `config ${clip(path)}: ${why}`));
      }),
    );
    worker.once('exit', (code) =>
      finish(() => reject(new TsvsError('BAD_REQUEST', `config ${clip(path)}: the reading thread exited (${code}) without an answer`))),
    );
  });
}

/** Reads and validates a config file of any of the three formats. Throws ConfigError/TsvsError naming file:line. */
export async function loadConfig(path: string, opts: LoadOptions = {}): Promise<LoadedConfig> {
  if (opts.thread === 'worker') return loadInWorker(path);
  const text = await readText(path);
  const format = detectFormat(text, path);
  if (format === 'yaml') return { format, config: parseYamlConfig(text, path) };
  if (format === 'keepalived') return { format, config: await parseKeepalivedConfigAsync(text, path) };
  const withLines = await parseRulesWithLines(text, path);
  return { format, config: rulesToConfig(withLines, path), ops: withLines.map((r) => r.op) };
}

/** Turns rule lines (-A, -a, --set) into the model, so reload can diff a rules file too. */
function rulesToConfig(rules: Array<{ op: Op; line: number }>, file: string): TsvsConfig {
  const cfg: TsvsConfig = { format: 'ipvsadm', file, services: [], vrrp: [], unsupported: [] };
  const byId = new Map<string, VirtualServiceConfig>();
  for (const { op, line } of rules) {
    const origin = { file, line, column: 1 };
    switch (op.op) {
      case 'add-service': {
        const svc: VirtualServiceConfig = { ...op.service, realServers: [], quorum: 1, hysteresis: 0, omega: false, origin };
        if (!byId.has(serviceId(op.service))) byId.set(serviceId(op.service), svc);
        cfg.services.push(svc);
        break;
      }
      case 'add-server': {
        const svc = byId.get(serviceId(op.service));
        if (!svc) throw new ConfigError([{ ...origin, message: `real server for a service not added above (${serviceId(op.service)})` }]);
        svc.realServers.push({ ...op.dest, inhibitOnFailure: false, checkers: [], origin });
        break;
      }
      case 'set-timeouts':
        cfg.timeouts = op.timeouts;
        break;
      case 'flush':
        break;
      default:
        throw new ConfigError([
          { ...origin, message: `${quote(op.op)} does not belong in a config file: only -A, -a, -C and --set describe a table` },
        ]);
    }
  }
  const diags = validateServices(cfg.services, file);
  if (diags.length) throw new ConfigError(diags);
  return cfg;
}
