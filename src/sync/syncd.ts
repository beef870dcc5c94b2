/**
 * The two halves of the IPVS sync daemon without their sockets, so they run in tests with
 * a fake clock and no network (the UDP adapter is transport.ts, the owner manager.ts).
 *
 * SyncMaster walks the core's connection table on every `scan()` and sends what a backup
 * needs, packed into version-1 messages (proto.ts). The kernel decides per packet
 * (ip_vs_sync_conn_needed); tsvs has no per-packet hook on every data plane, so the same
 * rules are applied per scan to what changed since the entry was last sent:
 *   - templates: when first seen, when their server changes, and again once their expiry
 *     moved 10 s or more (a new connection re-armed them);
 *   - TCP: only in ESTABLISHED, FIN_WAIT, CLOSE, CLOSE_WAIT or TIME_WAIT (the kernel's
 *     set), at once on a change of state, and again once the expiry moved by the refresh
 *     threshold;
 *   - UDP and SCTP: when first seen, then by the refresh threshold;
 *   - never one-packet entries, and never entries that themselves came from sync (so two
 *     directors that each run both daemons do not echo each other).
 * The refresh threshold is the kernel's sync_refresh_period rule: half the entry's timeout
 * but at least 10 s, or `refreshPeriodMs` when that is set and smaller.
 *
 * SyncBackup decodes, filters on syncid (only when its own is not 0, as the kernel does),
 * and hands each entry to an importer (by default the core's `importSynced`).
 */
import { CONN_F_INACTIVE, CONN_F_NOOUTPUT, CONN_F_ONE_PACKET, CONN_F_SYNC, type Conn, type ConnProtocol } from '../core/conn.js';
import type { Dest } from '../core/service.js';
import type { SyncedEntry, SyncImportMiss } from '../core/synced.js';
import type { IpvsTable } from '../core/table.js';
import { TcpState } from '../core/tcpstate.js';
import {
  decodeMessage,
  encodeMessages,
  IPVS_CONN_F,
  PROTO,
  protocolName,
  type DropReason,
  type SkipReason,
  type SyncConn,
} from './proto.js';
import { formatIPv4 } from '../core/addr.js';

/** TCP states in which the kernel's master syncs a connection. */
const SYNC_TCP_STATES: ReadonlySet<number> = new Set([
  TcpState.ESTABLISHED,
  TcpState.FIN_WAIT,
  TcpState.CLOSE,
  TcpState.CLOSE_WAIT,
  TcpState.TIME_WAIT,
]);
const MIN_REFRESH_MS = 10_000;

const FWD_FLAGS: Record<Dest['fwd'], number> = {
  masq: IPVS_CONN_F.MASQ,
  fullnat: IPVS_CONN_F.MASQ,
  route: IPVS_CONN_F.DROUTE,
  tunnel: IPVS_CONN_F.TUNNEL,
};

/** A core entry as a sync entry: kernel flag bits, protocol number, seconds left. */
export function connToSync(c: Conn, now: number): SyncConn {
  const fwmark = c.svc.fwmark;
  let flags = c.dest ? FWD_FLAGS[c.dest.fwd] : 0;
  if (c.isTemplate) flags |= IPVS_CONN_F.TEMPLATE;
  else if (c.flags & CONN_F_INACTIVE) flags |= IPVS_CONN_F.INACTIVE;
  if (c.flags & CONN_F_NOOUTPUT) flags |= IPVS_CONN_F.NOOUTPUT;
  // A fwmark template's "virtual address" is the mark itself (ip_vs_sched_persist).
  const vaddr =
    c.isTemplate && fwmark
      ? c.af === 6
        ? `${((fwmark >>> 16) & 0xffff).toString(16)}:${(fwmark & 0xffff).toString(16)}::`
        : formatIPv4(fwmark)
      : c.vaddr;
  return {
    af: c.af,
    protocol: PROTO[c.protocol],
    flags,
    state: c.state,
    cport: c.cport,
    vport: c.vport,
    dport: c.dport,
    fwmark,
    timeout: Math.max(1, Math.ceil((c.expires - now) / 1000)),
    caddr: c.caddr,
    vaddr,
    daddr: c.daddr,
  };
}

/** A decoded sync entry in the core's terms, or null for a protocol the core does not carry. */
export function syncToEntry(s: SyncConn): SyncedEntry | null {
  const template = (s.flags & IPVS_CONN_F.TEMPLATE) !== 0;
  const name = protocolName(s.protocol);
  if (!name || (name === 'ip' && !(template && s.fwmark))) return null;
  return {
    protocol: name as ConnProtocol,
    af: s.af,
    caddr: s.caddr,
    cport: s.cport,
    vaddr: s.vaddr,
    vport: s.vport,
    daddr: s.daddr,
    dport: s.dport,
    fwmark: s.fwmark,
    template,
    state: s.state,
    timeout: s.timeout,
    noOutput: (s.flags & IPVS_CONN_F.NOOUTPUT) !== 0,
  };
}

export interface MasterCounters {
  scans: number;
  messages: number;
  entries: number;
  sendErrors: number;
}

interface Sent {
  state: number;
  expires: number;
  dest: Dest | null;
}

