/**
 * A model download that survives dropped connections and reloads, is verified against a SHA-256
 * when one is given, and is kept in the origin private file system (OPFS) so that the next visit
 * does not download again. Works in pages and in dedicated workers (no `document`, no `window`).
 *
 * Storage: `rullama-models/<sha256 of the URL>/` holds `meta.json` ({url, size, etag,
 * lastModified, partSize, complete, sha256}) and the bytes in parts of `partSize` bytes
 * (`00000.part`, `00001.part`, …). Parts, not one file, because a FileSystemWritableFileStream
 * writes to a swap file that only replaces the real file on close(): bytes written since the last
 * close are lost on a reload, and reopening a big file with `keepExistingData` copies all of it.
 * Closing each part as it fills commits the download every `partSize` bytes at no extra cost, so a
 * reload loses at most one part. The File handed back is a Blob composed of the parts (no copy).
 *
 * Downloading: a 1-byte probe (`Range: bytes=0-0`) learns the size, ETag and Last-Modified; the
 * quota is checked for the bytes still missing; then one streaming request `Range: bytes=N-`
 * appends to the parts as the body arrives. When the connection drops (fetch rejects, the body
 * errors, or a 5xx/408/429 answer), the request is repeated from the last byte received, after a
 * short back-off; a call that is cancelled or runs out of retries leaves the parts for the next
 * call to resume. When the size or the validator (ETag, else Last-Modified) differs from the
 * stored one, the partial copy is discarded and the download starts from zero.
 *
 * Servers without Range support (they answer 200 with the whole file) are accepted: the file
 * downloads in one piece, and a dropped connection starts it over from zero.
 *
 * A cache hit makes no request at all (so it also works offline); to pick up a new version of a
 * file at the same URL, pass its `sha256` (a cached copy with another digest is replaced) or call
 * deleteCachedModel. The cache key is the absolute URL without its #fragment.
 */
import { RullamaError, throwIfAborted } from '../core/errors.js';
import { Sha256, sha256Hex } from '../core/ollama/sha256.js';

export interface CachedModelProgress {
  /**
   * 'check': the server was asked for the size (loaded: bytes already on disk); 'download': bytes
   * arriving; 'verify': SHA-256 of the finished file; 'cached': the file is ready (the only phase
   * of a cache hit).
   */
  phase: 'check' | 'download' | 'verify' | 'cached';
  loaded: number;
  total: number;
  /** Download speed over the last few seconds ('download' only, once known). */
  bytesPerSecond?: number;
  /** Estimated time to finish the download ('download' only, once known). */
  secondsLeft?: number;
}

export interface CachedModelOptions {
  /** Expected SHA-256 (hex, optionally prefixed `sha256:`). The finished file is verified; a mismatch deletes it and throws 'integrity'. */
  sha256?: string;
  /** Cancels ('aborted'); what was downloaded stays for a later call to resume. */
  signal?: AbortSignal;
  onProgress?: (progress: CachedModelProgress) => void;
  /** Injected fetch (auth headers, tests). Defaults to the global fetch. */
  fetch?: typeof fetch;
  /** Automatic resumes in a row without new bytes before giving up with 'io' (default 5; a resume that brought bytes resets the count). */
  retries?: number;
  /** Ask for persistent storage with navigator.storage.persist() (default true; not awaited, pages only). */
  persist?: boolean;
  /** Bytes per stored part: what a reload can lose at most (default 32 MiB). Kept from the first call for a partial download. */
  partSize?: number;
}

export interface CachedModelInfo {
  url: string;
  /** Size of the whole file. */
  size: number;
  /** Bytes on disk. */
  downloaded: number;
  complete: boolean;
  /** The verified SHA-256, when a digest was given and checked. */
  sha256?: string;
}

const FOLDER = 'rullama-models';
const META = 'meta.json';
const FORMAT = 1;
const DEFAULT_PART_SIZE = 32 << 20;
/** Bytes gathered in memory before a write to OPFS (fewer, larger writes). */
const FLUSH_BYTES = 1 << 20;
const PROGRESS_INTERVAL_MS = 250;
const VERIFY_CHUNK = 8 << 20;
const MAX_RESTARTS = 2;

