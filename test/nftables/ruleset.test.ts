/**
 * The nftables compiler, without root: golden files of the generated transactions, as nft
 * script text, for representative tables (fixtures/*.nft, produced by our own compiler and
 * reviewed by hand; UPDATE_GOLDEN=1 rewrites them; test/nftables/kernel.test.ts loads them
 * into the kernel with nft and compares with what the netlink encoder sends), what one
 * change costs at 10,000 services, and properties that tie each kernel-side scheduler to
 * the core's own scheduler code.
 */
import { strict as assert } from 'node:assert';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { getScheduler } from '../../src/schedulers/index.js';
import { MH_TAB_SIZE, mhTable } from '../../src/schedulers/mh.js';
import { baseCommands, compileService, queueRemoveCommands, type Cmd, type Fragment, type Rule } from '../../src/dataplane/nftables/nat.js';
import { encodeBatch } from '../../src/dataplane/nftables/nftnl.js';
import { commandsText, itemText } from '../../src/dataplane/nftables/nfttext.js';
import {
  MAX_SEQUENCE,
  mhTargets,
  NFQ_CHAIN,
  NO_DEST_MARK,
  parseSnat,
  rrSequence,
  shTargets,
  type NftModel,
} from '../../src/dataplane/nftables/ruleset.js';
import { fullLoad } from '../../src/dataplane/nftables/txn.js';
import { change, d, limitsModel, load, loadLimited, queueModel, representativeModel, seedModel, svc } from './models.js';

const FIXTURES = join(import.meta.dirname, 'fixtures');

/** A service chain's rules as nft text. */
const rulesText = (f: Fragment) => f.rules.map((r: Rule) => r.map(itemText).join(' '));

function golden(name: string, cmds: Cmd[]): void {
  const file = join(FIXTURES, `${name}.nft`);
  const text = commandsText(cmds);
  if (process.env.UPDATE_GOLDEN === '1') writeFileSync(file, text);
  assert.equal(text, readFileSync(file, 'utf8'), `${name}: generated ruleset differs from ${file} (UPDATE_GOLDEN=1 to accept)`);
}

