/**
 * Checking a batch before it is applied: each operation's input is checked and put in
 * canonical form, and the batch is checked against the table as it will be after the
 * operations before it. Errors are TsvsErrors naming the object, with ipvsadm's messages.
 */
import { canonicalAddr, familyOf, parseIPv4, parseIPv6 } from './addr.js';
import { TsvsError } from './errors.js';
import { quote } from './quote.js';
import { destId, serviceId, serviceKeyOf, serviceLabel, type VirtualService } from './service.js';
import {
  bounds,
  choices,
  NETMASK6,
  OP_NAMES,
  orList,
  RealServerSchema,
  SCHEDULER_NAME,
  ServiceConfigSchema,
  TimeoutsSchema,
  TunnelSchema,
  type Bounds,
} from './schema.js';
import type { DestConfig, DestKey, Op, ServiceConfig, ServiceKey, Timeouts, TunnelOptions } from './types.js';

/**
 * Checks and canonicalizes a batch against `services` (the table's, by serviceId). Only
 * the services the batch names are looked at, so this costs the batch, not the table.
 * `hasScheduler` says whether a scheduler name exists.
 */
export function validateBatch(
  ops: readonly Op[],
  services: ReadonlyMap<string, VirtualService>,
  hasScheduler: (name: string) => boolean,
): Op[] {
  // The batch's view of what exists, so a batch can refer to what its earlier ops create.
  const shadow = new ShadowTable(services);
  const out: Op[] = [];
  for (const raw of ops) {
    const op = checkOpShape(raw);
    switch (op.op) {
      case 'add-service':
      case 'edit-service': {
        const cfg = checkServiceConfig(op.service);
        const id = serviceId(cfg);
        if (!hasScheduler(cfg.scheduler) || !PE.includes(cfg.pe)) {
          throw new TsvsError(
            'SCHEDULER_NOT_FOUND',
            `${serviceLabel(cfg)}: scheduler ${quote(cfg.scheduler)}${cfg.pe ? ` or persistence engine ${quote(cfg.pe)}` : ''} not found`,
          );
        }
        if (op.op === 'add-service') {
          if (shadow.get(id)) throw new TsvsError('SERVICE_EXISTS', `${serviceLabel(cfg)}: service already exists`);
          shadow.add(id, cfg.af);
        } else if (!shadow.get(id)) {
          throw new TsvsError('NO_SERVICE', `${serviceLabel(cfg)}: no such service`);
        }
        out.push({ op: op.op, service: cfg });
        break;
      }
      case 'delete-service': {
        const key = checkServiceKey(op.service);
        const id = serviceId(key);
        if (!shadow.delete(id)) throw new TsvsError('NO_SERVICE', `${serviceLabel(key)}: no such service`);
        out.push({ op: op.op, service: key });
        break;
      }
      case 'flush':
        shadow.flush();
        out.push(op);
        break;
      case 'add-server':
      case 'edit-server':
      case 'delete-server': {
        const key = checkServiceKey(op.service);
        const s = shadow.get(serviceId(key));
        if (!s) throw new TsvsError('SERVICE_NOT_DEFINED', `${serviceLabel(key)}: service not defined`);
        if (op.op === 'delete-server') {
          const dk = checkDestKey(op.dest, `${serviceLabel(key)} real server`);
          if (!s.hasDest(destId(dk))) throw new TsvsError('NO_DEST', `${serviceLabel(key)}: no such real server ${destId(dk)}`);
          s.setDest(destId(dk), false);
          out.push({ op: op.op, service: key, dest: dk });
          break;
        }
        const dest = checkDestConfig(op.dest, key, s.af);
        const did = destId(dest);
        if (op.op === 'add-server') {
          if (s.hasDest(did)) throw new TsvsError('DEST_EXISTS', `${serviceLabel(key)}: real server ${did} already exists`);
          s.setDest(did, true);
        } else if (!s.hasDest(did)) {
          throw new TsvsError('NO_DEST', `${serviceLabel(key)}: no such real server ${did}`);
        }
        out.push({ op: op.op, service: key, dest });
        break;
      }
      case 'zero': {
        if (op.service) {
          const key = checkServiceKey(op.service);
          if (!shadow.get(serviceId(key))) throw new TsvsError('NO_SERVICE', `${serviceLabel(key)}: no such service`);
          out.push({ op: 'zero', service: key });
        } else {
          out.push({ op: 'zero' });
        }
        break;
      }
      case 'set-timeouts':
        out.push({ op: op.op, timeouts: checkTimeouts(op.timeouts) });
        break;
    }
  }
  return out;
}

