/**
 * Expected pick sequences, worked out by hand from the kernel algorithms
 * (net/netfilter/ipvs/ip_vs_*.c). Servers are added in the order given, so the list
 * order is the reverse (head insertion), which decides round robin order and ties.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { connOverhead } from '../../src/schedulers/common.js';
import { fo } from '../../src/schedulers/fo.js';
import { lc } from '../../src/schedulers/lc.js';
import { nq } from '../../src/schedulers/nq.js';
import { ovf } from '../../src/schedulers/ovf.js';
import { rr } from '../../src/schedulers/rr.js';
import type { SchedulerFactory } from '../../src/core/scheduler.js';
import { sed } from '../../src/schedulers/sed.js';
import { twos } from '../../src/schedulers/twos.js';
import { wlc } from '../../src/schedulers/wlc.js';
import { wrr } from '../../src/schedulers/wrr.js';
import { FakeService, replayEnv, seededRandom } from './fake.js';
import type { DestOptions } from './fake.js';

/**
 * A service with servers added in the given order and then `factory` bound, so that
 * init_service sees them all (as after `ipvsadm -E -s <sched>` on a populated service).
 */
function service(factory: SchedulerFactory, servers: Array<[string, DestOptions]>) {
  const svc = new FakeService();
  const d = Object.fromEntries(servers.map(([name, o]) => [name, svc.add(name, o)]));
  svc.use(factory);
  return { svc, d };
}

describe('rr', () => {
  it('walks the list from the head: A, B, C added give C B A', () => {
    const { svc } = service(rr, [
      ['A', {}],
      ['B', {}],
      ['C', {}],
    ]);
    assert.deepEqual(svc.sequence(7), ['C', 'B', 'A', 'C', 'B', 'A', 'C']);
  });

  it('skips quiesced and overloaded servers, weight magnitude does not matter', () => {
    const { svc, d } = service(rr, [
      ['A', { weight: 9 }],
      ['B', { weight: 0 }],
      ['C', { weight: 1 }],
      ['D', {}],
    ]);
    d.D!.overloaded = true;
    assert.deepEqual(svc.sequence(5), ['C', 'A', 'C', 'A', 'C']);
  });

  it('after deleting the current server continues with its successor', () => {
    const { svc, d } = service(rr, [
      ['A', {}],
      ['B', {}],
      ['C', {}],
    ]);
    assert.deepEqual(svc.sequence(2), ['C', 'B']);
    svc.remove(d.B!);
    assert.deepEqual(svc.sequence(4), ['A', 'C', 'A', 'C']);
  });

  it('deleting the current head server restarts at the new head', () => {
    const { svc, d } = service(rr, [
      ['A', {}],
      ['B', {}],
      ['C', {}],
    ]);
    assert.deepEqual(svc.sequence(1), ['C']);
    svc.remove(d.C!);
    assert.deepEqual(svc.sequence(3), ['B', 'A', 'B']);
  });

  it('a server added at the head does not move the pointer', () => {
    const { svc } = service(rr, [
      ['A', {}],
      ['B', {}],
      ['C', {}],
    ]);
    assert.deepEqual(svc.sequence(2), ['C', 'B']);
    svc.add('D');
    assert.deepEqual(svc.sequence(5), ['A', 'D', 'C', 'B', 'A']);
  });

  it('comes back to the current server when it is the only usable one', () => {
    const { svc, d } = service(rr, [
      ['A', {}],
      ['B', {}],
      ['C', {}],
    ]);
    assert.deepEqual(svc.sequence(2), ['C', 'B']);
    d.A!.overloaded = true;
    d.C!.overloaded = true;
    assert.deepEqual(svc.sequence(2), ['B', 'B']);
  });
});

