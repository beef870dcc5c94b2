/**
 * NDJSON answers written in batches: a listing of 10,000 services is never one string in
 * memory, the socket's backpressure paces it, and between batches the event loop serves
 * other clients (a listing of the whole table does not stall a change or a health check).
 */

/** Media type of the streamed listings. */
const NDJSON_TYPE = 'application/x-ndjson';

/** A batch is cut at whichever comes first. */
const BATCH_ITEMS = 256;
const BATCH_BYTES = 64 * 1024;

/**
 * A Response whose body is `head`, then one line per item (made by `line` only when its
 * batch is written), then `end`. `items` is taken as it is when the call is made.
 */
export function ndjsonResponse<T>(
  head: unknown,
  items: readonly T[],
  line: (item: T) => unknown,
  end: unknown,
  headers: Record<string, string> = {},
): Response {
  const encoder = new TextEncoder();
  let next = -1; // -1: the head is still to be sent
  let first = true;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      // Give the event loop a turn between batches (not before the first: it answers at once).
      if (!first) await new Promise<void>((r) => setImmediate(r));
      first = false;
      let text = '';
      if (next < 0) {
        text = `${JSON.stringify(head)}\n`;
        next = 0;
      }
      const stop = Math.min(items.length, next + BATCH_ITEMS);
      while (next < stop && text.length < BATCH_BYTES) text += `${JSON.stringify(line(items[next++]!))}\n`;
      if (next >= items.length) {
        text += `${JSON.stringify(end)}\n`;
        controller.enqueue(encoder.encode(text));
        controller.close();
        return;
      }
      controller.enqueue(encoder.encode(text));
    },
  });
  return new Response(body, { status: 200, headers: { 'content-type': `${NDJSON_TYPE}; charset=utf-8`, ...headers } });
}

/** Whether the request asks for NDJSON (Accept header, or ?format=ndjson for curl and browsers). */
export function wantsNdjson(accept: string | undefined, format: string | undefined): boolean {
  return format === 'ndjson' || (accept ?? '').split(',').some((t) => t.trim().split(';')[0] === NDJSON_TYPE);
}
