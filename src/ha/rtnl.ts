/**
 * The two host operations on the failover path, done in-process through libc (koffi):
 * adding/removing an IPv4 address (one RTM_NEWADDR / RTM_DELADDR on a NETLINK_ROUTE
 * socket) and a gratuitous ARP (an ARP request for the VIP from the VIP, broadcast on an
 * AF_PACKET socket, as `arping -U` sends it). Spawning `ip` and `arping` costs 50-200 ms on a
 * busy host, which is failover time; these take microseconds. netops.ts falls back to the
 * commands when koffi or libc is not usable.
 */
import { parseIPv4 } from '../core/addr.js';
import {
  AF_INET,
  AF_NETLINK,
  AF_PACKET,
  available,
  check,
  lib,
  LibcError,
  SOCK_CLOEXEC,
  SOCK_RAW,
  SOL_SOCKET,
  SO_RCVTIMEO,
  timeval,
} from '../net/libc.js';
import {
  encodeAttrs,
  errorCode,
  nlMessage,
  parseMessages,
  NLM_F_ACK,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REQUEST,
  NLMSG_ERROR,
} from '../net/netlink.js';

const NETLINK_ROUTE = 0;
const RTM_NEWADDR = 20;
const RTM_DELADDR = 21;
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const ETH_P_ARP = 0x0806;
export { EADDRNOTAVAIL, EEXIST } from '../net/libc.js';

/** A failed call or a kernel error (the shared LibcError of src/net/libc.ts). */
export { LibcError as RtnlError };

/** Whether the in-process path works here (koffi and libc load). */
export const rtnlAvailable = available;

function v4(addr: string): Buffer {
  const n = parseIPv4(addr);
  if (n === null) throw new Error(`not an IPv4 address: ${addr}`);
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

let seqNo = 1;

/** The RTM_NEWADDR / RTM_DELADDR message (exported for tests). */
export function addrMessage(op: 'add' | 'del', ifindex: number, addr: string, prefix: number, seq: number): Buffer {
  const ifa = Buffer.alloc(8);
  ifa[0] = AF_INET;
  ifa[1] = prefix;
  ifa[3] = 0; // RT_SCOPE_UNIVERSE
  ifa.writeUInt32LE(ifindex, 4);
  const attrs = encodeAttrs([
    { type: IFA_LOCAL, data: v4(addr) },
    { type: IFA_ADDRESS, data: v4(addr) },
  ]);
  const flags = NLM_F_REQUEST | NLM_F_ACK | (op === 'add' ? NLM_F_CREATE | NLM_F_EXCL : 0);
  return nlMessage(op === 'add' ? RTM_NEWADDR : RTM_DELADDR, flags, seq, Buffer.concat([ifa, attrs]));
}

/** Adds or removes an IPv4 address; throws RtnlError with the kernel's errno (EEXIST, EADDRNOTAVAIL, ...). */
export function rtnlAddr(op: 'add' | 'del', ifindex: number, addr: string, prefix: number): void {
  const c = lib();
  const fd = check('socket(NETLINK_ROUTE)', c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  try {
    const sa = Buffer.alloc(12);
    sa.writeUInt16LE(AF_NETLINK, 0);
    check('bind(netlink)', c.bind(fd, sa, 12));
    c.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, timeval(1000), 16); // 1 s: the kernel answers at once
    const seq = seqNo++;
    const msg = addrMessage(op, ifindex, addr, prefix, seq);
    check(`${op} ${addr}/${prefix}`, c.send(fd, msg, msg.length, 0));
    const buf = Buffer.alloc(8192);
    for (;;) {
      const n = check(`${op} ${addr}/${prefix}: no answer`, c.recv(fd, buf, buf.length, 0));
      for (const m of parseMessages(buf.subarray(0, n))) {
        if (m.type === NLMSG_ERROR && m.seq === seq) {
          const err = errorCode(m);
          if (err) throw new LibcError(`${op} ${addr}/${prefix}`, err);
          return;
        }
      }
    }
  } finally {
    c.close(fd);
  }
}

/** The Ethernet frame of a gratuitous ARP request: who-has VIP tell VIP, from `mac`, broadcast. */
export function garpFrame(mac: string, addr: string): Buffer {
  const m = Buffer.from(mac.split(':').map((x) => parseInt(x, 16)));
  if (m.length !== 6) throw new Error(`not a MAC address: ${mac}`);
  const f = Buffer.alloc(42);
  f.fill(0xff, 0, 6);
  m.copy(f, 6);
  f.writeUInt16BE(ETH_P_ARP, 12);
  f.writeUInt16BE(1, 14); // Ethernet
  f.writeUInt16BE(0x0800, 16); // IPv4
  f[18] = 6;
  f[19] = 4;
  f.writeUInt16BE(1, 20); // request
  m.copy(f, 22);
  v4(addr).copy(f, 28);
  f.fill(0xff, 32, 38); // target MAC broadcast, as arping -U
  v4(addr).copy(f, 38);
  return f;
}

/** Sends one gratuitous ARP for `addr` out of interface `ifindex` with source MAC `mac`. */
export function sendGarp(ifindex: number, mac: string, addr: string): void {
  const c = lib();
  const proto = ((ETH_P_ARP & 0xff) << 8) | (ETH_P_ARP >> 8); // htons
  const fd = c.socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, proto);
  check('socket(AF_PACKET)', fd);
  try {
    // struct sockaddr_ll { u16 family; be16 protocol; i32 ifindex; u16 hatype; u8 pkttype; u8 halen; u8 addr[8]; }
    const sll = Buffer.alloc(20);
    sll.writeUInt16LE(AF_PACKET, 0);
    sll.writeUInt16BE(ETH_P_ARP, 2);
    sll.writeInt32LE(ifindex, 4);
    sll[11] = 6;
    sll.fill(0xff, 12, 18);
    const f = garpFrame(mac, addr);
    check(`gratuitous ARP for ${addr}`, c.sendto(fd, f, f.length, 0, sll, sll.length));
  } finally {
    c.close(fd);
  }
}
