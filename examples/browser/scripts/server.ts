/**
 * A tiny static file server for the browser example. It sends the COOP/COEP headers that make
 * the page cross-origin isolated (so the wasm backend can use threads), serves the page from
 * `public/`, the bundle from `dist/` and the tfjs wasm binaries under `/wasm/`, and nothing
 * outside those folders.
 */
import * as fs from 'fs';
import * as http from 'http';
import * as path from 'path';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.bin': 'application/octet-stream',
  '.wasm': 'application/wasm',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.map': 'application/json',
};

/** Where each URL prefix is served from. Later entries are tried only if earlier ones miss. */
export interface ServerOptions {
  /** Port to listen on; 0 picks a free one. Default 8080. */
  port?: number;
  /** Host to bind. Default '127.0.0.1' (local only). */
  host?: string;
  /** The example's folder (the one holding public/ and dist/). Default: this script's parent. */
  root?: string;
}

/** A running server: its URL and a close function. */
export interface RunningServer {
  url: string;
  close(): Promise<void>;
}

/**
 * Starts the static server.
 *
 * @example
 * ```ts
 * const server = await startServer({port: 0});
 * console.log(server.url); // http://127.0.0.1:41234/
 * await server.close();
 * ```
 */
export function startServer(options: ServerOptions = {}): Promise<RunningServer> {
  const root = options.root ?? path.resolve(__dirname, '..');
  const wasmDir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'));
  const mounts: Array<[string, string]> = [
    ['/wasm/', path.join(wasmDir, 'dist')],
    ['/', path.join(root, 'dist')],
    ['/', path.join(root, 'public')],
  ];
  const server = http.createServer((req, res) => {
    const headers = {
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Embedder-Policy': 'require-corp',
      'Cross-Origin-Resource-Policy': 'same-origin',
      'Cache-Control': 'no-store',
    };
    let pathname: string;
    try {
      pathname = decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname);
    } catch {
      res.writeHead(400, headers).end('bad request');
      return;
    }
    if (pathname.endsWith('/')) pathname += 'index.html';
    for (const [prefix, dir] of mounts) {
      if (!pathname.startsWith(prefix)) continue;
      const file = path.resolve(dir, `.${pathname.slice(prefix.length - 1)}`);
      if (!file.startsWith(dir + path.sep)) continue; // no escaping the mount
      let stat: fs.Stats;
      try {
        stat = fs.statSync(file);
      } catch {
        continue;
      }
      if (!stat.isFile()) continue;
      res.writeHead(200, {
        ...headers,
        'Content-Type': TYPES[path.extname(file)] ?? 'application/octet-stream',
        'Content-Length': stat.size,
      });
      fs.createReadStream(file).pipe(res);
      return;
    }
    res.writeHead(404, {...headers, 'Content-Type': 'text/plain'}).end(`not found: ${pathname}`);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 8080, options.host ?? '127.0.0.1', () => {
      const addr = server.address();
      const port = typeof addr === 'object' && addr ? addr.port : options.port;
      resolve({
        url: `http://${options.host ?? '127.0.0.1'}:${port}/`,
        close: () => new Promise<void>((r) => {
          server.closeAllConnections();
          server.close(() => r());
        }),
      });
    });
  });
}
