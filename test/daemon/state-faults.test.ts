/**
 * A real tsvsd against a real full and read-only filesystem, a port another program holds,
 * and damaged state files (issue #13 items 3, 4 and 5). The state directory is a 256 KiB
 * tmpfs mounted for the test (root only) and unmounted in `after`:
 *
 *   test ── tsvsadm / API ──> tsvsd ── state.json, state.json.journal ──> DIR (tmpfs 256k)
 *                                                                   DIR/fill takes the rest
 *
 * Full disk (ENOSPC) and read-only (EROFS, `mount -o remount,ro`): changes stay live and
 * tsvsadm exits 3; no temp file is left; once the disk takes writes again the whole table
 * is saved with no change and no manual step, and the files reloaded equal the live table.
 */
import { strict as assert } from 'node:assert';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { ServiceView, TableConfig } from '../../src/core/types.js';
import type { Op, ServiceConfig } from '../../src/core/types.js';
import { StateStore } from '../../src/daemon/state.js';
import { freePort, startEchoServer, waitFor, type TestServer } from '../helper.js';
import { ENTRY, startTsvsd, type Tsvsd } from './spawn.js';

const isRoot = process.getuid?.() === 0;

const service = (addr: string, port: number): ServiceConfig => ({
  af: 4,
  protocol: 'tcp',
  addr,
  port,
  fwmark: 0,
  scheduler: 'rr',
  schedFlags: 0,
  persistent: 0,
  netmask: 0xffffffff,
  ops: false,
  pe: '',
});
const addServer = (svc: ServiceConfig, port: number, weight = 1): Extract<Op, { op: 'add-server' }> => ({
  op: 'add-server',
  service: svc,
  dest: { af: 4, addr: '127.0.0.1', port, weight, fwd: 'masq', uThreshold: 0, lThreshold: 0 },
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}
function tsvsadm(socket: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [ENTRY('tsvsadm'), ...args],
      { env: { ...process.env, TSVS_SOCKET: socket }, timeout: 20_000 },
      (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? -1) : 0, stdout, stderr }),
    );
  });
}

const mounts: string[] = [];
const dirs: string[] = [];
const daemons: Tsvsd[] = [];
const servers: Array<{ close(): unknown }> = [];
after(async () => {
  for (const d of daemons) await d.cleanup();
  for (const s of servers) await s.close();
  for (const m of mounts) spawnSync('umount', ['-l', m]);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'tsvs-faults-'));
  dirs.push(d);
  return d;
}

/** A 256 KiB tmpfs on a new directory. */
function smallDisk(): string {
  const d = tempDir();
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tsvs-faults', d]);
  mounts.push(d);
  return d;
}

/** Writes DIR/fill until the filesystem is full. */
function fill(dir: string): void {
  const fd = openSync(join(dir, 'fill'), 'w');
  const chunk = Buffer.alloc(4096, 1);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (e) {
    assert.equal((e as NodeJS.ErrnoException).code, 'ENOSPC');
  } finally {
    closeSync(fd);
  }
}

/** mount -o remount,ro|rw, tried again while a retry of tsvsd briefly holds a temp file open (EBUSY). */
function remount(dir: string, mode: 'ro' | 'rw'): void {
  for (let i = 0; ; i++) {
    const r = spawnSync('mount', ['-o', `remount,${mode}`, dir], { encoding: 'utf8' });
    if (r.status === 0) return;
    if (i > 50) throw new Error(`mount -o remount,${mode} ${dir}: ${r.stderr}`);
    spawnSync('sleep', ['0.1']);
  }
}

const temps = (dir: string) => readdirSync(dir).filter((n) => n.endsWith('.tmp'));

