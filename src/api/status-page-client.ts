/**
 * The client side of GET /v1/status/page, for `tsvs top` and scripts. It rides on
 * HttpControlClient's request path (socket or TCP, token, errors as TsvsError); once
 * client.ts grows a statusPage() method this file can become that method.
 */
import type { HttpControlClient } from './client.js';
import type { Problem, Proto, Sort, StatusPage } from './routes/status-page.js';

/** What to ask for; every field is optional, as in the query string. */
export interface StatusPageRequest {
  q?: string;
  filter?: Problem[];
  proto?: Proto[];
  sort?: Sort;
  offset?: number;
  limit?: number;
  history?: boolean;
}

/** The query string (with its "?", or "" for none) of a StatusPageRequest. */
export function statusPageQuery(r: StatusPageRequest): string {
  const p = new URLSearchParams();
  if (r.q) p.set('q', r.q);
  if (r.filter?.length) p.set('filter', r.filter.join(','));
  if (r.proto?.length) p.set('proto', r.proto.join(','));
  if (r.sort) p.set('sort', r.sort);
  if (r.offset) p.set('offset', String(r.offset));
  if (r.limit !== undefined) p.set('limit', String(r.limit));
  if (r.history) p.set('history', '1');
  return p.size ? `?${p}` : '';
}

/** Totals and one page of services from the daemon. */
export function fetchStatusPage(client: HttpControlClient, r: StatusPageRequest = {}): Promise<StatusPage> {
  // Element access reaches the client's private request helper without duplicating it.
  // biome-ignore lint/complexity/useLiteralKeys: `call` is private; element access is the deliberate way in
  return client['call']<StatusPage>('GET', `/v1/status/page${statusPageQuery(r)}`);
}
