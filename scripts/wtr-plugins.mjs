// Test-server plugins: .wgsl files as string modules (as rollup builds them), and folders served
// with HTTP Range support (../shared for the real vocabulary, test-output/ for generated fixtures).
import { createReadStream, statSync } from 'node:fs';
import { join, normalize } from 'node:path';

export function wgslPlugin() {
  return {
    name: 'wgsl',
    resolveMimeType(context) {
      if (context.path.endsWith('.wgsl')) return 'js';
    },
    transform(context) {
      if (context.path.endsWith('.wgsl')) return { body: `export default ${JSON.stringify(context.body)};` };
    },
  };
}

/** Middleware serving files under `root` at `prefix` (e.g. '/shared/'), honouring Range requests (the URL byte source needs them). */
export function rangeFolderMiddleware(prefix, root) {
  return async (ctx, next) => {
    if (!ctx.path.startsWith(prefix)) return next();
    const rel = normalize(decodeURIComponent(ctx.path.slice(prefix.length)));
    if (rel.startsWith('..')) return next();
    const file = join(root, rel);
    let size;
    try {
      size = statSync(file).size;
    } catch {
      ctx.status = 404;
      return;
    }
    ctx.set('Accept-Ranges', 'bytes');
    const range = /^bytes=(\d+)-(\d*)$/.exec(ctx.get('Range') ?? '');
    if (range) {
      const start = Number(range[1]);
      const end = range[2] ? Math.min(Number(range[2]), size - 1) : size - 1;
      if (start >= size || end < start) {
        ctx.status = 416;
        ctx.set('Content-Range', `bytes */${size}`);
        return;
      }
      ctx.status = 206;
      ctx.set('Content-Range', `bytes ${start}-${end}/${size}`);
      ctx.length = end - start + 1;
      ctx.body = createReadStream(file, { start, end });
    } else {
      ctx.status = 200;
      ctx.length = size;
      ctx.body = createReadStream(file);
    }
    ctx.type = 'application/octet-stream';
  };
}
