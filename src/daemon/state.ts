/**
 * The state file: the live table's configuration, written after every change and read
 * back at start, so a restarted director comes back with the same rules (the LVS habit of
 * `ipvsadm-save` at shutdown and `ipvsadm-restore` at boot, without the gap between them).
 *
 * Writes are atomic: a temp file in the same directory, fsync, rename over the old file,
 * fsync of the directory. A crash at any point leaves either the old or the new file.
 */
import { constants as fsc, promises as fsp } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { TsvsError } from '../core/errors.js';
import type { Op, TableConfig } from '../core/types.js';

const FORMAT = 'tsvs-state';
const VERSION = 1;

interface StateFile {
  format: typeof FORMAT;
  version: number;
  savedAt: string;
  table: TableConfig;
}

/** Writes `data` to `path` atomically (temp file + fsync + rename + directory fsync). */
export async function writeFileAtomic(path: string, data: string, mode = 0o600): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
  const fh = await fsp.open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await fsp.rename(tmp, path);
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  }
  const dh = await fsp.open(dir, fsc.O_RDONLY);
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

/** The operations that rebuild a saved table from empty. */
export function configToOps(cfg: TableConfig): Op[] {
  const ops: Op[] = [{ op: 'set-timeouts', timeouts: cfg.timeouts }];
  for (const { dests, ...svc } of cfg.services) {
    ops.push({ op: 'add-service', service: svc });
    // Servers were listed newest first (kernel order); re-add oldest first to keep the order.
    for (const d of [...dests].reverse()) ops.push({ op: 'add-server', service: svc, dest: d });
  }
  return ops;
}

/**
 * Saves the table after each change. Saves are serialized; a change that arrives while a
 * save is running is folded into the next one, and every caller learns when a save that
 * includes its change is on disk.
 */
export class StateStore {
  private running: Promise<void> | null = null;
  private pending: { cfg: TableConfig; waiters: Array<{ ok: () => void; fail: (e: unknown) => void }> } | null = null;

  constructor(readonly path: string) {}

  /** Reads the state file; null when it does not exist. Throws a TsvsError naming the file when it is unreadable. */
  async load(): Promise<TableConfig | null> {
    let text: string;
    try {
      text = await fsp.readFile(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new TsvsError('BAD_REQUEST', `state file ${this.path}: ${(e as Error).message}`);
    }
    let parsed: Partial<StateFile>;
    try {
      parsed = JSON.parse(text) as Partial<StateFile>;
    } catch (e) {
      throw new TsvsError('BAD_REQUEST', `state file ${this.path}: not valid JSON (${(e as Error).message})`);
    }
    if (parsed.format !== FORMAT || typeof parsed.version !== 'number' || !parsed.table) {
      throw new TsvsError('BAD_REQUEST', `state file ${this.path}: not a tsvs state file (format "${FORMAT}")`);
    }
    if (parsed.version > VERSION) {
      throw new TsvsError('BAD_REQUEST', `state file ${this.path}: version ${parsed.version} is newer than this tsvsd understands (${VERSION})`);
    }
    const t = parsed.table;
    if (!Array.isArray(t.services) || !t.timeouts) throw new TsvsError('BAD_REQUEST', `state file ${this.path}: table has no services or timeouts`);
    return t;
  }

  /** Resolves once a save that includes `cfg` (or a later table) is durable. */
  save(cfg: TableConfig): Promise<void> {
    return new Promise((ok, fail) => {
      if (this.pending) {
        this.pending.cfg = cfg;
        this.pending.waiters.push({ ok, fail });
      } else {
        this.pending = { cfg, waiters: [{ ok, fail }] };
      }
      if (!this.running) this.running = this.drain();
    });
  }

  private async drain(): Promise<void> {
    while (this.pending) {
      const { cfg, waiters } = this.pending;
      this.pending = null;
      const body: StateFile = { format: FORMAT, version: VERSION, savedAt: new Date().toISOString(), table: cfg };
      try {
        await writeFileAtomic(this.path, `${JSON.stringify(body, null, 2)}\n`);
        for (const w of waiters) w.ok();
      } catch (e) {
        for (const w of waiters) w.fail(e);
      }
    }
    this.running = null;
  }
}
