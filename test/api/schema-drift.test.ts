/**
 * One schema, many readers: for every bounded field of a service, a real server, the
 * timeouts, a checker and a VRRP instance, a value just outside the schema's bound is
 * refused by core, by the YAML reader, by the keepalived.conf reader and by the API, each
 * naming that bound, and the value at the bound is accepted; the OpenAPI document states
 * the bound. A copy of a limit that drifts from core/schema.ts (or health/ha schema) fails here.
 */
import { strict as assert } from 'node:assert';
import { after, before, describe, test } from 'node:test';
import { openApiDocument } from '../../src/api/openapi.js';
import { parseKeepalivedConfig } from '../../src/config/keepalived/index.js';
import { parseYamlConfig } from '../../src/config/yaml/parse.js';
import { bounds, RealServerSchema, ServiceConfigSchema, TimeoutsSchema, TunnelSchema, type Bounds } from '../../src/core/schema.js';
import { newTable } from '../table.js';
import type { Op, ServiceConfig } from '../../src/core/types.js';
import { TrackWeightSchema, VrrpInstanceSchema, VrrpScriptSchema } from '../../src/ha/schema.js';
import { CheckerSchema, ServiceHealthSchema } from '../../src/health/schema.js';
import { call, freeVipPort, startDirector, type TestDirector } from './harness.js';

const SVC = ServiceConfigSchema.shape;
const RS = RealServerSchema.shape;

const svc: ServiceConfig = {
  af: 4,
  protocol: 'tcp',
  addr: '10.0.0.1',
  port: 80,
  fwmark: 0,
  scheduler: 'wlc',
  schedFlags: 0,
  persistent: 0,
  netmask: 0xffffffff,
  ops: false,
  pe: '',
};
const key = { af: 4 as const, protocol: 'tcp' as const, addr: '10.0.0.1', port: 80, fwmark: 0 };
const rs = { af: 4 as const, addr: '10.0.1.1', port: 80, weight: 1, fwd: 'masq' as const, uThreshold: 0, lThreshold: 0 };

const yamlOf = (svcLines: string, rsLines = '') => `services:
  - address: 10.0.0.1
${svcLines}    real_servers:
      - address: 10.0.1.1
        port: 80
${rsLines}`;
const kaOf = (vsLine: string, svcLines = '', rsLine = 'real_server 10.0.1.1 80', rsLines = '') =>
  `${vsLine} {\n${svcLines}  ${rsLine} {\n${rsLines}  }\n}\n`;

/** One bounded field and how each reader is given a value for it. */
interface Case {
  name: string;
  b: Bounds;
  /** Which side to step over (default both). */
  sides?: Array<'min' | 'max'>;
  core?: (v: number) => Op[];
  yaml?: (v: number) => string;
  /** The key the YAML reader names: it, not only the table's last check, must refuse the value. */
  yamlKey?: string;
  ka?: (v: number) => string;
  /** Path and body of an API request, relative to a service the test created. */
  api?: (v: number) => { method: string; path: string; body: unknown };
  /** Component and property of the OpenAPI document that states the bound. */
  doc?: [string, string];
}

