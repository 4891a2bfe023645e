/**
 * The messages between a page (src/client) and the engine worker (src/worker/host.ts). Only small
 * things cross: ids, text, progress, stats; a model file crosses as a Blob or folder handle (a
 * reference, not the bytes) and a state snapshot as a transferred ArrayBuffer.
 *
 * Every request carries an `id`; the worker answers with any number of `progress` / `token`
 * replies and then exactly one `done` or `error` for that id. `cancel` aborts a running request
 * (a load or a generation), which then ends with an `error` of code 'aborted'.
 */
import type { ChatMessage } from '../core/chat/index.js';
import type { RullamaErrorCode } from '../core/errors.js';
import type { ChatOptions, GenerationResult } from '../core/engine.js';
import type { GenerateOptions, TokenEvent } from '../core/generate.js';
import type { DataProblem } from '../core/train/data.js';
import type { TrainOptions, TrainProgress, TrainResult } from '../core/train/trainer.js';

/** Bumped when a message changes shape: the page and the worker must come from the same build. */
export const PROTOCOL_VERSION = 3;

/** Where the worker reads a model from. */
export type SourceSpec =
  /**
   * An absolute URL: downloaded into the OPFS cache (resumable, verified against `sha256` when
   * given) and read from there; with `cache: false`, or without OPFS, read with HTTP Range requests.
   */
  | { kind: 'url'; url: string; sha256?: string; cache?: boolean }
  /** A File or Blob (a picked or dropped file; an OPFS file). */
  | { kind: 'blob'; blob: Blob; name?: string }
  /** A model in an Ollama models folder (a handle from showDirectoryPicker, or OPFS). */
  | { kind: 'ollama'; directory: FileSystemDirectoryHandle; model: string; verify?: boolean };

/** Where the worker reads a LoRA adapter GGUF from (read whole: adapters are small next to models). */
export type AdapterSourceSpec =
  /** An absolute URL (http(s), blob: or data:), fetched by the worker. */
  | { kind: 'url'; url: string }
  /** A File or Blob. */
  | { kind: 'blob'; blob: Blob; name?: string }
  /**
   * An adapter a training job of the same model exported (version `version`): the worker applies
   * the adapter it holds, without reading a file; `blob` (its GGUF) is read instead when the job
   * has gone or exported a newer version since.
   */
  | { kind: 'trained'; job: number; version: number; blob: Blob };

/** One adapter to apply to a conversation. */
export interface AdapterSpec {
  /**
   * What identifies the file for the worker's cache of read adapters (per model): the absolute
   * URL, or the page's id of the Blob. Two conversations naming the same key share one read.
   */
  key: string;
  source: AdapterSourceSpec;
  /** The adapter's scale (default 1: as trained). */
  scale?: number;
}

/** What `adapters` answers. */
export interface AdaptersResult {
  /** How many adapter files were read for this request (the others came from the worker's cache). */
  read: number;
}

/** Load progress: the download cache's phases, then the engine's. */
export interface LoadProgressDetail {
  phase: 'check' | 'download' | 'verify' | 'cached' | 'open' | 'weights' | 'kernels' | 'ready';
  /** Bytes done and in all for 'download', 'verify' and 'weights'; else 0 and 0. */
  loaded: number;
  total: number;
  bytesPerSecond?: number;
  secondsLeft?: number;
}

/** What `rullama-ready` tells about a loaded model. */
export interface ModelInfo {
  /** A label: the file name, the URL's last segment or the Ollama model name. */
  name: string;
  architecture: string;
  layers: number;
  width: number;
  vocabSize: number;
  /** The model's trained context length and the context this load uses. */
  contextLength: number;
  contextSize: number;
  /** GPU bytes in use after loading (weights and the first KV cache). */
  gpuBytes: number;
  /** Whether prefill's Q4_K and Q6_K matmuls run in 8-bit integers (the load's int8Prefill). */
  int8Prefill: boolean;
}

/** Chat options without the AbortSignal (cancel with a `cancel` message instead). */
export type WireChatOptions = Omit<ChatOptions, 'signal'>;
export type WireGenerateOptions = Omit<GenerateOptions, 'signal'>;

/** Training options on the wire (no initial adapter), with the train/validation split. */
export interface WireTrainOptions extends Omit<TrainOptions, 'initial'> {
  /** Share of the examples held out for the validation loss (default 0: none). */
  validationFraction?: number;
  /** Keep checkpoints in OPFS (keyed by the run: model, data and options) so a reload resumes. */
  checkpoint?: boolean;
  /** With `checkpoint`: also save every this many steps (default: only on pause and at the end). */
  checkpointEvery?: number;
}

