/**
 * The kernel's TCP connection state machine for IPVS entries (ip_vs_proto_tcp.c,
 * `tcp_states[]`), kept as data: rows are the packet's most significant flag
 * (RST > SYN > FIN > ACK), columns the current state, one table per direction.
 */

export enum TcpState {
  NONE = 0,
  ESTABLISHED = 1,
  SYN_SENT = 2,
  SYN_RECV = 3,
  FIN_WAIT = 4,
  TIME_WAIT = 5,
  CLOSE = 6,
  CLOSE_WAIT = 7,
  LAST_ACK = 8,
  LISTEN = 9,
  SYNACK = 10,
}

export const TCP_STATE_NAMES = [
  'NONE',
  'ESTABLISHED',
  'SYN_SENT',
  'SYN_RECV',
  'FIN_WAIT',
  'TIME_WAIT',
  'CLOSE',
  'CLOSE_WAIT',
  'LAST_ACK',
  'LISTEN',
  'SYNACK',
] as const;

/** The state of a kernel state name ("ESTABLISHED", ...); NONE for a name it does not know. */
export function tcpStateByName(name: string): TcpState {
  return Math.max(0, (TCP_STATE_NAMES as readonly string[]).indexOf(name)) as TcpState;
}

/** Default timeouts per state in seconds (`tcp_timeouts[]`). */
export const TCP_DEFAULT_TIMEOUTS: readonly number[] = [
  2, // NONE
  15 * 60, // ESTABLISHED
  2 * 60, // SYN_SENT
  60, // SYN_RECV
  2 * 60, // FIN_WAIT
  2 * 60, // TIME_WAIT
  10, // CLOSE
  60, // CLOSE_WAIT
  30, // LAST_ACK
  2 * 60, // LISTEN
  120, // SYNACK
];

/** UDP entries have one state, re-armed by every packet (`udp_timeouts[]`). */
export const UDP_DEFAULT_TIMEOUT = 5 * 60;

/** What `ipvsadm -L --timeout` shows on a fresh table: established TCP, TCP after FIN, UDP. */
export const DEFAULT_TIMEOUTS: Readonly<{ tcp: number; tcpfin: number; udp: number }> = {
  tcp: TCP_DEFAULT_TIMEOUTS[TcpState.ESTABLISHED]!,
  tcpfin: TCP_DEFAULT_TIMEOUTS[TcpState.FIN_WAIT]!,
  udp: UDP_DEFAULT_TIMEOUT,
};

/**
 * Which direction a packet travelled. `inputOnly` is used while the director sees only
 * the client side (DR/TUN: replies bypass it).
 */
export type TcpDir = 'input' | 'output' | 'inputOnly';
export type TcpFlag = 'syn' | 'fin' | 'ack' | 'rst';

const sES = TcpState.ESTABLISHED;
const sSS = TcpState.SYN_SENT;
const sSR = TcpState.SYN_RECV;
const sFW = TcpState.FIN_WAIT;
const sTW = TcpState.TIME_WAIT;
const sCL = TcpState.CLOSE;
const sCW = TcpState.CLOSE_WAIT;
const sLA = TcpState.LAST_ACK;
const sLI = TcpState.LISTEN;

type Row = readonly TcpState[];
type Table = Readonly<Record<TcpFlag, Row>>;

// Columns:    sNO  sES  sSS  sSR  sFW  sTW  sCL  sCW  sLA  sLI  sSA (SYNACK)
const INPUT: Table = {
  syn: [sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR],
  fin: [sCL, sCW, sSS, sTW, sTW, sTW, sCL, sCW, sLA, sLI, sTW],
  ack: [sCL, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES],
  rst: [sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sSR],
};
const OUTPUT: Table = {
  syn: [sSS, sES, sSS, sSR, sSS, sSS, sSS, sSS, sSS, sLI, sSR],
  fin: [sTW, sFW, sSS, sTW, sFW, sTW, sCL, sTW, sLA, sLI, sTW],
  ack: [sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sLA, sES, sES],
  rst: [sCL, sCL, sSS, sCL, sCL, sTW, sCL, sCL, sCL, sCL, sCL],
};
const INPUT_ONLY: Table = {
  syn: [sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR],
  fin: [sCL, sFW, sSS, sTW, sFW, sTW, sCL, sCW, sLA, sLI, sTW],
  ack: [sCL, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES],
  rst: [sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sCL],
};
const TABLES: Readonly<Record<TcpDir, Table>> = { input: INPUT, output: OUTPUT, inputOnly: INPUT_ONLY };

/** The state a packet moves a connection to. */
export function tcpNextState(current: TcpState, dir: TcpDir, flag: TcpFlag): TcpState {
  return TABLES[dir][flag][current] ?? TcpState.CLOSE;
}

/**
 * Modern kernels (`tcp_state_active_table[]`, "ipvs: count pre-established TCP states
 * as active") count the handshake states as active too, so a server flooded with half-open connections does
 * not look idle to lc/wlc.
 */
export function tcpStateActive(s: TcpState): boolean {
  return s === TcpState.ESTABLISHED || s === TcpState.SYN_SENT || s === TcpState.SYN_RECV || s === TcpState.SYNACK;
}
