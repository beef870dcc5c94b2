/**
 * The encapsulation on the wire, as root: two namespaces of this test joined by a veth,
 * the "director" end sends each golden tunnel packet through a header-included raw
 * socket (test/dr/raw-send.ts), tcpdump on the "real server" end captures it, and the
 * captured IP packet must equal the encoded bytes exactly; tcpdump's own decoder must
 * see the outer and the inner headers (addresses, protocol, ports, flags).
 *
 *   ns tsvs-tw1-S  198.19.0.1 / 2001:db8:19::1  --veth--  198.19.0.11 / 2001:db8:19::11  ns tsvs-tw2-S (tcpdump)
 */
import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decapsulate, encapsulate } from '../../src/dataplane/tunnel/encap.js';
import { privileged } from '../privileged.js';
import { tunnelCases } from './packets.js';

const sfx = (process.pid % 100000).toString(36);
const nsA = `tsvs-tw1-${sfx}`;
const nsB = `tsvs-tw2-${sfx}`;
const vA = `tsvstwa${sfx}`;
const vB = `tsvstwb${sfx}`;

function inNs(ns: string, args: string[]): string {
  const r = spawnSync('ip', ['netns', 'exec', ns, ...args], { encoding: 'utf8', timeout: 20_000 });
  if (r.status !== 0) throw new Error(`${args.join(' ')} in ${ns}: ${r.stderr}`);
  return r.stdout;
}

/** The IP packets of a pcap file (Ethernet link type). */
function pcapPackets(file: string): Buffer[] {
  if (!existsSync(file)) return [];
  const b = readFileSync(file);
  if (b.length < 24) return [];
  assert.equal(b.readUInt32LE(0), 0xa1b2c3d4, 'pcap magic (microsecond, little-endian)');
  assert.equal(b.readUInt32LE(20), 1, 'link type Ethernet');
  const out: Buffer[] = [];
  for (let off = 24; off + 16 <= b.length; ) {
    const incl = b.readUInt32LE(off + 8);
    const frame = b.subarray(off + 16, off + 16 + incl);
    const ethertype = frame.readUInt16BE(12);
    if (ethertype === 0x0800 || ethertype === 0x86dd) out.push(frame.subarray(14));
    off += 16 + incl;
  }
  return out;
}

