import { RullamaError, throwIfAborted } from '../errors.js';
import {
  HEADER_CHUNK_BYTES,
  MAX_ARRAY_DEPTH,
  MAX_ARRAY_LENGTH,
  MAX_METADATA_COUNT,
  MAX_STRING_BYTES,
  MAX_TENSOR_COUNT,
  MAX_TENSOR_DIMS,
} from './limits.js';
import type { ByteSource } from './source.js';
import {
  GGML_TYPES,
  GGUFValueType,
  type GGMLType,
  type GGUFArray,
  type GGUFFile,
  type GGUFTensorInfo,
  type GGUFValue,
} from './types.js';

const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
const DEFAULT_ALIGNMENT = 32;

/** Bytes that one element of each fixed-size metadata value type occupies (absent: strings, arrays). */
export const FIXED_SIZE: Readonly<Partial<Record<GGUFValueType, number>>> = {
  [GGUFValueType.UINT8]: 1,
  [GGUFValueType.INT8]: 1,
  [GGUFValueType.BOOL]: 1,
  [GGUFValueType.UINT16]: 2,
  [GGUFValueType.INT16]: 2,
  [GGUFValueType.UINT32]: 4,
  [GGUFValueType.INT32]: 4,
  [GGUFValueType.FLOAT32]: 4,
  [GGUFValueType.UINT64]: 8,
  [GGUFValueType.INT64]: 8,
  [GGUFValueType.FLOAT64]: 8,
};

// ignoreBOM: some vocabulary entries start with U+FEFF, which must survive decoding.
const utf8 = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

/**
 * Sequential reader over a ByteSource that pulls the header in chunks as the parser needs it,
 * so a 7 GB file costs a few MiB of reads. Every length is checked against the file size
 * before any allocation.
 */
class HeaderCursor {
  private buf: Uint8Array = new Uint8Array(0);
  private view: DataView = new DataView(this.buf.buffer);
  /** Absolute file offset of buf[0]. */
  private bufStart = 0;
  /** Absolute read position. */
  pos = 0;

  constructor(
    private readonly source: ByteSource,
    private readonly signal?: AbortSignal,
  ) {}

  get remaining(): number {
    return this.source.size - this.pos;
  }

  /** Makes sure `n` bytes from `pos` are buffered; fails as truncation if the file is shorter. */
  async need(n: number): Promise<void> {
    if (this.pos + n <= this.bufStart + this.buf.byteLength) return;
    if (n > this.remaining) {
      throw new RullamaError(
        'truncated',
        `${this.source.name}: the header needs ${n} more bytes but the file ends at ${this.source.size}`,
        { offset: this.pos },
      );
    }
    throwIfAborted(this.signal);
    const length = Math.min(Math.max(n, HEADER_CHUNK_BYTES), this.remaining);
    const fresh = await this.source.read(this.pos, length, this.signal);
    this.buf = fresh;
    this.view = new DataView(fresh.buffer, fresh.byteOffset, fresh.byteLength);
    this.bufStart = this.pos;
  }

  private take(n: number): number {
    const at = this.pos - this.bufStart;
    this.pos += n;
    return at;
  }

  u8(): number {
    return this.view.getUint8(this.take(1));
  }
  u32(): number {
    return this.view.getUint32(this.take(4), true);
  }
  u64(): number {
    const at = this.pos;
    const v = this.view.getBigUint64(this.take(8), true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new RullamaError('bad-gguf', `a 64-bit count or offset is too large (${v})`, { offset: at });
    }
    return Number(v);
  }
  bytes(n: number): Uint8Array {
    const at = this.take(n);
    return this.buf.subarray(at, at + n);
  }
  /**
   * The next string when it is already buffered (the common case inside a vocabulary array),
   * else undefined with nothing consumed; the caller then takes the checked async path.
   */
  stringIfBuffered(): string | undefined {
    const at = this.pos - this.bufStart;
    if (at + 8 > this.buf.byteLength) return undefined;
    const length = this.view.getUint32(at, true);
    if (this.view.getUint32(at + 4, true) !== 0 || length > MAX_STRING_BYTES || at + 8 + length > this.buf.byteLength) return undefined;
    this.pos += 8 + length;
    return decodeString(this.buf.subarray(at + 8, at + 8 + length));
  }
  dataView(): { view: DataView; at: number } {
    return { view: this.view, at: this.pos - this.bufStart };
  }
  skip(n: number): void {
    this.pos += n;
  }
}

