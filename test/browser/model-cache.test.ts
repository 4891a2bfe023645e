// The OPFS model cache against a real server (scripts/wtr-flaky.mjs at /flaky/) that can drop or
// stall its connections and counts the bytes it sends: full download + verification, cache hits
// that send nothing, resumes after dropped connections, cancellation and "reloads", a file that
// changed on the server, integrity failures, the quota check, 404s, and the same in a worker.
import { expect } from '@open-wc/testing';
import { RullamaError } from '../../src/core/errors.js';
import { cachedModel, deleteCachedModel, listCachedModels, type CachedModelProgress } from '../../src/web/index.js';

const MiB = 1 << 20;
const run = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;

interface Stats {
  requests: number;
  bytes: number;
  drops: number;
  ranges: string[];
  statuses: number[];
}

/** The bytes of the server's generated file gen-<size>-<seed>-….bin (same function as genBytes in scripts/wtr-flaky.mjs). */
function genBytes(seed: number, version: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  const mix = Math.imul(seed, 0x9e3779b1) ^ Math.imul(version + 1, 0x85ebca6b);
  for (let p = 0; p < size; p += 4) {
    let x = (p / 4 + mix) | 0;
    x = Math.imul(x ^ (x >>> 16), 0x7feb352d);
    x = Math.imul(x ^ (x >>> 15), 0x846ca68b);
    x ^= x >>> 16;
    for (let k = 0; k < 4 && p + k < size; k++) out[p + k] = (x >>> (8 * k)) & 0xff;
  }
  return out;
}

async function subtleHex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** A generated test file: its name on the server, URL, bytes and digest. */
async function testFile(seed: number, size: number, version = 0) {
  const name = `gen-${size}-${seed}-${run}.bin`;
  const bytes = genBytes(seed, version, size);
  return { name, url: new URL(`/flaky/${name}`, location.href).href, bytes, sha256: await subtleHex(bytes) };
}

async function control(name: string, rules: Record<string, number | string> = {}): Promise<void> {
  const q = new URLSearchParams({ name, ...Object.fromEntries(Object.entries(rules).map(([k, v]) => [k, String(v)])) });
  expect((await fetch(`/flaky/__control?${q}`)).ok).to.equal(true);
}

async function stats(name: string): Promise<Stats> {
  return (await fetch(`/flaky/__stats?name=${encodeURIComponent(name)}`, { cache: 'no-store' })).json();
}

async function expectError(promise: Promise<unknown>, code: string, pattern?: RegExp): Promise<RullamaError> {
  try {
    await promise;
  } catch (e) {
    expect(e).to.be.instanceOf(RullamaError);
    expect((e as RullamaError).code, (e as Error).message).to.equal(code);
    if (pattern) expect((e as Error).message).to.match(pattern);
    return e as RullamaError;
  }
  throw new Error(`expected RullamaError('${code}')`);
}

async function expectBytes(file: File, bytes: Uint8Array): Promise<void> {
  expect(file.size).to.equal(bytes.byteLength);
  const got = new Uint8Array(await file.arrayBuffer());
  let firstDiff = -1;
  for (let i = 0; i < got.length && firstDiff < 0; i++) if (got[i] !== bytes[i]) firstDiff = i;
  expect(firstDiff, 'first differing byte').to.equal(-1);
}

/** The distinct phases in order (consecutive repeats folded). */
function phases(events: CachedModelProgress[]): string[] {
  return events.map((e) => e.phase).filter((p, i, a) => i === 0 || a[i - 1] !== p);
}

async function entry(url: string) {
  return (await listCachedModels()).find((m) => m.url === url);
}

