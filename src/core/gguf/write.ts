/**
 * A streaming GGUF v3 writer. `planGGUF` encodes the header (metadata and tensor infos) and lays
 * out every tensor at an aligned offset; `writeGGUF` then emits the header followed by each
 * tensor's bytes, pulled one tensor at a time from a producer, into a sink. Only the header and
 * one write buffer are ever held in memory, so multi-gigabyte files stream through.
 *
 * Used by the test fixtures (random Gemma 4 models, text-only copies) and meant for exporting
 * LoRA adapters later, so it knows nothing about any model architecture.
 */
import { RullamaError, throwIfAborted } from '../errors.js';
import { GGML_TYPES, GGUFValueType, typeName, type GGMLType } from './types.js';

const GGUF_MAGIC = 0x46554747; // "GGUF" as a little-endian u32
const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** ggml's GGML_MAX_NAME is 64 bytes including the terminating NUL. */
export const GGUF_MAX_TENSOR_NAME_BYTES = 63;
const MAX_DIMS = 4;

// ---------------------------------------------------------------------------------------------
// Metadata description
// ---------------------------------------------------------------------------------------------

/** The value type of a scalar metadata value (everything but ARRAY). */
export type GGUFScalarType = Exclude<GGUFValueType, GGUFValueType.ARRAY>;

/** An array of `array` elements; arrays may nest (`{ array: { array: GGUFValueType.UINT32 } }`). */
export interface GGUFArrayType {
  readonly array: GGUFMetaType;
}

/** How one metadata value is written: a scalar type or an array type. */
export type GGUFMetaType = GGUFScalarType | GGUFArrayType;

/**
 * One metadata entry: key, type, value. Accepted values per type:
 * UINT8…INT32 → integer number in range; FLOAT32/FLOAT64 → number; UINT64/INT64 → bigint or a
 * safe-integer number; BOOL → boolean; STRING → string, or a Uint8Array of raw bytes (GGUF strings
 * are byte strings: a vocabulary may hold tokens that are not valid UTF-8, or start with a BOM
 * that a TextDecoder would drop); arrays → any ArrayLike of element values
 * (a typed array of the matching kind is copied in one go, e.g. Float32Array for FLOAT32).
 */
export type GGUFMetaEntry = readonly [key: string, type: GGUFMetaType, value: unknown];

/** Shorthand for an array type: `arrayOf(GGUFValueType.STRING)`. */
export function arrayOf(element: GGUFMetaType): GGUFArrayType {
  return { array: element };
}

export function isArrayType(type: GGUFMetaType): type is GGUFArrayType {
  return typeof type === 'object';
}

/**
 * A typed metadata list with one method per value type, for readable call sites:
 * `new GGUFMetadata().string('general.architecture', 'gemma4').u32('gemma4.block_count', 35)`.
 * Keys keep their insertion order; setting an existing key replaces its value in place.
 */
export class GGUFMetadata implements Iterable<GGUFMetaEntry> {
  private readonly map = new Map<string, GGUFMetaEntry>();

  constructor(entries: Iterable<GGUFMetaEntry> = []) {
    for (const e of entries) this.set(e[0], e[1], e[2]);
  }

  set(key: string, type: GGUFMetaType, value: unknown): this {
    this.map.set(key, [key, type, value]);
    return this;
  }
  get(key: string): GGUFMetaEntry | undefined {
    return this.map.get(key);
  }
  has(key: string): boolean {
    return this.map.has(key);
  }
  delete(key: string): boolean {
    return this.map.delete(key);
  }
  get size(): number {
    return this.map.size;
  }
  [Symbol.iterator](): Iterator<GGUFMetaEntry> {
    return this.map.values();
  }
  entries(): GGUFMetaEntry[] {
    return [...this.map.values()];
  }

