/**
 * The netlink read-back against the real kernel, as root, in a namespace of this test's own.
 * The tools are the oracle: `conntrack -L -o extended` for the ctnetlink dump, and
 * `nft -j list counters` / `nft -j list set` for the nf_tables reads.
 *
 *   netns tsvs-ctk-PID (lo only)
 *     node child: TCP 127.0.0.1:7001 and [::1]:7001 (held open), UDP to 127.0.0.1:7002,
 *                 TCP 127.0.0.1:7003 (never marked)
 *     table inet tsvsmark, output: dport 7001 ct mark 11 (v4) / 13 (v6), dport 7002 mark 12
 *     conntrack -I: more entries (states, IPv6, unmarked)
 *     table ip tsvs / ip6 tsvs: named counters and persistence sets (nft -f)
 */
import { strict as assert } from 'node:assert';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CtEventReader } from '../../src/dataplane/nftables/ct-events.js';
import {
  conntrackAvailable,
  conntrackDeleteMark,
  conntrackDump,
  conntrackEvents,
  conntrackProblemAt,
  parseConntrackLine,
  type CtEntry,
  type CtEvent,
} from '../../src/dataplane/nftables/conntrack.js';
import { makeRunner } from '../../src/dataplane/nftables/exec.js';
import { readStats, setReadLimits, readLimits } from '../../src/dataplane/nftables/nldump.js';
import { nftCounters, nftCountersByName, nftPersistElements } from '../../src/dataplane/nftables/nft.js';
import { waitFor } from '../helper.js';
import { privileged } from '../privileged.js';

const ns = `tsvs-ctk-${process.pid % 1_000_000}`;
const nsPath = `/run/netns/${ns}`;
const run = makeRunner(ns);

