/**
 * Target: the control API's request bodies (src/api/server.ts createControlApp), in
 * process: a real Director and core table under the app, with a data plane that carries
 * nothing and refuses every VIP ending in .13 (so that plane refusals are fuzzed too).
 *
 * Properties, for each request (method, route, body): no 500; a refusal (4xx) answers a
 * JSON error with a code, is not much longer than the request, and leaves the table
 * exactly as it was. Inputs: valid bodies of every mutating route with values swapped for
 * random JSON, keys dropped or added, raw text mutations of valid JSON, and random JSON.
 */
import fc from 'fast-check';
import type { Hono } from 'hono';
import { pino } from 'pino';
import { createControlApp } from '../../../src/api/server.js';
import { TsvsError } from '../../../src/core/errors.js';
import type { IpvsTable } from '../../../src/core/table.js';
import type { FwdMethod, Op } from '../../../src/core/types.js';
import { Director } from '../../../src/daemon/director.js';
import type { DataPlane } from '../../../src/dataplane/dataplane.js';
import { newTable } from '../../table.js';
import { describeError, mutatedText, type FuzzTarget } from '../fuzz.js';

/** A data plane that carries nothing; it refuses VIPs ending in .13, as a plane refuses a VIP it cannot bind. */
class PaperPlane implements DataPlane {
  readonly name = 'paper';
  readonly methods = new Set<FwdMethod>(['masq', 'route', 'tunnel', 'fullnat']);
  async start(): Promise<void> {}
  async prepare(ops: readonly Op[]): Promise<void> {
    for (const op of ops)
      if (op.op === 'add-service' && op.service.addr.endsWith('.13'))
        throw new TsvsError('DATAPLANE', `${op.service.addr}: not a local address`);
  }
  abort(): void {}
  async stop(): Promise<void> {}
}

const svcA = { af: 4, protocol: 'tcp', addr: '10.0.0.1', port: 80, fwmark: 0 };
const svcB = { af: 6, protocol: 'udp', addr: '2001:db8::1', port: 53, fwmark: 0 };
const cfg = { scheduler: 'wlc', schedFlags: 0, persistent: 0, netmask: 0xffffffff, ops: false, pe: '' };
const rs = (addr: string, port: number) => ({ af: 4, addr, port, weight: 1, fwd: 'masq', uThreshold: 0, lThreshold: 0 });
const BASELINE = [
  { op: 'flush' },
  { op: 'set-timeouts', timeouts: { tcp: 900, tcpfin: 120, udp: 300 } },
  { op: 'add-service', service: { ...svcA, ...cfg } },
  { op: 'add-service', service: { ...svcB, ...cfg, netmask: 128, scheduler: 'rr' } },
  { op: 'add-server', service: svcA, dest: rs('192.168.1.2', 80) },
  { op: 'add-server', service: svcA, dest: rs('192.168.1.3', 8080) },
] as Op[];

const SVC_IDS = ['tcp:10.0.0.1:80', 'udp:[2001:db8::1]:53', 'fwm:7', 'tcp:10.0.0.9:80', 'tcp:10.0.0.1', '', '%', '..', 'tcp:10.0.0.1:80:1'];
const RS_IDS = ['192.168.1.2:80', '192.168.1.3:8080', '192.168.1.9:80', '[2001:db8::2]:53', 'x', ''];

