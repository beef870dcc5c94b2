/**
 * Sends the NAT plane's batches (nftnl.ts) to nf_tables over one NETLINK_NETFILTER socket
 * kept for the plane's life, and reads back what the kernel said about each message. A
 * batch is atomic in the kernel: on any error nothing of it took effect.
 */
import { TsvsError } from '../../core/errors.js';
import { lib } from '../../net/libc.js';
import { errorCode, NLMSG_ERROR, parseMessages } from '../../net/netlink.js';
import { encodeBatch } from './nftnl.js';
import type { Cmd } from './nat.js';
import { inNetns, NetfilterSocket } from './netsock.js';

/** How long the kernel may take over one batch before we give up waiting (a 10,000-service load is one batch). */
const BATCH_TIMEOUT_MS = 120_000;
/** At most this many of the kernel's error messages are quoted. */
const MAX_QUOTED = 3;

export interface SendResult {
  /** nf_tables messages in the batch. */
  messages: number;
  /** Bytes sent. */
  bytes: number;
}

export class NftSender {
  private sock: NetfilterSocket | null = null;
  private seq = (Date.now() & 0x0fffffff) >>> 0;
  private readonly buf = Buffer.alloc(1 << 20);

  /** `nsPath`: the director's network namespace when it is not this process's own (tests). */
  constructor(private readonly nsPath?: string) {}

  private socket(): NetfilterSocket {
    if (!this.sock) {
      this.sock = inNetns(this.nsPath, () => new NetfilterSocket({ rcvTimeoutMs: 1000 }));
      this.sock.setBuffers(4 << 20, 4 << 20);
    }
    return this.sock;
  }

  /**
   * Sends `cmds` as one batch and waits until the kernel has processed it. Throws
   * TsvsError DATAPLANE naming the first refused command and the kernel's reason.
   */
  send(cmds: readonly Cmd[], why: string): SendResult {
    const batch = encodeBatch(cmds, this.seq);
    this.seq = (batch.syncSeq + 1) & 0x0fffffff;
    const sock = this.socket();
    if (batch.bytes.length + 65536 > 4 << 20) sock.setBuffers(batch.bytes.length + 65536, 4 << 20);
    sock.send(batch.bytes);
    sock.send(batch.sync);
    const errors: string[] = [];
    let refused = 0;
    const until = Date.now() + BATCH_TIMEOUT_MS;
    for (;;) {
      if (Date.now() > until) throw dataplaneError(`nftables: ${why}: no answer from the kernel within ${BATCH_TIMEOUT_MS / 1000} s`);
      const got = sock.recv(this.buf);
      if (!got) continue;
      let done = false;
      for (const m of parseMessages(this.buf.subarray(0, got))) {
        if (m.type !== NLMSG_ERROR) continue;
        const e = errorCode(m);
        if (m.seq === batch.syncSeq) {
          done = true;
          continue;
        }
        if (!e) continue;
        refused++;
        if (errors.length < MAX_QUOTED) errors.push(`${batch.what(m.seq)}: ${lib().strerror(e)} (${lib().errnoName(e)})`);
      }
      if (done) break;
    }
    if (refused) {
      const more = refused > errors.length ? ` (and ${refused - errors.length} more)` : '';
      throw dataplaneError(`nftables refused the change (${why}): ${errors.join('; ')}${more}; nothing of it was applied`);
    }
    return { messages: batch.messages, bytes: batch.bytes.length };
  }

  close(): void {
    this.sock?.close();
    this.sock = null;
  }
}

/** A DATAPLANE error whose detail is also what the client is told. */
export function dataplaneError(detail: string): TsvsError {
  return new TsvsError('DATAPLANE', detail, detail);
}
