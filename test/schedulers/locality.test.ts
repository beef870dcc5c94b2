/**
 * lblc and lblcr: locality caches keyed by the virtual (destination) address, their
 * overload rule, lblcr's server sets, and the periodic expiry run from tick().
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { lblc, lblcWith, LBLC_MAX_SIZE } from '../../src/schedulers/lblc.js';
import { lblcr, lblcrWith } from '../../src/schedulers/lblcr.js';
import type { Scheduler, SchedulerFactory } from '../../src/core/scheduler.js';
import { FakeService, ip4 } from './fake.js';
import type { FakeDest } from './fake.js';

const MIN = 60 * 1000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;

/** Cached destinations; both schedulers expose `size` for tests and listings. */
function cacheSize(s: Scheduler<FakeDest>): number {
  return (s as unknown as { size: number }).size;
}

function serverSet(s: Scheduler<FakeDest>, vaddr: string): string[] | undefined {
  return (s as unknown as { serverSet(v: string): readonly FakeDest[] | undefined }).serverSet(vaddr)?.map((d) => d.name);
}

/** Service with A and B (weight 2 each; list B, A) and the scheduler bound. */
function pair(factory: SchedulerFactory) {
  const svc = new FakeService();
  const a = svc.add('A', { weight: 2 });
  const b = svc.add('B', { weight: 2 });
  const s = svc.use(factory);
  return { svc, a, b, s };
}

const V = '192.0.2.10';

for (const factory of [lblc, lblcr]) {
  describe(`${factory.name}: locality`, () => {
    it('keeps a destination on its server until it is overloaded and another is under half load', () => {
      const { svc, a, b } = pair(factory);
      assert.equal(svc.schedule({ vaddr: V }), b); // wlc tie: first in list
      b.activeconns = 2; // wlc would now pick A, the cache keeps B
      assert.equal(svc.schedule({ vaddr: V, now: 1 }), b);
      b.activeconns = 3; // more than its weight, but A (1 * 2 < 2 is false) is not under half
      a.activeconns = 1;
      assert.equal(svc.schedule({ vaddr: V, now: 2 }), b);
      a.activeconns = 0; // now A is under half its weight: B counts as overloaded
      assert.equal(svc.schedule({ vaddr: V, now: 3 }), a);
      a.activeconns = 2;
      assert.equal(svc.schedule({ vaddr: V, now: 4 }), a, 'the new server is cached');
      // Another destination address is scheduled on its own.
      assert.equal(svc.schedule({ vaddr: '192.0.2.11', now: 5 }), a);
    });

    it('moves a destination off a quiesced, overloaded (-x) or removed server', () => {
      const { svc, a, b } = pair(factory);
      assert.equal(svc.schedule({ vaddr: V }), b);
      svc.setWeight(b, 0);
      assert.equal(svc.schedule({ vaddr: V }), a);
      svc.setWeight(b, 2);
      a.overloaded = true;
      assert.equal(svc.schedule({ vaddr: V }), b);
      a.overloaded = false;
      svc.remove(b);
      assert.equal(svc.schedule({ vaddr: V }), a);
      svc.remove(a);
      assert.equal(svc.schedule({ vaddr: V }), null);
    });

    it('drops entries idle for the expiration at the full check, every 30th run', () => {
      const { svc, s } = pair(factory);
      svc.schedule({ vaddr: V, now: 0 }); // arms the timer: first run at 1 min
      svc.schedule({ vaddr: '192.0.2.99', now: 23 * HOUR });
      for (let t = MIN; t < DAY; t += MIN) {
        s.tick!(t);
        if (t === 23 * HOUR) svc.schedule({ vaddr: '192.0.2.99', now: t }); // keep this one busy
      }
      assert.equal(cacheSize(s), 2, 'not yet idle for 24 h');
      s.tick!(DAY); // run 1440 = 48 * 30: a full check, and V is idle for exactly 24 h
      assert.equal(cacheSize(s), 1);
      for (let t = DAY + MIN; t <= 23 * HOUR + DAY; t += MIN) s.tick!(t);
      assert.equal(cacheSize(s), 0);
    });

    it('runs the full check only every 30 runs of the timer', () => {
      const f = factory.name === 'lblc' ? lblcWith(5 * MIN) : lblcrWith(5 * MIN);
      const { svc, s } = pair(f);
      s.tick!(0); // arm: runs at 1, 2, ... min
      svc.schedule({ vaddr: V, now: 0 });
      for (let t = MIN; t < 30 * MIN; t += MIN) s.tick!(t);
      assert.equal(cacheSize(s), 1, 'idle 29 min > 5 min, but no full check yet');
      s.tick!(30 * MIN);
      assert.equal(cacheSize(s), 0);
    });

    it('a late timer runs once and re-arms from when it ran', () => {
      const f = factory.name === 'lblc' ? lblcWith(5 * MIN) : lblcrWith(5 * MIN);
      const { svc, s } = pair(f);
      s.tick!(0);
      svc.schedule({ vaddr: V, now: 0 });
      s.tick!(10 * HOUR); // one run (counter 1 -> 2), not 600
      for (let i = 1; i <= 28; i++) s.tick!(10 * HOUR + i * MIN);
      assert.equal(cacheSize(s), 1, 'only 29 runs so far');
      s.tick!(10 * HOUR + 28 * MIN + 30 * 1000); // not due yet
      assert.equal(cacheSize(s), 1);
      s.tick!(10 * HOUR + 29 * MIN); // run 30
      assert.equal(cacheSize(s), 0);
    });

    it('over 16384 entries, collects entries idle for 6 minutes, 4/3 of the excess', () => {
      const { svc, s } = pair(factory);
      const n = LBLC_MAX_SIZE + 1000;
      for (let i = 0; i < n; i++) svc.schedule({ vaddr: ip4(0x0a000000 + i), now: 0 });
      assert.equal(cacheSize(s), n);
      for (let t = MIN; t <= 5 * MIN; t += MIN) {
        s.tick!(t);
        svc.schedule({ vaddr: ip4(0x0a000000 + 7), now: t }); // stays fresh
      }
      assert.equal(cacheSize(s), n, 'nothing idle for 6 minutes yet');
      s.tick!(6 * MIN);
      const removed = n - cacheSize(s);
      assert.ok(removed >= 1333 && removed < 1333 + 64, `removed ${removed}`); // whole buckets of ~17
      assert.equal(svc.schedule({ vaddr: ip4(0x0a000000 + 7), now: 6 * MIN })?.name, 'B', 'fresh entry kept');
    });

    it('done() flushes the cache and stops caching', () => {
      const { svc, s } = pair(factory);
      svc.schedule({ vaddr: V });
      assert.equal(cacheSize(s), 1);
      s.done!();
      assert.equal(cacheSize(s), 0);
      assert.ok(svc.schedule({ vaddr: V }) !== null);
      assert.equal(cacheSize(s), 0);
    });
  });
}

