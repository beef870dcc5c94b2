/**
 * One suite that every registered scheduler runs: the invariants of the kernel's
 * scheduler contract that hold whatever the algorithm. Hash schedulers (sh, dh, mh,
 * lblc, lblcr) get many client and virtual addresses so that every server is reachable,
 * and each "is never picked" check first asserts that the server *was* being picked,
 * so the check cannot pass vacuously.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SCHED_FLAG_1, SCHED_FLAG_2 } from '../../src/core/types.js';
import { getScheduler, schedulerNames } from '../../src/schedulers/index.js';
import type { SchedInput } from '../../src/core/scheduler.js';
import { FakeService, ip4, seededEnv } from './fake.js';
import type { FakeDest } from './fake.js';

/** The i-th packet of a run: clients and ports vary; a third of the virtual addresses are new, the rest repeat. */
function nth(i: number): SchedInput {
  const v = i % 3 === 0 ? 1000 + i : i % 64;
  return {
    caddr: ip4(0xac100000 + ((i * 2654435761) >>> 12)),
    cport: 1024 + ((i * 7919) % 60000),
    vaddr: ip4(0xc0000000 + v),
    vport: 80,
    now: i * 10,
  };
}

/**
 * Runs `n` packets starting at packet `start`. Each pick opens an active connection
 * that closes `life` picks later, so least-connection schedulers rotate and overflow
 * and lblc see changing loads. Returns how often each server (or null) was picked.
 */
function drive(svc: FakeService, start: number, n: number, life = 4): Map<FakeDest | null, number> {
  const counts = new Map<FakeDest | null, number>();
  const open: FakeDest[] = [];
  for (let i = start; i < start + n; i++) {
    const d = svc.scheduler.schedule(nth(i));
    counts.set(d, (counts.get(d) ?? 0) + 1);
    if (d !== null && life > 0) {
      d.activeconns++;
      open.push(d);
      if (open.length > life) open.shift()!.activeconns--;
    }
    if (i % 50 === 0) svc.scheduler.tick?.(nth(i).now);
  }
  return counts;
}

function picked(counts: Map<FakeDest | null, number>): number {
  let n = 0;
  for (const [d, c] of counts) if (d !== null) n += c;
  return n;
}

/** Every scheduler by name, plus the hash schedulers once more with fallback and port hashing. */
const variants: Array<{ name: string; flags: number }> = [];
for (const name of schedulerNames()) {
  variants.push({ name, flags: 0 });
  if (name === 'sh' || name === 'mh') variants.push({ name, flags: SCHED_FLAG_1 | SCHED_FLAG_2 });
}

describe('scheduler conformance', () => {
  it('covers all 14 kernel schedulers', () => {
    assert.deepEqual([...schedulerNames()].sort(), [
      'dh',
      'fo',
      'lblc',
      'lblcr',
      'lc',
      'mh',
      'nq',
      'ovf',
      'rr',
      'sed',
      'sh',
      'twos',
      'wlc',
      'wrr',
    ]);
  });

  for (const { name, flags } of variants) {
    const label = flags ? `${name} (flags ${flags})` : name;
    const factory = getScheduler(name)!;

    /** A, B, X added in that order (list X, B, A); X has the highest weight so fo and ovf pick it. */
    function pool(): { svc: FakeService; x: FakeDest; a: FakeDest; b: FakeDest } {
      const svc = new FakeService({ schedFlags: flags });
      svc.use(factory, seededEnv(7));
      const a = svc.add('A', { weight: 1 });
      const b = svc.add('B', { weight: 2 });
      const x = svc.add('X', { weight: 3 });
      return { svc, x, a, b };
    }

    describe(label, () => {
      it('returns null for an empty pool', () => {
        const svc = new FakeService({ schedFlags: flags });
        svc.use(factory, seededEnv(1));
        assert.equal(picked(drive(svc, 0, 300)), 0);
        // ...and again after servers came and went.
        const a = svc.add('A', { weight: 1 });
        svc.remove(a);
        assert.equal(picked(drive(svc, 300, 300)), 0);
      });

      it('returns null when every server is quiesced', () => {
        const { svc, a, b, x } = pool();
        assert.ok(picked(drive(svc, 0, 100)) > 0);
        for (const d of [a, b, x]) svc.setWeight(d, 0);
        assert.equal(picked(drive(svc, 100, 500)), 0);
        // Servers added with weight 0 from the start are not pickable either.
        const svc2 = new FakeService({ schedFlags: flags });
        svc2.use(factory, seededEnv(2));
        svc2.add('A', { weight: 0 });
        svc2.add('B', { weight: 0 });
        assert.equal(picked(drive(svc2, 0, 300)), 0);
      });

      it('never picks an overloaded server', () => {
        const { svc, x } = pool();
        assert.ok((drive(svc, 0, 300).get(x) ?? 0) > 0, 'X is picked before it is overloaded');
        x.overloaded = true; // the core sets the flag on connection bind, without upd_dest
        const c = drive(svc, 300, 600);
        assert.equal(c.get(x) ?? 0, 0);
        assert.ok(picked(c) > 0, 'the other servers still get connections');
        x.overloaded = false;
        assert.ok((drive(svc, 900, 600).get(x) ?? 0) > 0, 'X is picked again once no longer overloaded');
      });

      it('applies a weight change mid-stream', () => {
        const { svc, x } = pool();
        assert.ok((drive(svc, 0, 300).get(x) ?? 0) > 0);
        svc.setWeight(x, 0);
        const quiet = drive(svc, 300, 600);
        assert.equal(quiet.get(x) ?? 0, 0, 'a quiesced server gets no new connections');
        assert.ok(picked(quiet) > 0);
        svc.setWeight(x, 3);
        assert.ok((drive(svc, 900, 600).get(x) ?? 0) > 0, 'weight restored: picked again');
      });

      it('never picks a removed server and keeps scheduling', () => {
        const { svc, x } = pool();
        assert.ok((drive(svc, 0, 300).get(x) ?? 0) > 0);
        svc.remove(x);
        const c = drive(svc, 300, 600);
        assert.equal(c.get(x) ?? 0, 0);
        assert.ok(picked(c) > 0);
      });

      it('always picks the single server', () => {
        const svc = new FakeService({ schedFlags: flags });
        svc.use(factory, seededEnv(3));
        const a = svc.add('A', { weight: 5 });
        const c = drive(svc, 0, 400, 0);
        assert.equal(c.get(a), 400);
      });

      it('survives done() and sees servers present at create()', () => {
        const svc = new FakeService({ schedFlags: flags });
        const a = svc.add('A', { weight: 2 });
        svc.use(factory, seededEnv(4)); // bound after the server exists
        assert.equal(drive(svc, 0, 100, 0).get(a), 100);
        svc.scheduler.done?.();
      });
    });
  }
});
