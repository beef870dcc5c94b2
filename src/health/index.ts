/** The checker registry: one function per checker type, each in its own file. */
import type { CheckerType } from './model.js';
import type { CheckFn } from './checker.js';
import { dnsCheck } from './dns.js';
import { httpCheck } from './http.js';
import { miscCheck } from './misc.js';
import { tcpCheck } from './tcp.js';
import { udpCheck } from './udp.js';

export const CHECKERS: Record<CheckerType, CheckFn> = {
  tcp: tcpCheck,
  http: httpCheck,
  https: httpCheck,
  udp: udpCheck,
  dns: dnsCheck,
  misc: miscCheck,
};
