/** wrk runs for the benchmarks: one run, its parsed result, and the median of several. */
import { spawnSync } from 'node:child_process';

export interface WrkResult {
  rps: number;
  errors: number;
}

export interface WrkRun {
  url: string;
  conns: number;
  durationS: number;
  /** Send `Connection: close`: one request per connection. */
  close: boolean;
  /** Run wrk in this network namespace (ip netns exec). */
  netns?: string;
}

/** Throws with the apt packages to install when a command is missing. */
export function need(cmd: string, packages: string): void {
  if (spawnSync('sh', ['-c', `command -v ${cmd}`]).status !== 0) {
    throw new Error(`${cmd} is not installed (apt-get install ${packages})`);
  }
}

/** One wrk run (-t2), bounded in time; errors are socket errors plus non-2xx answers. */
export function wrk(run: WrkRun): WrkResult {
  const args = ['-t2', `-c${run.conns}`, `-d${run.durationS}s`, '--timeout', '5s'];
  if (run.close) args.push('-H', 'Connection: close');
  args.push(run.url);
  const [cmd, argv] = run.netns ? ['ip', ['netns', 'exec', run.netns, 'wrk', ...args]] : ['wrk', args];
  const r = spawnSync(cmd, argv as string[], { encoding: 'utf8', timeout: (run.durationS + 30) * 1000 });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1] ?? NaN);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(r.stdout);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(r.stdout)?.[1] ?? 0);
  // With Connection: close, wrk counts the server's normal close as a read error.
  const errors = (sock ? Number(sock[1]) + Number(sock[3]) + Number(sock[4]) + (run.close ? 0 : Number(sock[2])) : 0) + non2xx;
  if (!Number.isFinite(rps)) throw new Error(`wrk failed: ${r.stderr}${r.stdout}`);
  return { rps, errors };
}

export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** One thing to measure: a name and how to load it once. */
export interface Variant {
  name: string;
  run(close: boolean): WrkResult;
}

/**
 * Runs every variant, keep-alive then `Connection: close`, for `rounds` interleaved rounds
 * (so drift on a shared machine hits all of them alike), logs each run to stderr, and
 * returns a markdown table of medians with ratios to `direct` and `haproxy` (variant names).
 */
export function measure(variants: Variant[], rounds: number, direct: string, haproxy: string): string {
  const tally = new Map(variants.map((v) => [v.name, { ka: [] as number[], close: [] as number[], errors: 0 }]));
  for (let round = 0; round < rounds; round++) {
    for (const v of variants) {
      for (const close of [false, true]) {
        const r = v.run(close);
        const t = tally.get(v.name)!;
        (close ? t.close : t.ka).push(r.rps);
        t.errors += r.errors;
        process.stderr.write(
          `round ${round + 1} ${v.name} ${close ? 'close' : 'keep-alive'}: ${r.rps.toFixed(0)} req/s${r.errors ? `, ${r.errors} errors` : ''}\n`,
        );
      }
    }
  }
  const med = (name: string, k: 'ka' | 'close') => median(tally.get(name)![k]);
  const ratio = (x: number, name: string, k: 'ka' | 'close') => `${(x / med(name, k)).toFixed(2)}x`;
  const rows = variants.map(({ name }) => {
    const ka = med(name, 'ka');
    const cl = med(name, 'close');
    return `| ${name} | ${ka.toFixed(0)} | ${ratio(ka, direct, 'ka')} | ${ratio(ka, haproxy, 'ka')} | ${cl.toFixed(0)} | ${ratio(cl, direct, 'close')} | ${ratio(cl, haproxy, 'close')} | ${tally.get(name)!.errors} |`;
  });
  return [
    '| variant | keep-alive req/s | vs direct | vs haproxy | `Connection: close` req/s | vs direct | vs haproxy | errors |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    ...rows,
  ].join('\n');
}
