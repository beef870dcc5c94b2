/**
 * The worker thread of `loadConfig(path, { thread: 'worker' })`: reads, parses and
 * validates one config file off the daemon's event loop, and posts back the loaded config
 * or the error as plain data (load.ts rebuilds it). One load per worker; the worker exits.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { isTsvsError } from '../core/errors.js';
import { ConfigError } from './errors.js';
import { loadConfig, type WorkerReply } from './load.js';
import { limitHits } from './read.js';

const { path } = workerData as { path: string };
let reply: WorkerReply;
try {
  reply = { ok: true, loaded: await loadConfig(path), limits: [...limitHits] };
} catch (e) {
  const limits = [...limitHits];
  if (e instanceof ConfigError) reply = { ok: false, kind: 'config', diagnostics: e.diagnostics, total: e.total, limits };
  else if (isTsvsError(e)) reply = { ok: false, kind: 'tsvs', code: e.code, detail: e.detail, message: e.message, limits };
  else reply = { ok: false, kind: 'error', message: (e as Error).message, limits };
}
parentPort!.postMessage(reply);