interface Meta {
  format: typeof FORMAT;
  url: string;
  size: number;
  etag: string | null;
  lastModified: string | null;
  partSize: number;
  complete: boolean;
  sha256?: string;
}

// Directory iteration is not in the project's DOM lib.
type IterableDirectory = FileSystemDirectoryHandle & { keys(): AsyncIterable<string>; values(): AsyncIterable<FileSystemHandle> };

/** Returns the model as a File from OPFS: downloaded, resumed or found in the cache. */
export async function cachedModel(url: string, options: CachedModelOptions = {}): Promise<File> {
  const absolute = absoluteUrl(url);
  const expected = options.sha256 === undefined ? undefined : normaliseDigest(options.sha256);
  const retries = options.retries ?? 5;
  if (!Number.isSafeInteger(retries) || retries < 0) throw new RullamaError('bad-argument', `retries must be a whole number ≥ 0, got ${retries}`);
  const partSize = options.partSize ?? DEFAULT_PART_SIZE;
  if (!Number.isSafeInteger(partSize) || partSize < 1) throw new RullamaError('bad-argument', `partSize must be a whole number ≥ 1, got ${partSize}`);
  throwIfAborted(options.signal);
  const key = sha256Hex(new TextEncoder().encode(absolute));
  const download = new Download(absolute, key, expected, retries, partSize, options);
  return withLock(key, options.signal, () => download.run());
}

/** Every model in the cache, complete or partial. */
export async function listCachedModels(): Promise<CachedModelInfo[]> {
  const folder = await modelsFolder(false);
  if (!folder) return [];
  const out: CachedModelInfo[] = [];
  try {
    for await (const handle of (folder as IterableDirectory).values()) {
      if (handle.kind !== 'directory') continue;
      const dir = handle as FileSystemDirectoryHandle;
      const meta = await readMeta(dir);
      if (!meta) continue;
      const { have } = await partsOnDisk(dir, meta);
      const info: CachedModelInfo = { url: meta.url, size: meta.size, downloaded: have, complete: meta.complete && have === meta.size };
      if (meta.sha256) info.sha256 = meta.sha256;
      out.push(info);
    }
  } catch (cause) {
    throw storageError(cause, 'listing the cached models');
  }
  return out.sort((a, b) => (a.url < b.url ? -1 : a.url > b.url ? 1 : 0));
}

/** Deletes a cached model, complete or partial; nothing happens when there is none. Throws 'io' while it is downloading. */
export async function deleteCachedModel(url: string): Promise<void> {
  const absolute = absoluteUrl(url);
  const key = sha256Hex(new TextEncoder().encode(absolute));
  const folder = await modelsFolder(false);
  if (!folder) return;
  await withLock(key, undefined, () => removeEntry(folder, key), `${absolute} is downloading; cancel the download before deleting it`);
}

class Download {
  private folder!: FileSystemDirectoryHandle;
  /** This URL's folder; created when the first download starts. */
  private dir: FileSystemDirectoryHandle | null = null;
  private meta: Meta | null = null;
  private readonly fetch: typeof fetch;
  private readonly signal: AbortSignal | undefined;
  private readonly name: string;

  constructor(
    private readonly url: string,
    private readonly key: string,
    private readonly expected: string | undefined,
    private readonly retries: number,
    private readonly partSize: number,
    private readonly options: CachedModelOptions,
  ) {
    this.fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.signal = options.signal;
    this.name = fileName(url);
  }

  private progress(p: CachedModelProgress): void {
    this.options.onProgress?.(p);
  }

  async run(): Promise<File> {
    this.folder = (await modelsFolder(true))!;
    this.dir = await this.openDir(false);
    this.meta = this.dir ? await readMeta(this.dir) : null;
    if (this.meta && this.meta.url !== this.url) this.meta = null;

    if (this.dir && this.meta?.complete) {
      const hit = await this.cacheHit(this.dir, this.meta);
      if (hit) return hit;
      this.meta = null;
    }

    if (this.options.persist !== false) requestPersistence();
    await this.download();
    return this.finish();
  }

