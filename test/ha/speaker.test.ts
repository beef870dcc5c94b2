/**
 * The speaker with a fake transport and fake host (no root): what it sends, the order of the
 * transition side effects and hooks, stale VIP cleanup, tracking (interfaces, scripts, tsvs
 * health) with keepalived's weights, notify arguments, drop counting, reload and shutdown.
 */
import { strict as assert } from 'node:assert';
import { afterEach, describe, test } from 'node:test';
import { pino } from 'pino';
import type { VrrpInstanceConfig, VrrpScriptConfig } from '../../src/config/model.js';
import type { Vip } from '../../src/ha/model.js';
import type { LinkInfo, NetOps } from '../../src/ha/netops.js';
import { decodeIpv4Packet, encodeIpv4Packet, VRRP_GROUP4 } from '../../src/ha/packet.js';
import type { PacketHandler, VrrpTransport } from '../../src/ha/rawsock.js';
import { VrrpSpeaker, type SpeakerDeps } from '../../src/ha/speaker.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean, ms = 3000, what = 'condition'): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

class FakeNet implements NetOps {
  events: string[] = [];
  links_ = new Map<string, LinkInfo>([
    ['eth0', { name: 'eth0', index: 2, up: true, mac: '02:00:00:00:00:02', addrs4: [{ addr: '10.0.0.2', prefix: 24, secondary: false }] }],
    ['eth1', { name: 'eth1', index: 3, up: true, addrs4: [] }],
  ]);
  scriptResult = new Map<string, number>();
  runs: Array<{ cmd: string; args: string[] }> = [];
  addDelayMs = 0;
  async links() {
    return new Map([...this.links_].map(([k, v]) => [k, { ...v, addrs4: [...v.addrs4] }]));
  }
  async addVip(dev: string, vip: Vip) {
    if (this.addDelayMs) await sleep(this.addDelayMs);
    this.events.push(`add ${vip.addr} ${vip.dev ?? dev}`);
  }
  async delVip(dev: string, vip: Vip) {
    this.events.push(`del ${vip.addr} ${vip.dev ?? dev}`);
  }
  garp(dev: string, addr: string) {
    this.events.push(`garp ${addr} ${dev}`);
  }
  async run(cmd: string, args: string[]) {
    this.runs.push({ cmd, args });
    return this.scriptResult.get(cmd) ?? 0;
  }
  close() {}
}

class FakeTransport implements VrrpTransport {
  sent: Array<{ ifname: string; dst: string; priority: number; src: string; ttl: number }> = [];
  constructor(readonly deliver: PacketHandler) {}
  open() {}
  send(ifname: string, packet: Buffer, dst: string) {
    const d = decodeIpv4Packet(packet);
    assert.ok(d.ok, 'the speaker sends valid packets');
    this.sent.push({ ifname, dst, priority: d.advert.priority, src: d.advert.src, ttl: d.advert.ttl });
  }
  async flush() {}
  close() {}
}

const inst = (o: Partial<VrrpInstanceConfig> = {}): VrrpInstanceConfig => ({
  name: 'VI_1',
  interface: 'eth0',
  virtualRouterId: 7,
  priority: 100,
  advertInt: 0.05,
  virtualIpaddress: ['10.0.0.100/24', '10.1.0.1/24 dev eth1'],
  raw: {},
  ...o,
});

let current: VrrpSpeaker | null = null;
function make(extra: Partial<SpeakerDeps> = {}) {
  const net = new FakeNet();
  let tr!: FakeTransport;
  const hookLog: string[] = [];
  const sp = new VrrpSpeaker({
    log: pino({ level: 'silent' }),
    net,
    transport: (p) => (tr = new FakeTransport(p)),
    pollMs: 20,
    hooks: {
      beforeMaster: async (n) => void net.events.push(`beforeMaster ${n}`),
      afterMaster: async (n) => void net.events.push(`afterMaster ${n}`),
      afterBackup: async (n) => void net.events.push(`afterBackup ${n}`),
    },
    ...extra,
  });
  current = sp;
  return { sp, net, tr: () => tr, hookLog };
}
afterEach(async () => {
  await current?.stop();
  current = null;
});

const state = (sp: VrrpSpeaker, i = 0) => sp.status().instances[i]!.state;
/** An advert from a peer, as the raw socket would deliver it. */
const peer = (tr: FakeTransport, priority: number, o: { vrid?: number; src?: string; ttl?: number; addrs?: string[] } = {}) =>
  tr.deliver(
    'eth0',
    encodeIpv4Packet(
      { vrid: o.vrid ?? 7, priority, maxAdverIntCs: 5, addrs: o.addrs ?? ['10.0.0.100', '10.1.0.1'] },
      o.src ?? '10.0.0.3',
      VRRP_GROUP4,
      1,
      o.ttl ?? 255,
    ),
  );

