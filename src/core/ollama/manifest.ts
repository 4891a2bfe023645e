import { RullamaError } from '../errors.js';

/** Media types of the layers in an Ollama manifest. */
export const OllamaMediaType = {
  /** The GGUF weights. */
  model: 'application/vnd.ollama.image.model',
  /** A LoRA adapter (GGUF). */
  adapter: 'application/vnd.ollama.image.adapter',
  /** A multimodal projector (GGUF). */
  projector: 'application/vnd.ollama.image.projector',
  /** The chat template (Go text/template). */
  template: 'application/vnd.ollama.image.template',
  /** The default system prompt. */
  system: 'application/vnd.ollama.image.system',
  /** Default options, JSON. */
  params: 'application/vnd.ollama.image.params',
  /** License text; a manifest can have several. */
  license: 'application/vnd.ollama.image.license',
  /** Preset conversation, JSON. */
  messages: 'application/vnd.ollama.image.messages',
} as const;

/** One blob a manifest refers to. */
export interface OllamaLayer {
  mediaType: string;
  /** `sha256:<64 hex>`. */
  digest: string;
  /** Size in bytes. */
  size: number;
}

/** A parsed manifest (Docker distribution manifest v2, as Ollama writes it). */
export interface OllamaManifest {
  schemaVersion?: number;
  mediaType?: string;
  config?: OllamaLayer;
  layers: OllamaLayer[];
}

const DIGEST = /^sha256:[0-9a-fA-F]{64}$/;

/** Whether `digest` is `sha256:` and 64 hex digits. */
export function isSha256Digest(digest: unknown): digest is string {
  return typeof digest === 'string' && DIGEST.test(digest);
}

/** The blob file name for a digest: `sha256:abc…` is stored as `sha256-abc…`. */
export function blobFileName(digest: string): string {
  if (!isSha256Digest(digest)) throw new RullamaError('bad-argument', `not a sha256 digest: ${JSON.stringify(digest)}`);
  return `sha256-${digest.slice('sha256:'.length)}`;
}

function checkLayer(value: unknown, where: string, path: string): OllamaLayer {
  const bad = (what: string): never => {
    throw new RullamaError('bad-manifest', `the manifest ${path} is malformed: ${where} ${what}`);
  };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return bad('is not an object');
  const layer = value as Record<string, unknown>;
  if (typeof layer.mediaType !== 'string' || layer.mediaType === '') bad('has no mediaType');
  if (!isSha256Digest(layer.digest)) {
    bad(`has the digest ${JSON.stringify(layer.digest)}, not sha256:<64 hex digits>`);
  }
  const size = layer.size;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    bad(`has the size ${JSON.stringify(size)}, not a non-negative integer`);
  }
  return { mediaType: layer.mediaType as string, digest: layer.digest as string, size: size as number };
}

/**
 * Parses and checks a manifest's text; `path` is only used in messages. Throws
 * RullamaError('bad-manifest') naming the path when the text is not JSON, has no layers array,
 * or a layer (or the config) lacks a media type, has a digest that is not `sha256:<64 hex>`, or
 * a size that is not a non-negative integer. A manifest without a model layer is accepted here
 * (see OllamaStore for that check).
 */
export function parseOllamaManifest(text: string, path: string): OllamaManifest {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new RullamaError('bad-manifest', `the manifest ${path} is not valid JSON: ${String(cause)}`, { cause });
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new RullamaError('bad-manifest', `the manifest ${path} is not a JSON object`);
  }
  const raw = json as Record<string, unknown>;
  if (!Array.isArray(raw.layers)) {
    throw new RullamaError('bad-manifest', `the manifest ${path} has no "layers" array`);
  }
  const manifest: OllamaManifest = {
    layers: raw.layers.map((layer, i) => checkLayer(layer, `layer ${i}`, path)),
  };
  if (typeof raw.schemaVersion === 'number') manifest.schemaVersion = raw.schemaVersion;
  if (typeof raw.mediaType === 'string') manifest.mediaType = raw.mediaType;
  if (raw.config !== undefined && raw.config !== null) manifest.config = checkLayer(raw.config, 'the config', path);
  return manifest;
}
