/**
 * A uniform table of counts 1, 2, 3, … selected with a dynamic offset, so that one bind group serves
 * every token count (or split count) up to the one it was built for: a kernel declares
 * `@group(0) @binding(n) var<uniform> tokens: Count;` (`struct Count { n: u32 }`), its bind group
 * layout marks that binding `hasDynamicOffset` with {@link COUNT_BINDING_SIZE}, and each encode
 * passes {@link CountTable.offset}(n). Nothing is allocated or written per call, and one command
 * buffer may record the same binding several times with different counts.
 */

/** Bytes a count binding covers (one u32, padded to a uniform block). */
export const COUNT_BINDING_SIZE = 16;

/** The bind group layout entry of a count binding. */
export function countLayoutEntry(binding: number): GPUBindGroupLayoutEntry {
  return { binding, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform', hasDynamicOffset: true, minBindingSize: COUNT_BINDING_SIZE } };
}

export class CountTable {
  /** Byte distance between entries: the device's uniform dynamic-offset alignment (at least 16). */
  readonly stride: number;
  private current: { buffer: GPUBuffer; capacity: number } | null = null;
  private readonly retired: GPUBuffer[] = [];

  constructor(
    readonly device: GPUDevice,
    private readonly label = 'counts',
  ) {
    this.stride = Math.max(COUNT_BINDING_SIZE, device.limits.minUniformBufferOffsetAlignment);
  }

  /**
   * A buffer whose entry n − 1 (at byte (n − 1)·stride) holds n, for every n up to at least `max`.
   * The table grows by replacement; older tables stay alive (until {@link destroy}) for the bind
   * groups that use them.
   */
  buffer(max: number): GPUBuffer {
    if (this.current && this.current.capacity >= max) return this.current.buffer;
    const capacity = Math.max(64, max, 2 * (this.current?.capacity ?? 0));
    const words = this.stride / 4;
    const buffer = this.device.createBuffer({
      label: `${this.label} 1..${capacity}`,
      size: capacity * this.stride,
      usage: GPUBufferUsage.UNIFORM,
      mappedAtCreation: true,
    });
    const data = new Uint32Array(buffer.getMappedRange());
    for (let n = 1; n <= capacity; n++) data[(n - 1) * words] = n;
    buffer.unmap();
    if (this.current) this.retired.push(this.current.buffer);
    this.current = { buffer, capacity };
    return buffer;
  }

  /** The dynamic offset that selects the count n (n ≥ 1, within the capacity of the bound table). */
  offset(n: number): number {
    return (n - 1) * this.stride;
  }

  /** The bind group entry for a count binding at `binding` of the table from {@link buffer}(max). */
  entry(binding: number, max: number): GPUBindGroupEntry {
    return { binding, resource: { buffer: this.buffer(max), offset: 0, size: COUNT_BINDING_SIZE } };
  }

  /** Frees every table. Bind groups that use them stop working. */
  destroy(): void {
    this.current?.buffer.destroy();
    for (const b of this.retired) b.destroy();
    this.current = null;
    this.retired.length = 0;
  }
}
