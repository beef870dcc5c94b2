/**
 * The reply routing of transparent userspace connections. A transparent connection leaves
 * this host from the client's address (IP_TRANSPARENT, src/net/socket.ts), so the real
 * server answers to the client's address; with this host as the real servers' gateway
 * those replies arrive here, and this routing delivers them to the local socket instead of
 * forwarding them:
 *
 *   nft table inet tsvs   prerouting (mangle): meta l4proto tcp socket transparent 1 meta mark set MARK
 *   ip rule add fwmark MARK lookup TABLE          (and ip -6)
 *   ip route add local 0.0.0.0/0 dev lo table TABLE   (and ::/0)
 *
 * It is set up only when asked (TSVS_TRANSPARENT_SETUP=1 for tsvsd), logged line by line,
 * and removed when the plane stops. The nftables data plane owns the `ip tsvs` / `ip6 tsvs`
 * tables; this one is `inet tsvs`. Needs root (CAP_NET_ADMIN) and nft + ip.
 */
import type { LogFn } from '../../core/log.js';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TsvsError } from '../../core/errors.js';

export interface TransparentRoutingOptions {
  /** Packet mark of replies to transparent sockets; default 0x7473 ("ts"). */
  mark?: number;
  /** Routing table with the local default route; default 7473. */
  table?: number;
}

function run(cmd: string, args: string[]): Promise<{ ok: boolean; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 10_000 }, (err, stdout, stderr) => {
      resolve({ ok: !err, out: `${stdout}${stderr}`.trim() || (err ? (err as Error).message : '') });
    });
  });
}

/** The nft script that marks packets belonging to transparent sockets. */
export function transparentRuleset(mark: number): string {
  return `table inet tsvs {
  chain prerouting {
    type filter hook prerouting priority mangle; policy accept;
    meta l4proto tcp socket transparent 1 meta mark set 0x${mark.toString(16)} accept
  }
}
`;
}

export class TransparentRouting {
  readonly mark: number;
  readonly table: number;
  private active = false;

  constructor(
    private readonly log: LogFn,
    opts: TransparentRoutingOptions = {},
  ) {
    this.mark = opts.mark ?? 0x7473;
    this.table = opts.table ?? 7473;
  }

  /** Why it cannot be set up here, or null. */
  async problem(): Promise<string | null> {
    if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'setting up the reply routing needs root (nft, ip rule)';
    for (const cmd of ['nft', 'ip']) {
      const r = await run('sh', ['-c', `command -v ${cmd}`]);
      if (!r.ok) return `${cmd} is not installed (apt-get install ${cmd === 'ip' ? 'iproute2' : 'nftables'})`;
    }
    return null;
  }

  /** Installs the nft table, rules and routes (replacing a stale set from a crashed run). */
  async setup(): Promise<void> {
    const problem = await this.problem();
    if (problem) {
      throw new TsvsError(
        'DATAPLANE',
        `transparent reply routing: ${problem}`,
        `Cannot set up the transparent reply routing (TSVS_TRANSPARENT_SETUP): ${problem}.`,
      );
    }
    await this.remove();
    const dir = mkdtempSync(join(tmpdir(), 'tsvs-tproxy-'));
    try {
      const file = join(dir, 'rules.nft');
      writeFileSync(file, transparentRuleset(this.mark));
      const steps: Array<[string, string[]]> = [
        ['nft', ['-f', file]],
        ['ip', ['-4', 'rule', 'add', 'fwmark', String(this.mark), 'lookup', String(this.table)]],
        ['ip', ['-4', 'route', 'add', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', String(this.table)]],
        ['ip', ['-6', 'rule', 'add', 'fwmark', String(this.mark), 'lookup', String(this.table)]],
        ['ip', ['-6', 'route', 'add', 'local', '::/0', 'dev', 'lo', 'table', String(this.table)]],
      ];
      this.active = true;
      for (const [cmd, args] of steps) {
        const r = await run(cmd, args);
        const line = `${cmd} ${args.join(' ')}`;
        if (!r.ok) {
          // IPv6 may be disabled on the host: IPv4 transparency still works.
          if (args[0] === '-6') {
            this.log('warn', `transparent reply routing: ${line} failed: ${r.out} (IPv6 transparent services will not get replies)`, {});
            continue;
          }
          await this.remove();
          throw new TsvsError(
            'DATAPLANE',
            `transparent reply routing: ${line}: ${r.out}`,
            `Cannot set up the transparent reply routing: ${line} failed: ${r.out}`,
          );
        }
        this.log(
          'info',
          `transparent reply routing: ${cmd === 'nft' ? `nft table inet tsvs (socket transparent 1 -> mark 0x${this.mark.toString(16)})` : line}`,
          {},
        );
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /** Removes what setup installed. */
  async teardown(): Promise<void> {
    if (!this.active) return;
    await this.remove();
    this.log('info', 'transparent reply routing removed (nft table inet tsvs, ip rule, local route)', {});
  }

  private async remove(): Promise<void> {
    this.active = false;
    const r = await run('nft', ['list', 'table', 'inet', 'tsvs']);
    if (r.ok) await run('nft', ['delete', 'table', 'inet', 'tsvs']);
    for (const fam of ['-4', '-6']) {
      // ip rule del removes one matching rule per call; a crashed run may have left several.
      for (let i = 0; i < 8; i++) {
        const d = await run('ip', [fam, 'rule', 'del', 'fwmark', String(this.mark), 'lookup', String(this.table)]);
        if (!d.ok) break;
      }
      await run('ip', [fam, 'route', 'flush', 'table', String(this.table)]);
    }
  }
}
