/**
 * Binding a virtual service's socket, and the refusals of the userspace plane: what a
 * proxy cannot carry, and why a bind failed, in words that tell the operator what to do.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { formatAddrPort } from '../../core/addr.js';
import { TsvsError } from '../../core/errors.js';
import { BindError } from '../dataplane.js';
import { destId, serviceLabel } from '../../core/service.js';
import type { DestConfig, ServiceConfig, ServiceKey } from '../../core/types.js';
import { KEEPALIVE_MS } from './context.js';

const ELSEWHERE = 'or run tsvsd --dataplane nftables';

/** Throws NOT_SUPPORTED when the plane cannot carry a service of this shape. */
export function checkServiceSupported(k: ServiceKey): void {
  const label = serviceLabel(k);
  if (k.fwmark) {
    throw new TsvsError(
      'NOT_SUPPORTED',
      `${label}: firewall-mark services are not supported by the userspace data plane`,
      `Firewall-mark services (-f) are not supported by the userspace data plane: a proxy cannot see packet marks. Use an address:port service (-t/-u), ${ELSEWHERE}`,
    );
  }
  if (k.protocol === 'sctp') {
    throw new TsvsError(
      'NOT_SUPPORTED',
      `${label}: SCTP is not supported by the userspace data plane`,
      `SCTP services (--sctp-service) are not supported by the userspace data plane: Node has no SCTP sockets. Use -t or -u, ${ELSEWHERE}`,
    );
  }
  if (k.port === 0) {
    throw new TsvsError(
      'NOT_SUPPORTED',
      `${label}: port-zero services are not supported by the userspace data plane`,
      `Port-zero services (every port of ${k.addr}) are not supported by the userspace data plane: a proxy would have to bind every port. Give the service a port, ${ELSEWHERE}`,
    );
  }
}

/**
 * Throws NOT_SUPPORTED for userspace options that do not fit the service: PROXY protocol v1
 * describes TCP only, and transparent connects are TCP-only here (Node's dgram sockets cannot
 * take a descriptor made through libc).
 */
export function checkServiceOptions(c: ServiceConfig): void {
  const label = serviceLabel(c);
  if (c.proxyProtocol === 'v1' && c.protocol === 'udp') {
    throw new TsvsError(
      'NOT_SUPPORTED',
      `${label}: PROXY protocol v1 is for TCP only`,
      `${label}: PROXY protocol v1 describes TCP connections only; use proxy_protocol: v2 for a UDP service (a v2 header goes in front of every datagram).`,
    );
  }
  if (c.transparent && c.protocol === 'udp') {
    throw new TsvsError(
      'NOT_SUPPORTED',
      `${label}: transparent mode is for TCP services only`,
      `${label}: transparent mode (connecting from the client's address) is supported for TCP services only in the userspace data plane; use the nftables data plane, whose real servers see client addresses, or proxy_protocol: v2.`,
    );
  }
}

const METHOD_NAMES: Record<string, string> = { route: 'Route (-g)', tunnel: 'Tunnel (-i)' };

/** Throws NOT_SUPPORTED for a real server whose forwarding method a proxy cannot do. */
export function checkDestSupported(svc: ServiceKey, d: DestConfig): void {
  if (d.fwd === 'masq' || d.fwd === 'fullnat') return;
  const name = METHOD_NAMES[d.fwd] ?? d.fwd;
  throw new TsvsError(
    'NOT_SUPPORTED',
    `${serviceLabel(svc)} real server ${destId(d)}: forwarding method ${d.fwd} is not supported by the userspace data plane`,
    `Forwarding method ${name} is not supported by the userspace data plane; use -m (masquerading), ${ELSEWHERE}`,
  );
}

/** Turns a bind failure into a DATAPLANE error naming the address and what to do. */
export function bindError(k: ServiceKey, err: unknown): BindError {
  const code = (err as NodeJS.ErrnoException)?.code ?? 'EUNKNOWN';
  const label = serviceLabel(k);
  const where = formatAddrPort(k.addr, k.port);
  const proto = k.protocol === 'udp' ? 'UDP' : 'TCP';
  let message: string;
  switch (code) {
    case 'EADDRNOTAVAIL': {
      const add = k.af === 6 ? `ip -6 addr add ${k.addr}/128 dev lo` : `ip addr add ${k.addr}/32 dev lo`;
      message = `Cannot bind ${where}: the address is not on this host. Add it (${add}) or use the nftables data plane.`;
      break;
    }
    case 'EADDRINUSE': {
      const ss = k.protocol === 'udp' ? 'ss -lunp' : 'ss -ltnp';
      message = `Cannot bind ${proto} ${where}: the port is already in use by another program (${ss} 'sport = :${k.port}' shows which). Stop it or choose another port.`;
      break;
    }
    case 'EACCES':
    case 'EPERM':
      message = `Cannot bind ${proto} ${where}: permission denied. Ports below 1024 need root or CAP_NET_BIND_SERVICE (setcap cap_net_bind_service=+ep on the node binary, or AmbientCapabilities=CAP_NET_BIND_SERVICE in the systemd unit).`;
      break;
    default:
      message = `Cannot bind ${proto} ${where}: ${code} (${(err as Error)?.message ?? String(err)}).`;
  }
  return new BindError(`${label}: cannot bind: ${code}`, message, code);
}

/** Listens on the service's address:port. Sockets arrive paused, so nothing is read before a server is connected. */
export function bindTcp(k: ServiceKey): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer({
      allowHalfOpen: true,
      pauseOnConnect: true,
      noDelay: true,
      keepAlive: true,
      keepAliveInitialDelay: KEEPALIVE_MS,
    });
    const onError = (err: Error) => {
      server.close();
      reject(bindError(k, err));
    };
    server.once('error', onError);
    server.listen({ host: k.addr, port: k.port, exclusive: true, ipv6Only: k.af === 6, backlog: 511 }, () => {
      server.off('error', onError);
      resolve(server);
    });
  });
}

/** Binds the service's UDP socket. */
export function bindUdp(k: ServiceKey): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket({ type: k.af === 6 ? 'udp6' : 'udp4', ipv6Only: k.af === 6 });
    const onError = (err: Error) => {
      try {
        sock.close();
      } catch {
        // never bound: nothing to close
      }
      reject(bindError(k, err));
    };
    sock.once('error', onError);
    sock.bind({ address: k.addr, port: k.port, exclusive: true }, () => {
      sock.off('error', onError);
      resolve(sock);
    });
  });
}
