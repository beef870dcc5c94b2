/**
 * The generated rulesets against the real kernel, as root, in a scratch namespace of this
 * test's own: the golden transactions load (IPv4 and IPv6, every kernel scheduler), the
 * incremental one applies on top and keeps the counters, and tsvsd's start checks say
 * clearly what is missing.
 */
import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { compile, parseSnat, transaction } from '../../src/dataplane/nftables/ruleset.js';
import { toolCommand } from '../../src/lab/lab.js';
import { privileged } from '../privileged.js';

const FIXTURES = join(import.meta.dirname, 'fixtures');
const ns = `tsvs-k-${process.pid % 1_000_000}`;

function inNs(cmd: string, args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('nftables rulesets in the kernel', privileged(['ip', 'nft']), () => {
  let dir: string;
  before(() => {
    spawnSync('ip', ['netns', 'add', ns]);
    dir = mkdtempSync(join(tmpdir(), 'tsvs-kernel-'));
  });
  after(() => {
    spawnSync('ip', ['netns', 'del', ns]);
    rmSync(dir, { recursive: true, force: true });
  });

  test('the golden transactions load, and the incremental one applies on top', () => {
    for (const f of ['seed-rr', 'representative', 'incremental']) {
      const r = inNs('nft', ['-j', '-f', join(FIXTURES, `${f}.json`)]);
      assert.equal(r.code, 0, `${f}: ${r.err}`);
    }
    const list = inNs('nft', ['list', 'ruleset']).out;
    assert.match(list, /table ip tsvs/);
    assert.match(list, /table ip6 tsvs/);
    assert.match(list, /counter name "conns99"/);
    assert.doesNotMatch(list, /chain rs11 /);
    assert.match(list, /jhash ip6 saddr|ip6 saddr & ffff:ffff:ffff:ffff::/);
    // Nothing but tsvs's own tables.
    const tables = inNs('nft', ['list', 'tables']).out.trim().split('\n');
    assert.deepEqual(tables.sort(), ['table ip tsvs', 'table ip6 tsvs']);
    inNs('nft', ['delete', 'table', 'ip', 'tsvs']);
    inNs('nft', ['delete', 'table', 'ip6', 'tsvs']);
  });

  test('the outbound SNAT rules load in both families', () => {
    const file = join(dir, 'snat.json');
    writeFileSync(file, JSON.stringify(transaction(null, compile({ services: [], snat: parseSnat('198.19.0.0/24,2001:db8:19::/64') }))));
    const r = inNs('nft', ['-j', '-f', file]);
    assert.equal(r.code, 0, r.err);
    const list = inNs('nft', ['list', 'ruleset']).out;
    assert.match(list, /ip saddr 198\.19\.0\.0\/24 masquerade/);
    assert.match(list, /ip6 saddr 2001:db8:19::\/64 masquerade/);
    inNs('nft', ['delete', 'table', 'ip', 'tsvs']);
    inNs('nft', ['delete', 'table', 'ip6', 'tsvs']);
  });

  test('tsvsd --dataplane nftables refuses to start with forwarding off, and says how to fix it', () => {
    inNs('sysctl', ['-qw', 'net.ipv4.ip_forward=0']);
    const [cmd, ...pre] = toolCommand('tsvsd');
    const r = spawnSync('ip', ['netns', 'exec', ns, cmd!, ...pre, '--dataplane', 'nftables', '--socket', join(dir, 's.sock')], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 1, r.stderr + r.stdout);
    assert.match(r.stderr, /net\.ipv4\.ip_forward is 0/);
    assert.match(r.stderr, /TSVS_NFT_SETUP=sysctl/);
  });

  test('with TSVS_NFT_SETUP=sysctl it turns forwarding on itself, logs it, and cleans up on SIGTERM', async () => {
    inNs('sysctl', ['-qw', 'net.ipv4.ip_forward=0']);
    const [cmd, ...pre] = toolCommand('tsvsd');
    const p = spawn('ip', ['netns', 'exec', ns, cmd!, ...pre, '--dataplane', 'nftables', '--socket', join(dir, 's2.sock')], {
      env: { ...process.env, TSVS_NFT_SETUP: 'sysctl' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    p.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    p.stderr!.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<number | null>((r) => p.once('exit', (c) => r(c)));
    try {
      for (let i = 0; i < 150 && !out.includes('tsvsd started'); i++) await new Promise((r) => setTimeout(r, 100));
      assert.match(out, /tsvsd started/);
      assert.match(out, /set net\.ipv4\.ip_forward=1 \(was 0\) because TSVS_NFT_SETUP=sysctl/);
      assert.equal(inNs('sysctl', ['-n', 'net.ipv4.ip_forward']).out.trim(), '1');
      assert.match(inNs('nft', ['list', 'tables']).out, /table ip tsvs/);
      p.kill('SIGTERM');
      assert.equal(await exited, 0);
      assert.equal(inNs('nft', ['list', 'tables']).out.trim(), '');
    } finally {
      if (p.exitCode === null) p.kill('SIGKILL');
    }
  });
});
