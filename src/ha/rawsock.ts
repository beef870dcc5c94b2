/**
 * VRRP packets in and out through protocol-112 raw sockets (the optional
 * `@neuralegion/raw-socket` addon), one socket per interface:
 *   - IP_HDRINCL: we write the IPv4 header, so TTL 255 and the source address (the
 *     interface's primary address, or unicast_src_ip) are exactly what RFC 5798 asks;
 *   - SO_BINDTODEVICE: sends leave through, and receives come from, that interface only
 *     (a multicast destination needs no route then);
 *   - IP_ADD_MEMBERSHIP 224.0.0.18 on the interface, or the kernel does not deliver the
 *     group; IP_MULTICAST_LOOP off, so our own adverts do not come back.
 * An IPv4 raw socket delivers the IP header with each packet, so TTL and addresses are
 * checked from it. IPv6 raw sockets deliver no header and the addon has no recvmsg for the
 * hop limit, so IPv6 is not offered (`rawSocketProblem` says so).
 */
import { createRequire } from 'node:module';
import { VRRP_GROUP4, IPPROTO_VRRP } from './packet.js';

const IPPROTO_IP = 0;
const IP_HDRINCL = 3;
const IP_MULTICAST_LOOP = 34;
const IP_ADD_MEMBERSHIP = 35;
const SOL_SOCKET = 1;
const SO_BINDTODEVICE = 25;

interface RawSocket {
  on(ev: 'message', cb: (buf: Buffer, source: string) => void): void;
  on(ev: 'error', cb: (e: Error) => void): void;
  setOption(level: number, option: number, value: number | Buffer, length?: number): void;
  send(buf: Buffer, offset: number, length: number, address: string, cb: (err: Error | null, bytes: number) => void): void;
  close(): void;
}
interface RawModule {
  createSocket(opts: { protocol: number; addressFamily?: number; bufferSize?: number }): RawSocket;
}

/** Packets of one interface. */
export interface VrrpTransport {
  /** Opens the interface (idempotent); `index` is its ifindex for the group membership. */
  open(ifname: string, index: number): void;
  send(ifname: string, packet: Buffer, dst: string): void;
  /** Resolves when every packet handed to send() has left (or after `timeoutMs`). */
  flush(timeoutMs: number): Promise<void>;
  close(): void;
}

export type PacketHandler = (ifname: string, packet: Buffer) => void;

let loaded: RawModule | null = null;

function loadAddon(): RawModule {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  loaded = require('@neuralegion/raw-socket') as RawModule;
  return loaded;
}

/**
 * Why VRRP cannot run here (addon missing, not root, no CAP_NET_RAW), or null. Opens and
 * closes one protocol-112 socket to find out.
 */
export function rawSocketProblem(): string | null {
  let mod: RawModule;
  try {
    mod = loadAddon();
  } catch (e) {
    return `the optional package @neuralegion/raw-socket cannot be loaded (${(e as Error).message.split('\n')[0]}); install it with npm install @neuralegion/raw-socket`;
  }
  try {
    mod.createSocket({ protocol: IPPROTO_VRRP }).close();
  } catch (e) {
    const msg = (e as Error).message;
    const uid = process.getuid?.();
    return /not permitted|EPERM|EACCES/i.test(msg) || uid !== 0
      ? `opening a raw socket (protocol 112) was refused (${msg}): run tsvsd as root or give it CAP_NET_RAW`
      : `cannot open a raw socket (protocol 112): ${msg}`;
  }
  return null;
}

function intBuf(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32LE(v);
  return b;
}

/** The real transport over the addon. */
export class RawTransport implements VrrpTransport {
  private readonly socks = new Map<string, RawSocket>();
  private readonly mod = loadAddon();
  private pending = 0;

  constructor(
    private readonly onPacket: PacketHandler,
    private readonly onError: (ifname: string, err: Error) => void,
  ) {}

  open(ifname: string, index: number): void {
    if (this.socks.has(ifname)) return;
    const s = this.mod.createSocket({ protocol: IPPROTO_VRRP, bufferSize: 4096 });
    try {
      s.setOption(IPPROTO_IP, IP_HDRINCL, intBuf(1), 4);
      const dev = Buffer.from(`${ifname}\0`);
      s.setOption(SOL_SOCKET, SO_BINDTODEVICE, dev, dev.length);
      s.setOption(IPPROTO_IP, IP_MULTICAST_LOOP, intBuf(0), 4);
      // struct ip_mreqn { imr_multiaddr; imr_address; int imr_ifindex; }
      const mreq = Buffer.alloc(12);
      Buffer.from(VRRP_GROUP4.split('.').map(Number)).copy(mreq, 0);
      mreq.writeInt32LE(index, 8);
      s.setOption(IPPROTO_IP, IP_ADD_MEMBERSHIP, mreq, 12);
    } catch (e) {
      s.close();
      throw new Error(`raw socket on ${ifname}: ${(e as Error).message}`);
    }
    s.on('message', (buf) => this.onPacket(ifname, Buffer.from(buf)));
    // The addon closes a socket after an error event: forget it, so the next open() makes a new one.
    s.on('error', (e) => {
      if (this.socks.get(ifname) === s) this.socks.delete(ifname);
      this.onError(ifname, e);
    });
    this.socks.set(ifname, s);
  }

  send(ifname: string, packet: Buffer, dst: string): void {
    const s = this.socks.get(ifname);
    if (!s) return;
    this.pending++;
    s.send(packet, 0, packet.length, dst, (err) => {
      this.pending--;
      if (err) this.onError(ifname, err);
    });
  }

  async flush(timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (this.pending > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
  }

  close(): void {
    for (const s of this.socks.values()) {
      try {
        s.close();
      } catch {
        /* closed */
      }
    }
    this.socks.clear();
  }
}
