import { RullamaError, throwIfAborted } from '../errors.js';
import type { ByteSource } from '../gguf/source.js';
import type { StoreDirectory } from './directory.js';
import { OllamaMediaType, blobFileName, isSha256Digest, parseOllamaManifest, type OllamaLayer, type OllamaManifest } from './manifest.js';
import {
  checkOllamaReference,
  ollamaDisplayName,
  ollamaFullName,
  parseOllamaName,
  sameOllamaModel,
  type OllamaModelReference,
} from './name.js';
import { Sha256, sha256Hex } from './sha256.js';

/** One installed model, as `list()` reports it. */
export interface OllamaModelEntry {
  /** The name as `ollama list` shows it: `gemma4:e2b`, `user/model:tag`, `host/ns/model:tag`. */
  name: string;
  /** `host/namespace/model:tag`. */
  fullName: string;
  reference: OllamaModelReference;
  /** First 12 hex digits of the manifest file's SHA-256 (the ID column of `ollama list`). */
  id: string;
  /** Where the manifest is, for messages. */
  manifestPath: string;
  /** The GGUF weights layer. */
  model: OllamaLayer;
  /** LoRA adapter layers, in manifest order. */
  adapters: OllamaLayer[];
  /** Multimodal projector layers, in manifest order. */
  projectors: OllamaLayer[];
  /** All layers plus the config, in bytes (the SIZE column of `ollama list`). */
  size: number;
}

/** A model with its whole manifest and the layers beside the weights (as raw layer refs). */
export interface ResolvedOllamaModel extends OllamaModelEntry {
  manifest: OllamaManifest;
  template?: OllamaLayer;
  system?: OllamaLayer;
  params?: OllamaLayer;
  messages?: OllamaLayer;
  licenses: OllamaLayer[];
}

/** A manifest that list() skipped, and why. */
export interface OllamaStoreProblem {
  /** Where it is, for messages. */
  path: string;
  /** The model's display name, when the path spells a valid one. */
  name?: string;
  error: RullamaError;
}

export interface OllamaScan {
  /** Every valid manifest, sorted by full name. */
  models: ResolvedOllamaModel[];
  /** Manifests (or stray files in the manifests tree) that could not be read. */
  problems: OllamaStoreProblem[];
}

export interface OllamaProgress {
  loaded: number;
  total: number;
}

export interface OpenLayerOptions {
  /**
   * Stream the whole blob through SHA-256 and compare with the manifest's digest before
   * returning (reads every byte once, at roughly 150-250 MB/s: a multi-GB model takes a while,
   * and each 8 MiB chunk holds the thread for tens of milliseconds, so verify in a worker rather
   * than a page's main thread). Default false: only the size is checked.
   */
  verify?: boolean;
  signal?: AbortSignal;
  /** Called while verifying, after each chunk (and once with loaded 0). */
  onProgress?: (progress: OllamaProgress) => void;
  /** Bytes per read while verifying. Default 8 MiB. */
  chunkSize?: number;
}

export interface ReadLayerTextOptions {
  signal?: AbortSignal;
  /** Refuse larger layers ('bad-argument'). Default 16 MiB; text layers are a few KB. */
  maxBytes?: number;
}

const DEFAULT_CHUNK = 8 * 1024 * 1024;
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_NAMES_IN_MESSAGE = 30;

const PICK_FOLDER_HINT =
  "Pick Ollama's models folder: ~/.ollama/models on macOS and Linux, %USERPROFILE%\\.ollama\\models on Windows, " +
  '/usr/share/ollama/.ollama/models for the Linux system service, or wherever OLLAMA_MODELS points';

interface ManifestRef {
  reference: OllamaModelReference;
  path: string[];
}

async function closeQuietly(source: ByteSource): Promise<void> {
  try {
    await source.close?.();
  } catch {
    // nothing useful to do
  }
}

