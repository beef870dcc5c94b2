/**
 * The state file: the live table, saved as every change is made and read back at start, so
 * a restarted director comes back with the same rules (the LVS habit of `ipvsadm-save` at
 * shutdown and `ipvsadm-restore` at boot, without the gap between them).
 *
 * Two files: `<state>` is a snapshot of the whole table, and `<state>.journal` holds one
 * line per batch of changes made since (src/daemon/journal.ts). A change costs one appended
 * line and one fdatasync, whatever the size of the table; batches that wait for the disk
 * together share one fdatasync. When the journal outgrows the snapshot, a new snapshot is
 * written beside the running journal and the journal restarts with the records the
 * snapshot does not hold. Start and a clean stop also fold the journal into a snapshot.
 *
 * Crash safety rests on three rules. Every file that is replaced is written as a temp
 * file, fsynced, renamed over the old one, and the directory fsynced: a crash leaves the
 * old or the new file, never half of one. A batch is acknowledged only once its record is
 * fdatasynced. And records carry a sequence number that the snapshot also holds, so a
 * replay skips what the snapshot already contains whatever point a compaction reached.
 *
 * When the disk refuses a write (ENOSPC, EROFS, EIO), the change stays live and its caller
 * hears "applied but not saved" (tsvsadm exit 3): the store runs unsaved, logs so every
 * `warnEveryMs`, shows it in `status()` (/v1/status, /metrics `tsvs_state_unsaved`), and
 * tries to write the whole live table again with a bounded backoff until the disk takes
 * it. docs/state.md says why a change is not refused instead.
 */
import type { SaveStatus } from '../api/director.js';
import type { LogFn } from '../core/log.js';
import { constants as fsc, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { TsvsError } from '../core/errors.js';
import { IpvsTable } from '../core/table.js';
import { getScheduler } from '../schedulers/index.js';
import type { Op, TableConfig } from '../core/types.js';
import { encodeRecord, JOURNAL_HEADER, JournalError, parseJournal, type JournalRecord } from './journal.js';

const FORMAT = 'tsvs-state';
/** 1: the table alone (earlier releases). 2: plus `seq`, the last journal record it holds. */
const VERSION = 2;
/** Neither file is read past this size: a table this large is not one tsvsd wrote. */
export const MAX_STATE_BYTES = 256 * 1024 * 1024;
/** Default floor for compaction; see StateStoreOptions.compactBytes. */
const COMPACT_BYTES = 256 * 1024;
const MAX_PENDING = 1024;
/** While unsaved: the first retry of a whole snapshot, doubled after each failure up to RETRY_MAX_MS. */
const RETRY_MS = 1000;
const RETRY_MAX_MS = 10_000;
/** While unsaved: how often a warning says so. */
const WARN_EVERY_MS = 30_000;
/** Errors that mean --state names a path that cannot be a state file (a mistake, not a full or read-only disk). */
const PATH_ERRORS = new Set(['ENOENT', 'ENOTDIR', 'EISDIR', 'ENAMETOOLONG', 'ELOOP']);

interface StateFile {
  format: typeof FORMAT;
  version: number;
  savedAt: string;
  /** Version 2: every journal record up to this seq is in `table`. Version 1 has none (0). */
  seq?: number;
  table: TableConfig;
}

export interface StateStoreOptions {
  log?: LogFn;
  /**
   * A new snapshot is written once the journal is larger than the snapshot or than this
   * many bytes, whichever is larger (default 256 KiB). Larger than the snapshot: writing
   * snapshots then costs at most as many bytes as the changes themselves did, so a change
   * costs O(its record) amortized, and a start replays at most one snapshot's worth of
   * records. The floor keeps a small table from being rewritten every few changes. A batch
   * whose record alone is over the bound (a restore of thousands of services) is saved by
   * writing a snapshot instead, which is no larger. The bound is capped at a quarter of
   * MAX_STATE_BYTES, so the journal of a huge table still loads.
   */
  compactBytes?: number;
  /** At most this many batches wait for the disk; a further change waits for room (default 1024). */
  maxPending?: number;
  /** While unsaved: first retry after this many ms, doubling up to `retryMaxMs` (defaults 1000 and 10000). */
  retryMs?: number;
  retryMaxMs?: number;
  /** While unsaved: a warning line this often (default 30000 ms). */
  warnEveryMs?: number;
}

interface Pending {
  seq: number;
  line: string;
  ok: () => void;
  fail: (e: unknown) => void;
}

/** A snapshot being written beside the running journal. */
interface Compaction {
  /** The snapshot holds every record up to this seq. */
  seq: number;
  /** Records with a higher seq, already in the current journal: the new journal starts with them. */
  carry: string[];
  /** Set once the snapshot is renamed into place and its directory fsynced. */
  written: boolean;
  bytes: number;
  /** Settles (never rejects) when the snapshot write has finished or failed. */
  done: Promise<void>;
}

/** A name for a temp file beside `path`, which stale-temp cleanup recognizes. */
function tempName(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
}

/** Writes `data` to a new temp file beside `path` and fsyncs it; the temp file is removed if that fails. */
async function writeTemp(path: string, data: string, mode: number): Promise<string> {
  const tmp = tempName(path);
  const fh = await fsp.open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, mode);
  try {
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  }
  return tmp;
}