/** Valid bodies, per route, as the mutations' seeds. */
const OPS_BODIES = [
  { ops: [{ op: 'add-service', service: { ...svcA, port: 81, ...cfg } }] },
  { ops: [{ op: 'add-service', service: { ...svcA, addr: '10.0.0.13', ...cfg } }] },
  {
    ops: [
      { op: 'add-server', service: svcA, dest: rs('192.168.1.4', 80) },
      { op: 'edit-server', service: svcA, dest: { ...rs('192.168.1.2', 80), weight: 5 } },
    ],
  },
  { ops: [{ op: 'delete-server', service: svcA, dest: { af: 4, addr: '192.168.1.2', port: 80 } }] },
  {
    ops: [
      { op: 'edit-service', service: { ...svcA, ...cfg, scheduler: 'rr' } },
      { op: 'delete-service', service: svcB },
    ],
  },
  { ops: [{ op: 'set-timeouts', timeouts: { tcp: 10, tcpfin: 0, udp: 5 } }, { op: 'zero' }, { op: 'flush' }] },
  { ops: [{ op: 'add-service', service: { af: 4, protocol: 'tcp', addr: '0.0.0.0', port: 0, fwmark: 7, ...cfg } }] },
];
const ROUTES: Array<{ method: string; path: string; bodies: unknown[] }> = [
  { method: 'POST', path: '/v1/ops', bodies: OPS_BODIES },
  {
    method: 'POST',
    path: '/v1/services',
    bodies: [
      { ...svcA, port: 82, ...cfg },
      { protocol: 'tcp', addr: '10.0.0.5', port: 80 },
    ],
  },
  { method: 'PUT', path: '/v1/services/:svc', bodies: [{ scheduler: 'rr' }, { persistent: 60, netmask: 4294967040 }, { port: 99 }] },
  { method: 'PATCH', path: '/v1/services/:svc', bodies: [{ scheduler: 'mh', schedFlags: 1 }, { ops: true }] },
  { method: 'POST', path: '/v1/services/:svc/servers', bodies: [{ addr: '192.168.1.7', port: 80, weight: 2 }, rs('192.168.1.8', 80)] },
  { method: 'PUT', path: '/v1/services/:svc/servers/:rs', bodies: [{ weight: 3 }, { fwd: 'route' }, { uThreshold: 10, lThreshold: 20 }] },
  { method: 'PATCH', path: '/v1/services/:svc/servers/:rs', bodies: [{ weight: 0 }] },
  { method: 'POST', path: '/v1/services/:svc/servers/:rs/restore', bodies: [{ weight: 4 }, {}] },
  { method: 'POST', path: '/v1/services/:svc/servers/:rs/drain', bodies: [{}] },
  { method: 'DELETE', path: '/v1/services/:svc/servers/:rs', bodies: [{}] },
  { method: 'DELETE', path: '/v1/services/:svc', bodies: [{}] },
  { method: 'POST', path: '/v1/services/:svc/zero', bodies: [{}] },
  { method: 'POST', path: '/v1/zero', bodies: [{}] },
  { method: 'PUT', path: '/v1/timeouts', bodies: [{ tcp: 1, tcpfin: 2, udp: 3 }, { tcp: 0 }] },
  { method: 'POST', path: '/v1/sync', bodies: [{ state: 'master', mcastInterface: 'lo', syncid: 1 }] },
  { method: 'POST', path: '/v1/reload', bodies: [{}] },
  { method: 'GET', path: '/v1/services/:svc', bodies: [{}] },
];

const scalar = fc.oneof(
  fc.constantFrom(
    0,
    1,
    -1,
    65535,
    65536,
    4294967295,
    4294967296,
    1.5,
    1e308,
    '',
    'rr',
    'tcp',
    'udp',
    '10.0.0.1',
    '2001:db8::1',
    '127.0.0.１',
    '__proto__',
    'toString',
    null,
    true,
    false,
  ),
  fc.integer(),
  fc.string({ maxLength: 12 }),
);
const anyJson = fc.jsonValue({ maxDepth: 3 });

type Json = unknown;
/** A structural mutation of a JSON value: a leaf swapped, a key dropped or added, an array item repeated. */
function mutateJson(v: Json, path: number[], leaf: Json, key: string): Json {
  if (!path.length || v === null || typeof v !== 'object') return path.length ? v : leaf;
  const [i, ...rest] = path as [number, ...number[]];
  if (Array.isArray(v)) {
    if (!v.length) return [leaf];
    const k = i % (v.length + 1);
    if (k === v.length) return [...v, v[0]]; // an item repeated
    return v.map((x, j) => (j === k ? mutateJson(x, rest, leaf, key) : x));
  }
  const o = v as Record<string, Json>;
  const keys = Object.keys(o);
  const k = i % (keys.length + 2);
  if (k === keys.length) return { ...o, [key]: leaf };
  if (k === keys.length + 1 && keys.length) {
    const { [keys[i % keys.length]!]: _, ...restObj } = o;
    return restObj;
  }
  const name = keys[k] ?? key;
  return { ...o, [name]: mutateJson(o[name], rest, leaf, key) };
}

const KEYS = [
  'op',
  'ops',
  'service',
  'dest',
  'addr',
  'port',
  'af',
  'protocol',
  'fwmark',
  'weight',
  'fwd',
  'scheduler',
  'timeouts',
  '__proto__',
  'constructor',
];
const request = fc
  .record({
    route: fc.constantFrom(...ROUTES),
    svc: fc.constantFrom(...SVC_IDS),
    rs: fc.constantFrom(...RS_IDS),
    seedIndex: fc.nat(),
    edits: fc.array(
      fc.record({ path: fc.array(fc.nat(), { maxLength: 5 }), leaf: fc.oneof(scalar, anyJson), key: fc.constantFrom(...KEYS) }),
      { maxLength: 3 },
    ),
    form: fc.nat({ max: 9 }),
    raw: mutatedText(OPS_BODIES.map((b) => JSON.stringify(b)).concat(['{}', '[]', '""', 'null']), [
      '{',
      '}',
      '[',
      ']',
      '"',
      ',',
      ':',
      '\\u0000',
      'null',
      '1e999',
    ]),
    random: anyJson,
  })
  .map((r) => {
    const path = r.route.path.replace(':svc', encodeURIComponent(r.svc)).replace(':rs', encodeURIComponent(r.rs));
    let body: string | undefined;
    if (r.form === 0)
      body = r.raw; // text mutations of valid JSON
    else if (r.form === 1) body = JSON.stringify(r.random);
    else {
      let v: Json = r.route.bodies[r.seedIndex % r.route.bodies.length];
      for (const e of r.edits) v = mutateJson(v, e.path, e.leaf, e.key);
      body = JSON.stringify(v);
    }
    return { method: r.route.method, path, body };
  });