function inNs(cmd: string, args: string[], input?: string): { code: number | null; out: string; err: string } {
  const r = spawnSync('ip', ['netns', 'exec', ns, cmd, ...args], {
    encoding: 'utf8',
    timeout: 30_000,
    ...(input !== undefined ? { input } : {}),
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** conntrack -I of one entry: original tuple, reply source (the real server), mark, state. */
function ctInsert(o: {
  p: 'tcp' | 'udp';
  s: string;
  d: string;
  sp: number;
  dp: number;
  r: string;
  rp: number;
  mark?: number;
  state?: string;
  t?: number;
}): void {
  const args = [
    '-I',
    '-p',
    o.p,
    '-s',
    o.s,
    '-d',
    o.d,
    '--sport',
    String(o.sp),
    '--dport',
    String(o.dp),
    '-r',
    o.r,
    '-q',
    o.s,
    '--reply-port-src',
    String(o.rp),
    '--reply-port-dst',
    String(o.sp),
    '-t',
    String(o.t ?? 300),
  ];
  if (o.mark) args.push('-m', String(o.mark));
  if (o.state) args.push('--state', o.state);
  const r = inNs('conntrack', args);
  assert.equal(r.code, 0, r.err);
}

/** The oracle: marked TCP/UDP entries as `conntrack -L -o extended` shows them. */
function oracle(): CtEntry[] {
  const r = inNs('conntrack', ['-L', '-o', 'extended']);
  assert.equal(r.code, 0, r.err);
  return r.out
    .split('\n')
    .map(parseConntrackLine)
    .filter((e): e is CtEntry => e !== null);
}

const key = (e: CtEntry) => `${e.af}|${e.protocol}|${e.caddr}|${e.cport}|${e.vaddr}|${e.vport}`;
/** Entries by tuple, timeouts aside (they tick between the two reads). */
const comparable = (es: CtEntry[]) => new Map(es.map((e) => [key(e), { ...e, timeout: 0 }]));
function assertSameEntries(got: CtEntry[], want: CtEntry[]): void {
  assert.equal(got.length, want.length, `${got.length} entries read, conntrack -L shows ${want.length}`);
  assert.deepEqual(comparable(got), comparable(want));
  const byKey = new Map(want.map((e) => [key(e), e.timeout]));
  for (const e of got)
    assert.ok(Math.abs(e.timeout - byKey.get(key(e))!) <= 2, `timeout of ${key(e)}: ${e.timeout} vs ${byKey.get(key(e))}`);
}

const TRAFFIC = `
const net = require('node:net'), dgram = require('node:dgram');
const held = [];
const serve = (host, port) => new Promise((r) => { const s = net.createServer((c) => held.push(c)); s.listen(port, host, () => r(s)); });
const connect = (host, port) => new Promise((r, j) => { const c = net.connect(port, host, () => r(c)); c.on('error', j); held.push(c); });
(async () => {
  await serve('127.0.0.1', 7001); await serve('::1', 7001); await serve('127.0.0.1', 7003);
  for (let i = 0; i < 5; i++) await connect('127.0.0.1', 7001);
  for (let i = 0; i < 3; i++) await connect('::1', 7001);
  for (let i = 0; i < 2; i++) await connect('127.0.0.1', 7003);
  const u = dgram.createSocket('udp4'); u.bind(0, '127.0.0.1');
  await new Promise((r) => u.once('listening', r));
  // The UDP server answers, so that its entries have a reply direction like a real flow.
  const srv = dgram.createSocket('udp4'); srv.on('message', (m, from) => srv.send(m, from.port, from.address));
  await new Promise((r) => srv.bind(7002, '127.0.0.1', r));
  for (let i = 0; i < 4; i++) { const c = dgram.createSocket('udp4'); await new Promise((r) => c.bind(0, '127.0.0.1', r)); c.send('x', 7002, '127.0.0.1'); held.push(c); }
  setTimeout(() => process.stdout.write('ready\\n'), 300);
})();
setInterval(() => {}, 1000);
`;

describe('netlink read-back in the kernel', privileged(['ip', 'nft', 'conntrack']), () => {
  let dir: string;
  let child: ChildProcess | null = null;
  before(async () => {
    spawnSync('ip', ['netns', 'add', ns]);
    inNs('ip', ['link', 'set', 'lo', 'up']);
    dir = mkdtempSync(join(tmpdir(), 'tsvs-ctk-'));
    const marks = join(dir, 'marks.nft');
    writeFileSync(
      marks,
      `table inet tsvsmark {
  chain out {
    type filter hook output priority 0;
    meta nfproto ipv4 tcp dport 7001 ct mark set 11
    meta nfproto ipv6 tcp dport 7001 ct mark set 13
    udp dport 7002 ct mark set 12
    udp dport 20000-29999 ct mark set 14
  }
}
`,
    );
    assert.equal(inNs('nft', ['-f', marks]).code, 0);
  });
  after(() => {
    if (child?.pid && child.exitCode === null) child.kill('SIGKILL');
    spawnSync('ip', ['netns', 'del', ns]);
    rmSync(dir, { recursive: true, force: true });
  });

  test('ctnetlink is there, and conntrackProblem says null', async () => {
    assert.equal(conntrackProblemAt(nsPath), null);
    assert.equal(await conntrackAvailable(run), true);
    assert.match(conntrackProblemAt('/run/netns/tsvs-no-such-ns') ?? '', /tsvs-no-such-ns/);
  });

  test('the dump equals conntrack -L: real TCP (v4, v6) and UDP flows plus inserted entries, unmarked ones left out', async () => {
    child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', TRAFFIC], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      child!.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
      child!.once('exit', (c) => reject(new Error(`traffic child exited (${c})`)));
    });
    ctInsert({
      p: 'tcp',
      s: '198.18.0.10',
      d: '198.18.0.1',
      sp: 40000,
      dp: 80,
      r: '198.19.0.11',
      rp: 8080,
      mark: 7,
      state: 'TIME_WAIT',
      t: 100,
    });
    ctInsert({
      p: 'tcp',
      s: '198.18.0.11',
      d: '198.18.0.1',
      sp: 40001,
      dp: 80,
      r: '198.19.0.12',
      rp: 80,
      mark: 0x80000000,
      state: 'SYN_SENT',
    });
    ctInsert({ p: 'udp', s: '2001:2::10', d: '2001:2::1', sp: 5000, dp: 53, r: '2001:2:1::11', rp: 53, mark: 0x7fffffff });
    ctInsert({ p: 'udp', s: '198.18.0.12', d: '198.18.0.1', sp: 5001, dp: 53, r: '198.19.0.11', rp: 53 });
    const got = await conntrackDump(run);
    const want = oracle();
    // 5 + 3 TCP + 4 UDP from the traffic, 3 marked insertions; port 7003 and the last insertion carry no mark.
    assert.equal(want.length, 15);
    assertSameEntries(got, want);
    assert.ok(got.some((e) => e.protocol === 'tcp' && e.af === 6 && e.state === 'ESTABLISHED' && e.mark === 13 && e.vaddr === '::1'));
    assert.ok(got.some((e) => e.protocol === 'udp' && e.mark === 12 && e.daddr === '127.0.0.1' && e.dport === 7002));
  });

  test('the kernel filters the dump by mark and mask', async () => {
    const twelve = await conntrackDump(run, { mark: { value: 12, mask: 0xffffffff } });
    assertSameEntries(
      twelve,
      oracle().filter((e) => e.mark === 12),
    );
    assert.equal(twelve.length, 4);
    // The top bit alone: NO_DEST_MARK's entry.
    const top = await conntrackDump(run, { mark: { value: 0x80000000, mask: 0x80000000 } });
    assert.deepEqual(
      top.map((e) => e.caddr),
      ['198.18.0.11'],
    );
    const v6 = await conntrackDump(run, { af: 6 });
    assertSameEntries(
      v6,
      oracle().filter((e) => e.af === 6),
    );
  });

  test('a bound on the dump stops it, counts it and logs it', async () => {
    const before = readStats.ctTruncated;
    const saved = readLimits().maxCtEntries;
    const logged: string[] = [];
    setReadLimits({ maxCtEntries: 3 }, (m) => logged.push(m));
    try {
      assert.equal((await conntrackDump(run)).length, 3);
    } finally {
      setReadLimits({ maxCtEntries: saved }, () => {});
    }
    assert.equal(readStats.ctTruncated, before + 1);
    assert.match(logged[0] ?? '', /stopped at 3 entries/);
  });

  test('delete by mark removes exactly that mark, in both families', async () => {
    const all = oracle();
    const n = await conntrackDeleteMark(run, 12);
    assert.equal(n, 4);
    const left = oracle();
    assert.equal(left.filter((e) => e.mark === 12).length, 0);
    assertSameEntries(
      left,
      all.filter((e) => e.mark !== 12),
    );
    assert.equal(await conntrackDeleteMark(run, 12), 0, 'nothing left to delete');
    ctInsert({ p: 'udp', s: '2001:2::20', d: '2001:2::1', sp: 5002, dp: 53, r: '2001:2:1::12', rp: 53, mark: 99 });
    ctInsert({ p: 'udp', s: '198.18.0.20', d: '198.18.0.1', sp: 5002, dp: 53, r: '198.19.0.12', rp: 53, mark: 99 });
    assert.equal(await conntrackDeleteMark(run, 99), 2);
    assert.equal(oracle().filter((e) => e.mark === 99).length, 0);
  });

  test('events: new, update and destroy of marked entries arrive; unmarked ones never reach the socket', async () => {
    const got: CtEvent[] = [];
    const r = new CtEventReader({ nsPath, onEvents: (e) => got.push(...e) });
    let allParsed = 0;
    const all = new CtEventReader({ nsPath, markedOnly: false, onEvents: (e) => (allParsed += e.length) });
    await r.start();
    await all.start();
    try {
      ctInsert({
        p: 'tcp',
        s: '198.18.0.30',
        d: '198.18.0.1',
        sp: 41000,
        dp: 80,
        r: '198.19.0.11',
        rp: 80,
        mark: 21,
        state: 'ESTABLISHED',
      });
      ctInsert({ p: 'tcp', s: '198.18.0.31', d: '198.18.0.1', sp: 41001, dp: 80, r: '198.19.0.11', rp: 80, state: 'ESTABLISHED' });
      assert.equal(inNs('conntrack', ['-U', '-p', 'tcp', '-s', '198.18.0.30', '--sport', '41000', '-t', '50']).code, 0);
      assert.equal(inNs('conntrack', ['-D', '-p', 'tcp', '-s', '198.18.0.30']).code, 0);
      assert.equal(inNs('conntrack', ['-D', '-p', 'tcp', '-s', '198.18.0.31']).code, 0);
      await waitFor(() => got.length >= 3 && all.rawMessages >= 5, 5000, 'events');
      const mine = got.filter((e) => e.entry.caddr === '198.18.0.30');
      assert.deepEqual(
        mine.map((e) => e.kind),
        ['new', 'update', 'destroy'],
        JSON.stringify(mine),
      );
      assert.equal(mine[0]!.entry.daddr, '198.19.0.11');
      assert.equal(mine[0]!.entry.state, 'ESTABLISHED');
      assert.equal(mine[0]!.entry.mark, 21);
      assert.ok(mine[1]!.entry.timeout <= 50);
      assert.ok(!got.some((e) => e.entry.caddr === '198.18.0.31'));
      // The filtered socket received only marked entries' messages (each one parses into an
      // event); the unfiltered one also the unmarked entry's new and destroy.
      assert.equal(r.rawMessages, got.length);
      assert.ok(all.rawMessages - allParsed >= 2, `unfiltered reader: ${all.rawMessages} messages, ${allParsed} events`);
    } finally {
      await r.stop();
      await all.stop();
    }
  });

  test('conntrackEvents delivers events to the caller and stops', async () => {
    const got: CtEvent[] = [];
    let ready = false;
    const h = conntrackEvents(ns, (e) => got.push(e), undefined, { onReady: () => (ready = true) });
    try {
      await waitFor(() => ready, 10_000, 'reader ready');
      ctInsert({ p: 'udp', s: '198.18.0.40', d: '198.18.0.1', sp: 6000, dp: 53, r: '198.19.0.11', rp: 53, mark: 22 });
      await waitFor(() => got.some((e) => e.kind === 'new' && e.entry.caddr === '198.18.0.40'), 5000, 'new event');
    } finally {
      h.stop();
    }
  });

  test('an overflowing event socket reports lost events (resync signal)', async () => {
    let lost = 0;
    const r = new CtEventReader({ nsPath, rcvBufBytes: 1, holdMs: 2000, onEvents: () => {}, onLost: (n) => (lost += n) });
    await r.start();
    try {
      // 2,000 marked UDP flows at once, while the reader holds off: far more than a minimal buffer takes.
      const burst = `const d=require('node:dgram').createSocket('udp4');let n=0;d.bind(0,'127.0.0.1',()=>{for(let p=20000;p<22000;p++)d.send('x',p,'127.0.0.1',()=>{if(++n===2000)d.close()})})`;
      assert.equal(inNs(process.execPath, ['-e', burst]).code, 0);
      await waitFor(() => lost > 0, 8000, 'lost events reported');
    } finally {
      await r.stop();
    }
    assert.ok(lost > 100, `lost ${lost}`);
  });

  test('a main thread that falls behind bounds the reader: it stops reading, and the kernel drops and counts', async () => {
    let lost = 0;
    let delivered = 0;
    const r = new CtEventReader({
      nsPath,
      rcvBufBytes: 64 * 1024,
      maxBatch: 1,
      maxInflight: 1,
      onEvents: (e) => (delivered += e.length),
      onLost: (n) => (lost += n),
    });
    await r.start();
    try {
      // spawnSync blocks this thread for the whole burst: the reader may hand over one batch.
      const burst = `const d=require('node:dgram').createSocket('udp4');let n=0;d.bind(0,'127.0.0.1',()=>{for(let p=22000;p<24000;p++)d.send('x',p,'127.0.0.1',()=>{if(++n===2000)d.close()})})`;
      assert.equal(inNs(process.execPath, ['-e', burst]).code, 0);
      await waitFor(() => lost > 0, 8000, 'lost events reported');
      await new Promise((res) => setTimeout(res, 300));
    } finally {
      await r.stop();
    }
    // What a 64 KiB socket holds plus one batch (about 50 here), not the 2,000 events.
    assert.ok(delivered < 200, `delivered ${delivered}`);
    assert.ok(lost + delivered >= 1900, `lost ${lost}, delivered ${delivered}`);
  });

  test('named counters over netlink equal nft -j list counters; by name only those asked for', async () => {
    const lines = ['table ip tsvs {'];
    for (let m = 1; m <= 400; m++)
      lines.push(
        `counter conns${m} { packets ${m} bytes ${m * 1000} }`,
        `counter in${m} { packets ${m * 7} bytes ${m * 7000} }`,
        `counter out${m} {}`,
      );
    lines.push(
      'counter big { packets 123456789012 bytes 98765432109876 }',
      '}',
      'table ip6 tsvs {',
      'counter conns5 { packets 3 bytes 4 }',
      '}',
      'table ip other {',
      'counter conns1 { packets 9 bytes 9 }',
      '}',
    );
    const f = join(dir, 'counters.nft');
    writeFileSync(f, lines.join('\n'));
    const loaded = inNs('nft', ['-f', f]);
    assert.equal(loaded.code, 0, loaded.err);
    const want = new Map<string, { packets: number; bytes: number }>();
    for (const fam of ['ip', 'ip6']) {
      const doc = JSON.parse(inNs('nft', ['-j', 'list', 'counters', 'table', fam, 'tsvs']).out) as {
        nftables: Array<{ counter?: { name: string; packets: number; bytes: number } }>;
      };
      for (const o of doc.nftables)
        if (o.counter) want.set(`${fam}/${o.counter.name}`, { packets: o.counter.packets, bytes: o.counter.bytes });
    }
    assert.equal(want.size, 1202);
    assert.deepEqual(await nftCounters(run), want);
    const some = await nftCountersByName(run, 'ip', ['in7', 'big', 'nope', 'conns400']);
    assert.deepEqual(
      some,
      new Map([
        ['ip/in7', { packets: 49, bytes: 49000 }],
        ['ip/big', { packets: 123456789012, bytes: 98765432109876 }],
        ['ip/conns400', { packets: 400, bytes: 400000 }],
      ]),
    );
    // More names than one send carries.
    const names = Array.from({ length: 2500 }, (_, i) => `conns${(i % 400) + 1}`);
    assert.equal((await nftCountersByName(run, 'ip', names)).size, 400);
    const byName = await nftCounters(run, {
      ip: [...want.keys()].filter((k) => k.startsWith('ip/')).map((k) => k.slice(3)),
      ip6: ['conns5'],
    });
    assert.deepEqual(byName, want);
    assert.equal((await nftCountersByName(run, 'ip6', ['conns5', 'conns6'])).size, 1);
  });

  test('persistence set elements over netlink equal nft -j list set', async () => {
    const f = join(dir, 'sets.nft');
    writeFileSync(
      f,
      `table ip tsvs {
  set persist1_300_32 { type ipv4_addr; flags timeout; timeout 300s; elements = { 198.18.0.10 timeout 100s, 198.18.0.11, 198.18.1.0 timeout 20s }; }
}
table ip6 tsvs {
  set persist2_60_64 { type ipv6_addr; flags timeout; timeout 60s; elements = { 2001:2::, 2001:2:0:1:: timeout 30s }; }
}
`,
    );
    const loaded = inNs('nft', ['-f', f]);
    assert.equal(loaded.code, 0, loaded.err);
    for (const [fam, set] of [
      ['ip', 'persist1_300_32'],
      ['ip6', 'persist2_60_64'],
    ] as const) {
      const got = await nftPersistElements(run, fam, [set, 'persist_missing']);
      const doc = JSON.parse(inNs('nft', ['-j', 'list', 'set', fam, 'tsvs', set]).out) as {
        nftables: Array<{ set?: { elem?: Array<{ elem: { val: string; expires: number } } | string> } }>;
      };
      const want = doc.nftables.flatMap((o) => o.set?.elem ?? []).map((e) => (typeof e === 'string' ? { val: e, expires: 0 } : e.elem));
      assert.equal(got.length, want.length);
      assert.deepEqual(got.map((e) => e.addr).sort(), want.map((e) => e.val).sort());
      for (const w of want) {
        const g = got.find((e) => e.addr === w.val)!;
        assert.equal(g.set, set);
        assert.ok(Math.abs(g.expires - w.expires) <= 1.5, `${w.val}: ${g.expires} vs nft ${w.expires}`);
      }
    }
  });

  test('missing tables read as empty', async () => {
    assert.equal(inNs('nft', ['delete', 'table', 'ip', 'tsvs']).code, 0);
    assert.equal(inNs('nft', ['delete', 'table', 'ip6', 'tsvs']).code, 0);
    assert.equal((await nftCounters(run)).size, 0);
    assert.equal((await nftCountersByName(run, 'ip', ['conns1'])).size, 0);
    assert.deepEqual(await nftPersistElements(run, 'ip', ['persist1_300_32']), []);
  });
});
