// Test-server middleware for download tests: a file server with HTTP Range support whose connections
// can be made to drop or stall part-way, and which counts every byte it sends, so that browser tests
// can prove that a download resumed instead of starting over, and that a cache hit sent nothing.
//
// Under `prefix` (e.g. '/flaky/'):
//   <name>                 a file: `gen-<size>-<seed>[-anything].<ext>` is generated (deterministic
//                          bytes, see genBytes below); any other name is read from `root`.
//   __control?name=N&…     sets the behaviour for file N (replacing the previous rules):
//                            dropAfter=B   destroy the socket after B body bytes of a response,
//                            drops=K       … for the next K responses longer than B only (default: all),
//                            dropDelay=MS  wait this long between the last byte and the cut (default 100),
//                            stallAfter=B  send B body bytes, then send nothing more (client must abort),
//                            noRanges=1    ignore Range headers (always 200 with the whole file),
//                            version=V     change the content and the ETag (a new upload),
//                            status=S      answer every request with this status (e.g. 503).
//   __stats?name=N         {requests, bytes, drops, ranges: ['0-0', '1048576-', …], statuses: [...]}.
//   __reset?name=N         clears the rules and the statistics of N.
//
// Responses bypass koa (ctx.respond = false) so that bytes can be counted as they are handed to the
// socket and the socket can be destroyed mid-body; they carry `Cache-Control: no-store`.
import { createReadStream, statSync } from 'node:fs';
import { join, normalize } from 'node:path';

const CHUNK = 64 * 1024;

/**
 * Word i of generated file (seed, version) is a 32-bit hash of i, stored little-endian; the same
 * function lives in test/browser/model-cache.test.ts to compute the expected bytes.
 */
export function genBytes(seed, version, start, end) {
  const out = Buffer.alloc(end - start);
  const mix = Math.imul(seed, 0x9e3779b1) ^ Math.imul(version + 1, 0x85ebca6b);
  for (let p = start - (start % 4); p < end; p += 4) {
    let x = (p / 4 + mix) | 0;
    x = Math.imul(x ^ (x >>> 16), 0x7feb352d);
    x = Math.imul(x ^ (x >>> 15), 0x846ca68b);
    x ^= x >>> 16;
    for (let k = 0; k < 4; k++) {
      const q = p + k;
      if (q >= start && q < end) out[q - start] = (x >>> (8 * k)) & 0xff;
    }
  }
  return out;
}

function json(res, status, body) {
  res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
  res.end(JSON.stringify(body));
}

