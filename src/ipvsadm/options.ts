/**
 * ipvsadm's tables of which option goes with which command (commands_v_options) and tunnel
 * type (tunnel_types_v_options), the checks that walk them, and fail(), which stops a parse
 * with ipvsadm's message.
 */
import type { TunType } from '../core/types.js';

/** Option columns in ipvsadm's order (its OPTC_* numbers); names as in its optnames[]. */
const OPT_NAMES = [
  'numeric',
  'connection',
  'service-address',
  'scheduler',
  'persistent',
  'netmask',
  'real-server',
  'forwarding-method',
  'weight',
  'u-threshold',
  'l-threshold',
  'mcast-interface',
  'timeout',
  'daemon',
  'stats',
  'rate',
  'thresholds',
  'persistent-conn',
  'nosort',
  'syncid',
  'exact',
  'ops',
  'pe',
  'sched-flags',
  'mcast-group',
  'mcast-port',
  'mcast-ttl',
  'sync-maxlen',
  'tun-info',
  'tun-type',
  'tun-port',
  'tun-nocsum',
  'tun-csum',
  'tun-remcsum',
  // tsvs extension
  'json',
] as const;
export type OptName = (typeof OPT_NAMES)[number];
const OPTC = Object.fromEntries(OPT_NAMES.map((n, i) => [n, i])) as Record<OptName, number>;

/** ipvsadm's command names, as its messages spell them. */
export type CmdName =
  | 'add-service'
  | 'edit-service'
  | 'delete-service'
  | 'flush'
  | 'list'
  | 'add-server'
  | 'delete-server'
  | 'edit-server'
  | 'set'
  | 'start-daemon'
  | 'stop-daemon'
  | 'restore'
  | 'save'
  | 'zero';

/**
 * ipvsadm's commands_v_options: one character per option column above.
 * '+' required, 'x' illegal, '1' at most one of the '1's, ' ' optional.
 * The last column is tsvs's --json, allowed where there is output.
 */
const COMMANDS_V_OPTIONS: Record<CmdName, string> = {
  'add-service': 'xx+   xxxxxxxxxxxxxxx   xxxxxxxxxxx',
  'edit-service': 'xx+   xxxxxxxxxxxxxxx   xxxxxxxxxxx',
  'delete-service': 'xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx',
  flush: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx',
  list: ' 11xxxxxxxxx11       xxxxxxx xxxxx ',
  'add-server': 'xx+xxx+    xxxxxxxxxxxxxxxxxx     x',
  'delete-server': 'xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxxx',
  'edit-server': 'xx+xxx+    xxxxxxxxxxxxxxxxxx     x',
  set: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx',
  'start-daemon': 'xxxxxxxxxxx xxxxxxx xxxx    xxxxxxx',
  'stop-daemon': 'xxxxxxxxxxxxxxxxxxx xxxxxxxxxxxxxxx',
  restore: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx',
  save: ' xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx ',
  zero: 'xx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx',
};

/** ipvsadm's tunnel_types_v_options over tun-port, tun-nocsum, tun-csum, tun-remcsum. */
const TUNNEL_OPTS: OptName[] = ['tun-port', 'tun-nocsum', 'tun-csum', 'tun-remcsum'];
const TUNNEL_TYPES_V_OPTIONS: Record<TunType, string> = { ipip: 'xxxx', gue: '+111', gre: 'x11x' };

/** The scanner's tag of each command option. */
export const COMMAND_TAGS: Record<string, CmdName | 'help' | 'version'> = {
  A: 'add-service',
  E: 'edit-service',
  D: 'delete-service',
  C: 'flush',
  L: 'list',
  Z: 'zero',
  a: 'add-server',
  e: 'edit-server',
  d: 'delete-server',
  set: 'set',
  R: 'restore',
  S: 'save',
  'start-daemon': 'start-daemon',
  'stop-daemon': 'stop-daemon',
  h: 'help',
  v: 'version',
};

/** Thrown inside the parser to stop at the first failure, like ipvsadm's fail(). */
export class Fail {
  constructor(
    readonly text: string,
    readonly exitCode: number,
  ) {}
}

/** Stops the parse with ipvsadm's message (a newline is added) and exit status. */
export function fail(msg: string, exitCode = 2): never {
  throw new Fail(`${msg}\n`, exitCode);
}

/** The options one command line has used so far (ipvsadm's `options` bit mask). */
export class OptionsSeen {
  private readonly bits = new Set<number>();

  /** Records an option; ipvsadm refuses any option given twice. */
  add(name: OptName): void {
    const bit = OPTC[name];
    if (this.bits.has(bit)) fail(`multiple '${name}' options specified`);
    this.bits.add(bit);
  }

  /** Whether the command line has used the option. */
  has(name: OptName): boolean {
    return this.bits.has(OPTC[name]);
  }
}

/** generic_opt_check: walks the columns in order and reports the first violation. */
export function genericOptCheck(cmd: CmdName, options: OptionsSeen): void {
  const row = COMMANDS_V_OPTIONS[cmd];
  let last = -1;
  for (let j = 0; j < OPT_NAMES.length; j++) {
    const rule = row[j];
    if (!options.has(OPT_NAMES[j]!)) {
      if (rule === '+') fail(`You need to supply the '${OPT_NAMES[j]}' option for the '${cmd}' command`);
      continue;
    }
    if (rule === 'x') fail(`Illegal '${OPT_NAMES[j]}' option with the '${cmd}' command`);
    if (rule === '1') {
      if (last < 0) last = j;
      else fail(`The option '${OPT_NAMES[j]}' conflicts with the '${OPT_NAMES[last]}' option in the '${cmd}' command`);
    }
  }
}

/** tunnel_opt_check: the same walk over the tunnel-type table. */
export function tunnelOptCheck(type: TunType, options: OptionsSeen): void {
  const row = TUNNEL_TYPES_V_OPTIONS[type];
  let last: OptName | null = null;
  TUNNEL_OPTS.forEach((name, j) => {
    const rule = row[j];
    if (!options.has(name)) {
      if (rule === '+') fail(`You need to supply the '${name}' option for the '${type}' tunnel type`);
      return;
    }
    if (rule === 'x') fail(`Illegal '${name}' option with the '${type}' tunnel type`);
    if (rule === '1') {
      if (last === null) last = name;
      else fail(`The option '${name}' conflicts with the '${last}' option in the '${type}' tunnel type`);
    }
  });
}
