/**
 * The one schema of the objects the table holds: a virtual service, a real server, the
 * connection timeouts and the operations that change them. Every bound, default and
 * allowed value is written here once; core's checks (validate.ts), the YAML reader, the
 * keepalived mapping and the API's OpenAPI document all take them from here, so they
 * cannot drift. The zod schemas describe the input as the API and the readers accept it
 * (fields with defaults may be left out); the checked, canonical form is types.ts.
 */
import { z } from 'zod';
import {
  SCHED_FLAG_1,
  SCHED_FLAG_2,
  SCHED_FLAG_3,
  type DestConfig,
  type ServiceConfig,
  type Timeouts,
  type TunnelOptions,
} from './types.js';

/** ipvsadm's MAX_TIMEOUT: 31 days, the largest persistence timeout and --set timeout. */
export const MAX_TIMEOUT = 86400 * 31;
/** IPVS_SVC_PERSISTENT_TIMEOUT: what `-p` without a value means (the man page's 300 is wrong). */
export const DEFAULT_PERSISTENT_TIMEOUT = 360;
/**
 * The largest connection threshold (-x / -y). The kernel's field is a __u32, but ipvsadm
 * parses both with string_to_number(0, INT_MAX) and the table has always refused more, so
 * INT_MAX is what any tool can set.
 */
export const MAX_THRESHOLD = 0x7fffffff;
/** The largest real server weight ipvsadm accepts (-w). */
export const MAX_WEIGHT = 65535;
/** Firewall marks are 32-bit; 0 means an address-based service. */
export const MAX_FWMARK = 0xffffffff;
export const MAX_PORT = 65535;
/** The scheduler flag bits (-b) that exist. */
export const MAX_SCHED_FLAGS = SCHED_FLAG_1 | SCHED_FLAG_2 | SCHED_FLAG_3;
/** IP_VS_SCHEDNAME_MAXLEN - 1: lowercase letters and digits. */
export const SCHEDULER_NAME = /^[a-z0-9]{1,15}$/;

/** Scheduler flag names the configuration formats accept, as ipvsadm -b spells them. */
export const SCHED_FLAGS: Record<string, number> = {
  'flag-1': SCHED_FLAG_1,
  'flag-2': SCHED_FLAG_2,
  'flag-3': SCHED_FLAG_3,
  'sh-fallback': SCHED_FLAG_1,
  'sh-port': SCHED_FLAG_2,
  'mh-fallback': SCHED_FLAG_1,
  'mh-port': SCHED_FLAG_2,
};

/** An integer field from `min` to `max`. */
export const int = (min: number, max: number) => z.number().int().min(min).max(max);

export const ProtocolSchema = z.enum(['tcp', 'udp', 'sctp']);
export const FwdSchema = z.enum(['masq', 'route', 'tunnel', 'fullnat']);
export const TunTypeSchema = z.enum(['ipip', 'gue', 'gre']);
export const TunCsumSchema = z.enum(['nocsum', 'csum', 'remcsum']);
export const ProxyProtocolSchema = z.enum(['v1', 'v2', 'none']);
export const FamilySchema = z.literal([4, 6]);
const PortSchema = int(0, MAX_PORT);

/** What identifies a virtual service: protocol + address + port, or a firewall mark. */
const serviceKeyShape = {
  af: FamilySchema.optional().meta({ description: 'Derived from addr; needed only for IPv6 fwmark services' }),
  protocol: ProtocolSchema.optional().meta({ description: 'Required unless fwmark is set' }),
  addr: z.string().optional().meta({ description: 'IPv4 or IPv6 address; required unless fwmark is set', example: '10.0.0.1' }),
  port: PortSchema.optional().meta({ description: 'Required unless fwmark is set; 0 only for a persistent service' }),
  fwmark: int(0, MAX_FWMARK).default(0).meta({ description: 'Firewall mark of a fwmark service; 0 = an address service' }),
};
export const ServiceKeySchema = z
  .object(serviceKeyShape)
  .meta({ description: 'Identifies a virtual service. Either protocol+addr+port or fwmark.' });

const serviceShape = {
  ...serviceKeyShape,
  scheduler: z.string().regex(SCHEDULER_NAME).default('wlc'),
  schedFlags: int(0, MAX_SCHED_FLAGS)
    .default(0)
    .meta({ description: 'Bit set: 1 = flag-1 (sh/mh-fallback), 2 = flag-2 (sh/mh-port), 4 = flag-3' }),
  persistent: int(0, MAX_TIMEOUT).default(0).meta({ description: 'Persistence timeout in seconds; 0 = none' }),
  netmask: int(0, 0xffffffff).optional().meta({
    description:
      'Persistence granularity. IPv4: the 32-bit mask as an unsigned number (default 4294967295, per client); IPv6: the prefix length 1..128 (default 128)',
  }),
  ops: z.boolean().default(false).meta({ description: 'One-packet scheduling; UDP only' }),
  pe: z.enum(['', 'sip']).default('').meta({ description: 'Persistence engine' }),
  proxyProtocol: ProxyProtocolSchema.optional().meta({
    description:
      'Userspace plane: PROXY protocol header toward real servers; in an edit, absent = unchanged, none = off. Not in ipvsadm -S.',
  }),
  transparent: z.boolean().optional().meta({
    description:
      'Userspace plane, TCP: connect to real servers from the client address (root; docs/userspace.md). In an edit, absent = unchanged.',
  }),
  maxConns: int(0, MAX_THRESHOLD).optional().meta({
    description:
      "Connections (TCP plus UDP flows) this service takes at once; 0 = tsvsd's --max-conns-per-service. In an edit, absent = unchanged. Not in ipvsadm -S.",
  }),
  maxConnsPerClient: int(0, MAX_THRESHOLD).optional().meta({
    description: "The same per client address; 0 = tsvsd's --max-conns-per-client. In an edit, absent = unchanged. Not in ipvsadm -S.",
  }),
} satisfies { [K in keyof ServiceConfig]-?: z.ZodType };
/** A virtual service as ipvsadm -A / -E set it. */
export const ServiceConfigSchema = z
  .object(serviceShape)
  .meta({ description: 'What ipvsadm -A/-E set. Either protocol+addr+port or fwmark.' });