/** Decodes UTF-8; pure-ASCII strings (most tokens and keys) skip the TextDecoder call. */
function decodeString(bytes: Uint8Array): string {
  if (bytes.length < 32) {
    let s = '';
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i]!;
      if (b >= 0x80) return utf8.decode(bytes);
      s += String.fromCharCode(b);
    }
    return s;
  }
  return utf8.decode(bytes);
}

async function readString(cur: HeaderCursor, what: string): Promise<string> {
  await cur.need(8);
  const at = cur.pos;
  const length = cur.u64();
  if (length > MAX_STRING_BYTES || length > cur.remaining) {
    throw new RullamaError(
      'bad-gguf',
      `${what}: string length ${length} exceeds ${Math.min(MAX_STRING_BYTES, cur.remaining)} bytes available`,
      { offset: at },
    );
  }
  await cur.need(length);
  return decodeString(cur.bytes(length));
}

async function readCount(cur: HeaderCursor, what: string, max: number, minBytesEach: number): Promise<number> {
  await cur.need(8);
  const at = cur.pos;
  const count = cur.u64();
  if (count > max || count * minBytesEach > cur.remaining) {
    throw new RullamaError('bad-gguf', `${what} ${count} is impossible for a file of ${cur.remaining + cur.pos} bytes`, {
      offset: at,
    });
  }
  return count;
}

/** Reads `count` fixed-size values in one go into the matching typed array. */
async function readFixedArray(cur: HeaderCursor, type: GGUFValueType, count: number): Promise<GGUFArray> {
  const size = FIXED_SIZE[type]!;
  const n = count * size;
  await cur.need(n);
  // Copy into an aligned buffer: typed arrays need their element alignment.
  const bytes = cur.bytes(n).slice();
  const b = bytes.buffer;
  switch (type) {
    case GGUFValueType.UINT8: return bytes;
    case GGUFValueType.INT8: return new Int8Array(b);
    case GGUFValueType.BOOL: return Array.from(bytes, (x) => x !== 0);
    case GGUFValueType.UINT16: return new Uint16Array(b);
    case GGUFValueType.INT16: return new Int16Array(b);
    case GGUFValueType.UINT32: return new Uint32Array(b);
    case GGUFValueType.INT32: return new Int32Array(b);
    case GGUFValueType.FLOAT32: return new Float32Array(b);
    case GGUFValueType.UINT64: return new BigUint64Array(b);
    case GGUFValueType.INT64: return new BigInt64Array(b);
    default: return new Float64Array(b);
  }
}

function safeBig(v: bigint): number | bigint {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
}

async function readValue(cur: HeaderCursor, type: number, key: string, depth: number): Promise<GGUFValue> {
  const at = cur.pos;
  if (type === GGUFValueType.STRING) return readString(cur, `value of ${key}`);
  if (type === GGUFValueType.ARRAY) {
    if (depth >= MAX_ARRAY_DEPTH) {
      throw new RullamaError('bad-gguf', `${key}: arrays nested deeper than ${MAX_ARRAY_DEPTH}`, { offset: at });
    }
    await cur.need(4);
    const itemType = cur.u32();
    const minItem = FIXED_SIZE[itemType as GGUFValueType] ?? (itemType === GGUFValueType.STRING ? 8 : itemType === GGUFValueType.ARRAY ? 12 : 0);
    if (minItem === 0) {
      throw new RullamaError('bad-gguf', `${key}: unknown array element type ${itemType}`, { offset: at });
    }
    const count = await readCount(cur, `${key}: array length`, MAX_ARRAY_LENGTH, minItem);
    if (itemType in FIXED_SIZE) return readFixedArray(cur, itemType, count);
    const items: GGUFValue[] = new Array(count);
    if (itemType === GGUFValueType.STRING) {
      for (let i = 0; i < count; i++) items[i] = cur.stringIfBuffered() ?? (await readString(cur, `${key}[${i}]`));
    } else {
      for (let i = 0; i < count; i++) items[i] = await readValue(cur, itemType, key, depth + 1);
    }
    return items as GGUFArray;
  }
  const size = FIXED_SIZE[type as GGUFValueType];
  if (size === undefined) throw new RullamaError('bad-gguf', `${key}: unknown value type ${type}`, { offset: at - 4 });
  await cur.need(size);
  const { view, at: i } = cur.dataView();
  cur.skip(size);
  switch (type) {
    case GGUFValueType.UINT8: return view.getUint8(i);
    case GGUFValueType.INT8: return view.getInt8(i);
    case GGUFValueType.BOOL: return view.getUint8(i) !== 0;
    case GGUFValueType.UINT16: return view.getUint16(i, true);
    case GGUFValueType.INT16: return view.getInt16(i, true);
    case GGUFValueType.UINT32: return view.getUint32(i, true);
    case GGUFValueType.INT32: return view.getInt32(i, true);
    case GGUFValueType.FLOAT32: return view.getFloat32(i, true);
    case GGUFValueType.UINT64: return safeBig(view.getBigUint64(i, true));
    case GGUFValueType.INT64: return safeBig(view.getBigInt64(i, true));
    default: return view.getFloat64(i, true);
  }
}

