import { RullamaError, throwIfAborted } from '../errors.js';
import { readTensorBytes } from '../gguf/read.js';
import type { ByteSource } from '../gguf/source.js';
import type { GGUFTensorInfo } from '../gguf/types.js';
import type { ModelTensors } from './tensors.js';

/** One GPU buffer holding rows [firstRow, firstRow + rows) of a tensor, in GGUF byte layout. */
export interface WeightTile {
  readonly buffer: GPUBuffer;
  readonly firstRow: number;
  readonly rows: number;
}

export interface GpuTensor {
  readonly info: GGUFTensorInfo;
  /** Values per row (dims[0]). */
  readonly cols: number;
  readonly tiles: readonly WeightTile[];
}

export interface UploadProgress {
  loaded: number;
  total: number;
  tensor: string;
}

export interface UploadOptions {
  signal?: AbortSignal;
  onProgress?: (p: UploadProgress) => void;
  /** Largest buffer to create; defaults to the device's binding and buffer limits. */
  maxTileBytes?: number;
  /**
   * Upload the per-layer-embedding table too (E2B: 4.7 GB), so each token's rows are gathered on
   * the GPU: decode steps then chain there without the CPU knowing the token (see GpuForward).
   */
  perLayerTable?: boolean;
}

/** Bytes per read-and-write step while streaming a tensor to the GPU. */
const UPLOAD_CHUNK_BYTES = 16 << 20;
/** Kernels address weights with 32-bit byte offsets. */
const ADDRESSABLE_BYTES = 2 ** 32 - 4;

/**
 * The model's weights on the GPU, uploaded tensor by tensor while streaming from the source, with
 * no whole-tensor copy in memory. A tensor larger than the device allows in one binding is split
 * into row tiles. The per-layer-embedding table is uploaded only when asked (by default PleRows
 * reads its rows on the CPU), and rope_freqs never (the rope kernel takes its frequencies, built on
 * the CPU).
 */
export class GpuWeights {
  private readonly byTensor = new Map<GGUFTensorInfo, GpuTensor>();
  private bytesInUse = 0;

  private constructor(private readonly device: GPUDevice) {}

  static async upload(device: GPUDevice, source: ByteSource, tensors: ModelTensors, options: UploadOptions = {}): Promise<GpuWeights> {
    const list = [
      tensors.tokenEmbd, tensors.outputNorm, tensors.pleModelProj, tensors.pleProjNorm,
      options.perLayerTable ? tensors.pleTokenEmbd : null,
      ...tensors.layers.flatMap((l) => Object.values(l) as (GGUFTensorInfo | null)[]),
    ].filter((t): t is GGUFTensorInfo => t !== null);
    const total = list.reduce((n, t) => n + t.byteSize, 0);
    const limit = Math.min(
      options.maxTileBytes ?? Infinity,
      device.limits.maxStorageBufferBindingSize,
      device.limits.maxBufferSize,
      ADDRESSABLE_BYTES,
    );
    const weights = new GpuWeights(device);
    let loaded = 0;
    try {
      for (const t of list) {
        await weights.uploadTensor(source, t, limit, options.signal, (n) => {
          loaded += n;
          options.onProgress?.({ loaded, total, tensor: t.name });
        });
      }
    } catch (e) {
      weights.destroy();
      throw e;
    }
    return weights;
  }

  /** GPU bytes held by the weights. */
  get bytes(): number {
    return this.bytesInUse;
  }

  /** Whether the tensor was uploaded. */
  has(info: GGUFTensorInfo | null): boolean {
    return info !== null && this.byTensor.has(info);
  }

  get(info: GGUFTensorInfo): GpuTensor {
    const t = this.byTensor.get(info);
    if (!t) throw new RullamaError('not-found', `tensor ${info.name} was not uploaded`);
    return t;
  }

  /** The only tile of a tensor that must not be split (everything but the big embedding). */
  single(info: GGUFTensorInfo): GPUBuffer {
    const t = this.get(info);
    if (t.tiles.length !== 1) throw new RullamaError('unsupported', `tensor ${info.name} is split into ${t.tiles.length} tiles where one buffer is needed`);
    return t.tiles[0]!.buffer;
  }

  destroy(): void {
    for (const t of this.byTensor.values()) for (const tile of t.tiles) tile.buffer.destroy();
    this.byTensor.clear();
    this.bytesInUse = 0;
  }

  private async uploadTensor(source: ByteSource, info: GGUFTensorInfo, limit: number, signal: AbortSignal | undefined, progress: (n: number) => void) {
    const cols = info.dims[0]!;
    const rows = info.elementCount / cols;
    const rowBytes = info.byteSize / rows;
    // Tiles hold a multiple of 4 rows so every tile and chunk is 4-byte aligned for writeBuffer.
    const rowsPerTile = Math.max(4, Math.floor(limit / rowBytes / 4) * 4);
    if (rowsPerTile * rowBytes > limit && rows > 1) {
      throw new RullamaError('oom', `tensor ${info.name}: a row of ${rowBytes} bytes does not fit this GPU's ${limit}-byte buffers`);
    }
    const tiles: WeightTile[] = [];
    for (let firstRow = 0; firstRow < rows; firstRow += rowsPerTile) {
      const tileRows = Math.min(rowsPerTile, rows - firstRow);
      const size = Math.ceil((tileRows * rowBytes) / 4) * 4;
      const label = tiles.length === 0 && tileRows === rows ? info.name : `${info.name}[${firstRow}..${firstRow + tileRows})`;
      this.device.pushErrorScope('out-of-memory');
      const buffer = this.device.createBuffer({ label, size: Math.max(size, 4), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
      const oom = await this.device.popErrorScope();
      if (oom) {
        buffer.destroy();
        throw new RullamaError('oom', `the GPU ran out of memory uploading ${info.name} (${this.bytesInUse} bytes already in use)`);
      }
      tiles.push({ buffer, firstRow, rows: tileRows });
      this.bytesInUse += buffer.size;
      const rowsPerChunk = Math.max(4, Math.floor(UPLOAD_CHUNK_BYTES / rowBytes / 4) * 4);
      for (let r = 0; r < tileRows; r += rowsPerChunk) {
        throwIfAborted(signal);
        const n = Math.min(rowsPerChunk, tileRows - r);
        const bytes = await readTensorBytes(source, info, firstRow + r, n, signal);
        const padded = bytes.byteLength % 4 === 0 ? (bytes as Uint8Array<ArrayBuffer>) : copyPadded(bytes);
        this.device.queue.writeBuffer(buffer, r * rowBytes, padded);
        progress(bytes.byteLength);
      }
    }
    this.byTensor.set(info, { info, cols, tiles });
  }
}

function copyPadded(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
  out.set(bytes);
  return out;
}
