import { RullamaError } from '../errors.js';
import { sha256 as sha256Of } from '../ollama/sha256.js';

/**
 * A saved generation state: which model it belongs to, the tokens in the KV cache, and the keys
 * and values each KV-owning layer will still read. Positions are stored logically (position p of
 * layer l), not as ring slots, so a snapshot restores into any context size and prefill chunk.
 *
 * Layout (little-endian, every field 4-byte aligned):
 *   0   magic "RLMS"            4   version u32 (1)        8   model layout hash, 16 bytes
 *   24  position u32            28  layer entry count u32   32  reserved u32 × 2 (0)
 *   40  tokens u32[position]
 *   then per entry: layer u32, width u32, first position u32, count u32,
 *                   keys f32[count·width], values f32[count·width]
 *   end: SHA-256 of every byte before it (32 bytes)
 */
export interface Snapshot {
  layoutHash: Uint8Array;
  tokens: Uint32Array;
  layers: SnapshotLayer[];
}

export interface SnapshotLayer {
  layer: number;
  /** Values per position (kv heads × head dim). */
  width: number;
  /** The first saved position; positions first … first+count−1 follow. */
  first: number;
  count: number;
  keys: Float32Array<ArrayBuffer>;
  values: Float32Array<ArrayBuffer>;
}

const MAGIC = 0x534d4c52; // "RLMS" read as a little-endian u32
export const SNAPSHOT_VERSION = 1;
const HEADER_BYTES = 40;
const ENTRY_HEADER_BYTES = 16;
const HASH_BYTES = 16;
const CHECKSUM_BYTES = 32;

export function encodeSnapshot(s: Snapshot): Uint8Array<ArrayBuffer> {
  const n = s.tokens.length;
  const size = HEADER_BYTES + 4 * n + s.layers.reduce((t, l) => t + ENTRY_HEADER_BYTES + 8 * l.count * l.width, 0) + CHECKSUM_BYTES;
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, SNAPSHOT_VERSION, true);
  bytes.set(s.layoutHash.subarray(0, HASH_BYTES), 8);
  view.setUint32(24, n, true);
  view.setUint32(28, s.layers.length, true);
  let at = HEADER_BYTES;
  for (const t of s.tokens) {
    view.setUint32(at, t, true);
    at += 4;
  }
  for (const l of s.layers) {
    for (const v of [l.layer, l.width, l.first, l.count]) {
      view.setUint32(at, v, true);
      at += 4;
    }
    for (const data of [l.keys, l.values]) {
      bytes.set(new Uint8Array(data.buffer, data.byteOffset, l.count * l.width * 4), at);
      at += l.count * l.width * 4;
    }
  }
  bytes.set(sha256Of(bytes.subarray(0, at)), at);
  return bytes;
}

const bad = (why: string) => new RullamaError('bad-snapshot', `not a usable rullama state snapshot: ${why}`);

/**
 * Parses and checks a snapshot completely (magic, version, model, lengths, checksum) before
 * anything is restored, so a bad one never touches the current state.
 */
export function decodeSnapshot(bytes: Uint8Array, expectedHash: Uint8Array): Snapshot {
  if (bytes.byteLength < HEADER_BYTES + CHECKSUM_BYTES) throw bad(`${bytes.byteLength} bytes is shorter than any snapshot`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== MAGIC) throw bad('wrong magic (this is not a saved state)');
  const version = view.getUint32(4, true);
  if (version !== SNAPSHOT_VERSION) throw bad(`format version ${version}; this build reads version ${SNAPSHOT_VERSION}`);
  const body = bytes.byteLength - CHECKSUM_BYTES;
  const sum = sha256Of(bytes.subarray(0, body));
  if (!sum.every((b, i) => b === bytes[body + i])) throw bad('checksum mismatch (truncated or corrupted)');
  const layoutHash = bytes.slice(8, 8 + HASH_BYTES);
  if (!layoutHash.every((b, i) => b === expectedHash[i])) throw bad('it was saved from a different model, or with different LoRA adapters');
  const n = view.getUint32(24, true);
  const entries = view.getUint32(28, true);
  const need = (at: number, len: number) => {
    if (at + len > body) throw bad(`its lengths run past the end (${at + len} > ${body})`);
  };
  need(HEADER_BYTES, 4 * n);
  const tokens = new Uint32Array(n);
  let at = HEADER_BYTES;
  for (let i = 0; i < n; i++, at += 4) tokens[i] = view.getUint32(at, true);
  const layers: SnapshotLayer[] = [];
  for (let e = 0; e < entries; e++) {
    need(at, ENTRY_HEADER_BYTES);
    const [layer, width, first, count] = [0, 4, 8, 12].map((o) => view.getUint32(at + o, true)) as [number, number, number, number];
    at += ENTRY_HEADER_BYTES;
    const floats = count * width;
    need(at, 8 * floats);
    const copy = (from: number) => new Float32Array(bytes.slice(from, from + 4 * floats).buffer);
    layers.push({ layer, width, first, count, keys: copy(at), values: copy(at + 4 * floats) });
    at += 8 * floats;
  }
  if (at !== body) throw bad(`${body - at} unexplained bytes before the checksum`);
  return { layoutHash, tokens, layers };
}