  /** The cached file when it is complete and (if a digest was given) the right one; null to download again. */
  private async cacheHit(dir: FileSystemDirectoryHandle, meta: Meta): Promise<File | null> {
    const { files, have } = await partsOnDisk(dir, meta);
    if (have !== meta.size) return null;
    const file = new File(files, this.name, { type: 'application/octet-stream' });
    if (this.expected && meta.sha256 !== this.expected) {
      // Downloaded without a digest, or another version: check what is on disk.
      if (meta.sha256 || (await this.digest(file)) !== this.expected) return null;
      await writeMeta(dir, { ...meta, sha256: this.expected });
    }
    this.progress({ phase: 'cached', loaded: meta.size, total: meta.size });
    return file;
  }

  private async download(): Promise<void> {
    let restarts = 0;
    let failures = 0;
    let writer: PartWriter | null = null;
    let have = 0;
    let meta!: Meta;
    let ranges = true;
    let checked = false;
    const meter = new Meter();
    try {
      for (;;) {
        throwIfAborted(this.signal);
        let received = 0;
        try {
          if (!checked) {
            const info = await this.probe();
            ranges = info.ranges;
            const old = this.meta;
            if (!old || !sameVersion(old, info) || !ranges) {
              // A new file, another version, or a server that cannot resume: start from zero.
              await writer?.discard();
              writer = null;
              meta = { format: FORMAT, url: this.url, size: info.size, etag: info.etag, lastModified: info.lastModified, partSize: this.partSize, complete: false };
              await this.reset(meta);
            } else {
              meta = old;
            }
            have = (await partsOnDisk(this.dir!, meta)).have;
            this.progress({ phase: 'check', loaded: have, total: meta.size });
            await checkQuota(this.url, meta.size - have);
            writer ??= new PartWriter(this.dir!, meta.partSize, have);
            checked = true;
            meter.start(have);
          }
          if (have >= meta.size) break;

          const response = await this.request(ranges ? have : null);
          const changed = this.validate(response, meta, have, ranges);
          if (changed) {
            await response.body?.cancel().catch(() => {});
            if (++restarts > MAX_RESTARTS) throw new RullamaError('io', `${this.url} kept changing while it downloaded (${changed})`);
            checked = false;
            this.meta = null;
            continue;
          }
          if (!response.body) throw new RullamaError('io', `${this.url} answered without a body`);
          const reader = response.body.getReader();
          let ended = false;
          try {
            for (;;) {
              const { value, done } = await readBody(reader, this.url, have);
              if (done) {
                ended = true;
                break;
              }
              const chunk = value.byteLength > meta.size - have ? value.subarray(0, meta.size - have) : value;
              await writer!.push(chunk);
              have += chunk.byteLength;
              received += chunk.byteLength;
              const p = meter.sample(have, meta.size);
              if (p) this.progress(p);
              if (have >= meta.size) break;
            }
          } finally {
            reader.releaseLock();
            await response.body.cancel().catch(() => {});
          }
          if (have < meta.size) {
            // A body that ended cleanly but short (a server that caps its ranges): ask for the rest.
            if (ended && received > 0 && ranges) {
              failures = 0;
              continue;
            }
            throw new Retry(`the connection closed at byte ${have} of ${meta.size}`);
          }
          this.progress(meter.final(have, meta.size));
          break;
        } catch (error) {
          if (this.signal?.aborted) throw new RullamaError('aborted', 'the operation was cancelled', { cause: this.signal.reason });
          if (!(error instanceof Retry)) throw error;
          failures = received > 0 ? 1 : failures + 1;
          if (failures > this.retries) {
            throw new RullamaError(
              'io',
              `downloading ${this.url} failed at byte ${have} of ${meta?.size ?? '?'} (${error.message}); ` +
                `${have > 0 && ranges ? 'the partial download is kept: call again to resume' : 'nothing was kept'}`,
              { cause: error.cause },
            );
          }
          await sleep(received > 0 ? 200 : Math.min(500 * 2 ** (failures - 1), 8000), this.signal);
          if (checked && !ranges && have > 0) {
            // No ranges: start over from zero.
            await writer?.discard();
            await this.reset(meta);
            writer = new PartWriter(this.dir!, meta.partSize, 0);
            have = 0;
          }
        }
      }
    } finally {
      // Commit what arrived (also on errors and cancellation), so that the next call resumes from it.
      await writer?.close().catch(() => {});
    }
  }

