/**
 * The VRRPv3 state machine against RFC 5798 sections 6.1 and 6.4 and keepalived's
 * preempt / nopreempt / preempt_delay, stepped with an injected clock; and two machines
 * on a simulated link (failover, preemption, split brain and its healing).
 */
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { masterDownIntervalMs, skewTimeMs, VrrpFsm, type FsmAction, type FsmConfig } from '../../src/ha/fsm.js';

const base: FsmConfig = { priority: 100, advertIntCs: 100, preempt: true, preemptDelayMs: 0, primaryAddr: '198.18.0.2' };
const kinds = (a: FsmAction[]) =>
  a.map((x) =>
    x.kind === 'transition'
      ? `${x.from}->${x.to}`
      : x.kind === 'send'
        ? `send(${x.priority})`
        : x.kind === 'notify'
          ? `notify(${x.state})`
          : x.kind === 'arm'
            ? `arm(${x.timer})`
            : x.kind === 'disarm'
              ? `disarm(${x.timer})`
              : x.kind,
  );
const advert = (priority: number, src = '198.18.0.3', maxAdverIntCs = 100) => ({ kind: 'advert' as const, priority, src, maxAdverIntCs });

describe('RFC 5798 6.1 timers', () => {
  test('Skew_Time and Master_Down_Interval', () => {
    assert.equal(skewTimeMs(100, 100), (156 * 100 * 10) / 256); // 609.375 ms
    assert.equal(masterDownIntervalMs(100, 100), 3000 + 609.375);
    assert.equal(skewTimeMs(255, 20), 200 / 256);
    assert.equal(masterDownIntervalMs(200, 20), 600 + (56 * 200) / 256);
    assert.equal(masterDownIntervalMs(100, 100, 5), 5000 + 609.375); // keepalived down_timer_adverts
  });
});

describe('INIT', () => {
  test('priority 255 (address owner) becomes MASTER at once: advert, VIPs, gratuitous ARP, advert timer', () => {
    const f = new VrrpFsm({ ...base, priority: 255 });
    const a = f.step({ kind: 'start' }, 1000);
    assert.deepEqual(kinds(a), ['INIT->MASTER', 'send(255)', 'arm(advert)', 'addVips', 'garp', 'notify(MASTER)']);
    assert.equal(f.timer('advert'), 2000);
  });
  test('any other priority becomes BACKUP with Master_Down_Timer = Master_Down_Interval', () => {
    const f = new VrrpFsm(base);
    assert.deepEqual(kinds(f.step({ kind: 'start' }, 0)), ['INIT->BACKUP', 'arm(masterDown)', 'notify(BACKUP)']);
    assert.equal(f.timer('masterDown'), 3609.375);
    assert.equal(f.deadline(), 3609.375);
  });
  test('adverts before start are ignored', () => {
    const f = new VrrpFsm(base);
    assert.deepEqual(f.step(advert(200), 0), []);
    assert.equal(f.state, 'INIT');
  });
});