function asRullamaError(e: unknown, what: string): RullamaError {
  if (e instanceof RullamaError) return e;
  return new RullamaError('io', `${what}: ${String(e)}`, { cause: e });
}

/**
 * Ollama's on-disk model store (`~/.ollama/models` or `$OLLAMA_MODELS`): `manifests/<host>/
 * <namespace>/<model>/<tag>` JSON files that list layers by digest, and `blobs/sha256-<hex>`
 * files holding the layers. Works over any StoreDirectory: a Node path or a browser folder
 * handle. If the folder given is `~/.ollama` itself, its `models` folder is used.
 */
export class OllamaStore {
  readonly dir: StoreDirectory;
  private base?: Promise<string[]>;

  constructor(dir: StoreDirectory) {
    this.dir = dir;
  }

  /** Every readable model, sorted by full name. Manifests that cannot be read are skipped (see scan()). */
  async list(options: { signal?: AbortSignal } = {}): Promise<OllamaModelEntry[]> {
    return (await this.scan(options)).models;
  }

  /** Every readable model, plus the manifests that could not be read and why. */
  async scan(options: { signal?: AbortSignal } = {}): Promise<OllamaScan> {
    const { signal } = options;
    throwIfAborted(signal);
    const base = await this.locate();
    const { refs, problems } = await this.walk(base, signal);
    const models: ResolvedOllamaModel[] = [];
    const results = await Promise.all(
      refs.map(async (ref) => {
        try {
          return await this.load(ref);
        } catch (e) {
          return asRullamaError(e, `reading ${this.dir.displayPath(ref.path)} failed`);
        }
      }),
    );
    throwIfAborted(signal);
    results.forEach((result, i) => {
      const ref = refs[i]!;
      if (result instanceof RullamaError) {
        problems.push({ path: this.dir.displayPath(ref.path), name: ollamaDisplayName(ref.reference), error: result });
      } else {
        models.push(result);
      }
    });
    return { models, problems };
  }

  /**
   * The manifest of a model, by name (`gemma4:e2b`, `gemma4` for `gemma4:latest`, `user/model:tag`,
   * `host/namespace/model:tag`) or reference. Names are matched without regard to case, as Ollama does.
   * Throws 'bad-argument' for a name that cannot be parsed, 'not-found' (listing the installed models)
   * when there is no such model, 'bad-manifest' when its manifest is malformed or has no model layer.
   */
  async resolve(name: string | OllamaModelReference, options: { signal?: AbortSignal } = {}): Promise<ResolvedOllamaModel> {
    const reference = typeof name === 'string' ? parseOllamaName(name) : checkOllamaReference({ ...name });
    const asked = typeof name === 'string' ? name : ollamaDisplayName(reference);
    throwIfAborted(options.signal);
    const base = await this.locate();
    const path = [...base, 'manifests', reference.host, reference.namespace, reference.model, reference.tag];
    try {
      return await this.load({ reference, path });
    } catch (e) {
      if (!(e instanceof RullamaError) || e.code !== 'not-found') throw e;
    }
    // Not at the exact path: maybe a different case (Ollama matches names case-insensitively).
    const { refs } = await this.walk(base, options.signal);
    const match = refs.find((ref) => sameOllamaModel(ref.reference, reference));
    if (match) return this.load(match);

    const installed = refs.map((ref) => ollamaDisplayName(ref.reference));
    const where = this.dir.displayPath(base);
    let message = `the model ${JSON.stringify(asked)} (${ollamaFullName(reference)}) is not in ${where}; `;
    if (installed.length === 0) {
      message += `that store has no models yet (run \`ollama pull ${ollamaDisplayName(reference)}\`), or it is not the folder Ollama uses. ${PICK_FOLDER_HINT}`;
    } else {
      const shown = installed.slice(0, MAX_NAMES_IN_MESSAGE).join(', ');
      const more = installed.length > MAX_NAMES_IN_MESSAGE ? ` and ${installed.length - MAX_NAMES_IN_MESSAGE} more` : '';
      message += `installed: ${shown}${more}`;
    }
    throw new RullamaError('not-found', message);
  }

