/**
 * Checks that need the whole model, shared by both file formats: duplicate services and
 * real servers, and everything the table itself would refuse (unknown scheduler, a real
 * server of the wrong family, thresholds, ...), each reported at the declaring line.
 */
import { TsvsError } from '../core/errors.js';
import { destId, serviceId, serviceLabel } from '../core/service.js';
import { IpvsTable } from '../core/table.js';
import { getScheduler } from '../schedulers/index.js';
import { destConfigOf, serviceConfigOf } from '../health/engine.js';
import type { Diagnostic, Origin, VirtualServiceConfig } from './model.js';

const at = (o: Origin | undefined, file: string) => o ?? { file, line: 1, column: 1 };
const where = (o: Origin | undefined) => (o ? `${o.file}:${o.line}` : 'above');

export function validateServices(services: readonly VirtualServiceConfig[], file: string): Diagnostic[] {
  const out: Diagnostic[] = [];
  const seen = new Map<string, VirtualServiceConfig>();
  for (const svc of services) {
    const id = serviceId(svc);
    const first = seen.get(id);
    if (first) {
      out.push({ ...at(svc.origin, file), message: `duplicate service ${serviceLabel(svc)} (first declared at ${where(first.origin)})` });
      continue;
    }
    seen.set(id, svc);
    const table = new IpvsTable({ schedulers: getScheduler });
    try {
      table.applyAll([{ op: 'add-service', service: serviceConfigOf(svc) }]);
    } catch (e) {
      out.push({ ...at(svc.origin, file), message: tableMessage(e) });
      continue;
    }
    const rsSeen = new Map<string, Origin | undefined>();
    for (const rs of svc.realServers) {
      const rid = destId(rs);
      if (rsSeen.has(rid)) {
        out.push({
          ...at(rs.origin, file),
          message: `${serviceLabel(svc)}: duplicate real server ${rid} (first declared at ${where(rsSeen.get(rid))})`,
        });
        continue;
      }
      rsSeen.set(rid, rs.origin);
      try {
        table.validate([{ op: 'add-server', service: svc, dest: destConfigOf(rs) }]);
      } catch (e) {
        out.push({ ...at(rs.origin ?? svc.origin, file), message: tableMessage(e) });
      }
    }
    if (svc.sorryServer) {
      const s = svc.sorryServer;
      try {
        new IpvsTable({ schedulers: getScheduler }).validate([
          { op: 'add-service', service: serviceConfigOf(svc) },
          {
            op: 'add-server',
            service: svc,
            dest: { af: svc.af, addr: s.addr, port: s.port, weight: 1, fwd: s.fwd, uThreshold: 0, lThreshold: 0 },
          },
        ]);
      } catch (e) {
        out.push({ ...at(svc.origin, file), message: `sorry_server: ${tableMessage(e)}` });
      }
    }
  }
  return out;
}

function tableMessage(e: unknown): string {
  return e instanceof TsvsError ? `${e.detail} (${e.message})` : (e as Error).message;
}