  u8(key: string, v: number): this { return this.set(key, GGUFValueType.UINT8, v); }
  i8(key: string, v: number): this { return this.set(key, GGUFValueType.INT8, v); }
  u16(key: string, v: number): this { return this.set(key, GGUFValueType.UINT16, v); }
  i16(key: string, v: number): this { return this.set(key, GGUFValueType.INT16, v); }
  u32(key: string, v: number): this { return this.set(key, GGUFValueType.UINT32, v); }
  i32(key: string, v: number): this { return this.set(key, GGUFValueType.INT32, v); }
  u64(key: string, v: number | bigint): this { return this.set(key, GGUFValueType.UINT64, v); }
  i64(key: string, v: number | bigint): this { return this.set(key, GGUFValueType.INT64, v); }
  f32(key: string, v: number): this { return this.set(key, GGUFValueType.FLOAT32, v); }
  f64(key: string, v: number): this { return this.set(key, GGUFValueType.FLOAT64, v); }
  bool(key: string, v: boolean): this { return this.set(key, GGUFValueType.BOOL, v); }
  string(key: string, v: string): this { return this.set(key, GGUFValueType.STRING, v); }
  /** An array of `element` values; `element` may itself be an array type. */
  array(key: string, element: GGUFMetaType, values: ArrayLike<unknown>): this {
    return this.set(key, arrayOf(element), values);
  }
}

// ---------------------------------------------------------------------------------------------
// Tensor layout
// ---------------------------------------------------------------------------------------------

export interface GGUFTensorSpec {
  readonly name: string;
  /** GGUF order, fastest-varying first (a linear layer is [in, out]). */
  readonly dims: readonly number[];
  readonly type: GGMLType;
}

export interface GGUFPlannedTensor extends GGUFTensorSpec {
  /** Position in the plan's tensor list. */
  readonly index: number;
  readonly elementCount: number;
  /** Exact number of bytes the producer must deliver. */
  readonly byteSize: number;
  /** Offset relative to the start of the data section (what the header stores). */
  readonly relOffset: number;
  /** Absolute offset in the file. */
  readonly offset: number;
}

export interface GGUFPlanInput {
  metadata: Iterable<GGUFMetaEntry>;
  tensors: readonly GGUFTensorSpec[];
  /**
   * Data alignment (a power of two). When it differs from 32, a `general.alignment` u32 entry is
   * added unless the metadata already holds one with the same value. Default: the metadata's
   * `general.alignment`, else 32.
   */
  alignment?: number;
}

export interface GGUFPlan {
  /** Magic, version, counts, metadata and tensor infos, padded up to `dataOffset`. */
  readonly header: Uint8Array;
  readonly dataOffset: number;
  readonly alignment: number;
  readonly tensors: readonly GGUFPlannedTensor[];
  /** Size of the finished file: data offset plus every tensor padded to the alignment. */
  readonly fileSize: number;
}

function bad(message: string): RullamaError {
  return new RullamaError('bad-argument', message);
}

const alignUp = (n: number, a: number): number => Math.ceil(n / a) * a;

/** Bytes that `dims` of `type` take; throws a clear error when the shape does not fit the type. */
export function tensorByteSize(name: string, dims: readonly number[], type: GGMLType): { elementCount: number; byteSize: number } {
  const t = GGML_TYPES.get(type);
  if (!t) throw bad(`tensor ${name}: unknown ggml type ${String(type)}`);
  if (dims.length < 1 || dims.length > MAX_DIMS) {
    throw bad(`tensor ${name}: ${dims.length} dimensions (1 to ${MAX_DIMS} allowed)`);
  }
  let elementCount = 1;
  for (const n of dims) {
    if (!Number.isSafeInteger(n) || n < 0) throw bad(`tensor ${name}: invalid dimension ${n} in [${dims.join(', ')}]`);
    elementCount *= n;
  }
  if (!Number.isSafeInteger(elementCount)) throw bad(`tensor ${name}: shape [${dims.join(', ')}] is too large`);
  if (dims[0]! % t.blockSize !== 0) {
    throw bad(`tensor ${name}: first dimension ${dims[0]} is not a multiple of the ${t.name} block size ${t.blockSize}`);
  }
  return { elementCount, byteSize: (elementCount / t.blockSize) * t.typeSize };
}

// ---------------------------------------------------------------------------------------------
// Header encoding
// ---------------------------------------------------------------------------------------------

const textEncoder = new TextEncoder();
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** A growable little-endian byte buffer. */
class ByteWriter {
  buf = new Uint8Array(1 << 16);
  view = new DataView(this.buf.buffer);
  pos = 0;