describe('BACKUP (6.4.2)', () => {
  test('no master heard: MASTER when Master_Down_Timer fires, not before', () => {
    const f = new VrrpFsm(base);
    f.step({ kind: 'start' }, 0);
    assert.deepEqual(f.step({ kind: 'timer' }, 3609), []);
    const a = f.step({ kind: 'timer' }, 3609.375);
    assert.deepEqual(kinds(a), ['disarm(masterDown)', 'BACKUP->MASTER', 'send(100)', 'arm(advert)', 'addVips', 'garp', 'notify(MASTER)']);
  });
  test('an advert with priority >= ours resets the timer and teaches Master_Adver_Interval', () => {
    const f = new VrrpFsm(base);
    f.step({ kind: 'start' }, 0);
    f.step(advert(150, '198.18.0.3', 20), 3000);
    assert.equal(f.masterAdverIntCs, 20);
    assert.equal(f.timer('masterDown'), 3000 + masterDownIntervalMs(100, 20));
    assert.equal(f.masterAddr, '198.18.0.3');
    f.step(advert(100, '198.18.0.3', 20), 3500);
    assert.equal(f.timer('masterDown'), 3500 + masterDownIntervalMs(100, 20));
    assert.equal(f.state, 'BACKUP');
  });
  test('priority 0 from the master: Master_Down_Timer = Skew_Time', () => {
    const f = new VrrpFsm(base);
    f.step({ kind: 'start' }, 0);
    f.step(advert(150), 1000);
    f.step(advert(0), 2000);
    assert.equal(f.timer('masterDown'), 2000 + skewTimeMs(100, 100));
    const a = f.step({ kind: 'timer' }, 2000 + skewTimeMs(100, 100));
    assert.ok(kinds(a).includes('BACKUP->MASTER'));
  });
  test('preempt: a lower-priority advert is discarded, so the backup takes over when its timer fires', () => {
    const f = new VrrpFsm({ ...base, priority: 200 });
    f.step({ kind: 'start' }, 0);
    const t = f.timer('masterDown')!;
    for (let now = 1000; now < t; now += 1000) assert.deepEqual(f.step(advert(100), now), []);
    assert.ok(kinds(f.step({ kind: 'timer' }, t)).includes('BACKUP->MASTER'));
  });
  test('nopreempt: a lower-priority master is followed for good', () => {
    const f = new VrrpFsm({ ...base, priority: 200, preempt: false });
    f.step({ kind: 'start' }, 0);
    for (let now = 1000; now < 60_000; now += 1000) {
      f.step(advert(100), now);
      assert.deepEqual(f.step({ kind: 'timer' }, now), []);
    }
    assert.equal(f.state, 'BACKUP');
  });
  test('preempt_delay: a lower-priority master is followed for the delay after start, then preempted', () => {
    const f = new VrrpFsm({ ...base, priority: 200, preemptDelayMs: 10_000 });
    f.step({ kind: 'start' }, 0);
    let took = -1;
    for (let now = 1000; now < 30_000 && took < 0; now += 1000) {
      f.step(advert(100), now);
      if (kinds(f.step({ kind: 'timer' }, now)).includes('BACKUP->MASTER')) took = now;
      const d = f.deadline();
      if (took < 0 && d !== null && d < now + 1000 && kinds(f.step({ kind: 'timer' }, d)).includes('BACKUP->MASTER')) took = d;
    }
    // The last advert accepted is the one at 9 s (before the 10 s delay ends); down 3.2 s later.
    assert.equal(took, 9000 + masterDownIntervalMs(200, 100));
  });
  test('preempt_delay also runs from the first lower-priority master seen after a proper one', () => {
    const f = new VrrpFsm({ ...base, priority: 200, preemptDelayMs: 5000 });
    f.step({ kind: 'start' }, 0);
    f.step(advert(250), 20_000); // a higher master, long after the startup window
    f.step(advert(100), 21_000); // the master's priority drops: the delay starts now
    f.step(advert(100), 25_000);
    assert.equal(f.timer('masterDown'), 25_000 + masterDownIntervalMs(200, 100));
    f.step(advert(100), 26_000); // past the delay: discarded
    assert.equal(f.timer('masterDown'), 25_000 + masterDownIntervalMs(200, 100));
  });
});