  /**
   * Opens the GGUF weights of a model. Checks the blob's size against the manifest, and with
   * `verify: true` its SHA-256 ('integrity' on either mismatch); 'not-found' when the blob is missing;
   * 'aborted' when the signal fires. Close the source when done.
   */
  async openModel(name: string | OllamaModelReference, options: OpenLayerOptions = {}): Promise<ByteSource> {
    const model = await this.resolve(name, { signal: options.signal });
    return this.openLayerFor(model.model, options, model.name);
  }

  /** Opens any layer's blob (adapter, projector, …) with the same checks as openModel. */
  async openLayer(layer: OllamaLayer, options: OpenLayerOptions = {}): Promise<ByteSource> {
    return this.openLayerFor(layer, options);
  }

  /**
   * The text of a small layer (template, system, params, messages, license), checked against
   * its size and digest. Params and messages are JSON; parse them yourself.
   */
  async readLayerText(layer: OllamaLayer, options: ReadLayerTextOptions = {}): Promise<string> {
    const maxBytes = options.maxBytes ?? 16 * 1024 * 1024;
    if (layer.size > maxBytes) {
      throw new RullamaError(
        'bad-argument',
        `the ${layer.mediaType} layer ${layer.digest} is ${layer.size} bytes, more than the ${maxBytes} allowed for a text layer`,
      );
    }
    const source = await this.openLayerFor(layer, { signal: options.signal });
    try {
      const bytes = await source.read(0, source.size, options.signal);
      const actual = `sha256:${sha256Hex(bytes)}`;
      if (actual !== layer.digest.toLowerCase()) {
        throw new RullamaError('integrity', `the blob ${source.name} has ${actual}, but the manifest says ${layer.digest}`);
      }
      return new TextDecoder('utf-8').decode(bytes);
    } finally {
      await closeQuietly(source);
    }
  }

  /** Where the blob of a layer lives, for messages. */
  async blobPath(layer: OllamaLayer): Promise<string> {
    return this.dir.displayPath([...(await this.locate()), 'blobs', blobFileName(layer.digest)]);
  }

  // ---------------------------------------------------------------------------------------------

  /** The path of the models folder inside the root: [] normally, ['models'] when given ~/.ollama. */
  private locate(): Promise<string[]> {
    if (!this.base) {
      this.base = this.findBase();
      this.base.catch(() => {
        this.base = undefined;
      });
    }
    return this.base;
  }

  private async findBase(): Promise<string[]> {
    const hasManifests = async (path: string[]): Promise<boolean> => {
      const entries = await this.dir.entries(path);
      return entries.some((e) => e.kind === 'directory' && e.name === 'manifests');
    };
    const root = this.dir.displayPath([]);
    let rootEntries;
    try {
      rootEntries = await this.dir.entries([]);
    } catch (e) {
      if (e instanceof RullamaError && e.code === 'not-found') {
        throw new RullamaError('not-found', `the Ollama models folder ${root} does not exist. ${PICK_FOLDER_HINT}`, { cause: e });
      }
      throw asRullamaError(e, `listing ${root} failed`);
    }
    if (rootEntries.some((e) => e.kind === 'directory' && e.name === 'manifests')) return [];
    if (rootEntries.some((e) => e.kind === 'directory' && e.name === 'models') && (await hasManifests(['models']))) {
      return ['models'];
    }
    throw new RullamaError(
      'not-found',
      `${root} has no "manifests" folder, so it is not Ollama's models folder (or no model was ever pulled into it). ${PICK_FOLDER_HINT}`,
    );
  }