  ensure(n: number): void {
    if (this.pos + n <= this.buf.byteLength) return;
    let size = this.buf.byteLength * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number): void { this.ensure(1); this.view.setUint8(this.pos, v); this.pos += 1; }
  i8(v: number): void { this.ensure(1); this.view.setInt8(this.pos, v); this.pos += 1; }
  u16(v: number): void { this.ensure(2); this.view.setUint16(this.pos, v, true); this.pos += 2; }
  i16(v: number): void { this.ensure(2); this.view.setInt16(this.pos, v, true); this.pos += 2; }
  u32(v: number): void { this.ensure(4); this.view.setUint32(this.pos, v, true); this.pos += 4; }
  i32(v: number): void { this.ensure(4); this.view.setInt32(this.pos, v, true); this.pos += 4; }
  f32(v: number): void { this.ensure(4); this.view.setFloat32(this.pos, v, true); this.pos += 4; }
  f64(v: number): void { this.ensure(8); this.view.setFloat64(this.pos, v, true); this.pos += 8; }
  u64(v: bigint): void { this.ensure(8); this.view.setBigUint64(this.pos, v, true); this.pos += 8; }
  i64(v: bigint): void { this.ensure(8); this.view.setBigInt64(this.pos, v, true); this.pos += 8; }
  bytes(b: Uint8Array): void { this.ensure(b.byteLength); this.buf.set(b, this.pos); this.pos += b.byteLength; }

  /** A GGUF string given as raw bytes (tokens need not be valid UTF-8). */
  rawString(b: Uint8Array): void {
    this.u64(BigInt(b.byteLength));
    this.bytes(b);
  }

  /** A GGUF string: u64 byte length then UTF-8 bytes (no terminator). */
  string(s: string): void {
    // ASCII fast path (most keys, tensor names and tokens); otherwise encode into place.
    const n = s.length;
    this.ensure(8 + n * 3);
    const lenAt = this.pos;
    let p = lenAt + 8;
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) break;
      this.buf[p++] = c;
    }
    if (i < n) {
      const { written } = textEncoder.encodeInto(s.slice(i), this.buf.subarray(p));
      p += written;
    }
    this.view.setBigUint64(lenAt, BigInt(p - lenAt - 8), true);
    this.pos = p;
  }
}

const INT_RANGE: Partial<Record<GGUFValueType, readonly [number, number]>> = {
  [GGUFValueType.UINT8]: [0, 0xff],
  [GGUFValueType.INT8]: [-0x80, 0x7f],
  [GGUFValueType.UINT16]: [0, 0xffff],
  [GGUFValueType.INT16]: [-0x8000, 0x7fff],
  [GGUFValueType.UINT32]: [0, 0xffffffff],
  [GGUFValueType.INT32]: [-0x80000000, 0x7fffffff],
};

const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;

/** Typed-array constructors whose bytes equal the GGUF encoding on a little-endian host. */
const MATCHING_TYPED_ARRAY: Partial<Record<GGUFValueType, abstract new (...args: never[]) => ArrayBufferView>> = {
  [GGUFValueType.UINT8]: Uint8Array,
  [GGUFValueType.INT8]: Int8Array,
  [GGUFValueType.UINT16]: Uint16Array,
  [GGUFValueType.INT16]: Int16Array,
  [GGUFValueType.UINT32]: Uint32Array,
  [GGUFValueType.INT32]: Int32Array,
  [GGUFValueType.FLOAT32]: Float32Array,
  [GGUFValueType.FLOAT64]: Float64Array,
  [GGUFValueType.UINT64]: BigUint64Array,
  [GGUFValueType.INT64]: BigInt64Array,
};

function typeLabel(type: GGUFMetaType): string {
  return isArrayType(type) ? `array of ${typeLabel(type.array)}` : (GGUFValueType[type] ?? `type ${String(type)}`);
}

function toBigInt(key: string, v: unknown, type: GGUFValueType): bigint {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isSafeInteger(v)) return BigInt(v);
  throw bad(`metadata ${key}: ${GGUFValueType[type]} needs a bigint or a safe integer, got ${String(v)}`);
}

