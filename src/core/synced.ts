/**
 * The backup side of state sync in the core: entries received from a sync master become
 * connection entries and persistence templates of the table, flagged SYNC, and are
 * indexed so that a later message updates them and a new master can find them all.
 * IpvsTable owns one SyncedConns and offers its methods as its own (importSynced, ...).
 */
import { CONN_F_NOOUTPUT, CONN_F_SYNC, CONN_F_TEMPLATE, type Conn, type ConnProtocol, type ConnTable } from './conn.js';
import type { Dest, VirtualService } from './service.js';
import { TCP_DEFAULT_TIMEOUTS, TcpState } from './tcpstate.js';
import type { ConnTuple, Protocol, ServiceKey } from './types.js';

/**
 * A connection entry or persistence template received from a sync master (see src/sync),
 * in the core's terms. Templates carry the client network in `caddr` and port 0.
 */
export interface SyncedEntry extends ConnTuple {
  protocol: ConnProtocol;
  af: 4 | 6;
  /** The service's firewall mark, 0 for address services. */
  fwmark: number;
  template: boolean;
  /** TcpState for TCP, 0 otherwise; 0/1 (NONE/ASSURED) for templates. */
  state: number;
  /** Seconds until expiry; 0 means the protocol's timeout for the state (3 min for templates). */
  timeout: number;
  /** The master's NOOUTPUT flag (DR/TUN). */
  noOutput?: boolean;
}

/** Why a synced entry could not be imported. */
export type SyncImportMiss = 'no-service' | 'no-dest';

/** What SyncedConns needs of its table. */
export interface SyncTable {
  readonly conns: ConnTable;
  now(): number;
  get(k: ServiceKey): VirtualService | undefined;
  lookup(protocol: Protocol, vaddr: string, vport: number): VirtualService | undefined;
}

/** sysctl sync_threshold: what a synced entry's packet count is set to (ip_vs_proc_conn). */
const SYNC_THRESHOLD = 3;

/** The entries a table imported from a sync master. */
export class SyncedConns {
  /** Connection entries (not templates) by tuple, so a later message updates them. */
  private readonly byTuple = new Map<string, Conn>();
  /** Every entry imported (templates too), so listing them walks only them. */
  private readonly all = new Set<Conn>();

  constructor(private readonly table: SyncTable) {}

  /** The service a synced entry belongs to (by mark, else by address, port-zero services included). */
  service(e: Pick<SyncedEntry, 'af' | 'protocol' | 'vaddr' | 'vport' | 'fwmark'>): VirtualService | undefined {
    if (e.fwmark) return this.table.get({ af: e.af, protocol: 'tcp', addr: '', port: 0, fwmark: e.fwmark });
    if (e.protocol === 'ip') return undefined;
    return this.table.lookup(e.protocol, e.vaddr, e.vport);
  }

  /** The real server a synced entry names: same address and port, or (port-zero templates) same address. */
  dest(svc: VirtualService, daddr: string, dport: number): Dest | undefined {
    return svc.dests.find((d) => d.addr === daddr && d.port === dport) ?? svc.dests.find((d) => d.addr === daddr && dport === 0);
  }

  /** See IpvsTable.importSynced. */
  import(e: SyncedEntry): Conn | SyncImportMiss {
    const svc = this.service(e);
    if (!svc) return 'no-service';
    const dest = this.dest(svc, e.daddr, e.dport);
    if (!dest) return 'no-dest';
    const conns = this.table.conns;
    const now = this.table.now();
    let c: Conn | undefined;
    if (e.template) {
      const key = conns.templateKey(svc, e.caddr);
      c = conns.findTemplate(key);
      if (c && c.dest !== dest) {
        // Connections it still controls keep it alive; new ones go to the synced server.
        if (c.nControl > 0) conns.retireTemplate(c);
        else conns.remove(c);
        c = undefined;
      }
      if (!c) {
        c = conns.createTemplate(key, svc, e.caddr, dest, now);
        c.flags |= CONN_F_SYNC;
        this.all.add(c);
      }
      c.state = e.state === 1 ? 1 : 0;
      c.timeoutMs = (e.timeout || 180) * 1000;
    } else {
      const key = syncKey(e.protocol, e.caddr, e.cport, e.vaddr, e.vport, e.fwmark);
      c = this.byTuple.get(key);
      if (c && (c.dead || c.dest !== dest)) {
        if (!c.dead) conns.remove(c);
        c = undefined;
      }
      if (!c) {
        const flags = CONN_F_SYNC | (e.noOutput ? CONN_F_NOOUTPUT : 0);
        c = conns.create(e.protocol, e.af, e.caddr, e.cport, e.vaddr, e.vport, dest.addr, e.dport, svc, dest, flags, now);
        this.byTuple.set(key, c);
        this.all.add(c);
      }
      if (e.protocol === 'tcp') conns.setTcpState(c, e.state as TcpState);
      const t = conns.timeouts();
      const stateTimeout =
        e.protocol !== 'tcp'
          ? t.udp
          : e.state === TcpState.ESTABLISHED
            ? t.tcp
            : e.state === TcpState.FIN_WAIT
              ? t.tcpfin
              : (TCP_DEFAULT_TIMEOUTS[e.state] ?? 2);
      c.timeoutMs = (e.timeout || stateTimeout) * 1000;
    }
    c.inPkts = SYNC_THRESHOLD;
    conns.touch(c, now);
    return c;
  }

  /** See IpvsTable.syncedEntries. */
  entries(): Conn[] {
    const out: Conn[] = [];
    for (const c of this.all) {
      // Entries leave the table (expiry, a data plane's drop) or are adopted (flag cleared)
      // by many ways: prune here.
      if (c.dead || !(c.flags & CONN_F_SYNC)) this.all.delete(c);
      else out.push(c);
    }
    return out;
  }

  /** See IpvsTable.dropSyncedConns. */
  dropConns(): number {
    let n = 0;
    for (const c of this.entries()) {
      if (c.flags & CONN_F_TEMPLATE) continue;
      this.table.conns.remove(c);
      this.forget(c);
      n++;
    }
    return n;
  }

  /** `c` left the table (it expired, or was dropped): out of the indexes. */
  forget(c: Conn): void {
    this.all.delete(c);
    const key = syncKey(c.protocol, c.caddr, c.cport, c.vaddr, c.vport, c.svc.fwmark);
    if (this.byTuple.get(key) === c) this.byTuple.delete(key);
  }
}

function syncKey(protocol: string, caddr: string, cport: number, vaddr: string, vport: number, fwmark: number): string {
  return `${protocol}|${caddr}|${cport}|${vaddr}|${vport}|${fwmark}`;
}
