/**
 * Sends one complete IP packet (hex on argv) through a raw socket with the header
 * included (@neuralegion/raw-socket: IPPROTO_RAW, and IPV6_HDRINCL for IPv6), so that the
 * bytes on the wire are exactly the test's. Run inside a test namespace:
 *   ip netns exec NS node --import tsx test/dr/raw-send.ts 4|6 DEST HEX [4|6 DEST HEX ...]
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const raw = require('@neuralegion/raw-socket') as {
  createSocket(o: { protocol: number; addressFamily: number }): {
    setOption(level: number, option: number, value: number): void;
    send(
      buf: Buffer,
      off: number,
      len: number,
      addr: string,
      before: (() => void) | null,
      after: (err: Error | null, bytes: number) => void,
    ): void;
    close(): void;
  };
  AddressFamily: { IPv4: number; IPv6: number };
  SocketLevel: Record<string, number>;
  SocketOption: Record<string, number>;
};

type RawSocket = ReturnType<typeof raw.createSocket>;

/** Sends the packets in order, one at a time, through one socket per family; prints the byte count of each. */
async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const sockets = new Map<string, RawSocket>();
  const socketFor = (af: string): RawSocket => {
    let sock = sockets.get(af);
    if (!sock) {
      const v6 = af === '6';
      sock = raw.createSocket({ protocol: 255, addressFamily: v6 ? raw.AddressFamily.IPv6 : raw.AddressFamily.IPv4 });
      // Linux sets header-include for IPPROTO_RAW in both families; say so anyway for IPv6
      // (IPV6_HDRINCL is 36; the addon's prebuilt does not export the constant).
      if (v6) sock.setOption(raw.SocketLevel.IPPROTO_IPV6!, raw.SocketOption.IPV6_HDRINCL ?? 36, 1);
      sockets.set(af, sock);
    }
    return sock;
  };
  // An unanswered send must fail the run, not let the process exit quietly.
  const guard = setTimeout(() => {
    process.stderr.write('raw send: no completion within 10 s\n');
    process.exit(1);
  }, 10_000);
  for (let i = 0; i + 2 < args.length; i += 3) {
    const [af, dest, hex] = [args[i]!, args[i + 1]!, args[i + 2]!];
    const buf = Buffer.from(hex, 'hex');
    const bytes = await new Promise<number>((resolve, reject) =>
      socketFor(af).send(buf, 0, buf.length, dest, null, (err, n) => (err ? reject(err) : resolve(n))),
    );
    process.stdout.write(`${bytes}\n`);
    await new Promise((r) => setTimeout(r, 20));
  }
  clearTimeout(guard);
  for (const s of sockets.values()) s.close();
}

main().then(
  () => process.exit(0),
  (e: Error) => {
    process.stderr.write(`raw send: ${e.message}\n`);
    process.exit(1);
  },
);
