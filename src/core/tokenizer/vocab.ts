/**
 * The token table of a Gemma 4 GGUF: strings, types, the string → id index, the special-token
 * list used to split text before BPE, and the 256 byte-fallback tokens.
 */
import { RullamaError } from '../errors.js';
import type { GGUFFile, GGUFValue } from '../gguf/types.js';
import { TokenIndex } from './token-index.js';

/** `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`). */
export enum TokenType {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
}

/** Attribute bits derived from the token type (llama.cpp's `llama_token_attr`, the bits we use). */
export enum TokenAttr {
  Unknown = 1 << 1,
  Unused = 1 << 2,
  Normal = 1 << 3,
  Control = 1 << 4,
  UserDefined = 1 << 5,
  Byte = 1 << 6,
}

const ATTR_OF_TYPE: Record<number, number> = {
  [TokenType.Undefined]: 0,
  [TokenType.Normal]: TokenAttr.Normal,
  [TokenType.Unknown]: TokenAttr.Unknown,
  [TokenType.Control]: TokenAttr.Control,
  [TokenType.UserDefined]: TokenAttr.UserDefined,
  [TokenType.Unused]: TokenAttr.Unused,
  [TokenType.Byte]: TokenAttr.Byte,
};

/**
 * Tokens that end generation for Gemma 4. llama.cpp gives them the control attribute even when
 * the file marks them user-defined (`<|tool_response>` is type 4 in llama.cpp-converted files),
 * so they are not printed by default and are not split out when special parsing is off.
 */
export const GEMMA4_EOG_STRINGS: readonly string[] = ['<eos>', '<turn|>', '<|tool_response>'];

export interface VocabData {
  readonly tokens: readonly string[];
  /** Attribute bits per token (TokenAttr). */
  readonly attrs: Uint8Array;
  /** String → id. When a string occurs twice the later id wins (as in llama.cpp). */
  readonly index: TokenIndex;
  /** Token ids of `<0x00>`..`<0xFF>`, -1 where absent. */
  readonly byteIds: Int32Array;
  /** Byte value of each byte token, -1 for other tokens (sparse: only byte tokens are set). */
  readonly byteOf: Map<number, number>;
}

function bad(message: string): never {
  throw new RullamaError('bad-gguf', message);
}

function isStringArray(v: GGUFValue | undefined): v is string[] {
  if (!Array.isArray(v)) return false;
  for (let i = 0; i < v.length; i++) if (typeof v[i] !== 'string') return false;
  return true;
}

/** Reads `tokenizer.ggml.tokens` (required), `token_type` (optional; normal when absent). */
export function readVocab(file: GGUFFile): VocabData {
  const raw = file.metadata.get('tokenizer.ggml.tokens');
  if (!isStringArray(raw) || raw.length === 0) {
    bad('tokenizer.ggml.tokens is missing or is not a non-empty string array');
  }
  let tokens: readonly string[] = raw;
  const n = tokens.length;
  // llama.cpp renames empty token strings so that they can never match text.
  if (tokens.some((t) => t.length === 0)) tokens = tokens.map((t, i) => (t.length === 0 ? `[EMPTY_${i}]` : t));

  const scores = file.metadata.get('tokenizer.ggml.scores');
  if (scores !== undefined) {
    if (!(scores instanceof Float32Array || scores instanceof Float64Array)) bad('tokenizer.ggml.scores is not a float array');
    if (scores.length !== n) bad(`tokenizer.ggml.scores has ${scores.length} entries for ${n} tokens`);
  }

  const types = file.metadata.get('tokenizer.ggml.token_type');
  const attrs = new Uint8Array(n);
  if (types === undefined) {
    attrs.fill(TokenAttr.Normal);
  } else {
    if (!(types instanceof Int32Array || types instanceof Uint32Array)) bad('tokenizer.ggml.token_type is not an int32 array');
    if (types.length !== n) bad(`tokenizer.ggml.token_type has ${types.length} entries for ${n} tokens`);
    for (let i = 0; i < n; i++) {
      const a = ATTR_OF_TYPE[types[i]!];
      if (a === undefined) bad(`token ${i} has unknown token type ${types[i]}`);
      attrs[i] = a;
    }
  }

  const index = new TokenIndex(tokens);

  for (const s of GEMMA4_EOG_STRINGS) {
    const id = index.get(s);
    if (id !== undefined) attrs[id] = attrs[id]! | TokenAttr.Control;
  }

  const byteIds = new Int32Array(256).fill(-1);
  const byteOf = new Map<number, number>();
  const hex = '0123456789ABCDEF';
  for (let b = 0; b < 256; b++) {
    const id = index.get(`<0x${hex[b >> 4]}${hex[b & 15]}>`);
    if (id !== undefined) byteIds[b] = id;
  }
  for (let i = 0; i < n; i++) {
    if (attrs[i]! & TokenAttr.Byte) {
      const t = tokens[i]!;
      const v = /^<0x([0-9A-Fa-f]{2})>$/.exec(t);
      if (!v) bad(`byte token ${i} is ${JSON.stringify(t)}, not <0xNN>`);
      byteOf.set(i, parseInt(v[1]!, 16));
    }
  }

  return { tokens, attrs, index, byteIds, byteOf };
}

/** Ids of the tokens that are split out of text before BPE (control, user-defined, unknown). */
export function specialTokenIds(vocab: VocabData): number[] {
  const ids: number[] = [];
  const mask = TokenAttr.Control | TokenAttr.UserDefined | TokenAttr.Unknown;
  for (let i = 0; i < vocab.attrs.length; i++) if (vocab.attrs[i]! & mask) ids.push(i);
  return ids;
}
