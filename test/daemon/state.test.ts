/**
 * The state file: snapshot + journal. Round trips, what a change writes, torn and damaged
 * files, and crashes at every step of a compaction, checked by loading what the disk holds
 * at that step.
 */
import type { LogFn } from '../../src/core/log.js';
import { strict as assert } from 'node:assert';
import { existsSync, mkdirSync, mkdtempSync, promises as fsp, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import { pino } from 'pino';
import { TsvsError } from '../../src/core/errors.js';
import { newTable } from '../table.js';
import { waitFor } from '../helper.js';
import type { Op, ServiceConfig, TableConfig } from '../../src/core/types.js';
import type { DataPlane } from '../../src/dataplane/dataplane.js';
import { Director } from '../../src/daemon/director.js';
import { encodeRecord, JOURNAL_HEADER } from '../../src/daemon/journal.js';
import { configToOps, StateStore, writeFileAtomic } from '../../src/daemon/state.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'tsvs-state-'));
  dirs.push(d);
  return d;
}

const svc = (i: number): ServiceConfig => ({
  af: 4,
  protocol: 'tcp',
  addr: `198.18.${i >> 8}.${i & 255}`,
  port: 80,
  fwmark: 0,
  scheduler: 'rr',
  schedFlags: 0,
  persistent: 0,
  netmask: 0xffffffff,
  ops: false,
  pe: '',
});
const server = (i: number, last: number, weight = 1): Op => ({
  op: 'add-server',
  service: svc(i),
  dest: { af: 4, addr: `198.19.0.${last}`, port: 80, weight, fwd: 'masq', uThreshold: 0, lThreshold: 0 },
});

/**
 * Batch i of a test stream. Adds, edits and deletes, so that a record replayed twice or
 * skipped shows (adding a service twice, or deleting a missing one, fails).
 */
function batch(i: number): Op[] {
  if (i % 5 === 4) return [{ op: 'delete-service', service: svc(i - 2) }];
  if (i % 5 === 3)
    return [
      {
        op: 'edit-server',
        service: svc(i - 1),
        dest: { af: 4, addr: '198.19.0.1', port: 80, weight: i, fwd: 'masq', uThreshold: 0, lThreshold: 0 },
      },
      { op: 'zero' },
    ];
  return [{ op: 'add-service', service: svc(i) }, server(i, 1), server(i, 2, 3)];
}

/** A live table and a store journaling it, as the director wires them. */
class Live {
  readonly table = newTable();
  readonly logs: string[] = [];
  readonly store: StateStore;
  constructor(
    readonly path: string,
    opts: { compactBytes?: number; maxPending?: number } = {},
  ) {
    const log: LogFn = (level, msg) => this.logs.push(`${level} ${msg}`);
    this.store = new StateStore(path, { ...opts, log });
  }
  async open(): Promise<void> {
    const saved = await this.store.load();
    if (saved) this.table.applyAll(configToOps(saved));
    await this.store.open(() => this.table.config());
  }
  /** Applies and records in the same tick, as Director.applyNow does. */
  change(ops: Op[]): Promise<void> {
    const checked = this.table.validate(ops);
    this.table.applyAll(checked);
    return this.store.record(checked);
  }
}

/** As it would be written to a file and read back (absent, not undefined, optional fields). */
function plain<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

/** The table after batches 1..n. */
function expected(n: number): TableConfig {
  const t = newTable();
  for (let i = 1; i <= n; i++) t.applyAll(batch(i));
  return plain(t.config());
}

async function loadFresh(path: string): Promise<{ cfg: TableConfig | null; logs: string[] }> {
  const logs: string[] = [];
  const store = new StateStore(path, { log: (level, msg) => logs.push(`${level} ${msg}`) });
  const cfg = await store.load();
  return { cfg: cfg && plain(cfg), logs };
}

/** Replaces a FileHandle method for the length of a test (every handle shares the prototype). */
async function handleProto(): Promise<Record<string, unknown>> {
  const fh = await fsp.open(process.execPath, 'r');
  const proto = Object.getPrototypeOf(fh) as Record<string, unknown>;
  await fh.close();
  return proto;
}

