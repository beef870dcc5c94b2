/**
 * mh (Maglev) and the hsiphash it is built on.
 *
 * hsiphash is checked against the kernel's own self-test vectors (lib/siphash_kunit.c,
 * 64-bit branch: SipHash-1-3 truncated to 32 bits), through a BigInt reference written
 * straight from the SipHash description; the fast int32-pair version used for lookups
 * must agree with it. The lookup table is then compared slot for slot with a separate
 * reference Maglev build (the paper's `offset + j * skip` formulation) using the
 * reference hash, and the consistent-hashing properties are checked on top.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { addrFold, parseIPv4, addrWords } from '../../src/core/addr.js';
import { SCHED_FLAG_1, SCHED_FLAG_2 } from '../../src/core/types.js';
import type { Family } from '../../src/core/types.js';
import { hsiphash32, hsiphashKey } from '../../src/schedulers/common.js';
import { mh, mhTable, MH_TAB_SIZE } from '../../src/schedulers/mh.js';
import { FakeService, ip4, seededRandom } from './fake.js';
import type { FakeDest } from './fake.js';

// ---- reference hsiphash (64-bit kernels), BigInt, any length --------------------------
const MASK64 = (1n << 64n) - 1n;
const rotl = (x: bigint, b: bigint) => ((x << b) | (x >> (64n - b))) & MASK64;

function refHsiphash(bytes: Uint8Array, k0: bigint, k1: bigint): number {
  let v0 = 0x736f6d6570736575n ^ k0;
  let v1 = 0x646f72616e646f6dn ^ k1;
  let v2 = 0x6c7967656e657261n ^ k0;
  let v3 = 0x7465646279746573n ^ k1;
  const round = () => {
    v0 = (v0 + v1) & MASK64;
    v1 = rotl(v1, 13n);
    v1 ^= v0;
    v0 = rotl(v0, 32n);
    v2 = (v2 + v3) & MASK64;
    v3 = rotl(v3, 16n);
    v3 ^= v2;
    v0 = (v0 + v3) & MASK64;
    v3 = rotl(v3, 21n);
    v3 ^= v0;
    v2 = (v2 + v1) & MASK64;
    v1 = rotl(v1, 17n);
    v1 ^= v2;
    v2 = rotl(v2, 32n);
  };
  const len = bytes.length;
  const end = len - (len % 8);
  for (let i = 0; i < end; i += 8) {
    let m = 0n;
    for (let j = 7; j >= 0; j--) m = (m << 8n) | BigInt(bytes[i + j]!);
    v3 ^= m;
    round(); // SipHash-1-3: one compression round
    v0 ^= m;
  }
  let b = BigInt(len) << 56n;
  for (let j = 0; j < len % 8; j++) b |= BigInt(bytes[end + j]!) << BigInt(8 * j);
  v3 ^= b;
  round();
  v0 ^= b;
  v2 ^= 0xffn;
  round();
  round();
  round(); // three finalisation rounds
  return Number((v0 ^ v1 ^ v2 ^ v3) & 0xffffffffn);
}

/** hsiphash(&v, 4, key) as the kernel calls it: the u32 in little-endian memory. */
function refHash32(v: number, k: bigint): number {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, v >>> 0, true);
  return refHsiphash(bytes, k, k);
}

