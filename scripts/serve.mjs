#!/usr/bin/env node
// A tiny static file server for the demo (out/site): the right MIME types (application/wasm
// for streaming compilation, text/javascript for module workers), symlinks followed (the
// model pack is a link into ~/.cache/lmz), no caching headers, localhost only. Pages are
// cross-origin isolated (COOP same-origin + COEP require-corp: everything the demo loads is
// same-origin), which the package's threaded wasm-CPU engine needs (shared memory).
//
//   node scripts/serve.mjs DIR [PORT] [--no-isolation]   (PORT 0: any free port; the URL is printed)
//
// The e2e tests import `serve` to count the model downloads.
import { createServer } from 'node:http';
import { createReadStream, statSync } from 'node:fs';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.txt': 'text/plain; charset=utf-8',
  '.d.ts': 'text/plain; charset=utf-8',
};

/** The headers that make a page cross-origin isolated (`crossOriginIsolated`). */
export const ISOLATION = { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' };

/** Serves `root` on 127.0.0.1:`port`; resolves to { server, url, hits } where `hits` counts
 * GET requests per path. `isolate: false` leaves out the isolation headers (a page without
 * `SharedArrayBuffer`: the package then runs the single-threaded build). */
export function serve(root, port = 0, { isolate = true } = {}) {
  const base = resolve(root);
  const hits = new Map();
  const server = createServer((req, res) => {
    let path;
    try {
      path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    } catch {
      res.writeHead(400).end();
      return;
    }
    if (path.endsWith('/')) path += 'index.html';
    const file = normalize(join(base, path));
    if (file !== base && !file.startsWith(base + sep)) {
      res.writeHead(403).end();
      return;
    }
    let st;
    try {
      st = statSync(file);
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${path}\n`);
      return;
    }
    if (!st.isFile()) {
      res.writeHead(404).end();
      return;
    }
    if (req.method === 'GET') hits.set(path, (hits.get(path) ?? 0) + 1);
    res.writeHead(200, {
      'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
      'content-length': st.size,
      'cache-control': 'no-cache',
      ...(isolate ? ISOLATION : {}),
    });
    if (req.method === 'HEAD') res.end();
    else createReadStream(file).pipe(res);
  });
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(port, '127.0.0.1', () => ok({ server, url: `http://127.0.0.1:${server.address().port}/`, hits }));
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const isolate = !args.includes('--no-isolation');
  const [root = 'out/site', port = '8080'] = args.filter((a) => a !== '--no-isolation');
  const { url } = await serve(root, Number(port), { isolate });
  console.log(`lmz demo: ${url}  (serving ${resolve(root)}${isolate ? ', cross-origin isolated' : ''}; Ctrl-C stops)`);
}