describe('OPFS model cache: resumable, verified downloads (Chromium)', () => {
  after(async () => {
    for (const m of await listCachedModels()) if (m.url.includes(run)) await deleteCachedModel(m.url);
  });

  it('downloads and verifies a file with progress; the second call is a cache hit that sends nothing', async () => {
    const f = await testFile(1, 3 * MiB + 5);
    const events: CachedModelProgress[] = [];
    const file = await cachedModel(f.url, { sha256: f.sha256, partSize: MiB, onProgress: (p) => events.push(p) });
    await expectBytes(file, f.bytes);
    expect(file.name).to.equal(f.name);
    expect(phases(events)).to.deep.equal(['check', 'download', 'verify', 'cached']);
    const downloads = events.filter((e) => e.phase === 'download');
    expect(downloads.at(-1)).to.include({ loaded: f.bytes.byteLength, total: f.bytes.byteLength });
    expect(downloads.map((e) => e.loaded)).to.deep.equal(downloads.map((e) => e.loaded).sort((a, b) => a - b));
    expect(events.filter((e) => e.phase === 'verify').at(-1)).to.include({ loaded: f.bytes.byteLength });
    const first = await stats(f.name);
    expect(first.ranges).to.deep.equal(['0-0', '0-']);
    expect(first.bytes).to.equal(f.bytes.byteLength + 1);
    expect(await entry(f.url)).to.deep.equal({ url: f.url, size: f.bytes.byteLength, downloaded: f.bytes.byteLength, complete: true, sha256: f.sha256 });

    const hit: CachedModelProgress[] = [];
    const again = await cachedModel(f.url, { sha256: f.sha256, onProgress: (p) => hit.push(p) });
    expect(hit).to.deep.equal([{ phase: 'cached', loaded: f.bytes.byteLength, total: f.bytes.byteLength }]);
    await expectBytes(again, f.bytes);
    // Without a digest too; and a relative URL with a #fragment is the same entry.
    await cachedModel(`/flaky/${f.name}#x`);
    expect(await stats(f.name)).to.deep.equal(first);

    await deleteCachedModel(f.url);
    expect(await entry(f.url)).to.equal(undefined);
  });

  it('two calls at once for one URL download it once', async () => {
    const f = await testFile(11, MiB + 11);
    const [a, b] = await Promise.all([cachedModel(f.url, { sha256: f.sha256 }), cachedModel(f.url)]);
    await expectBytes(a, f.bytes);
    await expectBytes(b, f.bytes);
    expect((await stats(f.name)).ranges).to.deep.equal(['0-0', '0-']);
  });

  it('resumes within the call after dropped connections, without downloading again from zero', async () => {
    const f = await testFile(2, 3 * MiB + 12345);
    const cut = 700_000;
    await control(f.name, { dropAfter: cut, drops: 3 });
    const events: CachedModelProgress[] = [];
    const file = await cachedModel(f.url, { sha256: f.sha256, partSize: MiB, onProgress: (p) => events.push(p) });
    await expectBytes(file, f.bytes);
    expect(phases(events)).to.deep.equal(['check', 'download', 'verify', 'cached']);
    const s = await stats(f.name);
    expect(s.drops).to.equal(3);
    expect(s.ranges.slice(0, 2)).to.deep.equal(['0-0', '0-']);
    expect(s.ranges).to.have.length(5);
    // Each request starts where the bytes received so far end: what was sent and not received
    // before a cut (if anything) is all that is sent twice.
    const starts = s.ranges.slice(1).map((r) => Number(r.slice(0, -1)));
    let resent = 0;
    for (let i = 1; i < starts.length; i++) {
      expect(starts[i]).to.be.above(starts[i - 1]!);
      resent += cut - (starts[i]! - starts[i - 1]!);
    }
    expect(s.bytes).to.equal(f.bytes.byteLength + 1 + resent);
    expect(resent).to.be.below(cut);
    console.log(`3 dropped connections: resumed at ${starts.slice(1).join(', ')}; ${s.bytes} bytes sent for a ${f.bytes.byteLength}-byte file`);
  });

  it('keeps the partial file when the retries run out, and the next call (a reload) resumes from it', async () => {
    const f = await testFile(3, 3 * MiB);
    const cut = 1.5 * MiB;
    await control(f.name, { dropAfter: cut, drops: 1 });
    await expectError(cachedModel(f.url, { sha256: f.sha256, partSize: MiB, retries: 0 }), 'io', /failed at byte \d+ of 3145728.*call again to resume/);
    const partial = (await entry(f.url))!;
    expect(partial).to.include({ url: f.url, size: 3 * MiB, complete: false });
    expect(partial.downloaded).to.be.above(MiB).and.at.most(cut);

    const events: CachedModelProgress[] = [];
    const file = await cachedModel(f.url, { sha256: f.sha256, onProgress: (p) => events.push(p) });
    await expectBytes(file, f.bytes);
    expect(events[0]).to.deep.equal({ phase: 'check', loaded: partial.downloaded, total: 3 * MiB });
    const s = await stats(f.name);
    expect(s.ranges).to.deep.equal(['0-0', '0-', '0-0', `${partial.downloaded}-`]);
    expect(s.bytes).to.equal(3 * MiB + 2 + (cut - partial.downloaded));
  });

  it('cancels mid-download; a new call resumes from the partial file', async () => {
    const f = await testFile(4, 3 * MiB + 7);
    const stall = 1.25 * MiB + 3;
    await control(f.name, { stallAfter: stall });
    const controller = new AbortController();
    const pending = cachedModel(f.url, { sha256: f.sha256, partSize: MiB, signal: controller.signal });
    const outcome = expectError(pending, 'aborted');
    for (let i = 0; i < 200 && (await stats(f.name)).bytes < stall + 1; i++) await new Promise((r) => setTimeout(r, 25));
    await new Promise((r) => setTimeout(r, 300));
    await expectError(deleteCachedModel(f.url), 'io', /is downloading; cancel the download/);
    controller.abort();
    await outcome;
    const partial = (await entry(f.url))!;
    expect(partial.complete).to.equal(false);
    expect(partial.downloaded).to.be.above(MiB).and.at.most(stall);

    await control(f.name, {});
    const file = await cachedModel(f.url, { sha256: f.sha256 });
    await expectBytes(file, f.bytes);
    const s = await stats(f.name);
    expect(s.ranges).to.deep.equal(['0-0', '0-', '0-0', `${partial.downloaded}-`]);
    expect(s.bytes).to.equal(f.bytes.byteLength + 2 + (stall - partial.downloaded));
  });

  it('starts over when the file changed on the server (new ETag) since the partial download', async () => {
    const old = await testFile(5, 2 * MiB);
    await control(old.name, { dropAfter: MiB, drops: 1 });
    await expectError(cachedModel(old.url, { partSize: MiB, retries: 0 }), 'io');
    expect((await entry(old.url))!.downloaded).to.be.above(0);

    await control(old.name, { version: 1 });
    const f = await testFile(5, 2 * MiB, 1);
    const file = await cachedModel(f.url, { sha256: f.sha256 });
    await expectBytes(file, f.bytes);
    expect((await stats(f.name)).ranges).to.deep.equal(['0-0', '0-', '0-0', '0-']);
  });

  it('a wrong sha256 throws integrity and deletes the copy; a cached copy is verified once', async () => {
    const f = await testFile(6, MiB + 1);
    await expectError(cachedModel(f.url, { sha256: '00'.repeat(32) }), 'integrity', new RegExp(`SHA-256 ${f.sha256}, not the expected 0{64}; the downloaded copy was deleted`));
    expect(await entry(f.url)).to.equal(undefined);

    // Downloaded without a digest, then asked for with one: verified from disk, no new request.
    await cachedModel(f.url);
    const before = await stats(f.name);
    const events: CachedModelProgress[] = [];
    await cachedModel(f.url, { sha256: `sha256:${f.sha256.toUpperCase()}`, onProgress: (p) => events.push(p) });
    expect(phases(events)).to.deep.equal(['verify', 'cached']);
    expect((await entry(f.url))!.sha256).to.equal(f.sha256);
    expect(await stats(f.name)).to.deep.equal(before);

    await expectError(cachedModel(f.url, { sha256: 'abc' }), 'bad-argument');
  });

  it('checks the quota before downloading and says how much space is needed', async () => {
    const f = await testFile(7, 3 * MiB);
    const storage = navigator.storage as StorageManager & { estimate: () => Promise<StorageEstimate> };
    storage.estimate = async () => ({ quota: 1.5 * MiB, usage: 0.5 * MiB });
    try {
      await expectError(cachedModel(f.url), 'io', /not enough storage .*: 3\.0 MiB needed, 1\.0 MiB available \(quota 1\.5 MiB, 512\.0 KiB in use\)/);
    } finally {
      delete (storage as Partial<typeof storage>).estimate;
    }
    const s = await stats(f.name);
    expect(s.ranges).to.deep.equal(['0-0']);
    expect(s.bytes).to.equal(1);
  });

  it('reports a missing file as not-found, server errors as io after retrying, and serves servers without ranges', async () => {
    await expectError(cachedModel(new URL(`/flaky/missing-${run}.gguf`, location.href).href), 'not-found', /404/);
    expect((await listCachedModels()).some((m) => m.url.includes('missing'))).to.equal(false);

    const busy = await testFile(8, 1000);
    await control(busy.name, { status: 503 });
    await expectError(cachedModel(busy.url, { retries: 1 }), 'io', /503/);
    expect((await stats(busy.name)).statuses).to.deep.equal([503, 503]);

    const plain = await testFile(9, MiB + 3);
    await control(plain.name, { noRanges: 1 });
    await expectBytes(await cachedModel(plain.url, { sha256: plain.sha256 }), plain.bytes);
    expect((await stats(plain.name)).ranges).to.deep.equal(['none', 'none']);
  });

  it('works in a dedicated worker (with a resume); the page then finds it in the cache', async () => {
    const f = await testFile(10, 2 * MiB + 9);
    await control(f.name, { dropAfter: MiB + 1, drops: 1 });
    const moduleUrl = new URL('../../src/web/model-cache.ts', import.meta.url).href;
    const source = `
      import { cachedModel } from ${JSON.stringify(moduleUrl)};
      self.onmessage = async ({ data }) => {
        try {
          const phases = [];
          const file = await cachedModel(data.url, { sha256: data.sha256, partSize: data.partSize, onProgress: (p) => phases.push(p.phase) });
          self.postMessage({ ok: true, size: file.size, hasDocument: typeof document !== 'undefined', phases: phases.filter((p, i, a) => i === 0 || a[i - 1] !== p) });
        } catch (e) {
          self.postMessage({ ok: false, code: e.code, message: String(e) });
        }
      };`;
    const blobUrl = URL.createObjectURL(new Blob([source], { type: 'text/javascript' }));
    const worker = new Worker(blobUrl, { type: 'module' });
    try {
      const reply = await new Promise<Record<string, unknown>>((resolve, reject) => {
        worker.onmessage = (e) => resolve(e.data);
        worker.onerror = (e) => reject(new Error(`worker failed: ${e.message}`));
        worker.postMessage({ url: f.url, sha256: f.sha256, partSize: MiB });
      });
      expect(reply, String(reply.message)).to.deep.equal({ ok: true, size: f.bytes.byteLength, hasDocument: false, phases: ['check', 'download', 'verify', 'cached'] });
    } finally {
      worker.terminate();
      URL.revokeObjectURL(blobUrl);
    }
    const s = await stats(f.name);
    expect(s.ranges).to.have.length(3);
    const resumed = Number(s.ranges[2]!.slice(0, -1));
    expect(s.ranges.slice(0, 2)).to.deep.equal(['0-0', '0-']);
    expect(resumed).to.be.above(0).and.at.most(MiB + 1);
    expect(s.bytes).to.equal(f.bytes.byteLength + 1 + (MiB + 1 - resumed));

    const events: CachedModelProgress[] = [];
    await expectBytes(await cachedModel(f.url, { sha256: f.sha256, onProgress: (p) => events.push(p) }), f.bytes);
    expect(phases(events)).to.deep.equal(['cached']);
    expect(await stats(f.name)).to.deep.equal(s);
  });
});