  /** Checks a download response; returns why the file must be downloaded from zero, or null. */
  private validate(response: Response, meta: Meta, have: number, ranges: boolean): string | null {
    const info = responseInfo(response);
    if (ranges) {
      if (response.status === 200) return 'the server ignored the range request';
      if (response.status === 416) return `it no longer has byte ${have}`;
      const range = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(response.headers.get('Content-Range') ?? '');
      if (!range) throw new RullamaError('io', `${this.url} sent no Content-Range with its 206 answer (is it exposed by CORS?)`);
      if (Number(range[3]) !== meta.size) return `size ${meta.size} became ${range[3]}`;
      if (Number(range[1]) !== have) throw new RullamaError('io', `${this.url} sent bytes ${range[1]}- for a request from byte ${have}`);
    } else if (response.status !== 200) {
      throw new RullamaError('io', `${this.url} answered ${response.status} to a plain GET`);
    }
    if (!sameVersion(meta, { ...info, size: meta.size })) return 'its ETag or Last-Modified changed';
    return null;
  }

  /** Size and validators from a 1-byte range request (or the headers of a 200 when the server has no ranges). */
  private async probe(): Promise<{ size: number; etag: string | null; lastModified: string | null; ranges: boolean }> {
    const response = await this.request(0, 0);
    const info = responseInfo(response);
    if (response.status === 206 || response.status === 416) {
      await response.arrayBuffer().catch(() => {});
      const total = /\/(\d+)\s*$/.exec(response.headers.get('Content-Range') ?? '')?.[1];
      if (total === undefined) throw new RullamaError('io', `${this.url} sent no total size in Content-Range (is it exposed by CORS?)`);
      return { ...info, size: Number(total), ranges: true };
    }
    // 200: no Range support. The size must be known to check the quota and the download.
    await response.body?.cancel().catch(() => {});
    const length = response.headers.get('Content-Length');
    if (length === null || response.headers.get('Content-Encoding')) {
      throw new RullamaError('io', `${this.url} supports no HTTP Range requests and sent no plain Content-Length; its size is unknown`);
    }
    return { ...info, size: Number(length), ranges: false };
  }

  /** GET, from `start` (to `end`) when given; network failures and 5xx/408/429 throw Retry. */
  private async request(start: number | null, end?: number): Promise<Response> {
    throwIfAborted(this.signal);
    const headers: Record<string, string> = {};
    if (start !== null) headers.Range = `bytes=${start}-${end ?? ''}`;
    let response: Response;
    try {
      response = await this.fetch(this.url, { headers, signal: this.signal, cache: 'no-store' });
    } catch (cause) {
      if (this.signal?.aborted) throw new RullamaError('aborted', 'the operation was cancelled', { cause });
      throw new Retry(`fetch failed: ${String(cause)}`, cause);
    }
    if (response.ok || response.status === 416) return response;
    await response.body?.cancel().catch(() => {});
    if (response.status === 404 || response.status === 410) throw new RullamaError('not-found', `${this.url} answered ${response.status} ${response.statusText || 'Not Found'}`);
    if (response.status >= 500 || response.status === 408 || response.status === 429) throw new Retry(`the server answered ${response.status}`);
    throw new RullamaError('io', `${this.url} answered ${response.status} ${response.statusText}`.trim());
  }

  /** The downloaded parts as one File, verified when a digest was given, and marked complete. */
  private async finish(): Promise<File> {
    const meta = this.meta!;
    const dir = this.dir!;
    const { files, have } = await partsOnDisk(dir, meta);
    if (have !== meta.size) throw new RullamaError('io', `the cache of ${this.url} holds ${have} bytes instead of ${meta.size}`);
    const file = new File(files, this.name, { type: 'application/octet-stream' });
    const done: Meta = { ...meta, complete: true };
    if (this.expected) {
      const actual = await this.digest(file);
      if (actual !== this.expected) {
        await removeEntry(this.folder, this.key).catch(() => {});
        throw new RullamaError(
          'integrity',
          `${this.url} has SHA-256 ${actual}, not the expected ${this.expected}; the downloaded copy was deleted`,
        );
      }
      done.sha256 = actual;
    }
    await writeMeta(dir, done);
    this.meta = done;
    this.progress({ phase: 'cached', loaded: meta.size, total: meta.size });
    return file;
  }