describe('tunnel packets on the wire', privileged(['ip', 'tcpdump']), () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'tsvs-tw-'));
    spawnSync('ip', ['netns', 'add', nsA]);
    spawnSync('ip', ['netns', 'add', nsB]);
    const r = spawnSync('ip', ['link', 'add', vA, 'netns', nsA, 'type', 'veth', 'peer', 'name', vB, 'netns', nsB], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    for (const [ns, dev, a4, a6] of [
      [nsA, vA, '198.19.0.1/24', '2001:db8:19::1/64'],
      [nsB, vB, '198.19.0.11/24', '2001:db8:19::11/64'],
    ] as const) {
      inNs(ns, ['ip', 'link', 'set', 'lo', 'up']);
      inNs(ns, ['ip', 'addr', 'add', a4, 'dev', dev]);
      inNs(ns, ['ip', 'addr', 'add', a6, 'dev', dev, 'nodad']);
      inNs(ns, ['ip', 'link', 'set', dev, 'up']);
    }
  });
  after(() => {
    spawnSync('ip', ['netns', 'del', nsA]);
    spawnSync('ip', ['netns', 'del', nsB]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('every golden tunnel packet arrives byte for byte, and tcpdump decodes outer and inner headers', async () => {
    const cases = tunnelCases();
    const pcap = join(dir, 'rs.pcap');
    const dump = spawn(
      'ip',
      [
        'netns',
        'exec',
        nsB,
        'tcpdump',
        '-i',
        vB,
        '-nn',
        '-U',
        '-Z',
        'root',
        '-w',
        pcap,
        'ip proto 4 or ip proto 41 or ip proto 47 or udp port 6080 or ip6 proto 4 or ip6 proto 47 or (ip6 and udp port 6080)',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let err = '';
    dump.stderr.on('data', (b) => (err += b));
    try {
      for (let i = 0; i < 50 && !/listening on/.test(err); i++) await new Promise((r) => setTimeout(r, 100));
      assert.match(err, /listening on/, err);
      const argv = cases.flatMap((c) => [c.opts.dst.includes(':') ? '6' : '4', c.opts.dst, encapsulate(c.inner, c.opts).toString('hex')]);
      const r = spawnSync(
        'ip',
        ['netns', 'exec', nsA, process.execPath, '--import', 'tsx', join(import.meta.dirname, 'raw-send.ts'), ...argv],
        { encoding: 'utf8', timeout: 30_000, cwd: join(import.meta.dirname, '..', '..') },
      );
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(
        r.stdout.trim().split('\n').map(Number),
        cases.map((c) => encapsulate(c.inner, c.opts).length),
        'bytes sent',
      );
      // A loaded machine delays tcpdump: wait until the capture holds every packet.
      for (let i = 0; i < 50 && pcapPackets(pcap).length < cases.length; i++) await new Promise((r) => setTimeout(r, 100));
    } finally {
      dump.kill('SIGINT');
      await new Promise((r) => dump.once('exit', r));
    }
    const got = pcapPackets(pcap);
    assert.equal(got.length, cases.length, `captured ${got.length} of ${cases.length}; tcpdump: ${err}`);
    // By content: the first IPv6 packet waits for neighbour discovery and may arrive after a later IPv4 one.
    const captured = got.map((b) => b.toString('hex'));
    for (const c of cases) {
      const want = encapsulate(c.inner, c.opts);
      const at = captured.indexOf(want.toString('hex'));
      assert.ok(
        at >= 0,
        `${c.name}: no captured packet equals the encoded bytes\nwant ${want.toString('hex')}\ngot  ${captured.join('\n     ')}`,
      );
      assert.deepEqual(decapsulate(got[at]!).inner, c.inner, `${c.name}: inner packet`);
      captured[at] = '';
    }
    // tcpdump's own decoder sees the nesting (an independent parser of the same bytes).
    const text = spawnSync('tcpdump', ['-nn', '-vv', '-r', pcap], { encoding: 'utf8' }).stdout;
    assert.doesNotMatch(text, /bad cksum|incorrect/i);
    const inner4 = String.raw`IP \(tos 0x2b,CE, ttl 63, id 4660, offset 0, flags \[DF\], proto TCP \(6\), length 40\)\s+198\.18\.0\.10\.40000 > 198\.19\.0\.100\.80: Flags \[S\], cksum 0x[0-9a-f]+ \(correct\)`;
    // ipip: outer TOS 0x2a (CE became ECT(0)), TTL and DF copied, the inner header intact.
    assert.match(
      text,
      new RegExp(
        String.raw`IP \(tos 0x2a,ECT\(0\), ttl 63, id 48879, offset 0, flags \[DF\], proto IPIP \(4\), length 60\)\s+198\.19\.0\.1 > 198\.19\.0\.11: ${inner4}`,
      ),
    );
    assert.match(
      text,
      /IP \(tos 0xb8, ttl 57, id 48879, offset 0, flags \[none\], proto IPv6 \(41\), length 80\)\s+198\.19\.0\.1 > 198\.19\.0\.11: IP6 \(class 0xb8, flowlabel 0x12345, hlim 57/,
    );
    assert.match(
      text,
      new RegExp(
        String.raw`IP6 \(class 0x2a, hlim 63, next-header IPIP \(4\) payload length: 40\) 2001:db8:19::1 > 2001:db8:19::11: ${inner4}`,
      ),
    );
    // gue: UDP to the tunnel port, checksum absent or correct.
    assert.match(text, /198\.19\.0\.1\.49152 > 198\.19\.0\.11\.6080: \[no cksum\]/);
    assert.match(text, /198\.19\.0\.1\.49152 > 198\.19\.0\.11\.6080: \[udp sum ok\]/);
    assert.match(text, /2001:db8:19::1\.49152 > 2001:db8:19::11\.6080: \[udp sum ok\]/);
    // gre: with and without checksum, the inner packet decoded.
    assert.match(
      text,
      new RegExp(String.raw`proto GRE \(47\), length 64\)\s+198\.19\.0\.1 > 198\.19\.0\.11: GREv0, Flags \[none\], length 44\s+${inner4}`),
    );
    assert.match(text, new RegExp(String.raw`GREv0, Flags \[checksum present\], sum 0x[0-9a-f]+, off 0x0, length 48\s+${inner4}`));
    assert.match(
      text,
      /next-header GRE \(47\) payload length: 68\) 2001:db8:19::1 > 2001:db8:19::11: GREv0, Flags \[checksum present\].*\s+IP6 \(class 0xb8, flowlabel 0x12345, hlim 57.*Flags \[S\], cksum 0x[0-9a-f]+ \(correct\)/,
    );
  });
});
