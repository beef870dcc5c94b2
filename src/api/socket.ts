/**
 * Where tsvsd listens: its control socket (its path, checked before it is bound), and the
 * TCP API's HOST:PORT (--api).
 */
import { promises as fsp, type Stats } from 'node:fs';
import { type AddressInfo, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

/** Where tsvsd's control socket lives unless --socket or TSVS_SOCKET says otherwise. */
export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TSVS_SOCKET) return env.TSVS_SOCKET;
  const uid = typeof process.getuid === 'function' ? process.getuid() : -1;
  if (uid === 0) return '/run/tsvs/tsvsd.sock';
  return join(env.XDG_RUNTIME_DIR ?? tmpdir(), `tsvs-${uid}`, 'tsvsd.sock');
}

/** `--api HOST:PORT` ("[v6]:PORT" for IPv6), checked. */
export function parseHostPort(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(s);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 0 || port > 65535) throw new Error(`--api "${s}": expected HOST:PORT, e.g. 127.0.0.1:9180 or [::1]:9180`);
  return { host: (m[1] ?? m[2])!, port };
}

/** A TCP listener's address as "host:port" ("[v6]:port"), or null for a socket path or a closed listener. */
export function formatListenAddress(a: AddressInfo | string | null): string | null {
  return a && typeof a === 'object' ? `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}` : null;
}

/** True when something accepts connections on the Unix socket at `path` (a live tsvsd). */
export function socketAnswers(path: string): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** The message for a control socket that a live tsvsd still answers on. */
export function socketInUse(path: string): string {
  return `control socket ${path} is in use: another tsvsd is running there (stop it, or pass --socket)`;
}

/** What checkSocketDir needs of a directory (fs.Stats has it). */
export interface DirStat {
  uid: number;
  mode: number;
}

/**
 * Why a directory may not hold the control socket, or null when it may. As OpenSSH's
 * StrictModes: whoever can write a directory on the path can replace the socket with
 * their own and read what tsvsadm sends, so every directory from `/` down must be owned by
 * root or by tsvsd's user, and writable by others only with the sticky bit (as /tmp).
 */
export function socketDirProblem(dir: string, st: DirStat, uid: number): string | null {
  if (st.uid !== 0 && st.uid !== uid) {
    return (
      `socket directory ${dir} is owned by uid ${st.uid}, not by root or tsvsd's user (uid ${uid}): ` +
      `that user could replace the control socket; fix: chown ${uid} ${dir}, or pass --socket in a directory of your own`
    );
  }
  if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0) {
    const mode = (st.mode & 0o7777).toString(8).padStart(4, '0');
    return (
      `socket directory ${dir} is writable by ${st.mode & 0o002 ? 'every user' : 'its group'} (mode ${mode}) without the sticky bit: ` +
      `anyone who can write there could replace the control socket; fix: chmod go-w ${dir} (or chmod +t ${dir}), or pass --socket elsewhere`
    );
  }
  return null;
}

/** Checks every directory from `/` down to the one that holds `path`; throws the first problem. */
async function checkSocketDirs(path: string): Promise<void> {
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  const dirs: string[] = [];
  for (let d = dirname(resolve(path)); ; d = dirname(d)) {
    dirs.unshift(d);
    if (dirname(d) === d) break;
  }
  for (const d of dirs) {
    const problem = socketDirProblem(d, await fsp.stat(d), uid);
    if (problem) throw new Error(problem);
  }
}

/**
 * Makes `path` ready for the control socket to bind: creates its directory (0700) when
 * missing, refuses an unsafe directory (socketDirProblem), refuses a socket that a live
 * tsvsd answers on, and removes only a stale socket. Anything else at `path` (a regular
 * file, a directory, a link) is refused, never deleted.
 */
export async function prepareSocketPath(path: string): Promise<void> {
  await fsp.mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await checkSocketDirs(path);
  let st: Stats;
  try {
    st = await fsp.lstat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  if (!st.isSocket()) {
    throw new Error(
      `--socket ${path}: ${path} exists and is ${fileKind(st)}, not a socket; tsvsd removes only a stale socket of its own: ` +
        'move that file away, or pass --socket with another path',
    );
  }
  if (await socketAnswers(path)) throw new Error(socketInUse(path));
  await fsp.unlink(path);
}

function fileKind(st: Stats): string {
  if (st.isFile()) return 'a regular file';
  if (st.isDirectory()) return 'a directory';
  if (st.isSymbolicLink()) return 'a symbolic link';
  if (st.isFIFO()) return 'a FIFO';
  return 'a device or other special file';
}