function writeScalar(w: ByteWriter, key: string, type: GGUFScalarType, v: unknown): void {
  const range = INT_RANGE[type];
  if (range) {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < range[0] || v > range[1]) {
      throw bad(`metadata ${key}: ${GGUFValueType[type]} needs an integer in [${range[0]}, ${range[1]}], got ${String(v)}`);
    }
  }
  switch (type) {
    case GGUFValueType.UINT8: return w.u8(v as number);
    case GGUFValueType.INT8: return w.i8(v as number);
    case GGUFValueType.UINT16: return w.u16(v as number);
    case GGUFValueType.INT16: return w.i16(v as number);
    case GGUFValueType.UINT32: return w.u32(v as number);
    case GGUFValueType.INT32: return w.i32(v as number);
    case GGUFValueType.FLOAT32:
    case GGUFValueType.FLOAT64:
      if (typeof v !== 'number') throw bad(`metadata ${key}: ${GGUFValueType[type]} needs a number, got ${typeof v}`);
      return type === GGUFValueType.FLOAT32 ? w.f32(v) : w.f64(v);
    case GGUFValueType.BOOL:
      if (typeof v !== 'boolean') throw bad(`metadata ${key}: BOOL needs a boolean, got ${typeof v}`);
      return w.u8(v ? 1 : 0);
    case GGUFValueType.STRING:
      if (v instanceof Uint8Array) return w.rawString(v);
      if (typeof v !== 'string') throw bad(`metadata ${key}: STRING needs a string or its raw bytes, got ${typeof v}`);
      return w.string(v);
    case GGUFValueType.UINT64: {
      const b = toBigInt(key, v, type);
      if (b < 0n || b > U64_MAX) throw bad(`metadata ${key}: ${b} is outside UINT64`);
      return w.u64(b);
    }
    case GGUFValueType.INT64: {
      const b = toBigInt(key, v, type);
      if (b < I64_MIN || b > I64_MAX) throw bad(`metadata ${key}: ${b} is outside INT64`);
      return w.i64(b);
    }
    default:
      throw bad(`metadata ${key}: unknown value type ${String(type)}`);
  }
}

function isArrayLike(v: unknown): v is ArrayLike<unknown> {
  return Array.isArray(v) || (ArrayBuffer.isView(v) && !(v instanceof DataView));
}