/** Services and real servers, comparable between a saved table and a live one. */
function shape(
  services: ReadonlyArray<
    Pick<ServiceView, 'addr' | 'port' | 'protocol' | 'scheduler'> & { dests: ReadonlyArray<{ addr: string; port: number; weight: number }> }
  >,
): string[] {
  return services
    .map(
      (s) =>
        `${s.protocol} ${s.addr}:${s.port} ${s.scheduler} [${s.dests
          .map((d) => `${d.addr}:${d.port}w${d.weight}`)
          .sort()
          .join(' ')}]`,
    )
    .sort();
}

/** The state files as a restart would load them (snapshot + journal), read from a copy so that nothing touches the daemon's directory. */
async function saved(path: string): Promise<string[]> {
  const copy = join(tempDir(), 'state.json');
  copyFileSync(path, copy);
  if (existsSync(`${path}.journal`)) copyFileSync(`${path}.journal`, `${copy}.journal`);
  const cfg = (await new StateStore(copy).load()) as TableConfig;
  return shape(cfg.services);
}

async function info(d: Tsvsd): Promise<{
  state: { saved: boolean; unsavedChanges: number; lastError: string | null } | null;
  unbound: Array<{ service: string; errno: string }>;
}> {
  return (await d.client.info()) as never;
}

