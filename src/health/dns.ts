/**
 * DNS_CHECK: one query over UDP (type default SOA, name default "."), built by hand. The
 * server is up when an answer with our id, QR set, RCODE NOERROR and at least one answer
 * record arrives within connect_timeout.
 */
import { randomInt } from 'node:crypto';
import type { CheckerConfig } from './model.js';
import { udpExchange, type CheckResult, type CheckTarget } from './checker.js';

/** Query types keepalived's DNS_CHECK accepts. */
export const DNS_TYPES: Record<string, number> = { A: 1, NS: 2, CNAME: 5, SOA: 6, MX: 15, TXT: 16, AAAA: 28 };

/** Encodes a query packet: header (RD set), one question of class IN. */
export function buildDnsQuery(id: number, name: string, type: string): Buffer {
  const qtype = DNS_TYPES[type.toUpperCase()];
  if (qtype === undefined) throw new Error(`DNS type "${type}" is not one of ${Object.keys(DNS_TYPES).join(', ')}`);
  const labels = name === '.' || name === '' ? [] : name.replace(/\.$/, '').split('.');
  const parts: Buffer[] = [];
  const hdr = Buffer.alloc(12);
  hdr.writeUInt16BE(id, 0);
  hdr.writeUInt16BE(0x0100, 2); // RD
  hdr.writeUInt16BE(1, 4); // QDCOUNT
  parts.push(hdr);
  for (const l of labels) {
    const b = Buffer.from(l, 'ascii');
    if (b.length === 0 || b.length > 63) throw new Error(`DNS name "${name}": label "${l}" must be 1-63 bytes`);
    parts.push(Buffer.from([b.length]), b);
  }
  const tail = Buffer.alloc(5);
  tail.writeUInt8(0, 0);
  tail.writeUInt16BE(qtype, 1);
  tail.writeUInt16BE(1, 3); // IN
  parts.push(tail);
  return Buffer.concat(parts);
}

/** Checks a reply against the query id; null when it passes, else why not. */
export function checkDnsReply(msg: Buffer, id: number): string | null {
  if (msg.length < 12) return `short reply (${msg.length} bytes)`;
  if (msg.readUInt16BE(0) !== id) return 'reply id does not match';
  const flags = msg.readUInt16BE(2);
  if (!(flags & 0x8000)) return 'reply is not a response (QR clear)';
  const rcode = flags & 0xf;
  if (rcode !== 0) return `RCODE ${rcode}`;
  if (msg.readUInt16BE(6) === 0) return 'no answer records';
  return null;
}

export function dnsCheck(cfg: CheckerConfig, t: CheckTarget): Promise<CheckResult> {
  const id = randomInt(0, 0x10000);
  const o = cfg.dns ?? { type: 'SOA', name: '.' };
  let query: Buffer;
  try {
    query = buildDnsQuery(id, o.name, o.type);
  } catch (e) {
    return Promise.resolve({ ok: false, reason: (e as Error).message, latencyMs: 0 });
  }
  return udpExchange(
    cfg,
    t,
    query,
    (msg) => {
      const why = checkDnsReply(msg, id);
      return { ok: why === null, reason: why ?? `${o.type} ${o.name} answered` };
    },
    { ok: false, reason: `no DNS reply within ${cfg.timeout}s` },
  );
}
