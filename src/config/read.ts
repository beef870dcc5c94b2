/**
 * Reading config files safely: the bounds on what one load may read (docs/config.md,
 * "Limits"), and the readers that keep to them. A config file must be a regular file: a
 * FIFO, device, socket or directory is refused by name before a byte is read (stat, then
 * an O_NONBLOCK open checked again with fstat, so a FIFO swapped in meanwhile cannot block),
 * and no file is read past the bytes left in the load's budget. The async reader is the
 * daemon's and `tsvs config check`'s; the sync one serves callers that parse text in hand
 * (tests, `parseKeepalivedConfig`).
 */
import { closeSync, constants, fstatSync, openSync, promises as fsp, readSync, statSync, type Stats } from 'node:fs';

/** The bounds of one config load (the main file and everything it includes). */
export const CONFIG_LIMITS = {
  /** keepalived `include` nesting. */
  maxIncludeDepth: 8,
  /** Files read by `include` (after glob expansion), in total. */
  maxIncludeFiles: 1024,
  /** Bytes read in total, the main file included. */
  maxBytes: 8 * 1024 * 1024,
  /** Directory entries one glob may scan. */
  maxGlobEntries: 10_000,
  /** Diagnostics listed; the rest collapse into one "... and N more" line. */
  maxDiagnostics: 100,
} as const;

/** Which bound a load hit, for the log and `tsvs_config_limit_hits_total{limit}`. */
export const CONFIG_LIMIT_NAMES = ['include_depth', 'include_files', 'bytes', 'glob_entries', 'diagnostics', 'special_file'] as const;
export type ConfigLimit = (typeof CONFIG_LIMIT_NAMES)[number];

/**
 * Bounds hit in this thread since it started, by limit (a load in a worker thread reports
 * its own back): `tsvs_config_limit_hits_total{limit}`.
 */
export const limitHits = new Map<ConfigLimit, number>();

/** Counts one hit of a bound. */
export function countLimit(limit: ConfigLimit, n = 1): void {
  limitHits.set(limit, (limitHits.get(limit) ?? 0) + n);
}

/** A file that cannot be a config: not regular, or past the byte budget. `code` names which. */
export class ConfigReadError extends Error {
  constructor(
    readonly code: 'ESPECIAL' | 'EISDIR' | 'EFBIG',
    message: string,
    readonly limit: ConfigLimit,
  ) {
    super(message);
    this.name = 'ConfigReadError';
  }
}

/** What a stat says a non-regular file is, or null for a regular file. */
function specialKind(st: Stats): string | null {
  if (st.isFile()) return null;
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return 'not a regular file';
}

function refuse(path: string, st: Stats): never {
  const kind = specialKind(st)!;
  if (st.isDirectory()) throw new ConfigReadError('EISDIR', `${path} is a directory, not a config file`, 'special_file');
  throw new ConfigReadError('ESPECIAL', `${path} is ${kind}, not a regular file; config files must be regular files`, 'special_file');
}

function tooBig(path: string, budget: number): ConfigReadError {
  return new ConfigReadError(
    'EFBIG',
    `${path}: the configuration exceeds ${budget === CONFIG_LIMITS.maxBytes ? '' : 'what is left of '}the limit of ${CONFIG_LIMITS.maxBytes} bytes read in total`,
    'bytes',
  );
}

// O_NONBLOCK: were a FIFO to replace the file between stat and open, open and read return at once.
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY;

/** Reads a regular file as UTF-8, at most `budget` bytes; throws ConfigReadError or the fs error. */
export async function readConfigFile(path: string, budget: number = CONFIG_LIMITS.maxBytes): Promise<string> {
  const st = await fsp.stat(path);
  if (specialKind(st)) refuse(path, st);
  const fh = await fsp.open(path, OPEN_FLAGS);
  try {
    const st2 = await fh.stat();
    if (specialKind(st2)) refuse(path, st2);
    if (st2.size > budget) throw tooBig(path, budget);
    // /proc files report size 0 and may grow meanwhile: read until EOF, never past the budget.
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const want = Math.min(64 * 1024, budget + 1 - total);
      const buf = Buffer.allocUnsafe(want);
      const { bytesRead } = await fh.read(buf, 0, want, null);
      if (bytesRead === 0) break;
      chunks.push(buf.subarray(0, bytesRead));
      total += bytesRead;
      if (total > budget) throw tooBig(path, budget);
    }
    return Buffer.concat(chunks, total).toString('utf8');
  } finally {
    await fh.close();
  }
}

/** readConfigFile, synchronously (for parsers called with text in hand). */
export function readConfigFileSync(path: string, budget: number = CONFIG_LIMITS.maxBytes): string {
  const st = statSync(path);
  if (specialKind(st)) refuse(path, st);
  const fd = openSync(path, OPEN_FLAGS);
  try {
    const st2 = fstatSync(fd);
    if (specialKind(st2)) refuse(path, st2);
    if (st2.size > budget) throw tooBig(path, budget);
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const want = Math.min(64 * 1024, budget + 1 - total);
      const buf = Buffer.allocUnsafe(want);
      const n = readSync(fd, buf, 0, want, null);
      if (n === 0) break;
      chunks.push(buf.subarray(0, n));
      total += n;
      if (total > budget) throw tooBig(path, budget);
    }
    return Buffer.concat(chunks, total).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/** Byte length of text as read (UTF-8), for the budget of files whose text was handed in. */
export function utf8Bytes(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}