async function readTensorInfo(cur: HeaderCursor, index: number): Promise<{ name: string; dims: number[]; type: GGMLType; relOffset: number; at: number }> {
  const at = cur.pos;
  const name = await readString(cur, `tensor ${index} name`);
  await cur.need(4);
  const nDims = cur.u32();
  if (nDims < 1 || nDims > MAX_TENSOR_DIMS) {
    throw new RullamaError('bad-gguf', `tensor ${name}: ${nDims} dimensions (1 to ${MAX_TENSOR_DIMS} allowed)`, { offset: at });
  }
  await cur.need(8 * nDims + 4 + 8);
  const dims: number[] = [];
  for (let d = 0; d < nDims; d++) {
    dims.push(cur.u64());
  }
  const type = cur.u32() as GGMLType;
  const relOffset = cur.u64();
  return { name, dims, type, relOffset, at };
}

export interface ReadGGUFOptions {
  signal?: AbortSignal;
}

/**
 * Parses and validates the header of a GGUF file (v2 or v3): metadata, tensor infos and the
 * data offset. Tensor data is not read; use `readTensorBytes` for that. Every failure is a
 * RullamaError ('bad-gguf', 'truncated', 'io', 'aborted') naming the problem and its offset.
 */
export async function readGGUF(source: ByteSource, options: ReadGGUFOptions = {}): Promise<GGUFFile> {
  const cur = new HeaderCursor(source, options.signal);
  await cur.need(Math.min(24, source.size));
  if (source.size < 24) {
    throw new RullamaError('truncated', `${source.name} is ${source.size} bytes, too short for a GGUF header`, { offset: 0 });
  }
  const magic = cur.u32();
  if (magic !== GGUF_MAGIC) {
    throw new RullamaError('bad-gguf', `${source.name} is not a GGUF file (magic 0x${magic.toString(16).padStart(8, '0')})`, { offset: 0 });
  }
  const version = cur.u32();
  if (version !== 2 && version !== 3) {
    const hint = version === 1 ? ' (GGUF v1 is obsolete)' : (version & 0xffff) === 0 ? ' (big-endian files are not supported)' : '';
    throw new RullamaError('bad-gguf', `unsupported GGUF version ${version}${hint}`, { offset: 4 });
  }
  // A tensor info takes at least 8 (name length) + 4 + 8 + 4 + 8 bytes; a KV at least 8 + 4 + 1.
  const tensorCount = await readCount(cur, 'tensor count', MAX_TENSOR_COUNT, 32);
  const kvCount = await readCount(cur, 'metadata count', MAX_METADATA_COUNT, 13);

  const metadata = new Map<string, GGUFValue>();
  for (let i = 0; i < kvCount; i++) {
    const at = cur.pos;
    const key = await readString(cur, `metadata key ${i}`);
    if (metadata.has(key)) throw new RullamaError('bad-gguf', `duplicate metadata key ${key}`, { offset: at });
    await cur.need(4);
    const type = cur.u32();
    metadata.set(key, await readValue(cur, type, key, 0));
  }

  const alignment = metadata.get('general.alignment') ?? DEFAULT_ALIGNMENT;
  if (typeof alignment !== 'number' || alignment < 1 || alignment > 1 << 20 || (alignment & (alignment - 1)) !== 0) {
    throw new RullamaError('bad-gguf', `general.alignment must be a power of two, got ${String(alignment)}`);
  }

  const raw = [];
  for (let i = 0; i < tensorCount; i++) raw.push(await readTensorInfo(cur, i));
  // A file without tensors (vocab-only) may end right after its header, unpadded; with tensors,
  // the bounds check on each tensor below catches a data section that lies past the end.
  const dataOffset = Math.ceil(cur.pos / alignment) * alignment;

  const names = new Set<string>();
  const tensors: GGUFTensorInfo[] = raw.map(({ name, dims, type, relOffset, at }) => {
    if (names.has(name)) throw new RullamaError('bad-gguf', `duplicate tensor name ${name}`, { offset: at });
    names.add(name);
    const t = GGML_TYPES.get(type);
    if (!t) throw new RullamaError('bad-gguf', `tensor ${name}: unknown ggml type ${type}`, { offset: at });
    let elementCount = 1;
    for (const n of dims) {
      elementCount *= n;
      if (!Number.isSafeInteger(elementCount)) {
        throw new RullamaError('bad-gguf', `tensor ${name}: shape [${dims.join(', ')}] overflows`, { offset: at });
      }
    }
    if (dims[0]! % t.blockSize !== 0) {
      throw new RullamaError('bad-gguf', `tensor ${name}: first dimension ${dims[0]} is not a multiple of the ${t.name} block size ${t.blockSize}`, { offset: at });
    }
    const byteSize = (elementCount / t.blockSize) * t.typeSize;
    if (relOffset % alignment !== 0) {
      throw new RullamaError('bad-gguf', `tensor ${name}: data offset ${relOffset} is not aligned to ${alignment}`, { offset: at });
    }
    const offset = dataOffset + relOffset;
    if (offset + byteSize > source.size) {
      throw new RullamaError('truncated', `tensor ${name} (${byteSize} bytes at ${offset}) runs past the end of ${source.name} (${source.size} bytes)`, { offset: at });
    }
    return { name, dims, type, offset, byteSize, elementCount };
  });

  // Overlapping tensors mean a corrupt offset table.
  const sorted = [...tensors].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const next = sorted[i]!;
    if (prev.offset + prev.byteSize > next.offset && next.byteSize > 0) {
      throw new RullamaError('bad-gguf', `tensors ${prev.name} and ${next.name} overlap`, { offset: next.offset });
    }
  }

  return { version, metadata, tensors, dataOffset, alignment, fileSize: source.size };
}