/** Both files as they are now; the returned function puts them back (close() folds the journal away). */
function keep(path: string): () => void {
  const snap = readFileSync(path);
  const journal = readFileSync(`${path}.journal`);
  return () => {
    writeFileSync(path, snap);
    writeFileSync(`${path}.journal`, journal);
  };
}

function lines(path: string): string[] {
  return readFileSync(path, 'utf8').split('\n').filter(Boolean);
}

describe('state file: snapshot + journal', () => {
  test('round trip: changes made through the journal load back exactly', async () => {
    const path = join(tempDir(), 'state.json');
    const live = new Live(path);
    await live.open();
    for (let i = 1; i <= 30; i++) await live.change(batch(i));
    assert.equal(lines(`${path}.journal`).length, 31);
    const { cfg, logs } = await loadFresh(path);
    assert.deepEqual(cfg, expected(30));
    assert.deepEqual(cfg, plain(live.table.config()));
    assert.ok(logs.some((l) => /^info state journal replayed/.test(l)));
    // A clean close folds the journal into the snapshot.
    await live.store.close();
    assert.equal(lines(`${path}.journal`).length, 1);
    assert.deepEqual((await loadFresh(path)).cfg, expected(30));
    // Reopened: the journal is folded into a fresh snapshot, and changes go on from there.
    const again = new Live(path);
    await again.open();
    assert.equal(lines(`${path}.journal`).length, 1, 'only the header after open');
    assert.equal(JSON.parse(readFileSync(path, 'utf8')).seq, 30);
    for (let i = 31; i <= 35; i++) await again.change(batch(i));
    await again.store.close();
    assert.deepEqual((await loadFresh(path)).cfg, expected(35));
  });

  test('a change appends one record and does not rewrite the snapshot', async () => {
    const path = join(tempDir(), 'state.json');
    const live = new Live(path);
    // A table of 300 services, saved whole at open.
    for (let i = 1; i <= 300; i++) live.table.applyAll([{ op: 'add-service', service: svc(i) }, server(i, 1), server(i, 2)]);
    await live.store.open(() => live.table.config());
    const before = statSync(path);
    const journal0 = statSync(`${path}.journal`).size;
    const sizes: number[] = [];
    for (let i = 1; i <= 20; i++) {
      const s = svc(1000 + i);
      await live.change([{ op: 'add-service', service: s }]);
      sizes.push(statSync(`${path}.journal`).size);
    }
    const snapText = readFileSync(path, 'utf8');
    assert.equal(
      snapText,
      `${JSON.stringify(JSON.parse(snapText), null, 2)}\n`,
      'the snapshot, built in chunks, is plain pretty-printed JSON',
    );
    const now = statSync(path);
    assert.equal(now.ino, before.ino, 'same snapshot file');
    assert.equal(now.mtimeMs, before.mtimeMs, 'snapshot not written');
    assert.equal(now.size, before.size);
    // Each change grew the journal by one line about the size of its batch, a small fraction of the snapshot.
    const steps = sizes.map((s, i) => s - (i ? sizes[i - 1]! : journal0));
    for (const step of steps) assert.ok(step > 100 && step < 400, `one record: ${step} bytes`);
    assert.ok(before.size > 50 * 400, `the snapshot (${before.size} bytes) is far larger than a record`);
    assert.equal(lines(`${path}.journal`).length, 21);
    await live.store.close();
    const { cfg } = await loadFresh(path);
    assert.equal(cfg!.services.length, 320);
  });

  test('batches waiting for the disk share one fdatasync; zero alone writes nothing', async () => {
    const path = join(tempDir(), 'state.json');
    const live = new Live(path);
    await live.open();
    const proto = await handleProto();
    const real = proto.datasync as () => Promise<void>;
    let calls = 0;
    proto.datasync = function (this: FileHandle) {
      calls++;
      return real.call(this);
    };
    try {
      await Promise.all(Array.from({ length: 50 }, (_, i) => live.change([{ op: 'add-service', service: svc(i + 1) }])));
      assert.ok(calls >= 1 && calls <= 2, `50 batches took ${calls} fdatasync(s)`);
      const size = statSync(`${path}.journal`).size;
      await live.change([{ op: 'zero' }]);
      assert.equal(statSync(`${path}.journal`).size, size, 'counters are not state');
      assert.equal(lines(`${path}.journal`).length, 51);
    } finally {
      proto.datasync = real;
    }
    await live.store.close();
    assert.equal((await loadFresh(path)).cfg!.services.length, 50);
  });

  test('the queue of waiting batches is bounded: room() waits until the disk catches up', async () => {
    const path = join(tempDir(), 'state.json');
    const live = new Live(path, { maxPending: 2 });
    await live.open();
    const proto = await handleProto();
    const real = proto.datasync as () => Promise<void>;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    proto.datasync = async function (this: FileHandle) {
      await gate;
      return real.call(this);
    };
    try {
      const first = live.change(batch(1)); // in the write, held at fdatasync
      await new Promise((r) => setTimeout(r, 50));
      const more = [live.change(batch(2)), live.change(batch(5))];
      let roomy = false;
      const room = live.store.room().then(() => (roomy = true));
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(roomy, false, 'two batches wait: no room for a third');
      release();
      await Promise.all([first, ...more, room]);
      assert.equal(roomy, true);
    } finally {
      proto.datasync = real;
    }
    await live.store.close();
  });

  test('version 1 state files of earlier releases load, and open() rewrites them as version 2', async () => {
    const path = join(tempDir(), 'state.json');
    const table = expected(7);
    writeFileSync(path, `${JSON.stringify({ format: 'tsvs-state', version: 1, savedAt: '2026-01-01T00:00:00.000Z', table }, null, 2)}\n`);
    const live = new Live(path);
    await live.open();
    assert.deepEqual(plain(live.table.config()), table);
    const v2 = JSON.parse(readFileSync(path, 'utf8')) as { version: number; seq: number };
    assert.equal(v2.version, 2);
    assert.equal(v2.seq, 0);
    await live.change([{ op: 'add-service', service: svc(500) }]);
    await live.store.close();
    assert.equal((await loadFresh(path)).cfg!.services.length, table.services.length + 1);
  });

  test('a torn last record (crash during an append) is dropped with a log line; the rest loads', async () => {
    const path = join(tempDir(), 'state.json');
    const live = new Live(path);
    await live.open();
    for (let i = 1; i <= 6; i++) await live.change(batch(i));
    const journal = `${path}.journal`;
    const whole = readFileSync(journal, 'utf8');
    const putBack = keep(path);
    await live.store.close();
    putBack();
    const all = whole.split('\n').filter(Boolean);
    const last = all[all.length - 1]!;
    const upTo5 = `${all.slice(0, -1).join('\n')}\n`;
    const cases: Array<[string, string]> = [
      ['half a line', upTo5 + last.slice(0, last.length >> 1)],
      ['a whole line with a flipped byte', `${upTo5}${last.slice(0, 40)}${last[40] === '1' ? '2' : '1'}${last.slice(41)}\n`],
      ['zeros where the line should be', upTo5 + '\0'.repeat(300)],
      ['the whole record but its newline', upTo5 + last],
    ];
    for (const [what, text] of cases) {
      writeFileSync(journal, text);
      const { cfg, logs } = await loadFresh(path);
      assert.deepEqual(cfg, expected(5), what);
      assert.ok(
        logs.some((l) => /^warn .*dropped an incomplete last record/.test(l)),
        what,
      );
    }
    // After open(), appends start on a clean journal, so the torn bytes cannot end up mid-file.
    const again = new Live(path);
    await again.open();
    await again.change(batch(6));
    await again.store.close();
    assert.deepEqual((await loadFresh(path)).cfg, expected(6));
  });

  test('damage before the end of the journal, or in the snapshot, is an error naming the file, the place and what to do', async () => {
    const dir = tempDir();
    const path = join(dir, 'state.json');
    const live = new Live(path);
    await live.open();
    for (let i = 1; i <= 4; i++) await live.change(batch(i));
    const putBack = keep(path);
    await live.store.close();
    putBack();
    const journal = `${path}.journal`;
    const all = lines(journal);
    const secret = 'SECRET-CONTENT-DO-NOT-ECHO';
    const fails = async (re: RegExp) => {
      await assert.rejects(loadFresh(path), (e: unknown) => {
        assert.ok(e instanceof TsvsError);
        assert.match(e.detail, re);
        assert.doesNotMatch(e.detail, /SECRET|198\.18/, 'file contents are not echoed');
        assert.ok(e.detail.length < 600, 'short');
        return true;
      });
    };
    // Line 3 (the second record) damaged, whole records after it.
    writeFileSync(journal, `${[all[0], all[1], `${all[2]!.slice(0, 30)}${secret}`, all[3], all[4]].join('\n')}\n`);
    const goodBytes = Buffer.byteLength(`${all[0]}\n${all[1]}\n`);
    await fails(
      new RegExp(
        `state journal ${journal} line 3 \\(byte ${goodBytes}\\): record is damaged .*not an append cut short.*Restore the state files from a backup, or keep a copy .*: cp ${journal} ${journal}\\.corrupt-\\d{8}T\\d{6}Z && truncate -s ${goodBytes} ${journal}$`,
      ),
    );
    // The command it names keeps the good prefix: the (empty) snapshot and record 1.
    const damaged = readFileSync(journal);
    await fsp.truncate(journal, goodBytes);
    const prefix = (await loadFresh(path)).cfg;
    assert.deepEqual(prefix, expected(1), 'the snapshot and the good records before the damage');
    writeFileSync(journal, damaged);
    // A record missing in the middle: caught by the seq numbers.
    writeFileSync(journal, `${[all[0], all[1], all[3], all[4]].join('\n')}\n`);
    await fails(
      new RegExp(
        `state journal ${journal} line 3 \\(byte ${goodBytes}\\): record seq 3 after seq 1: record 2 is missing; .*truncate -s ${goodBytes} `,
      ),
    );
    // Not a journal at all.
    writeFileSync(journal, `${secret}\n`);
    await fails(new RegExp(`state journal ${journal} line 1 \\(byte 0\\): not a tsvs journal`));
    writeFileSync(journal, `${all.join('\n')}\n`);
    assert.deepEqual((await loadFresh(path)).cfg, expected(4));

    // A record that does not apply to the snapshot (here: it adds a service the snapshot has).
    writeFileSync(journal, `${[all[0], all[1], all[2], encodeRecord(3, batch(1)).trim()].join('\n')}\n`);
    await assert.rejects(loadFresh(path), (e: unknown) => {
      assert.ok(e instanceof TsvsError);
      assert.match(
        e.detail,
        new RegExp(
          `state journal ${journal} line 4 \\(byte \\d+\\): record seq 3 does not apply to the saved table \\(.*already exists\\); .*truncate -s \\d+ ${journal}`,
        ),
      );
      return true;
    });

    // The snapshot: cut short, garbage, another format.
    const snap = readFileSync(path, 'utf8');
    writeFileSync(path, snap.slice(0, 100));
    await fails(
      new RegExp(
        `state file ${path}: not valid JSON \\(it ends early, at byte 100 \\(truncated\\)\\); tsvsd does not start on it and changes nothing\\. Restore ${path} and ${journal} from a backup, or keep them .*: mv ${path} ${path}\\.corrupt-\\d{8}T\\d{6}Z; mv ${journal} ${journal}\\.corrupt-`,
      ),
    );
    writeFileSync(path, `{"format": "tsvs-state", ${secret}}`);
    await fails(new RegExp(`state file ${path}: not valid JSON \\(invalid JSON at line 1 column \\d+ \\(byte \\d+\\)\\)`));
    writeFileSync(path, JSON.stringify({ format: 'something', secret }));
    await fails(/not a tsvs state file/);
    // The snapshot gone while its journal holds changes.
    rmSync(path);
    await fails(new RegExp(`state file ${path}: missing, but its journal ${journal} holds changes`));
  });

  test('files over the read bound are refused without reading them', async () => {
    const path = join(tempDir(), 'state.json');
    const fh = await fsp.open(path, 'w');
    await fh.truncate(300 * 1024 * 1024); // sparse
    await fh.close();
    await assert.rejects(
      loadFresh(path),
      (e: unknown) => e instanceof TsvsError && /^state file .*: \d+ bytes, over the \d+ tsvsd reads/.test(e.detail),
    );
  });

  test('temp files: a failed write removes its own; stale ones of a crashed run are removed at start', async () => {
    const dir = tempDir();
    const path = join(dir, 'state.json');
    mkdirSync(join(dir, 'taken'));
    writeFileSync(join(dir, 'taken', 'x'), 'x');
    // rename over a non-empty directory fails after the temp file is written
    await assert.rejects(writeFileAtomic(join(dir, 'taken'), 'data'));
    assert.deepEqual(
      readdirSync(dir).filter((n) => n.endsWith('.tmp')),
      [],
    );

    const stale = ['.state.json.123.1700000000000.tmp', '.state.json.journal.4567.1700000000001.tmp'];
    const others = ['.other.json.123.1700000000000.tmp', '.state.json.tmp', 'state.json.123.1.tmp'];
    for (const n of [...stale, ...others]) writeFileSync(join(dir, n), 'partial');
    const { cfg, logs } = await loadFresh(path);
    assert.equal(cfg, null);
    for (const n of stale) assert.equal(existsSync(join(dir, n)), false, n);
    for (const n of others) assert.equal(existsSync(join(dir, n)), true, n);
    assert.equal(logs.filter((l) => /removed a temp file/.test(l)).length, 2);
  });

  test('compaction: the journal is folded into a new snapshot while changes go on, none lost or doubled', async () => {
    const path = join(tempDir(), 'state.json');
    const live = new Live(path, { compactBytes: 2048 });
    await live.open();
    const ino0 = statSync(path).ino;
    // Hold the compaction's snapshot at its fsync while more changes are journaled.
    const proto = await handleProto();
    const real = proto.sync as () => Promise<void>;
    let held = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    proto.sync = async function (this: FileHandle) {
      if (held++ === 0) await gate;
      return real.call(this);
    };
    let n = 0;
    try {
      while (held === 0 && n < 200) await live.change(batch(++n));
      assert.ok(held > 0, 'a compaction started');
      const during = n;
      for (let k = 0; k < 6; k++) await live.change(batch(++n));
      assert.equal(statSync(path).ino, ino0, 'the new snapshot is not in place yet');
      release();
      const compacted = () => live.logs.some((l) => /state file compacted/.test(l));
      for (let k = 0; k < 500 && !compacted(); k++) await new Promise((r) => setTimeout(r, 10));
      assert.ok(compacted());
      await live.change(batch(++n));
      assert.notEqual(statSync(path).ino, ino0, 'new snapshot');
      const snapSeq = (JSON.parse(readFileSync(path, 'utf8')) as { seq: number }).seq;
      assert.ok(snapSeq <= during && n - snapSeq >= 8, `the snapshot holds up to seq ${snapSeq}, the journal the ${n - snapSeq} after it`);
      const seqs = lines(`${path}.journal`)
        .slice(1)
        .map((l) => (JSON.parse(l) as { seq: number }).seq);
      assert.deepEqual(
        seqs,
        Array.from({ length: n - snapSeq }, (_, i) => snapSeq + 1 + i),
        'the new journal holds exactly the later records',
      );
    } finally {
      proto.sync = real;
    }
    await live.store.close();
    assert.deepEqual((await loadFresh(path)).cfg, expected(n));
  });

  test('a crash at any point, compactions included, loads every acknowledged change exactly once', async () => {
    // Runs a stream of changes with small compactions, and copies the directory before and
    // after every write, fsync and rename: each copy is what a kill -9 at that point leaves.
    const dir = tempDir();
    const path = join(dir, 'live', 'state.json');
    mkdirSync(join(dir, 'live'));
    const live = new Live(path, { compactBytes: 1500 });
    await live.open();
    let acked = 0;
    const points: Array<{ dir: string; acked: number; issued: number }> = [];
    let issued = 0;
    const capture = () => {
      const to = join(dir, `crash-${points.length}`);
      // File by file: a temp file renamed away while this runs is skipped (the disk could
      // hold either name at that instant; the rename's own captures cover both sides).
      mkdirSync(to, { recursive: true });
      for (const name of readdirSync(join(dir, 'live'))) {
        try {
          writeFileSync(join(to, name), readFileSync(join(dir, 'live', name)));
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        }
      }
      points.push({ dir: to, acked, issued });
    };
    const proto = await handleProto();
    const saved = { write: proto.write, writeFile: proto.writeFile, sync: proto.sync, datasync: proto.datasync, rename: fsp.rename };
    const wrap = <F extends (...a: never[]) => Promise<unknown>>(f: F) =>
      async function (this: unknown, ...a: Parameters<F>) {
        capture();
        const r = await f.apply(this, a);
        capture();
        return r;
      };
    proto.write = wrap(saved.write as never);
    proto.writeFile = wrap(saved.writeFile as never);
    proto.sync = wrap(saved.sync as never);
    proto.datasync = wrap(saved.datasync as never);
    (fsp as { rename: unknown }).rename = wrap(saved.rename);
    try {
      // Waves of concurrent batches, so that group commits and compactions overlap.
      for (let wave = 0; wave < 20; wave++) {
        const wait: Array<Promise<void>> = [];
        for (let k = 0; k < 4; k++) {
          const i = ++issued;
          wait.push(live.change(batch(i)).then(() => void (acked = Math.max(acked, i))));
        }
        await Promise.all(wait);
      }
      await live.store.close();
    } finally {
      Object.assign(proto, { write: saved.write, writeFile: saved.writeFile, sync: saved.sync, datasync: saved.datasync });
      (fsp as { rename: unknown }).rename = saved.rename;
    }
    assert.ok(live.logs.filter((l) => /state file compacted/.test(l)).length >= 3, 'several compactions ran');
    const prefixes = Array.from({ length: issued + 1 }, (_, j) => JSON.stringify(expected(j)));
    for (const p of points) {
      const { cfg } = await loadFresh(join(p.dir, 'state.json'));
      const got = JSON.stringify(cfg ?? { services: [], timeouts: expected(0).timeouts });
      // Some batches undo earlier ones, so several prefixes can give the same table.
      const js = prefixes.flatMap((t, j) => (t === got ? [j] : []));
      assert.ok(
        js.some((j) => j >= p.acked && j <= p.issued),
        `${p.dir}: loads batches 1..${js.join('|')}; acknowledged ${p.acked}, issued ${p.issued}`,
      );
      assert.deepEqual(
        readdirSync(p.dir).filter((n) => n.endsWith('.tmp')),
        [],
        'stale temp files removed at load',
      );
    }
    assert.ok(points.length > 120, `${points.length} crash points`);
  });

  test('handcrafted crash points of a compaction: snapshot seq m, journal 1..k', async () => {
    // Records 1..k in the old journal; the compaction's snapshot holds 1..m.
    const k = 9;
    const m = 6;
    const base = tempDir();
    const full = join(base, 'full', 'state.json');
    mkdirSync(join(base, 'full'));
    const a = new Live(full);
    await a.open();
    const oldSnap = readFileSync(full, 'utf8');
    for (let i = 1; i <= k; i++) await a.change(batch(i));
    const journal = lines(`${full}.journal`);
    await a.store.close();
    const jtext = (from: number, to: number) =>
      JOURNAL_HEADER +
      journal
        .slice(from, to + 1)
        .map((l) => `${l}\n`)
        .join('');
    const partSnap = join(base, 'part', 'state.json');
    mkdirSync(join(base, 'part'));
    const b = new Live(partSnap);
    await b.open();
    for (let i = 1; i <= m; i++) await b.change(batch(i));
    await b.store.save(b.table.config());
    await b.store.close();
    const newSnap = readFileSync(partSnap, 'utf8');
    assert.equal((JSON.parse(newSnap) as { seq: number }).seq, m);

    const tmp = (name: string) => `.${name}.${process.pid}.1700000000000.tmp`;
    const steps: Array<[string, Record<string, string>]> = [
      ['before the snapshot temp is written', { 'state.json': oldSnap, 'state.json.journal': jtext(1, k) }],
      [
        'snapshot temp half written',
        { 'state.json': oldSnap, 'state.json.journal': jtext(1, k), [tmp('state.json')]: newSnap.slice(0, 50) },
      ],
      ['snapshot temp written, not renamed', { 'state.json': oldSnap, 'state.json.journal': jtext(1, k), [tmp('state.json')]: newSnap }],
      ['snapshot renamed', { 'state.json': newSnap, 'state.json.journal': jtext(1, k) }],
      [
        'journal temp half written',
        { 'state.json': newSnap, 'state.json.journal': jtext(1, k), [tmp('state.json.journal')]: jtext(m + 1, k).slice(0, 60) },
      ],
      [
        'journal temp written, not renamed',
        { 'state.json': newSnap, 'state.json.journal': jtext(1, k), [tmp('state.json.journal')]: jtext(m + 1, k) },
      ],
      ['journal renamed', { 'state.json': newSnap, 'state.json.journal': jtext(m + 1, k) }],
      [
        'journal renamed, a torn append after it',
        { 'state.json': newSnap, 'state.json.journal': jtext(m + 1, k) + journal[k]!.slice(0, 10) },
      ],
      ['snapshot renamed, nothing carried', { 'state.json': newSnap, 'state.json.journal': jtext(1, m) }],
      ['new journal empty', { 'state.json': newSnap, 'state.json.journal': JOURNAL_HEADER }],
    ];
    for (const [what, files] of steps) {
      const d = mkdtempSync(join(base, 'step-'));
      for (const [n, t] of Object.entries(files)) writeFileSync(join(d, n), t);
      const { cfg } = await loadFresh(join(d, 'state.json'));
      assert.deepEqual(cfg, expected(what === 'snapshot renamed, nothing carried' || what === 'new journal empty' ? m : k), what);
      assert.deepEqual(readdirSync(d).sort(), ['state.json', 'state.json.journal'], `${what}: temp files removed`);
    }
  });

  test('a failed write fails its batches; the next change writes a whole snapshot and everything live is saved', async () => {
    const path = join(tempDir(), 'state.json');
    const live = new Live(path);
    await live.open();
    await live.change(batch(1));
    const proto = await handleProto();
    const real = proto.datasync as () => Promise<void>;
    proto.datasync = () => Promise.reject(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
    try {
      await assert.rejects(live.change(batch(2)), /EIO/);
    } finally {
      proto.datasync = real;
    }
    const ino = statSync(path).ino;
    await live.change(batch(3));
    assert.notEqual(statSync(path).ino, ino, 'recovered by a snapshot');
    await live.change(batch(4));
    await live.store.close();
    assert.ok(live.logs.some((l) => /^error could not append to the state journal/.test(l)));
    assert.deepEqual((await loadFresh(path)).cfg, expected(4));
  });

  test('the director answers NOT_SAVED "Change applied but not saved" when the save fails, and the change is live', async () => {
    const path = join(tempDir(), 'state.json');
    const store = new StateStore(path);
    const table = newTable();
    const dataplane: DataPlane = {
      name: 'test',
      methods: new Set(['masq']),
      start: async () => undefined,
      prepare: async () => undefined,
      abort: () => undefined,
      stop: async () => undefined,
    };
    const director = new Director(table, dataplane, store, pino({ level: 'silent' }));
    await director.start();
    await director.restore(batch(1));
    await store.open(() => table.config());
    await director.apply(batch(2));
    const proto = await handleProto();
    const real = proto.write as () => Promise<void>;
    proto.write = () => Promise.reject(new Error('EIO: i/o error, write'));
    const st = () => director.saveStatus()!;
    assert.equal(st().saved, true);
    try {
      await assert.rejects(director.apply(batch(5)), (e: unknown) => {
        assert.ok(e instanceof TsvsError);
        assert.equal(e.code, 'NOT_SAVED');
        assert.equal(e.status, 507);
        assert.match(e.message, /^Change applied but not saved: EIO/);
        assert.match(e.detail, new RegExp(`state file ${path}: EIO`));
        return true;
      });
    } finally {
      proto.write = real;
    }
    assert.ok(table.get(svc(5)), 'live');
    assert.equal(st().saved, false);
    assert.equal(st().unsavedChanges, 1);
    assert.deepEqual((await loadFresh(path)).cfg, expected(2), 'on disk: the batches acknowledged as saved');
    // A clean stop saves the whole live table, the unsaved change included.
    await director.stop(0);
    const saved = (await loadFresh(path)).cfg!;
    assert.deepEqual(
      saved.services.map((s) => s.addr),
      [svc(1).addr, svc(2).addr, svc(5).addr],
    );
  });

  test('running unsaved: the store says so, warns on a timer, and saves the whole live table again with no change needed', async () => {
    const path = join(tempDir(), 'state.json');
    const logs: string[] = [];
    const table = newTable();
    const store = new StateStore(path, { log: (level, msg) => logs.push(`${level} ${msg}`), retryMs: 20, retryMaxMs: 40, warnEveryMs: 0 });
    await store.open(() => table.config());
    const change = (ops: Op[]) => {
      const checked = table.validate(ops);
      table.applyAll(checked);
      return store.record(checked);
    };
    await change(batch(1));
    const proto = await handleProto();
    const real = proto.writeFile as () => Promise<void>;
    const realWrite = proto.write as () => Promise<void>;
    const enospc = () => Promise.reject(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }));
    proto.writeFile = enospc;
    proto.write = enospc;
    try {
      await assert.rejects(change(batch(2)), /ENOSPC/);
      await assert.rejects(change(batch(3)), /ENOSPC/);
      assert.equal(store.status().saved, false);
      assert.equal(store.status().unsavedChanges, 2);
      assert.match(store.status().lastError ?? '', /ENOSPC/);
      // The retries run on their own and keep saying so.
      await waitFor(() => logs.filter((l) => /still UNSAVED/.test(l)).length >= 2, 5000, 'repeated warnings');
      assert.equal(logs.filter((l) => /running UNSAVED/.test(l)).length, 1, 'one loud line when it starts');
      assert.deepEqual(
        readdirSync(dirname(path)).filter((n) => n.endsWith('.tmp')),
        [],
        'no temp file left by a failed write',
      );
    } finally {
      proto.writeFile = real;
      proto.write = realWrite;
    }
    await waitFor(() => store.status().saved, 5000, 'saved again');
    assert.ok(logs.some((l) => /saved again after \d+ s unsaved/.test(l)));
    // Without a clean stop: the files as they are hold the live table.
    assert.deepEqual((await loadFresh(path)).cfg, plain(table.config()));
    assert.deepEqual((await loadFresh(path)).cfg, expected(3));
    await store.close();
  });

  test('open() on a directory that cannot be written starts unsaved; a wrong --state path is refused', async () => {
    const dir = tempDir();
    const table = newTable();
    const proto = await handleProto();
    const real = proto.sync as () => Promise<void>;
    proto.sync = () => Promise.reject(Object.assign(new Error('EROFS: read-only file system, fsync'), { code: 'EROFS' }));
    const store = new StateStore(join(dir, 'state.json'), { retryMs: 10_000 });
    try {
      await store.open(() => table.config());
    } finally {
      proto.sync = real;
    }
    assert.equal(store.status().saved, false);
    assert.match(store.status().lastError ?? '', /EROFS/);
    await store.close();
    await assert.rejects(
      new StateStore(join(dir, 'no', 'such', 'state.json')).open(() => table.config()),
      /ENOENT/,
    );
  });
});
