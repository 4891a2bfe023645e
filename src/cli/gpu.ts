// WebGPU in Node for the CLI: Dawn from the `webgpu` package, loaded only by commands that need it.
import { RullamaError } from '../core/errors.js';
import { openDevice, type OpenedDevice } from '../core/gpu/device.js';

/**
 * Dawn's GPU, adapter and device objects stay referenced for the life of the process: when the
 * garbage collector takes one while work is pending, Dawn aborts the process.
 */
const keep: unknown[] = [];

export async function openNodeDevice(): Promise<OpenedDevice> {
  let webgpu: typeof import('webgpu');
  try {
    webgpu = await import('webgpu');
  } catch (cause) {
    throw new RullamaError('no-webgpu', 'the "webgpu" package (Dawn for Node) is not installed: npm install webgpu', { cause });
  }
  Object.assign(globalThis, webgpu.globals);
  const gpu = webgpu.create([]);
  keep.push(gpu);
  try {
    // Bigger buffers mean fewer weight tiles; the adapter's own maximum is the ceiling.
    const opened = await openDevice({ gpu, preferredLimits: { maxStorageBufferBindingSize: 2 ** 31, maxBufferSize: 2 ** 31 } });
    keep.push(opened);
    return opened;
  } catch (e) {
    if (e instanceof RullamaError && e.code === 'no-webgpu' && !process.env.VK_ICD_FILENAMES) {
      throw new RullamaError('no-webgpu', `${e.message}; without a GPU, Chromium's software Vulkan works: VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json`);
    }
    throw e;
  }
}
