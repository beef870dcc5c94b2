/**
 * A ControlApi for tsvsadm tests: serves a TableView built by hand, records what is
 * applied, and fails on demand with a given error.
 */
import type { ControlApi, SyncDaemonView } from '../../src/api/control.js';
import type { ConnView, DestView, Op, Rates, ServiceView, Stats, TableView } from '../../src/core/types.js';
import type { IpvsadmIO, NameResolver } from '../../src/cli/ipvsadm/run.js';
import { runIpvsadm } from '../../src/cli/ipvsadm/run.js';
import { builtinServices } from '../../src/ipvsadm/services.js';

export class FakeApi implements ControlApi {
  /** Every apply() call, in order (also the failed ones). */
  readonly applied: Op[][] = [];
  /** When set, apply() rejects with it. */
  applyError: Error | null = null;
  /** When set, the listing calls reject with it. */
  readError: Error | null = null;

  constructor(
    public table: TableView = emptyTable(),
    public conns: ConnView[] = [],
    public daemons: SyncDaemonView[] = [],
  ) {}

  async getTable(): Promise<TableView> {
    if (this.readError) throw this.readError;
    return this.table;
  }
  async getConnections(): Promise<ConnView[]> {
    if (this.readError) throw this.readError;
    return this.conns;
  }
  async apply(ops: Op[]): Promise<void> {
    this.applied.push(ops);
    if (this.applyError) throw this.applyError;
  }
  async getSyncDaemons(): Promise<SyncDaemonView[]> {
    if (this.readError) throw this.readError;
    return this.daemons;
  }
}

export const zeroStats = (): Stats => ({ conns: 0, inpkts: 0, outpkts: 0, inbytes: 0, outbytes: 0 });
export const zeroRates = (): Rates => ({ cps: 0, inpps: 0, outpps: 0, inbps: 0, outbps: 0 });

export function emptyTable(): TableView {
  return {
    version: '1.2.1',
    size: 4096,
    services: [],
    timeouts: { tcp: 900, tcpfin: 120, udp: 300 },
    stats: zeroStats(),
    rates: zeroRates(),
  };
}

/** A service with defaults filled in: TCP, wlc, not persistent. */
export function svc(p: Partial<ServiceView> & { addr?: string; port?: number }): ServiceView {
  const af = p.af ?? (p.addr?.includes(':') ? 6 : 4);
  return {
    af,
    protocol: 'tcp',
    addr: af === 6 ? '::' : '0.0.0.0',
    port: 0,
    fwmark: 0,
    scheduler: 'wlc',
    schedFlags: 0,
    persistent: 0,
    netmask: af === 6 ? 128 : 0xffffffff,
    ops: false,
    pe: '',
    dests: [],
    stats: zeroStats(),
    rates: zeroRates(),
    ...p,
  };
}

/** A real server with defaults filled in: route, weight 1, no counters. */
export function dest(p: Partial<DestView> & { addr: string; port: number }): DestView {
  return {
    af: p.addr.includes(':') ? 6 : 4,
    weight: 1,
    fwd: 'route',
    uThreshold: 0,
    lThreshold: 0,
    activeconns: 0,
    inactconns: 0,
    persistconns: 0,
    overloaded: false,
    stats: zeroStats(),
    rates: zeroRates(),
    ...p,
  };
}

/** An offline resolver: a few names, and the built-in services table. */
export const stubResolver: NameResolver = {
  async lookupHost(name) {
    return (
      ({ localhost: '127.0.0.1', 'www.example.com': '192.0.2.80', 'lb.example.com': '10.0.0.1' } as Record<string, string>)[name] ?? null
    );
  },
  async lookupAddr(addr) {
    return (
      (
        {
          '127.0.0.1': 'localhost',
          '10.0.0.1': 'lb.example.com',
          '10.0.0.2': 'frontend-vip.example.com',
          '192.168.1.2': 'web-1.internal.example.com',
          '192.168.1.3': 'a-rather-long-real-server-name.example.com',
          '2001:db8::1': 'v6.example.com',
        } as Record<string, string>
      )[addr] ?? null
    );
  },
  services: builtinServices,
};

/**
 * The names the IPv4 goldens were listed with (those of the machine that first produced
 * them): only 127.0.0.1 has a host name; ports are named from the built-in services.
 */
export const goldenResolver: NameResolver = { ...stubResolver, lookupAddr: async (a) => (a === '127.0.0.1' ? 'localhost' : null) };

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs tsvsadm against `api` with the stub resolver and captured output. */
export async function run(
  argv: string[],
  api: FakeApi = new FakeApi(),
  opts: { stdin?: string; progName?: string; resolve?: Partial<NameResolver> } = {},
): Promise<RunResult> {
  let stdout = '';
  let stderr = '';
  const io: IpvsadmIO = {
    stdout: (s) => {
      stdout += s;
    },
    stderr: (s) => {
      stderr += s;
    },
    readStdin: async () => opts.stdin ?? '',
    resolve: opts.resolve ?? stubResolver,
    progName: opts.progName ?? 'ipvsadm',
  };
  const code = await runIpvsadm(argv, io, api);
  return { code, stdout, stderr };
}
