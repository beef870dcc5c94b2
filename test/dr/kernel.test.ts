/**
 * The DR goldens against the real kernel, as root, in a scratch namespace of this test's
 * own: `netdev tsvs` with ingress chains on two veths loads (IPv4 and IPv6, rr, wrr with
 * persistence, UDP sh, port-zero mh), the incremental change applies on top of the seed,
 * and `nft -j list table` is read back by parseDrTable.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseDrTable } from '../../src/dataplane/nftables/dr.js';
import { privileged } from '../privileged.js';

const FIXTURES = join(import.meta.dirname, 'fixtures');
const sfx = (process.pid % 100000).toString(36);
const ns = `tsvs-drk-${sfx}`;
const devs = [`tsvsl0${sfx}`, `tsvsl1${sfx}`];

function inNs(cmd: string, args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('DR rulesets in the kernel', privileged(['ip', 'nft']), () => {
  let dir: string;
  before(() => {
    spawnSync('ip', ['netns', 'add', ns]);
    for (const [i, dev] of devs.entries()) {
      assert.equal(inNs('ip', ['link', 'add', dev, 'type', 'veth', 'peer', 'name', `tsvsp${i}${sfx}`]).code, 0);
      inNs('ip', ['link', 'set', dev, 'up']);
    }
    dir = mkdtempSync(join(tmpdir(), 'tsvs-drk-'));
  });
  after(() => {
    spawnSync('ip', ['netns', 'del', ns]);
    rmSync(dir, { recursive: true, force: true });
  });

  /** A fixture with the golden's device names replaced by this run's. */
  function load(name: string): { code: number | null; err: string } {
    const text = readFileSync(join(FIXTURES, `${name}.json`), 'utf8')
      .replaceAll('tsvslan0', devs[0]!)
      .replaceAll('tsvslan1', devs[1]!);
    const file = join(dir, `${name}.json`);
    writeFileSync(file, text);
    return inNs('nft', ['-j', '-f', file]);
  }

  test('the golden transactions load; the incremental one applies on top of the seed', () => {
    for (const f of ['dr-representative', 'dr-seed', 'dr-incremental']) {
      const r = load(f);
      assert.equal(r.code, 0, `${f}: ${r.err}`);
    }
    const list = inNs('nft', ['list', 'table', 'netdev', 'tsvs']).out;
    assert.match(list, new RegExp(`hook ingress device "${devs[0]}"`));
    assert.match(list, /fwd ip to 198\.19\.0\.11 device/);
    assert.doesNotMatch(list, /fwd ip to 198\.19\.0\.12 device/, 'the incremental change removed .12');
    assert.doesNotMatch(list, /chain rs2 /);
    assert.deepEqual(inNs('nft', ['list', 'tables']).out.trim().split('\n'), ['table netdev tsvs']);
  });

  test('the representative table (IPv6 port-zero mh, wrr with persistence, UDP sh) loads and reads back', () => {
    assert.equal(load('dr-representative').code, 0);
    const list = inNs('nft', ['list', 'table', 'netdev', 'tsvs']).out;
    assert.match(list, /fwd ip6 to 2001:db8:19::11 device/);
    assert.match(list, /jhash ip6 saddr mod 4093/);
    // An element as the packet path would add it, then the read-back.
    assert.equal(inNs('nft', ['add', 'element', 'netdev', 'tsvs', 'flows11', '{ 198.18.0.10 . 40000 . 443 timeout 60s }']).code, 0);
    const { flows, counters } = parseDrTable(inNs('nft', ['-j', 'list', 'table', 'netdev', 'tsvs']).out, new Set([11]));
    assert.equal(flows.length, 1);
    assert.deepEqual([flows[0]!.caddr, flows[0]!.cport, flows[0]!.vport, flows[0]!.state], ['198.18.0.10', 40000, 443, 'SYN_RECV']);
    assert.deepEqual(counters.get('conns11'), { packets: 0, bytes: 0 });
  });
});
