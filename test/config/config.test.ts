import { strict as assert } from 'node:assert';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, describe, test } from 'node:test';
import { toYaml } from '../../src/config/convert.js';
import { detectFormat } from '../../src/config/detect.js';
import { planReload } from '../../src/config/diff.js';
import { ConfigError, formatDiagnostic } from '../../src/config/errors.js';
import { parseKeepalivedConfig } from '../../src/config/keepalived/index.js';
import type { TsvsConfig, VirtualServiceConfig } from '../../src/config/model.js';
import { parseYamlConfig } from '../../src/config/yaml/parse.js';
import { loadConfig } from '../../src/config/load.js';
import { runConfig } from '../../src/cli/config.js';
import { desiredDests, serviceConfigOf } from '../../src/health/engine.js';
import { realServer, vservice } from '../health/helper.js';

const FIXTURES = join(import.meta.dirname, 'fixtures');
const SAMPLES = '/usr/share/doc/keepalived/samples';
const tmp = mkdtempSync(join(tmpdir(), 'tsvs-config-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Services without source positions, for comparing two parses. */
const strip = (c: TsvsConfig) =>
  JSON.parse(JSON.stringify(c.services, (k, v) => (k === 'origin' ? undefined : v))) as VirtualServiceConfig[];

describe('bad config corpus: each file gives its precise message', () => {
  const dir = join(FIXTURES, 'bad');
  const files = readdirSync(dir).sort();
  test('the corpus has at least 30 files', () => assert.ok(files.length >= 30, `${files.length}`));
  for (const f of files) {
    test(f, async () => {
      const path = join(dir, f);
      const expect = /^# expect: (.*)$/m.exec(readFileSync(path, 'utf8'))![1]!;
      await assert.rejects(loadConfig(path), (e: Error) => {
        const first = e instanceof ConfigError ? formatDiagnostic(e.diagnostics[0]!) : ((e as { detail?: string }).detail ?? e.message);
        assert.equal(first.replaceAll(`${dir}/`, ''), `${f}:${expect}`);
        return true;
      });
    });
  }
});

describe('keepalived.conf: every Debian sample', () => {
  const samples = readdirSync(SAMPLES)
    .filter((f) => f.startsWith('keepalived.conf'))
    .sort();
  test('the samples are installed (apt-get install keepalived)', () => assert.ok(samples.length >= 20, `${samples.length} samples`));
  for (const f of samples) {
    test(`${f} parses; what is not loaded is named with its line`, () => {
      const path = join(SAMPLES, f);
      const text = readFileSync(path, 'utf8');
      const cfg = parseKeepalivedConfig(text, path);
      const vsLines = text.split('\n').filter((l) => /^\s*virtual_server\s/.test(l)).length;
      if (vsLines) assert.ok(cfg.services.length >= vsLines, `${cfg.services.length} services for ${vsLines} virtual_server blocks`);
      const lines = text.split('\n');
      for (const d of cfg.unsupported) {
        assert.equal(d.file, path);
        const word = /"([^"]+)"/.exec(d.message)?.[1] ?? /^vrrp_instance ([^\s:]+)/.exec(d.message)?.[1];
        assert.ok(word && lines[d.line - 1]!.includes(word), `${formatDiagnostic(d)} names what is on its line`);
      }
      // Each checker keepalived runs here is either loaded or reported.
      const checkers = lines.filter((l) =>
        /^\s*(TCP_CHECK|HTTP_GET|SSL_GET|UDP_CHECK|DNS_CHECK|MISC_CHECK|SMTP_CHECK|PING_CHECK)\b/.test(l),
      ).length;
      const loaded = cfg.services.reduce((n, s) => n + s.realServers.reduce((m, r) => m + r.checkers.length, 0), 0);
      const reported = cfg.unsupported.filter((d) => /_CHECK" in real_server/.test(d.message)).length;
      if (!text.includes('virtual_server group')) assert.equal(loaded + reported, checkers);
      // The YAML conversion reads back to the same services.
      const back = parseYamlConfig(toYaml(cfg), `${f}.yaml`);
      assert.deepEqual(strip(back), strip(cfg));
    });
  }
  test('sample values: the man page sample, SMTP_CHECK named, misc_dynamic, quorum and groups', () => {
    const s = parseKeepalivedConfig(readFileSync(`${SAMPLES}/keepalived.conf.sample`, 'utf8'), 'sample');
    const vs = s.services[0]!;
    assert.deepEqual(
      [vs.addr, vs.port, vs.scheduler, vs.persistent, vs.sorryServer?.addr],
      ['10.10.10.2', 1358, 'rr', 50, '192.168.200.200'],
    );
    const http = vs.realServers[0]!.checkers[0]!;
    assert.deepEqual([http.type, http.interval, http.timeout, http.retry, http.delayBeforeRetry], ['http', 6, 3, 3, 3]);
    assert.equal(http.http!.urls[0]!.digest, '640205b7b0fc66c1ea91c463fac6334d');
    assert.equal(s.vrrp[0]!.virtualRouterId, 50);
    const smtp = parseKeepalivedConfig(readFileSync(`${SAMPLES}/keepalived.conf.SMTP_CHECK`, 'utf8'), 'smtp');
    assert.ok(
      smtp.unsupported.some((d) => d.line === 39 && d.message.startsWith('unsupported keyword "SMTP_CHECK" in real_server 172.16.1.10 25')),
    );
    const q = parseKeepalivedConfig(readFileSync(`${SAMPLES}/keepalived.conf.quorum`, 'utf8'), 'q');
    assert.ok(q.services[0]!.quorum > 1 && q.services[0]!.quorumUp && q.services[0]!.quorumDown);
    const g = parseKeepalivedConfig(readFileSync(`${SAMPLES}/keepalived.conf.virtual_server_group`, 'utf8'), 'g');
    assert.ok(g.services.some((x) => x.fwmark === 1) && g.services.some((x) => x.addr === '192.168.200.10' && x.port === 80));
  });
});

describe('keepalived.conf syntax', () => {
  test('include (glob, relative), @conditional lines, $VARIABLES, "{" on the next line', () => {
    const dir = join(tmp, 'inc');
    mkdirSync(join(dir, 'conf.d'), { recursive: true });
    writeFileSync(join(dir, 'conf.d', 'a.conf'), 'real_server 10.0.1.1 80 {\n  weight $W\n  TCP_CHECK {\n  }\n}\n');
    writeFileSync(join(dir, 'conf.d', 'b.conf'), 'real_server 10.0.1.2 80 {\n@other  weight 9\n@^other weight 4\n}\n');
    const main = join(dir, 'keepalived.conf');
    writeFileSync(main, '$W=7\nvirtual_server 10.0.0.1 80\n{\n  delay_loop 2\n  connect_timeout 1.5\n  include conf.d/*.conf\n}\n');
    const cfg = parseKeepalivedConfig(readFileSync(main, 'utf8'), main, { configId: 'this' });
    const [a, b] = cfg.services[0]!.realServers;
    assert.equal(a!.weight, 7);
    assert.equal(b!.weight, 4);
    const c = a!.checkers[0]!;
    // delay_loop and connect_timeout inherited from the virtual server; retry and delay_before_retry are TCP_CHECK defaults.
    assert.deepEqual([c.interval, c.timeout, c.retry, c.delayBeforeRetry], [2, 1.5, 1, 1]);
    assert.equal(parseKeepalivedConfig(readFileSync(main, 'utf8'), main, { configId: 'other' }).services[0]!.realServers[1]!.weight, 9);
  });
  test('checker defaults follow keepalived: DNS retry 3, MISC retry 0, HTTP delay_before_retry 3, delay_loop 60', () => {
    const cfg = parseKeepalivedConfig(
      'virtual_server 10.0.0.1 53 {\n protocol UDP\n real_server 10.0.1.1 53 {\n  DNS_CHECK {\n   type A\n   name example.com\n  }\n  MISC_CHECK {\n   misc_path "/bin/true x"\n   misc_dynamic\n  }\n  HTTP_GET {\n   url {\n    path /\n    status_code 200 300-399\n   }\n  }\n  UDP_CHECK {\n   payload 0a0b\n   require_reply\n  }\n }\n}\n',
      'd.conf',
    );
    const [dns, misc, http, udp] = cfg.services[0]!.realServers[0]!.checkers;
    assert.deepEqual([dns!.retry, dns!.interval, dns!.delayBeforeRetry, dns!.dns], [3, 60, 60, { type: 'A', name: 'example.com' }]);
    assert.deepEqual([misc!.retry, misc!.misc], [0, { path: '/bin/true x', timeout: 0, dynamic: true }]);
    assert.deepEqual(
      [http!.retry, http!.delayBeforeRetry, http!.timeout, http!.http!.urls[0]!.statusCodes],
      [
        1,
        3,
        5,
        [
          [200, 200],
          [300, 399],
        ],
      ],
    );
    assert.deepEqual(udp!.udp, { payload: '0a0b', requireReply: true, minReplyLength: 0, maxReplyLength: 255 });
  });
});

describe('YAML format', () => {
  test('the documented example loads with defaults filled in', () => {
    const path = join(FIXTURES, 'example.yaml');
    const cfg = parseYamlConfig(readFileSync(path, 'utf8'), path);
    const web = cfg.services[0]!;
    assert.deepEqual([web.addr, web.port, web.scheduler, web.persistent, web.sorryServer?.port], ['198.18.0.1', 80, 'wlc', 0, 80]);
    const c = web.realServers[0]!.checkers[0]!;
    assert.deepEqual([c.type, c.interval, c.timeout, c.retry, c.delayBeforeRetry, c.rise, c.fall], ['http', 2, 1, 2, 0.5, 2, 1]);
    assert.equal(web.realServers[1]!.inhibitOnFailure, true);
    assert.equal(cfg.services[1]!.fwmark, 7);
    assert.equal(cfg.vrrp[0]!.virtualRouterId, 51);
    // And it survives its own conversion.
    assert.deepEqual(strip(parseYamlConfig(toYaml(cfg), 'again.yaml')), strip(cfg));
  });
  test('all errors of a file are reported at once', () => {
    assert.throws(
      () => parseYamlConfig('services:\n  - address: 1.2.3\n    port: -1\n    colour: blue\n', 'x.yaml'),
      (e: ConfigError) => e.diagnostics.length === 3 && /x\.yaml:2:14: services\[0\]\.address/.test(e.message),
    );
  });
  test('an empty file is an empty configuration', () => assert.deepEqual(parseYamlConfig('', 'e.yaml').services, []));
});

describe('ipvsadm rules as a config', () => {
  test('rule lines become declared services without checks; the operations are kept for start', async () => {
    const path = join(tmp, 'rules');
    writeFileSync(path, '# saved\n-A -t 10.0.0.1:80 -s wrr -p 60\n-a -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 3\n--set 100 10 20\n');
    const loaded = await loadConfig(path);
    assert.equal(loaded.format, 'ipvsadm');
    assert.equal(loaded.ops!.length, 3);
    const svc = loaded.config.services[0]!;
    assert.deepEqual([svc.scheduler, svc.persistent, svc.realServers[0]!.weight, svc.realServers[0]!.checkers.length], ['wrr', 60, 3, 0]);
    assert.deepEqual(loaded.config.timeouts, { tcp: 100, tcpfin: 10, udp: 20 });
  });
});

describe('format detection', () => {
  test('by name, then by content', () => {
    assert.equal(detectFormat('virtual_server 1.2.3.4 80 {', 'x.yaml'), 'yaml');
    assert.equal(detectFormat('! comment\nglobal_defs {\n}', 'keepalived.conf'), 'keepalived');
    assert.equal(detectFormat('# rules\n-A -t 1.2.3.4:80 -s rr\n', 'rules'), 'ipvsadm');
    assert.equal(detectFormat('services:\n  - address: 1.2.3.4\n', 'tsvs.conf'), 'yaml');
    assert.equal(detectFormat('include /etc/keepalived/*.conf\n', 'k'), 'keepalived');
  });
});

describe('reload plan (the diff)', () => {
  const cfgOf = (svc: VirtualServiceConfig) => ({ service: serviceConfigOf(svc), dests: desiredDests(svc, () => ({ alive: true }), true) });
  const table = (svcs: VirtualServiceConfig[], extra: Array<{ port: number; addr: string }> = []) => ({
    services: svcs.map((s, i) => ({
      ...serviceConfigOf(s),
      dests: [
        ...s.realServers.map((r) => ({
          af: 4 as const,
          addr: r.addr,
          port: r.port,
          weight: r.weight,
          fwd: r.fwd,
          uThreshold: 0,
          lThreshold: 0,
        })),
        ...(i === 0 ? extra.map((e) => ({ af: 4 as const, ...e, weight: 1, fwd: 'masq' as const, uThreshold: 0, lThreshold: 0 })) : []),
      ],
    })),
    timeouts: { tcp: 900, tcpfin: 120, udp: 300 },
  });
  const a = realServer(81);
  const b = realServer(82, { inhibitOnFailure: true });
  const web = vservice(80, [a, b]);
  test('no change, no operation', () => assert.deepEqual(planReload(table([web]), [web], [cfgOf(web)]).ops, []));
  test('a real server added: one add-server', () => {
    const next = vservice(80, [a, b, realServer(83)]);
    assert.deepEqual(planReload(table([web]), [web], [cfgOf(next)]).summary, ['add-server tcp:127.0.0.1:80 -> 127.0.0.1:83']);
  });
  test('a real server removed: delete; with inhibit_on_failure: weight 0, then drained', () => {
    const noA = planReload(table([web]), [web], [cfgOf(vservice(80, [b]))]);
    assert.deepEqual(noA.summary, ['delete-server tcp:127.0.0.1:80 -> 127.0.0.1:81']);
    const noB = planReload(table([web]), [web], [cfgOf(vservice(80, [a]))]);
    assert.deepEqual(
      noB.ops.map((o) => o.op),
      ['edit-server'],
    );
    assert.equal((noB.ops[0] as { dest: { weight: number } }).dest.weight, 0);
    assert.equal(noB.drain.length, 1);
  });
  test('tsvsadm additions: an undeclared server and service stay; a service the old config declared goes', () => {
    const other = vservice(90, []);
    const live = table([web, other], [{ addr: '127.0.0.5', port: 99 }]);
    const plan = planReload(live, [web], [cfgOf(web)]);
    assert.deepEqual(plan.ops, [], 'server 127.0.0.5:99 and service :90 were added with tsvsadm: left alone');
    const dropWeb = planReload(live, [web, other], [cfgOf(other)]);
    assert.deepEqual(dropWeb.summary, ['delete service tcp:127.0.0.1:80']);
  });
  test('a changed scheduler is one edit-service; a changed weight one edit-server', () => {
    const next = vservice(80, [realServer(81, { weight: 5 }), b], { scheduler: 'wrr' });
    assert.deepEqual(planReload(table([web]), [web], [cfgOf(next)]).summary, [
      'edit service tcp:127.0.0.1:80',
      'edit-server tcp:127.0.0.1:80 -> 127.0.0.1:81',
    ]);
  });
});

describe('tsvs config check|convert', () => {
  const run = async (args: string[]) => {
    let out = '';
    let err = '';
    const code = await runConfig(
      args,
      { write: (s: string) => ((out += s), true) } as never,
      { write: (s: string) => ((err += s), true) } as never,
    );
    return { code, out, err };
  };
  test('check: OK with a summary; errors listed as file:line:column, exit 1', async () => {
    const ok = await run(['check', join(FIXTURES, 'example.yaml')]);
    assert.equal(ok.code, 0);
    assert.match(ok.out, /example\.yaml: OK \(yaml\): 2 service\(s\), 3 real server\(s\), 3 health check\(s\), 1 vrrp instance\(s\)/);
    const bad = await run(['check', join(FIXTURES, 'bad', 'yaml-unknown-service-key.yaml')]);
    assert.equal(bad.code, 1);
    assert.match(
      bad.err,
      /yaml-unknown-service-key\.yaml:5:5: services\[0\]\.schedular: unknown key \(did you mean "scheduler"\?\)\n.*: 1 error\n/,
    );
    const ka = await run(['check', `${SAMPLES}/keepalived.conf.SMTP_CHECK`]);
    assert.equal(ka.code, 0);
    assert.match(ka.err, /keepalived\.conf\.SMTP_CHECK:39:9: unsupported keyword "SMTP_CHECK"/);
    assert.equal((await run(['frobnicate'])).code, 2);
  });
  test('convert: golden output for the Debian misc_check_arg sample', () => {
    const text = readFileSync(`${SAMPLES}/keepalived.conf.misc_check_arg`, 'utf8');
    assert.equal(
      toYaml(parseKeepalivedConfig(text, 'keepalived.conf.misc_check_arg')),
      readFileSync(join(FIXTURES, 'misc_check_arg.golden.yaml'), 'utf8'),
    );
  });
  test('convert prints YAML that checks OK', async () => {
    const r = await run(['convert', `${SAMPLES}/keepalived.conf.misc_check`]);
    assert.equal(r.code, 0);
    const out = join(tmp, `${basename('misc')}.yaml`);
    writeFileSync(out, r.out);
    assert.match(r.out, /type: misc/);
    assert.equal((await run(['check', out])).code, 0);
  });
});
