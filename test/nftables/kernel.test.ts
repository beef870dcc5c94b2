/**
 * The generated rulesets against the real kernel, as root, in scratch namespaces of this
 * test's own: the golden transactions (IPv4 and IPv6, every kernel scheduler, the queue
 * path, an incremental change) loaded as text with nft and sent by the netlink encoder
 * leave the same ruleset (nft is the oracle for the encoder), a refused batch changes
 * nothing, and tsvsd's start checks say clearly what is missing.
 */
import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { checkNfqueueRule, installNfqueueRule, readNfqueueRules } from '../../src/dataplane/nftables/netsock.js';
import { NfQueueReader } from '../../src/dataplane/nftables/nfqueue.js';
import { queueRemoveCommands, type Cmd } from '../../src/dataplane/nftables/nat.js';
import { NftSender } from '../../src/dataplane/nftables/nftsend.js';
import { commandsText } from '../../src/dataplane/nftables/nfttext.js';
import { parseSnat, type NftModel } from '../../src/dataplane/nftables/ruleset.js';
import { fullLoad, removal } from '../../src/dataplane/nftables/txn.js';
import { toolCommand } from '../../src/lab/lab.js';
import { privileged } from '../privileged.js';
import { change, d, limitsModel, load, loadLimited, queueModel, representativeModel, seedModel, svc } from './models.js';

const ns = `tsvs-k-${process.pid % 1_000_000}`;
const ns2 = `tsvs-k2-${process.pid % 1_000_000}`;

