// The demo server: serves the repository (stories/, dist/) on localhost with HTTP Range support,
// which is what the URL byte source uses to read GGUF files without downloading them whole.
// Any path under /slow/ is the same file sent at about 64 KB/s (the loading story uses it to show
// the progress bar as a real download would; the 15 MB demo model takes minutes, so the story's
// loading state lasts while the other states are shown and tested).
import { createReadStream } from 'node:fs';
import { Transform } from 'node:stream';
import { stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const port = Number(process.env.PORT ?? 8000);
const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css', '.json': 'application/json', '.map': 'application/json', '.png': 'image/png', '.svg': 'image/svg+xml' };

const SLOW_BYTES_PER_SECOND = 64 * 2 ** 10;

/** Passes chunks on at about `rate` bytes per second. */
const throttle = (rate) =>
  new Transform({
    transform(chunk, _encoding, done) {
      setTimeout(() => done(null, chunk), (chunk.length / rate) * 1000);
    },
  });

export function startServer(listenPort = port) {
  const server = createServer(async (req, res) => {
    let path = normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname));
    const slow = path.startsWith('/slow/');
    if (slow) path = path.slice('/slow'.length);
    const send = (stream) => {
      res.on('close', () => stream.destroy());
      (slow ? stream.pipe(throttle(SLOW_BYTES_PER_SECOND)) : stream).pipe(res);
    };
    if (path === '/' || path === '/index.html') {
      res.writeHead(302, { Location: '/stories/' });
      return res.end();
    }
    let file = join(root, path);
    if (!file.startsWith(root) || path.includes('node_modules')) {
      res.writeHead(403);
      return res.end();
    }
    try {
      let info = await stat(file);
      if (info.isDirectory()) {
        file = join(file, 'index.html');
        info = await stat(file);
      }
      const headers = { 'Content-Type': types[extname(file)] ?? 'application/octet-stream', 'Accept-Ranges': 'bytes', 'Cache-Control': 'no-cache' };
      const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
      if (range) {
        const start = Number(range[1]);
        const end = range[2] ? Math.min(Number(range[2]), info.size - 1) : info.size - 1;
        if (start >= info.size || end < start) {
          res.writeHead(416, { 'Content-Range': `bytes */${info.size}` });
          return res.end();
        }
        res.writeHead(206, { ...headers, 'Content-Range': `bytes ${start}-${end}/${info.size}`, 'Content-Length': end - start + 1 });
        send(createReadStream(file, { start, end }));
      } else {
        res.writeHead(200, { ...headers, 'Content-Length': info.size });
        send(createReadStream(file));
      }
    } catch {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found');
    }
  });
  return new Promise((resolve) => server.listen(listenPort, '127.0.0.1', () => resolve(server)));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await startServer();
  console.log(`rullama demo: http://localhost:${port}/stories/  (Ctrl+C to stop)`);
}
