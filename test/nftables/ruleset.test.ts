/**
 * The nftables compiler, without root: golden files of the generated transactions for
 * representative tables (fixtures/*.json; UPDATE_GOLDEN=1 rewrites them), and properties
 * that tie each kernel-side scheduler to the core's own scheduler code.
 */
import { strict as assert } from 'node:assert';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { getScheduler } from '../../src/schedulers/index.js';
import { MH_TAB_SIZE, mhTable } from '../../src/schedulers/mh.js';
import {
  compile,
  MAX_SEQUENCE,
  mhTargets,
  NFQ_CHAIN,
  NO_DEST_MARK,
  nfqueueRuleNeeded,
  parseSnat,
  rrSequence,
  shTargets,
  transaction,
  type NftDest,
  type NftModel,
  type NftService,
} from '../../src/dataplane/nftables/ruleset.js';

const FIXTURES = join(import.meta.dirname, 'fixtures');

let nextMark = 1;
function d(addr: string, port: number, extra: Partial<NftDest> = {}): NftDest {
  const weight = extra.weight ?? 1;
  return { addr, port, weight, lastWeight: weight || 1, overloaded: false, mark: nextMark++, ...extra };
}
function svc(id: number, addr: string, port: number, extra: Partial<NftService> = {}): NftService {
  const af = addr.includes(':') ? 6 : 4;
  return { id, af, protocol: 'tcp', addr, port, scheduler: 'rr', schedFlags: 0, persistent: 0, netmask: af === 4 ? 0xffffffff : 128, dests: [], ...extra };
}

/** One nft command per line, so a golden diff points at the command that changed. */
function render(doc: { nftables: unknown[] }): string {
  return `{"nftables": [\n${doc.nftables.map((c) => `  ${JSON.stringify(c)}`).join(',\n')}\n]}\n`;
}

function golden(name: string, doc: { nftables: unknown[] }): void {
  const file = join(FIXTURES, `${name}.json`);
  const text = render(doc);
  if (process.env.UPDATE_GOLDEN === '1') writeFileSync(file, text);
  assert.equal(text, readFileSync(file, 'utf8'), `${name}: generated ruleset differs from ${file} (UPDATE_GOLDEN=1 to accept)`);
}

// Kernel list order: newest first. The seed adds .11 then .12.
function seedModel(): NftModel {
  nextMark = 1;
  return { services: [svc(1, '198.18.0.1', 80, { dests: [d('198.19.0.12', 80, { mark: 2 }), d('198.19.0.11', 80, { mark: 1 })] })] };
}

function representativeModel(): NftModel {
  nextMark = 10;
  return {
    services: [
      // wrr with persistence per /24 and a quiesced server.
      svc(2, '198.18.0.1', 443, {
        scheduler: 'wrr',
        persistent: 300,
        netmask: 0xffffff00,
        dests: [d('198.19.0.13', 443, { weight: 0, lastWeight: 2 }), d('198.19.0.12', 443, { weight: 3 }), d('198.19.0.11', 443, { weight: 2 })],
      }),
      // UDP sh with sh-fallback: the weight-0 server's buckets go to the probe's choice.
      svc(3, '198.18.0.1', 53, { protocol: 'udp', scheduler: 'sh', schedFlags: 1, dests: [d('198.19.0.12', 53, { weight: 0, lastWeight: 1 }), d('198.19.0.11', 53)] }),
      // mh with mh-port on a port-zero persistent service (all ports, real-server port 0).
      svc(4, '198.18.0.2', 0, { scheduler: 'mh', schedFlags: 2, persistent: 60, dests: [d('198.19.0.12', 0), d('198.19.0.11', 0, { overloaded: true })] }),
      // IPv6 dh with persistence per /64.
      svc(5, '2001:db8::1', 80, { scheduler: 'dh', persistent: 30, netmask: 64, dests: [d('2001:db8:1::12', 80), d('2001:db8:1::11', 80)] }),
    ],
  };
}

describe('nftables ruleset: golden', () => {
  test('the seed table (rr over two masq servers)', () => {
    golden('seed-rr', transaction(null, compile(seedModel())));
  });

  test('wrr+persistence, sh-fallback UDP, mh port-zero, IPv6 dh', () => {
    golden('representative', transaction(null, compile(representativeModel())));
  });

  test('an incremental change keeps counters and sets, and deletes what left', () => {
    const before = representativeModel();
    const after = representativeModel();
    after.services[0]!.dests.splice(1, 1); // remove 198.19.0.12:443
    after.services.splice(2, 1); // delete the mh service
    after.services.push(svc(6, '198.18.0.1', 8080, { dests: [d('198.19.0.11', 8080, { mark: 99 })] }));
    const doc = transaction(compile(before), compile(after));
    golden('incremental', doc);
    const lines = doc.nftables.map((c) => JSON.stringify(c));
    // Surviving counters are not re-added (their values stay), new ones are.
    assert.ok(!lines.some((l) => l.includes('"add":{"counter"') && l.includes('"conns12"')));
    assert.ok(lines.some((l) => l.includes('"add":{"counter"') && l.includes('"conns99"')));
    // The removed server's chain goes only after every chain that could jump there was flushed.
    const del = lines.findIndex((l) => l.includes('"delete":{"chain"') && l.includes('"rs11"'));
    const lastFlush = lines.map((l) => l.includes('"flush":{"chain"') && l.includes('"family":"ip"')).lastIndexOf(true);
    assert.ok(del > lastFlush && del > 0);
    // No table is deleted in an incremental change.
    assert.ok(!lines.some((l) => l.includes('"delete":{"table"')));
  });
});

