/**
 * The VRRP part of both config formats: every key read into the model, keepalived's
 * vrrp_script and track weights, and errors at file:line:column naming the instance and key.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { toYaml } from '../../src/config/convert.js';
import { ConfigError, formatDiagnostic } from '../../src/config/errors.js';
import { parseKeepalivedConfig } from '../../src/config/keepalived/index.js';
import { parseYamlConfig } from '../../src/config/yaml/parse.js';
import { parseVip } from '../../src/ha/model.js';
import { resolveInstance } from '../../src/ha/speaker.js';

const KA = `global_defs {
    vrrp_version 3
}
vrrp_script chk_web {
    script "/usr/local/bin/check web"
    interval 2
    weight -20
    fall 3
    rise 2
}
vrrp_instance VI_1 {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 0.2
    nopreempt
    preempt_delay 5
    unicast_src_ip 10.0.0.2
    unicast_peer {
        10.0.0.3
    }
    virtual_ipaddress {
        198.18.0.1/24
        198.19.0.1/24 dev eth1 label eth1:vip
    }
    track_interface {
        eth1 weight -10
        eth2
    }
    track_script {
        chk_web
    }
    notify_master "/bin/m master"
    notify_backup /bin/b
    notify_fault /bin/f
    notify_stop /bin/s
    notify /bin/all
}
`;

const errorsOf = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    if (e instanceof ConfigError) return e.diagnostics.map(formatDiagnostic);
    throw e;
  }
  return [];
};

describe('VRRP configuration', () => {
  test('keepalived.conf: every vrrp_instance key and vrrp_script', () => {
    const c = parseKeepalivedConfig(KA, 'k.conf');
    const v = c.vrrp[0]!;
    assert.deepEqual(
      [v.state, v.interface, v.virtualRouterId, v.priority, v.advertInt, v.nopreempt, v.preemptDelay, v.unicastSrcIp, v.unicastPeer],
      ['BACKUP', 'eth0', 51, 150, 0.2, true, 5, '10.0.0.2', ['10.0.0.3']],
    );
    assert.deepEqual(v.virtualIpaddress, ['198.18.0.1/24', '198.19.0.1/24 dev eth1 label eth1:vip']);
    assert.deepEqual(v.trackInterface, [
      { name: 'eth1', weight: -10 },
      { name: 'eth2', weight: 0 },
    ]);
    assert.deepEqual(v.trackScript, [{ name: 'chk_web' }]);
    assert.deepEqual(
      [v.notifyMaster, v.notifyBackup, v.notifyFault, v.notifyStop, v.notify],
      ['/bin/m master', '/bin/b', '/bin/f', '/bin/s', '/bin/all'],
    );
    assert.deepEqual(c.vrrpScripts, [
      {
        name: 'chk_web',
        script: '/usr/local/bin/check web',
        interval: 2,
        timeout: 2,
        weight: -20,
        rise: 2,
        fall: 3,
        initFail: false,
        origin: { file: 'k.conf', line: 4, column: 1 },
      },
    ]);
    assert.ok(!c.unsupported.some((d) => /vrrp/i.test(d.message)), c.unsupported.map(formatDiagnostic).join('\n'));
    // The resolved instance takes the script's weight when the track line gives none.
    const r = resolveInstance(v, c.vrrpScripts!);
    assert.deepEqual([r.advertIntCs, r.preempt, r.preemptDelayMs, r.trackScript], [20, false, 5000, [{ name: 'chk_web', weight: -20 }]]);
    assert.deepEqual(r.vips[1], { addr: '198.19.0.1', family: 4, prefix: 24, dev: 'eth1', extra: ['label', 'eth1:vip'] });
  });

  test('the YAML form reads the same and survives tsvs config convert', () => {
    const c = parseKeepalivedConfig(KA, 'k.conf');
    const y = parseYamlConfig(toYaml(c), 'k.yaml');
    const strip = (x: unknown) => JSON.parse(JSON.stringify(x, (k, v) => (k === 'origin' || k === 'at' || k === 'raw' ? undefined : v)));
    assert.deepEqual(strip(y.vrrp), strip(c.vrrp));
    assert.deepEqual(strip(y.vrrpScripts), strip(c.vrrpScripts));
  });

  test('keepalived peers on VRRPv2 are pointed out', () => {
    const c = parseKeepalivedConfig(KA.replace('vrrp_version 3', ''), 'k.conf');
    assert.ok(c.unsupported.some((d) => d.line === 11 && /vrrp_instance VI_1: tsvs speaks VRRPv3/.test(d.message)));
  });

  test('the Debian sample with track weights and vrrp_script loads', () => {
    const c = parseKeepalivedConfig(
      readFileSync('/usr/share/doc/keepalived/samples/keepalived.conf.vrrp.localcheck', 'utf8'),
      'localcheck',
    );
    const v = c.vrrp[0]!;
    assert.deepEqual(v.trackInterface, [
      { name: 'eth1', weight: 2 },
      { name: 'eth2', weight: -2 },
      { name: 'eth3', weight: 0 },
    ]);
    assert.deepEqual(v.trackScript![1], { name: 'chk_haproxy', weight: 2 });
    assert.equal(c.vrrpScripts!.find((s) => s.name === 'chk_sshd')!.fall, 2);
  });

  test('errors name the instance and the key, at its line and column (keepalived.conf)', () => {
    const bad = KA.replace('virtual_router_id 51', 'virtual_router_id 300')
      .replace('chk_web\n    }', 'chk_nope\n    }')
      .replace('advert_int 0.2', 'advert_int 50');
    assert.deepEqual(
      errorsOf(() => parseKeepalivedConfig(bad, 'k.conf')),
      ['k.conf:14:5: vrrp instance VI_1: virtual_router_id: expected an integer from 1 to 255, got "300"'],
    );
    const bad2 = KA.replace('chk_web\n    }', 'chk_nope\n    }')
      .replace('advert_int 0.2', 'advert_int 50')
      .replace('198.18.0.1/24', '198.18.0.1/40');
    assert.deepEqual(
      errorsOf(() => parseKeepalivedConfig(bad2, 'k.conf')),
      [
        'k.conf:16:5: vrrp instance VI_1: advert_int: 50 s out of range: VRRPv3 carries 0.01 to 40.95 s',
        'k.conf:23:5: vrrp instance VI_1: virtual_ipaddress: prefix length /40 out of range 1-32',
        'k.conf:31:5: vrrp instance VI_1: track_script: no vrrp_script "chk_nope" is defined',
      ],
    );
  });

  test('errors name the instance and the key (YAML); two instances with one VRID on one interface', () => {
    const y = `vrrp:
  - name: A
    interface: eth0
    virtual_router_id: 5
    virtual_ipaddress: [10.0.0.1/24, "2001:db8::1/64"]
  - name: B
    interface: eth0
    virtual_router_id: 5
    virtual_ipaddress: [10.0.0.2]
    track_script: [missing]
  - name: C
    virtual_ipaddress: []
    priority: 0
`;
    assert.deepEqual(
      errorsOf(() => parseYamlConfig(y, 'v.yaml')),
      ['v.yaml:13:15: vrrp instance C: vrrp[2].priority: expected an integer from 1 to 255, got 0'],
    );
    assert.deepEqual(
      errorsOf(() => parseYamlConfig(y.replace('    priority: 0\n', ''), 'v.yaml')),
      [
        'v.yaml:5:5: vrrp instance A: virtual_ipaddress: 2001:db8::1: all addresses of an instance must be of one family (VRRP sends one family per instance)',
        'v.yaml:8:5: vrrp instance B: virtual_router_id: 5 is used by instance A on eth0 too',
        'v.yaml:10:5: vrrp instance B: track_script: no vrrp_script "missing" is defined',
        'v.yaml:11:5: vrrp instance C: interface: is required',
        'v.yaml:11:5: vrrp instance C: virtual_router_id: is required (1-255)',
        'v.yaml:12:5: vrrp instance C: virtual_ipaddress: at least one address is required',
      ],
    );
  });

  test('virtual addresses: keepalived syntax', () => {
    assert.deepEqual(parseVip('10.0.0.1'), { addr: '10.0.0.1', family: 4, prefix: 32, extra: [] });
    assert.deepEqual(parseVip('10.0.0.1/24 brd 10.0.0.255 dev eth1 scope global'), {
      addr: '10.0.0.1',
      family: 4,
      prefix: 24,
      dev: 'eth1',
      extra: ['brd', '10.0.0.255', 'scope', 'global'],
    });
    assert.match(parseVip('10.0.0.1 dev') as string, /"dev" needs a value/);
    assert.match(parseVip('10.0.0.1 metric 5') as string, /"metric" is not supported/);
    assert.match(parseVip('frob') as string, /expected an address/);
  });
});