  /** Streamed SHA-256 of the file (reading the next slice while hashing this one). */
  private async digest(file: Blob): Promise<string> {
    const hash = new Sha256();
    const size = file.size;
    const read = (offset: number) =>
      file
        .slice(offset, Math.min(size, offset + VERIFY_CHUNK))
        .arrayBuffer()
        .catch((cause: unknown) => {
          throw storageError(cause, `reading the cached copy of ${this.url}`);
        });
    this.progress({ phase: 'verify', loaded: 0, total: size });
    let next = size > 0 ? read(0) : null;
    for (let offset = 0; next; ) {
      const bytes = new Uint8Array(await next);
      throwIfAborted(this.signal);
      offset += bytes.byteLength;
      next = offset < size ? read(offset) : null;
      hash.update(bytes);
      this.progress({ phase: 'verify', loaded: offset, total: size });
    }
    return hash.hex();
  }

  private async openDir(create: boolean): Promise<FileSystemDirectoryHandle | null> {
    try {
      return await this.folder.getDirectoryHandle(this.key, { create });
    } catch (cause) {
      if (!create && (cause as DOMException)?.name === 'NotFoundError') return null;
      throw storageError(cause, `opening the cache of ${this.url}`);
    }
  }

  /** Empties this URL's folder (creating it if needed) and writes `meta` there. */
  private async reset(meta: Meta): Promise<void> {
    await this.clear();
    this.dir ??= (await this.openDir(true))!;
    await writeMeta(this.dir, meta);
    this.meta = meta;
  }

  /** Removes every part (and the meta) of this URL. */
  private async clear(): Promise<void> {
    const dir = this.dir;
    if (!dir) return;
    const names: string[] = [];
    try {
      for await (const name of (dir as IterableDirectory).keys()) names.push(name);
      for (const name of names) await dir.removeEntry(name, { recursive: true });
    } catch (cause) {
      throw storageError(cause, `clearing the cache of ${this.url}`);
    }
  }
}

/** A failure worth retrying (network, server busy). */
class Retry extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, { cause });
  }
}

/** Appends to the numbered parts, closing (committing) each one as it fills. */
class PartWriter {
  private writable: FileSystemWritableFileStream | null = null;
  private index: number;
  private inPart: number;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;

  constructor(
    private readonly dir: FileSystemDirectoryHandle,
    private readonly partSize: number,
    offset: number,
  ) {
    this.index = Math.floor(offset / partSize);
    this.inPart = offset % partSize;
  }

  async push(chunk: Uint8Array): Promise<void> {
    this.pending.push(chunk);
    this.pendingBytes += chunk.byteLength;
    if (this.pendingBytes >= FLUSH_BYTES) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    let data: Uint8Array;
    if (this.pending.length === 1) {
      data = this.pending[0]!;
    } else {
      data = new Uint8Array(this.pendingBytes);
      let p = 0;
      for (const c of this.pending) {
        data.set(c, p);
        p += c.byteLength;
      }
    }
    this.pending = [];
    this.pendingBytes = 0;
    try {
      while (data.byteLength > 0) {
        if (!this.writable) {
          const handle = await this.dir.getFileHandle(partName(this.index), { create: true });
          this.writable = await handle.createWritable({ keepExistingData: this.inPart > 0 });
          if (this.inPart > 0) {
            await this.writable.truncate(this.inPart);
            await this.writable.seek(this.inPart);
          }
        }
        const n = Math.min(this.partSize - this.inPart, data.byteLength);
        await this.writable.write(data.subarray(0, n) as Uint8Array<ArrayBuffer>);
        this.inPart += n;
        data = data.subarray(n);
        if (this.inPart === this.partSize) {
          const w = this.writable;
          this.writable = null;
          await w.close();
          this.index++;
          this.inPart = 0;
        }
      }
    } catch (cause) {
      throw storageError(cause, 'writing the download to the cache');
    }
  }

  /** Writes what is pending and commits the open part. */
  async close(): Promise<void> {
    try {
      await this.flush();
    } finally {
      const w = this.writable;
      this.writable = null;
      if (w) await w.close();
    }
  }

  /** Drops what is pending and the uncommitted writes of the open part. */
  async discard(): Promise<void> {
    this.pending = [];
    this.pendingBytes = 0;
    const w = this.writable;
    this.writable = null;
    await w?.abort().catch(() => {});
  }
}

