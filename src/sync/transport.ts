/**
 * The sync daemon's sockets: UDP multicast on a named interface, set up the way the
 * kernel's sync threads do it (ip_vs_sync.c): the master binds to the interface's address,
 * sends to the group with the configured TTL and without multicast loopback; the backup
 * binds the group's port and joins the group on that interface.
 */
import dgram from 'node:dgram';
import { existsSync, readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { TsvsError } from '../core/errors.js';

/** An open sync socket. */
export interface SyncSocket {
  send(msg: Buffer): void;
  close(): Promise<void>;
}

/** What a sync socket needs to know. */
export interface SocketParams {
  ifname: string;
  group: string;
  port: number;
  ttl: number;
}

/**
 * The interface's first address of the group's family. Throws NO_DEVICE (ipvsadm's "No such
 * device") when there is no such interface, and says so when it has no usable address.
 */
export function interfaceAddress(ifname: string, family: 4 | 6): string {
  const list = networkInterfaces()[ifname];
  if (!list) {
    if (!existsSync(`/sys/class/net/${ifname}`)) {
      throw new TsvsError('NO_DEVICE', `sync daemon: interface ${ifname} does not exist`);
    }
    throw new TsvsError(
      'INVALID',
      `sync daemon: interface ${ifname} has no address`,
      `Interface ${ifname} has no IPv${family} address: the sync daemon needs one to send and join multicast`,
    );
  }
  const a = list.find((x) => (family === 4 ? x.family === 'IPv4' : x.family === 'IPv6'));
  if (!a)
    throw new TsvsError(
      'INVALID',
      `sync daemon: interface ${ifname} has no IPv${family} address`,
      `Interface ${ifname} has no IPv${family} address: the sync daemon needs one to send and join multicast`,
    );
  return family === 6 && a.scopeid ? `${a.address}%${ifname}` : a.address;
}

/** The interface's MTU (1500 when it cannot be read). */
export function interfaceMtu(ifname: string): number {
  try {
    const v = Number(readFileSync(`/sys/class/net/${ifname}/mtu`, 'utf8').trim());
    return Number.isInteger(v) && v > 0 ? v : 1500;
  } catch {
    return 1500;
  }
}

function bindSocket(s: dgram.Socket, port: number, addr: string): Promise<void> {
  return new Promise((resolve, reject) => {
    s.once('error', reject);
    s.bind({ port, address: addr, exclusive: true }, () => {
      s.off('error', reject);
      resolve();
    });
  });
}

function closer(s: dgram.Socket): () => Promise<void> {
  let done: Promise<void> | null = null;
  return () => (done ??= new Promise<void>((resolve) => s.close(() => resolve())));
}

/** The master's sending socket. Send errors are reported to `onError`, not thrown. */
export async function openMasterSocket(p: SocketParams, onError: (e: Error) => void): Promise<SyncSocket> {
  const v6 = p.group.includes(':');
  const local = interfaceAddress(p.ifname, v6 ? 6 : 4);
  const s = dgram.createSocket({ type: v6 ? 'udp6' : 'udp4' });
  s.on('error', onError);
  try {
    await bindSocket(s, 0, local);
    s.setMulticastInterface(v6 ? `::%${p.ifname}` : local);
    s.setMulticastTTL(p.ttl);
    s.setMulticastLoopback(false);
  } catch (e) {
    s.close();
    throw e;
  }
  return {
    send: (msg) => s.send(msg, p.port, p.group, (e) => e && onError(e)),
    close: closer(s),
  };
}

/** The backup's receiving socket: every datagram to the group goes to `onMessage`. */
export async function openBackupSocket(
  p: SocketParams,
  onMessage: (msg: Buffer) => void,
  onError: (e: Error) => void,
): Promise<SyncSocket> {
  const v6 = p.group.includes(':');
  const local = interfaceAddress(p.ifname, v6 ? 6 : 4);
  const s = dgram.createSocket({ type: v6 ? 'udp6' : 'udp4', reuseAddr: true });
  s.on('message', (m) => onMessage(m));
  s.on('error', onError);
  // Bound to the group (as the kernel's receive socket is), so unicast to the port is not taken.
  try {
    await bindSocket(s, p.port, p.group);
    s.addMembership(p.group, v6 ? `::%${p.ifname}` : local);
  } catch (e) {
    s.close();
    throw e;
  }
  try {
    // Room for a burst of messages while entries are imported (the kernel caps it at rmem_max).
    s.setRecvBufferSize(4 * 1024 * 1024);
  } catch {
    /* keep the default */
  }
  return {
    send: () => {
      throw new Error('the backup socket only receives');
    },
    close: closer(s),
  };
}
