/**
 * The OpenAPI 3 document of the control API, served at /v1/openapi.json. test/api checks
 * that every route the app serves is described here and the other way round. The objects
 * the API takes (service, real server, timeouts, operations) are generated from their one
 * schema (core/schema.ts), so the document states the bounds the table enforces.
 */
import { z } from 'zod';
import { OpSchema, RealServerSchema, ServiceConfigSchema, ServiceKeySchema, TimeoutsSchema, TunnelSchema } from '../core/schema.js';
import { statusPagePaths } from './routes/status-page-openapi.js';

/** The component schemas generated from core/schema.ts, by component name. */
const generated: Record<string, unknown> = (() => {
  const reg = z.registry<{ id: string }>();
  reg.add(ServiceKeySchema, { id: 'ServiceKey' });
  reg.add(ServiceConfigSchema, { id: 'ServiceConfig' });
  reg.add(RealServerSchema, { id: 'ServerConfig' });
  reg.add(
    RealServerSchema.partial().meta({ description: 'Fields of a real server to change (ipvsadm -e); addr and port come from the URL' }),
    { id: 'ServerEdit' },
  );
  reg.add(TunnelSchema, { id: 'Tunnel' });
  reg.add(TimeoutsSchema, { id: 'Timeouts' });
  reg.add(TimeoutsSchema.partial().meta({ description: 'Timeouts to change (ipvsadm --set); the others keep their values' }), {
    id: 'TimeoutsEdit',
  });
  reg.add(OpSchema, { id: 'Op' });
  reg.add(
    z
      .object({ weight: RealServerSchema.shape.weight.unwrap().optional() })
      .meta({ description: 'The weight to restore; default: the one from before the drain' }),
    { id: 'Restore' },
  );
  const { schemas } = z.toJSONSchema(reg, { target: 'openapi-3.0', io: 'input', uri: (id) => `#/components/schemas/${id}` });
  // OpenAPI 3.0 has no $id; the component's name is its identity.
  for (const s of Object.values(schemas)) delete s.$id;
  return schemas;
})();

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: unknown) => ({ 'application/json': { schema } });
const ok = (description: string, schema: unknown) => ({ description, content: json(schema) });
const err = (description: string) => ({ description, content: json(ref('Error')) });

const svcParam = {
  name: 'service',
  in: 'path',
  required: true,
  description: 'Service id: tcp:ADDR:PORT, udp:ADDR:PORT, sctp:ADDR:PORT ([v6]:PORT for IPv6), fwm:MARK or fwm6:MARK. URL-encode it.',
  schema: { type: 'string', example: 'tcp:127.0.0.1:8080' },
};
const rsParam = {
  name: 'server',
  in: 'path',
  required: true,
  description: 'Real server id: ADDR:PORT ([v6]:PORT for IPv6).',
  schema: { type: 'string', example: '127.0.0.1:8081' },
};
const auth = [{ bearer: [] }];
const changeErrors = {
  '400': err('Bad payload (BAD_REQUEST, INVALID, OUT_OF_RANGE, SCHEDULER_NOT_FOUND, AF_NOT_SUPPORTED); the table is unchanged'),
  '401': err('Missing or wrong bearer token, or a read-only listener (UNAUTHORIZED)'),
  '404': err('No such service or real server (NO_SERVICE, SERVICE_NOT_DEFINED, NO_DEST)'),
  '409': err('Already exists (SERVICE_EXISTS, DEST_EXISTS)'),
  '422': err('The data plane cannot carry it (NOT_SUPPORTED, DATAPLANE)'),
};

const statsSchema = {
  type: 'object',
  properties: {
    conns: { type: 'integer' },
    inpkts: { type: 'integer' },
    outpkts: { type: 'integer' },
    inbytes: { type: 'integer' },
    outbytes: { type: 'integer' },
  },
};
const ratesSchema = {
  type: 'object',
  description: 'The kernel estimator (2 s, EWMA), as ipvsadm --rate shows it; bytes per second for the bps fields.',
  properties: {
    cps: { type: 'integer' },
    inpps: { type: 'integer' },
    outpps: { type: 'integer' },
    inbps: { type: 'integer' },
    outbps: { type: 'integer' },
  },
};

