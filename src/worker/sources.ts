/**
 * Turns a SourceSpec (what the page sent) into something Engine.load reads, in the worker: a URL,
 * a Blob, or a ByteSource opened from an Ollama folder (checked against its digest when asked).
 */
import { RullamaError } from '../core/errors.js';
import type { ByteSource } from '../core/gguf/source.js';
import { OllamaStore, fromDirectoryHandle } from '../core/ollama/index.js';
import { cachedModel } from '../web/model-cache.js';
import type { AdapterSourceSpec, LoadProgressDetail, SourceSpec } from './protocol.js';

export interface OpenedSource {
  source: string | Blob | ByteSource;
  /** A short name for the UI. */
  label: string;
  /** Close the source when the engine is disposed. */
  owned: boolean;
}

export interface OpenSourceOptions {
  signal?: AbortSignal;
  onProgress?: (p: LoadProgressDetail) => void;
}

/** The last path segment of a URL, without the query. */
export function urlLabel(url: string): string {
  try {
    const path = new URL(url).pathname;
    return decodeURIComponent(path.slice(path.lastIndexOf('/') + 1)) || url;
  } catch {
    return url;
  }
}

export async function openModelSource(spec: SourceSpec, options: OpenSourceOptions = {}): Promise<OpenedSource> {
  switch (spec.kind) {
    case 'url': {
      const label = urlLabel(spec.url);
      if (spec.cache === false) return { source: spec.url, label, owned: true };
      try {
        // Downloaded once into OPFS (resumable, verified when a digest is given), then read from disk.
        const file = await cachedModel(spec.url, { ...(spec.sha256 ? { sha256: spec.sha256 } : {}), signal: options.signal, onProgress: options.onProgress, persist: false });
        return { source: file, label, owned: true };
      } catch (e) {
        // No OPFS here (an old browser, some private modes): read the URL with range requests instead.
        if (e instanceof RullamaError && e.code === 'unsupported') return { source: spec.url, label, owned: true };
        throw e;
      }
    }
    case 'blob':
      return { source: spec.blob, label: spec.name ?? (spec.blob as File).name ?? 'model.gguf', owned: true };
    case 'ollama': {
      const store = new OllamaStore(fromDirectoryHandle(spec.directory));
      const source = await store.openModel(spec.model, {
        verify: spec.verify ?? false,
        signal: options.signal,
        onProgress: (p) => options.onProgress?.({ phase: 'verify', loaded: p.loaded, total: p.total }),
      });
      return { source, label: spec.model, owned: true };
    }
  }
}

/**
 * An adapter file as a Blob for Engine.loadAdapter. A URL is fetched whole (adapters are read
 * whole anyway), which also serves the page's blob: and data: URLs.
 */
export async function openAdapterSource(spec: AdapterSourceSpec, options: { signal?: AbortSignal } = {}): Promise<Blob> {
  if (spec.kind === 'blob' || spec.kind === 'trained') return spec.blob;
  let response: Response;
  try {
    response = await fetch(spec.url, { signal: options.signal });
  } catch (e) {
    if ((e as Error)?.name === 'AbortError') throw new RullamaError('aborted', 'reading the adapter was cancelled');
    throw new RullamaError('io', `cannot read the adapter ${spec.url}: ${(e as Error)?.message ?? e}`, { cause: e });
  }
  if (!response.ok) {
    throw new RullamaError(response.status === 404 || response.status === 410 ? 'not-found' : 'io', `the adapter ${spec.url} answered HTTP ${response.status}`);
  }
  const blob = await response.blob();
  return new File([blob], urlLabel(spec.url));
}
