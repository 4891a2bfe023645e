/**
 * WGSL shared by the linear kernels (linear.ts) and the embedding gather (ops.ts): the weight
 * snippet of each dtype (src/wgsl/weights/<dtype>.wgsl, which a kernel takes after
 * weights/common.wgsl), and a reader of `const` values so TS and WGSL share one definition.
 */
import bf16Source from '../../wgsl/weights/bf16.wgsl';
import commonSource from '../../wgsl/weights/common.wgsl';
import f16Source from '../../wgsl/weights/f16.wgsl';
import f32Source from '../../wgsl/weights/f32.wgsl';
import q4_0Source from '../../wgsl/weights/q4_0.wgsl';
import q4_1Source from '../../wgsl/weights/q4_1.wgsl';
import q4_KSource from '../../wgsl/weights/q4_k.wgsl';
import q5_0Source from '../../wgsl/weights/q5_0.wgsl';
import q5_1Source from '../../wgsl/weights/q5_1.wgsl';
import q5_KSource from '../../wgsl/weights/q5_k.wgsl';
import q6_KSource from '../../wgsl/weights/q6_k.wgsl';
import q8_0Source from '../../wgsl/weights/q8_0.wgsl';
import { GGMLType } from '../gguf/types.js';
import type { ShaderPart } from './pipelines.js';

/** The weight snippet of each supported dtype. */
export const WEIGHT_SNIPPETS: ReadonlyMap<GGMLType, ShaderPart> = new Map([
  [GGMLType.F32, { name: 'weights/f32.wgsl', source: f32Source }],
  [GGMLType.F16, { name: 'weights/f16.wgsl', source: f16Source }],
  [GGMLType.BF16, { name: 'weights/bf16.wgsl', source: bf16Source }],
  [GGMLType.Q8_0, { name: 'weights/q8_0.wgsl', source: q8_0Source }],
  [GGMLType.Q4_0, { name: 'weights/q4_0.wgsl', source: q4_0Source }],
  [GGMLType.Q4_1, { name: 'weights/q4_1.wgsl', source: q4_1Source }],
  [GGMLType.Q5_0, { name: 'weights/q5_0.wgsl', source: q5_0Source }],
  [GGMLType.Q5_1, { name: 'weights/q5_1.wgsl', source: q5_1Source }],
  [GGMLType.Q4_K, { name: 'weights/q4_k.wgsl', source: q4_KSource }],
  [GGMLType.Q5_K, { name: 'weights/q5_k.wgsl', source: q5_KSource }],
  [GGMLType.Q6_K, { name: 'weights/q6_k.wgsl', source: q6_KSource }],
]);

/** The helpers every weight snippet relies on; a shader takes it before the snippet. */
export const WEIGHTS_COMMON: ShaderPart = { name: 'weights/common.wgsl', source: commonSource };

/** Reads `const NAME: u32 = 123u;` from a WGSL source, so TS and WGSL share one definition. */
export function wgslConst(source: string, name: string): number {
  const m = new RegExp(`\\bconst\\s+${name}\\s*:\\s*u32\\s*=\\s*(\\d+)u?\\s*;`).exec(source);
  if (!m) throw new Error(`WGSL constant ${name} not found`);
  return Number(m[1]);
}
