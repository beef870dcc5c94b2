/**
 * tsvsd with VRRP: it refuses to start when raw sockets are not available (here: not root),
 * and SIGHUP applies VRRP changes (priority, VIPs, VRID, removal) while running, in a
 * network namespace of its own (privileged).
 *
 *   ns tsvs-hv-S:  tsvsvaS <-veth-> tsvsvbS   10.9.0.1/24 on tsvsvaS, VIPs 10.9.0.100.. float
 */
import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { haTsvsdCommand } from './halab.js';
import { privileged } from '../privileged.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(25);
  }
}

const yaml = (o: { priority?: number; vrid?: number; vips?: string[]; vrrp?: boolean }) =>
  o.vrrp === false
    ? 'services: []\n'
    : `vrrp:
  - name: VI_9
    interface: IFACE
    virtual_router_id: ${o.vrid ?? 9}
    priority: ${o.priority ?? 100}
    advert_int: 0.1
    virtual_ipaddress: [${(o.vips ?? ['10.9.0.100/24']).join(', ')}]
`;

describe('tsvsd refuses VRRP without raw sockets', privileged(['setpriv']), () => {
  test('as an unprivileged user: exit 1 and a message naming the cause', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsvs-vrrp-'));
    try {
      chmodSync(dir, 0o777);
      const conf = join(dir, 'v.yaml');
      writeFileSync(conf, yaml({}).replace('IFACE', 'lo'));
      chmodSync(conf, 0o644);
      const [cmd, ...args] = haTsvsdCommand();
      const r = spawnSync(
        'setpriv',
        ['--reuid=65534', '--regid=65534', '--clear-groups', cmd!, ...args, '--config', conf, '--socket', join(dir, 's.sock')],
        {
          encoding: 'utf8',
          timeout: 60_000,
          env: { ...process.env, HOME: dir },
        },
      );
      assert.equal(r.status, 1, r.stderr);
      assert.match(
        r.stderr,
        /VRRP cannot run, so tsvsd will not start \(.*v\.yaml configures 1 vrrp instance\(s\)\): opening a raw socket \(protocol 112\) was refused .*run tsvsd as root or give it CAP_NET_RAW/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('tsvsd applies VRRP changes on SIGHUP', privileged(['ip']), () => {
  const S = `v${process.pid.toString(36).slice(-5)}`;
  const ns = `tsvs-hv-${S}`;
  const ifa = `tsvsva${S}`;
  const dir = mkdtempSync(join(tmpdir(), 'tsvs-vrrp-'));
  const conf = join(dir, 'v.yaml');
  const sock = join(dir, 's.sock');
  let proc: ReturnType<typeof spawn> | null = null;
  let out = '';
  const ip = (...a: string[]) => spawnSync('ip', ['netns', 'exec', ns, 'ip', ...a], { encoding: 'utf8' }).stdout;
  const has = (addr: string) => ip('-o', 'addr', 'show').includes(` ${addr}/`);
  const api = async (path: string) => {
    const r = spawnSync('curl', ['-s', '--unix-socket', sock, `http://x${path}`], { encoding: 'utf8' });
    return JSON.parse(r.stdout) as {
      configured: boolean;
      instances: Array<{ state: string; priority: number; vrid: number; vips: string[]; transitions: number }>;
    };
  };
  const write = (o: Parameters<typeof yaml>[0]) => writeFileSync(conf, yaml(o).replace('IFACE', ifa));

  before(async () => {
    spawnSync('ip', ['netns', 'add', ns]);
    spawnSync('ip', ['link', 'add', ifa, 'netns', ns, 'type', 'veth', 'peer', 'name', `tsvsvb${S}`, 'netns', ns]);
    ip('link', 'set', ifa, 'up');
    ip('link', 'set', `tsvsvb${S}`, 'up');
    ip('link', 'set', 'lo', 'up');
    ip('addr', 'add', '10.9.0.1/24', 'dev', ifa);
    write({});
    const [cmd, ...args] = haTsvsdCommand();
    proc = spawn('ip', ['netns', 'exec', ns, cmd!, ...args, '--config', conf, '--socket', sock], { stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    await until(() => /tsvsd started/.test(out), 30_000, 'tsvsd');
  });
  after(() => {
    proc?.kill('SIGKILL');
    spawnSync('ip', ['netns', 'del', ns]);
    rmSync(dir, { recursive: true, force: true });
  });

  test('alone on its link it becomes MASTER and holds the VIP', async () => {
    await until(async () => (await api('/v1/vrrp')).instances[0]?.state === 'master' && has('10.9.0.100'), 5000, 'MASTER');
  });

  test('priority and VIP list change in place: no transition, the new VIP added, the dropped one removed', async () => {
    const transitions = async () => (await api('/v1/vrrp')).instances[0]!.transitions;
    const before = await transitions();
    write({ priority: 120, vips: ['10.9.0.101/24'] });
    proc!.kill('SIGHUP');
    await until(async () => (await api('/v1/vrrp')).instances[0]?.priority === 120, 5000, 'priority 120');
    await until(() => has('10.9.0.101') && !has('10.9.0.100'), 3000, 'VIPs swapped');
    assert.equal(await transitions(), before);
    // Logs reach the pipe in chunks: wait for the line.
    await until(() => /reload: vrrp instance VI_9: updated/.test(out), 5000, 'the reload log line');
  });

  test('a new VRID restarts the instance (priority 0 from the old one); removing vrrp stops it and drops the VIPs', async () => {
    write({ priority: 120, vrid: 10, vips: ['10.9.0.101/24'] });
    proc!.kill('SIGHUP');
    await until(async () => (await api('/v1/vrrp')).instances[0]?.vrid === 10, 5000, 'VRID 10');
    await until(() => /vrrp instance VI_9: restarted \(interface, VRID or peers changed\)/.test(out), 5000, 'the restart log line');
    await until(async () => (await api('/v1/vrrp')).instances[0]?.state === 'master' && has('10.9.0.101'), 5000, 'MASTER again');
    write({ vrrp: false });
    proc!.kill('SIGHUP');
    await until(async () => !(await api('/v1/vrrp')).configured, 5000, 'no VRRP');
    assert.equal(has('10.9.0.101'), false);
    await until(() => /reload: vrrp instance VI_9: removed/.test(out), 5000, 'the removal log line');
  });

  test('SIGTERM exits 0', async () => {
    write({});
    proc!.kill('SIGHUP');
    await until(() => has('10.9.0.100'), 5000, 'VRRP back');
    const code = await new Promise<number | null>((res) => {
      proc!.once('exit', (c) => res(c));
      proc!.kill('SIGTERM');
    });
    assert.equal(code, 0);
    assert.equal(has('10.9.0.100'), false, 'the VIP is removed on a graceful stop');
  });

  test('userspace plane with a service on a VIP: refused without ip_nonlocal_bind, started with it', async () => {
    const conf2 = join(dir, 'u.yaml');
    writeFileSync(
      conf2,
      `services:\n  - { address: 10.9.0.200, port: 8080, scheduler: rr, real_servers: [{ address: 10.9.0.1, port: 9 }] }\n` +
        yaml({ vrid: 20, vips: ['10.9.0.200/24'] }).replace('IFACE', ifa),
    );
    const [cmd, ...args] = haTsvsdCommand();
    const run = (timeoutMs: number) =>
      new Promise<{ code: number | null; text: string }>((res) => {
        let text = '';
        let signalled = false;
        const p = spawn('ip', ['netns', 'exec', ns, cmd!, ...args, '--config', conf2, '--socket', join(dir, 'u.sock')], {
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        p.stdout!.on('data', (d: Buffer) => {
          text += d.toString();
          // runDaemon installs its signal handlers just after this line is logged.
          if (!signalled && /tsvsd started/.test(text)) {
            signalled = true;
            setTimeout(() => p.kill('SIGTERM'), 500);
          }
        });
        p.stderr!.on('data', (d: Buffer) => (text += d.toString()));
        const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
        p.once('exit', (code) => {
          clearTimeout(t);
          res({ code, text });
        });
      });
    spawnSync('ip', ['netns', 'exec', ns, 'sh', '-c', 'echo 0 > /proc/sys/net/ipv4/ip_nonlocal_bind']);
    const refused = await run(30_000);
    assert.equal(refused.code, 1, refused.text);
    assert.match(refused.text, /service 10\.9\.0\.200:8080 is on a VRRP virtual address: .*net\.ipv4\.ip_nonlocal_bind=1/);
    spawnSync('ip', ['netns', 'exec', ns, 'sh', '-c', 'echo 1 > /proc/sys/net/ipv4/ip_nonlocal_bind']);
    const ok = await run(30_000);
    assert.equal(ok.code, 0, ok.text);
    assert.match(ok.text, /tsvsd started/);
  });
});