describe('state saving on a full or read-only disk (real tmpfs)', { skip: !isRoot && 'needs root (mount)' }, () => {
  test('ENOSPC then EROFS: changes stay live and exit 3, no temp file stays, saving resumes by itself and the files equal the live table', async () => {
    const dir = smallDisk();
    const d = await startTsvsd([], { dir });
    daemons.push(d);
    const port = await freePort();
    const svcs = Array.from({ length: 12 }, (_, i) => service(`127.0.3.${i + 1}`, port));
    await d.client.apply(svcs.flatMap((s) => [{ op: 'add-service' as const, service: s }, addServer(s, 9000)]));
    fill(dir);

    // The journal's last page still has room for a few records; then a change cannot be saved.
    let refused: unknown = null;
    for (let w = 2; w < 200 && !refused; w++) {
      try {
        await d.client.apply([{ op: 'edit-server', service: svcs[0]!, dest: addServer(svcs[0]!, 9000, w).dest }]);
      } catch (e) {
        refused = e;
      }
    }
    assert.ok(refused, 'a change that the full disk cannot hold');
    assert.equal((refused as { code?: string }).code, 'NOT_SAVED');

    const del = await tsvsadm(d.socket, ['-D', '-t', `127.0.3.2:${port}`]);
    assert.equal(del.code, 3, del.stderr);
    assert.match(del.stderr, /^Change applied but not saved: ENOSPC/);
    const add = await tsvsadm(d.socket, ['-a', '-t', `127.0.3.3:${port}`, '-r', '127.0.0.1:9001', '-m', '-w', '5']);
    assert.equal(add.code, 3, add.stderr);
    // A refusal is still 255, whatever the disk.
    assert.equal((await tsvsadm(d.socket, ['-D', '-t', `127.0.3.2:${port}`])).code, 255);
    assert.deepEqual(temps(dir), [], 'no temp file keeps the disk full');

    const live = shape((await d.client.getTable()).services);
    assert.ok(!live.some((l) => l.includes(`127.0.3.2:${port}`)), 'the delete is live');
    assert.notDeepEqual(await saved(d.state), live, 'the files lag behind while the disk is full');
    const st = await info(d);
    assert.equal(st.state?.saved, false);
    assert.ok(st.state!.unsavedChanges >= 3, `unsaved changes: ${st.state!.unsavedChanges}`);
    assert.match(await d.client.metrics(), /^tsvs_state_unsaved 1$/m);
    assert.match(d.logs(), /running UNSAVED/);

    // The disk clears: no change, no command, and the table is saved.
    rmSync(join(dir, 'fill'));
    await waitFor(async () => (await info(d)).state?.saved === true, 20_000, 'saved again after the disk cleared');
    assert.deepEqual(await saved(d.state), live, 'the files reloaded equal the live table');
    assert.match(await d.client.metrics(), /^tsvs_state_unsaved 0$/m);
    assert.match(d.logs(), /saved again after \d+ s unsaved/);
    assert.deepEqual(temps(dir), []);

    // Read-only: full again, then remounted read-only (possible since tsvsd keeps no file open for
    // writing once a write failed), then writable and emptied.
    fill(dir);
    for (let w = 2; w < 200 && (await info(d)).state?.saved !== false; w++) {
      await d.client.apply([{ op: 'edit-server', service: svcs[5]!, dest: addServer(svcs[5]!, 9000, w).dest }]).catch(() => undefined);
    }
    remount(dir, 'ro');
    let ro: Run;
    try {
      ro = await tsvsadm(d.socket, ['-D', '-t', `127.0.3.4:${port}`]);
      assert.equal((await info(d)).state?.saved, false);
    } finally {
      remount(dir, 'rw');
    }
    assert.equal(ro.code, 3, ro.stderr);
    assert.match(ro.stderr, /^Change applied but not saved: EROFS/);
    rmSync(join(dir, 'fill'));
    await waitFor(async () => (await info(d)).state?.saved === true, 20_000, 'saved again after remount rw');
    const live2 = shape((await d.client.getTable()).services);
    assert.equal(live2.length, 10);
    assert.deepEqual(await saved(d.state), live2);

    // A crash now brings back exactly the live table, not the deleted services.
    await d.kill('SIGKILL');
    const again = await startTsvsd([], { dir });
    daemons.push(again);
    assert.deepEqual(shape((await again.client.getTable()).services), live2);
    assert.equal(await again.kill('SIGTERM'), 0);
  });

  test('a start on a read-only state directory warns and runs unsaved; a wrong --state path is refused', async () => {
    const dir = smallDisk();
    const first = await startTsvsd([], { dir });
    daemons.push(first);
    const port = await freePort();
    const s = service('127.0.4.1', port);
    await first.client.apply([{ op: 'add-service', service: s }, addServer(s, 9000)]);
    assert.equal(await first.kill('SIGTERM'), 0);

    remount(dir, 'ro');
    let d: Tsvsd;
    try {
      d = await startWithState(join(dir, 'state.json'));
      await waitFor(() => /running UNSAVED/.test(d.stderr() + d.logs()), 5000, 'the warning');
      assert.match(d.stderr(), /warning: state file .*state\.json cannot be written \(EROFS.*\): running UNSAVED/);
      assert.equal((await info(d)).state?.saved, false);
      assert.deepEqual(shape((await d.client.getTable()).services).length, 1, 'restored from the read-only files');
      const r = await tsvsadm(d.socket, ['-A', '-t', `127.0.4.2:${port}`]);
      assert.equal(r.code, 3, r.stderr);
    } finally {
      remount(dir, 'rw');
    }
    await waitFor(async () => (await info(d)).state?.saved === true, 20_000, 'saved once writable');
    assert.deepEqual(await saved(join(dir, 'state.json')), shape((await d.client.getTable()).services));
    assert.equal(await d.kill('SIGTERM'), 0);

    const bad = spawnSync(
      process.execPath,
      [ENTRY('tsvsd'), '--socket', join(tempDir(), 's.sock'), '--state', '/nonexistent-tsvs/x/state.json'],
      {
        encoding: 'utf8',
        timeout: 15_000,
      },
    );
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /cannot write the state file \/nonexistent-tsvs\/x\/state\.json: ENOENT.*check the --state path/);
  });
});

/** tsvsd with its socket in a temp directory and --state FILE elsewhere. */
async function startWithState(state: string): Promise<Tsvsd> {
  const d = await startTsvsd(['--state', state], { dir: tempDir() });
  daemons.push(d);
  return d;
}

