import { RullamaError } from '../errors.js';

export interface OpenDeviceOptions {
  /**
   * The WebGPU entry point: `navigator.gpu` in pages and workers, `create([])` from the `webgpu`
   * package in Node. Passed in so that the core never reaches for a global.
   */
  gpu: GPU | undefined;
  powerPreference?: GPUPowerPreference;
  /** Limits the work needs; each is checked against the adapter before asking for it. */
  requiredLimits?: Record<string, number>;
  /** Limits to raise as far as the adapter allows, up to the value given (for example bigger buffers, fewer weight tiles). */
  preferredLimits?: Record<string, number>;
  /**
   * Features to enable when the adapter has them (for example 'shader-f16'), besides
   * {@link DEFAULT_OPTIONAL_FEATURES}, which are always asked for where present.
   */
  optionalFeatures?: GPUFeatureName[];
}

/**
 * Features every device is opened with when the adapter has them: 'subgroups' (the matvecs sum
 * their lanes with subgroupAdd; see linear.ts, which keeps a path without it).
 */
export const DEFAULT_OPTIONAL_FEATURES: readonly GPUFeatureName[] = ['subgroups' as GPUFeatureName];

/**
 * Limits every device is opened with as far as the adapter allows (besides the caller's
 * preferredLimits): 10 storage buffers per shader stage (WebGPU's default is 8; Chromium offers 10),
 * so that a decode matvec can form its input from the residual stream (linear.ts,
 * supportsResidualInput, which needs 9); 32 KiB of workgroup memory (the default is 16), for the
 * int8 matmul's 128-token tile (linear.ts, matmulInt8TileTokens, which needs 21).
 */
export const DEFAULT_PREFERRED_LIMITS: Readonly<Record<string, number>> = { maxStorageBuffersPerShaderStage: 10, maxComputeWorkgroupStorageSize: 32768 };

/**
 * Whether the device runs on the CPU (SwiftShader, or the browser's fallback adapter). There every
 * invocation of a workgroup is emulated, so a workgroup barrier costs far more than on a GPU, and
 * kernels pick their barrier-free variants (see linear.ts).
 */
export function isSoftwareDevice(device: GPUDevice): boolean {
  const info = (device as GPUDevice & { adapterInfo?: GPUAdapterInfo & { isFallbackAdapter?: boolean } }).adapterInfo;
  return info?.isFallbackAdapter === true || info?.architecture === 'swiftshader';
}

export interface OpenedDevice {
  adapter: GPUAdapter;
  device: GPUDevice;
  /** The optional features that were granted. */
  features: ReadonlySet<string>;
  /** A one-line description of the adapter for logs and benchmark records. */
  description: string;
}

/**
 * Opens a WebGPU device with explicitly requested limits. Fails with 'no-webgpu' (and a hint)
 * when there is no WebGPU, no adapter, or the adapter cannot meet the limits.
 */
export async function openDevice(options: OpenDeviceOptions): Promise<OpenedDevice> {
  const { gpu } = options;
  if (!gpu) {
    throw new RullamaError(
      'no-webgpu',
      'WebGPU is not available here: use a recent Chrome or Edge (or Firefox/Safari with WebGPU enabled), or Node with the "webgpu" package',
    );
  }
  const adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' });
  if (!adapter) throw new RullamaError('no-webgpu', 'WebGPU is present but no GPU adapter was found (is hardware acceleration disabled?)');

  const requiredLimits: Record<string, number> = {};
  for (const [name, wanted] of Object.entries(options.requiredLimits ?? {})) {
    const available = (adapter.limits as unknown as Record<string, number>)[name];
    if (available === undefined) continue;
    if (available < wanted) {
      throw new RullamaError('no-webgpu', `this GPU allows ${name} = ${available}, but ${wanted} is needed`);
    }
    requiredLimits[name] = wanted;
  }
  for (const [name, wanted] of Object.entries({ ...DEFAULT_PREFERRED_LIMITS, ...options.preferredLimits })) {
    const available = (adapter.limits as unknown as Record<string, number>)[name];
    if (available !== undefined) requiredLimits[name] = Math.max(requiredLimits[name] ?? 0, Math.min(available, wanted));
  }
  const features = [...new Set([...DEFAULT_OPTIONAL_FEATURES, ...(options.optionalFeatures ?? [])])].filter((f) => adapter.features.has(f));
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredLimits, requiredFeatures: features });
  } catch (cause) {
    throw new RullamaError('no-webgpu', `the GPU refused to open a device: ${String(cause)}`, { cause });
  }
  const info = adapter.info;
  const description = [info?.vendor, info?.architecture, info?.device, info?.description].filter(Boolean).join(' ') || 'unknown adapter';
  return { adapter, device, features: new Set(features), description };
}
