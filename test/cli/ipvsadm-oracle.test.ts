/**
 * `tsvsadm -S` output is accepted by the real ipvsadm 1.31 and means the same thing to it.
 *
 * The kernel here has no ip_vs, so the real /usr/sbin/ipvsadm runs with the LD_PRELOAD
 * shim in fixtures/oracle/fake-ipvs.c, which records every request ipvsadm sends to the
 * kernel. We save tables with tsvsadm, restore them with the real `ipvsadm -R`, and compare
 * what ipvsadm asked for with the operations tsvsadm's own parser makes of the same text.
 * (The shim speaks the IPv4 socket-option interface only, so the tables are IPv4.)
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { formatIPv4 } from '../../src/core/addr.js';
import type { Op, ServiceKey, TableView } from '../../src/core/types.js';
import { FakeApi, run, svc } from './fake-api.js';
import { ipv4Table, sortTable } from './fixtures/tables.js';

const IPVSADM = '/usr/sbin/ipvsadm';

function oracleProblem(): string | null {
  if (!existsSync(IPVSADM)) return 'needs the real ipvsadm (apt-get install ipvsadm)';
  if (spawnSync('sh', ['-c', 'command -v gcc']).status !== 0) return 'needs gcc to build the shim';
  return null;
}

function gate(): { skip?: string } {
  const problem = oracleProblem();
  if (!problem) return {};
  // CI installs ipvsadm; there a missing oracle must fail, not skip.
  if (process.env.TSVS_REQUIRE_PRIVILEGED === '1') throw new Error(`ipvsadm oracle required but unavailable: ${problem}`);
  return { skip: problem };
}

const FWD = { masq: 0, tunnel: 2, route: 3, fullnat: 0 } as const;

/** The shim's log line for a service key as ipvsadm sends it with a real-server command. */
function keyFields(k: ServiceKey): string {
  return k.fwmark ? `6 0.0.0.0 0 ${k.fwmark}` : `${{ tcp: 6, udp: 17, sctp: 132 }[k.protocol]} ${k.addr} ${k.port} 0`;
}

/** What the shim would log for each operation, if ipvsadm means the same thing by the text. */
function expectedLog(ops: Op[]): string[] {
  return ops.map((op) => {
    switch (op.op) {
      case 'add-service': {
        const s = op.service;
        const flags = (s.persistent ? 1 : 0) | (s.ops ? 4 : 0) | (s.schedFlags << 3);
        return `svc ADD ${keyFields(s)} ${s.scheduler} ${flags} ${s.persistent} ${formatIPv4(s.netmask)}`;
      }
      case 'add-server': {
        const d = op.dest;
        return `dest ADDDEST ${keyFields(op.service)} - 0 0 255.255.255.255 ${d.addr} ${d.port} ${FWD[d.fwd]} ${d.weight} ${d.uThreshold} ${d.lThreshold}`;
      }
      default:
        return `unexpected ${op.op}`;
    }
  });
}

/** Tables whose -S covers methods, weights, persistence, masks, flags, ops and fwmarks. */
function tables(): Array<[string, TableView]> {
  const mixed = ipv4Table();
  mixed.services = [
    ...mixed.services,
    svc({ protocol: 'udp', addr: '10.9.0.53', port: 53, scheduler: 'sh', schedFlags: 3, ops: true }),
    svc({ protocol: 'tcp', addr: '10.9.0.80', port: 0, scheduler: 'mh', schedFlags: 1, persistent: 7200, netmask: 0xfffff000 }),
    svc({ fwmark: 4242, addr: '0.0.0.0', port: 0, scheduler: 'lblcr', persistent: 360 }),
  ];
  return [
    ['ipv4 fixture and more', mixed],
    ['sort fixture', sortTable()],
  ];
}

describe('the real ipvsadm -R accepts tsvsadm -S output', gate(), () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsvs-oracle-'));
  const shim = join(dir, 'fake-ipvs.so');
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('build the shim', () => {
    const cc = spawnSync('gcc', ['-shared', '-fPIC', '-o', shim, join(import.meta.dirname, 'fixtures/oracle/fake-ipvs.c'), '-ldl'], { encoding: 'utf8' });
    assert.equal(cc.status, 0, cc.stderr);
  });

  for (const [name, table] of tables()) {
    test(name, async () => {
      const saved = await run(['-S', '-n'], new FakeApi(table));
      assert.equal(saved.code, 0, saved.stderr);
      assert.ok(saved.stdout.split('\n').filter(Boolean).length >= 4);

      const log = join(dir, `${name.replace(/\W+/g, '-')}.log`);
      const r = spawnSync(IPVSADM, ['-R'], { input: saved.stdout, encoding: 'utf8', env: { ...process.env, LD_PRELOAD: shim, FAKE_LOG: log } });
      assert.equal(r.stderr, '', `ipvsadm -R refused tsvsadm's output:\n${saved.stdout}`);
      assert.equal(r.status, 0);
      const asked = readFileSync(log, 'utf8').trim().split('\n');

      // tsvsadm's own reading of the same text.
      const api = new FakeApi();
      const mine = await run(['-R'], api, { stdin: saved.stdout });
      assert.equal(mine.code, 0, mine.stderr);
      assert.deepEqual(asked, expectedLog(api.applied.flat()));
    });
  }
});