// lib/siphash_kunit.c, BITS_PER_LONG == 64: key {0x0706050403020100, 0x0f0e0d0c0b0a0908},
// input bytes 0, 1, ..., i-1.
const KUNIT_KEY0 = 0x0706050403020100n;
const KUNIT_KEY1 = 0x0f0e0d0c0b0a0908n;
const KUNIT_HSIPHASH: number[] = [
  0x050fc4dc, 0x7d57ca93, 0x4dc7d44d, 0xe7ddf7fb, 0x88d38328, 0x49533b67, 0xc59f22a7, 0x9bb11140, 0x8d299a8e, 0x6c063de4, 0x92ff097f,
  0xf94dc352, 0x57b4d9a2, 0x1229ffa7, 0xc0f95d34, 0x2a519956, 0x7d908b66, 0x63dbd80c, 0xb473e63e, 0x8d297d1c, 0xa6cce040, 0x2b45f844,
  0xa320872e, 0xdae6c123, 0x67349c8c, 0x705b0979, 0xca9913a5, 0x4ade3b35, 0xef6cd00d, 0x4ab1e1f4, 0x43c5e663, 0x8c21d1bc, 0x16a7b60d,
  0x7a8ff9bf, 0x1f2a753e, 0xbf186b91, 0xada26206, 0xa3c33057, 0xae3a36a1, 0x7b108392, 0x99e41531, 0x3f1ad944, 0xc8138825, 0xc28949a6,
  0xfaf8876b, 0x9f042196, 0x68b1d623, 0x8b5114fd, 0xdf074c46, 0x12cc86b3, 0x0a52098f, 0x9d292f9a, 0xa2f41f12, 0x43a71ed0, 0x73f0bce6,
  0x70a7e980, 0x243c6d75, 0xfdb71513, 0xa67d8a08, 0xb7e8f148, 0xf7a644ee, 0x0f1837f2, 0x4b6694e0, 0xb7bbb3a8,
];

describe('hsiphash', () => {
  it('reference implementation reproduces the kernel self-test vectors', () => {
    for (let i = 0; i < 64; i++) {
      const input = Uint8Array.from({ length: i }, (_, j) => j);
      assert.equal(refHsiphash(input, KUNIT_KEY0, KUNIT_KEY1), KUNIT_HSIPHASH[i], `length ${i}`);
    }
  });

  it('the fast 4-byte version matches the self-test vector and the reference', () => {
    const kunit = hsiphashKey(0x07060504, 0x03020100, 0x0f0e0d0c, 0x0b0a0908);
    assert.equal(hsiphash32(kunit, 0x03020100), KUNIT_HSIPHASH[4]); // hsiphash_1u32 case
    const rand = seededRandom(99);
    for (let i = 0; i < 3000; i++) {
      const k = [rand(), rand(), rand(), rand()] as const;
      const key = hsiphashKey(k[0], k[1], k[2], k[3]);
      const k0 = (BigInt(k[0]) << 32n) | BigInt(k[1]);
      const k1 = (BigInt(k[2]) << 32n) | BigInt(k[3]);
      const v = i < 8 ? [0, 1, 0xff, 0x100, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff][i]! : rand();
      const bytes = new Uint8Array(4);
      new DataView(bytes.buffer).setUint32(0, v, true);
      assert.equal(hsiphash32(key, v), refHsiphash(bytes, k0, k1), `v=${v}`);
    }
  });
});

// ---- reference Maglev table ------------------------------------------------------------
const M = 4093;
const K1 = 2654435761n;
const K2 = 2654446892n;

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

function fold(af: Family, addr: string): number {
  if (af === 6) return addrFold(addr);
  return parseIPv4(addr) ?? addrWords(addr)[0];
}

/** Maglev as in the paper: permutation[i][j] = (offset + j * skip) mod M, next[i] counts probes. */
function refTable(af: Family, dests: readonly FakeDest[]): Array<FakeDest | null> {
  const table: Array<FakeDest | null> = new Array(M).fill(null);
  const lws = dests.map((d) => d.lastWeight);
  const g = lws.filter((w) => w > 0).reduce((a, w) => (a === 0 ? w : gcd(a, w)), 0);
  if (g === 0) return table;
  const maxw = Math.max(...lws);
  const rshift = Math.max(0, Math.floor(Math.log2(Math.floor(maxw / g))) + 1 - 6);
  const offset = dests.map((d) => refHash32(d.port + fold(af, d.addr), K1) % M);
  const skip = dests.map((d) => (refHash32(d.port + fold(af, d.addr), K2) % (M - 1)) + 1);
  const turns = lws.map((w) => Math.floor(Math.floor(w / g) / 2 ** rshift) || (w !== 0 ? 1 : 0));
  const next = dests.map(() => 0);
  let filled = 0;
  while (filled < M) {
    for (let i = 0; i < dests.length && filled < M; i++) {
      for (let t = 0; t < turns[i]! && filled < M; t++) {
        let c: number;
        do {
          c = (offset[i]! + next[i]! * skip[i]!) % M;
          next[i]!++;
        } while (table[c] !== null);
        table[c] = dests[i]!;
        filled++;
      }
    }
  }
  return table;
}

