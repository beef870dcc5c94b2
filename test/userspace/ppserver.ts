/**
 * Test real servers that read a PROXY protocol header: TCP (answers with what the header
 * said, then echoes the rest of the client's bytes) and UDP (answers every datagram with
 * its header's content and payload). They record what they saw for assertions.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { decodeProxyHeader, type DecodedProxyHeader } from '../../src/net/proxyproto.js';

export interface PpSeen {
  header: DecodedProxyHeader | null;
  /** The connection's own peer, as the socket reports it. */
  peer: string;
  error?: string;
}

export interface PpServer {
  readonly port: number;
  readonly seen: PpSeen[];
  close(): Promise<void>;
}

/** TCP: reply line `JSON(addresses)\n`, then echo the payload that followed the header. */
export async function startPpTcpServer(host = '127.0.0.1'): Promise<PpServer> {
  const seen: PpSeen[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    let buf = Buffer.alloc(0);
    let done = false;
    s.on('data', (d: Buffer) => {
      if (done) {
        s.write(d);
        return;
      }
      buf = Buffer.concat([buf, d]);
      let h: DecodedProxyHeader | null;
      try {
        h = decodeProxyHeader(buf);
      } catch (e) {
        seen.push({ header: null, peer: s.remoteAddress ?? '', error: (e as Error).message });
        s.destroy();
        return;
      }
      if (h === null) return;
      done = true;
      seen.push({ header: h, peer: s.remoteAddress ?? '' });
      s.write(`${JSON.stringify(h.addresses)}\n`);
      if (buf.length > h.length) s.write(buf.subarray(h.length));
    });
    s.on('end', () => s.end());
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  return {
    port: (server.address() as net.AddressInfo).port,
    seen,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** UDP: every datagram is answered with `JSON(addresses)|payload`. */
export async function startPpUdpServer(host = '127.0.0.1'): Promise<PpServer> {
  const seen: PpSeen[] = [];
  const sock = dgram.createSocket('udp4');
  sock.on('message', (m, r) => {
    try {
      const h = decodeProxyHeader(m);
      seen.push({ header: h, peer: r.address });
      sock.send(`${JSON.stringify(h?.addresses ?? null)}|${m.subarray(h?.length ?? 0).toString()}`, r.port, r.address);
    } catch (e) {
      seen.push({ header: null, peer: r.address, error: (e as Error).message });
      sock.send(`error|${(e as Error).message}`, r.port, r.address);
    }
  });
  await new Promise<void>((r) => sock.bind(0, host, r));
  return {
    port: sock.address().port,
    seen,
    close: () => new Promise<void>((r) => sock.close(() => r())),
  };
}

/** One TCP exchange through host:port: sends `payload`, ends, returns everything received. */
export function tcpExchange(
  host: string,
  port: number,
  payload: string,
  localAddress?: string,
): Promise<{ text: string; localPort: number }> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ host, port, localAddress, allowHalfOpen: true }, () => c.end(payload));
    let text = '';
    let localPort = 0;
    c.on('connect', () => (localPort = c.localPort ?? 0));
    c.on('data', (d) => (text += d));
    c.on('error', reject);
    c.on('close', () => resolve({ text, localPort }));
  });
}