describe('kill -9 during changes', () => {
  test('no temp file of ours is left after the next start; files of other names stay', async () => {
    const dir = tempDir();
    const port = await freePort();
    const other = join(dir, '.unrelated.json.1.2.tmp');
    writeFileSync(other, 'not ours');
    for (let round = 0; round < 3; round++) {
      const d = await startTsvsd([], { dir });
      daemons.push(d);
      let stop = false;
      const s = service(`127.0.5.${round + 1}`, port);
      await d.client.apply([{ op: 'add-service', service: s }]);
      const stream = (async () => {
        for (let w = 1; !stop; w++) {
          const batch: Op[] = Array.from({ length: 50 }, (_, k) => ({
            op: 'edit-service',
            service: { ...s, scheduler: (w + k) % 2 ? 'wrr' : 'rr' },
          }));
          await d.client.apply(batch).catch(() => {
            stop = true;
          });
        }
      })();
      await new Promise((r) => setTimeout(r, 300 + round * 200));
      await d.kill('SIGKILL');
      stop = true;
      await stream;
      // As a crash in the middle of a snapshot write leaves them.
      writeFileSync(join(dir, `.state.json.${4_000_000 + round}.1700000000000.tmp`), 'partial');
      writeFileSync(join(dir, `.state.json.journal.${4_000_000 + round}.1700000000001.tmp`), 'partial');
    }
    const d = await startTsvsd([], { dir });
    daemons.push(d);
    assert.deepEqual(temps(dir), ['.unrelated.json.1.2.tmp']);
    assert.equal((await d.client.getTable()).services.length, 3);
    assert.match(d.logs(), /removed a temp file left by an earlier tsvsd/);
    assert.equal(await d.kill('SIGTERM'), 0);
    assert.ok(existsSync(other));
  });
});