async function syncDir(dir: string): Promise<void> {
  const dh = await fsp.open(dir, fsc.O_RDONLY);
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

/** Writes `data` to `path` atomically (temp file + fsync + rename + directory fsync). */
export async function writeFileAtomic(path: string, data: string, mode = 0o600): Promise<void> {
  const tmp = await writeTemp(path, data, mode);
  try {
    await fsp.rename(tmp, path);
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  }
  await syncDir(dirname(path));
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

/** Services serialized per turn of the event loop while a snapshot is built. */
const SERVICES_PER_TURN = 256;

/**
 * The snapshot file's text: what JSON.stringify(file, null, 2) gives, built a few hundred
 * services at a time with a turn of the event loop in between, so that serializing a large
 * table does not stall the changes and traffic the daemon handles meanwhile. `table` must
 * not change while this runs (table.config() returns a fresh copy).
 */
async function snapshotText(table: TableConfig, seq: number): Promise<string> {
  const head: Omit<StateFile, 'table'> = { format: FORMAT, version: VERSION, savedAt: new Date().toISOString(), seq };
  const indent = (json: string, pad: string) => json.replace(/\n/g, `\n${pad}`);
  const parts = [`${JSON.stringify(head, null, 2).slice(0, -2)},\n  "table": {\n    "services": [`];
  for (let i = 0; i < table.services.length; i += SERVICES_PER_TURN) {
    if (i) await new Promise((r) => setImmediate(r));
    const chunk = table.services.slice(i, i + SERVICES_PER_TURN);
    parts.push(chunk.map((svc, k) => `${i + k ? ',' : ''}\n      ${indent(JSON.stringify(svc, null, 2), '      ')}`).join(''));
  }
  parts.push(
    `${table.services.length ? '\n    ' : ''}],\n    "timeouts": ${indent(JSON.stringify(table.timeouts, null, 2), '    ')}\n  }\n}\n`,
  );
  return parts.join('');
}

/** Why JSON.parse refused a file, without quoting it (V8's messages can include a piece of the text). */
function jsonProblem(e: unknown, text: string): string {
  const msg = (e as Error).message;
  if (/end of JSON input/.test(msg)) return `it ends early, at byte ${Buffer.byteLength(text)} (truncated)`;
  const pos = /position (\d+)/.exec(msg);
  if (!pos) return 'invalid JSON';
  const at = Number(pos[1]);
  if (at >= text.trimEnd().length - 1) return `it ends early, at byte ${Buffer.byteLength(text)} (truncated)`;
  const before = text.slice(0, at);
  const line = before.split('\n').length;
  return `invalid JSON at line ${line} column ${at - before.lastIndexOf('\n')} (byte ${Buffer.byteLength(before)})`;
}

/** A name for a damaged file moved aside: `FILE.corrupt-20261208T023000Z`. */
function corruptName(path: string): string {
  return `${path}.corrupt-${new Date().toISOString().replace(/[-:]|\.\d+/g, '')}`;
}

/** What to do about a damaged snapshot: the exact commands. tsvsd does not move it itself (docs/state.md). */
function snapshotHint(path: string, journalPath: string): string {
  return (
    `tsvsd does not start on it and changes nothing. Restore ${path} and ${journalPath} from a backup, or keep them for inspection ` +
    `and start with an empty table: mv ${path} ${corruptName(path)}; mv ${journalPath} ${corruptName(journalPath)} ` +
    '(then load your rules again, e.g. tsvsadm -R < rules)'
  );
}

/** What to do about a damaged journal whose records before `offset` are good: cut it there. */
function journalHint(journalPath: string, offset: number): string {
  return (
    `tsvsd does not start on it and changes nothing. Restore the state files from a backup, or keep a copy and start from the snapshot and the good records before byte ${offset} ` +
    `(the changes recorded from there on are lost): cp ${journalPath} ${corruptName(journalPath)} && truncate -s ${offset} ${journalPath}`
  );
}

/**
 * Saves the table as it changes. `load` reads the snapshot and replays the journal; `open`
 * writes a fresh snapshot and starts a new journal; then `record` appends each batch.
 * Appends are serialized, every batch waiting for the disk shares the next fdatasync, and
 * every caller learns when its batch is durable.
 */
export class StateStore {
  readonly journalPath: string;
  private readonly log: LogFn;
  private readonly compactBytes: number;
  private readonly maxPending: number;
  /** The last seq handed out: the live table holds every batch up to it. */
  private seq = 0;
  private source: (() => TableConfig) | null = null;
  private fh: FileHandle | null = null;
  private closed = false;
  private pending: Pending[] = [];
  private roomWaiters: Array<() => void> = [];
  private flushing = false;
  /** Every write to the files runs in this chain, one at a time. */
  private chain: Promise<void> = Promise.resolve();
  private journalBytes = 0;
  private snapshotBytes = 0;
  /** The journal may lack a record (a failed write) or a record is too big for it: write a snapshot next. */
  private needSnapshot = false;
  private compaction: Compaction | null = null;
  /** After a failed compaction, wait until the journal has grown this far before trying again. */
  private retryAt = 0;
  private readonly retryMs: number;
  private readonly retryMaxMs: number;
  private readonly warnEveryMs: number;
  /** Set while the live table holds changes the disk does not: since when, and how many. */
  private unsaved: { since: number; changes: number; lastWarn: number; delay: number } | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private lastError: string | null = null;
  private failures = 0;

  constructor(
    readonly path: string,
    opts: StateStoreOptions = {},
  ) {
    this.journalPath = `${path}.journal`;
    this.log = opts.log ?? (() => undefined);
    this.compactBytes = opts.compactBytes ?? COMPACT_BYTES;
    this.maxPending = opts.maxPending ?? MAX_PENDING;
    this.retryMs = opts.retryMs ?? RETRY_MS;
    this.retryMaxMs = Math.max(opts.retryMaxMs ?? RETRY_MAX_MS, this.retryMs);
    this.warnEveryMs = opts.warnEveryMs ?? WARN_EVERY_MS;
  }

  /** Whether the live table is on disk, for the API and /metrics. */
  status(): SaveStatus {
    const u = this.unsaved;
    return {
      path: this.path,
      saved: !u,
      unsavedSince: u ? new Date(u.since).toISOString() : null,
      unsavedChanges: u?.changes ?? 0,
      lastError: this.lastError,
      failures: this.failures,
    };
  }

  /**
   * Reads the snapshot and replays the journal over it; null when there is no state file.
   * Removes temp files that a crashed tsvsd left beside them. Throws a TsvsError naming the
   * file, the place and the problem, with a hint, when either file is damaged.
   */
  async load(): Promise<TableConfig | null> {
    await this.removeStaleTemps();
    const snap = await this.readSnapshot();
    const journal = await this.readJournal();
    if (!snap) {
      if (journal?.records.length) {
        throw new TsvsError(
          'BAD_REQUEST',
          `state file ${this.path}: missing, but its journal ${this.journalPath} holds changes that need it; restore the state file from a backup, or move the journal aside to start with an empty table`,
        );
      }
      return null;
    }
    this.seq = snap.seq;
    // Records up to the snapshot's seq are in it already (a crash during a compaction leaves them).
    const todo = journal?.records.filter((r) => r.seq > snap.seq) ?? [];
    if (!todo.length) return snap.table;

    for (const r of todo) {
      if (r.seq !== this.seq + 1) {
        const gap = r.seq - this.seq - 1;
        const missing =
          gap < 1
            ? `seq ${r.seq} repeats`
            : gap === 1
              ? `record ${this.seq + 1} is missing`
              : `records ${this.seq + 1} to ${r.seq - 1} are missing`;
        throw new TsvsError(
          'BAD_REQUEST',
          `state journal ${this.journalPath} line ${r.line} (byte ${r.offset}): record seq ${r.seq} after seq ${this.seq}: ${missing}; ${journalHint(this.journalPath, r.offset)}`,
        );
      }
      this.seq = r.seq;
    }
    // One transaction for the snapshot and every record: the table checks a batch against
    // its whole contents, so a batch per record would cost O(table) each.
    const snapOps = configToOps(snap.table);
    const replay = (n: number): IpvsTable => {
      const t = new IpvsTable({ schedulers: getScheduler });
      t.applyAll(n ? snapOps.concat(todo.slice(0, n).flatMap((r) => r.ops)) : snapOps);
      return t;
    };
    let table: IpvsTable;
    try {
      table = replay(todo.length);
    } catch (e) {
      throw this.replayError(replay, todo, e);
    }
    const replayed = todo.length;
    this.log('info', 'state journal replayed', { journal: this.journalPath, snapshotSeq: snap.seq, records: replayed });
    return table.config();
  }

  /** Names what does not apply, the snapshot or the first record, finding that record by bisection. */
  private replayError(replay: (n: number) => IpvsTable, todo: JournalRecord[], first: unknown): TsvsError {
    const why = (e: unknown) => (e instanceof TsvsError ? e.detail : (e as Error).message);
    try {
      replay(0);
    } catch (e) {
      return new TsvsError(
        'BAD_REQUEST',
        `state file ${this.path}: the saved table does not load (${why(e)}); ${snapshotHint(this.path, this.journalPath)}`,
      );
    }
    // replay(lo) applies, replay(hi) does not.
    let lo = 0;
    let hi = todo.length;
    let err = first;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      try {
        replay(mid);
        lo = mid;
      } catch (e) {
        hi = mid;
        err = e;
      }
    }
    const r = todo[hi - 1]!;
    return new TsvsError(
      'BAD_REQUEST',
      `state journal ${this.journalPath} line ${r.line} (byte ${r.offset}): record seq ${r.seq} does not apply to the saved table (${why(err)}); ${journalHint(this.journalPath, r.offset)}`,
    );
  }

  /**
   * Starts saving: writes a fresh snapshot of `source()` (the table as restored) and an
   * empty journal, so a journal replayed at start, a torn end, or a version 1 file are
   * folded in once. From then on `record` appends, and compaction takes its snapshots from
   * `source`, which must return the live table (holding every recorded batch).
   */
  async open(source: () => TableConfig): Promise<void> {
    this.source = source;
    await this.removeStaleTemps();
    try {
      await this.exclusive(() => this.rebase(source, true));
    } catch (e) {
      // A wrong --state path is a mistake to fix before starting; a full or read-only disk is a condition to ride out.
      if (PATH_ERRORS.has((e as NodeJS.ErrnoException).code ?? '')) throw e;
      this.markUnsaved(e, 0, 'start');
    }
  }

  /** Writes `cfg` as the whole saved table (snapshot + empty journal); resolves once it is durable. */
  save(cfg: TableConfig): Promise<void> {
    return this.exclusive(() => this.rebase(() => cfg, true));
  }

  /**
   * Journals a batch that has just been applied to the live table (call it in the same
   * tick as the apply, so that `source()` and the seq stay in step). `zero` operations are
   * dropped: counters are not state. Resolves once the batch is durable.
   */
  record(ops: readonly Op[]): Promise<void> {
    const kept = ops.filter((o) => o.op !== 'zero');
    if (!kept.length) return Promise.resolve();
    if (this.closed) return Promise.reject(new Error('the state store is closed'));
    const seq = ++this.seq;
    const line = encodeRecord(seq, kept);
    if (line.length > this.compactAt()) this.needSnapshot = true;
    return new Promise((ok, fail) => {
      this.pending.push({ seq, line, ok, fail });
      this.kick();
    });
  }

  /** Resolves when a batch may be recorded without going over the bound on waiting batches. */
  room(): Promise<void> {
    if (this.pending.length < this.maxPending) return Promise.resolve();
    return new Promise((r) => this.roomWaiters.push(r));
  }

  /**
   * Finishes the writes under way, folds the journal into the snapshot (so that the next
   * start reads the snapshot alone, without building a table to replay on), and closes.
   */
  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    await this.compaction?.done;
    await this.exclusive(async () => {
      if (this.compaction?.written) await this.switchJournal(this.compaction);
      // A store whose journal was closed by a failed write (or never opened) tries once more too.
      if (this.source && (!this.fh || this.needSnapshot || this.journalBytes > JOURNAL_HEADER.length))
        await this.rebase(this.source, false);
      await this.fh?.close();
      this.fh = null;
    });
    const u = this.unsaved;
    if (u) {
      this.log(
        'error',
        `state file ${this.path}: stopped with ${u.changes} change(s) not on disk; the next start restores the table as last saved`,
        {
          path: this.path,
          unsavedChanges: u.changes,
          err: this.lastError,
        },
      );
    }
  }

  // ------------------------------------------------------------------ reading

  private async readBounded(path: string, what: string): Promise<Buffer | null> {
    let fh: FileHandle;
    try {
      fh = await fsp.open(path, fsc.O_RDONLY);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new TsvsError('BAD_REQUEST', `${what} ${path}: ${(e as Error).message}`);
    }
    try {
      const { size } = await fh.stat();
      if (size > MAX_STATE_BYTES) {
        throw new TsvsError(
          'BAD_REQUEST',
          `${what} ${path}: ${size} bytes, over the ${MAX_STATE_BYTES} tsvsd reads; it is not a file tsvsd wrote: check the --state path`,
        );
      }
      const buf = Buffer.alloc(size);
      let off = 0;
      while (off < size) {
        const { bytesRead } = await fh.read(buf, off, size - off, off);
        if (!bytesRead) break;
        off += bytesRead;
      }
      return buf.subarray(0, off);
    } finally {
      await fh.close();
    }
  }

  private async readSnapshot(): Promise<{ seq: number; table: TableConfig } | null> {
    const buf = await this.readBounded(this.path, 'state file');
    if (!buf) return null;
    const text = buf.toString('utf8');
    let parsed: Partial<StateFile>;
    try {
      parsed = JSON.parse(text) as Partial<StateFile>;
    } catch (e) {
      throw new TsvsError(
        'BAD_REQUEST',
        `state file ${this.path}: not valid JSON (${jsonProblem(e, text)}); ${snapshotHint(this.path, this.journalPath)}`,
      );
    }
    if (parsed?.format !== FORMAT || typeof parsed.version !== 'number' || !parsed.table) {
      throw new TsvsError('BAD_REQUEST', `state file ${this.path}: not a tsvs state file (format "${FORMAT}"); check the --state path`);
    }
    if (parsed.version > VERSION) {
      throw new TsvsError(
        'BAD_REQUEST',
        `state file ${this.path}: version ${parsed.version} is newer than this tsvsd understands (${VERSION}); run the tsvsd that wrote it`,
      );
    }
    const t = parsed.table;
    if (!Array.isArray(t.services) || !t.timeouts)
      throw new TsvsError(
        'BAD_REQUEST',
        `state file ${this.path}: table has no services or timeouts; ${snapshotHint(this.path, this.journalPath)}`,
      );
    const seq = parsed.seq ?? 0;
    if (!Number.isSafeInteger(seq) || seq < 0)
      throw new TsvsError('BAD_REQUEST', `state file ${this.path}: seq is not a count; ${snapshotHint(this.path, this.journalPath)}`);
    return { seq, table: t };
  }

  private async readJournal(): Promise<ReturnType<typeof parseJournal> | null> {
    const buf = await this.readBounded(this.journalPath, 'state journal');
    if (!buf) return null;
    let parsed: ReturnType<typeof parseJournal>;
    try {
      parsed = parseJournal(buf);
    } catch (e) {
      if (!(e instanceof JournalError)) throw e;
      throw new TsvsError('BAD_REQUEST', `state journal ${this.journalPath} ${e.message}; ${journalHint(this.journalPath, e.offset)}`);
    }
    if (parsed.torn) {
      // Only the last write can be cut short, and it was never acknowledged.
      this.log(
        'warn',
        'state journal: dropped an incomplete last record (tsvsd stopped while writing it; that change was never acknowledged)',
        {
          journal: this.journalPath,
          line: parsed.torn.line,
          bytes: parsed.torn.bytes,
          problem: parsed.torn.problem,
        },
      );
    }
    return parsed;
  }

  /** Removes `.<name>.<pid>.<ms>.tmp` files of the snapshot or journal left by a crash. */
  private async removeStaleTemps(): Promise<void> {
    const dir = dirname(this.path);
    let names: string[];
    try {
      names = await fsp.readdir(dir);
    } catch {
      return;
    }
    const ours = new Set([basename(this.path), basename(this.journalPath)]);
    for (const n of names) {
      const m = /^\.(.+)\.(\d+)\.(\d+)\.tmp$/.exec(n);
      if (!m || !ours.has(m[1]!)) continue;
      await fsp.rm(join(dir, n), { force: true });
      this.log('info', 'removed a temp file left by an earlier tsvsd', { file: join(dir, n) });
    }
  }

  // ------------------------------------------------------------------ writing

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn);
    this.chain = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private compactAt(): number {
    // Capped so that the journal stays well inside what load() reads, however large the table.
    return Math.min(Math.max(this.snapshotBytes, this.compactBytes), MAX_STATE_BYTES / 4);
  }

  private takePending(): Pending[] {
    const taken = this.pending;
    this.pending = [];
    for (const w of this.roomWaiters.splice(0)) w();
    return taken;
  }

  /** Starts the append loop unless it runs already. */
  private kick(): void {
    if (this.flushing) return;
    this.flushing = true;
    void this.exclusive(() => this.flush()).then(
      () => {
        // A batch recorded after the loop's last look, while `flushing` was still set, did not start one.
        if (this.pending.length) this.kick();
      },
      (e: unknown) => {
        // Not expected (write errors are handled in the loop), but no batch may wait forever.
        this.needSnapshot = true;
        this.log('error', 'state store: unexpected error', { err: (e as Error).message });
        const failed = this.takePending();
        this.markUnsaved(e, failed.length, 'unexpected');
        for (const p of failed) p.fail(e);
      },
    );
  }

  /** Writes what waits, one group at a time, until nothing does. */
  private async flush(): Promise<void> {
    try {
      await this.flushLoop();
    } finally {
      this.flushing = false;
    }
  }

  private async flushLoop(): Promise<void> {
    while (this.pending.length) {
      if (!this.source || (this.closed && !this.fh)) {
        const e = new Error(this.closed ? 'the state store is closed' : 'the state store is not open');
        for (const p of this.takePending()) p.fail(e);
        return;
      }
      if (this.needSnapshot || !this.fh) {
        await this.rebase(this.source, false);
        continue;
      }
      if (this.compaction?.written) {
        await this.switchJournal(this.compaction);
        continue;
      }
      const fh = this.fh;
      const group = this.takePending();
      const data = group.map((p) => p.line).join('');
      try {
        await writeAll(fh, data);
        await fh.datasync();
      } catch (e) {
        // What reached the file is unknown: the next write is a whole snapshot, which opens a new
        // journal. Closing this one now holds no file open for writing while the disk is full,
        // so that the operator may remount it (read-only, for a check) meanwhile.
        this.needSnapshot = true;
        this.fh = null;
        await fh.close().catch(() => undefined);
        this.log('error', 'could not append to the state journal', { journal: this.journalPath, err: (e as Error).message });
        this.markUnsaved(e, group.length, 'journal');
        for (const p of group) p.fail(e);
        continue;
      }
      this.journalBytes += Buffer.byteLength(data);
      const c = this.compaction;
      if (c) for (const p of group) if (p.seq > c.seq) c.carry.push(p.line);
      for (const p of group) p.ok();
      this.maybeCompact();
    }
  }

  /**
   * Replaces both files: a snapshot of `source()` holding every seq handed out so far, then
   * an empty journal. It resolves every batch waiting, since the snapshot holds them all.
   */
  private async rebase(source: () => TableConfig, rethrow: boolean): Promise<void> {
    // A snapshot still being written by a compaction must land first, or it would replace this newer one.
    if (this.compaction) {
      await this.compaction.done;
      this.compaction = null;
    }
    const seq = this.seq;
    const covered = this.takePending();
    try {
      const text = await snapshotText(source(), seq);
      await writeFileAtomic(this.path, text);
      this.snapshotBytes = Buffer.byteLength(text);
      await this.newJournal([]);
    } catch (e) {
      this.needSnapshot = true;
      // The next write is a whole snapshot again, with a new journal: hold no file open for writing meanwhile.
      const fh = this.fh;
      this.fh = null;
      await fh?.close().catch(() => undefined);
      // While unsaved, the periodic warning speaks for every failed retry.
      if (!this.unsaved) this.log('error', 'could not write the state file', { path: this.path, err: (e as Error).message });
      if (!rethrow) this.markUnsaved(e, covered.length, 'snapshot');
      for (const p of covered) p.fail(e);
      if (rethrow) throw e;
      return;
    }
    this.needSnapshot = false;
    this.retryAt = 0;
    for (const p of covered) p.ok();
    this.markSaved();
  }

  /**
   * A write failed: `changes` batches are live but not on disk. The first failure says so
   * loudly and starts the retries; later ones only count (the retry loop warns on a timer).
   */
  private markUnsaved(e: unknown, changes: number, what: string): void {
    this.failures++;
    this.lastError = (e as Error).message;
    const now = Date.now();
    if (this.unsaved) {
      this.unsaved.changes += changes;
      return;
    }
    this.unsaved = { since: now, changes, lastWarn: now, delay: this.retryMs };
    this.log(
      'error',
      `state file ${this.path}: running UNSAVED: ${what === 'start' ? 'it cannot be written' : 'a write failed'} (${this.lastError}); changes are applied but not saved, and a crash or restart now restores the table as last saved; tsvsd writes the whole table again as soon as the disk takes it`,
      { path: this.path, err: this.lastError, retryMs: this.retryMs },
    );
    this.scheduleRetry();
  }

  /** A whole snapshot of the live table is on disk again. */
  private markSaved(): void {
    const u = this.unsaved;
    if (!u) return;
    this.unsaved = null;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const secs = Math.round((Date.now() - u.since) / 1000);
    this.log('warn', `state file ${this.path}: saved again after ${secs} s unsaved; the live table is on disk`, {
      path: this.path,
      unsavedSeconds: secs,
      changes: u.changes,
    });
  }

  /** Tries a whole snapshot after the current delay; doubles the delay (bounded) while it fails. */
  private scheduleRetry(): void {
    const u = this.unsaved;
    if (!u || this.retryTimer || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (!this.unsaved || this.closed || !this.source) return;
      const source = this.source;
      void this.exclusive(async () => {
        // A change may have saved everything meanwhile.
        if (this.unsaved) await this.rebase(source, false);
      }).then(() => {
        const still = this.unsaved;
        if (!still) return;
        still.delay = Math.min(still.delay * 2, this.retryMaxMs);
        const now = Date.now();
        if (now - still.lastWarn >= this.warnEveryMs) {
          still.lastWarn = now;
          this.log(
            'warn',
            `state file ${this.path}: still UNSAVED after ${Math.round((now - still.since) / 1000)} s: ${still.changes} change(s) not on disk (${this.lastError}); retrying every ${Math.round(still.delay / 1000)} s`,
            { path: this.path, unsavedChanges: still.changes, err: this.lastError },
          );
        }
        this.scheduleRetry();
      });
    }, u.delay);
    this.retryTimer.unref();
  }

  /** Starts a compaction in the background once the journal has outgrown its bound. */
  private maybeCompact(): void {
    if (this.compaction || this.needSnapshot || this.closed || !this.source) return;
    if (this.journalBytes <= Math.max(this.compactAt(), this.retryAt)) return;
    // The table and the seq are taken in the same tick, so the snapshot holds exactly the records up to `seq`.
    const seq = this.seq;
    const cfg = this.source();
    const c: Compaction = { seq, carry: [], written: false, bytes: 0, done: Promise.resolve() };
    this.compaction = c;
    c.done = (async () => {
      const text = await snapshotText(cfg, seq);
      c.bytes = Buffer.byteLength(text);
      await writeFileAtomic(this.path, text);
    })().then(
      () => {
        c.written = true;
        // Switch journals now if nothing is being appended; otherwise the append loop does it between two groups.
        if (this.compaction === c) void this.exclusive(() => this.switchJournal(c));
      },
      (e: unknown) => {
        this.log('error', 'could not write a new snapshot of the state file; the journal keeps growing until the next try', {
          path: this.path,
          err: (e as Error).message,
        });
        if (this.compaction === c) this.compaction = null;
        this.retryAt = this.journalBytes + this.compactAt();
      },
    );
  }

  /** After a compaction's snapshot is in place: a new journal holding only the records it lacks. */
  private async switchJournal(c: Compaction): Promise<void> {
    if (this.compaction !== c || !c.written) return;
    this.compaction = null;
    try {
      await this.newJournal(c.carry);
    } catch (e) {
      // The old journal may or may not still be in place: a whole snapshot settles it.
      this.needSnapshot = true;
      this.log('error', 'could not start a new state journal', { journal: this.journalPath, err: (e as Error).message });
      return;
    }
    this.snapshotBytes = c.bytes;
    this.retryAt = 0;
    this.log('info', 'state file compacted', { path: this.path, seq: c.seq, carried: c.carry.length });
  }

  /** Replaces the journal with one holding `lines`, and appends to it from then on. */
  private async newJournal(lines: string[]): Promise<void> {
    const text = JOURNAL_HEADER + lines.join('');
    const tmp = await writeTemp(this.journalPath, text, 0o600);
    try {
      await fsp.rename(tmp, this.journalPath);
    } catch (e) {
      await fsp.rm(tmp, { force: true });
      throw e;
    }
    // From the rename on, appends must go to the new file.
    const old = this.fh;
    this.fh = null;
    await old?.close().catch(() => undefined);
    this.fh = await fsp.open(this.journalPath, fsc.O_WRONLY | fsc.O_APPEND);
    this.journalBytes = Buffer.byteLength(text);
    await syncDir(dirname(this.journalPath));
  }
}

/** Writes all of `data` at the end of an O_APPEND file. */
async function writeAll(fh: FileHandle, data: string): Promise<void> {
  const buf = Buffer.from(data);
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off);
    off += bytesWritten;
  }
}