describe('wrr', () => {
  const cases: Array<{ weights: Array<[string, number]>; cycle: string[] }> = [
    {
      weights: [
        ['A', 4],
        ['B', 3],
        ['C', 2],
      ],
      cycle: ['A', 'B', 'A', 'C', 'B', 'A', 'C', 'B', 'A'],
    },
    {
      weights: [
        ['A', 1],
        ['B', 1],
        ['C', 1],
      ],
      cycle: ['C', 'B', 'A'],
    },
    {
      weights: [
        ['A', 2],
        ['B', 4],
      ],
      cycle: ['B', 'B', 'A'],
    }, // gcd 2, mw 3
    {
      weights: [
        ['A', 100],
        ['B', 50],
      ],
      cycle: ['A', 'B', 'A'],
    }, // gcd 50, mw 51
  ];
  for (const { weights, cycle } of cases) {
    it(`weights ${weights.map(([n, w]) => `${n}=${w}`).join(',')} repeat ${cycle.join(' ')}`, () => {
      const { svc } = service(
        wrr,
        weights.map(([n, w]) => [n, { weight: w }]),
      );
      assert.deepEqual(svc.sequence(cycle.length * 3), [...cycle, ...cycle, ...cycle]);
    });
  }

  // With `ipvsadm -A` first and the servers added one by one, each add runs
  // dest_changed, which leaves cw at 1 (the first add sets mw = w - (w - 1) = 1), so the
  // kernel starts with one pass at cw = 1 before entering the cycle above.
  const incremental: Array<{ weights: Array<[string, number]>; prefix: string[]; cycle: string[] }> = [
    {
      weights: [
        ['A', 4],
        ['B', 3],
        ['C', 2],
      ],
      prefix: ['C', 'B', 'A'],
      cycle: cases[0]!.cycle,
    },
    {
      weights: [
        ['A', 1],
        ['B', 1],
        ['C', 1],
      ],
      prefix: [],
      cycle: cases[1]!.cycle,
    },
    {
      weights: [
        ['A', 2],
        ['B', 4],
      ],
      prefix: ['B', 'A'],
      cycle: cases[2]!.cycle,
    },
    {
      weights: [
        ['A', 100],
        ['B', 50],
      ],
      prefix: ['B', 'A'],
      cycle: cases[3]!.cycle,
    },
  ];
  for (const { weights, prefix, cycle } of incremental) {
    it(`added one by one after create: ${weights.map(([n, w]) => `${n}=${w}`).join(',')} start with ${prefix.join(' ') || 'the cycle'}`, () => {
      const svc = new FakeService();
      svc.use(wrr);
      for (const [n, w] of weights) svc.add(n, { weight: w });
      assert.deepEqual(svc.sequence(prefix.length + cycle.length * 2), [...prefix, ...cycle, ...cycle]);
    });
  }

  it('a weight change restarts at the head and keeps the current threshold', () => {
    const { svc, d } = service(wrr, [
      ['A', { weight: 4 }],
      ['B', { weight: 3 }],
      ['C', { weight: 2 }],
    ]);
    assert.deepEqual(svc.sequence(2), ['A', 'B']); // cw is 3 now
    svc.setWeight(d.C!, 3); // di 1, mw 4: cw stays 3, cl back to the head
    assert.deepEqual(svc.sequence(10), ['C', 'B', 'A', 'C', 'B', 'A', 'C', 'B', 'A', 'A']);
  });

  it('a threshold above the new maximum falls back to it', () => {
    const { svc, d } = service(wrr, [
      ['A', { weight: 8 }],
      ['B', { weight: 2 }],
    ]);
    assert.deepEqual(svc.sequence(1), ['A']); // di 2, mw 7, cw 7
    svc.setWeight(d.A!, 2); // di 2, mw 1 < cw: cw = 1
    assert.deepEqual(svc.sequence(4), ['B', 'A', 'B', 'A']);
  });

  it('with gcd > 1 realigns the threshold to the new step', () => {
    // A=6, B=4: di 2, mw 5. Picks: A (cw 5), then cw 3: B, A.
    const { svc, d } = service(wrr, [
      ['A', { weight: 6 }],
      ['B', { weight: 4 }],
    ]);
    assert.deepEqual(svc.sequence(3), ['A', 'B', 'A']); // cw is 3
    svc.setWeight(d.B!, 3); // di 3, mw 4; cw 3 -> (3 / 3) * 3 + 1 = 4, so B (3) waits
    assert.deepEqual(svc.sequence(6), ['A', 'B', 'A', 'A', 'B', 'A']);
  });

  it('after finding everything overloaded resumes after the server where it stopped', () => {
    const { svc, d } = service(wrr, [
      ['A', { weight: 1 }],
      ['B', { weight: 1 }],
      ['C', { weight: 1 }],
    ]);
    assert.deepEqual(svc.sequence(2), ['C', 'B']);
    for (const x of Object.values(d)) x.overloaded = true;
    assert.deepEqual(svc.sequence(1), ['-']); // the last pass stops at B (the `stop` dest)
    d.A!.overloaded = false;
    d.C!.overloaded = false;
    assert.deepEqual(svc.sequence(3), ['A', 'C', 'A']);
  });

  it('skips overloaded servers and reports null when all are overloaded', () => {
    const { svc, d } = service(wrr, [
      ['A', { weight: 2 }],
      ['B', { weight: 1 }],
    ]);
    d.A!.overloaded = true;
    assert.deepEqual(svc.sequence(3), ['B', 'B', 'B']);
    d.B!.overloaded = true;
    assert.deepEqual(svc.sequence(2), ['-', '-']);
    d.A!.overloaded = false;
    assert.deepEqual(svc.sequence(2), ['A', 'A']);
  });
});

