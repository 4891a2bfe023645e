import { RullamaError } from '../errors.js';
import type { Gemma4Config } from './config.js';

/** Keys and values of one KV-owning layer: f32 [capacity][nkv·hd] each. */
export interface LayerKv {
  readonly layer: number;
  readonly keys: GPUBuffer;
  readonly values: GPUBuffer;
  /** Slots in the buffers; position p lives in slot p % capacity. */
  readonly capacity: number;
  /** Values per slot (nkv·hd). */
  readonly width: number;
}

/**
 * The KV cache: one entry per KV-owning layer; layers that share KV read their donor's entry.
 * Global layers hold the whole context. Sliding layers keep a ring of `window + maxChunk − 1`
 * slots — the window each query needs plus the other queries of a prefill chunk — so their
 * memory does not grow with the conversation.
 */
export class KvCache {
  private readonly layers = new Map<number, LayerKv>();

  constructor(
    device: GPUDevice,
    config: Gemma4Config,
    readonly contextSize: number,
    readonly maxChunk: number,
  ) {
    if (!Number.isInteger(contextSize) || contextSize < 1) throw new RullamaError('bad-argument', `context size ${contextSize} must be a positive integer`);
    for (const layer of config.layers) {
      if (layer.kvLayer !== layer.index) continue;
      const width = layer.kvHeads * layer.headDim;
      const capacity = layer.sliding ? Math.min(contextSize, config.slidingWindow + maxChunk - 1) : contextSize;
      const make = (what: string) =>
        device.createBuffer({
          label: `layer${layer.index}.${what}`,
          size: capacity * width * 4,
          usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
        });
      this.layers.set(layer.index, { layer: layer.index, keys: make('keys'), values: make('values'), capacity, width });
    }
  }

  /** The cache a layer reads (its own, or its donor's). */
  forLayer(kvLayer: number): LayerKv {
    const kv = this.layers.get(kvLayer);
    if (!kv) throw new RullamaError('bad-argument', `layer ${kvLayer} owns no KV cache`);
    return kv;
  }

  get entries(): readonly LayerKv[] {
    return [...this.layers.values()];
  }

  get bytes(): number {
    let n = 0;
    for (const kv of this.layers.values()) n += kv.keys.size + kv.values.size;
    return n;
  }

  destroy(): void {
    for (const kv of this.layers.values()) {
      kv.keys.destroy();
      kv.values.destroy();
    }
    this.layers.clear();
  }
}
