import type { GGUFArray, GGUFFile, GGUFValue } from './types.js';
import { typeName } from './types.js';

/** A JSON-friendly description of a GGUF file: what `rullama inspect` prints. */
export interface GGUFSummary {
  version: number;
  architecture: string | null;
  name: string | null;
  /** Every `<architecture>.*` key (hyper-parameters), with long arrays shortened. */
  hyperParameters: Record<string, unknown>;
  tokenizer: {
    model: string | null;
    vocabSize: number;
    mergeCount: number;
    bos: number | null;
    eos: number | null;
    addBos: boolean | null;
    hasChatTemplate: boolean;
  } | null;
  tensorCount: number;
  /** Bytes of tensor data. */
  tensorBytes: number;
  /** Parameters (elements) over all tensors. */
  parameterCount: number;
  fileBytes: number;
  /** Bytes per tensor type, e.g. { Q4_K: 123, F32: 4 }. */
  bytesByType: Record<string, number>;
  tensors: { name: string; type: string; dims: number[]; bytes: number }[];
}

const MAX_INLINE_ARRAY = 64;

/** Converts a metadata value to plain JSON (bigints become strings, long arrays a summary). */
export function jsonValue(v: GGUFValue): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (typeof v !== 'object') return v;
  const list = Array.from(v as GGUFArray as ArrayLike<GGUFValue>);
  if (list.length > MAX_INLINE_ARRAY) return { length: list.length, first: list.slice(0, 8).map(jsonValue) };
  return list.map(jsonValue);
}

const num = (v: GGUFValue | undefined): number | null => (typeof v === 'number' ? v : null);
const lengthOf = (v: GGUFValue | undefined): number => (v && typeof v === 'object' && 'length' in v ? v.length : 0);

export function summarizeGGUF(file: GGUFFile): GGUFSummary {
  const m = file.metadata;
  const architecture = typeof m.get('general.architecture') === 'string' ? (m.get('general.architecture') as string) : null;
  const hyperParameters: Record<string, unknown> = {};
  if (architecture) {
    for (const [key, value] of m) {
      if (key.startsWith(`${architecture}.`)) hyperParameters[key.slice(architecture.length + 1)] = jsonValue(value);
    }
  }
  const tokens = m.get('tokenizer.ggml.tokens');
  const tokenizer = tokens === undefined ? null : {
    model: typeof m.get('tokenizer.ggml.model') === 'string' ? (m.get('tokenizer.ggml.model') as string) : null,
    vocabSize: lengthOf(tokens),
    mergeCount: lengthOf(m.get('tokenizer.ggml.merges')),
    bos: num(m.get('tokenizer.ggml.bos_token_id')),
    eos: num(m.get('tokenizer.ggml.eos_token_id')),
    addBos: typeof m.get('tokenizer.ggml.add_bos_token') === 'boolean' ? (m.get('tokenizer.ggml.add_bos_token') as boolean) : null,
    hasChatTemplate: typeof m.get('tokenizer.chat_template') === 'string',
  };
  const bytesByType: Record<string, number> = {};
  let tensorBytes = 0;
  let parameterCount = 0;
  const tensors = file.tensors.map((t) => {
    const type = typeName(t.type);
    bytesByType[type] = (bytesByType[type] ?? 0) + t.byteSize;
    tensorBytes += t.byteSize;
    parameterCount += t.elementCount;
    return { name: t.name, type, dims: [...t.dims], bytes: t.byteSize };
  });
  return {
    version: file.version,
    architecture,
    name: typeof m.get('general.name') === 'string' ? (m.get('general.name') as string) : null,
    hyperParameters,
    tokenizer,
    tensorCount: tensors.length,
    tensorBytes,
    parameterCount,
    fileBytes: file.fileSize,
    bytesByType,
    tensors,
  };
}
