/**
 * A small real server for the demo: an HTTP server that serves one shared document root
 * (the stand-in for the NFS/NAS storage an LVS cluster's real servers share) and names
 * itself in an `X-Real-Server` header and, through a server-side include, in the page.
 */
import { promises as fsp } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { extname, join, normalize, sep } from 'node:path';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.json': 'application/json',
};

/** The include that a page writes where the serving host's name goes (as SSI's `echo var`). */
export const SERVER_NAME_INCLUDE = '<!--#echo var="SERVER_NAME" -->';

export interface DemoServer {
  name: string;
  host: string;
  port: number;
  server: Server;
  close(): Promise<void>;
}

export async function startDemoServer(opts: { name: string; docroot: string; host: string; port: number }): Promise<DemoServer> {
  const root = normalize(opts.docroot);
  const server = createServer((req, res) => {
    void (async () => {
      res.setHeader('X-Real-Server', opts.name);
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname === '/name') {
        res.setHeader('content-type', 'text/plain; charset=utf-8');
        res.end(`${opts.name}\n`);
        return;
      }
      let path = normalize(join(root, decodeURIComponent(url.pathname)));
      if (path !== root && !path.startsWith(root + sep)) {
        res.statusCode = 403;
        res.end('forbidden\n');
        return;
      }
      try {
        if ((await fsp.stat(path)).isDirectory()) path = join(path, 'index.html');
        let body: Buffer | string = await fsp.readFile(path);
        const type = TYPES[extname(path)] ?? 'application/octet-stream';
        if (type.startsWith('text/html')) body = body.toString('utf8').replaceAll(SERVER_NAME_INCLUDE, opts.name);
        res.setHeader('content-type', type);
        res.end(body);
      } catch {
        res.statusCode = 404;
        res.end('not found\n');
      }
    })();
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const addr = server.address();
  const port = addr && typeof addr === 'object' ? addr.port : opts.port;
  return {
    name: opts.name,
    host: opts.host,
    port,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Writes the demo's shared content: the same pages for every real server. */
export async function writeSharedContent(dir: string): Promise<void> {
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(
    join(dir, 'index.html'),
    `<!doctype html>
<html><head><meta charset="utf-8"><title>tsvs demo</title></head>
<body>
<h1>Hello from the tsvs demo cluster</h1>
<p>This page lives on shared storage; every real server serves the same file.</p>
<p>This copy was served by <b>${SERVER_NAME_INCLUDE}</b>.</p>
</body></html>
`,
  );
  await fsp.writeFile(join(dir, 'hello.txt'), 'the same bytes from every real server\n');
}