/** One service as a batch being validated sees it: its family, and which servers exist. */
class ShadowService {
  /** Servers the batch added (true) or deleted (false); the rest are as in `live`. */
  private readonly changed = new Map<string, boolean>();

  constructor(
    readonly af: 4 | 6,
    private readonly live: VirtualService | null,
  ) {}

  hasDest(id: string): boolean {
    return this.changed.get(id) ?? this.live?.findDestById(id) !== undefined;
  }

  setDest(id: string, exists: boolean): void {
    this.changed.set(id, exists);
  }
}

/**
 * Which services exist at each point of a batch being validated. Only what the batch
 * names is looked at, so validating costs the batch, not the table.
 */
class ShadowTable {
  /** Services the batch touched; null: does not exist (deleted, or never was). */
  private readonly touched = new Map<string, ShadowService | null>();
  private flushed = false;

  constructor(private readonly live: ReadonlyMap<string, VirtualService>) {}

  get(id: string): ShadowService | null {
    let s = this.touched.get(id);
    if (s === undefined) {
      const v = this.flushed ? undefined : this.live.get(id);
      s = v ? new ShadowService(v.af, v) : null;
      this.touched.set(id, s);
    }
    return s;
  }

  add(id: string, af: 4 | 6): void {
    this.touched.set(id, new ShadowService(af, null));
  }

  delete(id: string): boolean {
    if (!this.get(id)) return false;
    this.touched.set(id, null);
    return true;
  }

  flush(): void {
    this.flushed = true;
    this.touched.clear();
  }
}

// Every bound and allowed value below comes from the schema (schema.ts), read once here.
const SVC = ServiceConfigSchema.shape;
const RS = RealServerSchema.shape;
const PROTOCOLS = choices(SVC.protocol);
const FWD = choices(RS.fwd);
const PROXY = choices(SVC.proxyProtocol);
const TUN_TYPES = choices(TunnelSchema.shape.type);
const CSUM = choices(TunnelSchema.shape.csum);
const PE = choices(SVC.pe);
const FWMARK = bounds(SVC.fwmark);
const PORT = bounds(SVC.port);
const SCHED_FLAGS = bounds(SVC.schedFlags);
const PERSISTENT = bounds(SVC.persistent);
const MAX_CONNS = bounds(SVC.maxConns);
const NETMASK4 = bounds(SVC.netmask);
const DEST_PORT = bounds(RS.port);
const WEIGHT = bounds(RS.weight);
const U_THRESHOLD = bounds(RS.uThreshold);
const L_THRESHOLD = bounds(RS.lThreshold);
const TUN_PORT = bounds(TunnelSchema.shape.port);
const TIMEOUTS = {
  tcp: bounds(TimeoutsSchema.shape.tcp),
  tcpfin: bounds(TimeoutsSchema.shape.tcpfin),
  udp: bounds(TimeoutsSchema.shape.udp),
};

function isInt(v: unknown, b: Bounds): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= b.min && v <= b.max;
}

function bad(detail: string): never {
  throw new TsvsError('BAD_REQUEST', detail, detail);
}

function checkOpShape(raw: unknown): Op {
  if (!raw || typeof raw !== 'object') bad('operation must be an object');
  const op = (raw as { op?: unknown }).op;
  if (typeof op !== 'string' || !OP_NAMES.includes(op)) bad(`unknown operation ${quote(op)}; expected one of ${OP_NAMES.join(', ')}`);
  return raw as Op;
}

/** Checks a service key's fields and returns it in canonical form. */
export function checkServiceKey(raw: unknown): ServiceKey {
  if (!raw || typeof raw !== 'object') bad('service must be an object');
  const k = raw as Record<string, unknown>;
  const fwmark = k.fwmark ?? 0;
  if (!isInt(fwmark, FWMARK)) bad(`service fwmark ${quote(k.fwmark)}: must be an integer ${FWMARK.min}..${FWMARK.max}`);
  if (fwmark) {
    const af = k.af ?? 4;
    if (af !== 4 && af !== 6) bad(`service FWM ${fwmark}: af must be 4 or 6`);
    return serviceKeyOf({ af, protocol: 'tcp', addr: '', port: 0, fwmark });
  }
  if (typeof k.protocol !== 'string' || !PROTOCOLS.includes(k.protocol))
    bad(`service protocol ${quote(k.protocol)}: must be ${orList(PROTOCOLS)}`);
  const addr = typeof k.addr === 'string' ? canonicalAddr(k.addr) : null;
  if (!addr) bad(`service address ${quote(k.addr)}: not an IPv4 or IPv6 address`);
  const af = familyOf(addr)!;
  if (k.af !== undefined && k.af !== af) bad(`service ${addr}: af ${String(k.af)} does not match the address`);
  if (!isInt(k.port, PORT)) bad(`service ${addr}: port ${quote(k.port)} must be an integer ${PORT.min}..${PORT.max}`);
  return { af, protocol: k.protocol as ServiceKey['protocol'], addr, port: k.port, fwmark: 0 };
}

