/**
 * What a real server needs for direct routing or tunnelling towards a VIP, as a list of
 * commands with the reason for each. `tsvs realserver setup` prints or runs them on this
 * host; the lab (src/lab/lab.ts) runs the DR ones in its real-server namespaces.
 *
 * DR: the real server accepts packets addressed to the VIP, so it holds the VIP, on lo
 * where it never answers ARP for it (arp_ignore=1: answer only for addresses of the
 * interface asked on; arp_announce=2: never use the VIP as the source of its own ARP
 * requests). Otherwise it would steal the VIP from the director on the shared segment.
 * TUN: the same, with the VIP on the decapsulating tunnel device (tunl0, gre0, or a fou
 * port for GUE) and rp_filter off there (the inner source is the client, which is not
 * routed via the tunnel). Which kernel modules that takes, and whether this host has
 * them, is the tunnel data plane's knowledge (dataplane/tunnel/support.ts).
 */
import type { Family, TunType } from '../core/types.js';
import { tunnelModules, tunnelRefusal } from '../dataplane/tunnel/support.js';

/** One command to run on the real server. */
export interface Step {
  /** The command, argv form. */
  argv: string[];
  why: string;
}

const sysctlStep = (key: string, value: string, why: string): Step => ({ argv: ['sysctl', '-w', `${key}=${value}`], why });

/** The ARP settings that keep a real server from answering for the VIP it holds. */
function arpSteps(dev?: string): Step[] {
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
  const addVip: Step = {
    argv: ['ip', 'addr', 'add', `${vip}/${v6 ? 128 : 32}`, 'dev', 'lo'],
    why: 'accept packets to the VIP without owning it on the segment',
  };
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
