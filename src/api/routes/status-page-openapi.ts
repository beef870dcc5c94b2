/**
 * The OpenAPI description of /v1/status/page and its event stream (src/api/openapi.ts
 * spreads it into its paths), kept next to the route's parameters so they stay in step.
 */
import { DEFAULT_LIMIT, MAX_LIMIT, MAX_QUERY, PROBLEMS, PROTOS, SORTS } from './status-page.js';

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const int = { type: 'integer' };

const parameters = [
  {
    name: 'q',
    in: 'query',
    schema: { type: 'string', maxLength: MAX_QUERY },
    description:
      'Search: every whitespace-separated term must appear (case-insensitive) in the service id (tcp:10.0.0.1:80, fwm:7), its scheduler, or a real server id (10.0.0.11:80)',
  },
  {
    name: 'filter',
    in: 'query',
    schema: { type: 'string' },
    description: `Comma-separated, any of ${PROBLEMS.join(', ')}: services with a real server down (or removed by health checking), at weight 0, overloaded, or with no real server that can take a new connection`,
  },
  { name: 'proto', in: 'query', schema: { type: 'string' }, description: `Comma-separated, any of ${PROTOS.join(', ')}` },
  {
    name: 'sort',
    in: 'query',
    schema: { type: 'string', enum: [...SORTS], default: 'table' },
    description:
      'table: the table order; name: by id; conns: active+inactive, most first; rate: the estimator conn/s then bytes/s, most first',
  },
  { name: 'offset', in: 'query', schema: { type: 'integer', minimum: 0, default: 0 } },
  {
    name: 'limit',
    in: 'query',
    schema: { type: 'integer', minimum: 0, maximum: MAX_LIMIT, default: DEFAULT_LIMIT },
    description: '0 gives the totals only',
  },
  {
    name: 'history',
    in: 'query',
    schema: { type: 'string', enum: ['1', 'true'] },
    description: "Include the page's counter history (as /v1/history, cut to the page); on the event stream, in the first event only",
  },
];

const statusPage = {
  type: 'object',
  properties: {
    at: { type: 'string', format: 'date-time' },
    dataplane: { type: 'string' },
    vrrp: ref('Vrrp'),
    totals: {
      type: 'object',
      description: 'Over the whole table, whatever the page',
      properties: {
        services: int,
        servicesWith: { type: 'object', properties: Object.fromEntries(PROBLEMS.map((p) => [p, int])) },
        servers: {
          type: 'object',
          properties: { total: int, up: int, down: int, unchecked: int, quiesced: int, overloaded: int, removed: int },
        },
        activeconns: int,
        inactconns: int,
        connections: int,
        stats: ref('Stats'),
        rates: ref('Rates'),
        noDestination: int,
        connectFailures: int,
      },
    },
    matched: { type: 'integer', description: 'Services matching q, filter and proto' },
    offset: int,
    limit: int,
    sort: { type: 'string', enum: [...SORTS] },
    services: { type: 'array', items: ref('Service') },
    history: { type: 'array', items: { type: 'object' } },
  },
};

const badQuery = {
  description: 'A query parameter it does not understand, or limit over the maximum (BAD_REQUEST)',
  content: { 'application/json': { schema: ref('Error') } },
};

/** The paths, for openApiDocument(). */
export const statusPagePaths = {
  '/v1/status/page': {
    get: {
      summary: 'Totals over every service, then one searched, filtered, sorted page of services',
      parameters,
      responses: { '200': { description: 'StatusPage', content: { 'application/json': { schema: statusPage } } }, '400': badQuery },
    },
  },
  '/v1/status/page/events': {
    get: {
      summary: 'Server-sent events: a "status" event (the /v1/status/page JSON for these parameters) at once and every second',
      parameters,
      responses: {
        '200': { description: 'text/event-stream', content: { 'text/event-stream': { schema: { type: 'string' } } } },
        '400': badQuery,
      },
    },
  },
};
