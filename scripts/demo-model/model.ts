/**
 * The demo model's definition on the TypeScript side: its Gemma 4 config (from
 * models/demo/config.json, shared with the Python trainer), its tokenizer metadata (from
 * models/demo/tokenizer.json, written by train_bpe.py), and the GGUF writer that turns trained
 * float weights into the shipped file with the project's own writer and quantisers.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { GGMLType, GGUFValueType } from '../../src/core/gguf/types.js';
import { arrayOf, planGGUF, type GGUFMetaEntry, type GGUFPlannedTensor } from '../../src/core/gguf/write.js';
import { f16ToF32 } from '../../src/core/quant/float.js';
import { quantizeInto } from '../../src/core/quant/quantize.js';
import { GGML_TYPES } from '../../src/core/gguf/types.js';
import { gemma4Metadata, gemma4Tensors, GEMMA4_VOCAB_PATH, loadGemma4Tokenizer, writeGGUFFile, type Gemma4Config, type ModelTensor } from '../../test/fixtures/gemma4-model.js';

/** The repository root (RULLAMA_ROOT when bundled elsewhere, e.g. on the GPU machine). */
export const ROOT = process.env.RULLAMA_ROOT ? `${process.env.RULLAMA_ROOT.replace(/\/$/, '')}/` : fileURLToPath(new URL('../../', import.meta.url));
export const MODEL_DIR = `${ROOT}models/demo/`;
/** The shipped model (quantised, Q4_K_M-like as the real E2B). */
export const DEMO_GGUF = `${MODEL_DIR}rullama-demo.gguf`;
export const CONFIG_JSON = `${MODEL_DIR}config.json`;
export const TOKENIZER_JSON = `${MODEL_DIR}tokenizer.json`;

export interface DemoConfigJson {
  name: string;
  description: string;
  n_embd: number;
  n_head: number;
  n_head_kv: number;
  head_dim_swa: number;
  head_dim_global: number;
  sliding_pattern: boolean[];
  sliding_window: number;
  shared_kv_layers: number;
  ffn: number[];
  ple: number;
  context_length: number;
  rope_base: number;
  rope_base_swa: number;
  rope_rotary_fraction: number;
  final_logit_softcap: number;
  rms_eps: number;
}

export interface DemoVocabJson {
  vocab_size: number;
  tokens: string[];
  token_types: number[];
  scores: number[];
  merges: string[];
  special: { bos: number; eos: number; unknown: number; padding: number; mask: number };
}

/** LLAMA_FTYPE_MOSTLY_Q4_K_M / ALL_F32. */
const FTYPE_Q4_K_M = 15;
const FTYPE_F32 = 0;

export type Precision = 'q4_k_m' | 'f32';

/** The fixture writer's config for the demo model; layer_output_scale values come from the weights. */
export function demoConfig(precision: Precision = 'q4_k_m', json: DemoConfigJson = JSON.parse(readFileSync(CONFIG_JSON, 'utf8'))): Gemma4Config {
  const n = json.sliding_pattern.length;
  return {
    name: json.name,
    description: json.description,
    nEmbd: json.n_embd,
    nHead: json.n_head,
    nHeadKv: json.n_head_kv,
    headDimSwa: json.head_dim_swa,
    headDimGlobal: json.head_dim_global,
    slidingPattern: json.sliding_pattern,
    slidingWindow: json.sliding_window,
    sharedKvLayers: json.shared_kv_layers,
    ffn: json.ffn,
    ple: json.ple,
    contextLength: json.context_length,
    ropeBase: json.rope_base,
    ropeBaseSwa: json.rope_base_swa,
    ropeRotaryFraction: json.rope_rotary_fraction,
    finalLogitSoftcap: json.final_logit_softcap,
    rmsEps: json.rms_eps,
    kvOnSharedLayers: false,
    layerOutputScales: new Array<number>(n).fill(1),
    // As the real E2B (spec §2): Q4_K, Q6_K on the "more bits" attn_v/ffn_down and on
    // token_embd, BF16 per-layer table, F32 norms; llama.cpp's fallback for short rows
    // (proj.weight rows of 64 → Q5_0).
    types:
      precision === 'f32'
        ? { default: GGMLType.F32 }
        : { default: GGMLType.Q4_K, moreBits: GGMLType.Q6_K, byKind: { token_embd: GGMLType.Q6_K, per_layer_token_embd: GGMLType.BF16 } },
    fileType: precision === 'f32' ? FTYPE_F32 : FTYPE_Q4_K_M,
  };
}

export function readVocabJson(path = TOKENIZER_JSON): DemoVocabJson {
  return JSON.parse(readFileSync(path, 'utf8')) as DemoVocabJson;
}

/**
 * tokenizer.* entries in the order and with the types of llama.cpp's Gemma 4 files; the chat
 * template is copied from the real Gemma 4 vocabulary when it is at hand.
 */
