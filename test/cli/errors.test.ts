/**
 * Error cases: exact stderr and exit status. Every command-line case below was run
 * through the real ipvsadm 1.31 (kernel interface stubbed, see fixtures/oracle/) and
 * gave this text and status, with its argv[0] in place of our program name.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { TsvsError } from '../../src/core/errors.js';
import { SYNC_DAEMON_MESSAGE } from '../../src/cli/ipvsadm/run.js';
import { FakeApi, run } from './fake-api.js';
import { ipv4Table } from './fixtures/tables.js';

const TRY = "Try `ipvsadm -h' or 'ipvsadm --help' for more information.\n";

const cases: Array<[string[], string, number]> = [
  // No command, or not first.
  [['foo'], TRY, 255],
  [['--bogus'], TRY, 255],
  [['-t', '1.2.3.4:80', '-A'], TRY, 255],
  [['-'], TRY, 255],
  [['--add', '-t', '1.2.3.4:80'], TRY, 255],
  [['--start-daemon'], TRY, 255],
  // A second command: popt hands it to ipvsadm as an unknown option.
  [['-A', '-t', '1.2.3.4:80', '-A'], "invalid option `-A'\n", 2],
  [['-L', '-v'], "invalid option `-v'\n", 2],
  [['-Lh'], "invalid option `-Lh'\n", 2],
  [['-L', '--start-daemon', 'master'], "invalid option `master'\n", 2],
  // popt's own errors.
  [['-A', '-t', '1.2.3.4:80', '--bogus'], '--bogus: unknown option\n', 255],
  [['-Lq'], '-Lq: unknown option\n', 255],
  [['-A', '-t', '1.2.3.4:80', '-s'], '-s: missing argument\n', 255],
  [['-As'], '-As: missing argument\n', 255],
  [['-L', '--list=5'], '--list=5: option does not take an argument\n', 255],
  [['-A', '-t', '1.2.3.4:80', '-p', '-5'], '-5: unknown option\n', 255],
  [['--set', '1', '2', '-1'], '-1: unknown option\n', 255],
  // The command/option table.
  [['-A'], "You need to supply the 'service-address' option for the 'add-service' command\n", 2],
  [['-a', '-t', '1.2.3.4:80'], "You need to supply the 'real-server' option for the 'add-server' command\n", 2],
  [['-a', '-r', '1.1.1.1'], "You need to supply the 'service-address' option for the 'add-server' command\n", 2],
  [['-A', '-t', '1.2.3.4:80', '-r', '1.1.1.1'], "Illegal 'real-server' option with the 'add-service' command\n", 2],
  [['-D', '-t', '1.2.3.4:80', '-s', 'rr'], "Illegal 'scheduler' option with the 'delete-service' command\n", 2],
  [['-d', '-t', '1.2.3.4:80', '-r', '1.1.1.1', '-w', '3'], "Illegal 'weight' option with the 'delete-server' command\n", 2],
  [['-C', '-n'], "Illegal 'numeric' option with the 'flush' command\n", 2],
  [['-S', '-c'], "Illegal 'connection' option with the 'save' command\n", 2],
  [['-Z', '-n'], "Illegal 'numeric' option with the 'zero' command\n", 2],
  [['-L', '-s', 'rr'], "Illegal 'scheduler' option with the 'list' command\n", 2],
  [['--set', '1', '2', '3', '-n'], "Illegal 'numeric' option with the 'set' command\n", 2],
  [['-L', '-c', '-t', '1.2.3.4:80'], "The option 'service-address' conflicts with the 'connection' option in the 'list' command\n", 2],
  [['-L', '--timeout', '--daemon'], "The option 'daemon' conflicts with the 'timeout' option in the 'list' command\n", 2],
  [['-L', '--timeout', '--daemon', '-c'], "The option 'timeout' conflicts with the 'connection' option in the 'list' command\n", 2],
  // List conflicts checked after the table.
  [['-L', '-c', '--stats'], 'options conflicts in the list command\n', 2],
  [['-L', '--timeout', '--persistent-conn'], 'options conflicts in the list command\n', 2],
  [['-L', '--daemon', '--rate'], 'options conflicts in the list command\n', 2],
  // Repeats.
  [['-A', '-t', '1.2.3.4:80', '-t', '1.2.3.4:81'], "multiple 'service-address' options specified\n", 2],
  [['-A', '-t', '1.2.3.4:80', '-u', '1.2.3.4:81'], "multiple 'service-address' options specified\n", 2],
  [['-a', '-t', '1.2.3.4:80', '-r', '1.1.1.1', '-mg'], "multiple 'forwarding-method' options specified\n", 2],
  [['-L', '-n', '-n'], "multiple 'numeric' options specified\n", 2],
  // Values.
  [['-a', '-t', '1.2.3.4:80', '-r', '1.1.1.1', '-w', '-1'], 'illegal weight specified\n', 2],
  [['-a', '-t', '1.2.3.4:80', '-r', '1.1.1.1', '-w', '65536'], 'illegal weight specified\n', 2],
  [['-a', '-t', '1.2.3.4:80', '-r', '1.1.1.1', '-w', '5 '], 'illegal weight specified\n', 2],
  [['-a', '-t', '1.2.3.4:80', '-r', '1.1.1.1', '-x', '2147483648'], 'illegal u_threshold specified\n', 2],
  [['-a', '-t', '1.2.3.4:80', '-r', '1.1.1.1', '-y', 'abc'], 'illegal l_threshold specified\n', 2],
  [['-A', '-t', '1.2.3.4:80', '-p', '0'], "invalid timeout value `0' specified\n", 2],
  [['-A', '-t', '1.2.3.4:80', '-p', '2678401'], "invalid timeout value `2678401' specified\n", 2],
  [['-A', '-t', '1.2.3.4:80', '--persistent='], "invalid timeout value `' specified\n", 2],
  [['--set', '1', '2', 'x'], "invalid timeout value `x' specified\n", 2],
  [['--set', '01', '0x10', '3'], "invalid timeout value `0x10' specified\n", 2],
  [['--set', '1', '2'], '--set option requires 3 timeout values\n', 2],
  [['--set'], '--set option requires 3 timeout values\n', 2],
  [['-A', '-f', '0'], "invalid fwmark value `0' specified\n", 2],
  [['-A', '-f', '4294967296'], "invalid fwmark value `4294967296' specified\n", 2],
  [['-A', '-f', '0x10'], "invalid fwmark value `0x10' specified\n", 2],
  [['-A', '-6', '-f', '1'], '-6 used before -f\n\n', 2],
  [['-A', '-t', '1.2.3.4:80', '-6'], '-6 used before -f\n\n', 2],
  [['-A', '-t', '1.2.3.4:80', '-b', 'sh-port'], "incompatible scheduler flag `sh-port'\n", 2],
  [['-A', '-t', '1.2.3.4:80', '-s', 'SH', '-b', 'sh-port'], "incompatible scheduler flag `sh-port'\n", 2],
  [['-A', '-t', '1.2.3.4:80', '-b', 'flag-1,bogus'], "invalid scheduler flag `bogus'\n", 2],
  [['-L', '-b', 'x'], "invalid scheduler flag `x'\n", 2],
  [['-A', '-t', '1.2.3.4:80', '-o'], 'One-Packet Scheduling is only for UDP virtual services\n', 2],
  [['-A', '--sctp-service', '1.2.3.4:80', '-o'], 'One-Packet Scheduling is only for UDP virtual services\n', 2],
  [['-A', '-t', '1.2.3.4'], 'Zero port specified for non-persistent service\n', 2],
  [['-E', '-t', '1.2.3.4:0'], 'Zero port specified for non-persistent service\n', 2],
  [['-A', '-t', '[1.2.3.4]:80'], 'Zero port specified for non-persistent service\n', 2],
  [['-A', '-t', '1.2.3.4:80', 'extra', 'more'], 'unexpected argument extra\n', 2],
  [['--set', '1', '2', '3', '4'], 'unexpected argument 4\n', 2],
  [['-L', '--', '-n'], 'unexpected argument -n\n', 2],
  [['-A', '-t', '1.2.3.4:80', '-p', '-'], 'unexpected argument -\n', 2],
  // Addresses.
  [['-A', '-t', '80'], 'illegal virtual server address[:port] specified\n', 2],
  [['-A', '-t', '1.2.3.4:65536'], 'illegal virtual server address[:port] specified\n', 2],
  [['-A', '-t', '1.2.3.4:nosuch'], 'illegal virtual server address[:port] specified\n', 2],
  [['-A', '--sctp-service', '1.2.3.4:http'], 'illegal virtual server address[:port] specified\n', 2],
  [['-A', '-t', '256.1.1.1:80'], 'illegal virtual server address[:port] specified\n', 2],
  [['-A', '-t', '1.2.3.08:80'], 'illegal virtual server address[:port] specified\n', 2],
  [['-A', '-t', '[::1]'], 'illegal virtual server address[:port] specified\n', 2],
  [['-A', '-t', '[fe80::1%eth0]:80'], 'illegal virtual server address[:port] specified\n', 2],
  [['-A', '-t', 'nosuchhost.invalid:80'], 'illegal virtual server address[:port] specified\n', 2],
  [['-Atn', '1.2.3.4:80'], 'illegal virtual server address[:port] specified\n', 2],
  [['-a', '-t', '1.2.3.4:80', '-r', '1.1.1.1:'], 'illegal real server address[:port] specified\n', 2],
  [['-a', '-t', '[::1]:80', '-r', '[::2]', '-m'], 'illegal real server address[:port] specified\n', 2],
  [['-A', '-t', '1.2.3.4:80', '-M', 'bogus..mask', '-p'], 'illegal virtual server persistent mask specified\n', 2],
  [['-A', '-t', '[::1]:80', '-M', '129', '-p'], 'illegal ipv6 netmask specified\n', 2],
  [['-A', '-t', '[::1]:80', '-M', 'abc', '-p'], 'illegal ipv6 netmask specified\n', 2],
  // Servers and tunnels.
  [['-a', '-t', '1.2.3.4:80', '-r', '::1'], 'Different address family is allowed only for tunneling servers\n', 2],
  [['-a', '-f', '1', '-6', '-r', '1.1.1.1'], 'Different address family is allowed only for tunneling servers\n', 2],
  [['-a', '-t', '1.2.3.4:80', '-r', '1.1.1.1', '--tun-type', 'gre'], 'Tunnel options conflict with forward method\n', 2],
  [
    ['-a', '-t', '1.2.3.4:80', '-r', '1.1.1.1', '-i', '--tun-type', 'gue'],
    "You need to supply the 'tun-port' option for the 'gue' tunnel type\n",
    2,
  ],
  [
    ['-a', '-t', '1.2.3.4:80', '-r', '1.1.1.1', '-i', '--tun-type', 'gre', '--tun-remcsum'],
    "Illegal 'tun-remcsum' option with the 'gre' tunnel type\n",
    2,
  ],
  [['-a', '-t', '1.2.3.4:80', '-r', '1.1.1.1', '-i', '--tun-port', '6080'], "Illegal 'tun-port' option with the 'ipip' tunnel type\n", 2],
  [
    ['-a', '-t', '1.2.3.4:80', '-r', '1.1.1.1', '-i', '--tun-type', 'gue', '--tun-port', '6080', '--tun-csum', '--tun-remcsum'],
    "The option 'tun-remcsum' conflicts with the 'tun-csum' option in the 'gue' tunnel type\n",
    2,
  ],
  [['-a', '-t', '1.2.3.4:80', '-r', '1.1.1.1', '-i', '--tun-type', 'foo'], 'illegal tunnel type specified\n', 2],
  [['-a', '-t', '1.2.3.4:80', '-r', '1.1.1.1', '-i', '--tun-type', 'gue', '--tun-port', '0'], 'illegal tunnel port specified\n', 2],
  // Sync daemon arguments are checked like ipvsadm before tsvsadm declines the command.
  [['--start-daemon', 'foo'], 'illegal start-daemon parameter specified\n', 2],
  [['--stop-daemon', 'foo'], 'illegal start_daemon specified\n', 2],
  [['--stop-daemon', 'backup', '--syncid', '300'], 'illegal syncid specified\n', 2],
  [['--start-daemon', 'master', '--mcast-group', '1.2.3.4'], "invalid IPv4 mcast-group `1.2.3.4'\n", 2],
  [['--start-daemon', 'master', '--mcast-group', 'ff02::1x'], "invalid IPv6 mcast-group `ff02::1x'\n", 2],
  [['--start-daemon', 'master', '--mcast-port', '0'], 'illegal mcast-port specified\n', 2],
  [['--stop-daemon', 'master', '--mcast-interface', 'eth1'], "Illegal 'mcast-interface' option with the 'stop-daemon' command\n", 2],
];

describe('command-line errors: exact text and status', () => {
  for (const [argv, stderr, code] of cases) {
    it(`${JSON.stringify(argv)} -> ${code}`, async () => {
      const api = new FakeApi();
      const r = await run(argv, api);
      assert.deepEqual(r, { code, stdout: '', stderr });
      assert.deepEqual(api.applied, [], 'nothing is applied after a command-line error');
    });
  }

  it('prints the program name it is given (ipvsadm prints argv[0])', async () => {
    const r = await run(['foo'], new FakeApi(), { progName: '/usr/sbin/tsvsadm' });
    assert.equal(r.stderr, "Try `/usr/sbin/tsvsadm -h' or '/usr/sbin/tsvsadm --help' for more information.\n");
  });
});

describe('errors from the daemon', () => {
  const kernel: Array<[string[], TsvsError]> = [
    [['-A', '-t', '10.0.0.1:80'], new TsvsError('SERVICE_EXISTS', 'TCP 10.0.0.1:80')],
    [['-E', '-t', '10.9.9.9:80'], new TsvsError('NO_SERVICE', 'TCP 10.9.9.9:80')],
    [['-D', '-t', '10.9.9.9:80'], new TsvsError('NO_SERVICE', 'TCP 10.9.9.9:80')],
    [['-a', '-t', '10.9.9.9:80', '-r', '10.0.0.2'], new TsvsError('SERVICE_NOT_DEFINED', 'TCP 10.9.9.9:80')],
    [['-a', '-t', '10.0.0.1:80', '-r', '192.168.1.2', '-m'], new TsvsError('DEST_EXISTS', '192.168.1.2:80')],
    [['-e', '-t', '10.0.0.1:80', '-r', '192.168.1.9', '-m'], new TsvsError('NO_DEST', '192.168.1.9:80')],
    [['-d', '-t', '10.0.0.1:80', '-r', '192.168.1.9'], new TsvsError('NO_DEST', '192.168.1.9:80')],
    [['-a', '-t', '10.0.0.1:80', '-r', '192.168.1.7', '-y', '10'], new TsvsError('OUT_OF_RANGE', 'lthreshold > uthreshold')],
    [['-A', '-t', '10.0.0.1:81', '-s', 'nosuch'], new TsvsError('SCHEDULER_NOT_FOUND', 'nosuch')],
    [['-Z', '-t', '10.9.9.9:80'], new TsvsError('NO_SERVICE', 'TCP 10.9.9.9:80')],
  ];
  for (const [argv, err] of kernel) {
    it(`${argv.join(' ')} -> ${err.message}`, async () => {
      const api = new FakeApi(ipv4Table());
      api.applyError = err;
      const r = await run(argv, api);
      assert.deepEqual(r, { code: 255, stdout: '', stderr: `${err.message}\n` });
      assert.equal(api.applied.length, 1);
    });
  }

  it('Numerical result out of range is the text of OUT_OF_RANGE', async () => {
    const api = new FakeApi();
    api.applyError = new TsvsError('OUT_OF_RANGE', 'weight');
    assert.equal((await run(['-e', '-t', '1.2.3.4:80', '-r', '1.1.1.1'], api)).stderr, 'Numerical result out of range\n');
  });

  it('-L -t of an unknown service: No such service, exit 1', async () => {
    const r = await run(['-L', '-n', '-t', '10.9.9.9:80'], new FakeApi(ipv4Table()));
    assert.deepEqual(r, { code: 1, stdout: '', stderr: 'No such service\n' });
    const f = await run(['-L', '-f', '8'], new FakeApi(ipv4Table()));
    assert.deepEqual(f, { code: 1, stdout: '', stderr: 'No such service\n' });
  });

  it('a listing the daemon cannot answer exits 1 with the reason', async () => {
    const api = new FakeApi();
    api.readError = new Error('connect ENOENT /run/tsvs/control.sock');
    for (const argv of [['-Ln'], ['-Lnc'], ['-Sn'], ['-L', '--timeout'], ['-L', '--daemon']]) {
      assert.deepEqual(await run(argv, api), { code: 1, stdout: '', stderr: 'connect ENOENT /run/tsvs/control.sock\n' });
    }
  });

  it('--start-daemon and --stop-daemon are declined with exit 255', async () => {
    const api = new FakeApi();
    for (const argv of [
      ['--start-daemon', 'master'],
      ['--stop-daemon', 'backup', '--syncid', '3'],
    ]) {
      assert.deepEqual(await run(argv, api), { code: 255, stdout: '', stderr: SYNC_DAEMON_MESSAGE });
    }
    assert.deepEqual(api.applied, []);
  });
});
