import { RullamaError } from '../errors.js';
import { sha256 } from '../ollama/sha256.js';

/**
 * Everything a training run needs to continue exactly where it stopped: the LoRA values, the
 * optimiser's moments and step, where it was in the data, and the loss curve so far. Written
 * only between steps, so a checkpoint never holds half an update.
 */
export interface TrainingCheckpoint {
  /** Identifies the model and the training setup (layout, data, hyper-parameters): a checkpoint resumes only the same run. */
  run: string;
  /** Optimiser steps done. */
  step: number;
  /** Sequences of the training data consumed (the data position: epoch·count + index). */
  consumed: number;
  values: Float32Array<ArrayBuffer>;
  m: Float32Array<ArrayBuffer>;
  v: Float32Array<ArrayBuffer>;
  /** Loss after each step and validation loss where measured. */
  history: { step: number; loss: number; valLoss?: number }[];
}

/*
 * Layout: magic "RLMT", version u32 (1), header length u32, JSON header {run, step, consumed,
 * history, size}, zero padding to 4 bytes, values f32[size], m f32[size], v f32[size], SHA-256 of
 * everything before it.
 */
const MAGIC = 0x544d4c52; // "RLMT" little-endian
const VERSION = 1;
const CHECKSUM = 32;

const bad = (why: string) => new RullamaError('bad-snapshot', `not a usable training checkpoint: ${why}`);

export function encodeCheckpoint(c: TrainingCheckpoint): Uint8Array<ArrayBuffer> {
  const size = c.values.length;
  if (c.m.length !== size || c.v.length !== size) throw new RullamaError('bad-argument', 'checkpoint arrays differ in length');
  const header = new TextEncoder().encode(JSON.stringify({ run: c.run, step: c.step, consumed: c.consumed, history: c.history, size }));
  const start = Math.ceil((12 + header.length) / 4) * 4;
  const bytes = new Uint8Array(start + 12 * size + CHECKSUM);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, VERSION, true);
  view.setUint32(8, header.length, true);
  bytes.set(header, 12);
  [c.values, c.m, c.v].forEach((a, i) => bytes.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), start + 4 * size * i));
  bytes.set(sha256(bytes.subarray(0, bytes.length - CHECKSUM)), bytes.length - CHECKSUM);
  return bytes;
}

/** Checks everything (magic, version, checksum, lengths, the run) before returning anything. */
export function decodeCheckpoint(bytes: Uint8Array, expectedRun: string): TrainingCheckpoint {
  if (bytes.byteLength < 12 + CHECKSUM) throw bad(`${bytes.byteLength} bytes is too short`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== MAGIC) throw bad('wrong magic');
  if (view.getUint32(4, true) !== VERSION) throw bad(`format version ${view.getUint32(4, true)}; this build reads ${VERSION}`);
  const body = bytes.byteLength - CHECKSUM;
  const sum = sha256(bytes.subarray(0, body));
  if (!sum.every((b, i) => b === bytes[body + i])) throw bad('checksum mismatch (truncated or corrupted)');
  const length = view.getUint32(8, true);
  if (12 + length > body) throw bad('its header runs past the end');
  let header: { run: string; step: number; consumed: number; history: TrainingCheckpoint['history']; size: number };
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + length)));
  } catch {
    throw bad('its header is not JSON');
  }
  if (header.run !== expectedRun) throw bad('it belongs to another model, dataset or training setup');
  const start = Math.ceil((12 + length) / 4) * 4;
  const { size } = header;
  if (!Number.isInteger(size) || start + 12 * size !== body) throw bad('its lengths do not add up');
  const array = (i: number) => new Float32Array(bytes.slice(start + 4 * size * i, start + 4 * size * (i + 1)).buffer);
  return { run: header.run, step: header.step, consumed: header.consumed, history: header.history, values: array(0), m: array(1), v: array(2) };
}
