/**
 * What every checker file exports: one attempt against one target, resolving (never
 * rejecting) with the outcome. The engine (engine.ts) owns timing, retries and state.
 */
import type { CheckerConfig } from '../config/model.js';

export interface CheckResult {
  ok: boolean;
  /** Why it failed, or a short note of what passed ("HTTP 200"). */
  reason: string;
  latencyMs: number;
  /** MISC_CHECK with misc_dynamic: the weight the script asked for. */
  weight?: number;
}

export interface CheckTarget {
  host: string;
  port: number;
  /** The real server's address, for checkers that need it (MISC_CHECK env). */
  serverAddr: string;
  serverPort: number;
}

export type CheckFn = (cfg: CheckerConfig, target: CheckTarget) => Promise<CheckResult>;

/** Milliseconds since `t0` (performance.now()), rounded to 0.1 ms. */
export function since(t0: number): number {
  return Math.round((performance.now() - t0) * 10) / 10;
}

export function errText(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return err?.code ? `${err.code}${err.message && !err.message.includes(err.code) ? ` ${err.message}` : ''}` : String(err?.message ?? e);
}
