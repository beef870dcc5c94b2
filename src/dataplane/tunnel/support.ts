/**
 * Does this kernel have what LVS-TUN (ipvsadm -i) needs? Each tunnel type needs kernel
 * modules: on the director to encapsulate (kernel IPVS does it inside ip_vs; without
 * ip_vs a tunnel device of that type must do it) and on the real server to decapsulate.
 *
 *   ipip  IPv4: ipip            IPv6: ip6_tunnel
 *   gue   fou (plus ipip / ip6_tunnel for the inner packet, fou6 for IPv6)
 *   gre   IPv4: ip_gre          IPv6: ip6_gre
 *
 * A module counts as present when /sys/module/NAME exists (loaded, or built in with
 * parameters), /proc/modules lists it, `modprobe -n NAME` would load it, or
 * /lib/modules/RELEASE/modules.builtin names it. The answer says which sources it looked
 * at, so that a refusal can say exactly why.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import type { Family, TunType } from '../../core/types.js';

/** The kernel modules a tunnel type needs, per outer address family. */
export function tunnelModules(type: TunType, af: Family): string[] {
  switch (type) {
    case 'ipip':
      return [af === 6 ? 'ip6_tunnel' : 'ipip'];
    case 'gue':
      return af === 6 ? ['fou', 'fou6', 'ip6_tunnel'] : ['fou', 'ipip'];
    case 'gre':
      return [af === 6 ? 'ip6_gre' : 'ip_gre'];
  }
}

/** Where module information comes from; replaced in tests. */
export interface ModuleProbe {
  exists(path: string): boolean;
  read(path: string): string | null;
  /** `modprobe -n -q NAME`: true/false, or null when there is no modprobe. */
  modprobeDryRun(name: string): boolean | null;
  release: string;
}

export const hostProbe: ModuleProbe = {
  exists: existsSync,
  read: (p) => {
    try {
      return readFileSync(p, 'utf8');
    } catch {
      return null;
    }
  },
  modprobeDryRun: (name) => {
    const r = spawnSync('modprobe', ['-n', '-q', name], { timeout: 5000 });
    if (r.error) return null;
    return r.status === 0;
  },
  release: release(),
};

export interface ModuleState {
  name: string;
  present: boolean;
  /** How it was found, or why it is considered missing. */
  how: string;
}

/** Looks for one kernel module. */
export function findModule(name: string, probe: ModuleProbe = hostProbe): ModuleState {
  if (probe.exists(`/sys/module/${name}`)) return { name, present: true, how: `/sys/module/${name}` };
  const procModules = probe.read('/proc/modules');
  if (procModules?.split('\n').some((l) => l.split(' ')[0] === name)) return { name, present: true, how: '/proc/modules' };
  const builtin = probe.read(`/lib/modules/${probe.release}/modules.builtin`);
  if (builtin?.split('\n').some((l) => l.endsWith(`/${name}.ko`))) return { name, present: true, how: 'modules.builtin' };
  const dry = probe.modprobeDryRun(name);
  if (dry) return { name, present: true, how: `modprobe -n ${name}` };
  const looked = [
    `/sys/module/${name}: absent`,
    procModules === null ? '/proc/modules: not readable' : '/proc/modules: not listed',
    builtin === null ? `/lib/modules/${probe.release}: absent` : 'modules.builtin: not listed',
    dry === null ? 'modprobe: not installed' : `modprobe -n ${name}: not found`,
  ];
  return { name, present: false, how: looked.join('; ') };
}

/** The modules a tunnel type lacks here (empty: all present). */
export function missingTunnelModules(type: TunType, af: Family, probe: ModuleProbe = hostProbe): ModuleState[] {
  return tunnelModules(type, af)
    .map((m) => findModule(m, probe))
    .filter((m) => !m.present);
}

/** A sentence naming what is missing for a tunnel type, or null when nothing is. */
export function tunnelRefusal(type: TunType, af: Family, probe: ModuleProbe = hostProbe): string | null {
  const missing = missingTunnelModules(type, af, probe);
  if (!missing.length) return null;
  const names = missing.map((m) => m.name).join(', ');
  return `tunnel type ${type} (IPv${af}) needs the kernel module${missing.length > 1 ? 's' : ''} ${names}, which this kernel (${probe.release}) does not have (${missing.map((m) => `${m.name}: ${m.how}`).join(' / ')})`;
}
