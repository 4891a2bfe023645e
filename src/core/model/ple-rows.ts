import { readTensorBytes } from '../gguf/read.js';
import type { ByteSource } from '../gguf/source.js';
import type { GGUFTensorInfo } from '../gguf/types.js';
import { dequantize } from '../quant/dequant.js';

/** CPU time spent fetching and dequantising rows (cache misses and hits), for benchmarks. */
export const pleCpu = { ms: 0, rows: 0, misses: 0 };

/** Rows read from the source at once. */
const PARALLEL_READS = 32;

/** Rows kept in memory; a conversation reuses most of its tokens. 4,096 E2B rows are 140 MiB of f32. */
const DEFAULT_CACHE_ROWS = 1024;

/**
 * The per-layer-embedding table (E2B: [8960, 262144] BF16, 4.7 GB) never goes to the GPU: each
 * token needs one 8,960-value row, read from the source on demand and kept in a small LRU cache.
 */
export class PleRows {
  private readonly cache = new Map<number, Float32Array>();

  constructor(
    private readonly source: ByteSource,
    private readonly table: GGUFTensorInfo,
    private readonly maxRows = DEFAULT_CACHE_ROWS,
  ) {}

  /** Row width (layers × per-layer width). */
  get width(): number {
    return this.table.dims[0]!;
  }

  /** The f32 row of each token, concatenated in order ([tokens][width]). */
  async rows(tokens: readonly number[], signal?: AbortSignal): Promise<Float32Array> {
    const t0 = performance.now();
    const out = new Float32Array(tokens.length * this.width);
    // Rows are read PARALLEL_READS at a time: a prompt of new tokens is mostly cache misses, each a
    // small file read, and one read after another left the GPU idle for most of a long prefill.
    for (let i = 0; i < tokens.length; i += PARALLEL_READS) {
      const batch = tokens.slice(i, i + PARALLEL_READS);
      const rows = await Promise.all(batch.map((token) => this.row(token, signal)));
      rows.forEach((row, j) => out.set(row, (i + j) * this.width));
    }
    pleCpu.ms += performance.now() - t0;
    pleCpu.rows += tokens.length;
    return out;
  }

  private async row(token: number, signal?: AbortSignal): Promise<Float32Array> {
    const hit = this.cache.get(token);
    if (hit) {
      this.cache.delete(token); // re-insert: Map order is the LRU order
      this.cache.set(token, hit);
      return hit;
    }
    pleCpu.misses++;
    const bytes = await readTensorBytes(this.source, this.table, token, 1, signal);
    const row = dequantize(this.table.type, bytes, this.width);
    this.cache.set(token, row);
    if (this.cache.size > this.maxRows) this.cache.delete(this.cache.keys().next().value!);
    return row;
  }
}
