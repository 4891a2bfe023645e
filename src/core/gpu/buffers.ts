import { RullamaError } from '../errors.js';
/** Small helpers for moving arrays to and from the GPU. */

/** A storage buffer holding `data` (padded to 4 bytes). */
export function uploadStorage(device: GPUDevice, data: ArrayBufferView, label: string, extraUsage = 0): GPUBuffer {
  const size = Math.max(4, Math.ceil(data.byteLength / 4) * 4);
  const buffer = device.createBuffer({
    label,
    size,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC | extraUsage,
    mappedAtCreation: true,
  });
  new Uint8Array(buffer.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  buffer.unmap();
  return buffer;
}

/** A uniform buffer from 32-bit words (u32 or f32 views share the bytes). */
export function uploadUniform(device: GPUDevice, words: Uint32Array<ArrayBuffer> | Float32Array<ArrayBuffer>, label: string): GPUBuffer {
  const buffer = device.createBuffer({ label, size: Math.ceil(words.byteLength / 16) * 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(buffer, 0, words);
  return buffer;
}

/** Copies `byteLength` bytes of a storage buffer back to the CPU. */
export async function readBack(device: GPUDevice, source: GPUBuffer, byteLength = source.size): Promise<ArrayBuffer> {
  const staging = device.createBuffer({ label: 'readback', size: byteLength, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const encoder = device.createCommandEncoder();
  encoder.copyBufferToBuffer(source, 0, staging, 0, byteLength);
  device.queue.submit([encoder.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const copy = staging.getMappedRange().slice(0);
  staging.destroy();
  return copy;
}

/** The first f32 of each buffer (COPY_SRC), read back in one submit (e.g. the layers' output scales). */
export async function readFirstFloats(device: GPUDevice, buffers: readonly GPUBuffer[]): Promise<Float32Array> {
  const staging = device.createBuffer({ size: Math.max(16, 4 * buffers.length), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    const encoder = device.createCommandEncoder();
    buffers.forEach((b, i) => encoder.copyBufferToBuffer(b, 0, staging, 4 * i, 4));
    device.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    return new Float32Array(staging.getMappedRange().slice(0, 4 * buffers.length));
  } finally {
    staging.destroy();
  }
}

/** A buffer larger than the device allows would fail later with an untyped error: refuse it here. */
export function checkBufferSize(device: GPUDevice, label: string, bytes: number): void {
  const limit = Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize);
  if (bytes > limit) {
    throw new RullamaError('oom', `${label} needs ${bytes} bytes, more than this GPU allows in one buffer (${limit}): use a smaller context size or prefill chunk`);
  }
}
