/**
 * The VRRPv3 state machine of one virtual router (RFC 5798 section 6), pure: no sockets,
 * no timers, no clock of its own. The speaker feeds it events with the current time and
 * carries out the actions it returns, in order; tests step it the same way. Timers are
 * deadlines it keeps itself (`deadline()` says when to call it next with a 'timer' event).
 *
 * States: INIT, BACKUP, MASTER, and FAULT (keepalived's: a tracked interface or script
 * failed; no adverts are sent or heard until it clears).
 *
 * RFC 5798 6.1 (times in centiseconds there, milliseconds here):
 *   Skew_Time            = ((256 - Priority) * Master_Adver_Interval) / 256
 *   Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time
 * (keepalived's down_timer_adverts replaces the 3). Preemption follows keepalived:
 * `preempt: false` is nopreempt (a backup accepts any master), and preempt_delay keeps a
 * backup accepting a lower-priority master for that long after start, or after it first
 * sees one, before it lets the master down timer run out.
 */
import { compareAddr } from '../core/addr.js';
import { PRIO_OWNER, PRIO_STOP } from './packet.js';

export type FsmState = 'INIT' | 'BACKUP' | 'MASTER' | 'FAULT';
export type TimerName = 'advert' | 'masterDown';

export interface FsmConfig {
  /** Configured priority, 1..255 (255: address owner, master at once). */
  priority: number;
  /** Own advert interval in centiseconds (1..4095). */
  advertIntCs: number;
  /** false = keepalived nopreempt. */
  preempt: boolean;
  /** keepalived preempt_delay, milliseconds (0: none). */
  preemptDelayMs: number;
  /** This router's primary address on the interface: breaks priority ties (higher wins). */
  primaryAddr: string;
  /** Adverts missed before the master is down (keepalived down_timer_adverts; RFC: 3). */
  downTimerAdverts?: number;
}

export type FsmEvent =
  | { kind: 'start' }
  /** A valid advert for this VRID (packet.ts checked it). */
  | { kind: 'advert'; priority: number; maxAdverIntCs: number; src: string }
  /** Time passed: fire due timers. */
  | { kind: 'timer' }
  /** Tracking says the instance is (or is no longer) in fault. */
  | { kind: 'fault'; fault: boolean; reason: string }
  /** The effective priority changed (track weights). */
  | { kind: 'priority'; priority: number }
  /** Graceful shutdown (or the instance is removed by a reload). */
  | { kind: 'stop' };

export type NotifyState = 'MASTER' | 'BACKUP' | 'FAULT' | 'STOP';

export type FsmAction =
  | { kind: 'send'; priority: number }
  | { kind: 'arm'; timer: TimerName; at: number }
  | { kind: 'disarm'; timer: TimerName }
  | { kind: 'transition'; from: FsmState; to: FsmState; reason: string }
  | { kind: 'addVips' }
  | { kind: 'removeVips' }
  | { kind: 'garp' }
  | { kind: 'notify'; state: NotifyState };

/** Skew_Time in milliseconds for a priority and a master advert interval in centiseconds. */
export function skewTimeMs(priority: number, masterAdverIntCs: number): number {
  return ((256 - priority) * masterAdverIntCs * 10) / 256;
}

/** Master_Down_Interval in milliseconds. */
export function masterDownIntervalMs(priority: number, masterAdverIntCs: number, adverts = 3): number {
  return adverts * masterAdverIntCs * 10 + skewTimeMs(priority, masterAdverIntCs);
}

export class VrrpFsm {
  state: FsmState = 'INIT';
  /** Effective priority (configured plus track weights, clamped by the caller). */
  priority: number;
  /** The current master's interval, learned from its adverts while BACKUP (centiseconds). */
  masterAdverIntCs: number;
  /** Source of the last advert accepted from a master, while BACKUP. */
  masterAddr: string | null = null;
  /** Why the last transition happened. */
  lastReason = '';
  private timers: Record<TimerName, number | null> = { advert: null, masterDown: null };
  /** While set and in the future, a lower-priority master is still accepted (preempt_delay). */
  private preemptAfter: number | null = null;
  private faulted = false;
  /** A master that sent priority 0 since the last advert accepted. */
  private stopHeardFrom: string | null = null;

