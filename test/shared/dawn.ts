// WebGPU in the Node suites: Dawn from the `webgpu` package (Node only; the browser suites use
// navigator.gpu). On machines without a GPU, VK_ICD_FILENAMES points Dawn at SwiftShader (see
// package.json). Importing this module installs WebGPU's globals (GPUBufferUsage, GPUShaderStage, …)
// that the core expects, as a page has them.
import { create, globals } from 'webgpu';
import { openDevice, type OpenedDevice } from '../../src/core/gpu/device.js';

Object.assign(globalThis, globals);

/**
 * Dawn's GPU object, created once per process and kept referenced by this module for as long as
 * the process runs: if it were collected, Dawn's instance would go with it and pending async work
 * (pipeline compiles, buffer maps) would crash the process.
 */
export const dawnGPU: GPU = create([]);

/** A device on Dawn, opened as the core opens one (its limits, checks and adapter description). */
export function openDawnDevice(): Promise<OpenedDevice> {
  return openDevice({ gpu: dawnGPU });
}