  /** Every file at manifests/<host>/<namespace>/<model>/<tag>, without reading them. */
  private async walk(base: string[], signal?: AbortSignal): Promise<{ refs: ManifestRef[]; problems: OllamaStoreProblem[] }> {
    const problems: OllamaStoreProblem[] = [];
    const root = [...base, 'manifests'];
    const visible = (name: string): boolean => !name.startsWith('.');
    const children = async (path: string[], kind: 'file' | 'directory'): Promise<string[]> => {
      throwIfAborted(signal);
      try {
        const entries = await this.dir.entries(path);
        return entries.filter((e) => e.kind === kind && visible(e.name)).map((e) => e.name);
      } catch (e) {
        // A folder that vanished while we looked is simply empty.
        if (e instanceof RullamaError && e.code === 'not-found') return [];
        throw asRullamaError(e, `listing ${this.dir.displayPath(path)} failed`);
      }
    };
    const refs: ManifestRef[] = [];
    const hosts = await children(root, 'directory');
    await Promise.all(
      hosts.map(async (host) => {
        const namespaces = await children([...root, host], 'directory');
        await Promise.all(
          namespaces.map(async (namespace) => {
            const models = await children([...root, host, namespace], 'directory');
            await Promise.all(
              models.map(async (model) => {
                const tags = await children([...root, host, namespace, model], 'file');
                for (const tag of tags) {
                  const path = [...root, host, namespace, model, tag];
                  try {
                    refs.push({ reference: checkOllamaReference({ host, namespace, model, tag }), path });
                  } catch (e) {
                    problems.push({
                      path: this.dir.displayPath(path),
                      error: new RullamaError('bad-manifest', `${this.dir.displayPath(path)} is not at a valid model path: ${(e as Error).message}`),
                    });
                  }
                }
              }),
            );
          }),
        );
      }),
    );
    throwIfAborted(signal);
    refs.sort((a, b) => {
      const x = ollamaFullName(a.reference).toLowerCase();
      const y = ollamaFullName(b.reference).toLowerCase();
      return x < y ? -1 : x > y ? 1 : 0;
    });
    return { refs, problems };
  }

  /** Reads, parses and describes one manifest. */
  private async load(ref: ManifestRef): Promise<ResolvedOllamaModel> {
    const path = this.dir.displayPath(ref.path);
    const source = await this.dir.openFile(ref.path);
    let bytes: Uint8Array;
    try {
      if (source.size > MAX_MANIFEST_BYTES) {
        throw new RullamaError('bad-manifest', `the manifest ${path} is ${source.size} bytes; manifests are a few hundred`);
      }
      bytes = await source.read(0, source.size);
    } finally {
      await closeQuietly(source);
    }
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch (cause) {
      throw new RullamaError('bad-manifest', `the manifest ${path} is not UTF-8 text`, { cause });
    }
    const manifest = parseOllamaManifest(text, path);
    return describe(ref.reference, manifest, path, sha256Hex(bytes).slice(0, 12));
  }