describe('nftables ruleset: golden', () => {
  test('the seed table (rr over two masq servers)', () => {
    golden('seed-rr', load(seedModel()));
  });

  test('wrr+persistence, sh-fallback UDP, mh port-zero, IPv6 dh', () => {
    golden('representative', load(representativeModel()));
  });

  test('connection limits: ct count per service, per client (dynamic set), director-wide chain', () => {
    const cmds = loadLimited(limitsModel());
    golden('limits', cmds);
    const text = commandsText(cmds);
    assert.match(text, /add rule ip tsvs climit ct count over 10000 counter name "limg" drop/);
    assert.match(text, /add rule ip tsvs svc11 ct count over 500 counter name "lims11" drop/);
    assert.match(text, /add rule ip tsvs svc11 add @clients11 \{ ip saddr ct count over 20 \} counter name "limc11" drop/);
    assert.match(text, /add set ip6 tsvs clients13 \{ type ipv6_addr; size 65535; flags dynamic; \}/);
    // The limits come before the scheduler's rule.
    const svc11 = text.split('\n').filter((l) => l.startsWith('add rule ip tsvs svc11 '));
    assert.match(svc11[0]!, /jump climit/);
    assert.match(svc11.at(-1)!, /reject/);
    // No limit, no rules: the other goldens do not change.
    assert.doesNotMatch(commandsText(load(representativeModel())), /ct count|climit/);
  });

  test('an incremental change touches only the services that changed, keeps counters and sets, and deletes what left', () => {
    const before = representativeModel();
    const after = representativeModel();
    after.services[0]!.dests.splice(1, 1); // remove 198.19.0.12:443
    after.services.splice(2, 1); // delete the mh service
    after.services.push(svc(6, '198.18.0.1', 8080, { dests: [d('198.19.0.11', 8080, { mark: 99 })] }));
    const cmds = change(before, after);
    golden('incremental', cmds);
    const lines = commandsText(cmds).trim().split('\n');
    // The untouched services (sh on :53, dh over IPv6) do not appear at all.
    assert.ok(!lines.some((l) => / svc3\b| svc5\b|conns14|conns17/.test(l)), lines.join('\n'));
    // Surviving counters are not re-added (their values stay), new ones are.
    assert.ok(!lines.some((l) => l.startsWith('add counter') && l.includes('conns12')));
    assert.ok(lines.includes('add counter ip tsvs conns99'));
    // The removed server's objects go only after its elements are out of the maps, and the
    // deleted service's chain after its services element.
    const idx = (re: RegExp) => lines.findIndex((l) => re.test(l));
    assert.ok(idx(/^delete counter ip tsvs conns11$/) > idx(/^delete element ip tsvs conns_counters /));
    assert.ok(idx(/^delete chain ip tsvs svc4$/) > idx(/^delete element ip tsvs services0 /));
    assert.ok(idx(/^delete set ip tsvs persist11_/) > idx(/^flush chain ip tsvs svc2$/));
    // No table is deleted in an incremental change.
    assert.ok(!lines.some((l) => l.startsWith('delete table')));
  });

  test('one change sends a small transaction whose size does not depend on the table: the same bytes at 100 and at 10,000 services', () => {
    const table = (n: number): NftModel => {
      const model: NftModel = { services: [] };
      let mark = 1;
      for (let i = 0; i < n; i++) {
        const dests = [0, 1, 2, 3].map((k) => d(`198.19.${k}.${(i % 250) + 1}`, 80, { mark: mark++ }));
        model.services.push(svc(i + 1, `198.18.${i >> 8}.${i & 255}`, 80, { scheduler: i % 2 ? 'wlc' : 'rr', dests }));
      }
      return model;
    };
    const measure = (n: number) => {
      const model = table(n);
      const added: NftModel = { services: model.services.map((s) => ({ ...s, dests: [...s.dests] })) };
      added.services[42]!.dests.unshift(d('198.19.9.9', 80, { mark: 999_999 }));
      const add = change(model, added);
      const del = change(model, { services: model.services.filter((_, i) => i !== 77) });
      return { add, addBatch: encodeBatch(add, 1), delBatch: encodeBatch(del, 1) };
    };
    const small = measure(100);
    const big = measure(10_000);
    assert.equal(big.addBatch.bytes.length, small.addBatch.bytes.length);
    assert.equal(big.delBatch.bytes.length, small.delBatch.bytes.length);
    assert.ok(big.addBatch.messages <= 20 && big.delBatch.messages <= 30, `${big.addBatch.messages} / ${big.delBatch.messages} messages`);
    // Only the one service and the new server's objects.
    const text = commandsText(big.add);
    assert.deepEqual([...new Set(text.match(/svc\d+/g))], ['svc43'], text);
    assert.ok(big.addBatch.bytes.length < 4096, `${big.addBatch.bytes.length} bytes:\n${text}`);
  });
});

describe('nftables ruleset: the first-packet path (NFQUEUE)', () => {
  test('golden: first-packet and mark-copy chains, nfq chain, mark dispatch with numgen fallback', () => {
    const m = queueModel();
    const { txn, queueFams } = fullLoad(m.services.map(compileService), []);
    assert.deepEqual([...queueFams].sort(), ['ip', 'ip6']);
    golden('queue', txn.commands());
  });

  test('the service chain: NO_DEST rejects, the mark picks the server, rr over the usable ones is the fallback', () => {
    const f = compileService(queueModel().services[0]!);
    assert.deepEqual(rulesText(f), [
      `ct mark ${NO_DEST_MARK} reject with icmp port-unreachable`,
      'ct mark != 0 goto nat',
      'ct mark set 31 goto nat', // fallback: only the usable server
      'reject with icmp port-unreachable',
    ]);
    assert.equal(f.sets.length, 0, 'no persistence sets for a queue-scheduled service');
    // Every server may be picked by the core (weight 0 too: a template may still send its client there).
    assert.deepEqual(
      f.elems.filter((e) => e.set === 'qmarks').map((e) => e.elem.key),
      [30, 31],
    );
    assert.ok(f.elems.some((e) => e.set === 'qservices' && JSON.stringify(e.elem.data) === JSON.stringify({ jump: NFQ_CHAIN })));
    // The kernel-scheduled service does not touch the queue.
    const k = compileService(queueModel().services[1]!);
    assert.ok(!k.queued && !k.elems.some((e) => e.set.startsWith('q')));
  });

  test('a table without queue-scheduled services has no queue chains (no per-packet cost)', () => {
    const { txn, queueFams } = fullLoad(seedModel().services.map(compileService), []);
    assert.equal(queueFams.size, 0);
    assert.ok(!commandsText(txn.commands()).includes('firstpkt'));
  });

  test('the queue objects leave with the last queue-scheduled service, nfq included', () => {
    const text = commandsText(queueRemoveCommands('ip'));
    for (const chain of ['firstpkt', 'qmark', NFQ_CHAIN])
      assert.match(text, new RegExp(`flush chain ip tsvs ${chain}\ndelete chain ip tsvs ${chain}`));
    assert.match(text, /delete set ip tsvs qservices\n/);
  });
});