describe('lc', () => {
  it('ignores weight magnitude: fewest connections wins', () => {
    const { svc } = service(lc, [
      ['A', { weight: 1, activeconns: 1 }],
      ['B', { weight: 100, activeconns: 2 }],
    ]);
    assert.deepEqual(svc.sequence(1), ['A']);
  });

  it('counts an active connection as 256 inactive ones', () => {
    const { svc, d } = service(lc, [
      ['A', { inactconns: 300 }],
      ['B', { activeconns: 1 }],
    ]);
    assert.deepEqual(svc.sequence(1), ['B']); // 256 < 300
    d.A!.inactconns = 255;
    assert.deepEqual(svc.sequence(1), ['A']);
  });

  it('breaks ties by list order', () => {
    const { svc } = service(lc, [
      ['A', { activeconns: 2 }],
      ['B', { activeconns: 2 }],
    ]);
    assert.deepEqual(svc.sequence(1), ['B']); // B is first in the list
  });
});

describe('wlc', () => {
  // Each row: servers in add order (list order is the reverse) and the expected pick.
  const rows: Array<{ why: string; servers: Array<[string, DestOptions]>; want: string }> = [
    {
      why: '256/1 vs 512/3: the heavier server wins despite more connections',
      servers: [
        ['A', { weight: 1, activeconns: 1 }],
        ['B', { weight: 3, activeconns: 2 }],
      ],
      want: 'B',
    },
    {
      why: '256/1 vs 512/2 is a tie: first in list (B)',
      servers: [
        ['A', { weight: 1, activeconns: 1 }],
        ['B', { weight: 2, activeconns: 2 }],
      ],
      want: 'B',
    },
    {
      why: 'a tie with the other list order goes to A',
      servers: [
        ['B', { weight: 2, activeconns: 2 }],
        ['A', { weight: 1, activeconns: 1 }],
      ],
      want: 'A',
    },
    {
      why: 'inactive connections count: 10 vs 5',
      servers: [
        ['A', { inactconns: 10 }],
        ['B', { inactconns: 5 }],
      ],
      want: 'B',
    },
    {
      why: 'a quiesced idle server cannot win',
      servers: [
        ['A', { weight: 1, activeconns: 5 }],
        ['Z', { weight: 0 }],
      ],
      want: 'A',
    },
    {
      why: 'an overloaded idle server is skipped',
      servers: [
        ['A', { weight: 1, activeconns: 5 }],
        ['Z', { weight: 9, overloaded: true }],
      ],
      want: 'A',
    },
    {
      why: '(3*256+7)/5 = 155 vs (1*256+100)/2 = 178 vs 0/1',
      servers: [
        ['A', { weight: 5, activeconns: 3, inactconns: 7 }],
        ['B', { weight: 2, activeconns: 1, inactconns: 100 }],
        ['C', { weight: 1, activeconns: 0, overloaded: true }],
      ],
      want: 'A',
    },
  ];
  for (const { why, servers, want } of rows) {
    it(why, () => {
      assert.deepEqual(service(wlc, servers).svc.sequence(1), [want]);
    });
  }
});

