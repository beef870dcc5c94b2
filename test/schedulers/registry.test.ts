/** The scheduler registry (ip_vs_sched.c): lookup by name, no duplicate names. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isTsvsError } from '../../src/core/errors.js';
import { getScheduler, registerScheduler, schedulerNames } from '../../src/schedulers/index.js';
import { wlc } from '../../src/schedulers/wlc.js';

describe('scheduler registry', () => {
  it("lists ipvsadm's schedulers in its order, then twos", () => {
    assert.deepEqual(schedulerNames(), ['rr', 'wrr', 'lc', 'wlc', 'lblc', 'lblcr', 'dh', 'sh', 'sed', 'nq', 'fo', 'ovf', 'mh', 'twos']);
  });

  it('finds a scheduler by name, and nothing for an unknown name', () => {
    for (const name of schedulerNames()) assert.equal(getScheduler(name)?.name, name);
    assert.equal(getScheduler('wlc'), wlc);
    assert.equal(getScheduler('WLC'), undefined);
    assert.equal(getScheduler('nope'), undefined);
  });

  it('refuses a duplicate name', () => {
    assert.throws(
      () => registerScheduler({ name: 'rr', create: () => ({ schedule: () => null }) }),
      (e: unknown) => isTsvsError(e) && /rr/.test(e.detail),
    );
    assert.equal(schedulerNames().length, 14);
  });

  it('registers a new scheduler', () => {
    registerScheduler({ name: 'test-null', create: () => ({ schedule: () => null }) });
    assert.equal(getScheduler('test-null')?.name, 'test-null');
  });
});