describe('MASTER (6.4.3)', () => {
  const master = (cfg: Partial<FsmConfig> = {}) => {
    const f = new VrrpFsm({ ...base, ...cfg });
    f.step({ kind: 'start' }, 0);
    f.step({ kind: 'timer' }, f.timer('masterDown')!);
    assert.equal(f.state, 'MASTER');
    return f;
  };
  test('the advert timer sends every Advertisement_Interval', () => {
    const f = master({ advertIntCs: 20 });
    const t0 = f.timer('advert')!;
    assert.deepEqual(kinds(f.step({ kind: 'timer' }, t0)), ['send(100)', 'arm(advert)']);
    assert.equal(f.timer('advert'), t0 + 200);
  });
  test('a higher priority advert: step down to BACKUP, remove the VIPs, learn its interval', () => {
    const f = master();
    const a = f.step(advert(101, '198.18.0.3', 50), 10_000);
    assert.deepEqual(kinds(a), ['disarm(advert)', 'MASTER->BACKUP', 'arm(masterDown)', 'removeVips', 'notify(BACKUP)']);
    assert.equal(f.timer('masterDown'), 10_000 + masterDownIntervalMs(100, 50));
  });
  test('equal priority: the higher primary address wins', () => {
    assert.equal(
      (() => {
        const f = master();
        f.step(advert(100, '198.18.0.3'), 9000);
        return f.state;
      })(),
      'BACKUP',
    );
    assert.equal(
      (() => {
        const f = master({ primaryAddr: '198.18.0.9' });
        f.step(advert(100, '198.18.0.3'), 9000);
        return f.state;
      })(),
      'MASTER',
    );
  });
  test('a lower priority advert is discarded', () => {
    const f = master();
    assert.deepEqual(f.step(advert(99, '198.18.0.200'), 9000), []);
    assert.equal(f.state, 'MASTER');
  });
  test('priority 0 from another router: send an advert at once and restart the advert timer', () => {
    const f = master();
    assert.deepEqual(kinds(f.step(advert(0), 9000)), ['send(100)', 'arm(advert)']);
    assert.equal(f.timer('advert'), 10_000);
  });
  test('shutdown: one advert with priority 0, VIPs removed, STOP notified', () => {
    const f = master();
    assert.deepEqual(kinds(f.step({ kind: 'stop' }, 9000)), ['send(0)', 'disarm(advert)', 'MASTER->INIT', 'removeVips', 'notify(STOP)']);
    assert.equal(f.deadline(), null);
  });
  test('a changed effective priority is what the next advert carries', () => {
    const f = master();
    f.step({ kind: 'priority', priority: 50 }, 5000);
    assert.deepEqual(f.step({ kind: 'timer' }, f.timer('advert')!)[0], { kind: 'send', priority: 50 });
  });
});

describe('FAULT (tracked interfaces and scripts)', () => {
  test('MASTER -> FAULT sends priority 0 and drops the VIPs; clearing returns to BACKUP', () => {
    const f = new VrrpFsm({ ...base, priority: 255 });
    f.step({ kind: 'start' }, 0);
    assert.deepEqual(kinds(f.step({ kind: 'fault', fault: true, reason: 'eth0 down' }, 100)), [
      'send(0)',
      'disarm(advert)',
      'MASTER->FAULT',
      'removeVips',
      'notify(FAULT)',
    ]);
    assert.deepEqual(f.step(advert(10), 200), []);
    assert.deepEqual(f.step({ kind: 'timer' }, 99_999), []);
    // The owner goes straight back to MASTER.
    assert.ok(kinds(f.step({ kind: 'fault', fault: false, reason: 'eth0 up' }, 300)).includes('FAULT->MASTER'));
    const g = new VrrpFsm(base);
    g.step({ kind: 'start' }, 0);
    g.step({ kind: 'fault', fault: true, reason: 'x' }, 1);
    assert.deepEqual(kinds(g.step({ kind: 'fault', fault: false, reason: 'x ok' }, 2)), [
      'FAULT->BACKUP',
      'arm(masterDown)',
      'notify(BACKUP)',
    ]);
  });
  test('a fault known before start starts in FAULT', () => {
    const f = new VrrpFsm(base);
    f.step({ kind: 'fault', fault: true, reason: 'script chk down' }, 0);
    assert.deepEqual(kinds(f.step({ kind: 'start' }, 0)), ['INIT->FAULT', 'notify(FAULT)']);
  });
});

