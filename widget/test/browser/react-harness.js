// Serving a React app built from TSX on the real server's origin, its sockets through a proxy.
import { join } from 'node:path';
import { build } from 'esbuild';
import { repo } from './harness.js';

/**
 * A React app (`contents`: TSX source) bundled with React's development build (strict mode runs
 * effects twice), its `roomcast` and `roomcast/react` imports resolved to this directory's sources.
 */
export async function bundleReactApp({ contents }) {
  const src = join(repo, 'widget/src');
  const r = await build({
    stdin: { contents, loader: 'tsx', resolveDir: join(repo, 'widget') },
    bundle: true,
    write: false,
    format: 'esm',
    jsx: 'automatic',
    define: { 'process.env.NODE_ENV': '"development"' },
    logLevel: 'warning',
    plugins: [
      {
        name: 'roomcast-from-source',
        setup(b) {
          b.onResolve({ filter: /^roomcast(\/react)?$/ }, (a) => ({ path: join(src, a.path === 'roomcast' ? 'sdk/index.ts' : 'react/index.ts') }));
        },
      },
    ],
  });
  return r.outputFiles[0].contents;
}

/**
 * A browser context whose pages get the app at `/app?…`, with its sockets through a proxy the
 * test can cut (`net.sockets[i].cut()`), refuse (`net.refuse`) and count frames on
 * (`net.sockets[i].sent`: the frames the page sent).
 */
export async function appContext(browser, server, bundle) {
  const ctx = await browser.newContext();
  await ctx.grantPermissions(['local-network-access'], { origin: server.base });
  await ctx.route(`${server.base}/app?*`, (r) => r.fulfill({ contentType: 'text/html', body: '<!doctype html><div id="root"></div><script type="module" src="/app.js"></script>' }));
  await ctx.route(`${server.base}/app.js`, (r) => r.fulfill({ contentType: 'text/javascript', body: Buffer.from(bundle) }));
  const net = { sockets: [], refuse: false };
  await ctx.routeWebSocket(/.*/, (ws) => {
    if (net.refuse) return ws.close({ code: 1006, reason: 'network down' });
    const upstream = ws.connectToServer();
    const socket = {
      sent: [],
      /** How many frames of `action` (for `room`) the page sent on this socket. */
      count: (action, room) => socket.sent.filter((f) => f.action === action && (!room || f.room === room)).length,
      cut: () => (upstream.close(), ws.close({ code: 1006, reason: 'network drop' })),
    };
    net.sockets.push(socket);
    ws.onMessage((m) => {
      socket.sent.push(JSON.parse(m));
      upstream.send(m);
    });
    upstream.onMessage((m) => ws.send(m));
    ws.onClose(() => upstream.close());
    upstream.onClose((code, reason) => ws.close({ code, reason }));
  });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error('[page error]', e));
  return { page, net };
}
