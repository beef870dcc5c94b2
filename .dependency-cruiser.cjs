/**
 * The layering of src/, checked by `npm run lint` (dependency-cruiser). docs/architecture.md
 * draws the same picture. A folder may import only the folders listed for it; every folder
 * of src/ must appear here, so a new one has to say where it stands. bin/ is the
 * composition root and may import anything.
 */
const LAYERS = {
  // The pure model: services, real servers, connections, the scheduler interface, the schemas.
  core: [],
  // One file per scheduler, over core's Scheduler interface.
  schedulers: ['core'],
  // libc and netlink through koffi: sockets, the nlmsg writer, PROXY protocol.
  net: ['core'],
  // Checkers and the engine that turns their verdicts into table changes (through PoolControl).
  health: ['core', 'net'],
  // VRRP: packets, the state machine, the speaker, VIP handling.
  ha: ['core', 'net', 'health'],
  // Connection sync (IPVS sync protocol, conntrackd).
  sync: ['core', 'net', 'ha'],
  // The data planes: userspace proxy, nftables, DR/tunnel.
  dataplane: ['core', 'schedulers', 'net'],
  // ipvsadm's rule language: parser, services database, listing formats.
  ipvsadm: ['core', 'sync'],
  // What a real server needs for DR/TUN (the steps `tsvs realserver` and the lab run).
  realserver: ['core', 'net', 'dataplane'],
  // YAML, keepalived.conf and rules files, read into one model; reload diffs.
  config: ['core', 'schedulers', 'health', 'ha', 'sync', 'ipvsadm'],
  // The HTTP API: routes, client, metrics, status page. The director is a seam (api/director.ts).
  api: ['core', 'schedulers', 'health', 'ha', 'sync', 'dataplane', 'config', 'ipvsadm', 'version.ts'],
  // tsvsd: wires everything together.
  daemon: ['core', 'schedulers', 'net', 'health', 'ha', 'sync', 'dataplane', 'config', 'ipvsadm', 'api', 'version.ts'],
  // The demo's real servers.
  demo: ['core'],
  // `tsvs lab`: namespaces, nginx and tsvsd processes, driven through the API.
  lab: ['core', 'net', 'api', 'config', 'realserver', 'demo'],
  // tsvsadm and tsvs: clients of the API; they never reach the daemon, planes, health or HA directly.
  cli: ['core', 'api', 'config', 'ipvsadm', 'realserver', 'lab', 'demo', 'version.ts'],
  // The dashboard's static files (served by api/), no imports.
  dashboard: [],
  // The leaf module with the version string.
  'version.ts': [],
};

const esc = (s) => s.replace(/[.]/g, '\\.');
const pathOf = (k) => (k.endsWith('.ts') ? `^src/${esc(k)}$` : `^src/${k}/`);
const known = Object.keys(LAYERS).map(pathOf).join('|');

module.exports = {
  forbidden: [
    { name: 'no-circular', comment: 'No import cycles, between files or folders.', severity: 'error', from: {}, to: { circular: true } },
    {
      name: 'known-layer',
      comment: 'Every file in src/ sits in a folder listed in LAYERS (.dependency-cruiser.cjs).',
      severity: 'error',
      from: { path: '^src/', pathNot: known },
      to: {},
    },
    ...Object.entries(LAYERS).map(([layer, allowed]) => ({
      name: `layer-${layer}`,
      comment: `src/${layer} may import only: ${allowed.length ? allowed.join(', ') : 'itself'} (and npm packages).`,
      severity: 'error',
      from: { path: pathOf(layer) },
      to: { path: '^src/', pathNot: [pathOf(layer), ...allowed.map(pathOf)].join('|') },
    })),
    {
      name: 'no-test-code-in-src',
      comment: 'src/ never imports from test/ or bench/.',
      severity: 'error',
      from: { path: '^(src|bin)/' },
      to: { path: '^(test|bench)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)node_modules/|^dist/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
