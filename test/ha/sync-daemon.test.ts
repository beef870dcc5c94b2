/**
 * The IPVS-format sync daemon between two real tsvsd processes in network namespaces
 * (test/sync/netns.ts draws the topology): started with tsvsadm --start-daemon, carried
 * over real multicast on the veth link. A connection and its persistence template made on
 * the master show in the backup's `tsvsadm -Lnc`, and a persistent client that connects
 * to the backup (as after a failover) gets the master's real server.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ControlApi } from '../../src/api/control.js';
import { runIpvsadm } from '../../src/cli/ipvsadm/run.js';
import { builtinServices } from '../../src/ipvsadm/services.js';
import { CLIENTS, REALS, ROOT, VIP, syncPairUp, type SyncPair } from '../sync/netns.js';
import { privileged } from '../privileged.js';

async function adm(api: ControlApi, ...argv: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await runIpvsadm(
    argv,
    { stdout: (s) => (out += s), stderr: (s) => (out += s), readStdin: async () => '', resolve: { services: builtinServices } },
    api,
  );
  return { code, out };
}

/** The real tsvsadm program, as an operator runs it. */
function tsvsadmBin(socket: string, ...argv: string[]): { code: number; out: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'bin/tsvsadm.ts'), ...argv], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, TSVS_SOCKET: socket },
    timeout: 20_000,
  });
  return { code: r.status ?? -1, out: r.stdout + r.stderr };
}

async function waitFor<T>(what: string, f: () => Promise<T | null> | T | null, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('sync daemon: master -> backup over multicast between two tsvsd', privileged(['ip']), () => {
  let pair: SyncPair;
  before(async () => {
    pair = await syncPairUp();
    for (const c of pair.clients) {
      const rules = [
        ['-A', '-t', `${VIP}:80`, '-s', 'rr', '-p', '300'],
        ...REALS.map((r) => ['-a', '-t', `${VIP}:80`, '-r', `${r}:80`, '-m']),
      ];
      for (const r of rules) assert.deepEqual(await adm(c, ...r), { code: 0, out: '' });
    }
  });
  after(async () => {
    await pair?.down();
  });

  it('starts with --start-daemon, lists with -L --daemon', async () => {
    const [a, b] = pair.clients;
    assert.deepEqual(await adm(a, '--start-daemon', 'master', '--mcast-interface', pair.ifs[0], '--syncid', '3'), { code: 0, out: '' });
    assert.deepEqual(await adm(b, '--start-daemon', 'backup', '--mcast-interface', pair.ifs[1], '--syncid', '3'), { code: 0, out: '' });
    assert.deepEqual(tsvsadmBin(pair.sockets[1], '-L', '--daemon'), {
      code: 0,
      out: `backup sync daemon (mcast=${pair.ifs[1]}, syncid=3)\n`,
    });
    assert.deepEqual(tsvsadmBin(pair.sockets[1], '--start-daemon', 'backup', '--mcast-interface', pair.ifs[1]), {
      code: 255,
      out: 'Daemon has already run\n',
    });
  });

  it("a master's connection and template show in the backup's tsvsadm -Lnc; the persistent client keeps its server there", async () => {
    const [a, b] = pair.clients;
    // Move rr on the master first, so the client's server differs from the backup's own first pick.
    const other = await pair.connect(0, CLIENTS[1], 4000);
    const mine = await pair.connect(0, CLIENTS[0], 4000);
    assert.notEqual(mine.server, other.server);
    const onMaster = await adm(a, '-Lnc');
    assert.match(
      onMaster.out,
      new RegExp(
        `TCP .*ESTABLISHED ${CLIENTS[0].replaceAll('.', '\\.')}:\\d+ +${VIP.replaceAll('.', '\\.')}:80 +${mine.server.replaceAll('.', '\\.')}:80`,
      ),
    );

    const lines = await waitFor('the synced entries on the backup', () => {
      const r = tsvsadmBin(pair.sockets[1], '-Lnc');
      const l = r.out.split('\n').filter((x) => x.includes(`${CLIENTS[0]}:`));
      return l.length >= 2 ? l : null;
    });
    const conn = lines.find((l) => l.includes('ESTABLISHED'));
    const tpl = lines.find((l) => l.includes(`${CLIENTS[0]}:0 `));
    assert.ok(conn, `no ESTABLISHED entry on the backup:\n${lines.join('\n')}`);
    assert.match(conn!, new RegExp(`${VIP.replaceAll('.', '\\.')}:80 +${mine.server.replaceAll('.', '\\.')}:80`));
    assert.ok(tpl, `no template on the backup:\n${lines.join('\n')}`);
    assert.match(
      tpl!,
      new RegExp(
        `^TCP .*(NONE|ASSURED) +${CLIENTS[0].replaceAll('.', '\\.')}:0 +${VIP.replaceAll('.', '\\.')}:80 +${mine.server.replaceAll('.', '\\.')}:80`,
      ),
    );

    // The backup takes over: its own rr would pick other.server first; the template wins.
    const after = await pair.connect(1, CLIENTS[0], 200);
    assert.equal(after.server, mine.server);
    const stats = (await b.getSyncDaemons())[0]!.counters as { imported: number; dropped: object };
    assert.ok(stats.imported >= 2);
    assert.deepEqual(stats.dropped, {});
    await Promise.all([other.done, mine.done, after.done]);
  });

  it('--stop-daemon stops it; a second stop is "No daemon is running"', async () => {
    const [a] = pair.clients;
    assert.deepEqual(await adm(a, '--stop-daemon', 'master'), { code: 0, out: '' });
    assert.deepEqual(await adm(a, '--stop-daemon', 'master'), { code: 255, out: 'No daemon is running\n' });
    assert.deepEqual(await adm(a, '-L', '--daemon'), { code: 0, out: '' });
  });
});