function writeValue(w: ByteWriter, key: string, type: GGUFMetaType, v: unknown): void {
  if (!isArrayType(type)) return writeScalar(w, key, type, v);
  if (!isArrayLike(v)) throw bad(`metadata ${key}: ${typeLabel(type)} needs an array, got ${typeof v}`);
  const element = type.array;
  w.u32(isArrayType(element) ? GGUFValueType.ARRAY : element);
  w.u64(BigInt(v.length));
  if (isArrayType(element)) {
    for (let i = 0; i < v.length; i++) writeValue(w, key, element, v[i]);
    return;
  }
  // Bulk copy when the caller passed exactly the matching typed array (on little-endian hosts).
  const ctor = MATCHING_TYPED_ARRAY[element];
  if (LITTLE_ENDIAN_HOST && ctor && v instanceof ctor) {
    const view = v as unknown as ArrayBufferView;
    w.bytes(new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
    return;
  }
  for (let i = 0; i < v.length; i++) writeScalar(w, `${key}[${i}]`, element, v[i]);
}

/**
 * Encodes the header and lays out the tensors. Validates every metadata value against its type,
 * rejects duplicate keys and tensor names, tensor names over 63 bytes, shapes that do not fit
 * their type's block size, and alignments that are not powers of two.
 */
export function planGGUF(input: GGUFPlanInput): GGUFPlan {
  const entries: GGUFMetaEntry[] = [];
  const seen = new Set<string>();
  for (const e of input.metadata) {
    const [key] = e;
    if (typeof key !== 'string' || key.length === 0) throw bad('metadata keys must be non-empty strings');
    if (seen.has(key)) throw bad(`duplicate metadata key ${key}`);
    seen.add(key);
    entries.push(e);
  }

  const metaAlign = entries.find((e) => e[0] === 'general.alignment');
  if (metaAlign && (metaAlign[1] !== GGUFValueType.UINT32 || typeof metaAlign[2] !== 'number')) {
    throw bad('general.alignment must be a UINT32 entry');
  }
  const alignment = input.alignment ?? (metaAlign?.[2] as number | undefined) ?? GGUF_DEFAULT_ALIGNMENT;
  if (!Number.isInteger(alignment) || alignment < 1 || alignment > 1 << 20 || (alignment & (alignment - 1)) !== 0) {
    throw bad(`alignment must be a power of two, got ${alignment}`);
  }
  if (metaAlign && metaAlign[2] !== alignment) {
    throw bad(`alignment ${alignment} contradicts general.alignment = ${String(metaAlign[2])}`);
  }
  if (!metaAlign && alignment !== GGUF_DEFAULT_ALIGNMENT) {
    entries.push(['general.alignment', GGUFValueType.UINT32, alignment]);
  }

  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(GGUF_VERSION);
  w.u64(BigInt(input.tensors.length));
  w.u64(BigInt(entries.length));
  for (const [key, type, value] of entries) {
    w.string(key);
    w.u32(isArrayType(type) ? GGUFValueType.ARRAY : type);
    writeValue(w, key, type, value);
  }

  const names = new Set<string>();
  const laid: Omit<GGUFPlannedTensor, 'offset'>[] = [];
  let rel = 0;
  input.tensors.forEach((t, index) => {
    if (typeof t.name !== 'string' || t.name.length === 0) throw bad(`tensor ${index} has no name`);
    if (names.has(t.name)) throw bad(`duplicate tensor name ${t.name}`);
    names.add(t.name);
    const nameBytes = textEncoder.encode(t.name).byteLength;
    if (nameBytes > GGUF_MAX_TENSOR_NAME_BYTES) {
      throw bad(`tensor name ${t.name} is ${nameBytes} bytes; ggml allows at most ${GGUF_MAX_TENSOR_NAME_BYTES}`);
    }
    const { elementCount, byteSize } = tensorByteSize(t.name, t.dims, t.type);
    w.string(t.name);
    w.u32(t.dims.length);
    for (const n of t.dims) w.u64(BigInt(n));
    w.u32(t.type);
    w.u64(BigInt(rel));
    laid.push({ name: t.name, dims: [...t.dims], type: t.type, index, elementCount, byteSize, relOffset: rel });
    rel += alignUp(byteSize, alignment);
  });

  const dataOffset = alignUp(w.pos, alignment);
  w.ensure(dataOffset - w.pos);
  w.buf.fill(0, w.pos, dataOffset);
  w.pos = dataOffset;
  const header = w.buf.slice(0, dataOffset);
  const tensors = laid.map((t) => ({ ...t, offset: dataOffset + t.relOffset }));
  return { header, dataOffset, alignment, tensors, fileSize: dataOffset + rel };
}

// ---------------------------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------------------------

/** Where the bytes go. `write` must have consumed (or copied) the bytes when its promise settles. */
export interface GGUFSink {
  write(bytes: Uint8Array): Promise<void>;
}

/** What a producer may return for one tensor: all bytes at once, or chunks in order. */
export type TensorBytes = Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

/**
 * Supplies the data of one tensor, exactly `tensor.byteSize` bytes. A chunk may be reused by the
 * producer once the writer asks for the next one (the writer copies or writes it before that).
 */
export type TensorProducer = (tensor: GGUFPlannedTensor) => TensorBytes | Promise<TensorBytes>;

export interface WriteGGUFOptions {
  signal?: AbortSignal;
  /** Small chunks are gathered into a buffer of this size before reaching the sink (default 8 MiB). */
  bufferBytes?: number;
  /** Called after each tensor's bytes have been handed on. */
  onTensor?: (tensor: GGUFPlannedTensor, bytesSoFar: number) => void;
}

/** Gathers small writes into large ones; large chunks pass straight through. */
class BufferedSink {
  private readonly buf: Uint8Array;
  private fill = 0;
  written = 0;

  constructor(private readonly sink: GGUFSink, size: number) {
    this.buf = new Uint8Array(size);
  }

  async write(bytes: Uint8Array): Promise<void> {
    this.written += bytes.byteLength;
    if (this.fill + bytes.byteLength <= this.buf.byteLength) {
      this.buf.set(bytes, this.fill);
      this.fill += bytes.byteLength;
      if (this.fill === this.buf.byteLength) await this.flush();
      return;
    }
    await this.flush();
    if (bytes.byteLength >= this.buf.byteLength) {
      await this.sink.write(bytes);
    } else {
      this.buf.set(bytes, 0);
      this.fill = bytes.byteLength;
    }
  }

  async zeros(n: number): Promise<void> {
    if (n > 0) await this.write(new Uint8Array(n));
  }

  async flush(): Promise<void> {
    if (this.fill === 0) return;
    const n = this.fill;
    this.fill = 0;
    await this.sink.write(this.buf.subarray(0, n));
  }
}

function isAsyncIterable(x: unknown): x is AsyncIterable<Uint8Array> {
  return x != null && typeof (x as AsyncIterable<Uint8Array>)[Symbol.asyncIterator] === 'function';
}

/**
 * Writes the planned file: header, then each tensor's bytes (from `produce`, in plan order), each
 * padded with zeros to the alignment. Throws RullamaError('bad-argument') naming the tensor when a
 * producer delivers more or fewer bytes than its shape and type require; nothing past the tensor's
 * slot is written in that case. Returns the number of bytes written (= plan.fileSize).
 */
export async function writeGGUF(plan: GGUFPlan, sink: GGUFSink, produce: TensorProducer, options: WriteGGUFOptions = {}): Promise<number> {
  const out = new BufferedSink(sink, Math.max(4096, options.bufferBytes ?? 8 << 20));
  await out.write(plan.header);
  for (const t of plan.tensors) {
    throwIfAborted(options.signal);
    const data = await produce(t);
    let n = 0;
    const take = async (chunk: Uint8Array): Promise<void> => {
      if (!(chunk instanceof Uint8Array)) {
        throw bad(`tensor ${t.name}: the producer yielded ${typeof chunk}, not a Uint8Array`);
      }
      if (n + chunk.byteLength > t.byteSize) {
        throw bad(`tensor ${t.name}: the producer delivered more than the ${t.byteSize} bytes that ${typeName(t.type)} [${t.dims.join(', ')}] takes`);
      }
      n += chunk.byteLength;
      await out.write(chunk);
    };
    if (data instanceof Uint8Array) {
      await take(data);
    } else if (isAsyncIterable(data)) {
      for await (const chunk of data) {
        throwIfAborted(options.signal);
        await take(chunk);
      }
    } else {
      for (const chunk of data) {
        throwIfAborted(options.signal);
        await take(chunk);
      }
    }
    if (n !== t.byteSize) {
      throw bad(`tensor ${t.name}: the producer delivered ${n} bytes, but ${typeName(t.type)} [${t.dims.join(', ')}] takes ${t.byteSize}`);
    }
    await out.zeros(alignUp(t.byteSize, plan.alignment) - t.byteSize);
    options.onTensor?.(t, out.written);
  }
  await out.flush();
  if (out.written !== plan.fileSize) {
    throw new RullamaError('io', `wrote ${out.written} bytes but the plan promised ${plan.fileSize}`);
  }
  return out.written;
}

// ---------------------------------------------------------------------------------------------
// Sinks
// ---------------------------------------------------------------------------------------------

/** The part of Node's `fs.promises.FileHandle` the sink needs (no node: import here). */
export interface FileHandleLike {
  write(buffer: Uint8Array, offset: number, length: number, position?: number | null): Promise<{ bytesWritten: number }>;
}

/** A sink over a Node file handle opened for writing, appending at the handle's position. */
export function fileHandleSink(handle: FileHandleLike): GGUFSink {
  return {
    async write(bytes) {
      let done = 0;
      while (done < bytes.byteLength) {
        const { bytesWritten } = await handle.write(bytes, done, bytes.byteLength - done, null);
        if (bytesWritten <= 0) throw new RullamaError('io', 'the file accepted no bytes');
        done += bytesWritten;
      }
    },
  };
}

/** A sink over a WHATWG WritableStream (browser file system access, OPFS, network uploads). */
export function writableStreamSink(writer: WritableStreamDefaultWriter<Uint8Array>): GGUFSink {
  // The stream may keep the chunk queued, so hand it a copy that the writer's buffer cannot overwrite.
  return { write: (bytes) => writer.write(bytes.slice()) };
}

/** An in-memory sink for small files and tests; `bytes()` returns everything written so far. */
export function memorySink(): GGUFSink & { bytes(): Uint8Array } {
  const parts: Uint8Array[] = [];
  let total = 0;
  return {
    async write(bytes) {
      parts.push(bytes.slice());
      total += bytes.byteLength;
    },
    bytes() {
      const all = new Uint8Array(total);
      let at = 0;
      for (const p of parts) {
        all.set(p, at);
        at += p.byteLength;
      }
      return all;
    },
  };
}

/** Passes every chunk to `observe` (e.g. a hash) before forwarding it to `sink`. */
export function tapSink(sink: GGUFSink, observe: (bytes: Uint8Array) => void): GGUFSink {
  return {
    write(bytes) {
      observe(bytes);
      return sink.write(bytes);
    },
  };
}
