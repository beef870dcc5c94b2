/**
 * The `sync` configuration: YAML `sync:` and keepalived.conf `lvs_sync_daemon`, and the
 * conntrackd.conf tsvsd writes from it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { toYaml } from '../../src/config/convert.js';
import { parseKeepalivedConfig } from '../../src/config/keepalived/index.js';
import { parseYamlConfig } from '../../src/config/yaml/parse.js';
import { conntrackdPaths, renderConntrackdConf } from '../../src/sync/conntrackd.js';

describe('YAML sync section', () => {
  it('reads the sync daemon and conntrackd settings', () => {
    const cfg = parseYamlConfig(
      `sync:
  daemon:
    interface: eth1
    instance: VI_1
    syncid: 9
    maxlen: 1400
    group: 239.0.0.9
    port: 9000
    ttl: 3
  conntrackd:
    interface: eth2
    address: 198.18.0.2
    peer: 198.18.0.3
    port: 3781
    state_dir: /run/tsvs/ct
`,
      'tsvs.yaml',
    );
    assert.deepEqual(cfg.sync, {
      daemon: { mcastIfn: 'eth1', instance: 'VI_1', syncid: 9, maxlen: 1400, group: '239.0.0.9', port: 9000, ttl: 3 },
      conntrackd: { interface: 'eth2', address: '198.18.0.2', peer: '198.18.0.3', port: 3781, stateDir: '/run/tsvs/ct' },
    });
  });

  it('names the file, line and key of each mistake', () => {
    assert.throws(
      () =>
        parseYamlConfig(
          `sync:
  daemon:
    syncid: 300
    group: 10.0.0.1
  conntrackd:
    interface: eth2
    address: 2001:db8::1
    peer: 198.18.0.3
    prot: 3780
`,
          'bad.yaml',
        ),
      (e: Error & { detail?: string }) => {
        const text = `${e.message}\n${e.detail ?? ''}`;
        for (const want of [
          /bad\.yaml:3:\d+: sync\.daemon: "interface" is required/,
          /bad\.yaml:3:\d+: .*sync\.daemon\.syncid.*0 to 255/,
          /bad\.yaml:4:\d+: .*multicast/,
          /bad\.yaml:7:\d+: .*IPv4/,
          /bad\.yaml:9:\d+: .*unknown key.*"port"/,
        ])
          assert.match(text, want);
        return true;
      },
    );
  });
});

describe('keepalived.conf lvs_sync_daemon', () => {
  const parse = (line: string) => parseKeepalivedConfig(`global_defs {\n  ${line}\n}\n`, 'keepalived.conf');

  it('interface only: both daemons, keepalived defaults', () => {
    assert.deepEqual(parse('lvs_sync_daemon eth0').sync, { daemon: { mcastIfn: 'eth0' } });
  });

  it('with an instance (with or without "inst") and every option', () => {
    const want = { daemon: { mcastIfn: 'eth1', instance: 'VI_1', syncid: 4, maxlen: 1000, port: 9000, ttl: 2, group: '239.1.1.1' } };
    assert.deepEqual(parse('lvs_sync_daemon eth1 VI_1 id 4 maxlen 1000 port 9000 ttl 2 group 239.1.1.1').sync, want);
    assert.deepEqual(parse('lvs_sync_daemon eth1 inst VI_1 id 4 maxlen 1000 port 9000 ttl 2 group 239.1.1.1').sync, want);
  });

  it('tsvs config convert carries it into the YAML sync section', () => {
    const k = parse('lvs_sync_daemon eth1 VI_1 id 4 maxlen 1000 port 9000 ttl 2 group 239.1.1.1');
    assert.deepEqual(parseYamlConfig(toYaml(k), 'converted.yaml').sync, k.sync);
  });

  it('refuses bad values with the line', () => {
    assert.throws(() => parse('lvs_sync_daemon eth1 VI_1 id 256'), /keepalived\.conf:2:.*id|256/);
    assert.throws(() => parse('lvs_sync_daemon eth1 VI_1 group 10.1.1.1'), /not a multicast address/);
    assert.throws(() => parse('lvs_sync_daemon eth1 VI_1 bogus 1'), /expected id, maxlen, port, ttl or group/);
  });
});

describe('conntrackd.conf', () => {
  it('FTFW over UDP on the sync link, per-director paths, filters', () => {
    const text = renderConntrackdConf(
      { interface: 'tsvsh1', address: '198.18.0.2', peer: '198.18.0.3' },
      conntrackdPaths('/tmp/d1/conntrackd'),
    );
    assert.match(text, /Mode FTFW \{/);
    assert.match(
      text,
      /UDP \{\n\t\tIPv4_address 198\.18\.0\.2\n\t\tIPv4_Destination_Address 198\.18\.0\.3\n\t\tPort 3780\n\t\tInterface tsvsh1\n/,
    );
    assert.match(text, /LockFile \/tmp\/d1\/conntrackd\/conntrackd\.lock\n/);
    assert.match(text, /UNIX \{\n\t\tPath \/tmp\/d1\/conntrackd\/conntrackd\.ctl\n/);
    assert.match(text, /Protocol Accept \{\n\t\t\tTCP\n\t\t\tUDP\n\t\t\tSCTP\n/);
    assert.match(text, /Address Ignore \{[^}]*IPv4_address 127\.0\.0\.1[^}]*IPv4_address 198\.18\.0\.2[^}]*IPv4_address 198\.18\.0\.3/);
    // Two directors never share a socket or lock file.
    const other = renderConntrackdConf(
      { interface: 'tsvsh2', address: '198.18.0.3', peer: '198.18.0.2' },
      conntrackdPaths('/tmp/d2/conntrackd'),
    );
    assert.doesNotMatch(other, /\/tmp\/d1\//);
  });
});
