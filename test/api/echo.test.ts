/**
 * Inputs echoed back (issue #13 item 9): an error quotes a short prefix of any input, never
 * the input; a deeply nested JSON body is a 400 naming the limit, not a 500 stack overflow.
 * The real control app over an in-process director; the ipvsadm parser and the config
 * readers on the same inputs.
 */
import { strict as assert } from 'node:assert';
import { after, before, describe, test } from 'node:test';
import { MAX_JSON_DEPTH } from '../../src/api/body.js';
import { parseYamlConfig } from '../../src/config/yaml/parse.js';
import { parseKeepalivedConfig } from '../../src/config/keepalived/index.js';
import { quote } from '../../src/core/quote.js';
import { parseCommand } from '../../src/ipvsadm/parse.js';
import { builtinServices } from '../../src/ipvsadm/services.js';
import { serviceConfig, startDirector, type TestDirector } from './harness.js';

const HUGE = 'a'.repeat(10 * 1024 * 1024);

describe('quote()', () => {
  test('short inputs as JSON strings, long ones as a 64-character prefix with the length', () => {
    assert.equal(quote('abc'), '"abc"');
    assert.equal(quote(5), '5');
    assert.equal(quote(HUGE), `"${'a'.repeat(64)}…" (10485760 bytes)`);
    const deep = JSON.parse(`${'['.repeat(100_000)}${']'.repeat(100_000)}`);
    assert.equal(quote(deep), '[an array too deep to show]');
  });
});

describe('the API quotes at most a prefix of its input', () => {
  let d: TestDirector;
  before(async () => {
    d = await startDirector();
  });
  after(() => d.stop());

  const post = (path: string, body: string) =>
    d.app.request(path, { method: 'POST', body, headers: { 'content-type': 'application/json' } });

  test('a 10 MB address in POST /v1/ops: a 400 of under 1 KB naming the address by prefix and length', async () => {
    const r = await post('/v1/ops', JSON.stringify({ ops: [{ op: 'add-service', service: { ...serviceConfig(80), addr: HUGE } }] }));
    const text = await r.text();
    assert.ok(r.status >= 400 && r.status < 500, `status ${r.status}`);
    assert.ok(text.length < 1024, `a reply of ${text.length} bytes`);
    assert.match(text, /service address \\"a{64}…\\" \(10485760 bytes\): not an IPv4 or IPv6 address/);
  });

  test('a 10 MB service id in a REST path or body: short replies', async () => {
    const r = await post('/v1/services', JSON.stringify({ addr: HUGE, port: 80, protocol: 'tcp' }));
    const text = await r.text();
    assert.ok(r.status >= 400 && r.status < 500, `status ${r.status}`);
    assert.ok(text.length < 1024, `a reply of ${text.length} bytes`);
  });

  for (const path of ['/v1/ops', '/v1/services']) {
    test(`a 100,000-deep JSON array to ${path}: 400 naming the depth limit, not a 500`, async () => {
      const r = await post(path, `${'['.repeat(100_000)}${']'.repeat(100_000)}`);
      const body = (await r.json()) as { error: { detail: string } };
      assert.equal(r.status, 400);
      assert.equal(body.error.detail, `request body is nested deeper than ${MAX_JSON_DEPTH} levels of arrays and objects`);
    });
  }

  test('a deep operation inside {"ops": [...]}: 400 too', async () => {
    const r = await post('/v1/ops', `{"ops":[${'['.repeat(100_000)}${']'.repeat(100_000)}]}`);
    assert.equal(r.status, 400);
  });

  test('strings with brackets do not count as nesting', async () => {
    const r = await post(
      '/v1/ops',
      JSON.stringify({ ops: [{ op: 'add-service', service: { ...serviceConfig(80), addr: '['.repeat(100) } }] }),
    );
    assert.match(await r.text(), /not an IPv4 or IPv6 address/);
  });
});

describe('the parsers quote at most a prefix', () => {
  test('ipvsadm: a 10 MB fwmark or scheduler flag', async () => {
    const env = { progName: 'tsvsadm', services: builtinServices, lookupHost: async () => null };
    for (const argv of [['-A', '-f', HUGE], ['-A', '-t', '127.0.0.1:80', '-b', HUGE], [HUGE]]) {
      const cmd = await parseCommand(argv, env);
      assert.equal(cmd.cmd, 'error');
      const text = (cmd as { text: string }).text;
      assert.ok(text.length < 1024, `${argv[0]} ${argv[1] ?? ''}: ${text.length} bytes`);
    }
  });

  test('YAML and keepalived.conf: a 10 MB value', () => {
    for (const f of [
      () => parseYamlConfig(`services:\n  - address: ${HUGE}\n    port: 80\n`, 'x.yaml'),
      () => parseKeepalivedConfig(`virtual_server 127.0.0.1 80 {\n  lb_algo ${HUGE}\n}\n`, 'k.conf'),
      () => parseKeepalivedConfig(`${HUGE} 1\n`, 'k.conf'),
    ]) {
      try {
        f();
        assert.fail('accepted');
      } catch (e) {
        const detail = (e as { detail: string }).detail;
        assert.ok(detail.length < 2048, `an error of ${detail.length} bytes`);
        assert.match(detail, /\(10485760 bytes\)/);
      }
    }
  });
});

describe('non-ASCII digits (issue #13 item 10)', () => {
  const FULLWIDTH = '127.0.0.\uff11';
  test('"127.0.0.１" is no address anywhere: core, YAML, and ipvsadm with the real resolver (which maps it to 127.0.0.1)', async () => {
    const { canonicalAddr } = await import('../../src/core/addr.js');
    const { lookup } = await import('node:dns/promises');
    assert.equal(canonicalAddr(FULLWIDTH), null);
    assert.throws(
      () => parseYamlConfig(`services:\n  - address: ${FULLWIDTH}\n    port: 80\n`, 'x.yaml'),
      /expected an IPv4 or IPv6 address/,
    );
    // The resolver does map it, which is why the ipvsadm parser must not ask it.
    assert.equal((await lookup(FULLWIDTH, { family: 4 })).address, '127.0.0.1');
    const env = {
      progName: 'tsvsadm',
      services: builtinServices,
      lookupHost: async (n: string) => {
        try {
          return (await lookup(n, { family: 4 })).address;
        } catch {
          return null;
        }
      },
    };
    const cmd = await parseCommand(['-A', '-t', `${FULLWIDTH}:80`, '-s', 'rr'], env);
    assert.equal(cmd.cmd, 'error');
    const ok = await parseCommand(['-A', '-t', '127.0.0.1:80', '-s', 'rr'], env);
    assert.equal(ok.cmd, 'apply');
  });
});