describe('lblcr: server sets', () => {
  it('adds the wlc choice to the set when the least loaded member is overloaded', () => {
    const { svc, a, b, s } = pair(lblcr);
    assert.equal(svc.schedule({ vaddr: V, now: 0 }), b);
    assert.deepEqual(serverSet(s, V), ['B']);
    b.activeconns = 3;
    assert.equal(svc.schedule({ vaddr: V, now: 10 }), a);
    assert.deepEqual(serverSet(s, V), ['A', 'B'], 'newest first');
    // Within the set, weighted least connection decides.
    a.activeconns = 2;
    b.activeconns = 1;
    assert.equal(svc.schedule({ vaddr: V, now: 20 }), b);
    a.activeconns = 0;
    assert.equal(svc.schedule({ vaddr: V, now: 30 }), a);
    // A third server joins only when the set's best is overloaded (lblc's rule).
    const c = svc.add('C', { weight: 2 });
    a.activeconns = 3;
    b.activeconns = 3;
    assert.equal(svc.schedule({ vaddr: V, now: 40 }), c);
    assert.deepEqual(serverSet(s, V), ['C', 'A', 'B']);
  });

  it('sheds the most loaded member once the set is unchanged for lblcr_expiration', () => {
    const { svc, a, b, s } = pair(lblcr);
    svc.schedule({ vaddr: V, now: 0 });
    b.activeconns = 3;
    svc.schedule({ vaddr: V, now: 10 }); // A joins: lastmod 10
    assert.deepEqual(serverSet(s, V), ['A', 'B']);
    a.activeconns = 1;
    assert.equal(svc.schedule({ vaddr: V, now: 10 + DAY }), a);
    assert.deepEqual(serverSet(s, V), ['A', 'B'], 'not strictly after lastmod + 24 h yet');
    assert.equal(svc.schedule({ vaddr: V, now: 11 + DAY }), a);
    assert.deepEqual(serverSet(s, V), ['A'], 'B (768/2 vs 256/2) was shed');
    assert.equal(svc.schedule({ vaddr: V, now: 12 + 2 * DAY }), a);
    assert.deepEqual(serverSet(s, V), ['A'], 'a single member is never shed');
  });

  it('skips removed and overloaded members of a set', () => {
    const { svc, a, b, s } = pair(lblcr);
    svc.schedule({ vaddr: V });
    b.activeconns = 3;
    svc.schedule({ vaddr: V }); // set A, B
    b.activeconns = 0;
    a.activeconns = 1;
    assert.equal(svc.schedule({ vaddr: V }), b);
    b.overloaded = true;
    assert.equal(svc.schedule({ vaddr: V }), a);
    b.overloaded = false;
    svc.remove(b);
    assert.equal(svc.schedule({ vaddr: V }), a);
    assert.deepEqual(serverSet(s, V), ['A', 'B'], 'the removed server stays in the set (kernel keeps a reference)');
  });
});