/** Throttled download progress with speed over a sliding window. */
class Meter {
  private samples: [number, number][] = [];
  private last = 0;

  start(loaded: number): void {
    this.samples = [[performance.now(), loaded]];
    this.last = 0;
  }

  sample(loaded: number, total: number): CachedModelProgress | null {
    const now = performance.now();
    if (now - this.last < PROGRESS_INTERVAL_MS) return null;
    return this.final(loaded, total, now);
  }

  final(loaded: number, total: number, now = performance.now()): CachedModelProgress {
    this.last = now;
    this.samples.push([now, loaded]);
    while (this.samples.length > 2 && now - this.samples[1]![0] > 5000) this.samples.shift();
    const [t0, l0] = this.samples[0]!;
    const p: CachedModelProgress = { phase: 'download', loaded, total };
    if (now - t0 >= 100 && loaded > l0) {
      p.bytesPerSecond = ((loaded - l0) * 1000) / (now - t0);
      p.secondsLeft = (total - loaded) / p.bytesPerSecond;
    }
    return p;
  }
}

function partName(index: number): string {
  return `${String(index).padStart(5, '0')}.part`;
}

/** The parts of a download in order; `have` counts the bytes of the whole parts and the one partial part that follows them. */
async function partsOnDisk(dir: FileSystemDirectoryHandle, meta: Meta): Promise<{ files: File[]; have: number }> {
  const files: File[] = [];
  let have = 0;
  const count = Math.ceil(meta.size / meta.partSize);
  for (let i = 0; i < count; i++) {
    let file: File;
    try {
      file = await (await dir.getFileHandle(partName(i))).getFile();
    } catch (cause) {
      if ((cause as DOMException)?.name === 'NotFoundError') break;
      throw storageError(cause, 'reading the cache');
    }
    const want = Math.min(meta.partSize, meta.size - i * meta.partSize);
    if (file.size > want) break; // not ours: the next download overwrites it
    files.push(file);
    have += file.size;
    if (file.size < want) break;
  }
  return { files, have };
}

async function readMeta(dir: FileSystemDirectoryHandle): Promise<Meta | null> {
  try {
    const meta = JSON.parse(await (await (await dir.getFileHandle(META)).getFile()).text()) as Meta;
    if (meta.format !== FORMAT || typeof meta.url !== 'string' || !Number.isSafeInteger(meta.size) || !(meta.partSize >= 1)) return null;
    return meta;
  } catch {
    return null;
  }
}

async function writeMeta(dir: FileSystemDirectoryHandle, meta: Meta): Promise<void> {
  try {
    const writable = await (await dir.getFileHandle(META, { create: true })).createWritable();
    await writable.write(JSON.stringify(meta));
    await writable.close();
  } catch (cause) {
    throw storageError(cause, 'writing the cache');
  }
}

async function modelsFolder(create: boolean): Promise<FileSystemDirectoryHandle | null> {
  const storage = globalThis.navigator?.storage;
  if (typeof storage?.getDirectory !== 'function') {
    throw new RullamaError('unsupported', 'this browser has no origin private file system (navigator.storage.getDirectory)');
  }
  let root: FileSystemDirectoryHandle;
  try {
    root = await storage.getDirectory();
  } catch (cause) {
    throw new RullamaError('io', `the origin private file system is not available (private browsing?): ${String(cause)}`, { cause });
  }
  try {
    return await root.getDirectoryHandle(FOLDER, { create });
  } catch (cause) {
    if (!create && (cause as DOMException)?.name === 'NotFoundError') return null;
    throw storageError(cause, `opening ${FOLDER}`);
  }
}

async function removeEntry(folder: FileSystemDirectoryHandle, name: string): Promise<void> {
  try {
    await folder.removeEntry(name, { recursive: true });
  } catch (cause) {
    if ((cause as DOMException)?.name === 'NotFoundError') return;
    throw storageError(cause, 'deleting a cached model');
  }
}