describe('sed', () => {
  it('ignores inactive connections where wlc does not', () => {
    const servers: Array<[string, DestOptions]> = [
      ['A', { weight: 1, activeconns: 0, inactconns: 1000 }],
      ['B', { weight: 1, activeconns: 1 }],
    ];
    assert.deepEqual(service(wlc, servers).svc.sequence(1), ['B']); // 1000 vs 256
    assert.deepEqual(service(sed, servers).svc.sequence(1), ['A']); // (0+1)/1 vs (1+1)/1
  });

  it('counts the incoming job: a busy heavy server beats an idle light one', () => {
    const servers: Array<[string, DestOptions]> = [
      ['A', { weight: 1, activeconns: 0 }],
      ['B', { weight: 3, activeconns: 1 }],
    ];
    assert.deepEqual(service(sed, servers).svc.sequence(1), ['B']); // 1/1 vs 2/3
    assert.deepEqual(service(wlc, servers).svc.sequence(1), ['A']); // 0/1 vs 256/3
  });
});

describe('nq', () => {
  it('picks the first idle server in list order, whatever the weights', () => {
    const { svc } = service(nq, [
      ['A', { weight: 5, activeconns: 0 }],
      ['B', { weight: 1, activeconns: 0 }],
      ['C', { weight: 1, activeconns: 2 }],
    ]);
    assert.deepEqual(svc.sequence(1), ['B']);
  });

  it('without an idle server falls back to the sed choice', () => {
    const { svc } = service(nq, [
      ['A', { weight: 1, activeconns: 1 }],
      ['B', { weight: 4, activeconns: 3 }],
      ['C', { weight: 1, activeconns: 2 }],
    ]);
    assert.deepEqual(svc.sequence(1), ['B']); // 2/1, 4/4, 3/1
  });

  it('an idle but quiesced or overloaded server is not taken', () => {
    const { svc } = service(nq, [
      ['A', { weight: 1, activeconns: 1 }],
      ['B', { weight: 0 }],
      ['C', { weight: 1, overloaded: true }],
    ]);
    assert.deepEqual(svc.sequence(1), ['A']);
  });
});

describe('fo', () => {
  it('sends everything to the highest weight; ties go to the first in list', () => {
    const { svc, d } = service(fo, [
      ['A', { weight: 5 }],
      ['B', { weight: 10 }],
      ['C', { weight: 10 }],
    ]);
    assert.deepEqual(svc.sequence(3), ['C', 'C', 'C']);
    d.C!.overloaded = true;
    assert.deepEqual(svc.sequence(2), ['B', 'B']);
    svc.setWeight(d.B!, 0);
    assert.deepEqual(svc.sequence(2), ['A', 'A']);
  });
});

describe('ovf', () => {
  it('fills the highest weight until its active connections exceed its weight', () => {
    const { svc, d } = service(ovf, [
      ['A', { weight: 1 }],
      ['B', { weight: 3 }],
      ['C', { weight: 5, activeconns: 5 }],
    ]);
    assert.deepEqual(svc.sequence(1), ['C']); // 5 > 5 is false: still takes one more
    d.C!.activeconns = 6;
    assert.deepEqual(svc.sequence(1), ['B']);
    d.B!.activeconns = 4;
    assert.deepEqual(svc.sequence(1), ['A']);
    d.A!.activeconns = 2;
    assert.deepEqual(svc.sequence(1), ['-']);
    d.A!.inactconns = 1000; // only active connections count
    d.A!.activeconns = 0;
    assert.deepEqual(svc.sequence(1), ['A']);
  });
});

