/**
 * runIpvsadm end to end against the fake API: one apply per command, -R's parse-all-then-
 * apply-once behaviour, -h / -v, and name resolution staying behind the injected hooks.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

import { BatchError } from '../../src/api/client.js';
import { TsvsError } from '../../src/core/errors.js';
import { EXIT_NOT_SAVED, usageText, versionLine } from '../../src/cli/ipvsadm/run.js';
import { FakeApi, run, stubResolver } from './fake-api.js';
import { ipv4Table } from './fixtures/tables.js';

describe('commands become one api.apply call each', () => {
  it('-A, -a, -D, -C, -Z, --set', async () => {
    const api = new FakeApi();
    for (const argv of [
      ['-A', '-t', '10.0.0.1:80', '-s', 'rr'],
      ['-a', '-t', '10.0.0.1:80', '-r', '10.0.0.2:8080', '-m', '-w', '3'],
      ['-D', '-t', '10.0.0.1:80'],
      ['-C'],
      ['-Z'],
      ['--set', '1', '2', '3'],
    ]) {
      assert.deepEqual(await run(argv, api), { code: 0, stdout: '', stderr: '' });
    }
    assert.equal(api.applied.length, 6);
    assert.deepEqual(
      api.applied.map((ops) => ops.map((o) => o.op)),
      [['add-service'], ['add-server'], ['delete-service'], ['flush'], ['zero'], ['set-timeouts']],
    );
  });
});

describe('exit codes of a change: 0 done, 255 refused, 3 applied but not saved', () => {
  it('-A: refusal 255, NOT_SAVED 3 with its message', async () => {
    const api = new FakeApi();
    api.applyError = new TsvsError('SERVICE_EXISTS', 'TCP 10.0.0.1:80: service already exists');
    assert.equal((await run(['-A', '-t', '10.0.0.1:80'], api)).code, 255);
    api.applyError = new TsvsError('NOT_SAVED', 'state file /s: EROFS', 'Change applied but not saved: EROFS: read-only file system');
    const r = await run(['-A', '-t', '10.0.0.1:80'], api);
    assert.deepEqual(r, { code: 3, stdout: '', stderr: 'Change applied but not saved: EROFS: read-only file system\n' });
    api.applyError = null;
    assert.equal((await run(['-A', '-t', '10.0.0.1:80'], api)).code, 0);
  });
});

describe('-R', () => {
  const input = [
    '# saved by ipvsadm-save',
    '',
    'ipvsadm -A -t 10.0.0.1:80 -s rr',
    '-a -t 10.0.0.1:80 -r 10.0.0.2:80 -m -w 2   ',
    '\t-A\t-u 10.0.0.1:53 -s wlc',
    '   ',
    '-a -u 10.0.0.1:53 -r 10.0.0.3 -g',
  ].join('\n');

  it('parses every line, then applies all of them in one call, in order', async () => {
    const api = new FakeApi();
    const r = await run(['-R'], api, { stdin: input });
    assert.deepEqual(r, { code: 0, stdout: '', stderr: '' });
    assert.equal(api.applied.length, 1);
    assert.deepEqual(
      api.applied[0]!.map((o) => o.op),
      ['add-service', 'add-server', 'add-service', 'add-server'],
    );
    assert.deepEqual(api.applied[0]![1], {
      op: 'add-server',
      service: { af: 4, protocol: 'tcp', addr: '10.0.0.1', port: 80, fwmark: 0 },
      dest: { af: 4, addr: '10.0.0.2', port: 80, weight: 2, fwd: 'masq', uThreshold: 0, lThreshold: 0 },
    });
  });

  it("a bad line anywhere means nothing is applied; ipvsadm's message and exit code, then the line", async () => {
    const api = new FakeApi();
    const r = await run(['-R'], api, { stdin: `${input}\n-a -t 10.0.0.1:80 -r 10.0.0.9 -w 70000\n` });
    assert.deepEqual(r, {
      code: 2,
      stdout: '',
      stderr: 'illegal weight specified\nipvsadm: -R: line 8 refused, nothing was applied: -a -t 10.0.0.1:80 -r 10.0.0.9 -w 70000\n',
    });
    assert.deepEqual(api.applied, []);
  });

  // Each kind of bad line: ipvsadm's own first line and exit code, then our line number.
  const badLines: Array<[string, string, number, string]> = [
    ['an unknown word', 'garbage here', 255, "Try `ipvsadm -h' or 'ipvsadm --help' for more information.\n"],
    ['an address that is not one', '-a -t 10.0.0.1:80 -r garbage!!:80 -m', 2, 'illegal real server address[:port] specified\n'],
    ['an option the command does not take', '-A -t 10.0.0.5:80 -x 5', 2, "Illegal 'u-threshold' option with the 'add-service' command\n"],
    ['a command without its service', '-a -r 10.0.0.2', 2, null as unknown as string],
  ];
  for (const [kind, line, code, message] of badLines) {
    it(`-R names the line of ${kind}`, async () => {
      const api = new FakeApi();
      const lines = input.split('\n');
      lines.splice(3, 0, line); // becomes line 4
      const r = await run(['-R'], api, { stdin: lines.join('\n') });
      // The first line is whatever ipvsadm says for it alone.
      const alone = await run(line.split(' '), new FakeApi());
      assert.equal(r.code, code === 255 ? alone.code : code);
      assert.equal(r.code, alone.code);
      if (message) assert.equal(alone.stderr, message);
      assert.equal(r.stderr, `${alone.stderr}ipvsadm: -R: line 4 refused, nothing was applied: ${line}\n`);
      assert.deepEqual(api.applied, []);
    });
  }

  it('a long bad line is quoted only in part', async () => {
    const line = `-A -t ${'x'.repeat(100_000)}:80`;
    const r = await run(['-R'], new FakeApi(), { stdin: line });
    assert.ok(r.stderr.length < 400, r.stderr.slice(0, 400));
    assert.match(r.stderr, /line 1 refused, nothing was applied: -A -t x+\.\.\.\n$/);
  });

  it('a refusal by the daemon applies nothing (atomic), exits 255 and names the object', async () => {
    const api = new FakeApi();
    api.applyError = new TsvsError('SERVICE_EXISTS', 'TCP 10.0.0.1:80: service already exists');
    const r = await run(['-R'], api, { stdin: input });
    assert.deepEqual(r, {
      code: 255,
      stdout: '',
      stderr: 'Service already exists\nipvsadm: -R: TCP 10.0.0.1:80: service already exists; nothing was applied\n',
    });
    assert.equal(api.applied.length, 1);
  });

  it('applied but not saved (full disk) exits 3, not 255, and says all of it was applied', async () => {
    const api = new FakeApi();
    api.applyError = new TsvsError('NOT_SAVED', 'state file /s: ENOSPC: no space left on device', 'Change applied but not saved: ENOSPC');
    const r = await run(['-R'], api, { stdin: input });
    assert.equal(r.code, EXIT_NOT_SAVED);
    assert.equal(EXIT_NOT_SAVED, 3);
    assert.match(
      r.stderr,
      /^Change applied but not saved: ENOSPC\nipvsadm: -R: all \d+ change\(s\) were applied, but tsvsd could not save them: state file \/s: ENOSPC/,
    );
  });

  it('when the daemon says which operation it refused, the line is named', async () => {
    const api = new FakeApi();
    // The 4th operation comes from line 7 of the input (comments and blanks are skipped).
    api.applyError = new BatchError('DEST_EXISTS', 'UDP 10.0.0.1:53: real server 10.0.0.3:53 already exists', undefined, 3);
    const r = await run(['-R'], api, { stdin: input });
    assert.deepEqual(r, {
      code: 255,
      stdout: '',
      stderr:
        'Destination already exists\nipvsadm: -R: line 7: UDP 10.0.0.1:53: real server 10.0.0.3:53 already exists; nothing was applied\n',
    });
  });

  it('a nested -R gets the "Try" hint, as in ipvsadm', async () => {
    const api = new FakeApi();
    const r = await run(['-R'], api, { stdin: '-A -t 10.0.0.1:80\n-R\n' });
    assert.deepEqual(r, {
      code: 255,
      stdout: '',
      stderr: "Try `ipvsadm -h' or 'ipvsadm --help' for more information.\nipvsadm: -R: line 2 refused, nothing was applied: -R\n",
    });
    assert.deepEqual(api.applied, []);
  });

  it('listing lines are refused, not half-run', async () => {
    const api = new FakeApi();
    const r = await run(['-R'], api, { stdin: '-A -t 10.0.0.1:80\n-L -n\n' });
    assert.deepEqual(r, { code: 2, stdout: '', stderr: 'ipvsadm: -R: line 2: only commands that change the table can be restored\n' });
    assert.deepEqual(api.applied, []);
  });

  it('empty input applies nothing and succeeds', async () => {
    const api = new FakeApi();
    assert.deepEqual(await run(['-R'], api, { stdin: '\n# nothing\n' }), { code: 0, stdout: '', stderr: '' });
    assert.deepEqual(api.applied, []);
  });
});

describe('-h and -v', () => {
  it('-v keeps "ipvsadm v1.31" first, says tsvsadm inside the parentheses', async () => {
    const r = await run(['-v'], new FakeApi());
    assert.deepEqual(r, { code: 0, stdout: versionLine(), stderr: '' });
    assert.match(r.stdout, /^ipvsadm v1\.31 2019\/12\/24 \(tsvsadm [0-9.]+, compatible with IPVS v1\.2\.1\)\n$/);
  });

  it("-h prints ipvsadm's usage to stdout, tsvs only on the first line", async () => {
    const r = await run(['-h'], new FakeApi(), { progName: 'tsvsadm' });
    assert.equal(r.code, 0);
    assert.equal(r.stderr, '');
    assert.equal(r.stdout, usageText('tsvsadm'));
    const lines = r.stdout.split('\n');
    assert.equal(lines[0], versionLine().trimEnd());
    assert.equal(lines[1], 'Usage:');
    assert.equal(
      lines[2],
      '  tsvsadm -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [--pe persistence_engine] [-b sched-flags]',
    );
    assert.ok(
      lines.slice(1).every((l) => !/tsvs(?!adm -)/.test(l)),
      'no other line mentions tsvs',
    );
    assert.equal(lines.at(-2), '  --mcast-ttl ttl                     Multicast TTL (default=1)');
  });

  it('-h after its first line is byte for byte the real ipvsadm 1.31 usage', async () => {
    const r = await run(['-h'], new FakeApi(), { progName: 'ipvsadm' });
    const golden = readFileSync(new URL('./fixtures/usage-ipvsadm.txt', import.meta.url), 'utf8');
    assert.equal(r.stdout.slice(r.stdout.indexOf('\n') + 1), golden);
  });
});

describe('name resolution goes through the injected hooks', () => {
  it('-L asks the resolver for every address; -Ln asks nothing', async () => {
    const asked: string[] = [];
    const resolve = { ...stubResolver, lookupAddr: async (a: string) => (asked.push(a), null) };
    await run(['-Ln'], new FakeApi(ipv4Table()), { resolve });
    assert.deepEqual(asked, []);
    await run(['-L'], new FakeApi(ipv4Table()), { resolve });
    assert.deepEqual(asked.sort(), ['10.0.0.1', '10.0.0.9', '127.0.0.1', '192.168.1.2', '192.168.1.3', '192.168.100.200', '200.0.0.1']);
  });

  it('-L -t resolves a host name given on the command line', async () => {
    const r = await run(['-L', '-n', '-t', 'lb.example.com:http'], new FakeApi(ipv4Table()));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^TCP {2}10\.0\.0\.1:80 wlc persistent 360 mask 255\.255\.255\.0$/m);
  });
});