/** Middleware serving flaky files at `prefix` from `root` (and generated files); see the comment above. */
export function flakyRangeMiddleware(prefix, root) {
  const rules = new Map();
  const stats = new Map();
  const statsOf = (name) => {
    let s = stats.get(name);
    if (!s) stats.set(name, (s = { requests: 0, bytes: 0, drops: 0, ranges: [], statuses: [] }));
    return s;
  };

  return async (ctx, next) => {
    if (!ctx.path.startsWith(prefix)) return next();
    const name = normalize(decodeURIComponent(ctx.path.slice(prefix.length)));
    if (name.startsWith('..')) return next();
    const res = ctx.res;

    if (name === '__control' || name === '__stats' || name === '__reset') {
      ctx.respond = false;
      const target = ctx.query.name;
      if (typeof target !== 'string') return json(res, 400, { error: 'name= is required' });
      if (name === '__stats') return json(res, 200, statsOf(target));
      if (name === '__reset') {
        rules.delete(target);
        stats.delete(target);
        return json(res, 200, {});
      }
      const q = ctx.query;
      const num = (v) => (typeof v === 'string' && v !== '' ? Number(v) : undefined);
      rules.set(target, {
        dropAfter: num(q.dropAfter),
        drops: num(q.drops) ?? Infinity,
        dropDelay: num(q.dropDelay) ?? 100,
        stallAfter: num(q.stallAfter),
        noRanges: q.noRanges === '1',
        version: num(q.version) ?? 0,
        status: num(q.status),
      });
      return json(res, 200, rules.get(target));
    }

    const rule = rules.get(name) ?? { drops: 0, noRanges: false, version: 0 };
    const gen = /^gen-(\d+)-(\d+)(?:-[^/]*)?\.[a-z0-9]+$/.exec(name);
    let size;
    let read = null;
    let path = null;
    let etag;
    const lastModified = new Date(Date.UTC(2025, 0, 1 + rule.version)).toUTCString();
    if (gen) {
      size = Number(gen[1]);
      const seed = Number(gen[2]);
      read = (start, end) => genBytes(seed, rule.version, start, end);
      etag = `"gen-${size}-${seed}-v${rule.version}"`;
    } else {
      const file = join(root, name);
      try {
        size = statSync(file).size;
      } catch {
        return next();
      }
      path = file;
      etag = `"file-${size}-v${rule.version}"`;
    }

    ctx.respond = false;
    const s = statsOf(name);
    s.requests++;
    const range = rule.noRanges ? null : /^bytes=(\d+)-(\d*)$/.exec(ctx.get('Range') ?? '');
    s.ranges.push(range ? `${range[1]}-${range[2]}` : 'none');
    const headers = {
      'Content-Type': 'application/octet-stream',
      'Cache-Control': 'no-store',
      ETag: etag,
      'Last-Modified': lastModified,
    };
    if (!rule.noRanges) headers['Accept-Ranges'] = 'bytes';
    if (rule.status !== undefined) {
      s.statuses.push(rule.status);
      res.writeHead(rule.status, { 'Cache-Control': 'no-store' });
      return res.end();
    }
    let start = 0;
    let end = size - 1;
    let status = 200;
    if (range) {
      start = Number(range[1]);
      end = range[2] ? Math.min(Number(range[2]), size - 1) : size - 1;
      if (start >= size || end < start) {
        s.statuses.push(416);
        res.writeHead(416, { ...headers, 'Content-Range': `bytes */${size}` });
        return res.end();
      }
      status = 206;
      headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
    }
    headers['Content-Length'] = String(end - start + 1);
    s.statuses.push(status);
    res.writeHead(status, headers);
    if (ctx.method === 'HEAD') return res.end();

    // The body, chunk by chunk with back-pressure, counting what reaches the socket.
    // A rule counts only responses it actually cuts short (not the 1-byte probe of a download).
    const drop = rule.dropAfter !== undefined && rule.drops > 0 && rule.dropAfter < end - start + 1;
    if (drop) rule.drops--;
    const dropAt = drop ? start + rule.dropAfter : Infinity;
    const stallAt = rule.stallAfter !== undefined ? start + rule.stallAfter : Infinity;
    const limit = Math.min(end + 1, dropAt, stallAt);
    const socket = ctx.req.socket;
    const closed = new Promise((resolve) => res.on('close', () => resolve('closed')));
    const stream = path && limit > start ? createReadStream(path, { start, end: limit - 1 }) : null;
    const chunks = stream ? stream[Symbol.asyncIterator]() : null;
    let pos = start;
    try {
      while (pos < limit) {
        let chunk;
        if (chunks) {
          const { value, done } = await chunks.next();
          if (done) break;
          chunk = value;
        } else {
          chunk = read(pos, Math.min(limit, pos + CHUNK));
        }
        const written = new Promise((resolve) => res.write(chunk, (error) => resolve(error ? 'closed' : 'ok')));
        if ((await Promise.race([written, closed])) === 'closed') return;
        pos += chunk.length;
        s.bytes += chunk.length;
      }
    } catch {
      return; // the client went away
    } finally {
      stream?.destroy();
    }
    if (pos === end + 1) return res.end();
    if (dropAt <= stallAt) {
      // Let the client take in what was sent (Chromium errors a body stream as soon as it sees the
      // connection close, dropping bytes it had not handed to the page yet), then cut.
      await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, rule.dropDelay))]);
      s.drops++;
      socket.destroy();
      return;
    }
    await closed; // stall: keep the connection open and silent until the client gives up
  };
}