/** Looks up a tensor by name; a clear error when it is missing. */
export function findTensor(file: GGUFFile, name: string): GGUFTensorInfo {
  const t = file.tensors.find((x) => x.name === name);
  if (!t) throw new RullamaError('not-found', `the GGUF has no tensor named ${name}`);
  return t;
}

/**
 * The raw bytes of rows [firstRow, firstRow + rowCount) of a tensor, where a row is dims[0]
 * values. Reading per tensor or per row range is how weights stream without whole-file buffers.
 */
export async function readTensorBytes(
  source: ByteSource,
  tensor: GGUFTensorInfo,
  firstRow = 0,
  rowCount = tensor.elementCount / tensor.dims[0]!,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  const rows = tensor.elementCount / tensor.dims[0]!;
  if (!Number.isSafeInteger(firstRow) || !Number.isSafeInteger(rowCount) || firstRow < 0 || rowCount < 0 || firstRow + rowCount > rows) {
    throw new RullamaError('bad-argument', `rows ${firstRow}+${rowCount} are outside tensor ${tensor.name} (${rows} rows)`);
  }
  const rowBytes = tensor.byteSize / rows;
  return source.read(tensor.offset + firstRow * rowBytes, rowCount * rowBytes, signal);
}

/** Typed accessors for metadata: a missing key or a wrong type is a clear error. */
export function metaString(file: GGUFFile, key: string): string {
  const v = file.metadata.get(key);
  if (typeof v !== 'string') throw new RullamaError(v === undefined ? 'not-found' : 'bad-gguf', `metadata ${key} ${v === undefined ? 'is missing' : 'is not a string'}`);
  return v;
}

export function metaNumber(file: GGUFFile, key: string): number {
  const v = file.metadata.get(key);
  if (typeof v !== 'number') throw new RullamaError(v === undefined ? 'not-found' : 'bad-gguf', `metadata ${key} ${v === undefined ? 'is missing' : 'is not a number'}`);
  return v;
}
