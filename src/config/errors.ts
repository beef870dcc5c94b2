/**
 * Configuration errors: every problem found in a file, each with file:line:column and the
 * key it concerns, so an operator can fix them all in one pass. A ConfigError is a
 * TsvsError (BAD_REQUEST) so the daemon and the API report it the usual way.
 */
import { TsvsError } from '../core/errors.js';
import type { Diagnostic } from './model.js';
import { CONFIG_LIMITS, countLimit } from './read.js';
import { QUOTE_MAX } from '../core/quote.js';

export function formatDiagnostic(d: Diagnostic): string {
  return `${d.file}:${d.line}:${d.column}: ${d.message}`;
}

/**
 * Every problem of a file, at most CONFIG_LIMITS.maxDiagnostics of them listed: the rest
 * collapse into one "... and N more" line, so that no file makes a megabyte of errors.
 */
export class ConfigError extends TsvsError {
  /** The diagnostics listed (at most CONFIG_LIMITS.maxDiagnostics). */
  readonly diagnostics: Diagnostic[];
  /** How many there were in all; `total - diagnostics.length` were left out. */
  readonly total: number;
  /** `total`: how many there were, when `diagnostics` is already a cut list (from a worker thread). */
  constructor(diagnostics: Diagnostic[], total = diagnostics.length) {
    const listed = diagnostics.slice(0, CONFIG_LIMITS.maxDiagnostics);
    const more = total - listed.length;
    if (more > 0 && total === diagnostics.length) countLimit('diagnostics');
    const text = listed.map(formatDiagnostic).join('\n') + (more ? `\n... and ${more} more error${more === 1 ? '' : 's'}` : '');
    super('BAD_REQUEST', text, `invalid configuration:\n${text}`);
    this.name = 'ConfigError';
    this.diagnostics = listed;
    this.total = total;
  }
}

/** Levenshtein distance, for "did you mean" hints on unknown keys. */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length]![b.length]!;
}

/** The closest known word, when it is close enough to be a likely typo. */
export function suggest(word: string, known: readonly string[]): string | undefined {
  // Levenshtein is quadratic: a long word is no typo of a keyword, and would cost seconds.
  if (word.length > QUOTE_MAX) return undefined;
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const dd = distance(word.toLowerCase(), k.toLowerCase());
    if (dd < bestD) {
      bestD = dd;
      best = k;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}
