/**
 * Gate for tests that need root and network namespaces. Elsewhere they skip with the
 * reason printed; with TSVS_REQUIRE_PRIVILEGED=1 (set by .ci/run) a missing privilege is a
 * failure instead, so CI can never pass by skipping.
 */
import { spawnSync } from 'node:child_process';

/** Why privileged tests cannot run here, or null when they can. */
export function privilegeProblem(needs: string[] = ['ip', 'nft']): string | null {
  if (process.platform !== 'linux') return `needs Linux (this is ${process.platform})`;
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'needs root (network namespaces, nftables)';
  for (const cmd of needs) {
    if (spawnSync('sh', ['-c', `command -v ${cmd}`]).status !== 0)
      return `needs ${cmd} (apt-get install ${cmd === 'ip' ? 'iproute2' : cmd})`;
  }
  const probe = `tsvsprobe${process.pid}`;
  const add = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (add.status !== 0) return `cannot create a network namespace: ${add.stderr.trim()}`;
  spawnSync('ip', ['netns', 'del', probe]);
  return null;
}

/**
 * Options for node:test's `test()`/`describe()`: `{ skip: reason }` where privileged tests
 * cannot run, or throws when TSVS_REQUIRE_PRIVILEGED=1 demands that they do.
 */
export function privileged(needs?: string[]): { skip?: string } {
  const problem = privilegeProblem(needs);
  if (!problem) return {};
  if (process.env.TSVS_REQUIRE_PRIVILEGED === '1') {
    throw new Error(`privileged tests are required here (TSVS_REQUIRE_PRIVILEGED=1) but cannot run: ${problem}`);
  }
  process.stderr.write(`# skipping privileged tests: ${problem}\n`);
  return { skip: problem };
}