function checkServiceConfig(raw: ServiceConfig): ServiceConfig {
  const key = checkServiceKey(raw);
  const label = serviceLabel(key);
  const r = raw as unknown as Record<string, unknown>;
  const scheduler = r.scheduler ?? 'wlc';
  if (typeof scheduler !== 'string' || !SCHEDULER_NAME.test(scheduler))
    bad(`${label}: scheduler ${quote(r.scheduler)} is not a scheduler name`);
  const schedFlags = r.schedFlags ?? 0;
  if (!isInt(schedFlags, SCHED_FLAGS)) bad(`${label}: schedFlags must be an integer ${SCHED_FLAGS.min}..${SCHED_FLAGS.max}`);
  const persistent = r.persistent ?? 0;
  if (!isInt(persistent, PERSISTENT))
    bad(`${label}: persistent timeout ${quote(r.persistent)} must be ${PERSISTENT.min}..${PERSISTENT.max} seconds`);
  const netmask = r.netmask ?? (key.af === 4 ? NETMASK4.max : NETMASK6.max);
  if (!isInt(netmask, key.af === 4 ? NETMASK4 : NETMASK6)) {
    throw new TsvsError('INVALID', `${label}: persistence netmask ${quote(r.netmask)} is out of range`);
  }
  const ops = r.ops ?? false;
  if (typeof ops !== 'boolean') bad(`${label}: ops must be true or false`);
  if (ops && !key.fwmark && key.protocol !== 'udp') {
    throw new TsvsError('INVALID', `${label}: one-packet scheduling is only for UDP virtual services`);
  }
  const pe = r.pe ?? '';
  if (typeof pe !== 'string') bad(`${label}: pe must be a string`);
  if (!key.fwmark && key.port === 0 && persistent === 0) {
    throw new TsvsError('INVALID', `${label}: port zero is only supported in persistent services`);
  }
  const out: ServiceConfig = {
    ...key,
    scheduler,
    schedFlags: schedFlags as number,
    persistent: persistent as number,
    netmask: netmask as number,
    ops,
    pe,
  };
  // Userspace-plane options (never in -S output): kept only when set.
  if (r.proxyProtocol !== undefined) {
    if (typeof r.proxyProtocol !== 'string' || !PROXY.includes(r.proxyProtocol)) {
      bad(`${label}: proxyProtocol ${quote(r.proxyProtocol)} must be ${orList(PROXY.map((v) => `"${v}"`))}`);
    }
    out.proxyProtocol = r.proxyProtocol as NonNullable<ServiceConfig['proxyProtocol']>;
  }
  if (r.transparent !== undefined) {
    if (typeof r.transparent !== 'boolean') bad(`${label}: transparent must be true or false`);
    out.transparent = r.transparent;
  }
  for (const f of ['maxConns', 'maxConnsPerClient'] as const) {
    if (r[f] === undefined) continue;
    if (!isInt(r[f], MAX_CONNS)) bad(`${label}: ${f} ${JSON.stringify(r[f])} must be an integer ${MAX_CONNS.min}..${MAX_CONNS.max}`);
    out[f] = r[f];
  }
  return out;
}

function checkDestKey(raw: unknown, what: string): DestKey {
  if (!raw || typeof raw !== 'object') bad(`${what} must be an object`);
  const k = raw as Record<string, unknown>;
  const addr = typeof k.addr === 'string' ? canonicalAddr(k.addr) : null;
  if (!addr) bad(`${what} address ${quote(k.addr)}: not an IPv4 or IPv6 address`);
  if (!isInt(k.port, DEST_PORT)) bad(`${what} ${addr}: port ${quote(k.port)} must be an integer ${DEST_PORT.min}..${DEST_PORT.max}`);
  return { af: familyOf(addr)!, addr, port: k.port };
}

