/**
 * /metrics: node_exporter's ipvs collector names, help texts, types and labels, with
 * values that match traffic sent through the VIP, plus the tsvs_* families. Parsed by a
 * strict text-format parser.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { renderMetrics } from '../../src/api/metrics.js';
import type { StatusView } from '../../src/api/routes/view.js';
import { echoTransfer, startEchoServer, tcpOutcome, waitFor, type TestServer } from '../helper.js';
import { call, destConfig, freeVipPort, serviceConfig, startDirector, type TestDirector } from './harness.js';
import { parsePrometheusText, metricValue } from './promtext.js';

const NODE_IPVS = {
  node_ipvs_connections_total: ['counter', 'The total number of connections made.'],
  node_ipvs_incoming_packets_total: ['counter', 'The total number of incoming packets.'],
  node_ipvs_outgoing_packets_total: ['counter', 'The total number of outgoing packets.'],
  node_ipvs_incoming_bytes_total: ['counter', 'The total amount of incoming data.'],
  node_ipvs_outgoing_bytes_total: ['counter', 'The total amount of outgoing data.'],
  node_ipvs_backend_connections_active: ['gauge', 'The current active connections by local and remote address.'],
  node_ipvs_backend_connections_inactive: ['gauge', 'The current inactive connections by local and remote address.'],
  node_ipvs_backend_weight: ['gauge', 'The current backend weight by local and remote address.'],
} as const;
const BACKEND_LABELS = ['local_address', 'local_port', 'remote_address', 'remote_port', 'proto', 'local_mark'];

describe('/metrics against real traffic', () => {
  let d: TestDirector;
  let rs1: TestServer;
  let rs2: TestServer;
  let vport: number;
  const scrape = async () => {
    const r = await call(d.app, 'GET', '/metrics');
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
    return parsePrometheusText(r.text);
  };

  before(async () => {
    d = await startDirector();
    rs1 = await startEchoServer('rs1');
    rs2 = await startEchoServer('rs2');
    vport = await freeVipPort();
    const svc = serviceConfig(vport, 'rr');
    await d.director.apply([
      { op: 'add-service', service: svc },
      { op: 'add-server', service: svc, dest: destConfig(rs1.port, 3) },
      { op: 'add-server', service: svc, dest: destConfig(rs2.port, 1) },
    ]);
  });
  after(async () => {
    await d.stop();
    await rs1.close();
    await rs2.close();
  });

  test('an empty-traffic scrape has every node_ipvs family with its help, type and label set', async () => {
    const m = await scrape();
    for (const [name, [type, help]] of Object.entries(NODE_IPVS)) {
      const f = m.get(name);
      assert.ok(f, name);
      assert.equal(f.type, type, name);
      assert.equal(f.help, help, name);
      for (const s of f.samples) assert.deepEqual(Object.keys(s.labels), name.startsWith('node_ipvs_backend_') ? BACKEND_LABELS : [], name);
    }
    assert.equal(metricValue(m, 'node_ipvs_connections_total'), 0);
    const l1 = {
      local_address: '127.0.0.1',
      local_port: String(vport),
      remote_address: '127.0.0.1',
      remote_port: String(rs1.port),
      proto: 'TCP',
      local_mark: '',
    };
    assert.equal(metricValue(m, 'node_ipvs_backend_weight', l1), 3);
    assert.equal(metricValue(m, 'node_ipvs_backend_weight', { remote_port: String(rs2.port) }), 1);
    assert.equal(metricValue(m, 'tsvs_backend_health_state', { remote_port: String(rs1.port), state: 'unchecked' }), 1);
    assert.equal(metricValue(m, 'tsvs_backend_health_state', { remote_port: String(rs1.port), state: 'up' }), 0);
    assert.equal(metricValue(m, 'tsvs_vrrp_configured'), 0);
    assert.equal(m.get('tsvs_vrrp_state')!.samples.length, 0);
    assert.equal(metricValue(m, 'tsvs_config_reloads_total', { result: 'success' }), 0);
  });

  test('connections and bytes through the VIP are counted exactly, in total and per real server', async () => {
    const sent = { conns: 0, inbytes: 0, outbytes: 0 };
    const per = new Map<string, { conns: number; inbytes: number; outbytes: number }>();
    for (let i = 0; i < 8; i++) {
      const data = randomBytes(1000 + i * 777);
      const r = await echoTransfer('127.0.0.1', vport, data);
      assert.ok(r.echoed.equals(data));
      const out = Buffer.byteLength(`${r.server}\n`) + r.echoed.length;
      sent.conns++;
      sent.inbytes += data.length;
      sent.outbytes += out;
      const p = per.get(r.server) ?? { conns: 0, inbytes: 0, outbytes: 0 };
      p.conns++;
      p.inbytes += data.length;
      p.outbytes += out;
      per.set(r.server, p);
    }
    // rr with weights 3:1 is still rr: both servers got traffic.
    assert.equal(per.size, 2);
    // Counters are updated as the data flows; the last connection's close may trail the client's.
    await waitFor(
      async () => metricValue(await scrape(), 'node_ipvs_outgoing_bytes_total') === sent.outbytes,
      5000,
      'outgoing bytes counted',
    );
    const m = await scrape();
    assert.equal(metricValue(m, 'node_ipvs_connections_total'), sent.conns);
    assert.equal(metricValue(m, 'node_ipvs_incoming_bytes_total'), sent.inbytes);
    assert.equal(metricValue(m, 'node_ipvs_outgoing_bytes_total'), sent.outbytes);
    const inpkts = metricValue(m, 'node_ipvs_incoming_packets_total');
    const outpkts = metricValue(m, 'node_ipvs_outgoing_packets_total');
    // Packets are counted per chunk read: at least one per connection and direction, at most one per byte.
    assert.ok(inpkts >= sent.conns && inpkts <= sent.inbytes, `incoming packets ${inpkts}`);
    assert.ok(outpkts >= sent.conns && outpkts <= sent.outbytes, `outgoing packets ${outpkts}`);
    for (const [name, rs] of [
      ['rs1', rs1],
      ['rs2', rs2],
    ] as const) {
      const l = { remote_port: String(rs.port) };
      assert.equal(metricValue(m, 'tsvs_backend_connections_total', l), per.get(name)!.conns, name);
      assert.equal(metricValue(m, 'tsvs_backend_incoming_bytes_total', l), per.get(name)!.inbytes, name);
      assert.equal(metricValue(m, 'tsvs_backend_outgoing_bytes_total', l), per.get(name)!.outbytes, name);
      // Closed connections linger in TIME_WAIT: inactive, not active.
      assert.equal(metricValue(m, 'node_ipvs_backend_connections_active', l), 0, name);
      assert.equal(metricValue(m, 'node_ipvs_backend_connections_inactive', l), per.get(name)!.conns, name);
    }
    assert.equal(metricValue(m, 'tsvs_service_connections_total', { local_port: String(vport) }), sent.conns);
    // The same numbers as the JSON API.
    const stats = (await call(d.app, 'GET', '/v1/stats')).json;
    assert.equal(stats.stats.conns, sent.conns);
    assert.equal(stats.stats.inbytes, sent.inbytes);
  });

  test('rates follow the kernel estimator: they rise after traffic, per service and per real server', async () => {
    for (let i = 0; i < 10; i++) await echoTransfer('127.0.0.1', vport, randomBytes(2000));
    await waitFor(async () => metricValue(await scrape(), 'tsvs_connections_per_second') > 0, 8000, 'a connection rate');
    const m = await scrape();
    assert.ok(metricValue(m, 'tsvs_incoming_bytes_per_second') > 0);
    const svcCps = metricValue(m, 'tsvs_service_connections_per_second', { local_port: String(vport) });
    const b1 = metricValue(m, 'tsvs_backend_connections_per_second', { remote_port: String(rs1.port) });
    const b2 = metricValue(m, 'tsvs_backend_connections_per_second', { remote_port: String(rs2.port) });
    // 18 connections in at most a few seconds: the EWMA never overshoots the real rate.
    assert.ok(svcCps >= 1 && svcCps <= 18, `service cps ${svcCps}`);
    assert.ok(b1 + b2 >= svcCps - 1 && b1 + b2 <= svcCps + 1, `backend cps ${b1}+${b2} vs ${svcCps}`);
  });

  test('a stopped real server shows as connect failures; no destination at all as refusals', async () => {
    await rs2.close();
    const outcomes = [];
    for (let i = 0; i < 4; i++) outcomes.push(await tcpOutcome('127.0.0.1', vport, { send: 'x', end: true }));
    const failed = outcomes.filter((o) => !o.received.toString().startsWith('rs1')).length;
    // The connect to the stopped server fails before the client saw anything: it is
    // redispatched to rs1, and rs2 is skipped for the next ones (FAILING_HOLD_MS).
    assert.equal(failed, 0, 'every client answered by rs1');
    let m = await scrape();
    assert.equal(metricValue(m, 'tsvs_backend_connect_failures_total', { remote_port: String(rs2.port) }), 1);
    assert.equal(metricValue(m, 'tsvs_backend_connect_failures_total', { remote_port: String(rs1.port) }), 0);
    assert.equal(metricValue(m, 'tsvs_redispatch_total'), 1);
    const server = (
      await call(
        d.app,
        'GET',
        `/v1/services/${encodeURIComponent(`tcp:127.0.0.1:${vport}`)}/servers/${encodeURIComponent(`127.0.0.1:${rs2.port}`)}`,
      )
    ).json;
    assert.equal(server.connectFailures, 1);

    await d.director.apply(
      [rs1, rs2].map((rs) => ({ op: 'edit-server' as const, service: serviceConfig(vport), dest: destConfig(rs.port, 0) })),
    );
    const o = await tcpOutcome('127.0.0.1', vport);
    assert.equal(o.received.length, 0);
    m = await scrape();
    assert.equal(metricValue(m, 'tsvs_dataplane_no_destination_total'), 1);
    assert.equal(metricValue(m, 'node_ipvs_backend_weight', { remote_port: String(rs1.port) }), 0);
  });
});

describe('renderMetrics label formatting', () => {
  const zero = { conns: 0, inpkts: 0, outpkts: 0, inbytes: 0, outbytes: 0 };
  const rz = { cps: 0, inpps: 0, outpps: 0, inbps: 0, outbps: 0 };
  const dest = (addr: string, port: number, extra: object = {}) => ({
    af: 4 as const,
    addr,
    port,
    weight: 7,
    fwd: 'route' as const,
    uThreshold: 0,
    lThreshold: 0,
    activeconns: 2,
    inactconns: 1,
    persistconns: 0,
    overloaded: false,
    stats: zero,
    rates: rz,
    id: `${addr}:${port}`,
    health: { state: 'unchecked' as const },
    connectFailures: 0,
    ...extra,
  });
  const svc = (over: object, dests: ReturnType<typeof dest>[]) => ({
    af: 4 as const,
    protocol: 'tcp' as const,
    addr: '10.0.0.1',
    port: 80,
    fwmark: 0,
    scheduler: 'wlc',
    schedFlags: 0,
    persistent: 0,
    netmask: 0,
    ops: false,
    pe: '',
    stats: zero,
    rates: rz,
    id: 'x',
    label: 'x',
    dests,
    removed: [],
    ...over,
  });

  test('fwmark services read like /proc/net/ip_vs through procfs: proto FWM, %08X mark, empty address', () => {
    const v: StatusView = {
      at: new Date().toISOString(),
      dataplane: 'nftables',
      stats: zero,
      rates: rz,
      timeouts: { tcp: 900, tcpfin: 120, udp: 300 },
      connections: 0,
      dataplaneCounters: null,
      vrrp: { configured: true, instances: [{ name: 'VI_1', vrid: 51, state: 'master', priority: 100, vips: ['10.0.0.1'] }] },
      services: [
        svc({ fwmark: 255, protocol: 'tcp', addr: '0.0.0.0', port: 0 }, [dest('10.1.0.1', 80)]),
        svc({ af: 6, protocol: 'udp', addr: '2001:db8::1', port: 53 }, [dest('2001:db8::a', 53, { af: 6 })]),
        svc({}, [
          dest('10.1.0.2', 8080, {
            health: {
              state: 'down',
              lastCheck: { at: '2026-01-01T00:00:00.000Z', ok: false, reason: 'HTTP 503 "bad"\n', latencyMs: 12.5 },
            },
          }),
        ]),
      ],
    };
    const m = parsePrometheusText(renderMetrics(v));
    const w = m.get('node_ipvs_backend_weight')!.samples.map((s) => s.labels);
    assert.deepEqual(w[0], {
      local_address: '',
      local_port: '0',
      remote_address: '10.1.0.1',
      remote_port: '80',
      proto: 'FWM',
      local_mark: '000000FF',
    });
    assert.deepEqual(w[1], {
      local_address: '2001:db8::1',
      local_port: '53',
      remote_address: '2001:db8::a',
      remote_port: '53',
      proto: 'UDP',
      local_mark: '',
    });
    assert.equal(metricValue(m, 'node_ipvs_backend_connections_active', { remote_port: '8080' }), 2);
    assert.equal(metricValue(m, 'tsvs_backend_health_state', { remote_port: '8080', state: 'down' }), 1);
    assert.equal(metricValue(m, 'tsvs_backend_health_check_latency_seconds', { remote_port: '8080' }), 0.0125);
    assert.equal(
      metricValue(m, 'tsvs_backend_health_last_check_timestamp_seconds', { remote_port: '8080' }),
      Date.parse('2026-01-01T00:00:00Z') / 1000,
    );
    assert.equal(metricValue(m, 'tsvs_vrrp_state', { instance: 'VI_1', state: 'master' }), 1);
    assert.equal(metricValue(m, 'tsvs_vrrp_state', { instance: 'VI_1', state: 'backup' }), 0);
    assert.equal(metricValue(m, 'tsvs_vrrp_configured'), 1);
  });

  test('the parser used here is strict', () => {
    assert.throws(() => parsePrometheusText('x 1\n'), /outside its family/);
    assert.throws(() => parsePrometheusText('# TYPE x gauge\nx{a="b} 1\n'), /unterminated/);
    assert.throws(() => parsePrometheusText('# TYPE x gauge\nx 1\nx 2\n'), /duplicate series/);
    assert.throws(() => parsePrometheusText('# TYPE x gauge\nx one\n'), /bad value/);
    assert.throws(() => parsePrometheusText('# TYPE x gauge\nx 1\n# TYPE y gauge\ny 1\n# TYPE x gauge\n'), /twice/);
  });
});