  /** Replaceable on reload (priority, interval, preemption); takes effect from the next event. */
  constructor(public cfg: FsmConfig) {
    this.priority = cfg.priority;
    this.masterAdverIntCs = cfg.advertIntCs;
  }

  /** The earliest armed timer, or null. */
  deadline(): number | null {
    const t = [this.timers.advert, this.timers.masterDown].filter((x): x is number => x !== null);
    return t.length ? Math.min(...t) : null;
  }

  timer(name: TimerName): number | null {
    return this.timers[name];
  }

  get skewMs(): number {
    return skewTimeMs(this.priority, this.masterAdverIntCs);
  }

  get masterDownMs(): number {
    return masterDownIntervalMs(this.priority, this.masterAdverIntCs, this.cfg.downTimerAdverts ?? 3);
  }

  /** Applies one event at time `now` (ms) and returns what to do, in order. */
  step(ev: FsmEvent, now: number): FsmAction[] {
    const out: FsmAction[] = [];
    switch (ev.kind) {
      case 'start':
        if (this.state !== 'INIT') return out;
        if (this.cfg.preemptDelayMs > 0) this.preemptAfter = now + this.cfg.preemptDelayMs;
        if (this.faulted) {
          this.transition('FAULT', this.lastReason || 'tracking failed at startup', out);
          out.push({ kind: 'notify', state: 'FAULT' });
        } else this.enterFromInit(now, out, 'startup');
        return out;
      case 'stop':
        this.stop(out);
        return out;
      case 'fault':
        this.fault(ev.fault, ev.reason, now, out);
        return out;
      case 'priority':
        this.priority = ev.priority;
        return out;
      case 'timer':
        this.timerFired(now, out);
        return out;
      case 'advert':
        if (this.state === 'BACKUP') this.backupAdvert(ev, now, out);
        else if (this.state === 'MASTER') this.masterAdvert(ev, now, out);
        return out;
    }
  }

  private arm(name: TimerName, at: number, out: FsmAction[]): void {
    this.timers[name] = at;
    out.push({ kind: 'arm', timer: name, at });
  }

  private disarm(name: TimerName, out: FsmAction[]): void {
    if (this.timers[name] === null) return;
    this.timers[name] = null;
    out.push({ kind: 'disarm', timer: name });
  }

  private transition(to: FsmState, reason: string, out: FsmAction[]): void {
    const from = this.state;
    this.state = to;
    this.lastReason = reason;
    out.push({ kind: 'transition', from, to, reason });
  }

  /** INIT (or a cleared FAULT): the owner becomes master at once, everyone else backup (RFC 6.4.1). */
  private enterFromInit(now: number, out: FsmAction[], reason: string): void {
    if (this.cfg.priority === PRIO_OWNER) this.becomeMaster(now, out, `${reason}: priority 255 (address owner)`);
    else this.becomeBackup(now, out, reason);
  }

  private becomeMaster(now: number, out: FsmAction[], reason: string): void {
    const leaving = this.state;
    this.disarm('masterDown', out);
    this.transition('MASTER', reason, out);
    this.masterAddr = null;
    this.stopHeardFrom = null;
    this.preemptAfter = null;
    out.push({ kind: 'send', priority: this.priority });
    this.arm('advert', now + this.cfg.advertIntCs * 10, out);
    if (leaving !== 'MASTER') {
      out.push({ kind: 'addVips' }, { kind: 'garp' }, { kind: 'notify', state: 'MASTER' });
    }
  }

  private becomeBackup(now: number, out: FsmAction[], reason: string): void {
    const wasMaster = this.state === 'MASTER';
    this.disarm('advert', out);
    this.transition('BACKUP', reason, out);
    this.arm('masterDown', now + this.masterDownMs, out);
    if (wasMaster) out.push({ kind: 'removeVips' });
    out.push({ kind: 'notify', state: 'BACKUP' });
  }