describe('VRRP speaker', () => {
  test('no master heard: MASTER; adverts from the primary address, TTL 255, to 224.0.0.18; hooks and VIPs in order', async () => {
    const { sp, net, tr } = make();
    await sp.start([inst()], []);
    assert.equal(state(sp), 'backup');
    await until(() => state(sp) === 'master' && net.events.includes('afterMaster VI_1'));
    assert.deepEqual(net.events, [
      'beforeMaster VI_1',
      'add 10.0.0.100 eth0',
      'add 10.1.0.1 eth1',
      'garp 10.0.0.100 eth0',
      'garp 10.1.0.1 eth1',
      'afterMaster VI_1',
    ]);
    await until(() => tr().sent.length >= 3);
    assert.deepEqual(tr().sent[0], { ifname: 'eth0', dst: VRRP_GROUP4, priority: 100, src: '10.0.0.2', ttl: 255 });
  });

  test('a higher-priority advert: BACKUP, VIPs removed, then afterBackup; notify scripts get keepalived arguments', async () => {
    const { sp, net, tr } = make();
    await sp.start([inst({ notify: '/bin/n "a b"', notifyBackup: '/bin/nb' })], []);
    await until(() => state(sp) === 'master' && net.events.includes('afterMaster VI_1'));
    net.events = [];
    peer(tr(), 200);
    await until(() => net.events.includes('afterBackup VI_1'));
    assert.equal(state(sp), 'backup');
    assert.deepEqual(net.events, ['del 10.0.0.100 eth0', 'del 10.1.0.1 eth1', 'afterBackup VI_1']);
    assert.equal(sp.status().instances[0]!.master, '10.0.0.3');
    await until(() => net.runs.some((r) => r.cmd === '/bin/nb'));
    assert.ok(net.runs.some((r) => r.cmd === '/bin/n "a b"' && r.args.join(' ') === 'INSTANCE VI_1 MASTER 100'));
    assert.ok(net.runs.some((r) => r.cmd === '/bin/n "a b"' && r.args.join(' ') === 'INSTANCE VI_1 BACKUP 100'));
  });

  test('a master lost while beforeMaster ran: the VIPs are not added', async () => {
    const { sp, net, tr } = make();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    (sp as unknown as { deps: SpeakerDeps }).deps.hooks = { beforeMaster: () => gate };
    await sp.start([inst()], []);
    await until(() => state(sp) === 'master');
    peer(tr(), 200);
    assert.equal(state(sp), 'backup');
    release();
    await sleep(50);
    assert.ok(!net.events.some((e) => e.startsWith('add')), net.events.join());
  });

  test('stale VIPs on the interface are removed at start, before anything else', async () => {
    const { sp, net } = make();
    net.links_.get('eth0')!.addrs4.push({ addr: '10.0.0.100', prefix: 24, secondary: true });
    await sp.start([inst()], []);
    assert.equal(net.events[0], 'del 10.0.0.100 eth0');
  });

  test('invalid packets are counted by reason and change nothing', async () => {
    const { sp, tr } = make();
    await sp.start([inst({ priority: 50 })], []);
    peer(tr(), 250, { ttl: 64 });
    peer(tr(), 250, { vrid: 9 });
    peer(tr(), 250, { addrs: ['10.0.0.100'] });
    peer(tr(), 250, { src: '10.0.0.2' }); // our own address
    const s = sp.status();
    assert.deepEqual(s.dropped, { ttl: 1, vrid: 1 });
    assert.deepEqual(s.instances[0]!.dropped, { 'addr-count': 1, own: 1 });
    assert.equal(s.instances[0]!.advertsReceived, 0);
    await until(() => state(sp) === 'master'); // nothing valid was heard
  });

  test('track_interface: weight 0 down -> FAULT with priority 0 sent; negative weight lowers the priority', async () => {
    const { sp, net, tr } = make();
    net.links_.set('eth5', { name: 'eth5', index: 5, up: true, addrs4: [] });
    net.links_.set('eth6', { name: 'eth6', index: 6, up: true, addrs4: [] });
    await sp.start(
      [
        inst({
          trackInterface: [
            { name: 'eth5', weight: 0 },
            { name: 'eth6', weight: -30 },
          ],
        }),
      ],
      [],
    );
    await until(() => state(sp) === 'master');
    net.links_.get('eth6')!.up = false;
    await until(() => sp.status().instances[0]!.priority === 70);
    net.links_.get('eth5')!.up = false;
    await until(() => state(sp) === 'fault');
    assert.match(sp.status().instances[0]!.reason!, /tracked interface eth5 down/);
    assert.equal(tr().sent.at(-1)!.priority, 0);
    await until(() => net.events.includes('afterBackup VI_1'));
    net.links_.get('eth5')!.up = true;
    await until(() => state(sp) !== 'fault');
  });

  test('vrrp_script with fall/rise and weight; tsvs health tracking; effective priority clamped to 1..254', async () => {
    let down: string[] = [];
    const { sp, net } = make({ healthDown: () => down });
    const chk: VrrpScriptConfig = {
      name: 'chk',
      script: '/bin/chk',
      interval: 0.02,
      timeout: 1,
      weight: -20,
      rise: 2,
      fall: 2,
      initFail: false,
    };
    const chk2: VrrpScriptConfig = { ...chk, name: 'chk2', script: '/bin/chk2', weight: 0 };
    const cfg = (priority: number) =>
      inst({ priority, trackScript: [{ name: 'chk' }, { name: 'chk2', weight: 30 }], trackHealth: { weight: -100 } });
    const prio = () => sp.status().instances[0]!.priority;
    await sp.start([cfg(200)], [chk, chk2]);
    await until(() => prio() === 230, 3000, '200 + 30 (chk2 up)');
    net.scriptResult.set('/bin/chk', 1);
    await until(() => prio() === 210, 3000, '- 20 after chk fails twice');
    down = ['TCP 10.0.0.100:80'];
    await until(() => prio() === 110, 3000, '- 100 while a service has no real server up');
    down = [];
    net.scriptResult.set('/bin/chk', 0);
    await until(() => prio() === 230, 3000, 'all well again');
    await sp.reload([cfg(250)], [chk, chk2]);
    await until(() => prio() === 254, 3000, '250 + 30 clamped to 254');
    // Tracked without a weight, chk2 has its own (0): failing is FAULT.
    await sp.reload([inst({ priority: 250, trackScript: [{ name: 'chk2' }] })], [chk, chk2]);
    net.scriptResult.set('/bin/chk2', 1);
    await until(() => state(sp) === 'fault', 3000, 'FAULT');
    assert.match(sp.status().instances[0]!.reason!, /vrrp_script chk2 failed/);
  });

  test('unicast peers: one advert per peer from unicast_src_ip', async () => {
    const { sp, tr } = make();
    await sp.start([inst({ unicastSrcIp: '10.0.0.2', unicastPeer: ['10.0.0.3', '10.0.0.4'] })], []);
    await until(() => tr().sent.length >= 2);
    assert.deepEqual(
      tr()
        .sent.slice(0, 2)
        .map((s) => [s.dst, s.src]),
      [
        ['10.0.0.3', '10.0.0.2'],
        ['10.0.0.4', '10.0.0.2'],
      ],
    );
  });

  test('reload: a VIP added while master is added (and announced) alone; a removed instance sends priority 0', async () => {
    const { sp, net, tr } = make();
    await sp.start([inst()], []);
    await until(() => net.events.includes('afterMaster VI_1'));
    net.events = [];
    const changes = await sp.reload([inst({ virtualIpaddress: ['10.0.0.100/24', '10.1.0.1/24 dev eth1', '10.0.0.101/24'] })], []);
    assert.deepEqual(changes, ['vrrp instance VI_1: updated']);
    await until(() => net.events.length >= 2);
    assert.deepEqual(net.events, ['add 10.0.0.101 eth0', 'garp 10.0.0.101 eth0']);
    const n = tr().sent.length;
    assert.deepEqual(await sp.reload([], []), ['vrrp instance VI_1: removed']);
    assert.equal(tr().sent[n]!.priority, 0);
    assert.ok(net.events.includes('del 10.0.0.101 eth0'));
    assert.deepEqual(sp.status().instances, []);
  });

  test('stop: priority 0 and the VIPs removed', async () => {
    const { sp, net, tr } = make();
    await sp.start([inst()], []);
    await until(() => net.events.includes('afterMaster VI_1'));
    await sp.stop();
    assert.equal(tr().sent.at(-1)!.priority, 0);
    assert.deepEqual(net.events.slice(-3), ['del 10.0.0.100 eth0', 'del 10.1.0.1 eth1', 'afterBackup VI_1']);
  });

  test('refused: a missing interface, and IPv6 (no hop limit from the raw socket)', async () => {
    const { sp } = make();
    const detail = (re: RegExp) => (e: { detail?: string }) => re.test(e.detail ?? '');
    await assert.rejects(sp.start([inst({ interface: 'nope0' })], []), detail(/vrrp instance VI_1: interface nope0 does not exist/));
    await sp.stop();
    const b = make();
    await assert.rejects(
      b.sp.start([inst({ virtualIpaddress: ['2001:db8::1/64'] })], []),
      detail(/vrrp instance VI_1: IPv6 VRRP is not supported/),
    );
  });
});
