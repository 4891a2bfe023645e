import { RullamaError } from '../errors.js';
import { bf16ToF32, f16ToF32 } from '../quant/float.js';
import { loraBaseName, type LoraAdapter, type LoraTarget, type LoraTensor } from './adapter.js';

/** Hugging Face module names of the adaptable Gemma 4 linear layers. */
const HF_MODULES: Record<string, LoraTarget> = {
  q_proj: 'q', k_proj: 'k', v_proj: 'v', o_proj: 'o', gate_proj: 'gate', up_proj: 'up', down_proj: 'down',
};
/** …layers.<n>.<self_attn|mlp>.<module>.lora_<A|B>[.<adapter name>].weight */
const KEY = /layers\.(\d+)\.(?:self_attn|mlp)\.(\w+_proj)\.lora_([AB])(?:\.[\w-]+)?\.weight$/;

const bad = (why: string) => new RullamaError('bad-argument', `not a usable PEFT LoRA adapter: ${why}`);

interface SafeTensor {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/** The tensors of a .safetensors file (8-byte header length, JSON header, raw little-endian data). */
export function readSafetensors(bytes: Uint8Array): Map<string, { shape: number[]; values: Float32Array }> {
  if (bytes.byteLength < 8) throw bad('the safetensors file is shorter than its header');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  if (headerLength > bytes.byteLength - 8) throw bad(`the safetensors header claims ${headerLength} bytes`);
  let header: Record<string, SafeTensor | Record<string, string>>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
  } catch (cause) {
    throw new RullamaError('bad-argument', 'the safetensors header is not JSON', { cause });
  }
  const data = bytes.subarray(8 + headerLength);
  const out = new Map<string, { shape: number[]; values: Float32Array }>();
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const { dtype, shape, data_offsets: [begin, end] } = t as SafeTensor;
    const count = shape.reduce((n, d) => n * d, 1);
    const width = { F32: 4, F16: 2, BF16: 2 }[dtype];
    if (!width) throw bad(`${name}: dtype ${dtype} (F32, F16 and BF16 are read)`);
    if (!(begin >= 0 && end <= data.byteLength && end - begin === count * width)) throw bad(`${name}: its data range does not match its shape`);
    const raw = new DataView(data.buffer, data.byteOffset + begin, end - begin);
    const values = new Float32Array(count);
    for (let i = 0; i < count; i++) {
      values[i] = dtype === 'F32' ? raw.getFloat32(4 * i, true) : dtype === 'F16' ? f16ToF32(raw.getUint16(2 * i, true)) : bf16ToF32(raw.getUint16(2 * i, true));
    }
    out.set(name, { shape, values });
  }
  return out;
}

/**
 * A PEFT adapter (`adapter_model.safetensors` + `adapter_config.json`) as a LoraAdapter with
 * GGUF tensor names. PEFT scales by lora_alpha / r (or / √r with use_rslora); the alpha kept here
 * gives the same factor under llama.cpp's alpha / r rule.
 */
export function readPeftAdapter(safetensors: Uint8Array, configJson: string, name = 'peft-adapter'): LoraAdapter {
  let config: { r?: number; lora_alpha?: number; use_rslora?: boolean; use_dora?: boolean; rank_pattern?: object; alpha_pattern?: object };
  try {
    config = JSON.parse(configJson);
  } catch (cause) {
    throw new RullamaError('bad-argument', 'adapter_config.json is not JSON', { cause });
  }
  if (config.use_dora) throw new RullamaError('unsupported', 'DoRA adapters are not supported (plain LoRA only)');
  if (Object.keys(config.rank_pattern ?? {}).length || Object.keys(config.alpha_pattern ?? {}).length) {
    throw new RullamaError('unsupported', 'per-module rank_pattern / alpha_pattern is not supported');
  }
  const r = config.r;
  const loraAlpha = config.lora_alpha ?? r;
  if (!Number.isInteger(r) || r! < 1 || typeof loraAlpha !== 'number') throw bad('adapter_config.json needs r and lora_alpha');
  const alpha = config.use_rslora ? loraAlpha * Math.sqrt(r!) : loraAlpha;

  const pairs = new Map<string, { a?: { shape: number[]; values: Float32Array }; b?: { shape: number[]; values: Float32Array } }>();
  for (const [key, t] of readSafetensors(safetensors)) {
    const m = KEY.exec(key);
    const target = m && HF_MODULES[m[2]!];
    if (!m || !target) throw bad(`unexpected tensor ${key}`);
    const base = loraBaseName(Number(m[1]), target);
    const pair = pairs.get(base) ?? {};
    pair[m[3] === 'A' ? 'a' : 'b'] = t;
    pairs.set(base, pair);
  }
  const tensors = new Map<string, LoraTensor>();
  for (const [base, { a, b }] of pairs) {
    if (!a || !b) throw bad(`${base} lacks lora_${a ? 'B' : 'A'}`);
    // torch Linear weights: A [r][in], B [out][r] — the layout LoraTensor uses.
    const [rank, inFeatures] = a.shape as [number, number];
    const [outFeatures, rankB] = b.shape as [number, number];
    if (a.shape.length !== 2 || b.shape.length !== 2 || rank !== rankB || rank !== r) throw bad(`${base}: shapes [${a.shape}] and [${b.shape}] do not pair at rank ${r}`);
    tensors.set(base, { base, rank, inFeatures, outFeatures, a: a.values, b: b.values });
  }
  if (tensors.size === 0) throw bad('it holds no LoRA tensors');
  return { name, architecture: 'gemma4', alpha, tensors };
}
