/**
 * `tsvs realserver setup --mode dr|tun VIP [--apply]`: what a real server needs for
 * direct routing or tunnelling, printed as commands (default) or applied (--apply, root).
 *
 * DR: the real server accepts packets addressed to the VIP, so it holds the VIP, on lo
 * where it never answers ARP for it (arp_ignore=1: answer only for addresses of the
 * interface asked on; arp_announce=2: never use the VIP as the source of its own ARP
 * requests). Otherwise it would steal the VIP from the director on the shared segment.
 * TUN: the same, with the VIP on the decapsulating tunnel device (tunl0, gre0, or a fou
 * port for GUE) and rp_filter off there (the inner source is the client, which is not
 * routed via the tunnel). This host's kernel support is checked and reported.
 *
 * The lab (src/lab/lab.ts, `tsvs lab up --mode dr`) applies the same steps in its real
 * server namespaces.
 */
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import type { Family, TunType } from '../core/types.js';
import { tunnelModules, tunnelRefusal } from '../dataplane/tunnel/support.js';

export interface Step {
  /** The command, argv form. */
  argv: string[];
  why: string;
}

const sysctlStep = (key: string, value: string, why: string): Step => ({ argv: ['sysctl', '-w', `${key}=${value}`], why });

/** The ARP settings that keep a real server from answering for the VIP it holds. */
export function arpSteps(dev?: string): Step[] {
  const out: Step[] = [
    sysctlStep('net.ipv4.conf.all.arp_ignore', '1', 'answer ARP only for addresses of the interface asked on, so never for the VIP'),
    sysctlStep('net.ipv4.conf.all.arp_announce', '2', 'never use the VIP as the source address of ARP requests'),
  ];
  if (dev) {
    out.push(
      sysctlStep(`net.ipv4.conf.${dev}.arp_ignore`, '1', `the same on ${dev} (the kernel uses the larger of all and ${dev})`),
      sysctlStep(`net.ipv4.conf.${dev}.arp_announce`, '2', `the same on ${dev}`),
    );
  }
  return out;
}

/** The real-server side of DR for one VIP. */
export function drSteps(vip: string, dev?: string): Step[] {
  const v6 = vip.includes(':');
  const addVip: Step = { argv: ['ip', 'addr', 'add', `${vip}/${v6 ? 128 : 32}`, 'dev', 'lo'], why: 'accept packets to the VIP without owning it on the segment' };
  // IPv6 has no ARP: a VIP on lo is not advertised by neighbour discovery.
  return v6 ? [addVip] : [addVip, ...arpSteps(dev)];
}

/** The real-server side of TUN for one VIP; `missing` names what this host lacks. */
export function tunSteps(vip: string, type: TunType, port?: number): { steps: Step[]; missing: string | null } {
  const af: Family = vip.includes(':') ? 6 : 4;
  const len = af === 6 ? 128 : 32;
  const steps: Step[] = tunnelModules(type, af).map((m) => ({ argv: ['modprobe', m], why: `${type} decapsulation needs ${m}` }));
  const dev = type === 'gre' ? (af === 6 ? 'ip6gre0' : 'gre0') : af === 6 ? 'ip6tnl0' : 'tunl0';
  if (type === 'gue') {
    steps.push({
      argv: ['ip', 'fou', 'add', 'port', String(port ?? 6080), 'gue', ...(af === 6 ? ['-6'] : [])],
      why: `receive GUE on UDP port ${port ?? 6080} (ipvsadm --tun-port) and hand the inner packet to ${dev}`,
    });
  }
  steps.push(
    { argv: ['ip', 'link', 'set', dev, 'up'], why: `the fallback device ${dev} takes the decapsulated packets` },
    { argv: ['ip', 'addr', 'add', `${vip}/${len}`, 'dev', dev], why: 'accept the inner packets, addressed to the VIP' },
  );
  if (af === 4) {
    steps.push(
      sysctlStep(`net.ipv4.conf.${dev}.rp_filter`, '0', 'the inner source (the client) is not routed via the tunnel'),
      sysctlStep('net.ipv4.conf.all.rp_filter', '0', 'the kernel uses the larger of all and the device'),
      ...arpSteps(),
    );
  }
  return { steps, missing: tunnelRefusal(type, af) };
}

const USAGE = `Usage: tsvs realserver setup --mode dr|tun VIP [--dev IFACE] [--tun-type ipip|gue|gre] [--tun-port N] [--apply]

Prints what a real server needs for direct routing (dr) or tunnelling (tun) towards the
VIP, one command per line with the reason; --apply runs them (needs root).
  dr    VIP on lo, arp_ignore=1 / arp_announce=2 (on all, and on IFACE with --dev)
  tun   tunnel modules, VIP on the tunnel device, rp_filter off; says what this kernel lacks
`;

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
  if (values.dev !== undefined && !/^[A-Za-z0-9_.:-]{1,15}$/.test(values.dev)) return fail(`--dev "${values.dev}" is not an interface name`);
  let steps: Step[];
  let missing: string | null = null;
  if (values.mode === 'dr') {
    steps = drSteps(vip, values.dev);
  } else if (values.mode === 'tun') {
    const type = (values['tun-type'] ?? 'ipip') as TunType;
    if (!['ipip', 'gue', 'gre'].includes(type)) return fail(`--tun-type "${type}": use ipip, gue or gre`);
    const port = values['tun-port'] === undefined ? undefined : Number(values['tun-port']);
    if (port !== undefined && !(Number.isInteger(port) && port >= 1 && port <= 65535)) return fail(`--tun-port "${values['tun-port']}" must be 1..65535`);
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