export interface SyncMasterOptions {
  syncid: number;
  maxlen: number;
  /** sysctl sync_refresh_period in ms; 0 (default) = half the timeout, at least 10 s. */
  refreshPeriodMs?: number;
  /**
   * At most this many entries per scan (default 8000, ~200 full messages); the rest stay
   * due for the next scan. Paces a full table dump so that the backup's socket buffer is
   * not overrun while it imports.
   */
  maxEntriesPerScan?: number;
}

export class SyncMaster {
  private sent = new WeakMap<Conn, Sent>();
  readonly counters: MasterCounters = { scans: 0, messages: 0, entries: 0, sendErrors: 0 };

  constructor(
    private readonly table: IpvsTable,
    private readonly opts: SyncMasterOptions,
    private readonly send: (msg: Buffer) => void,
  ) {}

  /** Forgets what was sent, so the next scan sends every entry again. */
  resendAll(): void {
    this.sent = new WeakMap();
  }

  /** One pass over the table; sends what is due and returns the number of entries sent. */
  scan(): number {
    const now = this.table.now();
    const due: SyncConn[] = [];
    const max = this.opts.maxEntriesPerScan ?? 8000;
    for (const c of this.table.conns.all()) {
      if (due.length >= max) break;
      if (!this.needed(c, now)) continue;
      due.push(connToSync(c, now));
      this.sent.set(c, { state: c.state, expires: c.expires, dest: c.dest });
    }
    this.counters.scans++;
    if (!due.length) return 0;
    for (const m of encodeMessages(this.opts.syncid, due, this.opts.maxlen)) {
      try {
        this.send(m);
        this.counters.messages++;
      } catch {
        this.counters.sendErrors++;
      }
    }
    this.counters.entries += due.length;
    return due.length;
  }

  private needed(c: Conn, now: number): boolean {
    if (c.dead || !c.dest || c.flags & (CONN_F_ONE_PACKET | CONN_F_SYNC)) return false;
    const rec = this.sent.get(c);
    if (!c.isTemplate && c.protocol === 'tcp') {
      if (!SYNC_TCP_STATES.has(c.state)) return false;
      if (!rec || rec.state !== c.state) return true;
    } else if (!rec) {
      return true;
    }
    if (rec.dest !== c.dest) return true;
    let threshold = c.isTemplate ? MIN_REFRESH_MS : Math.max(c.timeoutMs / 2, MIN_REFRESH_MS);
    const period = this.opts.refreshPeriodMs ?? 0;
    if (period > 0) threshold = Math.min(threshold, period);
    return Math.abs(c.expires - rec.expires) >= threshold && c.expires > now;
  }
}

export interface BackupCounters {
  messages: number;
  /** Messages whose syncid is not ours. */
  ignoredSyncid: number;
  /** Malformed messages, dropped whole, by reason. */
  dropped: Partial<Record<DropReason, number>>;
  /** Entries skipped inside good messages (unknown protocol, bad state, ...). */
  skipped: Partial<Record<SkipReason | 'unsupported-protocol', number>>;
  imported: number;
  /** Entries whose service or real server is not configured here. */
  missed: Partial<Record<SyncImportMiss, number>>;
}

/** What the backup does with each good entry; returns a miss reason or nothing. */
export type SyncImporter = (e: SyncedEntry) => SyncImportMiss | undefined;

export interface SyncBackupOptions {
  syncid: number;
  /** Called for each dropped message, for a debug log line. */
  onDrop?: (reason: DropReason, detail: string) => void;
}

export class SyncBackup {
  readonly counters: BackupCounters = { messages: 0, ignoredSyncid: 0, dropped: {}, skipped: {}, imported: 0, missed: {} };

  constructor(
    private readonly opts: SyncBackupOptions,
    private readonly importer: SyncImporter,
  ) {}

  /** One datagram from the sync group. */
  receive(msg: Buffer): void {
    this.counters.messages++;
    const d = decodeMessage(msg);
    // The kernel's order: size checks, then the syncid filter, then the contents.
    const framed = d.ok || (d.reason !== 'too-short' && d.reason !== 'bad-size');
    if (framed && d.syncid !== null && this.opts.syncid !== 0 && d.syncid !== this.opts.syncid) {
      this.counters.ignoredSyncid++;
      return;
    }
    if (!d.ok) {
      bump(this.counters.dropped, d.reason);
      this.opts.onDrop?.(d.reason, d.detail);
      return;
    }
    for (const r of d.skipped) bump(this.counters.skipped, r);
    for (const s of d.conns) {
      const e = syncToEntry(s);
      if (!e) {
        bump(this.counters.skipped, 'unsupported-protocol');
        continue;
      }
      const miss = this.importer(e);
      if (miss) bump(this.counters.missed, miss);
      else this.counters.imported++;
    }
  }
}

/** The default importer: straight into the core table. */
export function tableImporter(table: IpvsTable): SyncImporter {
  return (e) => {
    const r = table.importSynced(e);
    return typeof r === 'string' ? r : undefined;
  };
}

function bump<K extends string>(o: Partial<Record<K, number>>, k: K): void {
  o[k] = (o[k] ?? 0) + 1;
}