describe('nftables ruleset: kernel scheduler semantics', () => {
  test('rr walks the list from its head (the newest server first)', () => {
    const m = seedModel();
    assert.deepEqual(
      rrSequence(m.services[0]!).map((x) => x.addr),
      ['198.19.0.12', '198.19.0.11'],
    );
  });

  test('wrr: the kernel sequence for A=4, B=3, C=2 (added A, B, C)', () => {
    const s = svc(1, '10.0.0.1', 80, {
      scheduler: 'wrr',
      dests: [d('C', 80, { weight: 2 }), d('B', 80, { weight: 3 }), d('A', 80, { weight: 4 })],
    });
    assert.equal(
      rrSequence(s)
        .map((x) => x.addr)
        .join(' '),
      'A B A C B A C B A',
    );
    const s2 = svc(1, '10.0.0.1', 80, { scheduler: 'wrr', dests: [d('B', 80, { weight: 4 }), d('A', 80, { weight: 2 })] });
    assert.equal(
      rrSequence(s2)
        .map((x) => x.addr)
        .join(' '),
      'B B A',
    );
  });

  test('wrr continues from the core scheduler position (servers added one by one: cw is left at 1)', () => {
    const s = svc(1, '10.0.0.1', 80, {
      scheduler: 'wrr',
      wrr: { cl: -1, cw: 1, mw: 4, di: 1 },
      dests: [d('C', 80, { weight: 2 }), d('B', 80, { weight: 3 }), d('A', 80, { weight: 4 })],
    });
    assert.equal(
      rrSequence(s)
        .map((x) => x.addr)
        .join(' '),
      'C B A A B A C B A',
    );
  });

  test('weight 0 and overloaded servers get no new connections; none usable means reject', () => {
    const s = svc(1, '10.0.0.1', 80, {
      scheduler: 'rr',
      dests: [d('10.1.0.3', 80, { weight: 0 }), d('10.1.0.2', 80, { overloaded: true }), d('10.1.0.1', 80)],
    });
    assert.deepEqual(
      rrSequence(s).map((x) => x.addr),
      ['10.1.0.1'],
    );
    s.dests[2]!.weight = 0;
    assert.deepEqual(rulesText(compileService(s)), ['reject with icmp port-unreachable']);
  });

  test('wrr with a huge cycle is scaled into at most MAX_SEQUENCE slots, keeping the ratio', () => {
    const s = svc(1, '10.0.0.1', 80, { scheduler: 'wrr', dests: [d('B', 80, { weight: 65535 }), d('A', 80, { weight: 10007 })] });
    const seq = rrSequence(s);
    assert.ok(seq.length <= MAX_SEQUENCE + 2, `length ${seq.length}`);
    const b = seq.filter((x) => x.addr === 'B').length;
    assert.ok(Math.abs(b / seq.length - 65535 / 75542) < 0.002);
  });

  // The IPv4 sh rule keys on the client's last octet; its target must be exactly what the
  // core's sh scheduler (the kernel's algorithm) picks for that client, fallback included.
  for (const flags of [0, 1]) {
    test(`sh (flags ${flags}): every IPv4 client goes where the kernel's sh sends it`, () => {
      const dests = [
        d('10.1.0.4', 80),
        d('10.1.0.3', 80, { weight: 0 }),
        d('10.1.0.2', 80, { weight: 3, overloaded: true }),
        d('10.1.0.1', 80, { weight: 2 }),
      ];
      const s = svc(1, '10.0.0.1', 80, { scheduler: 'sh', schedFlags: flags, dests });
      const fake = dests.map((x) => ({ ...x, af: 4 as const, activeconns: 0, inactconns: 0, available: true, src: x }));
      const core = getScheduler('sh')!.create({ af: 4, schedFlags: flags, dests: fake }, { randomU32: () => 0 });
      const item = compileService(s).rules[0]![0]!;
      assert.ok(item.i === 'setmark' && item.value.v === 'map' && item.value.key.k === 'octet', JSON.stringify(item));
      const table = new Map(item.value.elems.map(([k, m]) => [k as number, m]));
      for (let o = 0; o < 256; o++) {
        const want = core.schedule({ caddr: `192.0.2.${o}`, cport: 1234, vaddr: '10.0.0.1', vport: 80, now: 0 });
        assert.equal(table.get(o) ?? null, want ? want.src.mark : null, `client .${o}`);
      }
    });
  }

  test('sh with sh-port hashes into the same 256 buckets the core builds', () => {
    const dests = [d('10.1.0.2', 80), d('10.1.0.1', 80, { weight: 2 })];
    const t = shTargets(svc(1, '10.0.0.1', 80, { scheduler: 'sh', schedFlags: 2, dests }));
    assert.equal(t.length, 256);
    assert.equal(t.filter((x) => x === dests[1]).length, 170);
  });

  test('dh sends an address-based service to the bucket of its VIP', () => {
    const dests = [d('10.1.0.3', 80), d('10.1.0.2', 80), d('10.1.0.1', 80)];
    const s = svc(1, '10.0.0.7', 80, { scheduler: 'dh', dests });
    const fake = dests.map((x) => ({ ...x, af: 4 as const, activeconns: 0, inactconns: 0, available: true, src: x }));
    const want = getScheduler('dh')!
      .create({ af: 4, schedFlags: 0, dests: fake }, { randomU32: () => 0 })
      .schedule({ caddr: '1.2.3.4', cport: 1, vaddr: '10.0.0.7', vport: 80, now: 0 })!;
    assert.equal(rulesText(compileService(s))[0], `ct mark set ${want.src.mark} goto nat`);
  });

  test('mh uses the core Maglev table; quiesced slots refuse, or probe with mh-fallback', () => {
    const dests = [d('10.1.0.3', 80, { weight: 0, lastWeight: 1 }), d('10.1.0.2', 80), d('10.1.0.1', 80)];
    const s = svc(1, '10.0.0.1', 80, { scheduler: 'mh', dests });
    const fake = dests.map((x) => ({ ...x, af: 4 as const, activeconns: 0, inactconns: 0, available: true, src: x }));
    const table = mhTable(4, fake)!;
    const t = mhTargets(s);
    assert.equal(t.length, MH_TAB_SIZE);
    for (let i = 0; i < MH_TAB_SIZE; i++) assert.equal(t[i], table[i]!.src.weight ? table[i]!.src : null);
    // Quiescing keeps the table (built from lastWeight): a third of the slots refuse.
    const refused = t.filter((x) => x === null).length;
    assert.ok(refused > 1000 && refused < 1700, `${refused}`);
    const tf = mhTargets({ ...s, schedFlags: 1 });
    assert.ok(tf.every((x) => x !== null && x.weight > 0));
  });
});

describe('nftables ruleset: outbound SNAT (TSVS_NFT_SNAT)', () => {
  test('a masquerade rule per network, in a nat postrouting chain of the right family', () => {
    const snat = parseSnat('198.19.0.0/24, 2001:db8:19::/64');
    const ip = commandsText(baseCommands('ip', snat));
    assert.match(
      ip,
      /add chain ip tsvs postrouting \{ type nat hook postrouting priority 100; policy accept; \}\nadd rule ip tsvs postrouting ip saddr 198\.19\.0\.0\/24 masquerade\n/,
    );
    assert.ok(!ip.includes('2001:db8'));
    assert.match(commandsText(baseCommands('ip6', snat)), /add rule ip6 tsvs postrouting ip6 saddr 2001:db8:19::\/64 masquerade/);
    assert.ok(!commandsText(baseCommands('ip', [])).includes('postrouting'));
  });

  test('a bad network is refused with its text', () => {
    assert.throws(() => parseSnat('198.19.0.0/33'), /"198\.19\.0\.0\/33" is not an address or network/);
    assert.throws(() => parseSnat('eth0'), /"eth0"/);
    assert.deepEqual(parseSnat(''), []);
  });
});
