/**
 * REST routes over the table: services and their real servers, drain and restore. Each
 * one builds Op values and goes through Director.apply, so validation, error codes and
 * atomicity are exactly tsvsadm's.
 */
import type { Context, Hono, MiddlewareHandler } from 'hono';
import { TsvsError } from '../../core/errors.js';
import { canonicalAddr, formatAddrPort } from '../../core/addr.js';
import { destId } from '../../core/service.js';
import { checkServiceKey } from '../../core/validate.js';
import type { VirtualService, Dest } from '../../core/service.js';
import type { DestConfig, FwdMethod, Op, ServiceConfig } from '../../core/types.js';
import { drainKey, openConnections, serviceStatus, statusView, type ApiContext } from './view.js';
import { dataPlaneCounters } from '../health.js';
import { readJsonBody } from '../body.js';
import { clip, quote } from '../../core/quote.js';

/** Forwarding methods in the order a REST client gets one when it names none. */
const FWD_PREFERENCE: FwdMethod[] = ['masq', 'fullnat', 'route', 'tunnel'];

async function readJson(c: Context): Promise<Record<string, unknown>> {
  const body = await readJsonBody(c, {});
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    throw new TsvsError('BAD_REQUEST', 'request body must be a JSON object', 'Request body must be a JSON object');
  }
  return body as Record<string, unknown>;
}

function findService(ctx: ApiContext, id: string): VirtualService {
  const svc = ctx.director.table.list().find((s) => s.id === id);
  if (!svc)
    throw new TsvsError('NO_SERVICE', `service ${quote(id)}: no such service (ids look like tcp:10.0.0.1:80, udp:[2001:db8::1]:53, fwm:7)`);
  return svc;
}

function findServer(_ctx: ApiContext, svc: VirtualService, id: string): Dest {
  const rs = svc.dests.find((d) => d.id === id);
  if (!rs) throw new TsvsError('NO_DEST', `${svc.label}: no such real server ${clip(id)}`);
  return rs;
}

function defaultFwd(ctx: ApiContext): FwdMethod {
  return FWD_PREFERENCE.find((m) => ctx.director.dataplane.methods.has(m)) ?? 'route';
}

function svcOut(ctx: ApiContext, svc: VirtualService) {
  return serviceStatus(ctx, svc.view(), dataPlaneCounters(ctx.director.dataplane));
}

function serverOut(ctx: ApiContext, svc: VirtualService, rs: Dest) {
  return svcOut(ctx, svc).dests.find((d) => d.id === rs.id)!;
}

/** Fields of a body that may change a service; the key fields come from the URL. */
const KEY_FIELDS = ['af', 'protocol', 'addr', 'port', 'fwmark'];

function setWeight(ctx: ApiContext, svc: VirtualService, rs: Dest, weight: number): Promise<void> {
  return ctx.director.apply([{ op: 'edit-server', service: svc.key(), dest: { ...rs.config(), weight } }]);
}

