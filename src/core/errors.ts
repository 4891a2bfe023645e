/**
 * Every failure the core reports is a RullamaError with a stable `code`, so that callers
 * (elements, the CLI, pages) can branch on it without parsing messages.
 */
export type RullamaErrorCode =
  /** The bytes are not a valid GGUF file (bad magic, version, count, offset, dtype, shape). */
  | 'bad-gguf'
  /** The source ended before the bytes the file promises. */
  | 'truncated'
  /** Valid input that this version cannot handle (an architecture, a dtype, a tokenizer). */
  | 'unsupported'
  /** The GGUF is not the model architecture that was asked for. */
  | 'wrong-arch'
  /** A file, model, tensor or blob that was named does not exist. */
  | 'not-found'
  /** An Ollama manifest that is not valid JSON or lacks what a manifest must hold. */
  | 'bad-manifest'
  /** A blob whose size or digest differs from what its manifest says. */
  | 'integrity'
  /** A token id outside the vocabulary, or text that cannot be encoded. */
  | 'bad-token'
  /** Reading from the source failed (network, permissions, I/O). */
  | 'io'
  /** The caller's AbortSignal fired. */
  | 'aborted'
  /** No WebGPU adapter or device could be obtained. */
  | 'no-webgpu'
  /** The GPU device was lost; reload to recover. */
  | 'device-lost'
  /** The GPU ran out of memory. */
  | 'oom'
  /** A saved state or training checkpoint that is truncated, corrupted, of another format version or from another model. */
  | 'bad-snapshot'
  /** The conversation no longer fits the context window. */
  | 'context-overflow'
  /** A caller passed an argument that makes no sense (negative length, unknown option). */
  | 'bad-argument';

export interface RullamaErrorOptions {
  /** Byte offset in the source where the problem was found, when there is one. */
  offset?: number;
  cause?: unknown;
}

export class RullamaError extends Error {
  readonly code: RullamaErrorCode;
  readonly offset?: number;

  constructor(code: RullamaErrorCode, message: string, options: RullamaErrorOptions = {}) {
    super(options.offset === undefined ? message : `${message} (at byte ${options.offset})`, {
      cause: options.cause,
    });
    this.name = 'RullamaError';
    this.code = code;
    if (options.offset !== undefined) this.offset = options.offset;
  }
}

/** Throws RullamaError('aborted') when the signal has fired. */
export function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw new RullamaError('aborted', 'the operation was cancelled', { cause: signal.reason });
}