export async function demoTokenizerEntries(vocab: DemoVocabJson = readVocabJson(), realVocabPath = GEMMA4_VOCAB_PATH): Promise<GGUFMetaEntry[]> {
  let template: GGUFMetaEntry | undefined;
  try {
    template = (await loadGemma4Tokenizer(realVocabPath)).find(([k]) => k === 'tokenizer.chat_template');
  } catch {
    template = undefined;
  }
  const s = vocab.special;
  const out: GGUFMetaEntry[] = [
    ['tokenizer.ggml.model', GGUFValueType.STRING, 'gemma4'],
    ['tokenizer.ggml.tokens', arrayOf(GGUFValueType.STRING), vocab.tokens],
    ['tokenizer.ggml.scores', arrayOf(GGUFValueType.FLOAT32), Float32Array.from(vocab.scores)],
    ['tokenizer.ggml.token_type', arrayOf(GGUFValueType.INT32), Int32Array.from(vocab.token_types)],
    ['tokenizer.ggml.merges', arrayOf(GGUFValueType.STRING), vocab.merges],
    ['tokenizer.ggml.bos_token_id', GGUFValueType.UINT32, s.bos],
    ['tokenizer.ggml.eos_token_id', GGUFValueType.UINT32, s.eos],
    ['tokenizer.ggml.unknown_token_id', GGUFValueType.UINT32, s.unknown],
    ['tokenizer.ggml.padding_token_id', GGUFValueType.UINT32, s.padding],
    ['tokenizer.ggml.mask_token_id', GGUFValueType.UINT32, s.mask],
  ];
  if (template) out.push(template);
  out.push(['tokenizer.ggml.add_space_prefix', GGUFValueType.BOOL, false], ['tokenizer.ggml.add_bos_token', GGUFValueType.BOOL, true]);
  return out;
}

/** The demo model's tensors: the fixture writer's Gemma 4 list with the demo vocabulary's row count. */
export function demoTensors(config: Gemma4Config, vocabSize: number): ModelTensor[] {
  return gemma4Tensors(config).map((t) =>
    t.name === 'token_embd.weight' || t.name === 'per_layer_token_embd.weight' ? { ...t, dims: [t.dims[0]!, vocabSize] } : t,
  );
}

/** Trained weights as the trainer writes them: weights.json + shards of float16/float32 LE. */
export interface WeightsManifest {
  dtype: 'float16' | 'float32';
  tensors: { name: string; dims: number[]; file: string; offset: number }[];
  [k: string]: unknown;
}

export class TrainedWeights {
  private constructor(
    readonly manifest: WeightsManifest,
    private readonly shards: Map<string, Uint8Array>,
  ) {}

  static async open(dir: string): Promise<TrainedWeights> {
    const manifest = JSON.parse(await readFile(`${dir}/weights.json`, 'utf8')) as WeightsManifest;
    const shards = new Map<string, Uint8Array>();
    for (const t of manifest.tensors) if (!shards.has(t.file)) shards.set(t.file, new Uint8Array(await readFile(`${dir}/${t.file}`)));
    return new TrainedWeights(manifest, shards);
  }

  has(name: string): boolean {
    return this.manifest.tensors.some((t) => t.name === name);
  }

  /** float32 values of a tensor (PyTorch row-major = GGUF ne order, fastest first). */
  get(name: string, dims: readonly number[]): Float32Array {
    const t = this.manifest.tensors.find((x) => x.name === name);
    if (!t) throw new Error(`weights have no ${name}`);
    if (t.dims.join(',') !== dims.join(',')) throw new Error(`${name}: weights dims [${t.dims}] differ from the GGUF dims [${dims}]`);
    const count = dims.reduce((a, b) => a * b, 1);
    const shard = this.shards.get(t.file)!;
    const out = new Float32Array(count);
    const view = new DataView(shard.buffer, shard.byteOffset + t.offset);
    if (this.manifest.dtype === 'float32') for (let i = 0; i < count; i++) out[i] = view.getFloat32(4 * i, true);
    else for (let i = 0; i < count; i++) out[i] = f16ToF32(view.getUint16(2 * i, true));
    return out;
  }
}

/**
 * Writes the demo GGUF from trained weights with the project's writer and quantisers.
 * rope_freqs is not trained (it encodes the partial rotation); every other tensor comes from the weights.
 */
export async function writeDemoGGUF(weightsDir: string, out: string, precision: Precision, extra: GGUFMetaEntry[] = []): Promise<{ bytes: number; sha256?: string; tensors: ModelTensor[] }> {
  const weights = await TrainedWeights.open(weightsDir);
  const vocab = readVocabJson();
  const config = demoConfig(precision);
  const tensors = demoTensors(config, vocab.tokens.length);
  const tokenizer = await demoTokenizerEntries(vocab);
  const meta = gemma4Metadata(config, tokenizer, { extra });
  const plan = planGGUF({ metadata: meta, tensors });
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const produce = (p: GGUFPlannedTensor): Uint8Array[] => {
    const t = byName.get(p.name)!;
    const values = t.name === 'rope_freqs.weight' && t.init.kind === 'values' ? t.init.values : weights.get(t.name, t.dims);
    const info = GGML_TYPES.get(t.type)!;
    const bytes = new Uint8Array((values.length / info.blockSize) * info.typeSize);
    quantizeInto(t.type, values, bytes, 0);
    return [bytes];
  };
  const w = await writeGGUFFile(out, plan, produce, true);
  return { ...w, tensors };
}