// The first-packet path: connection-count schedulers decided by the core through NFQUEUE.
function queueModel(): NftModel {
  nextMark = 30;
  return {
    services: [
      // wlc with persistence: the core keeps the templates, so no persistence sets.
      svc(7, '198.18.0.1', 80, { scheduler: 'wlc', persistent: 300, dests: [d('198.19.0.12', 80, { weight: 0, lastWeight: 2 }), d('198.19.0.11', 80, { weight: 2 })] }),
      // A kernel scheduler next to it is untouched by the queue.
      svc(8, '198.18.0.1', 81, { dests: [d('198.19.0.11', 81)] }),
      // Port-zero UDP sed: its own queue rule (the vmap is per port).
      svc(9, '198.18.0.2', 0, { protocol: 'udp', scheduler: 'sed', persistent: 60, dests: [d('198.19.0.12', 0), d('198.19.0.11', 0)] }),
      // IPv6 lc.
      svc(10, '2001:db8::1', 80, { scheduler: 'lc', dests: [d('2001:db8:1::11', 80)] }),
    ],
  };
}

describe('nftables ruleset: the first-packet path (NFQUEUE)', () => {
  test('golden: queue and mark-copy chains, nfq chain, mark dispatch with numgen fallback', () => {
    golden('queue', transaction(null, compile(queueModel())));
  });

  test('the service chain: NO_DEST rejects, the mark picks the server, rr over the usable ones is the fallback', () => {
    const r = compile(queueModel());
    const chain = r.ip.chains.find((c) => c.name === 'svc7')!;
    const text = chain.rules.map((x) => JSON.stringify(x));
    assert.equal(text.length, 4);
    assert.match(text[0]!, new RegExp(`"right":${NO_DEST_MARK}.*"reject"`));
    // Every server (weight 0 too: a persistence template may still send its client there).
    assert.deepEqual((chain.rules[1]![0] as { vmap: { data: { set: unknown[] } } }).vmap.data.set, [[30, { goto: { target: 'rs30' } }], [31, { goto: { target: 'rs31' } }]]);
    assert.deepEqual(chain.rules[2], [{ goto: { target: 'rs31' } }], 'fallback: only the usable server');
    assert.ok(!r.ip.sets.some((s) => s.name.startsWith('persist')), 'no persistence sets for a queue-scheduled service');
    assert.deepEqual(r.ip.sets.find((s) => s.name === 'qmarks')!.elems, [NO_DEST_MARK, 30, 31, 33, 34]);
    // The kernel-scheduled service does not touch the queue.
    assert.ok(!JSON.stringify(r.ip.maps.find((m) => m.name === 'qservices')!.elems).includes('81'));
  });

  test('a table without queue-scheduled services has no queue chains (no per-packet cost)', () => {
    const r = compile(seedModel());
    assert.ok(!r.ip.chains.some((c) => ['queue', 'qmark', NFQ_CHAIN].includes(c.name)));
    assert.deepEqual(nfqueueRuleNeeded(null, r), []);
  });

  test('incremental changes never flush the nfq chain (its NFQUEUE rule is not the compiler\'s); leaving the queue removes it all', () => {
    const a = compile(queueModel());
    const bModel = queueModel();
    bModel.services[0]!.dests.pop();
    const b = compile(bModel);
    const doc = transaction(a, b);
    const lines = doc.nftables.map((c) => JSON.stringify(c));
    assert.ok(!lines.some((l) => l.includes(`"name":"${NFQ_CHAIN}"`) || l.includes(`"chain":"${NFQ_CHAIN}"`)), 'nfq untouched');
    assert.deepEqual(nfqueueRuleNeeded(a, b), []);
    assert.deepEqual(nfqueueRuleNeeded(null, b), ['ip', 'ip6'], 'a full replace needs the rule again');
    const c = compile(seedModel());
    const out = transaction(b, c).nftables.map((x) => JSON.stringify(x));
    const flush = out.findIndex((l) => l.includes('"flush":{"chain"') && l.includes(`"name":"${NFQ_CHAIN}"`));
    const del = out.findIndex((l) => l.includes('"delete":{"chain"') && l.includes(`"name":"${NFQ_CHAIN}"`));
    assert.ok(flush >= 0 && del > flush, 'flushed, then deleted');
    assert.ok(out.some((l) => l.includes('"delete":{"map"') && l.includes('"qservices"')));
    assert.ok(out.some((l) => l.includes('"delete":{"set"') && l.includes('"qmarks"')));
    golden('queue-leave', transaction(b, c));
  });
});

