/**
 * bench/scale.ts's results and their markdown: one row per size, the flatness figure
 * (per-change cost at the largest size over the smallest), and the download check.
 */
import type { DownloadResult } from './scale-download.js';

/** A measured figure, or why there is none ("timeout (>120 s)", "not run", ...). */
export type Figure = number | string;

/** Durations of a series of changes, and why it stopped early if it did. */
export interface Series {
  ms: number[];
  asked: number;
  note: string;
}

/** Everything measured at one size on one plane. */
export interface SizeResult {
  size: number;
  restoreS: Figure;
  /** Whole tsvsadm calls. */
  call: Series;
  /** API round trips from the bench process. */
  api: Series;
  /** Per-batch `ms` the daemon logged for those changes (empty when it logs none). */
  daemonMs: number[];
  saveS: Figure;
  listS: Figure;
  rssRestoreMB: Figure;
  rssChangesMB: Figure;
  peakMB: Figure;
  /** Anything odd (a listing with the wrong number of lines, ...). */
  notes: string[];
}

/** The q-quantile (nearest rank) of a list of numbers. */
export function quantile(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

const fig = (x: Figure, digits: number) => (typeof x === 'number' ? x.toFixed(digits) : x);
const ms = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));

function seriesCell(s: Series): string {
  if (s.ms.length === 0) return s.note || 'not run';
  const cell = `${ms(quantile(s.ms, 0.5))} / ${ms(quantile(s.ms, 0.95))} / ${ms(Math.max(...s.ms))}`;
  return s.ms.length < s.asked ? `${cell} (${s.ms.length} of ${s.asked}: ${s.note})` : cell;
}

/** The per-plane table. */
export function sizeTable(rows: readonly SizeResult[]): string {
  const head = [
    '| services × 4 | restore `-R` s | one change, whole tsvsadm call p50 / p95 / max ms | one change, API round trip p50 / p95 / max ms | one change in the daemon (logged) p50 / p95 / max ms | `-Sn` s | `-Ln` s | RSS MB after restore / after changes (peak) |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  return [
    ...head,
    ...rows.map((r) => {
      const daemon = r.daemonMs.length ? seriesCell({ ms: r.daemonMs, asked: r.daemonMs.length, note: '' }) : 'not logged';
      const mem =
        typeof r.rssRestoreMB === 'number' ? `${fig(r.rssRestoreMB, 0)} / ${fig(r.rssChangesMB, 0)} (${fig(r.peakMB, 0)})` : r.rssRestoreMB;
      return `| ${r.size} | ${fig(r.restoreS, 2)} | ${seriesCell(r.call)} | ${seriesCell(r.api)} | ${daemon} | ${fig(r.saveS, 2)} | ${fig(r.listS, 2)} | ${mem} |`;
    }),
  ].join('\n');
}

/**
 * The flatness figure: median per-change cost at the largest size over the smallest (sizes
 * with at least 3 changes in both series), for the API round trip and the whole call; null
 * with fewer than two such sizes.
 */
export function flatness(rows: readonly SizeResult[]): string | null {
  // A series cut short by the time budget still has a median; three samples at least.
  const done = rows.filter((r) => r.api.ms.length >= 3 && r.call.ms.length >= 3);
  if (done.length < 2) return null;
  const lo = done[0]!;
  const hi = done[done.length - 1]!;
  const ratio = (a: number[], b: number[]) => (quantile(a, 0.5) / quantile(b, 0.5)).toFixed(2);
  return `Per-change cost ${hi.size}/${lo.size} (median over median): API round trip ${ratio(hi.api.ms, lo.api.ms)}x, whole tsvsadm call ${ratio(hi.call.ms, lo.call.ms)}x (1.00x is flat).`;
}

/** The download check as a one-row table. */
export function downloadTable(d: DownloadResult): string {
  const during = `${d.changesDuringDownload} of ${d.changes}${d.note ? ` (${d.note})` : ''}`;
  const cms = d.changeMs.length
    ? `${ms(quantile(d.changeMs, 0.5))} / ${ms(quantile(d.changeMs, 0.95))} / ${ms(Math.max(...d.changeMs))}`
    : 'none';
  return [
    '| services × 4 | changes to other services, made during the download | change rate /s | change API round trip p50 / p95 / max ms | curl rate limit | download s | bytes received | HTTP | SHA-256 equal | result |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
    `| ${d.size} | ${during} | ${d.changesPerS >= 10 ? d.changesPerS.toFixed(0) : d.changesPerS.toPrecision(2)} | ${cms} | ${d.rateKBs} KiB/s | ${d.downloadS.toFixed(1)} | ${d.bytes} | ${d.httpCode || '-'} | ${d.sha256Match ? 'yes' : 'no'} | ${d.pass ? 'pass' : `FAIL (curl exit ${d.curlExit})`} |`,
  ].join('\n');
}
