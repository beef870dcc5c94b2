/** Where tsvsd's control socket lives unless --socket or TSVS_SOCKET says otherwise. */
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TSVS_SOCKET) return env.TSVS_SOCKET;
  const uid = typeof process.getuid === 'function' ? process.getuid() : -1;
  if (uid === 0) return '/run/tsvs/tsvsd.sock';
  return join(env.XDG_RUNTIME_DIR ?? tmpdir(), `tsvs-${uid}`, 'tsvsd.sock');
}