describe('nftables ruleset: kernel scheduler semantics', () => {
  test('rr walks the list from its head (the newest server first)', () => {
    const m = seedModel();
    assert.deepEqual(rrSequence(m.services[0]!).map((x) => x.addr), ['198.19.0.12', '198.19.0.11']);
  });

  test('wrr: the kernel sequence for A=4, B=3, C=2 (added A, B, C)', () => {
    const s = svc(1, '10.0.0.1', 80, { scheduler: 'wrr', dests: [d('C', 80, { weight: 2 }), d('B', 80, { weight: 3 }), d('A', 80, { weight: 4 })] });
    assert.equal(rrSequence(s).map((x) => x.addr).join(' '), 'A B A C B A C B A');
    const s2 = svc(1, '10.0.0.1', 80, { scheduler: 'wrr', dests: [d('B', 80, { weight: 4 }), d('A', 80, { weight: 2 })] });
    assert.equal(rrSequence(s2).map((x) => x.addr).join(' '), 'B B A');
  });

  test('wrr continues from the core scheduler position (servers added one by one: cw is left at 1)', () => {
    const s = svc(1, '10.0.0.1', 80, { scheduler: 'wrr', wrr: { cl: -1, cw: 1, mw: 4, di: 1 }, dests: [d('C', 80, { weight: 2 }), d('B', 80, { weight: 3 }), d('A', 80, { weight: 4 })] });
    assert.equal(rrSequence(s).map((x) => x.addr).join(' '), 'C B A A B A C B A');
  });

  test('weight 0 and overloaded servers get no new connections; none usable means reject', () => {
    const s = svc(1, '10.0.0.1', 80, { scheduler: 'rr', dests: [d('10.1.0.3', 80, { weight: 0 }), d('10.1.0.2', 80, { overloaded: true }), d('10.1.0.1', 80)] });
    assert.deepEqual(rrSequence(s).map((x) => x.addr), ['10.1.0.1']);
    s.dests[2]!.weight = 0;
    const chain = compile({ services: [s] }).ip.chains.find((c) => c.name === 'svc1')!;
    assert.equal(chain.rules.length, 1);
    assert.deepEqual(chain.rules[0], [{ reject: { type: 'icmp', expr: 'port-unreachable' } }]);
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
      const dests = [d('10.1.0.4', 80), d('10.1.0.3', 80, { weight: 0 }), d('10.1.0.2', 80, { weight: 3, overloaded: true }), d('10.1.0.1', 80, { weight: 2 })];
      const s = svc(1, '10.0.0.1', 80, { scheduler: 'sh', schedFlags: flags, dests });
      const fake = dests.map((x) => ({ ...x, af: 4 as const, activeconns: 0, inactconns: 0, available: true, src: x }));
      const core = getScheduler('sh')!.create({ af: 4, schedFlags: flags, dests: fake }, { randomU32: () => 0 });
      const rule = compile({ services: [s] }).ip.chains.find((c) => c.name === 'svc1')!.rules[0]![0] as {
        vmap: { data: { set: [string, { goto: { target: string } }][] } };
      };
      const table = new Map(rule.vmap.data.set.map(([k, v]) => [k, v.goto.target]));
      for (let o = 0; o < 256; o++) {
        const want = core.schedule({ caddr: `192.0.2.${o}`, cport: 1234, vaddr: '10.0.0.1', vport: 80, now: 0 });
        assert.equal(table.get(`0.0.0.${o}`) ?? null, want ? `rs${want.src.mark}` : null, `client .${o}`);
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
    const want = getScheduler('dh')!.create({ af: 4, schedFlags: 0, dests: fake }, { randomU32: () => 0 }).schedule({ caddr: '1.2.3.4', cport: 1, vaddr: '10.0.0.7', vport: 80, now: 0 })!;
    const chain = compile({ services: [s] }).ip.chains.find((c) => c.name === 'svc1')!;
    assert.deepEqual(chain.rules[0], [{ goto: { target: `rs${want.src.mark}` } }]);
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
    const r = compile({ services: [], snat: parseSnat('198.19.0.0/24, 2001:db8:19::/64') });
    const post = r.ip.chains.find((c) => c.name === 'postrouting')!;
    assert.deepEqual(post.base, { type: 'nat', hook: 'postrouting', prio: 100 });
    assert.deepEqual(post.rules, [[{ match: { op: '==', left: { payload: { protocol: 'ip', field: 'saddr' } }, right: { prefix: { addr: '198.19.0.0', len: 24 } } } }, { masquerade: null }]]);
    assert.equal(r.ip6.chains.find((c) => c.name === 'postrouting')!.rules.length, 1);
    assert.equal(compile({ services: [] }).ip.chains.find((c) => c.name === 'postrouting'), undefined);
  });

  test('a bad network is refused with its text', () => {
    assert.throws(() => parseSnat('198.19.0.0/33'), /"198\.19\.0\.0\/33" is not an address or network/);
    assert.throws(() => parseSnat('eth0'), /"eth0"/);
    assert.deepEqual(parseSnat(''), []);
  });
});
