/** Where tsvsd listens: its control socket, and the TCP API's HOST:PORT (--api). */
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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