export function serviceRoutes(app: Hono, ctx: ApiContext, mutating: MiddlewareHandler): void {
  const p = (c: Context, name: string) => c.req.param(name)!;

  app.get('/v1/status', (c) => c.json(statusView(ctx)));
  app.get('/v1/services', (c) => c.json(statusView(ctx).services));

  app.post('/v1/services', mutating, async (c) => {
    const body = await readJson(c);
    const service = body as unknown as ServiceConfig;
    await ctx.director.apply([{ op: 'add-service', service }]);
    // Validation accepted it, so its key is well formed; canonicalize it to find the service.
    const svc = ctx.director.table.get(checkServiceKey(service))!;
    return c.json(svcOut(ctx, svc), 201);
  });

  // Flush: removes every service, as ipvsadm -C.
  app.delete('/v1/services', mutating, async (c) => {
    await ctx.director.apply([{ op: 'flush' }]);
    ctx.drained.clear();
    return c.json({ ok: true });
  });

  app.get('/v1/services/:svc', (c) => c.json(svcOut(ctx, findService(ctx, p(c, 'svc')))));

  const editService = async (c: Context) => {
    const svc = findService(ctx, p(c, 'svc'));
    const body = await readJson(c);
    for (const f of KEY_FIELDS) {
      if (f in body && body[f] !== (svc.key() as unknown as Record<string, unknown>)[f]) {
        throw new TsvsError(
          'BAD_REQUEST',
          `${svc.label}: "${f}" is part of the service's key and cannot be changed; delete and add the service instead`,
        );
      }
    }
    await ctx.director.apply([{ op: 'edit-service', service: { ...svc.config(), ...body, ...svc.key() } as ServiceConfig }]);
    return c.json(svcOut(ctx, svc));
  };
  app.put('/v1/services/:svc', mutating, editService);
  app.patch('/v1/services/:svc', mutating, editService);

  app.delete('/v1/services/:svc', mutating, async (c) => {
    const svc = findService(ctx, p(c, 'svc'));
    await ctx.director.apply([{ op: 'delete-service', service: svc.key() }]);
    for (const k of [...ctx.drained.keys()]) if (k.startsWith(`${svc.id} `)) ctx.drained.delete(k);
    return c.json({ ok: true });
  });

  app.post('/v1/services/:svc/zero', mutating, async (c) => {
    const svc = findService(ctx, p(c, 'svc'));
    await ctx.director.apply([{ op: 'zero', service: svc.key() }]);
    return c.json(svcOut(ctx, svc));
  });

  app.get('/v1/services/:svc/servers', (c) => c.json(svcOut(ctx, findService(ctx, p(c, 'svc'))).dests));

  app.post('/v1/services/:svc/servers', mutating, async (c) => {
    const svc = findService(ctx, p(c, 'svc'));
    const body = await readJson(c);
    const dest = { fwd: defaultFwd(ctx), ...body } as unknown as DestConfig;
    await ctx.director.apply([{ op: 'add-server', service: svc.key(), dest }]);
    const rs = findServer(ctx, svc, destId({ af: 4, addr: canonicalAddr(String(dest.addr))!, port: dest.port }));
    return c.json(serverOut(ctx, svc, rs), 201);
  });

  app.get('/v1/services/:svc/servers/:rs', (c) => {
    const svc = findService(ctx, p(c, 'svc'));
    return c.json(serverOut(ctx, svc, findServer(ctx, svc, p(c, 'rs'))));
  });

  const editServer = async (c: Context) => {
    const svc = findService(ctx, p(c, 'svc'));
    const rs = findServer(ctx, svc, p(c, 'rs'));
    const body = await readJson(c);
    for (const f of ['af', 'addr', 'port']) {
      if (f in body && body[f] !== (rs.config() as unknown as Record<string, unknown>)[f]) {
        throw new TsvsError(
          'BAD_REQUEST',
          `${svc.label} real server ${rs.id}: "${f}" identifies the real server and cannot be changed; delete and add it instead`,
        );
      }
    }
    const dest = { ...rs.config(), ...body, af: rs.af, addr: rs.addr, port: rs.port } as DestConfig;
    await ctx.director.apply([{ op: 'edit-server', service: svc.key(), dest }]);
    // An explicit weight ends a drain.
    if ('weight' in body) ctx.drained.delete(drainKey(svc.id, rs.id));
    return c.json(serverOut(ctx, svc, rs));
  };
  app.put('/v1/services/:svc/servers/:rs', mutating, editServer);
  app.patch('/v1/services/:svc/servers/:rs', mutating, editServer);

  app.delete('/v1/services/:svc/servers/:rs', mutating, async (c) => {
    const svc = findService(ctx, p(c, 'svc'));
    const rs = findServer(ctx, svc, p(c, 'rs'));
    await ctx.director.apply([{ op: 'delete-server', service: svc.key(), dest: { af: rs.af, addr: rs.addr, port: rs.port } }]);
    ctx.drained.delete(drainKey(svc.id, rs.id));
    return c.json({ ok: true });
  });

  // Drain: weight 0 (no new connections; open ones continue), remembering the weight.
  app.post('/v1/services/:svc/servers/:rs/drain', mutating, async (c) => {
    const svc = findService(ctx, p(c, 'svc'));
    const rs = findServer(ctx, svc, p(c, 'rs'));
    const key = drainKey(svc.id, rs.id);
    const previous = ctx.drained.get(key) ?? rs.weight;
    if (rs.weight !== 0) await setWeight(ctx, svc, rs, 0);
    if (previous > 0) ctx.drained.set(key, previous);
    const out = serverOut(ctx, svc, rs);
    // The server's own entries (per-server index), not a walk over every connection.
    const conns = ctx.director.table
      .connViewOf(svc, rs)
      .filter(
        (x) => x.dport === rs.port && x.daddr === rs.addr && `${x.protocol.toLowerCase()}:${formatAddrPort(x.vaddr, x.vport)}` === svc.id,
      );
    return c.json({ ...out, previousWeight: previous, remaining: openConnections(conns) });
  });

  // Restore: the weight from before the drain, or the one given in the body.
  app.post('/v1/services/:svc/servers/:rs/restore', mutating, async (c) => {
    const svc = findService(ctx, p(c, 'svc'));
    const rs = findServer(ctx, svc, p(c, 'rs'));
    const body = await readJson(c);
    const key = drainKey(svc.id, rs.id);
    const weight = body.weight ?? ctx.drained.get(key) ?? (rs.weight > 0 ? rs.weight : 1);
    await ctx.director.apply([{ op: 'edit-server', service: svc.key(), dest: { ...rs.config(), weight } as DestConfig }]);
    ctx.drained.delete(key);
    return c.json(serverOut(ctx, svc, rs));
  });

  app.post('/v1/zero', mutating, async (c) => {
    await ctx.director.apply([{ op: 'zero' }]);
    return c.json({ ok: true });
  });

  app.get('/v1/timeouts', (c) => c.json(ctx.director.table.timeouts()));
  app.put('/v1/timeouts', mutating, async (c) => {
    const body = await readJson(c);
    const op: Op = { op: 'set-timeouts', timeouts: { ...ctx.director.table.timeouts(), ...body } as never };
    await ctx.director.apply([op]);
    return c.json(ctx.director.table.timeouts());
  });
}