describe('a start with a service that cannot come up', () => {
  test('a port another program holds: every other service is up, the held one is reported and comes up when the port frees', async () => {
    const dir = tempDir();
    const echo: TestServer = await startEchoServer('rs');
    servers.push(echo);
    const ports = [await freePort(), await freePort(), await freePort()];
    const svcs = ports.map((p) => service('127.0.0.1', p));
    const first = await startTsvsd([], { dir });
    daemons.push(first);
    await first.client.apply(svcs.flatMap((s) => [{ op: 'add-service' as const, service: s }, addServer(s, echo.port)]));
    assert.equal(await first.kill('SIGTERM'), 0);

    const holder = net.createServer();
    await new Promise<void>((r) => holder.listen({ host: '127.0.0.1', port: ports[1], exclusive: true }, r));
    servers.push({ close: () => new Promise((r) => holder.close(r)) });
    const d = await startTsvsd([], { dir });
    daemons.push(d);
    const held = `TCP 127.0.0.1:${ports[1]}`;
    assert.equal((await d.client.getTable()).services.length, 3, 'the held service stays in the table (and the state file)');
    for (const p of [ports[0]!, ports[2]!]) assert.equal(await greeting(p), 'rs', `service on ${p} relays`);
    const st = await info(d);
    assert.deepEqual(
      st.unbound.map((u) => [u.service, u.errno]),
      [[held, 'EADDRINUSE']],
    );
    assert.match(
      d.logs(),
      new RegExp(`"errno":"EADDRINUSE".*"msg":"${held}: not carried: Cannot bind .*already in use by another program`),
    );
    const metrics = await d.client.metrics();
    assert.match(metrics, new RegExp(`^tsvs_dataplane_service_unbound\\{service="${held}",errno="EADDRINUSE"\\} 1$`, 'm'));
    assert.match(metrics, /^tsvs_dataplane_services_unbound 1$/m);
    assert.equal((await d.client.status()).unbound?.length, 1);

    await new Promise((r) => holder.close(r));
    await waitFor(async () => (await info(d)).unbound.length === 0, 20_000, 'the held service bound once the port freed');
    assert.equal(await greeting(ports[1]!), 'rs');
    assert.match(d.logs(), new RegExp(`${held}: bound after \\d+ failed tries`));
    assert.equal(await d.kill('SIGTERM'), 0);
  });

  test('a saved entry that does not apply: the others come up, it is named, and the files are kept as FILE.corrupt-<time>', async () => {
    const dir = tempDir();
    const state = join(dir, 'state.json');
    const port = await freePort();
    const good = { ...service('127.0.6.1', port), dests: [] };
    const bad = { ...service('127.0.6.2', port), scheduler: 'nosuch', dests: [] };
    writeFileSync(
      state,
      JSON.stringify({
        format: 'tsvs-state',
        version: 2,
        savedAt: new Date().toISOString(),
        seq: 0,
        table: { services: [good, bad], timeouts: { tcp: 900, tcpfin: 120, udp: 300 } },
      }),
    );
    const d = await startTsvsd([], { dir });
    daemons.push(d);
    assert.deepEqual(
      (await d.client.getTable()).services.map((s) => s.addr),
      ['127.0.6.1'],
    );
    assert.match(
      d.stderr(),
      new RegExp(
        `TCP 127\\.0\\.6\\.2:${port}: not restored from state file ${state}: .*every other service is up\\. The state files as they were are kept as ${state}\\.corrupt-\\d{8}T\\d{6}Z`,
      ),
    );
    const kept = readdirSync(dir).filter((n) => n.startsWith('state.json.corrupt-'));
    assert.equal(kept.length, 1);
    assert.match(readFileSync(join(dir, kept[0]!), 'utf8'), /nosuch/);
    assert.equal(await d.kill('SIGTERM'), 0);
  });

  test('a damaged journal stops the start naming the file, line and byte, and the command it prints recovers the good prefix', async () => {
    const dir = tempDir();
    const port = await freePort();
    const first = await startTsvsd([], { dir });
    daemons.push(first);
    for (let i = 1; i <= 3; i++) await first.client.apply([{ op: 'add-service', service: service(`127.0.7.${i}`, port) }]);
    await first.kill('SIGKILL');
    const journal = join(dir, 'state.json.journal');
    const lines = readFileSync(journal, 'utf8').split('\n');
    // The second record damaged, the third whole: damage, not a torn end.
    lines[2] = lines[2]!.replace('127.0.7.2', '127.0.7.9');
    writeFileSync(journal, lines.join('\n'));
    const r = spawnSync(process.execPath, [ENTRY('tsvsd'), '--socket', join(dir, 'tsvsd.sock'), '--state', join(dir, 'state.json')], {
      encoding: 'utf8',
      timeout: 15_000,
    });
    assert.equal(r.status, 1);
    const byte = Buffer.byteLength(`${lines[0]}\n${lines[1]}\n`);
    assert.match(r.stderr, new RegExp(`state journal ${journal} line 3 \\(byte ${byte}\\): record is damaged \\(checksum mismatch\\)`));
    const cmd = /: (cp \S+ \S+ && truncate -s \d+ \S+)/.exec(r.stderr)?.[1];
    assert.ok(cmd, r.stderr);
    execFileSync('sh', ['-c', cmd]);
    const d = await startTsvsd([], { dir });
    daemons.push(d);
    assert.deepEqual(
      (await d.client.getTable()).services.map((s) => s.addr),
      ['127.0.7.1'],
    );
    assert.equal(readdirSync(dir).filter((n) => n.startsWith('state.json.journal.corrupt-')).length, 1);
    assert.equal(await d.kill('SIGTERM'), 0);
  });
});

/** Connects to 127.0.0.1:port through tsvsd and returns the real server's greeting line. */
function greeting(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    s.setTimeout(5000, () => s.destroy(new Error(`no greeting on ${port}`)));
    s.on('data', (b) => {
      got += b.toString();
      if (got.includes('\n')) {
        s.destroy();
        resolve(got.trim());
      }
    });
    s.on('error', reject);
  });
}
