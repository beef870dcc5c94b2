/**
 * The C library's number and address parsers as ipvsadm calls them (glibc's behaviour,
 * quirks included): strtol through ipvsadm's string_to_number, atoi, inet_aton and
 * inet_pton. Each returns null where the C function reports failure.
 */
import { canonicalAddr, parseIPv6 } from '../core/addr.js';

const UINT_MAX = 4294967295;
const C_SPACE = /^[ \t\n\v\f\r]*/;

/** ipvsadm's string_to_number: strtol base 10, whole string, within [min, max]; else null. */
export function stringToNumber(s: string, min: number, max: number): number | null {
  const m = /^[ \t\n\v\f\r]*([+-]?)(\d+)$/.exec(s);
  if (!m) return null;
  // Beyond 2^63 strtol reports ERANGE; anything that long is out of every range we use.
  if (m[2]!.replace(/^0+/, '').length > 18) return null;
  // "+ 0" turns "-0" into 0 rather than -0.
  const n = Number(m[2]) * (m[1] === '-' ? -1 : 1) + 0;
  return n >= min && n <= max ? n : null;
}

/** atoi: leading blanks, sign, digits up to the first non-digit; 0 if none. */
export function atoi(s: string): number {
  const m = /^([+-]?)(\d*)/.exec(s.replace(C_SPACE, ''))!;
  if (m[2] === '') return 0;
  const n = Number(m[2]!.slice(0, 12));
  return m[1] === '-' ? -n : n;
}

/**
 * glibc inet_aton: one to four parts, each decimal, octal (leading 0) or hex (0x); the
 * last part fills the remaining bytes ("10.1" = 10.0.0.1). Returns the address as an
 * unsigned number, or null.
 */
export function inetAton(s: string): number | null {
  const parts: number[] = [];
  let i = 0;
  for (;;) {
    if (!/[0-9]/.test(s[i] ?? '')) return null;
    let base = 10;
    if (s[i] === '0') {
      i++;
      if (s[i] === 'x' || s[i] === 'X') {
        base = 16;
        i++;
      } else base = 8;
    }
    let val = 0;
    for (;;) {
      const c = s[i] ?? '';
      let d: number;
      if (/[0-9]/.test(c)) {
        d = c.charCodeAt(0) - 48;
        if (base === 8 && d > 7) return null;
      } else if (base === 16 && /[a-fA-F]/.test(c)) {
        d = c.toLowerCase().charCodeAt(0) - 97 + 10;
      } else break;
      val = val * base + d;
      if (val > UINT_MAX) return null;
      i++;
    }
    if (s[i] === '.') {
      if (parts.length >= 3 || val > 0xff) return null;
      parts.push(val);
      i++;
      continue;
    }
    // glibc accepts trailing blanks followed by anything.
    if (i < s.length && !/[ \t\n\v\f\r]/.test(s[i]!)) return null;
    const limits = [UINT_MAX, 0xffffff, 0xffff, 0xff];
    if (val > limits[parts.length]!) return null;
    let addr = 0;
    parts.forEach((p, k) => {
      addr += p * 2 ** (24 - 8 * k);
    });
    return addr + val;
  }
}

/** inet_ntoa of an unsigned 32-bit address. */
export function formatV4(v: number): string {
  return `${(v >>> 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** inet_pton(AF_INET6): canonical text, or null. */
export function pton6(s: string): string | null {
  if (parseIPv6(s) === null) return null;
  return canonicalAddr(s);
}