const tunnelShape = {
  type: TunTypeSchema.default('ipip'),
  port: int(1, MAX_PORT).optional().meta({ description: 'UDP port; gue only, and required there' }),
  csum: TunCsumSchema.optional().meta({ description: 'gue: nocsum, csum or remcsum; gre: nocsum or csum; default nocsum' }),
} satisfies { [K in keyof TunnelOptions]-?: z.ZodType };
export const TunnelSchema = z.object(tunnelShape).meta({ description: 'Tunnel options (ipvsadm --tun-type ...); only with fwd tunnel' });

const destShape = {
  af: FamilySchema.optional().meta({ description: 'Derived from addr' }),
  addr: z.string().meta({ description: 'IPv4 or IPv6 address' }),
  port: PortSchema,
  weight: int(0, MAX_WEIGHT).default(1).meta({ description: '0 quiesces the server: no new connections' }),
  fwd: FwdSchema.optional().meta({ description: "Default: the data plane's first of masq, fullnat, route" }),
  uThreshold: int(0, MAX_THRESHOLD).default(0).meta({ description: 'Upper connection threshold; 0 = none' }),
  lThreshold: int(0, MAX_THRESHOLD).default(0).meta({ description: 'Lower connection threshold; 0 = none; not above uThreshold' }),
  tunnel: TunnelSchema.optional(),
} satisfies { [K in keyof DestConfig]-?: z.ZodType };
/** A real server as ipvsadm -a / -e set it. */
export const RealServerSchema = z.object(destShape).meta({ description: 'What ipvsadm -a/-e set.' });

const timeoutsShape = {
  tcp: int(0, MAX_TIMEOUT),
  tcpfin: int(0, MAX_TIMEOUT),
  udp: int(0, MAX_TIMEOUT),
} satisfies { [K in keyof Timeouts]-?: z.ZodType };
/** Connection timeouts in seconds (ipvsadm --set); 0 leaves one unchanged. */
export const TimeoutsSchema = z.object(timeoutsShape).meta({ description: 'Connection timeouts in seconds (ipvsadm --set)' });

/** One operation of a batch (POST /v1/ops, tsvsadm -R). */
export const OpSchema = z
  .discriminatedUnion('op', [
    z.object({ op: z.literal('add-service'), service: ServiceConfigSchema }),
    z.object({ op: z.literal('edit-service'), service: ServiceConfigSchema }),
    z.object({ op: z.literal('delete-service'), service: ServiceKeySchema }),
    z.object({ op: z.literal('flush') }),
    z.object({ op: z.literal('add-server'), service: ServiceKeySchema, dest: RealServerSchema }),
    z.object({ op: z.literal('edit-server'), service: ServiceKeySchema, dest: RealServerSchema }),
    z.object({
      op: z.literal('delete-server'),
      service: ServiceKeySchema,
      dest: RealServerSchema.pick({ af: true, addr: true, port: true }),
    }),
    z.object({ op: z.literal('zero'), service: ServiceKeySchema.optional() }),
    z.object({ op: z.literal('set-timeouts'), timeouts: TimeoutsSchema }),
  ])
  .meta({ description: 'One tsvsadm operation (see src/core/types.ts Op)' });

/** The operation names, in the order error messages list them. */
export const OP_NAMES: readonly string[] = OpSchema.options.map((o) => o.shape.op.value);

/** The range of an integer (or number) field. */
export interface Bounds {
  min: number;
  max: number;
}

/** IPv6 persistence granularity: a prefix length (the schema's netmask field is the IPv4 mask). */
export const NETMASK6: Bounds = { min: 1, max: 128 };

/**
 * The bounds of a numeric field of a schema (through .optional() and .default()), read
 * once where a check is set up; throws at load when the field has none, so a schema edit
 * that drops a bound fails at once.
 */
export function bounds(s: z.ZodType): Bounds {
  let t: z.ZodType = s;
  while (t instanceof z.ZodOptional || t instanceof z.ZodDefault) t = t.unwrap() as z.ZodType;
  if (!(t instanceof z.ZodNumber) || t.minValue === null || t.maxValue === null) throw new Error('bounds: not a bounded number schema');
  return { min: t.minValue, max: t.maxValue };
}

/** The allowed values of an enum field (through .optional() and .default()). */
export function choices(s: z.ZodType): readonly string[] {
  let t: z.ZodType = s;
  while (t instanceof z.ZodOptional || t instanceof z.ZodDefault) t = t.unwrap() as z.ZodType;
  if (!(t instanceof z.ZodEnum)) throw new Error('choices: not an enum schema');
  return t.options as string[];
}

/** "a, b or c", as the messages list allowed values. */
export function orList(words: readonly string[]): string {
  return words.length < 2 ? (words[0] ?? '') : `${words.slice(0, -1).join(', ')} or ${words[words.length - 1]}`;
}
