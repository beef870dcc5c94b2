/**
 * How every part of tsvs logs and describes a failure. tsvsd wires LogFn to pino (JSON
 * lines on stdout); tests pass their own.
 */

/** The levels a part may log at. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** One log line: a level, a message that names the object, and structured fields. */
export type LogFn = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;

/**
 * The short text of an error, for logs and health reasons: the errno code alone when the
 * message only repeats it ("ECONNREFUSED" for "connect ECONNREFUSED 127.0.0.1:80"), the code
 * and the message when the message says more, the message when there is no code.
 */
export function errText(e: unknown): string {
  const err = e as NodeJS.ErrnoException | null | undefined;
  if (err?.code) return err.message && !err.message.includes(err.code) ? `${err.code} ${err.message}` : err.code;
  return String(err?.message ?? e);
}
