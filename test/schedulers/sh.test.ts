/**
 * sh (source hashing) and dh (destination hashing): the 256-bucket tables of
 * ip_vs_sh.c / ip_vs_dh.c and the 2654435761 multiplicative hash.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SCHED_FLAG_1, SCHED_FLAG_2 } from '../../src/core/types.js';
import { foldAddr, mulHash } from '../../src/schedulers/common.js';
import { dh, dhBuckets } from '../../src/schedulers/dh.js';
import { sh, shBuckets, shHash } from '../../src/schedulers/sh.js';
import { FakeService, ip4, seededRandom } from './fake.js';
import type { FakeDest } from './fake.js';

function countBy<T>(xs: readonly T[]): Map<T, number> {
  const m = new Map<T, number>();
  for (const x of xs) m.set(x, (m.get(x) ?? 0) + 1);
  return m;
}

describe('multiplicative hash', () => {
  it('wraps at 32 bits like the kernel (unsigned)', () => {
    assert.equal(mulHash(1), 2654435761);
    assert.equal(mulHash(2), (2 * 2654435761) % 2 ** 32);
    assert.equal(mulHash(0xffffffff), 2 ** 32 - 2654435761);
    // 0x0a000001 * 2654435761 mod 2^32, computed exactly with BigInt.
    assert.equal(mulHash(0x0a000001), Number((0x0a000001n * 2654435761n) % 2n ** 32n));
  });

  it('sh hash: (offset + (port + addr) * 2654435761) & 255', () => {
    assert.equal(shHash(1, 0, 0), 0xb1);
    assert.equal(shHash(0, 1, 0), 0xb1);
    assert.equal(shHash(1, 0, 5), (0xb1 + 5) & 255);
    assert.equal(shHash(0xffffffff, 1, 0), 0); // addr + port wraps to 0
    const rand = seededRandom(3);
    for (let i = 0; i < 1000; i++) {
      const a = rand();
      const p = rand() & 0xffff;
      const o = rand() & 255;
      const want = Number((BigInt(o) + BigInt((a + p) % 2 ** 32) * 2654435761n) & 255n);
      assert.equal(shHash(a, p, o), want);
    }
  });

  it('folds IPv6 addresses by XOR of the four words', () => {
    assert.equal(foldAddr('2001:db8::1'), (0x20010db8 ^ 0 ^ 0 ^ 1) >>> 0);
    assert.equal(foldAddr('10.1.2.3'), 0x0a010203);
    assert.equal(foldAddr('255.255.255.255'), 0xffffffff);
  });
});

describe('sh', () => {
  function pool(weights: number[], flags = 0) {
    const svc = new FakeService({ schedFlags: flags });
    svc.use(sh);
    const ds = weights.map((w, i) => svc.add(String.fromCharCode(65 + i), { weight: w }));
    return { svc, ds };
  }

  it('equal weights: each of N servers gets 256/N buckets, +-1', () => {
    for (const n of [1, 2, 3, 5, 7, 10, 17, 100]) {
      const { svc, ds } = pool(new Array(n).fill(1));
      const counts = countBy(shBuckets(svc.dests));
      for (const d of ds) {
        const c = counts.get(d) ?? 0;
        assert.ok(Math.abs(c - 256 / n) <= 1, `n=${n}: ${d.name} has ${c} buckets`);
      }
      // And through lookups: last octets 0..255 hit every bucket exactly once.
      const picks = countBy(Array.from({ length: 256 }, (_, i) => svc.schedule({ caddr: `203.0.113.${i}` })));
      assert.deepEqual(picks, counts);
    }
  });

  it('fills weight-consecutive buckets walking the list, a weight-0 server takes one', () => {
    const { svc, ds } = pool([3, 1]); // list B(1), A(3)
    const [a, b] = ds as [FakeDest, FakeDest];
    assert.deepEqual(shBuckets(svc.dests).slice(0, 8), [b, a, a, a, b, a, a, a]);
    svc.setWeight(b, 0);
    assert.deepEqual(shBuckets(svc.dests).slice(0, 8), [b, a, a, a, b, a, a, a]);
    const { svc: svc2, ds: ds2 } = pool([2, 0]); // list Z(0), A(2)
    const counts = countBy(shBuckets(svc2.dests));
    assert.equal(counts.get(ds2[1]!), 86);
    assert.equal(counts.get(ds2[0]!), 170);
    const heavy = pool([1, 300]); // list B(300), A(1): B covers the whole table
    assert.equal(countBy(shBuckets(heavy.svc.dests)).get(heavy.ds[1]!), 256);
  });

  it('is stable for a client and spreads clients by address', () => {
    const { svc, ds } = pool([1, 1, 1, 1]);
    const rand = seededRandom(11);
    const clients = Array.from({ length: 2000 }, () => ip4(rand()));
    const first = clients.map((caddr) => svc.schedule({ caddr, cport: rand() & 0xffff }));
    clients.forEach((caddr, i) => {
      assert.equal(svc.schedule({ caddr, cport: rand() & 0xffff }), first[i]);
    });
    const counts = countBy(first);
    for (const d of ds) assert.ok((counts.get(d) ?? 0) > 400, `${d.name} gets its share`);
  });

  it('spreads IPv4 clients by the last octet only (kernel behaviour)', () => {
    const { svc } = pool([1, 1, 1]);
    for (let o = 0; o < 256; o++) {
      const p = svc.schedule({ caddr: `10.0.0.${o}` });
      assert.equal(svc.schedule({ caddr: `172.31.200.${o}` }), p);
    }
  });

  it('sh-port spreads one client over servers by source port', () => {
    const { svc } = pool([1, 1, 1], SCHED_FLAG_2);
    const seen = new Set(Array.from({ length: 64 }, (_, p) => svc.schedule({ caddr: '198.51.100.9', cport: 2000 + p })));
    assert.equal(seen.size, 3);
    svc.schedFlags = 0;
    const one = new Set(Array.from({ length: 64 }, (_, p) => svc.schedule({ caddr: '198.51.100.9', cport: 2000 + p })));
    assert.equal(one.size, 1);
  });

  it('an unavailable bucket gives null, or with sh-fallback the kernel probe order', () => {
    const { svc, ds } = pool([1, 1, 1, 1]);
    const down = ds[1]!;
    const clients = Array.from({ length: 256 }, (_, i) => `192.0.2.${i}`);
    const before = clients.map((caddr) => svc.schedule({ caddr }));
    down.overloaded = true;
    const buckets = shBuckets(svc.dests);
    clients.forEach((caddr, i) => {
      assert.equal(svc.schedule({ caddr }), before[i] === down ? null : before[i]);
    });
    svc.schedFlags = SCHED_FLAG_1;
    clients.forEach((caddr, i) => {
      const got = svc.schedule({ caddr });
      if (before[i] !== down) {
        assert.equal(got, before[i]);
        return;
      }
      // Probe: roffset = (offset + ihash) % 256, bucket = (roffset + h) & 255 with h = ihash.
      const ihash = shHash(foldAddr(caddr), 0, 0);
      let want: FakeDest | null = null;
      for (let off = 0; off < 256 && want === null; off++) {
        const d = buckets[shHash(foldAddr(caddr), 0, (off + ihash) % 256)]!;
        if (d !== down) want = d;
      }
      assert.ok(want !== null && want !== down);
      assert.equal(got, want);
    });
  });

  it('reassigns on add and delete', () => {
    const { svc, ds } = pool([1, 1]);
    const c = svc.add('C', { weight: 1 });
    assert.equal(countBy(shBuckets(svc.dests)).get(c), 86);
    assert.ok(Array.from({ length: 256 }, (_, i) => svc.schedule({ caddr: `192.0.2.${i}` })).includes(c));
    svc.remove(ds[0]!);
    const picks = new Set(Array.from({ length: 256 }, (_, i) => svc.schedule({ caddr: `192.0.2.${i}` })));
    assert.deepEqual(picks, new Set([c, ds[1]!]));
  });
});

describe('dh', () => {
  it('deals buckets round robin whatever the weights', () => {
    const svc = new FakeService();
    svc.use(dh);
    const a = svc.add('A', { weight: 1 });
    const b = svc.add('B', { weight: 100 });
    const counts = countBy(dhBuckets(svc.dests));
    assert.equal(counts.get(a), 128);
    assert.equal(counts.get(b), 128);
    assert.deepEqual(dhBuckets(svc.dests).slice(0, 4), [b, a, b, a]);
  });

  it('hashes the virtual address, not the client', () => {
    const svc = new FakeService();
    svc.use(dh);
    const ds = [svc.add('A'), svc.add('B'), svc.add('C')];
    const buckets = dhBuckets(svc.dests);
    const rand = seededRandom(21);
    const seen = new Set<FakeDest | null>();
    for (let i = 0; i < 500; i++) {
      const vaddr = ip4(rand());
      const want = buckets[mulHash(foldAddr(vaddr)) & 255]!;
      for (let j = 0; j < 3; j++) assert.equal(svc.schedule({ vaddr, caddr: ip4(rand()), cport: rand() & 0xffff }), want);
      seen.add(want);
    }
    assert.deepEqual(seen, new Set(ds));
  });

  it('returns null for a quiesced, overloaded or removed bucket owner', () => {
    const svc = new FakeService();
    svc.use(dh);
    const a = svc.add('A');
    const b = svc.add('B');
    const vaddrs = Array.from({ length: 256 }, (_, i) => `192.0.2.${i}`);
    const owner = vaddrs.map((vaddr) => svc.schedule({ vaddr }));
    svc.setWeight(a, 0);
    vaddrs.forEach((vaddr, i) => {
      assert.equal(svc.schedule({ vaddr }), owner[i] === a ? null : owner[i]);
    });
    svc.setWeight(a, 1);
    b.overloaded = true;
    vaddrs.forEach((vaddr, i) => {
      assert.equal(svc.schedule({ vaddr }), owner[i] === b ? null : owner[i]);
    });
    b.overloaded = false;
    svc.remove(b);
    vaddrs.forEach((vaddr) => {
      assert.equal(svc.schedule({ vaddr }), a);
    });
  });
});
