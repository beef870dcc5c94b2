/**
 * The per-service userspace options (`proxy_protocol`, `transparent`) from YAML through the
 * table to the state file and back, and their absence from `ipvsadm -S` rules (real
 * ipvsadm must accept those). Pure: no sockets.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { formatRules } from '../../src/ipvsadm/format.js';
import { toYaml } from '../../src/config/convert.js';
import { planReload } from '../../src/config/diff.js';
import { parseYamlConfig } from '../../src/config/yaml/parse.js';
import { newTable } from '../table.js';
import { serviceConfigOf } from '../../src/health/engine.js';
import { configToOps, StateStore } from '../../src/daemon/state.js';

const YAML = `services:
  - address: 198.18.0.1
    port: 80
    scheduler: rr
    proxy_protocol: v2
    transparent: true
    real_servers: [{ address: 198.19.0.11, port: 80 }]
  - address: 198.18.0.1
    port: 443
    proxy_protocol: V1
    real_servers: [{ address: 198.19.0.11, port: 443 }]
`;

describe('userspace service options in the configuration', () => {
  test('YAML proxy_protocol and transparent reach the table, the state file, and back', async () => {
    const cfg = parseYamlConfig(YAML, 'tsvs.yaml');
    assert.equal(cfg.services[0]!.proxyProtocol, 'v2');
    assert.equal(cfg.services[0]!.transparent, true);
    assert.equal(cfg.services[1]!.proxyProtocol, 'v1');
    assert.equal(cfg.services[1]!.transparent, undefined);
    const table = newTable();
    table.applyAll(cfg.services.map((s) => ({ op: 'add-service' as const, service: serviceConfigOf(s) })));
    const saved = table.config();
    assert.equal(saved.services[0]!.proxyProtocol, 'v2');
    assert.equal(saved.services[0]!.transparent, true);
    assert.equal('transparent' in saved.services[1]!, false, 'unset options are left out, not false');

    const dir = mkdtempSync(join(tmpdir(), 'tsvs-opt-'));
    try {
      const store = new StateStore(join(dir, 'state.json'));
      await store.save(saved);
      assert.match(readFileSync(join(dir, 'state.json'), 'utf8'), /"proxyProtocol": "v2"/);
      const restored = newTable();
      restored.applyAll(configToOps((await store.load())!));
      assert.deepEqual(
        restored.config().services.map((s) => [s.port, s.proxyProtocol, s.transparent]),
        [
          [80, 'v2', true],
          [443, 'v1', undefined],
        ],
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('ipvsadm -S rules never carry them', () => {
    const table = newTable();
    const cfg = parseYamlConfig(YAML, 'tsvs.yaml');
    table.applyAll(cfg.services.map((s) => ({ op: 'add-service' as const, service: serviceConfigOf(s) })));
    const rules = formatRules(table.view());
    assert.match(rules, /^-A -t 198\.18\.0\.1:80 -s rr/m);
    assert.doesNotMatch(rules, /proxy|transparent|v2/i);
  });

  test('a reload that changes only proxy_protocol edits the service', () => {
    const before = parseYamlConfig(YAML, 'a.yaml');
    const table = newTable();
    table.applyAll(before.services.map((s) => ({ op: 'add-service' as const, service: serviceConfigOf(s) })));
    const after = parseYamlConfig(YAML.replace('proxy_protocol: v2', 'proxy_protocol: v1'), 'b.yaml');
    const plan = planReload(
      table.config(),
      before.services,
      after.services.map((s) => ({ service: serviceConfigOf(s), dests: new Map() })),
    );
    assert.deepEqual(
      plan.ops.map((o) => o.op),
      ['edit-service'],
    );
    table.applyAll(plan.ops);
    assert.equal(table.config().services[0]!.proxyProtocol, 'v1');
  });

  test('a reload whose file no longer has them turns them off; tsvsadm -E keeps them', () => {
    const before = parseYamlConfig(YAML, 'a.yaml');
    const table = newTable();
    table.applyAll(before.services.map((s) => ({ op: 'add-service' as const, service: serviceConfigOf(s) })));
    // tsvsadm -E -t 198.18.0.1:80 -s wlc: a service config without the options.
    const { proxyProtocol: _p, transparent: _t, ...bare } = table.config().services[0]!;
    table.applyAll([{ op: 'edit-service', service: { ...bare, dests: undefined, scheduler: 'wlc' } as never }]);
    assert.deepEqual([table.config().services[0]!.proxyProtocol, table.config().services[0]!.transparent], ['v2', true]);
    const after = parseYamlConfig(YAML.replace('    proxy_protocol: v2\n    transparent: true\n', ''), 'b.yaml');
    const plan = planReload(
      table.config(),
      before.services,
      after.services.map((s) => ({ service: serviceConfigOf(s), dests: new Map() })),
    );
    table.applyAll(plan.ops);
    assert.deepEqual([table.config().services[0]!.proxyProtocol, table.config().services[0]!.transparent], [undefined, undefined]);
    // And the next reload of the same file changes nothing.
    const again = planReload(
      table.config(),
      after.services,
      after.services.map((s) => ({ service: serviceConfigOf(s), dests: new Map() })),
    );
    assert.deepEqual(again.ops, []);
  });

  test('bad values are reported with file:line:column', () => {
    assert.throws(
      () => parseYamlConfig(YAML.replace('proxy_protocol: v2', 'proxy_protocol: v3'), 'bad.yaml'),
      (e: Error & { detail?: string }) =>
        /bad\.yaml:5:\d+: services\[0\]\.proxy_protocol: expected one of v1, v2, got "v3"/.test(`${e.message}\n${e.detail ?? ''}`),
    );
    assert.throws(
      () => parseYamlConfig(YAML.replace('transparent: true', 'transparent: yes please'), 'bad.yaml'),
      (e: Error & { detail?: string }) => /services\[0\]\.transparent: expected true or false/.test(`${e.message}\n${e.detail ?? ''}`),
    );
  });

  test('tsvs config convert writes them back as YAML', () => {
    const text = toYaml(parseYamlConfig(YAML, 'tsvs.yaml'));
    assert.match(text, /proxy_protocol: v2\n\s+transparent: true/);
    assert.match(text, /proxy_protocol: v1/);
  });
});