/** What `train-create` answers. */
export interface TrainJobInfo {
  /** Lines of the dataset that could not be used, with why (none is dropped silently). */
  problems: DataProblem[];
  /** Usable examples, and how they were split. */
  examples: number;
  trainExamples: number;
  validationExamples: number;
  /** Whether the job was created (false when no example was usable). */
  created: boolean;
  /** Optimiser steps in all, and done (more than 0 when a checkpoint was restored). */
  totalSteps: number;
  step: number;
  history: { step: number; loss: number; valLoss?: number }[];
  /** What identifies the run (model, data, options): the checkpoint's key. */
  runId: string;
  /** Whether an OPFS checkpoint of this run was restored. */
  restored: boolean;
  /** A checkpoint that was there but could not be restored, and why (it was deleted). */
  checkpointProblem?: string;
}

export type WireTrainProgress = TrainProgress;
export type WireTrainResult = TrainResult;

export type WorkerRequest =
  | { type: 'hello'; id: number; version: number }
  | { type: 'load'; id: number; model: number; source: SourceSpec; contextSize?: number; perLayerTableOnGpu?: boolean; int8Prefill?: boolean }
  | { type: 'unload'; id: number; model: number }
  | { type: 'open'; id: number; model: number; conversation: number; contextSize?: number }
  | { type: 'close'; id: number; conversation: number }
  | { type: 'chat'; id: number; conversation: number; messages: ChatMessage[]; options: WireChatOptions }
  | { type: 'generate'; id: number; conversation: number; prompt: string | number[]; options: WireGenerateOptions }
  | { type: 'reset'; id: number; conversation: number }
  | { type: 'save'; id: number; conversation: number }
  | { type: 'restore'; id: number; conversation: number; bytes: ArrayBuffer }
  /** Replaces the conversation's LoRA adapters ([] removes them); its KV cache starts afresh. */
  | { type: 'adapters'; id: number; conversation: number; adapters: AdapterSpec[] }
  | { type: 'tokenize'; id: number; model: number; text: string }
  /** Parses `dataset`, splits it and sets up a LoRA training job on the model (restoring its OPFS checkpoint when asked). */
  | { type: 'train-create'; id: number; model: number; job: number; dataset: string; options: WireTrainOptions }
  /** Trains until the end (progress as `train-progress` replies); `cancel` pauses after the current step ('aborted'). */
  | { type: 'train-run'; id: number; job: number }
  /** The adapter as it stands, as a LoRA GGUF; the worker keeps it (as `version`) for `trained` adapter sources. */
  | { type: 'train-export'; id: number; job: number; name: string }
  /** Saves the job's checkpoint to OPFS now. */
  | { type: 'train-checkpoint'; id: number; job: number }
  /** Frees the job's GPU buffers; `forget` also deletes its OPFS checkpoint. */
  | { type: 'train-dispose'; id: number; job: number; forget?: boolean }
  | { type: 'cancel'; id: number; target: number };

export interface WireError {
  code: RullamaErrorCode | 'unknown';
  message: string;
}

export type WorkerReply =
  | { type: 'progress'; id: number; progress: LoadProgressDetail }
  | { type: 'token'; id: number; token: TokenEvent }
  | { type: 'train-progress'; id: number; progress: WireTrainProgress }
  | { type: 'done'; id: number; value?: unknown }
  | { type: 'error'; id: number; error: WireError };

/** What a finished generation answers (`done.value` of chat/generate). */
export type WireGenerationResult = GenerationResult;

/** The part of a Worker, a DedicatedWorkerGlobalScope or a MessagePort the two sides use. */
export interface Endpoint {
  postMessage(message: unknown, transfer?: Transferable[]): void;
  addEventListener(type: 'message', listener: (event: MessageEvent) => void): void;
}

export function toWireError(error: unknown): WireError {
  const e = error as { code?: RullamaErrorCode; message?: string; name?: string } | undefined;
  if (e?.code) return { code: e.code, message: e.message ?? String(error) };
  if (e?.name === 'AbortError') return { code: 'aborted', message: e.message ?? 'the operation was cancelled' };
  if (e?.name === 'QuotaExceededError') return { code: 'io', message: `not enough storage space: ${e.message ?? ''}` };
  return { code: 'unknown', message: e?.message ?? String(error) };
}