/** Runs `fn` holding the Web Lock of this URL (one download per URL across tabs and workers). */
async function withLock<T>(key: string, signal: AbortSignal | undefined, fn: () => Promise<T>, busy?: string): Promise<T> {
  const name = `${FOLDER}/${key}`;
  const locks = globalThis.navigator?.locks;
  if (!locks) return localLock(name, fn, busy);
  try {
    if (busy) {
      return await locks.request(name, { ifAvailable: true }, async (lock) => {
        if (!lock) throw new RullamaError('io', busy);
        return fn();
      });
    }
    return await locks.request(name, signal ? { signal } : {}, fn);
  } catch (error) {
    if (error instanceof RullamaError) throw error;
    if (signal?.aborted) throw new RullamaError('aborted', 'the operation was cancelled', { cause: signal.reason });
    throw error;
  }
}

const localLocks = new Map<string, Promise<unknown>>();

async function localLock<T>(name: string, fn: () => Promise<T>, busy?: string): Promise<T> {
  const before = localLocks.get(name);
  if (before && busy) throw new RullamaError('io', busy);
  const run = (before ?? Promise.resolve()).catch(() => {}).then(fn);
  localLocks.set(name, run);
  try {
    return await run;
  } finally {
    if (localLocks.get(name) === run) localLocks.delete(name);
  }
}

async function checkQuota(url: string, needed: number): Promise<void> {
  if (needed <= 0) return;
  let estimate: StorageEstimate;
  try {
    estimate = await navigator.storage.estimate();
  } catch {
    return; // no estimate: let the writes find out
  }
  if (estimate.quota === undefined || estimate.usage === undefined) return;
  const available = Math.max(0, estimate.quota - estimate.usage);
  if (needed > available) {
    throw new RullamaError(
      'io',
      `not enough storage to download ${url}: ${formatBytes(needed)} needed, ${formatBytes(available)} available ` +
        `(quota ${formatBytes(estimate.quota)}, ${formatBytes(estimate.usage)} in use); free disk space or delete cached models`,
    );
  }
}

function requestPersistence(): void {
  const storage = globalThis.navigator?.storage;
  // persist() exists in pages only; it may wait for the user, so it is not awaited.
  if (typeof storage?.persist !== 'function') return;
  void storage
    .persisted()
    .then((persisted) => (persisted ? true : storage.persist()))
    .catch(() => {});
}

function responseInfo(response: Response): { etag: string | null; lastModified: string | null } {
  return { etag: response.headers.get('ETag'), lastModified: response.headers.get('Last-Modified') };
}

/** The same file: same size, and the same ETag (or, without ETags, the same Last-Modified). */
function sameVersion(meta: Meta, info: { size: number; etag: string | null; lastModified: string | null }): boolean {
  if (meta.size !== info.size) return false;
  if (meta.etag !== null || info.etag !== null) return meta.etag === info.etag;
  return meta.lastModified === info.lastModified;
}

async function readBody(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  url: string,
  offset: number,
): Promise<ReadableStreamReadResult<Uint8Array>> {
  try {
    return await reader.read();
  } catch (cause) {
    throw new Retry(`the connection to ${url} broke at byte ${offset}: ${String(cause)}`, cause);
  }
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(new RullamaError('aborted', 'the operation was cancelled', { cause: signal!.reason }));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function absoluteUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url, globalThis.location?.href);
  } catch {
    throw new RullamaError('bad-argument', `not a valid URL: ${url}`);
  }
  parsed.hash = '';
  return parsed.href;
}

function normaliseDigest(digest: string): string {
  const hex = digest.trim().toLowerCase().replace(/^sha256[:-]/, '');
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new RullamaError('bad-argument', `sha256 must be 64 hex digits, got "${digest}"`);
  return hex;
}

function fileName(url: string): string {
  const last = new URL(url).pathname.split('/').pop() ?? '';
  try {
    return decodeURIComponent(last) || 'model.gguf';
  } catch {
    return last || 'model.gguf';
  }
}

function formatBytes(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} bytes` : `${v.toFixed(1)} ${units[u]}`;
}

function storageError(cause: unknown, what: string): RullamaError {
  if (cause instanceof RullamaError) return cause;
  const name = (cause as DOMException)?.name;
  if (name === 'QuotaExceededError') {
    return new RullamaError('io', `${what} failed: the storage is full (QuotaExceededError); free disk space or delete cached models`, { cause });
  }
  return new RullamaError('io', `${what} failed: ${String(cause)}`, { cause });
}
