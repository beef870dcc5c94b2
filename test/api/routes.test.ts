/**
 * Every route of the control API against an in-process director with the real userspace
 * data plane: changes, validation errors (code, status, table unchanged), auth, paging,
 * health/VRRP/reload, the event stream, the OpenAPI document and the dashboard files.
 */
import { strict as assert } from 'node:assert';
import { after, before, describe, test } from 'node:test';
import { HttpControlClient } from '../../src/api/client.js';
import { UNCHECKED, type HealthSource } from '../../src/health/source.js';
import { openApiDocument } from '../../src/api/openapi.js';
import type { TsvsError } from '../../src/core/errors.js';
import { openEcho, startEchoServer, waitFor, type EchoConn, type TestServer } from '../helper.js';
import { call, createControlApp, destConfig, freeVipPort, listen, serviceConfig, startDirector, type TestDirector } from './harness.js';

const enc = encodeURIComponent;

describe('control API routes', () => {
  let d: TestDirector;
  let rs1: TestServer;
  let rs2: TestServer;
  let vport: number;
  let sid: string;
  const svcPath = () => `/v1/services/${enc(sid)}`;

  before(async () => {
    d = await startDirector();
    rs1 = await startEchoServer('rs1');
    rs2 = await startEchoServer('rs2');
    vport = await freeVipPort();
    sid = `tcp:127.0.0.1:${vport}`;
  });
  after(async () => {
    await d.stop();
    await rs1.close();
    await rs2.close();
  });

  test('POST /v1/services adds a service with defaults; GET lists it', async () => {
    const r = await call(d.app, 'POST', '/v1/services', { protocol: 'tcp', addr: '127.0.0.1', port: vport, scheduler: 'rr' });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.json.id, sid);
    assert.equal(r.json.label, `TCP 127.0.0.1:${vport}`);
    assert.equal(r.json.scheduler, 'rr');
    assert.deepEqual(r.json.dests, []);
    const list = await call(d.app, 'GET', '/v1/services');
    assert.deepEqual(
      list.json.map((s: { id: string }) => s.id),
      [sid],
    );
    const one = await call(d.app, 'GET', svcPath());
    assert.equal(one.status, 200);
    assert.equal(one.json.id, sid);
  });

  test('POST /v1/services/:service/servers adds real servers (masq by default on userspace)', async () => {
    for (const rs of [rs1, rs2]) {
      const r = await call(d.app, 'POST', `${svcPath()}/servers`, { addr: '127.0.0.1', port: rs.port, weight: 2 });
      assert.equal(r.status, 201, r.text);
      assert.equal(r.json.id, `127.0.0.1:${rs.port}`);
      assert.equal(r.json.fwd, 'masq');
      assert.equal(r.json.weight, 2);
      assert.deepEqual(r.json.health, { state: 'unchecked' });
      assert.equal(r.json.connectFailures, 0);
    }
    const servers = await call(d.app, 'GET', `${svcPath()}/servers`);
    assert.equal(servers.json.length, 2);
    const one = await call(d.app, 'GET', `${svcPath()}/servers/${enc(`127.0.0.1:${rs1.port}`)}`);
    assert.equal(one.json.port, rs1.port);
  });

  test('bad payloads answer 4xx with the error code and leave the table unchanged', async () => {
    const before = JSON.stringify(d.table.config());
    const cases: Array<[string, string, unknown, number, string]> = [
      ['POST', '/v1/services', '{not json', 400, 'BAD_REQUEST'],
      ['POST', '/v1/services', [1, 2], 400, 'BAD_REQUEST'],
      ['POST', '/v1/services', { protocol: 'tcp', addr: 'not-an-ip', port: 80 }, 400, 'BAD_REQUEST'],
      ['POST', '/v1/services', { protocol: 'tcp', addr: '127.0.0.1', port: 70000 }, 400, 'BAD_REQUEST'],
      ['POST', '/v1/services', { protocol: 'tcp', addr: '127.0.0.1', port: vport + 0, scheduler: 'rr' }, 409, 'SERVICE_EXISTS'],
      ['POST', '/v1/services', { protocol: 'tcp', addr: '127.0.0.1', port: 1, scheduler: 'nosuch' }, 400, 'SCHEDULER_NOT_FOUND'],
      ['POST', `${svcPath()}/servers`, { addr: '127.0.0.1', port: rs1.port }, 409, 'DEST_EXISTS'],
      ['POST', `${svcPath()}/servers`, { addr: '127.0.0.1', port: 9, weight: 70000 }, 400, 'OUT_OF_RANGE'],
      ['POST', `${svcPath()}/servers`, { addr: '127.0.0.1', port: 9, weight: 'heavy' }, 400, 'BAD_REQUEST'],
      ['POST', `${svcPath()}/servers`, { addr: '127.0.0.1', port: 9, fwd: 'route' }, 422, 'NOT_SUPPORTED'],
      ['POST', `${svcPath()}/servers`, { addr: '224.0.0.1', port: 9 }, 400, 'INVALID'],
      ['POST', `${svcPath()}/servers`, { addr: '127.0.0.1', port: 9, uThreshold: 1, lThreshold: 5 }, 400, 'OUT_OF_RANGE'],
      ['PUT', `${svcPath()}/servers/${enc(`127.0.0.1:${rs1.port}`)}`, { weight: -1 }, 400, 'OUT_OF_RANGE'],
      ['PUT', `${svcPath()}/servers/${enc(`127.0.0.1:${rs1.port}`)}`, { port: 1 }, 400, 'BAD_REQUEST'],
      ['PUT', svcPath(), { scheduler: 'nosuch' }, 400, 'SCHEDULER_NOT_FOUND'],
      ['PUT', svcPath(), { port: 1 }, 400, 'BAD_REQUEST'],
      ['GET', '/v1/services/tcp%3A127.0.0.1%3A1', undefined, 404, 'NO_SERVICE'],
      ['DELETE', '/v1/services/tcp%3A127.0.0.1%3A1', undefined, 404, 'NO_SERVICE'],
      ['GET', `${svcPath()}/servers/${enc('127.0.0.1:9')}`, undefined, 404, 'NO_DEST'],
      ['POST', `${svcPath()}/servers/${enc('127.0.0.1:9')}/drain`, undefined, 404, 'NO_DEST'],
      ['PUT', '/v1/timeouts', { tcp: -5 }, 400, 'BAD_REQUEST'],
      ['POST', '/v1/ops', { ops: 'flush' }, 400, 'BAD_REQUEST'],
      ['POST', '/v1/ops', { ops: [{ op: 'explode' }] }, 400, 'BAD_REQUEST'],
      // A batch whose second op fails changes nothing, the first included.
      [
        'POST',
        '/v1/ops',
        {
          ops: [
            { op: 'add-service', service: serviceConfig(1) },
            { op: 'add-service', service: serviceConfig(1) },
          ],
        },
        409,
        'SERVICE_EXISTS',
      ],
      ['GET', '/v1/connections?limit=-1', undefined, 400, 'BAD_REQUEST'],
      ['GET', '/v1/connections?offset=abc', undefined, 400, 'BAD_REQUEST'],
    ];
    for (const [method, path, body, status, code] of cases) {
      const r = await call(d.app, method, path, body);
      assert.equal(r.status, status, `${method} ${path} ${JSON.stringify(body)}: ${r.text}`);
      assert.equal(r.json?.error?.code, code, `${method} ${path} ${JSON.stringify(body)}: ${r.text}`);
      assert.equal(typeof r.json.error.message, 'string');
      assert.ok(r.json.error.detail.length > 0);
      assert.equal(JSON.stringify(d.table.config()), before, `${method} ${path} changed the table`);
    }
    const nf = await call(d.app, 'GET', '/v1/nothing');
    assert.equal(nf.status, 404);
    assert.equal(nf.json.error.code, 'NOT_FOUND');
  });

  test('a refused batch says which operation it refused (error.index), and applies nothing', async () => {
    const before = (await call(d.app, 'GET', '/v1/table')).json.services.length;
    const other = serviceConfig(await freeVipPort());
    const ops = [
      { op: 'add-service', service: other },
      { op: 'add-server', service: other, dest: destConfig(rs1.port) },
      { op: 'add-server', service: other, dest: destConfig(rs2.port) },
      { op: 'add-server', service: other, dest: destConfig(rs1.port, 3) }, // the same server again
    ];
    const r = await call(d.app, 'POST', '/v1/ops', { ops });
    assert.equal(r.status, 409, r.text);
    assert.equal(r.json.error.code, 'DEST_EXISTS');
    assert.equal(r.json.error.index, 3);
    // An existing service: the first operation.
    const dup = await call(d.app, 'POST', '/v1/ops', { ops: [{ op: 'add-service', service: serviceConfig(vport) }, ops[0]] });
    assert.equal(dup.json.error.code, 'SERVICE_EXISTS');
    assert.equal(dup.json.error.index, 0);
    assert.equal((await call(d.app, 'GET', '/v1/table')).json.services.length, before);
  });

  test('PUT/PATCH edit a service and a real server; fields not given are kept', async () => {
    const r = await call(d.app, 'PATCH', svcPath(), { scheduler: 'wrr' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.scheduler, 'wrr');
    const rid = enc(`127.0.0.1:${rs2.port}`);
    const e = await call(d.app, 'PUT', `${svcPath()}/servers/${rid}`, { weight: 5 });
    assert.equal(e.status, 200, e.text);
    assert.equal(e.json.weight, 5);
    assert.equal(e.json.fwd, 'masq');
    assert.equal(d.table.list()[0]!.dests.find((x) => x.port === rs2.port)!.weight, 5);
    await call(d.app, 'PUT', `${svcPath()}/servers/${rid}`, { weight: 2 });
    await call(d.app, 'PUT', svcPath(), { scheduler: 'rr' });
  });

  test('drain sets weight 0 and reports remaining connections; restore brings the weight back', async () => {
    const conns: EchoConn[] = [];
    try {
      for (let i = 0; i < 4; i++) conns.push(await openEcho('127.0.0.1', vport));
      const rid = `127.0.0.1:${rs1.port}`;
      const onRs1 = conns.filter((c) => c.server === 'rs1').length;
      assert.equal(onRs1, 2);
      const r = await call(d.app, 'POST', `${svcPath()}/servers/${enc(rid)}/drain`);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.weight, 0);
      assert.equal(r.json.previousWeight, 2);
      assert.equal(r.json.drainedFrom, 2);
      assert.equal(r.json.remaining, 2);
      // New connections all go to rs2; the open ones on rs1 keep working.
      for (let i = 0; i < 3; i++) {
        const c = await openEcho('127.0.0.1', vport);
        assert.equal(c.server, 'rs2');
        await c.end();
      }
      for (const c of conns.filter((x) => x.server === 'rs1')) assert.equal((await c.echo('ping')).toString(), 'ping');
      // Draining twice keeps the remembered weight.
      const again = await call(d.app, 'POST', `${svcPath()}/servers/${enc(rid)}/drain`);
      assert.equal(again.json.previousWeight, 2);
      for (const c of conns.filter((x) => x.server === 'rs1')) await c.end();
      await waitFor(async () => (await call(d.app, 'GET', `${svcPath()}/servers/${enc(rid)}`)).json.activeconns === 0, 5000, 'rs1 drained');
      const back = await call(d.app, 'POST', `${svcPath()}/servers/${enc(rid)}/restore`);
      assert.equal(back.status, 200, back.text);
      assert.equal(back.json.weight, 2);
      assert.equal(back.json.drainedFrom, undefined);
    } finally {
      for (const c of conns) c.destroy();
    }
  });

  test('GET /v1/connections pages with offset and limit, filters, and gives X-Total-Count', async () => {
    const conns: EchoConn[] = [];
    try {
      for (let i = 0; i < 5; i++) conns.push(await openEcho('127.0.0.1', vport));
      const isOurs = (c: { vport: number; state: string }) => c.vport === vport && c.state === 'ESTABLISHED';
      const all = await call(d.app, 'GET', '/v1/connections');
      const total = all.json.length;
      assert.ok(all.json.filter(isOurs).length >= 5);
      assert.equal(all.headers.get('x-total-count'), String(total));
      const p1 = await call(d.app, 'GET', '/v1/connections?offset=0&limit=2');
      const p2 = await call(d.app, 'GET', '/v1/connections?offset=2&limit=2');
      const rest = await call(d.app, 'GET', `/v1/connections?offset=4&limit=1000`);
      assert.equal(p1.json.length, 2);
      assert.equal(p2.json.length, 2);
      assert.equal(p1.headers.get('x-total-count'), String(total));
      assert.deepEqual(
        [...p1.json, ...p2.json, ...rest.json].map((c: { cport: number }) => c.cport),
        all.json.map((c: { cport: number }) => c.cport),
      );
      const beyond = await call(d.app, 'GET', `/v1/connections?offset=${total + 10}&limit=5`);
      assert.deepEqual(beyond.json, []);
      const rid = `127.0.0.1:${rs2.port}`;
      const onRs2 = await call(d.app, 'GET', `/v1/connections?service=${enc(sid)}&server=${enc(rid)}`);
      const expect = conns.filter((c) => c.server === 'rs2').length;
      assert.equal(onRs2.json.filter((c: { state: string }) => c.state === 'ESTABLISHED').length, expect);
      for (const c of onRs2.json) assert.equal(c.dport, rs2.port);
      // The same page as NDJSON: {count}, one connection per line, {"end":true}.
      const nd = await d.app.request('/v1/connections?offset=0&limit=3', { headers: { accept: 'application/x-ndjson' } });
      assert.match(nd.headers.get('content-type') ?? '', /^application\/x-ndjson/);
      assert.equal(nd.headers.get('x-total-count'), String(total));
      const lines = (await nd.text())
        .trimEnd()
        .split('\n')
        .map((l) => JSON.parse(l));
      assert.deepEqual(lines[0], { count: 3 });
      assert.deepEqual(lines.at(-1), { end: true });
      assert.deepEqual(
        lines.slice(1, -1).map((c: { cport: number }) => c.cport),
        all.json.slice(0, 3).map((c: { cport: number }) => c.cport),
      );
    } finally {
      for (const c of conns) await c.end();
    }
  });

  test('stats, status, health, VRRP, timeouts, zero, info and table', async () => {
    const st = await call(d.app, 'GET', '/v1/stats');
    assert.equal(st.status, 200);
    assert.ok(st.json.stats.conns >= 12);
    assert.equal(st.json.services[0].id, sid);
    assert.equal(st.json.services[0].servers.length, 2);
    assert.deepEqual(Object.keys(st.json.rates).sort(), ['cps', 'inbps', 'inpps', 'outbps', 'outpps']);
    const status = await call(d.app, 'GET', '/v1/status');
    assert.equal(status.json.dataplane, 'userspace');
    assert.equal(status.json.dataplaneCounters.noDestination, 0);
    assert.deepEqual(status.json.vrrp, { configured: false, instances: [] });
    const h = await call(d.app, 'GET', '/v1/health');
    assert.deepEqual(
      h.json.map((x: { server: string; state: string }) => [x.server, x.state]).sort(),
      [
        [`127.0.0.1:${rs1.port}`, 'unchecked'],
        [`127.0.0.1:${rs2.port}`, 'unchecked'],
      ].sort(),
    );
    const v = await call(d.app, 'GET', '/v1/vrrp');
    assert.equal(v.json.state, 'not configured');
    assert.equal(v.json.configured, false);
    const t = await call(d.app, 'PUT', '/v1/timeouts', { tcp: 1000 });
    assert.equal(t.status, 200, t.text);
    assert.equal(t.json.tcp, 1000);
    assert.equal((await call(d.app, 'GET', '/v1/timeouts')).json.tcp, 1000);
    const z = await call(d.app, 'POST', `${svcPath()}/zero`);
    assert.equal(z.json.stats.conns, 0);
    assert.equal((await call(d.app, 'POST', '/v1/zero')).status, 200);
    const info = await call(d.app, 'GET', '/v1/info');
    assert.equal(info.json.name, 'tsvsd');
    assert.equal(info.json.changes, 'open');
    const table = await call(d.app, 'GET', '/v1/table');
    assert.equal(table.json.services.length, 1);
    // Streamed: a head with the count, each service as in the JSON answer, then the end.
    for (const init of [{ headers: { accept: 'application/x-ndjson' } }, undefined]) {
      const nd = await d.app.request(init ? '/v1/table' : '/v1/table?format=ndjson', init);
      const lines = (await nd.text()).trimEnd().split('\n');
      const { services, ...rest } = (await call(d.app, 'GET', '/v1/table')).json;
      assert.deepEqual(JSON.parse(lines[0]!), { ...rest, count: 1 });
      assert.deepEqual(
        lines.slice(1, -1),
        services.map((x: unknown) => JSON.stringify(x)),
      );
      assert.equal(lines.at(-1), '{"end":true}');
    }
    assert.deepEqual(await call(d.app, 'GET', '/v1/sync').then((r) => r.json), []);
  });

  test('GET /v1/history returns counter samples with every service and real server', async () => {
    const h = await call(d.app, 'GET', '/v1/history');
    assert.equal(h.status, 200);
    assert.ok(h.json.length >= 1);
    const last = h.json[h.json.length - 1];
    assert.ok(Date.parse(last.at) > 0);
    assert.deepEqual(Object.keys(last.services), [sid]);
    assert.equal(Object.keys(last.services[sid].dests).length, 2);
    assert.equal(typeof last.stats.conns, 'number');
  });

  test('health comes from the HealthSource, removed servers included; /metrics, /v1/health and the listing agree', async () => {
    const rid = `127.0.0.1:${rs1.port}`;
    const at = new Date().toISOString();
    const health: HealthSource = {
      get: (_s, dest) =>
        dest === rid
          ? { state: 'down', checker: 'http', lastCheck: { at, ok: false, reason: 'HTTP 503', latencyMs: 4 } }
          : { state: 'up', checker: 'http', lastCheck: { at, ok: true, reason: 'HTTP 200', latencyMs: 2 } },
      removed: () => [
        {
          id: '127.0.0.1:9',
          health: { state: 'down', checker: 'tcp', lastCheck: { at, ok: false, reason: 'connect ECONNREFUSED', latencyMs: 1 } },
        },
      ],
    };
    const app = createControlApp(d.director, { health });
    try {
      const svc = (await call(app, 'GET', svcPath())).json;
      assert.equal(svc.dests.find((x: { id: string }) => x.id === rid).health.lastCheck.reason, 'HTTP 503');
      assert.deepEqual(
        svc.removed.map((x: { id: string }) => x.id),
        ['127.0.0.1:9'],
      );
      const h = (await call(app, 'GET', '/v1/health')).json;
      assert.deepEqual(
        h.map((x: { server: string; state: string; inTable: boolean }) => [x.server, x.state, x.inTable]).sort(),
        [
          [rid, 'down', true],
          [`127.0.0.1:${rs2.port}`, 'up', true],
          ['127.0.0.1:9', 'down', false],
        ].sort(),
      );
      const m = (await call(app, 'GET', '/metrics')).text;
      assert.match(m, new RegExp(`^tsvs_backend_health_state\\{[^}]*remote_port="${rs1.port}"[^}]*state="down"\\} 1$`, 'm'));
      assert.match(m, new RegExp(`^tsvs_backend_health_check_latency_seconds\\{[^}]*remote_port="${rs1.port}"[^}]*\\} 0.004$`, 'm'));
      // node_ipvs_* reflect the table only: the removed server is not there.
      assert.doesNotMatch(m, /remote_port="9"/);
    } finally {
      // The health source is shared by the director's apps: put the default back.
      createControlApp(d.director, { health: UNCHECKED });
    }
  });

  test('POST /v1/reload: 501 without a reload function; with one, runs it, reports the result and counts it', async () => {
    const r = await call(d.app, 'POST', '/v1/reload');
    assert.equal(r.status, 501);
    assert.equal(r.json.error.code, 'NOT_IMPLEMENTED');
    assert.match(r.json.error.message, /not available/);
    let next = { ok: true, changes: ['add-server TCP 1.2.3.4:80 -> 10.0.0.1:80'] } as { ok: boolean; changes: string[]; error?: string };
    const app = createControlApp(d.director, { reload: async () => next });
    const ok = await call(app, 'POST', '/v1/reload');
    assert.equal(ok.status, 200, ok.text);
    assert.deepEqual(ok.json, { ok: true, changes: next.changes });
    next = { ok: false, changes: [], error: 'tsvs.yaml:3:5: unknown scheduler "nosuch"' };
    const bad = await call(app, 'POST', '/v1/reload');
    assert.equal(bad.status, 422);
    assert.equal(bad.json.error.code, 'RELOAD_REFUSED');
    assert.equal(bad.json.error.detail, next.error);
    const m = (await call(app, 'GET', '/metrics')).text;
    assert.match(m, /^tsvs_config_reloads_total\{result="success"\} 1$/m);
    assert.match(m, /^tsvs_config_reloads_total\{result="failure"\} 1$/m);
    // The hook is shared by every app of this director (socket and TCP).
    assert.equal((await call(d.app, 'POST', '/v1/reload')).status, 422);
  });

  test('GET /v1/events streams status frames as server-sent events', async () => {
    const ac = new AbortController();
    const res = await d.app.request('/v1/events', { signal: ac.signal });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
    const reader = res.body!.getReader();
    let buf = '';
    while (!buf.includes('\n\n')) buf += new TextDecoder().decode((await reader.read()).value);
    ac.abort();
    await reader.cancel().catch(() => {});
    const frame = buf.slice(0, buf.indexOf('\n\n'));
    assert.match(frame, /^event: status$/m);
    const data = JSON.parse(/^data: (.*)$/m.exec(frame)![1]!);
    assert.equal(data.services[0].id, sid);
    assert.equal(data.services[0].dests.length, 2);
  });

  test('GET /v1/openapi.json describes every route the app serves, and no other', async () => {
    const r = await call(d.app, 'GET', '/v1/openapi.json');
    assert.equal(r.json.openapi, '3.0.3');
    const documented = new Set<string>();
    for (const [path, item] of Object.entries(r.json.paths as Record<string, Record<string, unknown>>)) {
      for (const m of Object.keys(item)) if (m !== 'parameters') documented.add(`${m.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`);
    }
    const served = new Set(
      d.app.routes
        .filter((x) => x.method !== 'ALL' && !x.path.startsWith('/dashboard/') && x.path !== '/' && x.path !== '/dashboard/')
        .map((x) => `${x.method} ${x.path.replace(':svc', ':service').replace(':rs', ':server').replace(':file', '')}`),
    );
    assert.deepEqual(
      [...served].filter((x) => !documented.has(x)),
      [],
      'served but not documented',
    );
    assert.deepEqual(
      [...documented].filter((x) => !served.has(x)),
      [],
      'documented but not served',
    );
    assert.deepEqual(r.json, openApiDocument());
  });

  test('the dashboard is served at / and /dashboard with its assets, no CDN', async () => {
    for (const p of ['/', '/dashboard']) {
      const r = await call(d.app, 'GET', p);
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type')!, /text\/html/);
      assert.match(r.text, /<title>tsvs/);
      assert.doesNotMatch(r.text, /https?:\/\//, 'no external URLs');
    }
    for (const f of ['app.js', 'style.css']) {
      const r = await call(d.app, 'GET', `/dashboard/${f}`);
      assert.equal(r.status, 200, f);
      assert.doesNotMatch(r.text, /https?:\/\/(?!www\.w3\.org)/, `${f}: no external URLs`);
    }
    assert.equal((await call(d.app, 'GET', '/dashboard/../server.ts')).status, 404);
    assert.equal((await call(d.app, 'GET', '/dashboard/nothing.js')).status, 404);
  });

  test('DELETE removes a real server, a service, and flushes', async () => {
    const rid = enc(`127.0.0.1:${rs1.port}`);
    assert.equal((await call(d.app, 'DELETE', `${svcPath()}/servers/${rid}`)).status, 200);
    assert.equal(d.table.list()[0]!.dests.length, 1);
    assert.equal((await call(d.app, 'DELETE', svcPath())).status, 200);
    assert.equal(d.table.list().length, 0);
    await call(d.app, 'POST', '/v1/ops', {
      ops: [
        { op: 'add-service', service: serviceConfig(vport) },
        { op: 'add-server', service: serviceConfig(vport), dest: destConfig(rs1.port) },
      ],
    });
    assert.equal(d.table.list().length, 1);
    assert.equal((await call(d.app, 'DELETE', '/v1/services')).status, 200);
    assert.equal(d.table.list().length, 0);
  });
});

