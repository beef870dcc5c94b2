/**
 * `tsvs realserver setup --mode dr|tun VIP [--apply]`: what a real server needs for
 * direct routing or tunnelling (src/realserver/steps.ts), printed as commands (default)
 * or applied (--apply, root). This host's kernel support is checked and reported.
 */
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import type { TunType } from '../core/types.js';
import { drSteps, tunSteps, type Step } from '../realserver/steps.js';

const USAGE = `Usage: tsvs realserver setup --mode dr|tun VIP [--dev IFACE] [--tun-type ipip|gue|gre] [--tun-port N] [--apply]

Prints what a real server needs for direct routing (dr) or tunnelling (tun) towards the
VIP, one command per line with the reason; --apply runs them (needs root).
  dr    VIP on lo, arp_ignore=1 / arp_announce=2 (on all, and on IFACE with --dev)
  tun   tunnel modules, VIP on the tunnel device, rp_filter off; says what this kernel lacks
`;

/** `tsvs realserver ARGS`: prints or applies the steps; returns the exit status. */
export function runRealserver(argv: string[]): number {
  let values: { mode?: string; dev?: string; 'tun-type'?: string; 'tun-port'?: string; apply?: boolean; help?: boolean };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        mode: { type: 'string' },
        dev: { type: 'string' },
        'tun-type': { type: 'string' },
        'tun-port': { type: 'string' },
        apply: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    process.stderr.write(`tsvs realserver: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const [cmd, vip, ...extra] = positionals;
  const fail = (msg: string) => {
    process.stderr.write(`tsvs realserver: ${msg}\n${USAGE}`);
    return 2;
  };
  if (cmd !== 'setup') return fail('expected "setup"');
  if (!vip || extra.length) return fail('expected one VIP');
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(vip) && !/^[0-9a-fA-F:]+$/.test(vip)) return fail(`"${vip}" is not an IPv4 or IPv6 address`);
  if (values.dev !== undefined && !/^[A-Za-z0-9_.:-]{1,15}$/.test(values.dev))
    return fail(`--dev "${values.dev}" is not an interface name`);
  let steps: Step[];
  let missing: string | null = null;
  if (values.mode === 'dr') {
    steps = drSteps(vip, values.dev);
  } else if (values.mode === 'tun') {
    const type = (values['tun-type'] ?? 'ipip') as TunType;
    if (!['ipip', 'gue', 'gre'].includes(type)) return fail(`--tun-type "${type}": use ipip, gue or gre`);
    const port = values['tun-port'] === undefined ? undefined : Number(values['tun-port']);
    if (port !== undefined && !(Number.isInteger(port) && port >= 1 && port <= 65535))
      return fail(`--tun-port "${values['tun-port']}" must be 1..65535`);
    if (type === 'gue' && port === undefined) return fail('--tun-type gue needs --tun-port (as ipvsadm)');
    ({ steps, missing } = tunSteps(vip, type, port));
  } else {
    return fail(`--mode must be dr or tun${values.mode ? ` (not "${values.mode}")` : ''}`);
  }
  if (!values.apply) {
    process.stdout.write(`# real-server side of ${values.mode === 'dr' ? 'direct routing' : 'tunnelling'} for VIP ${vip}\n`);
    for (const s of steps) process.stdout.write(`${s.argv.join(' ')}    # ${s.why}\n`);
    if (missing) process.stdout.write(`# NOTE: this host cannot do it: ${missing}\n`);
    return 0;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write('tsvs realserver setup --apply needs root\n');
    return 1;
  }
  if (missing) {
    process.stderr.write(`tsvs realserver: ${missing}\n`);
    return 1;
  }
  for (const s of steps) {
    const r = spawnSync(s.argv[0]!, s.argv.slice(1), { encoding: 'utf8', timeout: 10_000 });
    // An address that is already there is what we wanted.
    if (r.status !== 0 && !/File exists|already assigned/.test(r.stderr)) {
      process.stderr.write(`tsvs realserver: ${s.argv.join(' ')}: ${r.error?.message ?? r.stderr.trim()}\n`);
      return 1;
    }
    process.stdout.write(`done: ${s.argv.join(' ')}\n`);
  }
  return 0;
}
