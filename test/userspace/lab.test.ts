/**
 * The userspace plane keeping the client's address, in network namespaces (root):
 *
 *     ns tsvsuc-S               ns tsvsud-S (director)                 ns tsvsur-S
 *   +--------------+      +-------------------------------+      +----------------------+
 *   | 198.18.0.10  |-veth-| 198.18.0.1 (VIP) 198.19.0.1   |-veth-| 198.19.0.11          |
 *   | curl         |      | tsvsd --workers N (userspace) |      | nginx :80 plain      |
 *   +--------------+      | TSVS_TRANSPARENT_SETUP=1      |      |       :81 proxy_protocol
 *                         +-------------------------------+      | default via 198.19.0.1
 *                                                                +----------------------+
 *
 * Services, from a YAML config: VIP:80 `transparent: true` -> :80; VIP:81 `proxy_protocol:
 * v1` -> :81; VIP:82 `proxy_protocol: v2` -> :81. nginx reads PROXY v1 and v2 on :81
 * (`listen ... proxy_protocol; set_real_ip_from 198.19.0.1; real_ip_header proxy_protocol`)
 * and logs `$remote_addr $proxy_protocol_addr`; every line must show the client 198.18.0.10.
 * The reply routing (nft table inet tsvs, ip rule, local route) exists while tsvsd runs
 * and is gone after SIGTERM.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { privileged } from '../privileged.js';
import { waitFor } from '../helper.js';

const ROOT = resolve(import.meta.dirname, '../..');
const gate = privileged(['ip', 'nft', 'nginx', 'curl']);

function sh(cmd: string, args: string[], allowFail = false): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 20_000 });
  if (!allowFail && r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.error?.message || `exit ${r.status}`}`);
  return r.stdout ?? '';
}
const inNs = (ns: string, cmd: string, args: string[], allowFail = false) => sh('ip', ['netns', 'exec', ns, cmd, ...args], allowFail);

describe('userspace plane: transparent and PROXY protocol in network namespaces', gate, () => {
  for (const workers of [1, 2])
    test(`real servers see 198.18.0.10: transparent connects, and nginx reading PROXY v1 and v2 (--workers ${workers})`, {
      timeout: 120_000,
    }, async () => {
      const S = `${process.pid % 100000}${workers}`;
      const [C, D, R] = [`tsvsuc-${S}`, `tsvsud-${S}`, `tsvsur-${S}`];
      const dir = `/tmp/tsvs-us-${S}`;
      let daemon: ChildProcess | null = null;
      let out = '';
      try {
        mkdirSync(join(dir, 'www'), { recursive: true });
        chmodSync(dir, 0o755);
        writeFileSync(join(dir, 'www', 'index.html'), 'hello from r1\n');
        for (const ns of [C, D, R]) {
          sh('ip', ['netns', 'add', ns]);
          inNs(ns, 'ip', ['link', 'set', 'lo', 'up']);
          inNs(ns, 'sh', ['-c', 'echo 0 > /proc/sys/net/ipv4/conf/all/rp_filter; echo 0 > /proc/sys/net/ipv4/conf/default/rp_filter']);
        }
        sh('ip', ['link', 'add', `tsvsuc${S}`, 'netns', C, 'type', 'veth', 'peer', 'name', `tsvsudc${S}`, 'netns', D]);
        sh('ip', ['link', 'add', `tsvsur${S}`, 'netns', R, 'type', 'veth', 'peer', 'name', `tsvsudr${S}`, 'netns', D]);
        inNs(C, 'ip', ['addr', 'add', '198.18.0.10/24', 'dev', `tsvsuc${S}`]);
        inNs(C, 'ip', ['link', 'set', `tsvsuc${S}`, 'up']);
        inNs(D, 'ip', ['addr', 'add', '198.18.0.1/24', 'dev', `tsvsudc${S}`]);
        inNs(D, 'ip', ['link', 'set', `tsvsudc${S}`, 'up']);
        inNs(D, 'ip', ['addr', 'add', '198.19.0.1/24', 'dev', `tsvsudr${S}`]);
        inNs(D, 'ip', ['link', 'set', `tsvsudr${S}`, 'up']);
        inNs(R, 'ip', ['addr', 'add', '198.19.0.11/24', 'dev', `tsvsur${S}`]);
        inNs(R, 'ip', ['link', 'set', `tsvsur${S}`, 'up']);
        // Replies to the client's address go to the director, which keeps them (tproxy routing).
        inNs(R, 'ip', ['route', 'add', 'default', 'via', '198.19.0.1']);
        writeFileSync(
          join(dir, 'nginx.conf'),
          `worker_processes 1; daemon on; pid ${dir}/nginx.pid; error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  log_format lab '$server_port $remote_addr $proxy_protocol_addr $proxy_protocol_port';
  access_log ${dir}/access.log lab;
  client_body_temp_path ${dir}/tmp; proxy_temp_path ${dir}/tmp; fastcgi_temp_path ${dir}/tmp; uwsgi_temp_path ${dir}/tmp; scgi_temp_path ${dir}/tmp;
  server { listen 198.19.0.11:80; root ${dir}/www; }
  server { listen 198.19.0.11:81 proxy_protocol; root ${dir}/www;
    set_real_ip_from 198.19.0.1; real_ip_header proxy_protocol; }
}
`,
        );
        inNs(R, 'nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir]);
        writeFileSync(
          join(dir, 'tsvs.yaml'),
          `services:
  - { address: 198.18.0.1, port: 80, scheduler: rr, transparent: true, real_servers: [{ address: 198.19.0.11, port: 80 }] }
  - { address: 198.18.0.1, port: 81, scheduler: rr, proxy_protocol: v1, real_servers: [{ address: 198.19.0.11, port: 81 }] }
  - { address: 198.18.0.1, port: 82, scheduler: rr, proxy_protocol: v2, real_servers: [{ address: 198.19.0.11, port: 81 }] }
`,
        );
        daemon = spawn(
          'ip',
          [
            'netns',
            'exec',
            D,
            process.execPath,
            '--import',
            'tsx',
            join(ROOT, 'bin', 'tsvsd.ts'),
            '--config',
            join(dir, 'tsvs.yaml'),
            '--socket',
            join(dir, 'tsvsd.sock'),
            '--workers',
            String(workers),
          ],
          { cwd: ROOT, env: { ...process.env, TSVS_TRANSPARENT_SETUP: '1' }, stdio: ['ignore', 'pipe', 'pipe'] },
        );
        daemon.stdout!.on('data', (d: Buffer) => (out += d));
        daemon.stderr!.on('data', (d: Buffer) => (out += d));
        await waitFor(() => /tsvsd started/.test(out) || daemon!.exitCode !== null, 30_000, 'tsvsd to start');
        assert.match(out, /tsvsd started/, out);
        assert.match(out, /transparent reply routing: nft table inet tsvs/);
        assert.match(inNs(D, 'nft', ['list', 'table', 'inet', 'tsvs']), /socket transparent 1 meta mark set 0x00007473/);
        assert.match(inNs(D, 'ip', ['rule']), /fwmark 0x7473 lookup 7473/);

        for (const port of [80, 81, 82]) {
          for (let i = 0; i < 3; i++) {
            const body = inNs(C, 'curl', ['-sS', '--max-time', '5', `http://198.18.0.1:${port}/`]);
            assert.equal(body, 'hello from r1\n', `VIP:${port} request ${i}`);
          }
        }
        const lines = readFileSync(join(dir, 'access.log'), 'utf8').trim().split('\n');
        assert.equal(lines.length, 9, lines.join('\n'));
        const byPort = (p: string) => lines.filter((l) => l.startsWith(`${p} `));
        // Transparent: the TCP peer itself is the client.
        for (const l of byPort('80')) assert.match(l, /^80 198\.18\.0\.10 - -$/);
        // PROXY v1 (VIP:81) and v2 (VIP:82), both to nginx :81: the header's address is the
        // client's, and realip made it $remote_addr.
        const pp = byPort('81');
        assert.equal(pp.length, 6);
        for (const l of pp) assert.match(l, /^81 198\.18\.0\.10 198\.18\.0\.10 \d+$/);

        daemon.kill('SIGTERM');
        const code = await new Promise<number | null>((r) =>
          daemon!.exitCode !== null ? r(daemon!.exitCode) : daemon!.once('exit', (c) => r(c)),
        );
        assert.equal(code, 0, out);
        assert.match(out, /transparent reply routing removed/);
        assert.equal(inNs(D, 'nft', ['list', 'table', 'inet', 'tsvs'], true), '');
        assert.doesNotMatch(inNs(D, 'ip', ['rule']), /7473/);
      } finally {
        if (daemon && daemon.exitCode === null) daemon.kill('SIGKILL');
        sh('sh', ['-c', `test -f ${dir}/nginx.pid && kill $(cat ${dir}/nginx.pid)`], true);
        for (const ns of [C, D, R]) sh('ip', ['netns', 'del', ns], true);
        rmSync(dir, { recursive: true, force: true });
      }
    });
});
