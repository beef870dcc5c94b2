/**
 * bench/scale.ts's plan: the rules file is what tsvsadm -R accepts and loads N × 4, and
 * the change stream stays valid against the table it changes (every change applies, the
 * tsvsadm arguments parse to the same operation as the API one, service 0 of a download
 * plan is never touched).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loggedBatchMs } from '../../bench/scale-daemon.js';
import { ChangeStream, changeArgs, changeOp, realsOf, rulesText, vipOf, type Plan } from '../../bench/scale-plan.js';
import { parseCommand, type ParseEnv } from '../../src/ipvsadm/parse.js';
import { builtinServices } from '../../src/ipvsadm/services.js';
import type { IpvsTable } from '../../src/core/table.js';
import { newTable } from '../table.js';
import type { Op } from '../../src/core/types.js';

const env: ParseEnv = { progName: 'tsvsadm', services: builtinServices, lookupHost: async () => null };

async function opOf(words: string[]): Promise<Op> {
  const c = await parseCommand(words, env);
  assert.equal(c.cmd, 'apply', `${words.join(' ')}: ${'text' in c ? c.text : c.cmd}`);
  return (c as { op: Op }).op;
}

async function loaded(plan: Plan): Promise<IpvsTable> {
  const t = newTable();
  const lines = rulesText(plan).trim().split('\n');
  let want = 0;
  for (let i = 0; i < plan.size; i++) want += 1 + realsOf(plan, i).length;
  assert.equal(lines.length, want);
  t.applyAll(await Promise.all(lines.map((l) => opOf(l.split(' ')))));
  return t;
}

describe('bench/scale plan', () => {
  for (const plane of ['nftables', 'userspace'] as const) {
    it(`${plane}: the rules load N services with 4 distinct real servers each, every VIP distinct`, async () => {
      const plan: Plan = { plane, size: 600, scheduler: 'wlc' };
      const t = await loaded(plan);
      const svcs = t.list();
      assert.equal(svcs.length, 600);
      assert.ok(svcs.every((s) => s.dests.length === 4 && s.scheduler === 'wlc'));
      assert.equal(new Set(Array.from({ length: 600 }, (_, i) => vipOf(plan, i))).size, 600);
      assert.match(vipOf(plan, 599), plane === 'nftables' ? /^198\.18\./ : /^127\.18\./);
    });
  }

  it('300 changes apply one by one, and tsvsadm arguments mean the same operation as the API one', async () => {
    const plan: Plan = {
      plane: 'nftables',
      size: 50,
      scheduler: 'wlc',
      special: { vip: '198.18.0.1', port: 80, reals: ['198.19.0.11', '198.19.0.12'] },
    };
    const t = await loaded(plan);
    const s = new ChangeStream(plan, 3);
    const kinds = new Set<string>();
    for (let i = 0; i < 300; i++) {
      const c = s.next();
      kinds.add(c.kind);
      assert.notEqual(c.service, 0, 'service 0 is the download');
      const op = changeOp(plan, c);
      const parsed = await opOf(changeArgs(plan, c));
      assert.deepEqual(t.validate([parsed]), t.validate([op]));
      t.applyAll([op]);
    }
    assert.deepEqual([...kinds].sort(), ['add', 'delete', 'edit']);
    // The download's service is exactly as loaded.
    const first = t.list().find((x) => x.addr === '198.18.0.1')!;
    assert.deepEqual(first.dests.map((d) => `${d.addr}:${d.port}`).sort(), realsOf(plan, 0).sort());
  });

  it("reads the per-batch ms of tsvsd's log after an offset, and nothing from a log without it", () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsvs-scale-test-'));
    try {
      const log = join(dir, 'tsvsd.log');
      const before = '{"level":30,"msg":"applied batch","ops":50000,"ms":900.5}\n';
      writeFileSync(
        log,
        before +
          '{"level":30,"msg":"applied add-server","op":"add-server TCP 198.18.1.1:80 -> 198.19.240.1:80"}\n' +
          '{"level":30,"msg":"applied batch","ops":1,"ms":3.25}\nnot json "ms"\n{"level":30,"msg":"other","ms":7}\n' +
          '{"level":30,"msg":"applied batch","ops":1,"ms":4}\n',
      );
      assert.deepEqual(loggedBatchMs(log, Buffer.byteLength(before)), [3.25, 4]);
      writeFileSync(log, '{"level":30,"msg":"applied add-server"}\n');
      assert.deepEqual(loggedBatchMs(log, 0), []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