let app: Hono | null = null;
let director: Director | null = null;
let table: IpvsTable | null = null;

/** The app on its director, made once per process. */
async function theApp(): Promise<{ app: Hono; director: Director; table: IpvsTable }> {
  if (!app) {
    table = newTable();
    director = new Director(table, new PaperPlane(), null, pino({ level: 'silent' }));
    await director.start();
    app = createControlApp(director);
  }
  return { app, director: director!, table: table! };
}

/** Sends one request to a table reset to BASELINE; throws when the answer breaks a property. */
async function check(req: { method: string; path: string; body: string | undefined }, maxReply: number): Promise<void> {
  const { app, director, table } = await theApp();
  await director.apply(BASELINE);
  const before = JSON.stringify(table.config());
  let status: number;
  let text: string;
  try {
    const init = {
      method: req.method,
      headers: { 'content-type': 'application/json' },
      ...(req.method === 'GET' ? {} : { body: req.body }),
    };
    const res = await app.request(req.path, init);
    status = res.status;
    text = await res.text();
  } catch (e) {
    throw new Error(`${req.method} ${req.path} threw: ${describeError(e)}\nbody ${req.body?.slice(0, 500)}`);
  }
  const what = `${req.method} ${req.path} ${req.body?.slice(0, 500)} -> ${status} ${text.slice(0, 500)}`;
  if (status >= 500 && status !== 501) throw new Error(`server error: ${what}`);
  if (status < 400) return;
  let code: unknown;
  try {
    code = (JSON.parse(text) as { error?: { code?: unknown } }).error?.code;
  } catch {
    code = undefined;
  }
  if (typeof code !== 'string') throw new Error(`a refusal without a JSON error code: ${what}`);
  if (text.length > maxReply) throw new Error(`a refusal of ${text.length} bytes (at most ${maxReply}): ${what}`);
  if (JSON.stringify(table.config()) !== before) throw new Error(`refused but the table changed: ${what}`);
}

const ROUTE_PATHS = ROUTES.filter((r) => r.method !== 'GET').map((r) => ({
  method: r.method,
  path: r.path.replace(':svc', encodeURIComponent(SVC_IDS[0]!)).replace(':rs', encodeURIComponent(RS_IDS[0]!)),
}));

export const apiTarget: FuzzTarget = {
  name: 'API bodies',
  properties: [
    {
      name: 'no 500; a refusal is a short JSON error with a code and leaves the table unchanged',
      runs: 400,
      // A batch of two or more whose items are not objects gave a 500 (failing-op.ts used `in` on them).
      examples: [[{ method: 'POST', path: '/v1/ops', body: '{"ops":[[null],false,1e245]}' }]],
      property: () =>
        fc.asyncProperty(request, async (req) => {
          await check(req, 4096 + 2 * (req.body?.length ?? 0));
          return true;
        }),
    },
    {
      name: 'deeply nested JSON (up to 100,000 levels) in any body is refused cleanly',
      runs: 20,
      maxRuns: 2000,
      property: () =>
        fc.asyncProperty(
          fc.constantFrom(...ROUTE_PATHS),
          fc.integer({ min: 1000, max: 100_000 }),
          fc.constantFrom('[', '{"a":'),
          async (r, depth, open) => {
            const close = open === '[' ? ']' : '}';
            await check({ ...r, body: `{"ops":${open.repeat(depth)}1${close.repeat(depth)}}` }, 4096);
            await check({ ...r, body: `${open.repeat(depth)}1${close.repeat(depth)}` }, 4096);
            return true;
          },
        ),
    },
    {
      name: 'a long value (10 KB to 1 MB) is not echoed back: the refusal stays under 4 KiB',
      runs: 20,
      maxRuns: 2000,
      property: () =>
        fc.asyncProperty(
          fc.integer({ min: 10_000, max: 1_000_000 }),
          fc.constantFrom('addr', 'scheduler', 'pe', 'protocol'),
          async (len, field) => {
            const service = { ...svcA, ...cfg, port: 90, [field]: 'x'.repeat(len) };
            await check({ method: 'POST', path: '/v1/ops', body: JSON.stringify({ ops: [{ op: 'add-service', service }] }) }, 4096);
            await check({ method: 'POST', path: '/v1/services', body: JSON.stringify(service) }, 4096);
            return true;
          },
        ),
    },
  ],
};

/** Stops the director made by the target (the test's `after`). */
export async function stopApi(): Promise<void> {
  if (director) await director.stop(0);
  app = director = table = null;
}
