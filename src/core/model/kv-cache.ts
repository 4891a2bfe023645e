import { RullamaError } from '../errors.js';
import type { Gemma4Config } from './config.js';
import { checkBufferSize } from '../gpu/buffers.js';
import type { SnapshotLayer } from './snapshot.js';

/** Positions first … first+count−1 of a ring of `capacity` slots, as contiguous slot runs. */
function slotRuns(capacity: number, first: number, count: number): { slot: number; position: number; count: number }[] {
  const runs = [];
  for (let p = first; p < first + count; ) {
    const slot = p % capacity;
    const n = Math.min(first + count - p, capacity - slot);
    runs.push({ slot, position: p, count: n });
    p += n;
  }
  return runs;
}

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
      checkBufferSize(device, `the KV cache of layer ${layer.index}`, capacity * width * 4);
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

  /** Reads positions [first, first + count) of each listed layer back to the CPU. */
  async read(device: GPUDevice, ranges: readonly { layer: number; first: number; count: number }[]): Promise<SnapshotLayer[]> {
    const total = ranges.reduce((n, r) => n + 2 * r.count * this.forLayer(r.layer).width * 4, 0);
    const staging = device.createBuffer({ label: 'kv readback', size: Math.max(4, total), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    try {
      const encoder = device.createCommandEncoder({ label: 'kv readback' });
      let at = 0;
      const offsets: number[] = [];
      for (const r of ranges) {
        const kv = this.forLayer(r.layer);
        for (const buffer of [kv.keys, kv.values]) {
          offsets.push(at);
          for (const run of slotRuns(kv.capacity, r.first, r.count)) {
            encoder.copyBufferToBuffer(buffer, run.slot * kv.width * 4, staging, at, run.count * kv.width * 4);
            at += run.count * kv.width * 4;
          }
        }
      }
      device.queue.submit([encoder.finish()]);
      await staging.mapAsync(GPUMapMode.READ);
      const all = staging.getMappedRange();
      return ranges.map((r, i) => {
        const { width } = this.forLayer(r.layer);
        const floats = r.count * width;
        const keys = new Float32Array(all.slice(offsets[2 * i]!, offsets[2 * i]! + floats * 4));
        const values = new Float32Array(all.slice(offsets[2 * i + 1]!, offsets[2 * i + 1]! + floats * 4));
        return { layer: r.layer, width, first: r.first, count: r.count, keys, values };
      });
    } finally {
      staging.destroy();
    }
  }

  /** Writes saved positions back into their ring slots. The caller has checked the shapes. */
  write(device: GPUDevice, layers: readonly SnapshotLayer[]): void {
    for (const l of layers) {
      const kv = this.forLayer(l.layer);
      for (const run of slotRuns(kv.capacity, l.first, l.count)) {
        const from = (run.position - l.first) * kv.width;
        const floats = run.count * kv.width;
        device.queue.writeBuffer(kv.keys, run.slot * kv.width * 4, l.keys, from, floats);
        device.queue.writeBuffer(kv.values, run.slot * kv.width * 4, l.values, from, floats);
      }
    }
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