const cases: Case[] = [
  {
    name: 'service port',
    yamlKey: 'port',
    b: bounds(SVC.port),
    sides: ['max'],
    core: (v) => [{ op: 'add-service', service: { ...svc, port: v } }],
    yaml: (v) => yamlOf(`    port: ${v}\n`),
    ka: (v) => kaOf(`virtual_server 10.0.0.1 ${v}`),
    api: (v) => ({ method: 'POST', path: '/v1/services', body: { protocol: 'tcp', addr: '127.0.0.1', port: v } }),
    doc: ['ServiceConfig', 'port'],
  },
  {
    name: 'fwmark',
    yamlKey: 'fwmark',
    b: bounds(SVC.fwmark),
    sides: ['max'],
    core: (v) => [{ op: 'add-service', service: { ...svc, addr: '0.0.0.0', port: 0, fwmark: v } }],
    yaml: (v) => `services:\n  - fwmark: ${v}\n`,
    ka: (v) => kaOf(`virtual_server fwmark ${v}`),
    api: (v) => ({ method: 'POST', path: '/v1/services', body: { fwmark: v } }),
    doc: ['ServiceConfig', 'fwmark'],
  },
  {
    name: 'schedFlags',
    b: bounds(SVC.schedFlags),
    sides: ['max'],
    core: (v) => [{ op: 'add-service', service: { ...svc, schedFlags: v } }],
    api: (v) => ({ method: 'PUT', path: '', body: { schedFlags: v } }),
    doc: ['ServiceConfig', 'schedFlags'],
  },
  {
    name: 'persistence timeout',
    yamlKey: 'persistence',
    b: bounds(SVC.persistent),
    sides: ['max'],
    core: (v) => [{ op: 'add-service', service: { ...svc, persistent: v } }],
    yaml: (v) => yamlOf(`    port: 80\n    persistence: ${v}\n`),
    ka: (v) => kaOf('virtual_server 10.0.0.1 80', `  persistence_timeout ${v}\n`),
    api: (v) => ({ method: 'PUT', path: '', body: { persistent: v } }),
    doc: ['ServiceConfig', 'persistent'],
  },
  {
    name: 'weight',
    yamlKey: 'real_servers[0].weight',
    b: bounds(RS.weight),
    core: (v) => [
      { op: 'add-service', service: svc },
      { op: 'add-server', service: key, dest: { ...rs, weight: v } },
    ],
    yaml: (v) => yamlOf('    port: 80\n', `        weight: ${v}\n`),
    ka: (v) => kaOf('virtual_server 10.0.0.1 80', '', 'real_server 10.0.1.1 80', `    weight ${v}\n`),
    api: (v) => ({ method: 'POST', path: '/servers', body: { addr: '127.0.0.1', port: 9, weight: v } }),
    doc: ['ServerConfig', 'weight'],
  },
  {
    name: 'upper threshold',
    yamlKey: 'u_threshold',
    b: bounds(RS.uThreshold),
    sides: ['max'],
    core: (v) => [
      { op: 'add-service', service: svc },
      { op: 'add-server', service: key, dest: { ...rs, uThreshold: v } },
    ],
    yaml: (v) => yamlOf('    port: 80\n', `        u_threshold: ${v}\n`),
    ka: (v) => kaOf('virtual_server 10.0.0.1 80', '', 'real_server 10.0.1.1 80', `    uthreshold ${v}\n`),
    api: (v) => ({ method: 'POST', path: '/servers', body: { addr: '127.0.0.1', port: 9, uThreshold: v } }),
    doc: ['ServerConfig', 'uThreshold'],
  },
  {
    name: 'lower threshold',
    yamlKey: 'l_threshold',
    b: bounds(RS.lThreshold),
    sides: ['max'],
    // At the bound the upper threshold must be there too (lower above upper is ERANGE).
    core: (v) => [
      { op: 'add-service', service: svc },
      { op: 'add-server', service: key, dest: { ...rs, uThreshold: v, lThreshold: v } },
    ],
    yaml: (v) => yamlOf('    port: 80\n', `        u_threshold: ${v}\n        l_threshold: ${v}\n`),
    ka: (v) => kaOf('virtual_server 10.0.0.1 80', '', 'real_server 10.0.1.1 80', `    uthreshold ${v}\n    lthreshold ${v}\n`),
    api: (v) => ({ method: 'POST', path: '/servers', body: { addr: '127.0.0.1', port: 9, uThreshold: v, lThreshold: v } }),
    doc: ['ServerConfig', 'lThreshold'],
  },
  {
    name: 'real server port',
    yamlKey: 'real_servers[0].port',
    b: bounds(RS.port),
    sides: ['max'],
    core: (v) => [
      { op: 'add-service', service: svc },
      { op: 'add-server', service: key, dest: { ...rs, port: v } },
    ],
    yaml: (v) => yamlOf('    port: 80\n').replace('        port: 80\n', `        port: ${v}\n`),
    ka: (v) => kaOf('virtual_server 10.0.0.1 80', '', `real_server 10.0.1.1 ${v}`),
    api: (v) => ({ method: 'POST', path: '/servers', body: { addr: '127.0.0.1', port: v } }),
    doc: ['ServerConfig', 'port'],
  },
  {
    name: 'gue tunnel port',
    b: bounds(TunnelSchema.shape.port),
    sides: ['min'],
    core: (v) => [
      { op: 'add-service', service: svc },
      { op: 'add-server', service: key, dest: { ...rs, fwd: 'tunnel', tunnel: { type: 'gue', port: v } } },
    ],
    ka: (v) => kaOf('virtual_server 10.0.0.1 80', `  lb_kind TUN type gue port ${v}\n`),
    api: (v) => ({
      method: 'POST',
      path: '/servers',
      body: { addr: '127.0.0.1', port: 9, fwd: 'tunnel', tunnel: { type: 'gue', port: v } },
    }),
    doc: ['Tunnel', 'port'],
  },
  ...(['tcp', 'tcpfin', 'udp'] as const).map(
    (f): Case => ({
      name: `timeout ${f}`,
      yamlKey: `timeouts.${f}`,
      b: bounds(TimeoutsSchema.shape[f]),
      sides: ['max'],
      core: (v) => [{ op: 'set-timeouts', timeouts: { tcp: 0, tcpfin: 0, udp: 0, [f]: v } }],
      yaml: (v) => `timeouts:\n  ${f}: ${v}\n`,
      ka: (v) => `global_defs {\n  lvs_timeouts ${f} ${v}\n}\n`,
      api: (v) => ({ method: 'PUT', path: '/v1/timeouts', body: { [f]: v } }),
      doc: ['Timeouts', f],
    }),
  ),
  {
    name: 'quorum',
    yamlKey: 'quorum',
    b: bounds(ServiceHealthSchema.shape.quorum),
    sides: ['max'],
    yaml: (v) => yamlOf(`    port: 80\n    quorum: ${v}\n`),
    ka: (v) => kaOf('virtual_server 10.0.0.1 80', `  quorum ${v}\n`),
  },
  {
    name: 'checker retry',
    yamlKey: 'retry',
    b: bounds(CheckerSchema.shape.retry),
    sides: ['max'],
    yaml: (v) => yamlOf('    port: 80\n', `        checks:\n          - type: tcp\n            retry: ${v}\n`),
    ka: (v) => kaOf('virtual_server 10.0.0.1 80', '', 'real_server 10.0.1.1 80', `    TCP_CHECK {\n      retry ${v}\n    }\n`),
  },
  {
    name: 'checker connect_port',
    yamlKey: 'connect_port',
    b: bounds(CheckerSchema.shape.connectPort),
    yaml: (v) => yamlOf('    port: 80\n', `        checks:\n          - type: tcp\n            connect_port: ${v}\n`),
    ka: (v) => kaOf('virtual_server 10.0.0.1 80', '', 'real_server 10.0.1.1 80', `    TCP_CHECK {\n      connect_port ${v}\n    }\n`),
  },
  ...(['virtualRouterId', 'priority'] as const).map(
    (f): Case => ({
      name: `vrrp ${f}`,
      yamlKey: f === 'priority' ? 'priority' : 'virtual_router_id',
      b: bounds(VrrpInstanceSchema.shape[f]),
      yaml: (v) => vrrpYaml({ [f]: v }),
      ka: (v) => vrrpKa({ [f]: v }),
    }),
  ),
  {
    name: 'vrrp_script weight',
    yamlKey: 'vrrp_scripts[0].weight',
    b: bounds(TrackWeightSchema),
    yaml: (v) => vrrpYaml({ weight: v }),
    ka: (v) => vrrpKa({ weight: v }),
  },
  {
    name: 'vrrp_script fall',
    yamlKey: 'vrrp_scripts[0].fall',
    b: bounds(VrrpScriptSchema.shape.fall),
    yaml: (v) => vrrpYaml({ fall: v }),
    ka: (v) => vrrpKa({ fall: v }),
  },
];

