/**
 * How a message quotes what a user typed or a file holds: a short prefix, never the whole
 * input. Every error text of the config readers, the ipvsadm parser and the API that names
 * an input goes through `quote`, so a 10 MB address gives a 100-byte error, not a 20 MB one.
 */

/** The most characters of an input that a message quotes. */
export const QUOTE_MAX = 64;

/**
 * `"value"`, with control characters escaped; past `max` characters, the first `max` then
 * `…` and the input's length: `"aaaa…" (10485760 bytes)`.
 */
export function quote(value: unknown, max = QUOTE_MAX): string {
  const s = typeof value === 'string' ? value : String(value);
  if (s.length <= max) return JSON.stringify(s);
  // Cut on a code point, so a surrogate pair is never split.
  const head = Array.from(s.slice(0, max + 1))
    .slice(0, max)
    .join('');
  return `${JSON.stringify(`${head}…`)} (${Buffer.byteLength(s, 'utf8')} bytes)`;
}

/** `quote` without the quotation marks, for inputs that a message shows bare (file names, addresses). */
export function clip(value: unknown, max = QUOTE_MAX): string {
  const s = typeof value === 'string' ? value : String(value);
  if (s.length <= max) return s;
  const head = Array.from(s.slice(0, max + 1))
    .slice(0, max)
    .join('');
  return `${head}… (${Buffer.byteLength(s, 'utf8')} bytes)`;
}