function inNs(cmd: string, args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('nftables rulesets in the kernel', privileged(['ip', 'nft']), () => {
  let dir: string;
  before(() => {
    spawnSync('ip', ['netns', 'add', ns]);
    spawnSync('ip', ['netns', 'add', ns2]);
    dir = mkdtempSync(join(tmpdir(), 'tsvs-kernel-'));
  });
  after(() => {
    spawnSync('ip', ['netns', 'del', ns]);
    spawnSync('ip', ['netns', 'del', ns2]);
    rmSync(dir, { recursive: true, force: true });
  });

  /** Both namespaces' rulesets, for comparing what nft made of the text with what netlink made. */
  const listing = (name: string) => spawnSync('ip', ['netns', 'exec', name, 'nft', 'list', 'ruleset'], { encoding: 'utf8' }).stdout;
  const viaNft = (cmds: Cmd[]) => {
    const file = join(dir, 'cmds.nft');
    writeFileSync(file, commandsText(cmds));
    const r = inNs('nft', ['-f', file]);
    assert.equal(r.code, 0, r.err);
  };

  test('the golden transactions: nft -f of their text and the netlink encoder leave the same ruleset, full load and change', () => {
    const sender = new NftSender(`/run/netns/${ns2}`);
    try {
      const changed = representativeModel();
      changed.services[0]!.dests.splice(1, 1);
      changed.services.splice(2, 1);
      changed.services.push(svc(6, '198.18.0.1', 8080, { dests: [d('198.19.0.11', 8080, { mark: 99 })] }));
      const steps: Array<[string, Cmd[]]> = [
        ['seed-rr', load(seedModel())],
        ['representative', load(representativeModel())],
        ['incremental', change(representativeModel(), changed)],
        ['queue', load(queueModel())],
        ['limits', loadLimited(limitsModel())],
        ['snat', fullLoad([], parseSnat('198.19.0.0/24,2001:db8:19::/64')).txn.commands()],
      ];
      for (const [name, cmds] of steps) {
        viaNft(cmds);
        sender.send(cmds, name);
        const a = listing(ns);
        assert.equal(listing(ns2), a, `${name}: the netlink batch and nft -f disagree`);
        if (name === 'incremental') {
          assert.match(a, /counter conns99 /);
          assert.doesNotMatch(a, /counter conns11 /);
          assert.doesNotMatch(a, /chain svc4 /);
        }
      }
      assert.match(listing(ns2), /ip6 saddr 2001:db8:19::\/64 masquerade/);
      // Nothing but tsvs's own tables.
      assert.deepEqual(inNs('nft', ['list', 'tables']).out.trim().split('\n').sort(), ['table ip tsvs', 'table ip6 tsvs']);
      // A refused batch names the command and the kernel's reason, and changes nothing.
      const before = listing(ns2);
      assert.throws(
        () =>
          sender.send(
            [
              { c: 'add-counter', f: 'ip', name: 'fresh' },
              { c: 'delete-chain', f: 'ip', name: 'nosuchchain' },
            ],
            'test',
          ),
        /nftables refused the change \(test\): delete chain ip tsvs nosuchchain: No such file or directory \(ENOENT\); nothing of it was applied/,
      );
      assert.equal(listing(ns2), before);
      sender.send(removal(), 'remove');
      assert.equal(listing(ns2).trim(), '');
    } finally {
      sender.close();
      for (const f of ['ip', 'ip6']) inNs('nft', ['delete', 'table', f, 'tsvs']);
    }
  });

  test('the first-packet path: the NFQUEUE rule goes into table tsvs over netlink, reads back, and survives changes', () => {
    const sender = new NftSender(`/run/netns/${ns}`);
    const nsPath = `/run/netns/${ns}`;
    try {
      // One wlc service per family: both families get their nfq chain.
      const model = (port: number): NftModel => ({
        services: [
          {
            id: 1,
            af: 4,
            protocol: 'tcp',
            addr: '198.18.0.1',
            port,
            scheduler: 'wlc',
            schedFlags: 0,
            persistent: 0,
            netmask: 0xffffffff,
            dests: [{ addr: '198.19.0.11', port: 80, weight: 1, lastWeight: 1, overloaded: false, mark: 5 }],
          },
          {
            id: 2,
            af: 6,
            protocol: 'udp',
            addr: '2001:2::1',
            port: 53,
            scheduler: 'lc',
            schedFlags: 0,
            persistent: 0,
            netmask: 128,
            dests: [{ addr: '2001:2:0:19::11', port: 53, weight: 1, lastWeight: 1, overloaded: false, mark: 6 }],
          },
        ],
      });
      sender.send(load(model(80)), 'load');
      // Before the rule: the chain reads back empty, and the check says so.
      assert.deepEqual(readNfqueueRules(nsPath, 'ip', 'tsvs', 'nfq'), []);
      assert.throws(
        () => checkNfqueueRule(nsPath, 'ip', 'tsvs', 'nfq', { queue: 4242, total: 1, bypass: true }),
        /ip tsvs nfq read back over netlink holds no NFQUEUE rule, not queue num 4242 bypass/,
      );
      installNfqueueRule(nsPath, 'ip', 'tsvs', 'nfq', { queue: 4242, total: 1, bypass: true });
      installNfqueueRule(nsPath, 'ip6', 'tsvs', 'nfq', { queue: 4243, total: 1, bypass: false });
      // What the kernel holds, read back over netlink (nft prints xt targets only with iptables's libxt).
      assert.deepEqual(readNfqueueRules(nsPath, 'ip', 'tsvs', 'nfq'), [{ queue: 4242, total: 1, bypass: true }]);
      assert.deepEqual(readNfqueueRules(nsPath, 'ip6', 'tsvs', 'nfq'), [{ queue: 4243, total: 1, bypass: false }]);
      checkNfqueueRule(nsPath, 'ip', 'tsvs', 'nfq', { queue: 4242, total: 1, bypass: true });
      assert.throws(
        () => checkNfqueueRule(nsPath, 'ip6', 'tsvs', 'nfq', { queue: 4243, total: 1, bypass: true }),
        /ip6 tsvs nfq read back over netlink holds queue num 4243, not queue num 4243 bypass/,
      );
      // Nothing was added to any other table (no iptables mangle).
      assert.deepEqual(inNs('nft', ['list', 'tables']).out.trim().split('\n').sort(), ['table ip tsvs', 'table ip6 tsvs']);
      sender.send(change(model(80), model(8080)), 'change');
      assert.deepEqual(
        readNfqueueRules(nsPath, 'ip', 'tsvs', 'nfq'),
        [{ queue: 4242, total: 1, bypass: true }],
        'an incremental change keeps the NFQUEUE rule',
      );
      assert.match(inNs('nft', ['list', 'table', 'ip', 'tsvs']).out, /198\.18\.0\.1 \. tcp \. 8080 : jump nfq/);
      // A chain that does not exist is refused with the kernel's reason, on the way in and out.
      assert.throws(
        () => installNfqueueRule(nsPath, 'ip', 'tsvs', 'nope', { queue: 1, total: 1, bypass: true }),
        /No such file or directory/,
      );
      assert.throws(() => readNfqueueRules(nsPath, 'ip', 'tsvs', 'nope'), /list the rules of ip tsvs nope.*No such file or directory/);
      // The last queue-scheduled service takes the queue objects with it, rule and all.
      sender.send([...change(model(8080), { services: [] }), ...queueRemoveCommands('ip'), ...queueRemoveCommands('ip6')], 'leave');
      assert.doesNotMatch(listing(ns), /nfq|firstpkt|qmark|qservices/);
    } finally {
      sender.close();
      for (const f of ['ip', 'ip6']) inNs('nft', ['delete', 'table', f, 'tsvs']);
    }
  });

  // What an operator sees: Debian's nft prints an xtables target only with the iptables
  // package's libxt extensions (docs/nftables.md); without them the rule is an empty line.
  test('with iptables installed, `nft list` shows the NFQUEUE rule tsvs installed', privileged(['ip', 'nft', 'iptables']), () => {
    viaNft(
      load({
        services: [
          {
            id: 1,
            af: 4,
            protocol: 'tcp',
            addr: '198.18.0.1',
            port: 80,
            scheduler: 'wlc',
            schedFlags: 0,
            persistent: 0,
            netmask: 0xffffffff,
            dests: [{ addr: '198.19.0.11', port: 80, weight: 1, lastWeight: 1, overloaded: false, mark: 5 }],
          },
        ],
      }),
    );
    try {
      installNfqueueRule(`/run/netns/${ns}`, 'ip', 'tsvs', 'nfq', { queue: 4242, total: 1, bypass: true });
      assert.match(inNs('nft', ['list', 'chain', 'ip', 'tsvs', 'nfq']).out, /queue num 4242 bypass/);
    } finally {
      for (const f of ['ip', 'ip6']) inNs('nft', ['delete', 'table', f, 'tsvs']);
    }
  });

  test('a second reader of the same queue is refused with a clear EBUSY message', async () => {
    const mk = () => new NfQueueReader({ queue: 4243, nsPath: `/run/netns/${ns}`, timeoutMs: 50, decide: () => [] });
    const first = mk();
    await first.start();
    try {
      await assert.rejects(mk().start(), /NFQUEUE queue 4243 is already bound by another reader \(EBUSY\/EPERM.*TSVS_NFT_QUEUE/);
    } finally {
      await first.stop();
    }
    // Stopping unbinds: the queue can be taken again.
    const again = mk();
    await again.start();
    await again.stop();
  });

  test('tsvsd --dataplane nftables refuses to start with forwarding off, and says how to fix it', () => {
    inNs('sysctl', ['-qw', 'net.ipv4.ip_forward=0']);
    const [cmd, ...pre] = toolCommand('tsvsd');
    const r = spawnSync('ip', ['netns', 'exec', ns, cmd!, ...pre, '--dataplane', 'nftables', '--socket', join(dir, 's.sock')], {
      encoding: 'utf8',
      timeout: 30_000,
    });
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
