/**
 * Counters and the rate estimator, as kernel IPVS keeps them per service, per real
 * server and in total (ip_vs_est.c).
 *
 * The estimator runs every 2 s and keeps an exponentially weighted average with
 * W = 1/4, in fixed point: connection and packet rates scaled by 2^10, byte rates by
 * 2^5. We reproduce that arithmetic exactly so that `--rate` converges the way operators
 * are used to (a constant 100 conn/s reads 25, 44, 58, 68, 76, 82, ... then 100).
 */
import type { Rates, Stats } from './types.js';

/** The estimator's tick, in milliseconds (kernel: 2*HZ). */
export const ESTIMATOR_INTERVAL_MS = 2000;

/**
 * Arithmetic shift right of a possibly negative, possibly > 2^31 integer: floor(x / 2^n).
 * The kernel shifts signed longs; JS `>>` would truncate to 32 bits.
 */
function sar(x: number, n: number): number {
  return Math.floor(x / 2 ** n);
}

/** The average moved a quarter (W = 1/4) of the way to the new scaled rate. */
function ewma(avg: number, rate: number): number {
  return avg + sar(rate - avg, 2);
}

/** One set of counters with its estimator. */
export class StatsBlock implements Stats {
  conns = 0;
  inpkts = 0;
  outpkts = 0;
  inbytes = 0;
  outbytes = 0;

  // Estimator state: the counters at the last tick, and the scaled averages.
  private lastConns = 0;
  private lastInpkts = 0;
  private lastOutpkts = 0;
  private lastInbytes = 0;
  private lastOutbytes = 0;
  private cpsScaled = 0;
  private inppsScaled = 0;
  private outppsScaled = 0;
  private inbpsScaled = 0;
  private outbpsScaled = 0;

  /** One estimator step; call every ESTIMATOR_INTERVAL_MS. */
  estimate(): void {
    // Packets and connections: delta << 9 is "scaled by 2^10, divided by 2 seconds".
    this.cpsScaled = ewma(this.cpsScaled, (this.conns - this.lastConns) * 512);
    this.inppsScaled = ewma(this.inppsScaled, (this.inpkts - this.lastInpkts) * 512);
    this.outppsScaled = ewma(this.outppsScaled, (this.outpkts - this.lastOutpkts) * 512);
    // Bytes: delta << 4 is "scaled by 2^5, divided by 2 seconds".
    this.inbpsScaled = ewma(this.inbpsScaled, (this.inbytes - this.lastInbytes) * 16);
    this.outbpsScaled = ewma(this.outbpsScaled, (this.outbytes - this.lastOutbytes) * 16);
    this.lastConns = this.conns;
    this.lastInpkts = this.inpkts;
    this.lastOutpkts = this.outpkts;
    this.lastInbytes = this.inbytes;
    this.lastOutbytes = this.outbytes;
  }

  /** Counts client-to-server traffic. */
  countIn(pkts: number, bytes: number): void {
    this.inpkts += pkts;
    this.inbytes += bytes;
  }

  /** Counts server-to-client traffic. */
  countOut(pkts: number, bytes: number): void {
    this.outpkts += pkts;
    this.outbytes += bytes;
  }

  /** The rates as ip_vs_read_estimator rounds them. */
  rates(): Rates {
    return {
      cps: sar(this.cpsScaled + 0x1ff, 10),
      inpps: sar(this.inppsScaled + 0x1ff, 10),
      outpps: sar(this.outppsScaled + 0x1ff, 10),
      inbps: sar(this.inbpsScaled + 0xf, 5),
      outbps: sar(this.outbpsScaled + 0xf, 5),
    };
  }

  snapshot(): Stats {
    return {
      conns: this.conns,
      inpkts: this.inpkts,
      outpkts: this.outpkts,
      inbytes: this.inbytes,
      outbytes: this.outbytes,
    };
  }

  /** A copy with the same counters and estimator state. */
  clone(): StatsBlock {
    return Object.assign(new StatsBlock(), this);
  }

  /** ipvsadm -Z: counters and the estimator start again from zero. */
  zero(): void {
    this.conns = this.inpkts = this.outpkts = this.inbytes = this.outbytes = 0;
    this.lastConns = this.lastInpkts = this.lastOutpkts = this.lastInbytes = this.lastOutbytes = 0;
    this.cpsScaled = this.inppsScaled = this.outppsScaled = this.inbpsScaled = this.outbpsScaled = 0;
  }

  /** Sets counters from an outside source (e.g. kernel counters read back) without disturbing the estimator. */
  set(s: Stats): void {
    this.conns = s.conns;
    this.inpkts = s.inpkts;
    this.outpkts = s.outpkts;
    this.inbytes = s.inbytes;
    this.outbytes = s.outbytes;
  }
}
