/**
 * tsvsd refuses the setups that would hurt its operator, with a message that names the
 * object and the fix: a --socket path that is not a stale socket (a regular file is never
 * deleted), a socket directory others can write to (as OpenSSH's StrictModes), and an API
 * token too short to resist guessing. Real tsvsd processes, real files.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { HostNames, ListenerStats, parseApiHostName } from '../../src/api/listener.js';
import { socketDirProblem } from '../../src/api/socket.js';
import { ENTRY, startTsvsd } from '../daemon/spawn.js';

function tsvsd(args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, [ENTRY('tsvsd'), ...args], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, ...env } });
}

function withDir(f: (dir: string) => void | Promise<void>) {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsvs-footgun-'));
    try {
      await f(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

describe('--socket', () => {
  test(
    'a regular file at the socket path is refused and kept',
    withDir((dir) => {
      const file = join(dir, 'precious.txt');
      writeFileSync(file, 'keep me\n');
      const r = tsvsd(['--socket', file]);
      assert.equal(r.status, 1, r.stderr);
      assert.match(
        r.stderr,
        /--socket .*precious\.txt: .*precious\.txt exists and is a regular file, not a socket; tsvsd removes only a stale socket/,
      );
      assert.equal(readFileSync(file, 'utf8'), 'keep me\n');
    }),
  );

  test(
    'a directory at the socket path is refused',
    withDir((dir) => {
      mkdirSync(join(dir, 'sub'));
      const r = tsvsd(['--socket', join(dir, 'sub')]);
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, /exists and is a directory, not a socket/);
    }),
  );

  test(
    'a stale socket (nobody listening) is replaced',
    withDir(async (dir) => {
      const path = join(dir, 'tsvsd.sock');
      // A listener that closes removes its socket; a killed process leaves it behind.
      spawnSync(process.execPath, [
        '-e',
        `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`,
      ]);
      assert.ok(statSync(path).isSocket(), 'a stale socket file is left');
      const d = await startTsvsd([], { dir });
      try {
        await d.client.info();
      } finally {
        await d.cleanup();
      }
    }),
  );

  test(
    'a group/world-writable socket directory without the sticky bit is refused, naming it and the fix',
    withDir((dir) => {
      const open = join(dir, 'open');
      mkdirSync(open);
      chmodSync(open, 0o777);
      let r = tsvsd(['--socket', join(open, 's.sock')]);
      assert.equal(r.status, 1, r.stderr);
      assert.match(
        r.stderr,
        /socket directory .*\/open is writable by every user \(mode 0777\) without the sticky bit: .*fix: chmod go-w .*\/open/,
      );
      chmodSync(open, 0o770);
      r = tsvsd(['--socket', join(open, 's.sock')]);
      assert.match(r.stderr, /writable by its group \(mode 0770\)/);
    }),
  );

  test(
    'a socket directory owned by another user is refused, even mode 0700',
    withDir((dir) => {
      if (process.getuid?.() !== 0) return;
      const theirs = join(dir, 'theirs');
      mkdirSync(theirs);
      chmodSync(theirs, 0o777);
      chownSync(theirs, 65534, 65534);
      let r = tsvsd(['--socket', join(theirs, 's.sock')]);
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, /socket directory .*\/theirs is owned by uid 65534, not by root or tsvsd's user \(uid 0\).*fix: chown 0 /);
      chmodSync(theirs, 0o700);
      r = tsvsd(['--socket', join(theirs, 's.sock')]);
      assert.match(r.stderr, /is owned by uid 65534/);
    }),
  );

  test('socketDirProblem: the sticky bit makes a shared directory safe (as /tmp); owner root or self', () => {
    assert.equal(socketDirProblem('/tmp', { uid: 0, mode: 0o41777 }, 1000), null);
    assert.equal(socketDirProblem('/run/user/1000', { uid: 1000, mode: 0o40700 }, 1000), null);
    assert.equal(socketDirProblem('/run', { uid: 0, mode: 0o40755 }, 1000), null);
    assert.match(socketDirProblem('/x', { uid: 0, mode: 0o40775 }, 0)!, /writable by its group/);
    assert.match(socketDirProblem('/x', { uid: 1001, mode: 0o40700 }, 1000)!, /owned by uid 1001/);
  });
});

describe('API token', () => {
  test(
    'a token shorter than 32 characters is refused at start without printing it',
    withDir((dir) => {
      writeFileSync(join(dir, 'token'), 'x\n');
      let r = tsvsd(['--socket', join(dir, 's.sock'), '--api', '127.0.0.1:0', '--api-token-file', join(dir, 'token')]);
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, /--api-token-file .*token: the API token has 1 characters; tsvsd needs at least 32 .*openssl rand -hex 16/);
      const short = 'abcdefghijklmnopqrstuvwxyz01234';
      r = tsvsd(['--socket', join(dir, 's.sock'), '--api', '127.0.0.1:0'], { TSVS_API_TOKEN: short });
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, /\$TSVS_API_TOKEN: the API token has 31 characters/);
      assert.doesNotMatch(r.stderr, new RegExp(short));
    }),
  );
});

describe('tsvsd API options', () => {
  test(
    'bad values are refused with exit 2, naming the option',
    withDir((dir) => {
      for (const [args, re] of [
        [['--api-max-conns', '0'], /--api-max-conns "0": must be a number of connections from 1/],
        [['--socket-max-conns', 'lots'], /--socket-max-conns "lots"/],
        [['--api-header-timeout=-1'], /--api-header-timeout "-1": must be a number of seconds > 0/],
        [['--api-header-timeout', '90'], /--api-header-timeout 90 is longer than --api-body-timeout 60/],
        [['--api-idle-timeout', '0'], /--api-idle-timeout "0"/],
        [['--api-host', 'evil.example:80'], /--api-host "evil.example:80": expected a DNS name/],
      ] as const) {
        const r = tsvsd(['--socket', join(dir, 's.sock'), ...args]);
        assert.equal(r.status, 2, r.stderr);
        assert.match(r.stderr, re);
      }
    }),
  );

  test('HostNames: names by rule, ports ignored', () => {
    const h = new HostNames('0.0.0.0', [parseApiHostName('LB.example.')]);
    for (const ok of [
      undefined,
      '10.1.2.3',
      '10.1.2.3:9180',
      '[2001:db8::1]:80',
      'localhost',
      'a.b.localhost:1',
      'lb.example',
      'LB.EXAMPLE:443',
    ]) {
      assert.equal(h.allows(ok), true, ok);
    }
    for (const bad of ['evil.example', 'lb.example.evil', 'localhost.evil', '::1', 'a b', 'lb.example:x'])
      assert.equal(h.allows(bad), false, bad);
    assert.equal(new HostNames('director1').allows('director1:9180'), true);
  });
});

test('ListenerStats: every hit counts, one log line per reason every 10 s, the next says how many were not logged', () => {
  const lines: string[] = [];
  const limits = { maxConnections: 1, headerTimeoutMs: 1000, bodyTimeoutMs: 1000, idleTimeoutMs: 1000 };
  const st = new ListenerStats('tcp', limits, (_l, msg) => lines.push(msg), '127.0.0.1:9180');
  for (let i = 0; i < 100; i++) st.hit('max-connections', 'connection refused', 'warn', 1000 + i);
  st.hit('header-timeout', 'slow headers', 'warn', 1050);
  st.hit('max-connections', 'connection refused', 'warn', 11_000);
  assert.equal(st.hits['max-connections'], 101);
  assert.deepEqual(lines, [
    'API tcp 127.0.0.1:9180: connection refused',
    'API tcp 127.0.0.1:9180: slow headers',
    'API tcp 127.0.0.1:9180: connection refused (and 99 more since the last such line)',
  ]);
});