function names(t: ReadonlyArray<FakeDest | null>): string[] {
  return t.map((d) => d?.name ?? '-');
}

function build(weights: number[], af: Family = 4, seed = 1): FakeService {
  const svc = new FakeService({ af });
  const rand = seededRandom(seed);
  for (const [i, w] of weights.entries()) {
    svc.add(`S${i}`, {
      weight: w,
      addr:
        af === 4 ? ip4(0x0a000000 + (rand() & 0xffffff)) : `2001:db8:${(rand() & 0xffff).toString(16)}::${(rand() & 0xffff).toString(16)}`,
      port: i % 2 === 0 ? 80 : 1024 + (rand() % 60000),
    });
  }
  svc.use(mh);
  return svc;
}

describe('mh', () => {
  it('uses the kernel default table size 4093', () => {
    assert.equal(MH_TAB_SIZE, M);
  });

  const configs: Array<{ why: string; weights: number[]; af?: Family }> = [
    { why: 'three equal weights', weights: [1, 1, 1] },
    { why: 'mixed weights', weights: [1, 2, 3, 7] },
    { why: 'weights with a gcd (100, 200, 1000)', weights: [100, 200, 1000] },
    { why: 'large weights scaled by rshift (65535, 1, 3000)', weights: [65535, 1, 3000] },
    { why: 'a server added with weight 0', weights: [5, 0, 5] },
    { why: 'IPv6 servers', weights: [2, 3, 4, 5], af: 6 },
    { why: 'fifty servers', weights: Array.from({ length: 50 }, (_, i) => 1 + (i % 5)) },
  ];
  for (const { why, weights, af } of configs) {
    it(`table matches the reference Maglev build: ${why}`, () => {
      const svc = build(weights, af ?? 4);
      const table = mhTable(svc.af, svc.dests)!;
      assert.deepEqual(names(table), names(refTable(svc.af, svc.dests)));
      // Lookups are lookup[hsiphash(addr) % M].
      const rand = seededRandom(5);
      for (let i = 0; i < 500; i++) {
        const caddr = af === 6 ? `2001:db8:ffff::${(rand() & 0xffff).toString(16)}` : ip4(rand());
        const want = table[refHash32(fold(svc.af, caddr), K1) % M]!;
        const got = svc.schedule({ caddr });
        assert.equal(got?.name ?? '-', want.weight > 0 ? want.name : '-');
      }
    });
  }

  it('fills the whole table, each server in proportion to its weight', () => {
    const weights = [1, 2, 3, 4, 10];
    const svc = build(weights);
    const table = mhTable(svc.af, svc.dests)!;
    assert.ok(!table.includes(null), 'no empty slot');
    const total = weights.reduce((a, b) => a + b, 0);
    for (const d of svc.dests) {
      const share = table.filter((t) => t === d).length / M;
      const want = d.weight / total;
      assert.ok(Math.abs(share - want) < 0.01, `${d.name}: share ${share.toFixed(4)} vs ${want.toFixed(4)}`);
    }
  });

  it('moves only about 1/N of the clients when one of N servers leaves', () => {
    for (const seed of [1, 2, 3]) {
      const svc = build(new Array(10).fill(1), 4, seed);
      const rand = seededRandom(1000 + seed);
      const keys = Array.from({ length: 20000 }, () => ip4(rand()));
      const before = keys.map((caddr) => svc.schedule({ caddr }));
      const victim = svc.dests[seed]!;
      svc.remove(victim);
      const after = keys.map((caddr) => svc.schedule({ caddr }));
      let moved = 0;
      let movedOthers = 0;
      for (let i = 0; i < keys.length; i++) {
        if (before[i] === victim) assert.notEqual(after[i], victim, 'clients of the removed server must move');
        if (before[i] !== after[i]) {
          moved++;
          if (before[i] !== victim) movedOthers++;
        }
        assert.ok(after[i] !== null);
      }
      const frac = moved / keys.length;
      assert.ok(frac >= 0.07 && frac <= 0.14, `moved fraction ${frac}`);
      assert.ok(movedOthers / keys.length < 0.03, `clients of remaining servers moved: ${movedOthers / keys.length}`);
    }
  });

  it('quiescing a server keeps the table: its clients get no server, the others stay', () => {
    // The quiesced server has the smallest weight: rebuilding from current weights would
    // change the gcd (2 -> 4) and so every server's turns.
    const svc = build([2, 4, 4, 8]);
    const before = mhTable(svc.af, svc.dests)!;
    const rand = seededRandom(8);
    const keys = Array.from({ length: 3000 }, () => ip4(rand()));
    const picks = keys.map((caddr) => svc.schedule({ caddr }));
    const q = svc.dests.find((d) => d.weight === 2)!;
    svc.setWeight(q, 0);
    assert.deepEqual(mhTable(svc.af, svc.dests), before, 'built from lastWeight');
    keys.forEach((caddr, i) => {
      const p = svc.schedule({ caddr });
      assert.equal(p, picks[i] === q ? null : picks[i]);
    });
    // mh-fallback: the quiesced server's clients probe on to another server, deterministically.
    svc.schedFlags = SCHED_FLAG_1;
    keys.forEach((caddr, i) => {
      const p = svc.schedule({ caddr });
      assert.ok(p !== null && p !== q);
      if (picks[i] !== q) assert.equal(p, picks[i]);
      assert.equal(svc.schedule({ caddr }), p);
    });
  });

  it('mh-fallback probes rehashed slots, as the kernel does', () => {
    const svc = build([1, 1, 1, 1, 1], 4, 3);
    svc.schedFlags = SCHED_FLAG_1;
    const table = refTable(svc.af, svc.dests);
    const down = svc.dests[2]!;
    down.overloaded = true;
    const rand = seededRandom(77);
    for (let i = 0; i < 500; i++) {
      const caddr = ip4(rand());
      const f = fold(4, caddr);
      const ihash = refHash32(f, K1) % M;
      let want: FakeDest | null = table[ihash]!;
      if (want === down) {
        want = null;
        for (let off = 0; off < M; off++) {
          const d = table[refHash32(f + ((off + ihash) % M), K1) % M]!;
          if (d !== down) {
            want = d;
            break;
          }
        }
      }
      assert.equal(svc.schedule({ caddr }), want);
    }
  });

  it('mh-port spreads the ports of one client; without it the port is ignored', () => {
    const svc = build([1, 1, 1, 1]);
    const seen = new Set<FakeDest | null>();
    for (let p = 1000; p < 1100; p++) seen.add(svc.schedule({ caddr: '198.51.100.7', cport: p }));
    assert.equal(seen.size, 1);
    svc.schedFlags = SCHED_FLAG_2;
    seen.clear();
    for (let p = 1000; p < 1100; p++) seen.add(svc.schedule({ caddr: '198.51.100.7', cport: p }));
    assert.equal(seen.size, 4);
    // The key is addr + port as one u32, so port 1 of .7 hashes like port 0 of .8.
    const withPort = svc.schedule({ caddr: '198.51.100.7', cport: 1 });
    svc.schedFlags = 0;
    assert.equal(withPort, svc.schedule({ caddr: '198.51.100.8', cport: 1 }));
  });

  it('keeps the old table when there are more servers than slots (-EINVAL)', () => {
    const svc = new FakeService();
    for (let i = 0; i < M; i++) svc.add(`T${i}`, { weight: 1, addr: ip4(0x0b000000 + i) });
    svc.use(mh); // M servers: allowed, every server gets exactly one slot
    const clients = Array.from({ length: 300 }, (_, i) => ip4(0xc6336400 + i));
    const before = clients.map((caddr) => svc.schedule({ caddr }));
    assert.equal(new Set(mhTable(svc.af, svc.dests)).size, M);
    const extra = svc.add('extra', { weight: 1000 });
    assert.equal(mhTable(svc.af, svc.dests), null);
    assert.deepEqual(
      clients.map((caddr) => svc.schedule({ caddr })),
      before,
    );
    assert.ok(!before.includes(extra));
  });
});
