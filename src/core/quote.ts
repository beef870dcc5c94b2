/**
 * How a message quotes what a user typed or a file holds: a short prefix, never the whole
 * input. Every error text of the config readers, the ipvsadm parser and the API that names
 * an input goes through `quote`, so a 10 MB address gives a 100-byte error, not a 20 MB one.
 */

/** The most characters of an input that a message quotes. */
export const QUOTE_MAX = 64;

/**
 * An input as a message shows it: a string `"quoted"` with control characters escaped,
 * anything else as JSON (`5`, `null`, `{"a":1}`); past `max` characters, the first `max`
 * then `…` and the input's length: `"aaaa…" (10485760 bytes)`. Never throws (a value too
 * deep for JSON is shown by its type).
 */
export function quote(value: unknown, max = QUOTE_MAX): string {
  if (typeof value === 'string') {
    if (value.length <= max) return JSON.stringify(value);
    return `${JSON.stringify(`${head(value, max)}…`)} (${Buffer.byteLength(value, 'utf8')} bytes)`;
  }
  let s: string;
  try {
    s = JSON.stringify(value) ?? String(value);
  } catch {
    s = Array.isArray(value) ? '[an array too deep to show]' : `[${typeof value}]`;
  }
  return s.length <= max ? s : `${head(s, max)}… (${Buffer.byteLength(s, 'utf8')} bytes)`;
}

/** The first `max` characters, cut on a code point so that a surrogate pair is never split. */
function head(s: string, max: number): string {
  return Array.from(s.slice(0, max + 1))
    .slice(0, max)
    .join('');
}

/** `quote` without the quotation marks, for inputs that a message shows bare (file names, addresses). */
export function clip(value: unknown, max = QUOTE_MAX): string {
  const s = typeof value === 'string' ? value : String(value);
  return s.length <= max ? s : `${head(s, max)}… (${Buffer.byteLength(s, 'utf8')} bytes)`;
}
