/**
 * A classic BPF socket filter for the conntrack event socket: an event reaches the socket
 * only when its message carries a non-zero CTA_MARK (tsvs marks every connection it
 * scheduled; ctnetlink leaves the mark out of most events of unmarked entries, but not
 * of those created over ctnetlink, hence the value check). The host's other connections
 * then cost the reader nothing, and cannot overflow its buffer. The kernel runs the filter
 * before queueing (do_one_broadcast -> sk_filter), with the netlink ancillary load
 * SKF_AD_NLATTR (A = offset of the attribute of type X found from offset A, 0 if none).
 */
import { createRequire } from 'node:module';
import { check, SOL_SOCKET } from '../../net/libc.js';
import { CTA_MARK } from './ctnetlink.js';

const SO_ATTACH_FILTER = 26;
// linux/filter.h, linux/bpf_common.h
const BPF_LD_IMM = 0x00;
const BPF_LDX_IMM = 0x01;
const BPF_LD_W_ABS = 0x20;
const BPF_LD_W_IND = 0x40;
const BPF_TAX = 0x07;
const BPF_JEQ_K = 0x15;
const BPF_RET_K = 0x06;
const SKF_AD_OFF = -0x1000;
const SKF_AD_NLATTR = 12;
/** nlmsghdr (16) + nfgenmsg (4): where a ctnetlink message's attributes start. */
const ATTRS_AT = 20;

/** The program, as struct sock_filter[] ({ u16 code; u8 jt; u8 jf; u32 k; } each). */
export function markedOnlyProgram(): Buffer {
  const insns: Array<[number, number, number, number]> = [
    [BPF_LD_IMM, 0, 0, ATTRS_AT],
    [BPF_LDX_IMM, 0, 0, CTA_MARK],
    [BPF_LD_W_ABS, 0, 0, (SKF_AD_OFF + SKF_AD_NLATTR) >>> 0],
    [BPF_JEQ_K, 4, 0, 0], // no CTA_MARK: drop
    [BPF_TAX, 0, 0, 0],
    [BPF_LD_W_IND, 0, 0, 4], // the mark, after the 4-byte attribute header
    [BPF_JEQ_K, 1, 0, 0], // mark 0: drop
    [BPF_RET_K, 0, 0, 0xffffffff],
    [BPF_RET_K, 0, 0, 0],
  ];
  const b = Buffer.alloc(insns.length * 8);
  insns.forEach(([code, jt, jf, k], i) => {
    b.writeUInt16LE(code, i * 8);
    b.writeUInt8(jt, i * 8 + 2);
    b.writeUInt8(jf, i * 8 + 3);
    b.writeUInt32LE(k, i * 8 + 4);
  });
  return b;
}

type AttachFn = (fd: number, level: number, name: number, prog: { len: number; filter: Buffer }, size: number) => number;
let attach: AttachFn | null = null;

/** Attaches markedOnlyProgram() to socket `fd` (SO_ATTACH_FILTER); throws LibcError. */
export function attachMarkedOnlyFilter(fd: number): void {
  if (!attach) {
    // struct sock_fprog holds a pointer, which the shared libc binding (const void *) cannot express.
    const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
    const fprog = koffi.struct({ len: 'uint16_t', filter: 'void *' });
    attach = koffi.load('libc.so.6').func('setsockopt', 'int', ['int', 'int', 'int', koffi.pointer(fprog), 'uint32_t']) as AttachFn;
  }
  const prog = markedOnlyProgram();
  check('setsockopt(SO_ATTACH_FILTER)', attach(fd, SOL_SOCKET, SO_ATTACH_FILTER, { len: prog.length / 8, filter: prog }, 16));
}