function vrrpYaml(o: { virtualRouterId?: number; priority?: number; weight?: number; fall?: number }): string {
  return `vrrp:
  - name: VI_1
    interface: eth0
    virtual_router_id: ${o.virtualRouterId ?? 51}
    priority: ${o.priority ?? 100}
    virtual_ipaddress: [198.18.0.1/24]
    track_script: [chk]
vrrp_scripts:
  - name: chk
    script: /bin/true
    weight: ${o.weight ?? 10}
    fall: ${o.fall ?? 1}
`;
}

function vrrpKa(o: { virtualRouterId?: number; priority?: number; weight?: number; fall?: number }): string {
  return `vrrp_script chk {
  script /bin/true
  weight ${o.weight ?? 10}
  fall ${o.fall ?? 1}
}
vrrp_instance VI_1 {
  interface eth0
  virtual_router_id ${o.virtualRouterId ?? 51}
  priority ${o.priority ?? 100}
  virtual_ipaddress {
    198.18.0.1/24
  }
  track_script {
    chk
  }
}
`;
}

/** The steps over the bound this case tests: [value, the bound's text as messages write it]. */
function outside(c: Case): Array<{ v: number; named: RegExp }> {
  const out: Array<{ v: number; named: RegExp }> = [];
  const sides = c.sides ?? ['min', 'max'];
  // Messages write ranges as "from MIN to MAX", "MIN..MAX" or "outside MIN..MAX".
  if (sides.includes('max')) out.push({ v: c.b.max + 1, named: new RegExp(`(\\.\\.|to )${c.b.max}\\b`) });
  if (sides.includes('min')) out.push({ v: c.b.min - 1, named: new RegExp(`(^|[^\\d-])${c.b.min}( to |\\.\\.)`) });
  return out;
}

