/**
 * The state journal's format: one line per saved batch of changes, appended next to the
 * snapshot (src/daemon/state.ts owns the files and the order of writes).
 *
 *   {"format":"tsvs-journal","version":1}                        the first line
 *   {"sum":"1a2b3c4d","seq":42,"ops":[{"op":"add-server",...}]}   one line per batch
 *
 * `seq` numbers batches 1, 2, 3, ... over the life of the state file. The snapshot says
 * which seq it holds up to, so a replay skips the records it already holds: operations are
 * not idempotent (adding a service twice fails). `sum` is the first 8 hex digits of the
 * SHA-256 of the rest of the line after `{"sum":"…",`, which tells a whole record from a
 * torn or damaged one without trusting the JSON parser to notice.
 */
import { createHash } from 'node:crypto';
import type { Op } from '../core/types.js';

/** The first line of every journal file. */
export const JOURNAL_HEADER = '{"format":"tsvs-journal","version":1}\n';

/** One record read back from a journal. */
export interface JournalRecord {
  seq: number;
  ops: Op[];
  /** 1-based line number in the file, for messages. */
  line: number;
  /** Byte offset in the file where the record's line starts: a journal cut there keeps every record before it. */
  offset: number;
}

/** What a journal file holds. */
export interface ParsedJournal {
  records: JournalRecord[];
  /** An incomplete or damaged end of the file (a crash during an append), dropped. */
  torn: { line: number; bytes: number; problem: string } | null;
}

/** A damaged journal (not a torn end): `line` is 1-based, `offset` the byte where that line starts. */
export class JournalError extends Error {
  constructor(
    readonly line: number,
    readonly problem: string,
    readonly offset = 0,
  ) {
    super(`line ${line} (byte ${offset}): ${problem}`);
  }
}

const SUM_PREFIX = '{"sum":"';
const SUM_LEN = 8;
// `{"sum":"` + 8 hex digits + `",`
const BODY_AT = SUM_PREFIX.length + SUM_LEN + 2;

function digest(body: string): string {
  return createHash('sha256').update(body).digest('hex').slice(0, SUM_LEN);
}

/** The line (newline included) that records batch `seq`. */
export function encodeRecord(seq: number, ops: readonly Op[]): string {
  const body = `"seq":${seq},"ops":${JSON.stringify(ops)}}`;
  return `${SUM_PREFIX}${digest(body)}",${body}\n`;
}

/** Decodes one line (without its newline); returns the problem as a string when it is not a whole record. */
function decodeRecord(text: string, line: number, offset: number): JournalRecord | string {
  if (!text.startsWith(SUM_PREFIX) || text.slice(BODY_AT - 2, BODY_AT) !== '",') return 'not a journal record';
  const body = text.slice(BODY_AT);
  if (digest(body) !== text.slice(SUM_PREFIX.length, SUM_PREFIX.length + SUM_LEN)) return 'checksum mismatch';
  let rec: { seq?: unknown; ops?: unknown };
  try {
    rec = JSON.parse(`{${body}`) as typeof rec;
  } catch {
    // The checksum matched, so the writer wrote it this way: still refuse it.
    return 'not valid JSON';
  }
  if (!Number.isSafeInteger(rec.seq) || (rec.seq as number) < 1) return 'no valid seq';
  if (!Array.isArray(rec.ops)) return 'no ops';
  return { seq: rec.seq as number, ops: rec.ops as Op[], line, offset };
}

/**
 * Parses a whole journal file. A bad line at the end, or bad lines only from some point to
 * the end, is a torn tail: an append cut short by a crash, whose change was never
 * acknowledged. A bad line followed by good records is damage, and throws a JournalError.
 * Messages never quote the file's contents.
 */
export function parseJournal(buf: Buffer): ParsedJournal {
  if (buf.length === 0) return { records: [], torn: null };
  const header = Buffer.from(JOURNAL_HEADER);
  if (buf.length < header.length || !buf.subarray(0, header.length).equals(header)) {
    throw new JournalError(1, 'not a tsvs journal (the first line is not its header)', 0);
  }
  const records: JournalRecord[] = [];
  let firstBad: { line: number; offset: number; problem: string } | null = null;
  let offset = header.length;
  for (let line = 2; offset < buf.length; line++) {
    const nl = buf.indexOf(10, offset);
    const end = nl < 0 ? buf.length : nl;
    const rec = nl < 0 ? 'incomplete (no end of line)' : decodeRecord(buf.toString('utf8', offset, end), line, offset);
    if (typeof rec === 'string') {
      firstBad ??= { line, offset, problem: rec };
    } else if (firstBad) {
      throw new JournalError(
        firstBad.line,
        `record is damaged (${firstBad.problem}) and whole records follow it (the first at line ${line}), so this is not an append cut short by a crash`,
        firstBad.offset,
      );
    } else {
      records.push(rec);
    }
    offset = end + 1;
  }
  const torn = firstBad ? { line: firstBad.line, bytes: buf.length - firstBad.offset, problem: firstBad.problem } : null;
  return { records, torn };
}
