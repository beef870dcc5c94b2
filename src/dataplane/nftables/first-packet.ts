/**
 * The first-packet path of the nftables plane. Services with a connection-count scheduler
 * (lc, wlc, sed, nq, lblc, lblcr, fo, ovf, twos) send the first packet of each new flow
 * through NFQUEUE to a reader thread (nfqueue.ts); the core table schedules it here
 * (`decide`, so the scheduler sees the live counts), and the verdict's mark names the real
 * server in the kernel. A numgen rule is the fallback when no answer comes in time.
 */
import type { LogFn } from '../../core/log.js';
import type { IpvsTable } from '../../core/table.js';
import type { Fam } from './nat.js';
import type { QueuedPacket } from './netlink.js';
import { checkNfqueueRule, installNfqueueRule } from './netsock.js';
import type { NftModel } from './model.js';
import { NfQueueReader } from './nfqueue.js';
import { dataplaneError } from './nftsend.js';
import { connKey, type ReadBack } from './readback.js';
import { NFQ_CHAIN, NO_DEST_MARK, QUEUE_SCHEDULERS, TABLE } from './ruleset.js';

/**
 * How long a new flow's first packet waits for the scheduler before it is accepted without
 * a mark (the kernel's round-robin fallback takes it). Far below TCP's first SYN
 * retransmission (1 s), and high enough that a loaded director does not miss it often.
 */
export const QUEUE_TIMEOUT_MS = 200;

/** TSVS_NFT_QUEUE, checked: an NFQUEUE number. */
export function queueFromEnv(text: string | undefined): number | undefined {
  if (text === undefined || text === '') return undefined;
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) throw dataplaneError(`TSVS_NFT_QUEUE: "${text}" is not a queue number (0-65535)`);
  return Number(text);
}

/** What the first-packet path needs from the plane that owns it. */
export interface FirstPacketDeps {
  log: LogFn;
  model: NftModel;
  /** Where scheduled connections are mirrored until conntrack confirms them. */
  readback: ReadBack;
  /** The core table, once the plane has started. */
  table(): IpvsTable | null;
  /** The network namespace's path (/run/netns/NAME), or undefined for tsvsd's own. */
  nsPath: string | undefined;
  /** The NFQUEUE number. */
  queue: number;
  /** How long a first packet waits for a decision. */
  timeoutMs: number;
  /** Called once the reader thread runs (conntrack events must then carry the closes). */
  onStarted(): void;
}

/** The NFQUEUE rules and reader thread, and the scheduling of each queued first packet. */
export class FirstPacketPath {
  private nfq: NfQueueReader | null = null;
  private stopped = false;

  constructor(private readonly deps: FirstPacketDeps) {}

  /** Whether the reader thread runs. */
  get running(): boolean {
    return !!this.nfq?.running;
  }

  /** Puts the NFQUEUE rule into the nfq chain of each family that just got one (netlink: nft's JSON has no xt targets). */
  installRules(fams: Iterable<Fam>): void {
    for (const f of fams) {
      try {
        const target = { queue: this.deps.queue, total: 1, bypass: true };
        installNfqueueRule(this.deps.nsPath, f, TABLE, NFQ_CHAIN, target);
        // The kernel's own copy, not nft's text (which shows xt targets only with iptables's libxt).
        checkNfqueueRule(this.deps.nsPath, f, TABLE, NFQ_CHAIN, target);
        this.deps.model.queueFams.add(f);
      } catch (e) {
        throw dataplaneError(
          `could not add the NFQUEUE rule to ${f} ${TABLE} ${NFQ_CHAIN}: ${(e as Error).message}; the kernel needs nft_compat and xt_NFQUEUE (modprobe nft_compat xt_NFQUEUE)`,
        );
      }
    }
  }

  /** Starts the reader thread, unless it runs. */
  async start(): Promise<void> {
    if (this.nfq?.running) return;
    const { log, nsPath, queue, timeoutMs } = this.deps;
    this.nfq = new NfQueueReader({
      queue,
      timeoutMs,
      ...(nsPath ? { nsPath } : {}),
      decide: (pkts) => this.decide(pkts),
      onStats: (s) => {
        log('debug', 'nftables: first-packet path', {
          ...s,
          avgBatch: +(s.packets / (s.batches || 1)).toFixed(1),
          avgWaitUs: Math.round(s.waitUs / (s.batches || 1)),
        });
        if (s.late)
          log(
            'warn',
            `nftables: ${s.late} of ${s.packets} new connections were not scheduled within ${timeoutMs} ms and went to the round-robin fallback`,
          );
      },
      onError: (msg) => log('error', `nftables: ${msg}`),
    });
    await this.nfq.start();
    this.deps.onStarted();
    log('info', `nftables: first-packet path on NFQUEUE ${queue} (reader thread started)`);
  }

  /** Stops the reader thread and answers no more packets. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.nfq?.stop();
  }

  /**
   * The core scheduler's choice for each queued first packet: the real server's mark, 0
   * (not a queue-scheduled service: the kernel goes on as if not queued), or NO_DEST_MARK
   * (no server available: the service chain rejects). The connection enters the core
   * table now, so the next decision counts it; the read-back later binds it to its
   * conntrack entry by tuple.
   */
  private decide(pkts: readonly QueuedPacket[]): number[] {
    const t = this.deps.table();
    if (!t || this.stopped) return [];
    const { model, readback } = this.deps;
    return pkts.map((p) => {
      const svc = t.lookup(p.protocol, p.vaddr, p.vport);
      if (!svc || svc.af !== p.af || !QUEUE_SCHEDULERS.has(svc.scheduler)) return 0;
      // Kernel IPVS schedules TCP only on a SYN. A mid-stream segment conntrack picked up
      // (e.g. after its server was removed) goes on unmarked: the fallback's server answers
      // it with a reset, and no connection is counted for it.
      if (!p.syn) return 0;
      const key = connKey(p.af, p.protocol, p.caddr, p.cport, p.vaddr, p.vport);
      const old = readback.mirroredConn(key);
      if (old && !old.dead) t.dropConn(old); // the tuple's previous connection (TIME_WAIT reuse)
      const c = t.schedule(svc, { protocol: p.protocol, caddr: p.caddr, cport: p.cport, vaddr: p.vaddr, vport: p.vport });
      if (!c?.dest) return NO_DEST_MARK;
      const mark = model.markFor(svc.id, c.dest.id);
      if (mark === undefined) {
        t.dropConn(c);
        return 0;
      }
      if (p.protocol === 'tcp') t.tcpEvent(c, 'input', 'syn');
      else t.datagram(c);
      readback.adoptScheduled(key, c, t.now());
      return mark;
    });
  }
}
