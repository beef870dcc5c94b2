/**
 * What the VRRP speaker does to the host, behind one small interface so that tests can
 * replace it: read links and addresses (`ip -j`), add and remove virtual addresses
 * (netlink in-process, or `ip addr`), announce them (gratuitous ARP from an AF_PACKET
 * socket, or `arping -U`), and run scripts (notify_*, vrrp_script).
 *
 * IPv6 unsolicited neighbour advertisements are not sent: Debian's iputils has no tool for
 * them and the raw-socket addon cannot set the hop limit of ICMPv6 it sends; IPv6 VRRP
 * instances are refused at start anyway (see speaker.ts).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { splitCommand } from '../health/misc.js';
import type { Vip } from './model.js';
import { EADDRNOTAVAIL, EEXIST, rtnlAddr, rtnlAvailable, sendGarp, type RtnlError } from './rtnl.js';

export interface LinkInfo {
  name: string;
  index: number;
  /** Administratively up and with carrier (LOWER_UP). */
  up: boolean;
  /** The link-layer address (MAC), when it has one. */
  mac?: string;
  /** IPv4 addresses in the kernel's order, primary ones first. */
  addrs4: Array<{ addr: string; prefix: number; secondary: boolean }>;
}

export interface NetOps {
  /** Every link of this network namespace. */
  links(): Promise<Map<string, LinkInfo>>;
  addVip(dev: string, vip: Vip): Promise<void>;
  delVip(dev: string, vip: Vip): Promise<void>;
  /** Gratuitous ARP for an IPv4 VIP; resolves when sent (the repeats run on). */
  garp(dev: string, addr: string, count: number): void;
  /** Runs a command line (split like a shell, no shell); resolves with the exit code (null: killed). */
  run(command: string, args: string[], timeoutMs: number): Promise<number | null>;
  /** Kills gratuitous ARP repeats still running (scripts finish on their own or time out). */
  close(): void;
}

function exec(cmd: string, args: string[], timeoutMs = 5000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8', maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 127) : 0;
      resolve({ code, stdout, stderr: stderr || (err && code === 127 ? err.message : '') });
    });
  });
}

interface IpAddrJson {
  ifindex: number;
  ifname: string;
  address?: string;
  flags?: string[];
  addr_info?: Array<{ family: string; local: string; prefixlen: number; secondary?: boolean }>;
}

/**
 * The real host: addresses and gratuitous ARP in-process (rtnl.ts) when koffi works, else
 * through iproute2 and iputils-arping; links always through `ip -j addr`.
 */
export class SystemNetOps implements NetOps {
  private readonly children = new Set<ChildProcess>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private known = new Map<string, LinkInfo>();
  private readonly inProcess = rtnlAvailable();

  async links(): Promise<Map<string, LinkInfo>> {
    const r = await exec('ip', ['-j', 'addr', 'show']);
    if (r.code !== 0) throw new Error(`ip -j addr show: ${r.stderr.trim() || `exit ${r.code}`}`);
    const out = new Map<string, LinkInfo>();
    for (const l of JSON.parse(r.stdout || '[]') as IpAddrJson[]) {
      const flags = l.flags ?? [];
      out.set(l.ifname, {
        name: l.ifname,
        index: l.ifindex,
        up: flags.includes('UP') && flags.includes('LOWER_UP'),
        ...(l.address ? { mac: l.address } : {}),
        addrs4: (l.addr_info ?? [])
          .filter((a) => a.family === 'inet')
          .map((a) => ({ addr: a.local, prefix: a.prefixlen, secondary: !!a.secondary })),
      });
    }
    this.known = out;
    return out;
  }

  private index(dev: string): number | undefined {
    return this.inProcess ? this.known.get(dev)?.index : undefined;
  }

  async addVip(dev: string, vip: Vip): Promise<void> {
    const d = vip.dev ?? dev;
    const idx = this.index(d);
    if (idx !== undefined && !vip.extra.length && vip.family === 4) {
      try {
        rtnlAddr('add', idx, vip.addr, vip.prefix);
      } catch (e) {
        if ((e as RtnlError).errno !== EEXIST) throw new Error(`add ${vip.addr}/${vip.prefix} dev ${d}: ${(e as Error).message}`);
      }
      return;
    }
    const r = await exec('ip', ['addr', 'add', `${vip.addr}/${vip.prefix}`, 'dev', vip.dev ?? dev, ...vip.extra]);
    if (r.code !== 0 && !/File exists/.test(r.stderr))
      throw new Error(`ip addr add ${vip.addr}/${vip.prefix} dev ${vip.dev ?? dev}: ${r.stderr.trim()}`);
  }

  async delVip(dev: string, vip: Vip): Promise<void> {
    const d = vip.dev ?? dev;
    const idx = this.index(d);
    if (idx !== undefined && vip.family === 4) {
      try {
        rtnlAddr('del', idx, vip.addr, vip.prefix);
      } catch (e) {
        if ((e as RtnlError).errno !== EADDRNOTAVAIL) throw new Error(`del ${vip.addr}/${vip.prefix} dev ${d}: ${(e as Error).message}`);
      }
      return;
    }
    const r = await exec('ip', ['addr', 'del', `${vip.addr}/${vip.prefix}`, 'dev', vip.dev ?? dev]);
    if (r.code !== 0 && !/Cannot assign requested address|No such device/.test(r.stderr)) {
      throw new Error(`ip addr del ${vip.addr}/${vip.prefix} dev ${vip.dev ?? dev}: ${r.stderr.trim()}`);
    }
  }

  garp(dev: string, addr: string, count: number): void {
    const link = this.known.get(dev);
    if (this.inProcess && link?.mac) {
      // One now, the rest a second apart (as arping -c N).
      const once = () => {
        try {
          sendGarp(link.index, link.mac!, addr);
        } catch {
          /* the link went away: nothing to announce on */
        }
      };
      once();
      for (let k = 1; k < count; k++) {
        const t = setTimeout(() => {
          this.timers.delete(t);
          once();
        }, k * 1000);
        t.unref();
        this.timers.add(t);
      }
      return;
    }
    // -U: unsolicited ARP (gratuitous), one per second; the first goes out at once.
    const c = spawn('arping', ['-q', '-U', '-c', String(count), '-I', dev, addr], { stdio: 'ignore' });
    this.children.add(c);
    c.once('exit', () => this.children.delete(c));
    c.once('error', () => this.children.delete(c));
  }

  run(command: string, args: string[], timeoutMs: number): Promise<number | null> {
    const argv = [...splitCommand(command), ...args];
    return new Promise((resolve) => {
      let c: ChildProcess;
      try {
        c = spawn(argv[0]!, argv.slice(1), { stdio: 'ignore', detached: true });
      } catch {
        resolve(127);
        return;
      }
      const timer = setTimeout(() => {
        try {
          process.kill(-c.pid!, 'SIGKILL');
        } catch {
          /* gone */
        }
      }, timeoutMs);
      timer.unref();
      c.once('error', () => {
        clearTimeout(timer);
        resolve(127);
      });
      c.once('exit', (code) => {
        clearTimeout(timer);
        resolve(code);
      });
    });
  }

  close(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const c of this.children) {
      try {
        c.kill('SIGKILL');
      } catch {
        /* gone */
      }
    }
    this.children.clear();
  }
}
