/**
 * How the nftables plane runs its tools (nft, conntrack, sysctl reads): in tsvsd's own
 * network namespace, or, for tests that drive a plane in this process while the director
 * is a namespace of theirs, through `ip netns exec NS`.
 */
import { execFile } from 'node:child_process';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a tool; `netns` names the namespace it runs in (absent: this process's), for the netlink readers. */
export type Runner = ((cmd: string, args: string[], timeoutMs?: number) => Promise<RunResult>) & { readonly netns?: string };

/** A runner for the current namespace, or for `netns` through `ip netns exec`. */
export function makeRunner(netns?: string): Runner {
  const run = (cmd: string, args: string[], timeoutMs = 15_000): Promise<RunResult> => {
    const [file, argv] = netns ? ['ip', ['netns', 'exec', netns, cmd, ...args]] : [cmd, args];
    return new Promise((resolve) => {
      execFile(file, argv, { timeout: timeoutMs, maxBuffer: 512 * 1024 * 1024 }, (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 127) : 0;
        resolve({ code, stdout, stderr: stderr || (err && !stderr ? err.message : '') });
      });
    });
  };
  return netns ? Object.assign(run, { netns }) : run;
}

/** The namespace file of a runner's namespace (/run/netns/NAME), or undefined for this process's. */
export function runnerNsPath(run: Runner): string | undefined {
  return run.netns ? `/run/netns/${run.netns}` : undefined;
}