describe('twos', () => {
  // Added A=1, B=2, C=3 (list C, B, A): total 6 + 1 = 7; a draw r in [0, 6] walks
  // C (r-3), B (r-5), A (r-6): 0..3 -> C; 4,5 -> B; 6 -> A.
  function pool() {
    return [
      ['A', { weight: 1 }],
      ['B', { weight: 2 }],
      ['C', { weight: 3 }],
    ] as Array<[string, DestOptions]>;
  }

  it('maps draws to servers by cumulative weight and keeps choice1 on equal load', () => {
    for (const [r, want] of [
      [0, 'C'],
      [3, 'C'],
      [4, 'B'],
      [5, 'B'],
      [6, 'A'],
      [7 + 4, 'B'],
      [2 ** 32 - 1, 'C'],
    ] as const) {
      const svc = new FakeService();
      svc.use(twos, replayEnv([r, 0]));
      for (const [n, o] of pool()) svc.add(n, o);
      assert.equal(svc.schedule()?.name, want, `draw ${r}`);
    }
  });

  it('returns the second choice only when it is strictly less loaded per weight', () => {
    const mk = (draws: number[]) => {
      const svc = new FakeService();
      svc.use(twos, replayEnv(draws));
      const d = Object.fromEntries(pool().map(([n, o]) => [n, svc.add(n, o)]));
      return { svc, d };
    };
    let { svc, d } = mk([0, 6]); // C, then A
    d.C!.activeconns = 1; // w2*oh1 = 1*256 > w1*oh2 = 3*0
    assert.equal(svc.schedule()?.name, 'A');
    ({ svc, d } = mk([6, 0])); // A, then C
    d.C!.activeconns = 1; // 3*0 > 1*256 is false: keep A
    assert.equal(svc.schedule()?.name, 'A');
    ({ svc, d } = mk([0, 4])); // C, then B
    d.C!.activeconns = 2; // w2*oh1 = 2*512 = 1024 > w1*oh2 = 3*256 = 768
    d.B!.activeconns = 1;
    assert.equal(svc.schedule()?.name, 'B');
    ({ svc, d } = mk([0, 4]));
    d.C!.activeconns = 3; // 2*768 = 1536 vs 3*512 = 1536: a tie keeps C
    d.B!.activeconns = 2;
    assert.equal(svc.schedule()?.name, 'C');
  });

  it('draws only among usable servers', () => {
    const svc = new FakeService();
    svc.use(twos, replayEnv([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]));
    svc.add('A', { weight: 1 });
    const b = svc.add('B', { weight: 2 });
    svc.add('C', { weight: 3, overloaded: true });
    svc.setWeight(b, 0);
    assert.deepEqual(svc.sequence(6), ['A', 'A', 'A', 'A', 'A', 'A']);
  });
});

describe('wlc property', () => {
  it('never picks a server with a worse overhead/weight than another usable server', () => {
    const rand = seededRandom(20240601);
    for (let round = 0; round < 3000; round++) {
      const svc = new FakeService();
      svc.use(wlc);
      const n = 1 + (rand() % 12);
      for (let i = 0; i < n; i++) {
        svc.add(`S${i}`, {
          weight: rand() % 4 === 0 ? 0 : 1 + (rand() % 100),
          activeconns: rand() % 40,
          inactconns: rand() % 2000,
          overloaded: rand() % 8 === 0,
        });
      }
      const usable = svc.dests.filter((d) => !d.overloaded && d.weight > 0);
      const p = svc.schedule();
      if (usable.length === 0) {
        assert.equal(p, null);
        continue;
      }
      assert.ok(p !== null && usable.includes(p), `round ${round}: picked an unusable server`);
      const pi = svc.dests.indexOf(p);
      for (const d of usable) {
        // p/pw <= d/dw, and strictly < for servers before p in the list (ties go first).
        const lhs = connOverhead(p) * d.weight;
        const rhs = connOverhead(d) * p.weight;
        if (svc.dests.indexOf(d) < pi) assert.ok(lhs < rhs, `round ${round}: ${d.name} ties or beats ${p.name} earlier in list`);
        else assert.ok(lhs <= rhs, `round ${round}: ${d.name} beats ${p.name}`);
      }
    }
  });
});
