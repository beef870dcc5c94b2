/**
 * What every part of the keepalived.conf reader shares: the errors and unsupported-keyword
 * reports it collects, and the readers of one statement's arguments (counts, integers,
 * times, addresses), each reporting a bad value at the statement's place.
 */
import { MAX_TIMEOUT } from '../../core/schema.js';
import { canonicalAddr } from '../../core/addr.js';
import { suggest } from '../errors.js';
import type { Diagnostic, Origin } from '../model.js';
import { KEEPALIVED_KEYWORDS } from './keywords.js';
import type { Stmt } from './lexer.js';
import { quote } from '../../core/quote.js';

/** Sets `o[k]` when `v` is defined: an undefined value was refused (and reported), so the default stays. */
export function setIf<T, K extends keyof T>(o: T, k: K, v: T[K] | undefined): void {
  if (v !== undefined) o[k] = v;
}

/** The state of one read of a keepalived.conf: what went wrong, what was ignored, and facts one part tells another. */
export class Reader {
  readonly errors: Diagnostic[] = [];
  readonly unsupported: Diagnostic[] = [];
  /** global_defs says vrrp_version 3. */
  vrrpVersion3 = false;
  /** vrrp_script blocks dropped for having no script (tracking them is skipped, as keepalived). */
  readonly removedScripts = new Set<string>();

  error(st: Stmt | Origin, msg: string): void {
    const at = 'at' in st ? st.at : st;
    this.errors.push({ ...at, message: msg });
  }
  unsupportedKw(st: Stmt, where: string, effect = 'ignored'): void {
    this.unsupported.push({ ...st.at, message: `unsupported keyword ${quote(st.words[0])} in ${where} (${effect})` });
  }
  /** Reports a keyword this context does not handle: unsupported if keepalived knows it, else an error. */
  other(st: Stmt, where: string): void {
    const kw = st.words[0] ?? '';
    if (KEEPALIVED_KEYWORDS.has(kw)) this.unsupportedKw(st, where);
    else {
      const hint = suggest(kw, [...KEEPALIVED_KEYWORDS]);
      this.error(st, `unknown keyword ${quote(kw)} in ${where}${hint ? ` (did you mean ${quote(hint)}?)` : ''}`);
    }
  }
  /** Whether the statement has a block; reports it if not. */
  needBlock(st: Stmt): boolean {
    if (st.block) return true;
    this.error(st, `${st.words[0]}: expected a block "{ ... }"`);
    return false;
  }
  args(st: Stmt, min: number, max: number, usage: string): boolean {
    const n = st.words.length - 1;
    if (n < min || n > max) {
      this.error(st, `${st.words[0]}: expected ${usage}, got ${n ? `${quote(st.words.slice(1).join(' '))}` : 'nothing'}`);
      return false;
    }
    return true;
  }
  int(st: Stmt, i: number, min: number, max: number): number | undefined {
    const s = st.words[i];
    const v = s !== undefined && /^-?\d+$/.test(s) ? Number(s) : NaN;
    if (!Number.isInteger(v) || v < min || v > max) {
      this.error(st, `${st.words[0]}: expected an integer from ${min} to ${max}, got ${s === undefined ? 'nothing' : `${quote(s)}`}`);
      return undefined;
    }
    return v;
  }
  /** keepalived TIMER: seconds, fractions allowed. */
  timer(st: Stmt, i = 1): number | undefined {
    const s = st.words[i];
    const v = s !== undefined && /^\d+(\.\d+)?$/.test(s) ? Number(s) : NaN;
    if (!Number.isFinite(v) || v > MAX_TIMEOUT) {
      this.error(st, `${st.words[0]}: expected a time in seconds, got ${s === undefined ? 'nothing' : `${quote(s)}`}`);
      return undefined;
    }
    return v;
  }
  addr(st: Stmt, i: number, what = 'an IPv4 or IPv6 address'): string | undefined {
    const s = st.words[i];
    const c = s === undefined ? null : canonicalAddr(s);
    if (!c) this.error(st, `${st.words[0]}: expected ${what}, got ${s === undefined ? 'nothing' : `${quote(s)}`}`);
    return c ?? undefined;
  }
  port(st: Stmt, i: number): number | undefined {
    return this.int(st, i, 0, 65535);
  }
  /** The one argument of a keyword (`usage` names what it should be), or undefined. */
  word(st: Stmt, usage: string): string | undefined {
    return this.args(st, 1, 1, usage) ? st.words[1]! : undefined;
  }
  /** The one integer argument of a keyword, from min to max. */
  intArg(st: Stmt, usage: string, min: number, max: number): number | undefined {
    return this.args(st, 1, 1, usage) ? this.int(st, 1, min, max) : undefined;
  }
  /** The one time argument of a keyword, in seconds. */
  timerArg(st: Stmt, usage = 'seconds'): number | undefined {
    return this.args(st, 1, 1, usage) ? this.timer(st) : undefined;
  }
  /** The one address argument of a keyword. */
  addrArg(st: Stmt): string | undefined {
    return this.args(st, 1, 1, 'an address') ? this.addr(st, 1) : undefined;
  }
  /** A flag keyword that takes no argument. */
  flag(st: Stmt): boolean {
    return this.args(st, 0, 0, 'no argument');
  }
  /** A script: the rest of the line (quoted or not), optional user and group are reported; "" is no script. */
  script(st: Stmt): string | undefined {
    if (!this.args(st, 1, 3, 'a script [user [group]]')) return undefined;
    if (st.words.length > 2)
      this.unsupported.push({
        ...st.at,
        message: `${st.words[0]}: running scripts as another user is not supported; runs as tsvsd's user`,
      });
    return st.words[1] || undefined;
  }
}
