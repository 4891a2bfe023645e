import { RullamaError, throwIfAborted } from '../errors.js';

/**
 * Random access to the bytes of a (possibly huge) file. Readers ask for ranges; nothing ever
 * needs the whole file in memory. Implementations: Blob/File, HTTP range requests, Node file.
 */
export interface ByteSource {
  /** A human-readable name for messages (file name or URL). */
  readonly name: string;
  /** Total size in bytes. */
  readonly size: number;
  /**
   * Exactly `length` bytes starting at `offset`. Throws RullamaError('truncated') when the range
   * runs past the end of the source, 'io' when the underlying read fails, 'aborted' on the signal.
   */
  read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array>;
  /** Releases file handles; reads after close fail. Optional for sources that hold nothing. */
  close?(): Promise<void>;
}

/** Checks a requested range against the source size; every source calls this first. */
export function checkRange(source: { name: string; size: number }, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new RullamaError('bad-argument', `invalid byte range ${offset}+${length} in ${source.name}`);
  }
  if (offset + length > source.size) {
    throw new RullamaError(
      'truncated',
      `${source.name} ends at byte ${source.size}, but ${length} bytes were needed at ${offset}`,
      { offset },
    );
  }
}

/** A source over a Blob or File (browser, worker, or Node's Blob). */
export function blobSource(blob: Blob, name = (blob as File).name ?? 'blob'): ByteSource {
  const self: ByteSource = {
    name,
    size: blob.size,
    async read(offset, length, signal) {
      checkRange(self, offset, length);
      throwIfAborted(signal);
      try {
        return new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer());
      } catch (cause) {
        throw new RullamaError('io', `reading ${name} failed: ${String(cause)}`, { offset, cause });
      }
    },
  };
  return self;
}

/** A source over bytes already in memory (tests, small files, adapters built in the page). */
export function bytesSource(bytes: Uint8Array, name = 'bytes'): ByteSource {
  const self: ByteSource = {
    name,
    size: bytes.byteLength,
    async read(offset, length, signal) {
      checkRange(self, offset, length);
      throwIfAborted(signal);
      return bytes.subarray(offset, offset + length);
    },
  };
  return self;
}

export interface UrlSourceOptions {
  /** Injected fetch (tests, auth headers, caching layers). Defaults to the global fetch. */
  fetch?: typeof fetch;
  /** Extra request headers. */
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/**
 * A source over HTTP range requests. The size comes from the first response's Content-Range,
 * so the server must answer `Range: bytes=0-0` with 206; a server that ignores ranges and sends
 * the whole body is refused rather than downloaded whole.
 */
export async function urlSource(url: string, options: UrlSourceOptions = {}): Promise<ByteSource> {
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const request = async (start: number, end: number, signal?: AbortSignal): Promise<Response> => {
    throwIfAborted(signal);
    let response: Response;
    try {
      response = await doFetch(url, {
        headers: { ...options.headers, Range: `bytes=${start}-${end}` },
        signal,
      });
    } catch (cause) {
      if (signal?.aborted) throw new RullamaError('aborted', 'the operation was cancelled', { cause });
      throw new RullamaError('io', `fetching ${url} failed: ${String(cause)}`, { offset: start, cause });
    }
    if (response.status === 404) throw new RullamaError('not-found', `${url} answered 404 Not Found`);
    if (response.status !== 206) {
      await response.body?.cancel();
      throw new RullamaError(
        'io',
        `${url} answered ${response.status} to a range request; the server must support HTTP Range (206)`,
      );
    }
    return response;
  };

  const first = await request(0, 0, options.signal);
  await first.arrayBuffer();
  const total = /\/(\d+)\s*$/.exec(first.headers.get('Content-Range') ?? '')?.[1];
  if (total === undefined) {
    throw new RullamaError('io', `${url} sent no total size in Content-Range (is it exposed by CORS?)`);
  }
  const size = Number(total);

  const self: ByteSource = {
    name: url,
    size,
    async read(offset, length, signal) {
      checkRange(self, offset, length);
      if (length === 0) return new Uint8Array(0);
      const response = await request(offset, offset + length - 1, signal);
      const bytes = new Uint8Array(await response.arrayBuffer());
      if (bytes.byteLength !== length) {
        throw new RullamaError('io', `${url} sent ${bytes.byteLength} bytes for a ${length}-byte range`, { offset });
      }
      return bytes;
    },
  };
  return self;
}
