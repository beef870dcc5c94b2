/**
 * Chaos: kill -9 of a real tsvsd, again and again, each time in the middle of streams of
 * changes (API edits and tsvsadm adds and deletes), then a restart from the same state
 * directory. After every restart each acknowledged change is there: a weight at least the
 * acknowledged one (at most the last one issued), every acknowledged add present, every
 * acknowledged delete gone.
 *
 * test/daemon/state-kill.test.ts kills once, past a compaction; this one repeats the kill
 * over restarts (TSVS_CHAOS_KILLS rounds, 4 unless told; the target is 1,000) at a
 * random moment drawn from a seeded PRNG (TSVS_CHAOS_SEED).
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { dest, service, startTsvsd, tsvsadm, type Tsvsd } from '../daemon/spawn.js';
import { freePort } from '../helper.js';
import { sleep } from './helper.js';

const ROUNDS = Number(process.env.TSVS_CHAOS_KILLS ?? 4);
const SEED = Number(process.env.TSVS_CHAOS_SEED ?? 13);

/** mulberry32. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('chaos: kill -9 of tsvsd during changes, over and over', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsvs-chaos-kill-'));
  const daemons: Tsvsd[] = [];
  after(async () => {
    for (const d of daemons) await d.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  test(`${ROUNDS} rounds: every acknowledged change is there after each restart`, { timeout: 60_000 + ROUNDS * 20_000 }, async (t) => {
    const rnd = prng(SEED);
    let d = await startTsvsd([], { dir });
    daemons.push(d);
    const port = await freePort();
    const STREAMS = 4;
    const svcs = Array.from({ length: STREAMS }, (_, i) => service(`127.0.1.${i + 1}`, port));
    await d.client.apply(
      svcs.flatMap((s) => [
        { op: 'add-service' as const, service: s },
        { op: 'add-server' as const, service: s, dest: dest(1) },
      ]),
    );
    const acked = new Array<number>(STREAMS).fill(1);
    const issued = new Array<number>(STREAMS).fill(1);
    /** tsvsadm's services: acknowledged present, acknowledged deleted. */
    const present = new Set<string>();
    const deleted = new Set<string>();
    let n = 0;
    let totalAcks = 0;
    for (let round = 1; round <= ROUNDS; round++) {
      let stop = false;
      const cur = d;
      const apiStream = async (i: number) => {
        while (!stop) {
          const w = issued[i]! + 1;
          issued[i] = w;
          try {
            await cur.client.apply([{ op: 'edit-server', service: svcs[i]!, dest: dest(w) }]);
          } catch {
            return; // killed
          }
          acked[i] = w;
          totalAcks++;
        }
      };
      const admStream = async () => {
        while (!stop) {
          const victim = [...present][Math.floor(rnd() * present.size)];
          if (victim && rnd() < 0.3) {
            if (!(await tsvsadm(cur.socket, ['-D', '-t', victim]))) return;
            present.delete(victim);
            deleted.add(victim);
          } else {
            n++;
            const vip = `127.0.${3 + Math.floor(n / 250)}.${(n % 250) + 1}:${port}`;
            if (!(await tsvsadm(cur.socket, ['-A', '-t', vip, '-s', 'rr']))) return;
            present.add(vip);
          }
          totalAcks++;
        }
      };
      const streams = [...svcs.map((_, i) => apiStream(i)), admStream()];
      // Kill at a random moment: from at once to well into the streams.
      await sleep(Math.floor(rnd() * 1500));
      await d.kill('SIGKILL');
      stop = true;
      await Promise.all(streams);

      d = await startTsvsd([], { dir });
      daemons.push(d);
      const table = await d.client.getTable();
      const have = new Set(table.services.map((s) => `${s.addr}:${s.port}`));
      for (let i = 0; i < STREAMS; i++) {
        const s = table.services.find((x) => x.addr === svcs[i]!.addr);
        assert.ok(s, `round ${round}: ${svcs[i]!.addr} is there`);
        const w = s.dests[0]!.weight;
        assert.ok(
          w >= acked[i]! && w <= issued[i]!,
          `round ${round}: ${s.addr} weight ${w}, acknowledged ${acked[i]}, issued ${issued[i]}`,
        );
        // What survived is the truth the next round starts from.
        acked[i] = issued[i] = w;
      }
      for (const vip of present) assert.ok(have.has(vip), `round ${round}: tsvsadm's acknowledged ${vip} is there`);
      for (const vip of deleted) assert.ok(!have.has(vip), `round ${round}: tsvsadm's acknowledged delete of ${vip} held`);
      // An add or delete in flight at the kill may have landed either way: the table says which.
      for (const vip of have) if (!vip.startsWith('127.0.1.')) present.add(vip);
      for (const vip of [...present]) if (!have.has(vip)) present.delete(vip);
      for (const vip of [...deleted]) if (have.has(vip)) deleted.delete(vip);
    }
    t.diagnostic(`${ROUNDS} kill -9s, ${totalAcks} acknowledged changes, none lost (seed ${SEED})`);
    assert.equal(await d.kill('SIGTERM'), 0);
  });
});