export function openApiDocument(): Record<string, unknown> {
  return {
    openapi: '3.0.3',
    info: {
      title: 'tsvsd control API',
      version: '1',
      description:
        'The API that tsvsadm, tsvs top, tsvs drain and the dashboard use. On the Unix control socket every call is allowed; on TCP (--api HOST:PORT) calls that change state need "Authorization: Bearer TOKEN". Errors are {"error": {"code", "message", "detail"}} with the HTTP status of the code.',
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: {
        Error: {
          type: 'object',
          properties: {
            error: {
              type: 'object',
              required: ['code', 'message', 'detail'],
              properties: {
                code: { type: 'string', example: 'SERVICE_EXISTS' },
                message: { type: 'string', description: 'What ipvsadm would print', example: 'Service already exists' },
                detail: { type: 'string', description: 'The same, naming the object', example: 'TCP 10.0.0.1:80: service already exists' },
              },
            },
          },
        },
        Stats: statsSchema,
        Rates: ratesSchema,
        ...generated,
        Health: {
          type: 'object',
          properties: {
            state: { type: 'string', enum: ['up', 'down', 'unchecked'] },
            checker: { type: 'string' },
            lastCheck: {
              type: 'object',
              properties: {
                at: { type: 'string', format: 'date-time' },
                ok: { type: 'boolean' },
                reason: { type: 'string' },
                latencyMs: { type: 'number' },
              },
            },
          },
        },
        Server: {
          allOf: [
            ref('ServerConfig'),
            {
              type: 'object',
              properties: {
                id: { type: 'string', example: '127.0.0.1:8081' },
                activeconns: { type: 'integer' },
                inactconns: { type: 'integer' },
                persistconns: { type: 'integer' },
                overloaded: { type: 'boolean' },
                stats: ref('Stats'),
                rates: ref('Rates'),
                health: ref('Health'),
                connectFailures: { type: 'integer', description: 'Connections the data plane could not open to it' },
                drainedFrom: { type: 'integer', description: 'Weight before a drain through the API, while drained' },
              },
            },
          ],
        },
        Service: {
          allOf: [
            ref('ServiceConfig'),
            {
              type: 'object',
              properties: {
                id: { type: 'string', example: 'tcp:127.0.0.1:8080' },
                label: { type: 'string', example: 'TCP 127.0.0.1:8080' },
                dests: { type: 'array', items: ref('Server') },
                removed: {
                  type: 'array',
                  description: 'Real servers that health checking took out of the table, with their health',
                  items: { type: 'object', properties: { id: { type: 'string' }, health: ref('Health') } },
                },
                stats: ref('Stats'),
                rates: ref('Rates'),
              },
            },
          ],
        },
        Status: {
          type: 'object',
          properties: {
            at: { type: 'string', format: 'date-time' },
            dataplane: { type: 'string' },
            services: { type: 'array', items: ref('Service') },
            stats: ref('Stats'),
            rates: ref('Rates'),
            timeouts: ref('Timeouts'),
            connections: { type: 'integer' },
            dataplaneCounters: {
              type: 'object',
              nullable: true,
              properties: {
                noDestination: { type: 'integer' },
                connectFailures: { type: 'object', additionalProperties: { type: 'integer' } },
              },
            },
            vrrp: ref('Vrrp'),
          },
        },
        Vrrp: {
          type: 'object',
          properties: {
            configured: { type: 'boolean' },
            state: { type: 'string', example: 'not configured' },
            instances: { type: 'array', items: { type: 'object' } },
          },
        },
        Connection: {
          type: 'object',
          description: 'One entry as ipvsadm -Lnc shows it',
          properties: {
            protocol: { type: 'string' },
            caddr: { type: 'string' },
            cport: { type: 'integer' },
            vaddr: { type: 'string' },
            vport: { type: 'integer' },
            daddr: { type: 'string' },
            dport: { type: 'integer' },
            state: { type: 'string' },
            expires: { type: 'integer' },
            template: { type: 'boolean' },
          },
        },
      },
    },
    paths: {
      '/v1/info': {
        get: {
          summary: 'Daemon name, version, pid, data plane, and whether changes are open, need a token, or are disabled',
          responses: { '200': ok('Info', { type: 'object' }) },
        },
      },
      '/v1/table': {
        get: {
          summary: 'The table as tsvsadm -L reads it; with Accept: application/x-ndjson (or ?format=ndjson) streamed service by service',
          parameters: [
            {
              name: 'format',
              in: 'query',
              schema: { type: 'string', enum: ['ndjson'] },
              description: 'Same as Accept: application/x-ndjson',
            },
          ],
          responses: {
            '200': {
              description:
                'Table. As NDJSON: a head line {version, size, timeouts, stats, rates, count}, then count lines of one service each (as in the JSON array), then {"end":true}; a listing without its end line was cut short',
              content: { ...json({ type: 'object' }), 'application/x-ndjson': { schema: { type: 'string' } } },
            },
          },
        },
      },
      '/v1/status': {
        get: {
          summary: 'Services, real servers, health, counters, rates, data plane errors and VRRP in one snapshot',
          responses: { '200': ok('Status', ref('Status')) },
        },
      },
      ...statusPagePaths,
      '/v1/connections': {
        get: {
          summary: 'The connection table, paged; the total (after filters) is in X-Total-Count; NDJSON as /v1/table on request',
          parameters: [
            {
              name: 'format',
              in: 'query',
              schema: { type: 'string', enum: ['ndjson'] },
              description: 'Same as Accept: application/x-ndjson: {count}, one connection per line, {"end":true}',
            },
            { name: 'offset', in: 'query', schema: { type: 'integer', minimum: 0, default: 0 } },
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 0 }, description: 'Default: all' },
            { name: 'service', in: 'query', schema: { type: 'string' }, description: 'Only this service id' },
            { name: 'server', in: 'query', schema: { type: 'string' }, description: 'Only this real server ADDR:PORT' },
          ],
          responses: {
            '200': {
              ...ok('Connections', { type: 'array', items: ref('Connection') }),
              headers: { 'X-Total-Count': { schema: { type: 'integer' } } },
            },
            '400': err('Bad offset or limit'),
          },
        },
      },
      '/v1/sync': {
        get: {
          summary: 'Connection sync daemons with their counters (ipvsadm --list --daemon)',
          responses: { '200': ok('Sync daemons', { type: 'array' }) },
        },
        post: {
          summary: 'Start a sync daemon (ipvsadm --start-daemon): {state, mcastIfn, syncid, maxlen?, group?, port?, ttl?}',
          security: auth,
          requestBody: {
            required: true,
            content: json({
              type: 'object',
              required: ['state'],
              properties: {
                state: { type: 'string', enum: ['master', 'backup'] },
                mcastIfn: { type: 'string' },
                syncid: { type: 'integer' },
                maxlen: { type: 'integer' },
                group: { type: 'string' },
                port: { type: 'integer' },
                ttl: { type: 'integer' },
              },
            }),
          },
          responses: { '201': ok('Started', { type: 'object' }), ...changeErrors },
        },
      },
      '/v1/sync/{state}': {
        delete: {
          summary: 'Stop the master or backup sync daemon (ipvsadm --stop-daemon)',
          security: auth,
          responses: { '200': ok('Stopped', { type: 'object' }), ...changeErrors },
        },
      },
      '/v1/ops': {
        post: {
          summary:
            'Apply a batch of tsvsadm operations atomically (body up to 64 MiB); a refusal may carry error.index, the refused operation',
          security: auth,
          requestBody: { required: true, content: json({ type: 'object', properties: { ops: { type: 'array', items: ref('Op') } } }) },
          responses: {
            '200': ok('Applied', { type: 'object' }),
            ...changeErrors,
            '413': err('Body over the limit (TOO_LARGE); nothing was applied'),
          },
        },
      },
      '/v1/services': {
        get: {
          summary: 'Every virtual service with its real servers',
          responses: { '200': ok('Services', { type: 'array', items: ref('Service') }) },
        },
        post: {
          summary: 'Add a virtual service (ipvsadm -A)',
          security: auth,
          requestBody: { required: true, content: json(ref('ServiceConfig')) },
          responses: { '201': ok('Added', ref('Service')), ...changeErrors },
        },
        delete: {
          summary: 'Remove every service (ipvsadm -C)',
          security: auth,
          responses: { '200': ok('Flushed', { type: 'object' }), '401': changeErrors['401'] },
        },
      },
      '/v1/services/{service}': {
        parameters: [svcParam],
        get: { summary: 'One virtual service', responses: { '200': ok('Service', ref('Service')), '404': changeErrors['404'] } },
        put: {
          summary: 'Edit a service (ipvsadm -E); fields given replace the current ones',
          security: auth,
          requestBody: { content: json(ref('ServiceConfig')) },
          responses: { '200': ok('Edited', ref('Service')), ...changeErrors },
        },
        patch: {
          summary: 'Same as PUT',
          security: auth,
          requestBody: { content: json(ref('ServiceConfig')) },
          responses: { '200': ok('Edited', ref('Service')), ...changeErrors },
        },
        delete: {
          summary: 'Delete a service (ipvsadm -D)',
          security: auth,
          responses: { '200': ok('Deleted', { type: 'object' }), ...changeErrors },
        },
      },
      '/v1/services/{service}/zero': {
        parameters: [svcParam],
        post: {
          summary: "Zero a service's counters (ipvsadm -Z -t ...)",
          security: auth,
          responses: { '200': ok('Zeroed', ref('Service')), ...changeErrors },
        },
      },
      '/v1/services/{service}/servers': {
        parameters: [svcParam],
        get: {
          summary: "A service's real servers",
          responses: { '200': ok('Servers', { type: 'array', items: ref('Server') }), '404': changeErrors['404'] },
        },
        post: {
          summary: 'Add a real server (ipvsadm -a)',
          security: auth,
          requestBody: { required: true, content: json(ref('ServerConfig')) },
          responses: { '201': ok('Added', ref('Server')), ...changeErrors },
        },
      },
      '/v1/services/{service}/servers/{server}': {
        parameters: [svcParam, rsParam],
        get: { summary: 'One real server', responses: { '200': ok('Server', ref('Server')), '404': changeErrors['404'] } },
        put: {
          summary: 'Edit a real server (ipvsadm -e); fields given replace the current ones',
          security: auth,
          requestBody: { content: json(ref('ServerEdit')) },
          responses: { '200': ok('Edited', ref('Server')), ...changeErrors },
        },
        patch: {
          summary: 'Same as PUT',
          security: auth,
          requestBody: { content: json(ref('ServerEdit')) },
          responses: { '200': ok('Edited', ref('Server')), ...changeErrors },
        },
        delete: {
          summary: 'Delete a real server (ipvsadm -d)',
          security: auth,
          responses: { '200': ok('Deleted', { type: 'object' }), ...changeErrors },
        },
      },
      '/v1/services/{service}/servers/{server}/drain': {
        parameters: [svcParam, rsParam],
        post: {
          summary:
            'Drain: weight 0 (open connections continue, no new ones); remembers the weight for restore. `remaining` counts its connections not yet finished (TIME_WAIT excluded); poll GET /v1/connections?service=&server= to follow them.',
          security: auth,
          responses: {
            '200': ok('Draining', {
              allOf: [
                ref('Server'),
                { type: 'object', properties: { previousWeight: { type: 'integer' }, remaining: { type: 'integer' } } },
              ],
            }),
            ...changeErrors,
          },
        },
      },
      '/v1/services/{service}/servers/{server}/restore': {
        parameters: [svcParam, rsParam],
        post: {
          summary: 'Restore the weight from before the drain (or the one given)',
          security: auth,
          requestBody: { content: json(ref('Restore')) },
          responses: { '200': ok('Restored', ref('Server')), ...changeErrors },
        },
      },
      '/v1/zero': {
        post: {
          summary: 'Zero every counter (ipvsadm -Z)',
          security: auth,
          responses: { '200': ok('Zeroed', { type: 'object' }), '401': changeErrors['401'] },
        },
      },
      '/v1/timeouts': {
        get: { summary: 'Connection timeouts (ipvsadm -L --timeout)', responses: { '200': ok('Timeouts', ref('Timeouts')) } },
        put: {
          summary: 'Set timeouts (ipvsadm --set); fields given replace the current ones',
          security: auth,
          requestBody: { content: json(ref('TimeoutsEdit')) },
          responses: { '200': ok('Timeouts', ref('Timeouts')), ...changeErrors },
        },
      },
      '/v1/stats': {
        get: {
          summary: 'Counters and rates: totals, per service and per real server',
          responses: { '200': ok('Stats', { type: 'object' }) },
        },
      },
      '/v1/history': {
        get: {
          summary:
            'Counter samples of the last two minutes, one per second, oldest first (sampling starts with the first call): totals, per service and per real server. The dashboard draws its charts from them at once.',
          responses: {
            '200': ok('Samples', {
              type: 'array',
              items: {
                type: 'object',
                properties: {
                  at: { type: 'string', format: 'date-time' },
                  stats: ref('Stats'),
                  services: {
                    type: 'object',
                    additionalProperties: {
                      type: 'object',
                      properties: { stats: ref('Stats'), dests: { type: 'object', additionalProperties: ref('Stats') } },
                    },
                  },
                },
              },
            }),
          },
        },
      },
      '/v1/health': {
        get: {
          summary: 'Health of every real server with its last check',
          responses: { '200': ok('Health', { type: 'array', items: ref('Health') }) },
        },
      },
      '/v1/vrrp': { get: { summary: 'VRRP state ("not configured" when there is none)', responses: { '200': ok('VRRP', ref('Vrrp')) } } },
      '/v1/reload': {
        post: {
          summary: 'Re-read the configuration file and apply the difference (as SIGHUP does); a file with errors changes nothing',
          security: auth,
          responses: {
            '200': ok('Applied', {
              type: 'object',
              properties: { ok: { type: 'boolean' }, changes: { type: 'array', items: { type: 'string' } } },
            }),
            '401': changeErrors['401'],
            '422': err('The configuration was refused (RELOAD_REFUSED); the running table is unchanged'),
            '501': err('This daemon has no reload (NOT_IMPLEMENTED)'),
          },
        },
      },
      '/v1/events': {
        get: {
          summary: 'Server-sent events: a "status" event (a Status as JSON) at once and every second',
          responses: { '200': { description: 'text/event-stream', content: { 'text/event-stream': { schema: { type: 'string' } } } } },
        },
      },
      '/v1/openapi.json': { get: { summary: 'This document', responses: { '200': ok('OpenAPI 3', { type: 'object' }) } } },
      '/metrics': {
        get: {
          summary: "Prometheus metrics: node_exporter's node_ipvs_* plus tsvs_*",
          responses: { '200': { description: 'Prometheus text format 0.0.4', content: { 'text/plain': { schema: { type: 'string' } } } } },
        },
      },
      '/dashboard': {
        get: {
          summary: 'The live dashboard (also at /)',
          responses: { '200': { description: 'HTML', content: { 'text/html': { schema: { type: 'string' } } } } },
        },
      },
    },
  };
}
