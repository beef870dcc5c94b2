/**
 * tsvsadm --start-daemon / --stop-daemon / -L --daemon end to end through the control API
 * (HTTP client -> routes -> SyncManager), with the multicast sockets replaced by stand-ins
 * that still check the interface the way the real ones do.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { HttpControlClient } from '../../src/api/client.js';
import { createControlApp } from '../../src/api/server.js';
import { runIpvsadm } from '../../src/cli/ipvsadm/run.js';
import { builtinServices } from '../../src/ipvsadm/services.js';
import { SyncManager } from '../../src/sync/manager.js';
import { interfaceAddress, type SocketParams } from '../../src/sync/transport.js';
import { freeVipPort, listen, startDirector, type TestDirector } from '../api/harness.js';

const opened: Array<{ role: string; p: SocketParams }> = [];
const fakeSockets = {
  master: async (p: SocketParams) => {
    interfaceAddress(p.ifname, 4);
    opened.push({ role: 'master', p });
    return { send: () => {}, close: async () => {} };
  },
  backup: async (p: SocketParams) => {
    interfaceAddress(p.ifname, 4);
    opened.push({ role: 'backup', p });
    return { send: () => {}, close: async () => {} };
  },
};

describe('tsvsadm sync daemon commands through the API', () => {
  let d: TestDirector;
  let server: { url: string; close(): Promise<void> };
  let manager: SyncManager;
  let client: HttpControlClient;

  before(async () => {
    d = await startDirector();
    manager = new SyncManager({ table: d.table, log: () => {}, sockets: fakeSockets });
    server = await listen(createControlApp(d.director, { sync: manager }));
    client = new HttpControlClient({ baseUrl: server.url });
  });
  after(async () => {
    await manager.close();
    await server.close();
    await d.stop();
  });

  const run = async (...argv: string[]) => runWith('', ...argv);
  const runWith = async (stdin: string, ...argv: string[]) => {
    let stdout = '';
    let stderr = '';
    const code = await runIpvsadm(
      argv,
      { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s), readStdin: async () => stdin, resolve: { services: builtinServices } },
      client,
    );
    return { code, stdout, stderr };
  };

  it('starts a master and a backup, lists them as ipvsadm does, refuses a second one, stops them', async () => {
    assert.deepEqual(await run('-L', '--daemon'), { code: 0, stdout: '', stderr: '' });
    assert.deepEqual(await run('--start-daemon', 'master', '--mcast-interface', 'lo', '--syncid', '7', '--mcast-ttl', '2'), {
      code: 0,
      stdout: '',
      stderr: '',
    });
    assert.deepEqual(
      await run(
        '--start-daemon',
        'backup',
        '--mcast-interface',
        'lo',
        '--syncid',
        '7',
        '--sync-maxlen',
        '1400',
        '--mcast-group',
        '239.1.2.3',
        '--mcast-port',
        '9000',
      ),
      { code: 0, stdout: '', stderr: '' },
    );
    assert.deepEqual(
      opened.map((o) => [o.role, o.p.ifname, o.p.group, o.p.port, o.p.ttl]),
      [
        ['master', 'lo', '224.0.0.81', 8848, 2],
        ['backup', 'lo', '239.1.2.3', 9000, 1],
      ],
    );
    assert.deepEqual(await run('-L', '--daemon'), {
      code: 0,
      stdout:
        'master sync daemon (mcast=lo, syncid=7, ttl=2)\nbackup sync daemon (mcast=lo, syncid=7, maxlen=1400, group=239.1.2.3, port=9000)\n',
      stderr: '',
    });
    // The kernel's EEXIST, as ipvsadm prints it.
    assert.deepEqual(await run('--start-daemon', 'master', '--mcast-interface', 'lo'), {
      code: 255,
      stdout: '',
      stderr: 'Daemon has already run\n',
    });
    assert.deepEqual(await run('--stop-daemon', 'master'), { code: 0, stdout: '', stderr: '' });
    assert.deepEqual(await run('--stop-daemon', 'master'), { code: 255, stdout: '', stderr: 'No daemon is running\n' });
    assert.deepEqual(await run('--stop-daemon', 'backup'), { code: 0, stdout: '', stderr: '' });
    assert.deepEqual(await run('-L', '--daemon'), { code: 0, stdout: '', stderr: '' });
  });

  it('an interface that does not exist: "No such device", exit 255, nothing started', async () => {
    assert.deepEqual(await run('--start-daemon', 'backup', '--mcast-interface', 'tsvsnope0'), {
      code: 255,
      stdout: '',
      stderr: 'No such device\n',
    });
    assert.deepEqual(await client.getSyncDaemons(), []);
  });

  it('without --mcast-interface the daemon uses eth0, as ipvsadm does', async () => {
    const r = await run('--start-daemon', 'master');
    if (r.code === 0) {
      assert.equal((await client.getSyncDaemons())[0]!.mcastIfn, 'eth0');
      await run('--stop-daemon', 'master');
    } else {
      assert.equal(r.stderr, 'No such device\n'); // this host has no eth0
    }
  });

  it('-L --daemon --json carries the counters', async () => {
    await run('--start-daemon', 'master', '--mcast-interface', 'lo');
    const list = await client.getSyncDaemons();
    assert.equal(list.length, 1);
    assert.deepEqual(Object.keys(list[0]!.counters as object).sort(), ['entries', 'messages', 'scans', 'sendErrors']);
    await run('--stop-daemon', 'master');
  });

  it('-R runs sync daemon lines after the table lines', async () => {
    const port = await freeVipPort();
    const r = await runWith(`-A -t 127.0.0.1:${port} -s rr\n--start-daemon backup --mcast-interface lo --syncid 4\n`, '-R');
    assert.deepEqual(r, { code: 0, stdout: '', stderr: '' });
    assert.equal((await client.getTable()).services.length, 1);
    assert.deepEqual(
      (await client.getSyncDaemons()).map((x) => [x.state, x.syncid]),
      [['backup', 4]],
    );
    // A refused daemon line after good table lines: the table is in, the refusal is reported.
    const again = await runWith('--start-daemon backup --mcast-interface lo\n', '-R');
    assert.deepEqual(again, { code: 255, stdout: '', stderr: 'Daemon has already run\n' });
    await run('--stop-daemon', 'backup');
    await run('-C');
  });

  it('POST /v1/sync without mcastIfn is refused, naming the field; nothing starts', async () => {
    const r = await fetch(`${server.url}/v1/sync`, { method: 'POST', body: JSON.stringify({ state: 'master' }) });
    assert.equal(r.status, 400);
    const e = ((await r.json()) as { error: { code: string; message: string; detail: string } }).error;
    assert.equal(e.code, 'BAD_REQUEST');
    assert.match(e.message, /Missing field "mcastIfn"/);
    assert.match(e.detail, /the field "mcastIfn" \(the multicast interface, ipvsadm --mcast-interface\) is missing/);
    assert.deepEqual(await client.getSyncDaemons(), []);
  });

  it("POST /v1/sync without mcastIfn uses the configuration's sync interface when there is one", async () => {
    const m = new SyncManager({ table: d.table, log: () => {}, sockets: fakeSockets });
    const s = await listen(createControlApp(d.director, { sync: m, syncInterface: 'lo' }));
    try {
      const r = await fetch(`${s.url}/v1/sync`, { method: 'POST', body: JSON.stringify({ state: 'backup', syncid: 7 }) });
      assert.equal(r.status, 201, await r.text());
      assert.deepEqual(
        m.list().map((x) => [x.state, x.mcastIfn, x.syncid]),
        [['backup', 'lo', 7]],
      );
    } finally {
      await m.close();
      await s.close();
    }
  });
});
