import { RullamaError } from '../errors.js';
import { readGGUF, readTensorBytes } from '../gguf/read.js';
import type { ByteSource } from '../gguf/source.js';
import { GGMLType, type GGUFFile } from '../gguf/types.js';
import { GGUFMetadata, memorySink, planGGUF, writeGGUF } from '../gguf/write.js';
import { dequantize } from '../quant/dequant.js';

/** The linear layers LoRA may adapt, by short name, with their GGUF tensor stem. */
export const LORA_TARGETS = {
  q: 'attn_q',
  k: 'attn_k',
  v: 'attn_v',
  o: 'attn_output',
  gate: 'ffn_gate',
  up: 'ffn_up',
  down: 'ffn_down',
} as const;
export type LoraTarget = keyof typeof LORA_TARGETS;

/** The GGUF name of layer `layer`'s weight for `target`, e.g. blk.3.attn_q.weight. */
export function loraBaseName(layer: number, target: LoraTarget): string {
  return `blk.${layer}.${LORA_TARGETS[target]}.weight`;
}

/**
 * One adapted weight W [out][in]: W·x becomes W·x + s·B·(A·x), with A [rank][in] (the down
 * projection, rows of length in) and B [out][rank], both row-major float32.
 */
export interface LoraTensor {
  /** The base weight's GGUF name (blk.N.attn_q.weight, …). */
  readonly base: string;
  readonly rank: number;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly a: Float32Array;
  readonly b: Float32Array;
}

/** A LoRA adapter: the format llama.cpp and Ollama's ADAPTER load (see ../shared/spec/lora-gguf.md). */
export interface LoraAdapter {
  readonly name: string;
  /** The base model's architecture (gemma4). */
  readonly architecture: string;
  /** Scaling numerator: s = userScale · alpha / rank (s = userScale when alpha is 0, as llama.cpp does). */
  readonly alpha: number;
  readonly tensors: ReadonlyMap<string, LoraTensor>;
}

/** The factor that multiplies B·A·x for one tensor of an adapter applied at `userScale`. */
export function loraScale(adapter: LoraAdapter, tensor: LoraTensor, userScale = 1): number {
  return adapter.alpha === 0 ? userScale : (userScale * adapter.alpha) / tensor.rank;
}

const bad = (why: string) => new RullamaError('bad-gguf', `not a usable LoRA adapter: ${why}`);

function checkTensor(t: LoraTensor): LoraTensor {
  const { rank, inFeatures, outFeatures } = t;
  for (const [what, n] of [['rank', rank], ['inputs', inFeatures], ['outputs', outFeatures]] as const) {
    if (!Number.isInteger(n) || n < 1) throw bad(`${t.base}: ${what} ${n}`);
  }
  if (t.a.length !== rank * inFeatures || t.b.length !== outFeatures * rank) throw bad(`${t.base}: A or B has the wrong number of values`);
  for (const m of [t.a, t.b]) for (const v of m) if (!Number.isFinite(v)) throw bad(`${t.base}: a value is not finite`);
  return t;
}

/** Reads a LoRA adapter GGUF (`general.type = adapter`, `adapter.type = lora`, `<base>.lora_a` / `.lora_b`). */
export async function readLoraGGUF(source: ByteSource, options: { signal?: AbortSignal } = {}): Promise<LoraAdapter> {
  const file = await readGGUF(source, { signal: options.signal });
  const type = file.metadata.get('general.type');
  const kind = file.metadata.get('adapter.type');
  if (type !== 'adapter' || kind !== 'lora') throw bad(`general.type is ${String(type)} and adapter.type ${String(kind)} (want adapter, lora)`);
  const alpha = file.metadata.get('adapter.lora.alpha') ?? 0;
  if (typeof alpha !== 'number' || !Number.isFinite(alpha)) throw bad('adapter.lora.alpha is not a number');
  const tensors = new Map<string, LoraTensor>();
  for (const info of file.tensors) {
    if (!info.name.endsWith('.lora_a')) {
      if (!info.name.endsWith('.lora_b')) throw bad(`unexpected tensor ${info.name}`);
      continue;
    }
    const base = info.name.slice(0, -'.lora_a'.length);
    const infoB = file.tensors.find((t) => t.name === `${base}.lora_b`);
    if (!infoB) throw bad(`${base}.lora_a has no ${base}.lora_b`);
    // ne order: lora_a [in, r], lora_b [r, out].
    const [inFeatures, rank] = info.dims as [number, number];
    const [rankB, outFeatures] = infoB.dims as [number, number];
    if (info.dims.length !== 2 || infoB.dims.length !== 2 || rankB !== rank) throw bad(`${base}: shapes [${info.dims}] and [${infoB.dims}] do not pair`);
    const load = async (t: typeof info) => dequantize(t.type, await readTensorBytes(source, t), t.elementCount);
    tensors.set(base, checkTensor({ base, rank, inFeatures, outFeatures, a: await load(info), b: await load(infoB) }));
  }
  for (const info of file.tensors) {
    if (info.name.endsWith('.lora_b') && !tensors.has(info.name.slice(0, -'.lora_b'.length))) throw bad(`${info.name} has no lora_a`);
  }
  if (tensors.size === 0) throw bad('it holds no lora_a/lora_b tensors');
  const name = file.metadata.get('general.name');
  return { name: typeof name === 'string' ? name : source.name, architecture: String(file.metadata.get('general.architecture')), alpha, tensors };
}

/** Writes an adapter as a GGUF that llama.cpp and Ollama load (F32 tensors). */
export async function writeLoraGGUF(adapter: LoraAdapter): Promise<Uint8Array> {
  const metadata = new GGUFMetadata()
    .string('general.architecture', adapter.architecture)
    .string('general.type', 'adapter')
    .string('general.name', adapter.name)
    .string('adapter.type', 'lora')
    .f32('adapter.lora.alpha', adapter.alpha);
  const data = new Map<string, Float32Array>();
  const specs = [];
  for (const t of adapter.tensors.values()) {
    checkTensor(t);
    specs.push({ name: `${t.base}.lora_a`, dims: [t.inFeatures, t.rank], type: GGMLType.F32 });
    specs.push({ name: `${t.base}.lora_b`, dims: [t.rank, t.outFeatures], type: GGMLType.F32 });
    data.set(`${t.base}.lora_a`, t.a);
    data.set(`${t.base}.lora_b`, t.b);
  }
  const plan = planGGUF({ metadata, tensors: specs });
  const sink = memorySink();
  await writeGGUF(plan, sink, (t) => {
    const values = data.get(t.name)!;
    return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  });
  return sink.bytes();
}

/**
 * Checks that every adapted tensor exists in the base model with the shape the adapter assumes:
 * a mismatched adapter is refused with the tensor's name rather than computing nonsense.
 */
export function checkAdapterFits(adapter: LoraAdapter, model: GGUFFile): void {
  const arch = model.metadata.get('general.architecture');
  if (adapter.architecture !== arch) throw new RullamaError('wrong-arch', `the adapter is for ${adapter.architecture}, the model is ${String(arch)}`);
  for (const t of adapter.tensors.values()) {
    const base = model.tensors.find((x) => x.name === t.base);
    if (!base) throw new RullamaError('bad-argument', `the adapter changes ${t.base}, which the model does not have`);
    if (base.dims[0] !== t.inFeatures || base.dims[1] !== t.outFeatures) {
      throw new RullamaError('bad-argument', `the adapter's ${t.base} is ${t.inFeatures}→${t.outFeatures}, the model's is ${base.dims[0]}→${base.dims[1]}`);
    }
  }
}
