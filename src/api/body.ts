/**
 * The JSON body reader of every API route that takes one. Bodies are size-limited by the
 * server (server.ts bodyLimit); here their nesting is too: a body nested deeper than
 * MAX_JSON_DEPTH is refused with a 400 before it is parsed, so that no later step (a
 * validator, an error message quoting it) can run out of stack on it. Nothing of the body
 * is echoed back.
 */
import type { Context } from 'hono';
import { TsvsError } from '../core/errors.js';

/** The deepest nesting of arrays and objects a request body may have (operations need 4). */
export const MAX_JSON_DEPTH = 32;

/** The nesting depth of a JSON text (brackets outside strings), stopping early past `limit`. */
export function jsonDepth(text: string, limit = MAX_JSON_DEPTH): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) max = depth;
      if (max > limit) return max;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

/** Parses a request body's text: a 400 naming the problem for bad JSON or too deep a nesting; `empty` for a blank body. */
export function parseJsonBody(text: string, empty?: unknown): unknown {
  if (empty !== undefined && text.trim() === '') return empty;
  if (jsonDepth(text) > MAX_JSON_DEPTH) {
    throw new TsvsError(
      'BAD_REQUEST',
      `request body is nested deeper than ${MAX_JSON_DEPTH} levels of arrays and objects`,
      `Request body is nested deeper than ${MAX_JSON_DEPTH} levels`,
    );
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new TsvsError('BAD_REQUEST', 'request body is not valid JSON', 'Request body is not valid JSON');
  }
}

/** Reads and parses the body of `c` (parseJsonBody). */
export async function readJsonBody(c: Context, empty?: unknown): Promise<unknown> {
  return parseJsonBody(await c.req.text(), empty);
}