/** Two routers on a link that can be cut; adverts arrive after 1 ms. */
function pair(a: Partial<FsmConfig>, b: Partial<FsmConfig>) {
  const r = [new VrrpFsm({ ...base, primaryAddr: '198.18.0.2', ...a }), new VrrpFsm({ ...base, primaryAddr: '198.18.0.3', ...b })];
  const alive = [true, true];
  let link = true;
  let now = 0;
  let inflight: Array<{ to: number; at: number; priority: number; src: string; int: number }> = [];
  const run = (i: number, acts: FsmAction[]) => {
    for (const x of acts) {
      if (x.kind === 'send' && link)
        inflight.push({ to: 1 - i, at: now + 1, priority: x.priority, src: r[i]!.cfg.primaryAddr, int: r[i]!.cfg.advertIntCs });
    }
  };
  const sim = {
    r,
    get now() {
      return now;
    },
    start: () => {
      for (const [i, f] of r.entries()) run(i, f.step({ kind: 'start' }, now));
    },
    set link(v: boolean) {
      link = v;
      if (!v) inflight = [];
    },
    kill: (i: number) => (alive[i] = false),
    /** Advances to `until` ms, event by event. */
    until(until: number) {
      for (;;) {
        const next = Math.min(...inflight.map((m) => m.at), ...r.map((f, i) => (alive[i] ? (f.deadline() ?? Infinity) : Infinity)));
        if (next > until) break;
        now = next;
        const due = inflight.filter((m) => m.at <= now);
        inflight = inflight.filter((m) => m.at > now);
        for (const m of due)
          if (alive[m.to]) run(m.to, r[m.to]!.step({ kind: 'advert', priority: m.priority, src: m.src, maxAdverIntCs: m.int }, now));
        r.forEach((f, i) => {
          alive[i] && run(i, f.step({ kind: 'timer' }, now));
        });
      }
      now = until;
    },
    states: () => r.map((f) => f.state).join(' '),
  };
  return sim;
}

describe('two routers on a simulated link', () => {
  test('the higher priority becomes master; the backup takes over within Master_Down_Interval of the master dying', () => {
    const s = pair({ priority: 150, advertIntCs: 20 }, { priority: 100, advertIntCs: 20 });
    s.start();
    s.until(5000);
    assert.equal(s.states(), 'MASTER BACKUP');
    s.kill(0);
    const t = s.now;
    for (let x = t; s.r[1]!.state !== 'MASTER'; x += 1) s.until(x);
    const gap = s.now - t;
    assert.ok(gap <= masterDownIntervalMs(100, 20) + 1, `took ${gap} ms`);
  });
  test('preempt: the old master takes over again on return; nopreempt: it does not', () => {
    for (const preempt of [true, false]) {
      const s = pair({ priority: 150, preempt }, { priority: 100 });
      s.start();
      s.until(10_000);
      assert.equal(s.states(), 'MASTER BACKUP');
      s.link = false; // the master is cut off: the backup takes over
      s.until(20_000);
      assert.equal(s.r[1]!.state, 'MASTER');
      // The returning master comes back as a fresh process would: restart it.
      s.r[0] = new VrrpFsm({ ...s.r[0]!.cfg });
      s.link = true;
      s.r[0].step({ kind: 'start' }, s.now);
      s.until(40_000);
      assert.equal(s.states(), preempt ? 'MASTER BACKUP' : 'BACKUP MASTER', `preempt=${preempt}`);
    }
  });
  test('split brain: both MASTER while the link is cut; exactly one within one advert interval of healing', () => {
    const s = pair({ priority: 100, advertIntCs: 20 }, { priority: 100, advertIntCs: 20 });
    s.start();
    s.until(5000);
    assert.equal(s.states(), 'BACKUP MASTER'); // equal priority: the higher address (.3) wins
    s.link = false;
    s.until(10_000);
    assert.equal(s.states(), 'MASTER MASTER');
    s.link = true;
    s.until(10_000 + 200 + 2);
    assert.equal(s.states(), 'BACKUP MASTER');
  });
  test('graceful shutdown: priority 0 lets the backup take over after Skew_Time, not Master_Down_Interval', () => {
    const s = pair({ priority: 150 }, { priority: 100 });
    s.start();
    s.until(10_000);
    const stop = s.r[0]!.step({ kind: 'stop' }, s.now);
    assert.deepEqual(stop[0], { kind: 'send', priority: 0 });
    const t = s.now;
    s.r[1]!.step({ kind: 'advert', priority: 0, src: '198.18.0.2', maxAdverIntCs: 100 }, t);
    s.kill(0);
    s.until(t + skewTimeMs(100, 100));
    assert.equal(s.r[1]!.state, 'MASTER');
  });
});