const messageOf = (f: () => unknown): string | null => {
  try {
    f();
    return null;
  } catch (e) {
    return (e as { detail?: string; message: string }).detail ?? (e as Error).message;
  }
};

describe('one schema: every reader refuses a value just outside a bound, naming it, and accepts the bound', () => {
  for (const c of cases) {
    test(c.name, () => {
      for (const { v, named } of outside(c)) {
        if (c.core) {
          const m = messageOf(() => newTable().validate(c.core!(v)));
          assert.ok(m && named.test(m), `core, ${v}: ${m}`);
        }
        if (c.yaml) {
          const m = messageOf(() => parseYamlConfig(c.yaml!(v), 't.yaml'));
          assert.ok(m && named.test(m) && m.includes(`${c.yamlKey}: expected`), `YAML, ${v}: ${m}`);
        }
        if (c.ka) {
          const m = messageOf(() => parseKeepalivedConfig(c.ka!(v), 't.conf'));
          assert.ok(m && named.test(m), `keepalived.conf, ${v}: ${m}`);
        }
      }
      for (const v of (c.sides ?? ['min', 'max']).map((s) => c.b[s])) {
        if (c.core)
          assert.equal(
            messageOf(() => newTable().validate(c.core!(v))),
            null,
            `core refuses ${v}`,
          );
        if (c.yaml)
          assert.equal(
            messageOf(() => parseYamlConfig(c.yaml!(v), 't.yaml')),
            null,
            `YAML refuses ${v}`,
          );
        if (c.ka)
          assert.equal(
            messageOf(() => parseKeepalivedConfig(c.ka!(v), 't.conf')),
            null,
            `keepalived.conf refuses ${v}`,
          );
      }
    });
  }

  test('the OpenAPI document states each bound', () => {
    const schemas = (
      openApiDocument() as {
        components: { schemas: Record<string, { properties: Record<string, { minimum?: number; maximum?: number }> }> };
      }
    ).components.schemas;
    for (const c of cases) {
      if (!c.doc) continue;
      const p = schemas[c.doc[0]]?.properties[c.doc[1]];
      assert.deepEqual({ min: p?.minimum, max: p?.maximum }, c.b, `${c.doc.join('.')}`);
    }
  });

  describe('the API', () => {
    let d: TestDirector;
    let svcPath: string;
    before(async () => {
      d = await startDirector();
      const port = await freeVipPort();
      const r = await call(d.app, 'POST', '/v1/services', { protocol: 'tcp', addr: '127.0.0.1', port });
      assert.equal(r.status, 201, r.text);
      svcPath = `/v1/services/${encodeURIComponent(`tcp:127.0.0.1:${port}`)}`;
    });
    after(() => d.stop());

    for (const c of cases) {
      if (!c.api) continue;
      test(c.name, async () => {
        for (const { v, named } of outside(c)) {
          const req = c.api!(v);
          const path = req.path.startsWith('/v1/') ? req.path : svcPath + req.path;
          const r = await call(d.app, req.method, path, req.body);
          assert.equal(r.status, 400, `${c.name} ${v}: ${r.text}`);
          assert.ok(named.test(r.json.error.detail), `${c.name} ${v}: ${r.json.error.detail}`);
        }
      });
    }
  });
});
