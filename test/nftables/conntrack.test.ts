/** Parsing `conntrack -L -o extended` lines and `conntrack -E -o extended` events into tsvs connections (pure). */
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { parseConntrackEvent, parseConntrackLine } from '../../src/dataplane/nftables/conntrack.js';

test('a DNATed TCP entry: client, VIP, real server from the reply tuple, mark', () => {
  const e = parseConntrackLine(
    'ipv4     2 tcp      6 118 TIME_WAIT src=198.18.0.10 dst=198.18.0.1 sport=39912 dport=80 src=198.19.0.11 dst=198.18.0.10 sport=80 dport=39912 [ASSURED] mark=1 use=1',
  );
  assert.deepEqual(e, {
    af: 4,
    protocol: 'tcp',
    timeout: 118,
    state: 'TIME_WAIT',
    caddr: '198.18.0.10',
    cport: 39912,
    vaddr: '198.18.0.1',
    vport: 80,
    daddr: '198.19.0.11',
    dport: 80,
    mark: 1,
  });
});

test('UDP and IPv6 entries', () => {
  const u = parseConntrackLine(
    'ipv4     2 udp      17 29 src=198.18.0.10 dst=198.18.0.1 sport=41000 dport=5353 src=198.19.0.12 dst=198.18.0.10 sport=5353 dport=41000 mark=7 use=1',
  );
  assert.equal(u?.protocol, 'udp');
  assert.equal(u?.state, '');
  assert.equal(u?.daddr, '198.19.0.12');
  assert.equal(u?.mark, 7);
  const v6 = parseConntrackLine(
    'ipv6     10 tcp      6 431999 ESTABLISHED src=2001:db8::10 dst=2001:db8::1 sport=5000 dport=80 src=2001:db8:1::11 dst=2001:db8::10 sport=8080 dport=5000 [ASSURED] mark=3 use=1',
  );
  assert.equal(v6?.af, 6);
  assert.equal(v6?.dport, 8080);
  assert.equal(v6?.state, 'ESTABLISHED');
});

test('entries without a mark, other protocols and noise are ignored', () => {
  assert.equal(
    parseConntrackLine(
      'ipv4     2 tcp      6 10 CLOSE src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1 mark=0 use=1',
    ),
    null,
  );
  assert.equal(
    parseConntrackLine(
      'ipv4     2 icmp     1 29 src=1.1.1.1 dst=2.2.2.2 type=8 code=0 id=1 src=2.2.2.2 dst=1.1.1.1 type=0 code=0 id=1 mark=5 use=1',
    ),
    null,
  );
  assert.equal(parseConntrackLine('conntrack v1.4.7 (conntrack-tools): 5 flow entries have been shown.'), null);
  assert.equal(parseConntrackLine(''), null);
});

test('conntrack -E lines: update and destroy events carry the entry, [USERSPACE] portid and all', () => {
  const u = parseConntrackEvent(
    ' [UPDATE] ipv4     2 tcp      6 120 TIME_WAIT src=198.18.0.10 dst=198.18.0.1 sport=40354 dport=80 src=198.19.0.11 dst=198.18.0.10 sport=80 dport=40354 [ASSURED] mark=5',
  );
  assert.equal(u?.kind, 'update');
  assert.equal(u?.entry.state, 'TIME_WAIT');
  assert.equal(u?.entry.daddr, '198.19.0.11');
  assert.equal(u?.entry.mark, 5);
  const d = parseConntrackEvent(
    '[DESTROY] ipv4     2 tcp      6 119 TIME_WAIT src=198.18.0.10 dst=198.18.0.1 sport=40354 dport=80 src=198.19.0.11 dst=198.18.0.10 sport=80 dport=40354 [ASSURED] mark=5 [USERSPACE] portid=4189044313',
  );
  assert.equal(d?.kind, 'destroy');
  assert.equal(d?.entry.cport, 40354);
  // Unmarked connections and the tool's summary line are not events of tsvs's.
  assert.equal(
    parseConntrackEvent(
      '[NEW] ipv4     2 udp      17 30 src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 [UNREPLIED] src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1',
    ),
    null,
  );
  assert.equal(parseConntrackEvent('conntrack v1.4.7 (conntrack-tools): 6 flow events have been shown.'), null);
});