  private timerFired(now: number, out: FsmAction[]): void {
    if (this.state === 'MASTER' && this.timers.advert !== null && this.timers.advert <= now) {
      out.push({ kind: 'send', priority: this.priority });
      this.arm('advert', now + this.cfg.advertIntCs * 10, out);
    } else if (this.state === 'BACKUP' && this.timers.masterDown !== null && this.timers.masterDown <= now) {
      const why = this.stopHeardFrom
        ? `master ${this.stopHeardFrom} sent priority 0 (stopping)`
        : this.masterAddr
          ? `master ${this.masterAddr} down (no advert for ${Math.round(this.masterDownMs)} ms)`
          : 'no master heard';
      this.becomeMaster(now, out, why);
    }
  }

  /** RFC 5798 6.4.2: an advert while BACKUP. */
  private backupAdvert(ev: Extract<FsmEvent, { kind: 'advert' }>, now: number, out: FsmAction[]): void {
    if (ev.priority === PRIO_STOP) {
      // The master is stopping: take over after Skew_Time only.
      this.stopHeardFrom = ev.src;
      this.arm('masterDown', now + this.skewMs, out);
      return;
    }
    let accept = !this.cfg.preempt || ev.priority >= this.priority;
    if (accept) {
      // A proper master: a lower one seen later starts a fresh preempt_delay (the startup window stays).
      if (this.preemptAfter !== null && this.preemptAfter <= now) this.preemptAfter = null;
    } else if (this.cfg.preemptDelayMs > 0) {
      // keepalived preempt_delay: a lower-priority master is still followed for a while.
      this.preemptAfter ??= now + this.cfg.preemptDelayMs;
      accept = now < this.preemptAfter;
    }
    if (!accept) return; // lower priority and we preempt: let the master down timer run out
    this.stopHeardFrom = null;
    this.masterAdverIntCs = ev.maxAdverIntCs;
    this.masterAddr = ev.src;
    this.arm('masterDown', now + this.masterDownMs, out);
  }

  /** RFC 5798 6.4.3: an advert while MASTER. */
  private masterAdvert(ev: Extract<FsmEvent, { kind: 'advert' }>, now: number, out: FsmAction[]): void {
    if (ev.priority === PRIO_STOP) {
      out.push({ kind: 'send', priority: this.priority });
      this.arm('advert', now + this.cfg.advertIntCs * 10, out);
      return;
    }
    const higher = ev.priority > this.priority || (ev.priority === this.priority && compareAddr(ev.src, this.cfg.primaryAddr) > 0);
    if (!higher) return;
    this.masterAdverIntCs = ev.maxAdverIntCs;
    this.masterAddr = ev.src;
    this.becomeBackup(now, out, `higher priority master ${ev.src} (priority ${ev.priority}, ours ${this.priority})`);
  }

  private fault(on: boolean, reason: string, now: number, out: FsmAction[]): void {
    this.faulted = on;
    if (on) {
      if (this.state === 'FAULT' || this.state === 'INIT') {
        this.lastReason = reason;
        return;
      }
      const wasMaster = this.state === 'MASTER';
      // keepalived sends priority 0 on leaving MASTER, so the backup takes over at once.
      if (wasMaster) out.push({ kind: 'send', priority: PRIO_STOP });
      this.disarm('advert', out);
      this.disarm('masterDown', out);
      this.transition('FAULT', reason, out);
      if (wasMaster) out.push({ kind: 'removeVips' });
      out.push({ kind: 'notify', state: 'FAULT' });
      return;
    }
    if (this.state !== 'FAULT') return;
    this.enterFromInit(now, out, reason);
  }

  /** Whether tracking holds the instance in FAULT. */
  get inFault(): boolean {
    return this.faulted;
  }

  private stop(out: FsmAction[]): void {
    if (this.state === 'INIT') return;
    const wasMaster = this.state === 'MASTER';
    if (wasMaster) out.push({ kind: 'send', priority: PRIO_STOP });
    this.disarm('advert', out);
    this.disarm('masterDown', out);
    this.transition('INIT', 'stop', out);
    if (wasMaster) out.push({ kind: 'removeVips' });
    out.push({ kind: 'notify', state: 'STOP' });
  }
}
