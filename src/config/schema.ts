/**
 * The shared last step of both configuration readers (YAML and keepalived.conf): the model
 * they produced is checked against the objects' one schema (core/schema.ts for services
 * and real servers, through the table's own checks; health/schema.ts for checkers and
 * quorum; ha/schema.ts for VRRP), so a bound one reader forgets is still enforced, with the
 * same limit, at the object's line.
 */
import type { z } from 'zod';
import { destId, serviceLabel } from '../core/service.js';
import { VrrpScriptSchema, VrrpInstanceSchema } from '../ha/schema.js';
import { CheckerSchema, ServiceHealthSchema } from '../health/schema.js';
import type { Diagnostic, Origin, TsvsConfig } from './model.js';
import { validateServices } from './validate.js';
import { validateVrrp } from './vrrp.js';
import { clip, quote } from '../core/quote.js';

/** The instance fields config/vrrp.ts reports in its own words (with the schema's bounds). */
const InstanceFields = VrrpInstanceSchema.omit({ advertInt: true, preemptDelay: true, trackInterface: true, trackScript: true });

/**
 * Every problem of a configuration model that its reader did not report: first the
 * objects against their schemas; when those hold, the checks that need the whole model
 * (duplicates, what the table refuses, VRRP consistency).
 */
export function checkModel(cfg: TsvsConfig): Diagnostic[] {
  const out: Diagnostic[] = [];
  const at = (o: Origin | undefined): Origin => o ?? { file: cfg.file, line: 1, column: 1 };
  for (const svc of cfg.services) {
    const label = serviceLabel(svc);
    report(out, ServiceHealthSchema, svc, at(svc.origin), label);
    for (const rs of svc.realServers) {
      for (const [i, c] of rs.checkers.entries()) {
        report(out, CheckerSchema, c, at(rs.origin ?? svc.origin), `${label} real server ${destId(rs)}: checker ${i + 1} (${c.type})`);
      }
    }
  }
  for (const v of cfg.vrrp) report(out, InstanceFields, v, at(v.origin), `vrrp instance ${v.name}`);
  for (const s of cfg.vrrpScripts ?? []) report(out, VrrpScriptSchema, s, at(s.origin), `vrrp_script ${s.name}`);
  if (!out.length) out.push(...validateServices(cfg.services, cfg.file), ...validateVrrp(cfg.vrrp, cfg.vrrpScripts ?? [], cfg.file));
  return out;
}

function report(out: Diagnostic[], schema: z.ZodType, value: unknown, at: Origin, where: string): void {
  const r = schema.safeParse(value);
  if (r.success) return;
  for (const issue of r.error.issues)
    out.push({ ...at, message: `${where}: ${pathText(issue.path)}: ${issueText(issue, valueAt(value, issue.path))}` });
}

function pathText(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i ? '.' : ''}${String(p)}`)).join('');
}

function valueAt(v: unknown, path: readonly PropertyKey[]): unknown {
  for (const p of path) v = v && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[p] : undefined;
  return v;
}

function issueText(issue: z.core.$ZodIssue, got: unknown): string {
  const shown = typeof got === 'string' ? quote(got) : clip(got);
  if (issue.code === 'too_small' && issue.origin === 'number') return `expected at least ${String(issue.minimum)}, got ${shown}`;
  if (issue.code === 'too_big' && issue.origin === 'number') return `expected at most ${String(issue.maximum)}, got ${shown}`;
  return `${issue.message}, got ${shown}`;
}
