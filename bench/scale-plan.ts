/**
 * What bench/scale.ts loads and changes, as pure functions: the addresses of N services ×
 * 4 real servers, the `ipvsadm -S` rules file that `tsvsadm -R` reads, and a seeded
 * stream of single changes (add a new server, edit a weight, delete a server) on existing
 * services, each as tsvsadm arguments and as the API operation.
 *
 * Addresses: the nftables plane uses 198.18.0.0/15 (VIPs in 198.18.1-81.x, real servers
 * in 198.19.1-200.x and new ones in 198.19.240-255.x; 198.18.0.x and 198.19.0.x are left
 * to the download lab). The userspace plane binds a listener per VIP, so its addresses are
 * the same octets under 127.18 and 127.19, on loopback.
 */
import type { DestConfig, Op, ServiceKey } from '../src/core/types.js';
import { seededRandom } from '../test/schedulers/fake.js';

export type Plane = 'nftables' | 'userspace';

/** Real servers per service, as the "N × 4". */
export const REALS_PER_SERVICE = 4;
/** Most new servers one plan can hand out (198.19.240.1 .. 198.19.255.250). */
const MAX_NEW_REALS = 16 * 250;

/** One service that replaces service 0 (the download lab's VIP and its real servers). */
export interface Special {
  vip: string;
  port: number;
  reals: string[];
}

/** N services on one plane; service 0 may be the download lab's. */
export interface Plan {
  plane: Plane;
  size: number;
  scheduler: string;
  special?: Special;
}

const prefix = (p: Plane) => (p === 'nftables' ? ['198.18', '198.19'] : ['127.18', '127.19']);

/** `addr:port` of service i's VIP. */
export function vipOf(plan: Plan, i: number): string {
  if (i === 0 && plan.special) return `${plan.special.vip}:${plan.special.port}`;
  return `${prefix(plan.plane)[0]}.${1 + Math.floor(i / 250)}.${1 + (i % 250)}:80`;
}

/** `addr:port` of service i's initial real servers (a pool of 800 addresses shared by the services). */
export function realsOf(plan: Plan, i: number): string[] {
  if (i === 0 && plan.special) return plan.special.reals.map((a) => `${a}:${plan.special!.port}`);
  const net = `${prefix(plan.plane)[1]}.${1 + (i % 200)}`;
  return Array.from({ length: REALS_PER_SERVICE }, (_, j) => `${net}.${10 + j}:80`);
}

/** The rules file: one -A and four -a lines per service, masquerading, weight 1 (ipvsadm -S format). */
export function rulesText(plan: Plan): string {
  const lines: string[] = [];
  for (let i = 0; i < plan.size; i++) {
    const vip = vipOf(plan, i);
    lines.push(`-A -t ${vip} -s ${plan.scheduler}`);
    for (const r of realsOf(plan, i)) lines.push(`-a -t ${vip} -r ${r} -m -w 1`);
  }
  return `${lines.join('\n')}\n`;
}

/** One single change to an existing service. */
export interface Change {
  kind: 'add' | 'edit' | 'delete';
  service: number;
  /** `addr:port` of the real server. */
  real: string;
  weight: number;
}

const split = (ap: string): [string, number] => {
  const c = ap.lastIndexOf(':');
  return [ap.slice(0, c), Number(ap.slice(c + 1))];
};

/** tsvsadm's arguments for a change. */
export function changeArgs(plan: Plan, c: Change): string[] {
  const svc = ['-t', vipOf(plan, c.service)];
  if (c.kind === 'delete') return ['-d', ...svc, '-r', c.real];
  return [c.kind === 'add' ? '-a' : '-e', ...svc, '-r', c.real, '-m', '-w', String(c.weight)];
}

/** The API operation for a change (what tsvsadm sends for changeArgs). */
export function changeOp(plan: Plan, c: Change): Op {
  const [vaddr, vport] = split(vipOf(plan, c.service));
  const service: ServiceKey = { af: 4, protocol: 'tcp', addr: vaddr, port: vport, fwmark: 0 };
  const [addr, port] = split(c.real);
  if (c.kind === 'delete') return { op: 'delete-server', service, dest: { af: 4, addr, port } };
  const dest: DestConfig = { af: 4, addr, port, weight: c.weight, fwd: 'masq', uThreshold: 0, lThreshold: 0 };
  return { op: c.kind === 'add' ? 'add-server' : 'edit-server', service, dest };
}

/**
 * A seeded stream of changes, cycling add, edit and delete over random services (never
 * service 0 when the plan has a special one: that is the download's). It keeps its own
 * copy of each touched service's servers, so every change is valid against the table
 * that `rulesText` loaded plus the changes before it.
 */
export class ChangeStream {
  private readonly rand: () => number;
  private readonly servers = new Map<number, string[]>();
  private n = 0;
  private added = 0;

  constructor(
    private readonly plan: Plan,
    seed: number,
  ) {
    // seededRandom gives 32-bit integers; scaled to [0, 1).
    const u32 = seededRandom(seed);
    this.rand = () => u32() / 2 ** 32;
  }

  next(): Change {
    const kind = (['add', 'edit', 'delete'] as const)[this.n++ % 3]!;
    // Edits and deletes need a server: pick a service that still has one.
    for (let tries = 0; ; tries++) {
      if (tries > 10_000) throw new Error('no service has a server left to edit or delete');
      const service = this.pickService();
      const list = this.serversOf(service);
      if (kind === 'add') {
        if (this.added >= MAX_NEW_REALS) throw new Error(`more than ${MAX_NEW_REALS} added servers in one plan`);
        const k = this.added++;
        const real = `${prefix(this.plan.plane)[1]}.${240 + Math.floor(k / 250)}.${1 + (k % 250)}:80`;
        list.push(real);
        return { kind, service, real, weight: 1 };
      }
      if (list.length === 0) continue;
      const at = Math.floor(this.rand() * list.length);
      const real = list[at]!;
      if (kind === 'delete') list.splice(at, 1);
      return { kind, service, real, weight: kind === 'edit' ? 2 + Math.floor(this.rand() * 98) : 0 };
    }
  }

  private pickService(): number {
    const from = this.plan.special ? 1 : 0;
    if (this.plan.size - from < 1) throw new Error('no service to change');
    return from + Math.floor(this.rand() * (this.plan.size - from));
  }

  private serversOf(i: number): string[] {
    let l = this.servers.get(i);
    if (!l) this.servers.set(i, (l = realsOf(this.plan, i)));
    return l;
  }
}