describe('control API auth over TCP', () => {
  let d: TestDirector;
  let vport: number;
  before(async () => {
    d = await startDirector();
    vport = await freeVipPort();
  });
  after(() => d.stop());

  const TOKEN = 's3cret-token-value';
  const changes: Array<[string, string, unknown]> = [
    ['POST', '/v1/services', { protocol: 'tcp', addr: '127.0.0.1', port: 1 }],
    ['DELETE', '/v1/services', undefined],
    ['PUT', '/v1/services/tcp%3A127.0.0.1%3A1', { scheduler: 'rr' }],
    ['PATCH', '/v1/services/tcp%3A127.0.0.1%3A1', { scheduler: 'rr' }],
    ['DELETE', '/v1/services/tcp%3A127.0.0.1%3A1', undefined],
    ['POST', '/v1/services/tcp%3A127.0.0.1%3A1/zero', undefined],
    ['POST', '/v1/services/tcp%3A127.0.0.1%3A1/servers', { addr: '127.0.0.1', port: 2 }],
    ['PUT', '/v1/services/tcp%3A127.0.0.1%3A1/servers/127.0.0.1%3A2', { weight: 1 }],
    ['PATCH', '/v1/services/tcp%3A127.0.0.1%3A1/servers/127.0.0.1%3A2', { weight: 1 }],
    ['DELETE', '/v1/services/tcp%3A127.0.0.1%3A1/servers/127.0.0.1%3A2', undefined],
    ['POST', '/v1/services/tcp%3A127.0.0.1%3A1/servers/127.0.0.1%3A2/drain', undefined],
    ['POST', '/v1/services/tcp%3A127.0.0.1%3A1/servers/127.0.0.1%3A2/restore', undefined],
    ['POST', '/v1/zero', undefined],
    ['PUT', '/v1/timeouts', { tcp: 5 }],
    ['POST', '/v1/ops', { ops: [{ op: 'flush' }] }],
    ['POST', '/v1/reload', undefined],
  ];

  test('with a token: every change is refused with 401 without it or with a wrong one; reads are open', async () => {
    const app = createControlApp(d.director, { token: TOKEN, readOnly: true });
    d.table.apply({ op: 'add-service', service: serviceConfig(vport) });
    const before = JSON.stringify(d.table.config());
    for (const [m, p, b] of changes) {
      for (const headers of <Array<Record<string, string>>>[
        {},
        { authorization: 'Bearer wrong' },
        { authorization: `Bearer ${TOKEN}x` },
        { authorization: TOKEN },
      ]) {
        const r = await call(app, m, p, b, headers);
        assert.equal(r.status, 401, `${m} ${p} ${JSON.stringify(headers)}`);
        assert.equal(r.json.error.code, 'UNAUTHORIZED');
        assert.doesNotMatch(r.text, new RegExp(TOKEN), 'the token is never echoed');
      }
    }
    assert.equal(JSON.stringify(d.table.config()), before);
    for (const p of [
      '/v1/info',
      '/v1/table',
      '/v1/status',
      '/v1/services',
      '/v1/connections',
      '/v1/health',
      '/v1/vrrp',
      '/v1/stats',
      '/metrics',
      '/',
      '/v1/openapi.json',
    ]) {
      assert.equal((await call(app, 'GET', p)).status, 200, p);
    }
    assert.equal((await call(app, 'GET', '/v1/info')).json.changes, 'token');
    const ok = await call(
      app,
      'POST',
      '/v1/services',
      { protocol: 'tcp', addr: '127.0.0.1', port: 1, persistent: 0 },
      { authorization: `Bearer ${TOKEN}` },
    );
    // Port 1 is privileged for a non-root test run: either added or refused by the data plane, never 401.
    assert.notEqual(ok.status, 401);
    d.table.apply({ op: 'flush' });
  });

  test('without a token a TCP listener is read-only: changes get 401, reads work', async () => {
    const app = createControlApp(d.director, { readOnly: true });
    for (const [m, p, b] of changes) {
      const r = await call(app, m, p, b, { authorization: `Bearer ${TOKEN}` });
      assert.equal(r.status, 401, `${m} ${p}`);
      assert.match(r.json.error.message, /read-only/i);
    }
    assert.equal((await call(app, 'GET', '/v1/info')).json.changes, 'disabled');
    assert.equal((await call(app, 'GET', '/v1/services')).status, 200);
  });

  test('protectReads: reads need the token too (except the OpenAPI document)', async () => {
    const app = createControlApp(d.director, { token: TOKEN, protectReads: true });
    for (const p of ['/v1/info', '/v1/services', '/v1/connections', '/metrics', '/v1/events']) {
      assert.equal((await call(app, 'GET', p)).status, 401, p);
    }
    assert.equal((await call(app, 'GET', '/v1/services', undefined, { authorization: `Bearer ${TOKEN}` })).status, 200);
    assert.equal((await call(app, 'GET', '/v1/openapi.json')).status, 200);
  });

  test('HttpControlClient over real TCP: token sent as a bearer header; wrong token gives UNAUTHORIZED', async () => {
    const srv = await listen(createControlApp(d.director, { token: TOKEN, readOnly: true }));
    try {
      const good = new HttpControlClient({ baseUrl: srv.url, token: TOKEN });
      const bad = new HttpControlClient({ baseUrl: srv.url, token: 'nope' });
      const none = new HttpControlClient({ baseUrl: srv.url });
      await assert.rejects(bad.apply([{ op: 'add-service', service: serviceConfig(vport) }]), (e: TsvsError) => e.code === 'UNAUTHORIZED');
      await assert.rejects(none.apply([{ op: 'add-service', service: serviceConfig(vport) }]), (e: TsvsError) => e.code === 'UNAUTHORIZED');
      assert.equal(d.table.list().length, 0);
      await good.apply([{ op: 'add-service', service: serviceConfig(vport) }]);
      assert.equal((await none.getTable()).services.length, 1);
      const status = await none.status();
      assert.equal(status.services[0]!.id, `tcp:127.0.0.1:${vport}`);
      await good.apply([{ op: 'flush' }]);
    } finally {
      await srv.close();
    }
  });
});