function isUnicast(addr: string): boolean {
  const v4 = parseIPv4(addr);
  if (v4 !== null) return v4 !== 0 && v4 !== 0xffffffff && v4 >>> 28 !== 0xe;
  const g = parseIPv6(addr)!;
  return !g.every((x) => x === 0) && g[0]! >>> 8 !== 0xff;
}

function checkDestConfig(raw: DestConfig, svc: ServiceKey, svcAf: 4 | 6): DestConfig {
  const label = `${serviceLabel(svc)} real server`;
  const k = checkDestKey(raw, label);
  const id = `${label} ${destId(k)}`;
  const r = raw as unknown as Record<string, unknown>;
  const weight = r.weight ?? 1;
  if (typeof weight !== 'number' || !Number.isInteger(weight)) bad(`${id}: weight must be an integer`);
  if (!isInt(weight, WEIGHT)) throw new TsvsError('OUT_OF_RANGE', `${id}: weight ${weight} is outside ${WEIGHT.min}..${WEIGHT.max}`);
  const fwd = r.fwd ?? 'route';
  if (typeof fwd !== 'string' || !FWD.includes(fwd)) bad(`${id}: forwarding method ${quote(r.fwd)} must be ${orList(FWD)}`);
  const u = r.uThreshold ?? 0;
  const l = r.lThreshold ?? 0;
  if (!isInt(u, U_THRESHOLD)) bad(`${id}: upper threshold must be an integer ${U_THRESHOLD.min}..${U_THRESHOLD.max}`);
  if (!isInt(l, L_THRESHOLD)) bad(`${id}: lower threshold must be an integer ${L_THRESHOLD.min}..${L_THRESHOLD.max}`);
  if (l > u) throw new TsvsError('OUT_OF_RANGE', `${id}: lower threshold ${l} is above upper threshold ${u}`);
  if (k.af !== svcAf && fwd !== 'tunnel') {
    throw new TsvsError('AF_NOT_SUPPORTED', `${id}: an IPv${k.af} real server in an IPv${svcAf} service needs tunnelling`);
  }
  if (!isUnicast(k.addr)) throw new TsvsError('INVALID', `${id}: address is not unicast`);
  const out: DestConfig = { ...k, weight, fwd: fwd as DestConfig['fwd'], uThreshold: u, lThreshold: l };
  if (fwd === 'tunnel') out.tunnel = checkTunnel(r.tunnel, id);
  else if (r.tunnel !== undefined) bad(`${id}: tunnel options conflict with forwarding method ${String(fwd)}`);
  return out;
}

function checkTunnel(raw: unknown, id: string): TunnelOptions {
  if (raw === undefined) return { type: 'ipip' };
  if (!raw || typeof raw !== 'object') bad(`${id}: tunnel must be an object`);
  const t = raw as Record<string, unknown>;
  const type = t.type ?? 'ipip';
  if (typeof type !== 'string' || !TUN_TYPES.includes(type)) bad(`${id}: tunnel type ${quote(t.type)} must be ${orList(TUN_TYPES)}`);
  const out: TunnelOptions = { type: type as TunnelOptions['type'] };
  if (type === 'gue') {
    if (!isInt(t.port, TUN_PORT)) bad(`${id}: a gue tunnel needs a port ${TUN_PORT.min}..${TUN_PORT.max}`);
    out.port = t.port as number;
  } else if (t.port !== undefined) {
    bad(`${id}: a ${type} tunnel takes no port`);
  }
  if (t.csum !== undefined) {
    // remcsum (remote checksum offload) exists only for gue.
    const ok = type === 'gue' ? CSUM : type === 'gre' ? CSUM.filter((c) => c !== 'remcsum') : [];
    if (typeof t.csum !== 'string' || !ok.includes(t.csum)) bad(`${id}: checksum option ${quote(t.csum)} is not valid for ${type}`);
    out.csum = t.csum as TunnelOptions['csum'];
  } else if (type !== 'ipip') {
    out.csum = 'nocsum';
  }
  return out;
}

function checkTimeouts(raw: unknown): Timeouts {
  if (!raw || typeof raw !== 'object') bad('timeouts must be an object with tcp, tcpfin and udp');
  const t = raw as Record<string, unknown>;
  for (const f of ['tcp', 'tcpfin', 'udp'] as const) {
    const b = TIMEOUTS[f];
    if (!isInt(t[f], b)) bad(`timeout ${f} ${quote(t[f])} must be an integer ${b.min}..${b.max} seconds`);
  }
  return { tcp: t.tcp as number, tcpfin: t.tcpfin as number, udp: t.udp as number };
}