  private async openLayerFor(layer: OllamaLayer, options: OpenLayerOptions, modelName?: string): Promise<ByteSource> {
    const { signal, verify = false, onProgress } = options;
    const chunkSize = options.chunkSize ?? DEFAULT_CHUNK;
    if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) {
      throw new RullamaError('bad-argument', `chunkSize must be a positive integer, not ${chunkSize}`);
    }
    if (!isSha256Digest(layer.digest)) {
      throw new RullamaError('bad-argument', `the layer digest ${JSON.stringify(layer.digest)} is not sha256:<64 hex digits>`);
    }
    if (!Number.isSafeInteger(layer.size) || layer.size < 0) {
      throw new RullamaError('bad-argument', `the layer size ${layer.size} is not a non-negative integer`);
    }
    throwIfAborted(signal);
    const path = [...(await this.locate()), 'blobs', blobFileName(layer.digest)];
    const shown = this.dir.displayPath(path);
    let source: ByteSource;
    try {
      source = await this.dir.openFile(path);
    } catch (e) {
      if (e instanceof RullamaError && e.code === 'not-found') {
        const of = modelName ? ` of ${modelName}` : '';
        const again = modelName ? ` Pull it again: \`ollama pull ${modelName}\`.` : '';
        throw new RullamaError(
          'not-found',
          `the blob ${shown} (the ${layer.mediaType} layer${of}, ${layer.digest}) is missing.${again}`,
          { cause: e },
        );
      }
      throw asRullamaError(e, `opening ${shown} failed`);
    }
    try {
      if (source.size !== layer.size) {
        throw new RullamaError(
          'integrity',
          `the blob ${shown} is ${source.size} bytes, but the manifest says ${layer.size} bytes; it is incomplete or damaged`,
        );
      }
      if (verify) {
        const actual = await hashSource(source, chunkSize, signal, onProgress);
        const expected = layer.digest.toLowerCase();
        if (actual !== expected) {
          throw new RullamaError(
            'integrity',
            `the blob ${shown} has the digest ${actual}, but the manifest says ${expected}; the file is damaged or was changed`,
          );
        }
      }
      throwIfAborted(signal);
      return source;
    } catch (e) {
      await closeQuietly(source);
      throw e;
    }
  }
}

/** Streams a whole source through SHA-256, reading the next chunk while hashing this one. */
async function hashSource(
  source: ByteSource,
  chunkSize: number,
  signal: AbortSignal | undefined,
  onProgress: ((progress: OllamaProgress) => void) | undefined,
): Promise<string> {
  const total = source.size;
  const hash = new Sha256();
  const readAt = (offset: number): Promise<Uint8Array> => source.read(offset, Math.min(chunkSize, total - offset), signal);
  let offset = 0;
  let pending: Promise<Uint8Array> | undefined = total > 0 ? readAt(0) : undefined;
  try {
    onProgress?.({ loaded: 0, total });
    while (pending) {
      const bytes: Uint8Array = await pending;
      const next = offset + bytes.byteLength;
      pending = next < total ? readAt(next) : undefined;
      throwIfAborted(signal);
      hash.update(bytes);
      offset = next;
      onProgress?.({ loaded: offset, total });
    }
  } catch (e) {
    pending?.catch(() => {});
    throw e;
  }
  return `sha256:${hash.hex()}`;
}

function describe(reference: OllamaModelReference, manifest: OllamaManifest, path: string, id: string): ResolvedOllamaModel {
  const of = (mediaType: string): OllamaLayer[] => manifest.layers.filter((l) => l.mediaType === mediaType);
  const models = of(OllamaMediaType.model);
  // Ollama itself takes the last layer of each single-valued kind (later layers override earlier ones).
  const model = models[models.length - 1];
  if (!model) {
    const kinds = [...new Set(manifest.layers.map((l) => l.mediaType))];
    throw new RullamaError(
      'bad-manifest',
      `the manifest ${path} has no model layer (${OllamaMediaType.model}); its layers are: ${kinds.length ? kinds.join(', ') : 'none'}`,
    );
  }
  const last = (mediaType: string): OllamaLayer | undefined => of(mediaType).at(-1);
  const size = manifest.layers.reduce((sum, l) => sum + l.size, manifest.config?.size ?? 0);
  const resolved: ResolvedOllamaModel = {
    name: ollamaDisplayName(reference),
    fullName: ollamaFullName(reference),
    reference,
    id,
    manifestPath: path,
    model,
    adapters: of(OllamaMediaType.adapter),
    projectors: of(OllamaMediaType.projector),
    size,
    manifest,
    licenses: of(OllamaMediaType.license),
  };
  const template = last(OllamaMediaType.template);
  const system = last(OllamaMediaType.system);
  const params = last(OllamaMediaType.params);
  const messages = last(OllamaMediaType.messages);
  if (template) resolved.template = template;
  if (system) resolved.system = system;
  if (params) resolved.params = params;
  if (messages) resolved.messages = messages;
  return resolved;
}
