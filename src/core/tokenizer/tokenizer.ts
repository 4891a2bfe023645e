/**
 * The Gemma 4 tokenizer, built from a GGUF's `tokenizer.*` metadata. Encoding follows
 * llama.cpp's gemma4 path (spec §4.2):
 *   1. special (control, unknown) and user-defined token strings are split out first;
 *   2. every ' ' becomes '▁' (no dummy prefix);
 *   3. the text is cut into runs of non-newlines and runs of '\n'; a newline run that is a
 *      token is that token;
 *   4. rank-based BPE over code points with `tokenizer.ggml.merges` (rank = index);
 *   5. byte fallback `<0xNN>` for symbols that are not tokens.
 */
import { RullamaError } from '../errors.js';
import type { GGUFFile } from '../gguf/types.js';
import { BpeModel } from './bpe.js';
import { PieceTable, StreamDecoder, type DecodeOptions } from './decode.js';
import { SpecialSplitter } from './special.js';
import { readVocab, specialTokenIds, TokenAttr, type VocabData } from './vocab.js';

export type { DecodeOptions } from './decode.js';
export { StreamDecoder } from './decode.js';

export interface EncodeOptions {
  /**
   * Put the BOS token first. Default: `tokenizer.ggml.add_bos_token`, which llama.cpp forces
   * to true for Gemma 4 — so true. Text that already starts with `<bos>` gets a second one;
   * use `addBos: false` for prompts that carry their own (see `encodeChat`).
   */
  addBos?: boolean;
  /**
   * Turn control-token strings in the text (`<bos>`, `<|turn>`, …) into their ids. Default
   * true. User-defined tokens (`<|channel>`, `<|"|>`, …) are split out either way, as in
   * llama.cpp.
   */
  parseSpecial?: boolean;
}

export interface TokenizerSummary {
  /** `tokenizer.ggml.model` as written in the file (`gemma4`, or `llama` in Ollama blobs). */
  model: string;
  /** `tokenizer.ggml.pre` when present. */
  pre?: string;
  vocabSize: number;
  merges: number;
  bos: number;
  eos: number;
  addBos: boolean;
  /** Tokens split out of text before BPE: control, user-defined and unknown. */
  specialTokens: number;
}

const SUPPORTED_MODELS = new Set(['gemma4']);

/** A lone UTF-16 surrogate (not part of a valid pair). */
const LONE_SURROGATE_SOURCE = '[\\uD800-\\uDBFF](?![\\uDC00-\\uDFFF])|(?<![\\uD800-\\uDBFF])[\\uDC00-\\uDFFF]';
const HAS_LONE_SURROGATE = new RegExp(LONE_SURROGATE_SOURCE);
const LONE_SURROGATES = new RegExp(LONE_SURROGATE_SOURCE, 'g');

export class Tokenizer {
  /** Number of tokens in the vocabulary. */
  readonly vocabSize: number;
  /** BOS id (`tokenizer.ggml.bos_token_id`, else the id of `<bos>`). */
  readonly bos: number;
  /** EOS id (`tokenizer.ggml.eos_token_id`, else the id of `<eos>`). */
  readonly eos: number;
  /** Whether `encode` adds BOS when not told otherwise. */
  readonly addBosDefault: boolean;

  private readonly vocab: VocabData;
  private readonly bpe: BpeModel;
  private readonly splitter: SpecialSplitter;
  private readonly pieces: PieceTable;
  private readonly modelName: string;
  private readonly pre: string | undefined;

  private constructor(file: GGUFFile) {
    const meta = file.metadata;
    const model = meta.get('tokenizer.ggml.model');
    if (typeof model !== 'string') throw new RullamaError('bad-gguf', 'tokenizer.ggml.model is missing');
    const arch = meta.get('general.architecture');
    // Ollama's gemma4 blobs say "llama" although the tokenizer is the Gemma 4 BPE.
    const effective = model === 'llama' && arch === 'gemma4' ? 'gemma4' : model;
    if (!SUPPORTED_MODELS.has(effective)) {
      throw new RullamaError('unsupported', `tokenizer model "${model}" (architecture "${String(arch)}") is not supported; only the Gemma 4 BPE is`);
    }
    this.modelName = model;
    const pre = meta.get('tokenizer.ggml.pre');
    this.pre = typeof pre === 'string' ? pre : undefined;

    this.vocab = readVocab(file);
    this.vocabSize = this.vocab.tokens.length;

    const merges = meta.get('tokenizer.ggml.merges');
    if (!Array.isArray(merges) || merges.length === 0 || merges.some((m) => typeof m !== 'string')) {
      throw new RullamaError('bad-gguf', 'tokenizer.ggml.merges is missing or is not a string array');
    }
    this.bpe = new BpeModel(this.vocab, merges as string[]);

    this.bos = this.specialId(meta.get('tokenizer.ggml.bos_token_id'), '<bos>', 'BOS');
    this.eos = this.specialId(meta.get('tokenizer.ggml.eos_token_id'), '<eos>', 'EOS');
    // llama.cpp forces add_bos for Gemma 4 whatever the file says (ggml-org/llama.cpp#21500).
    this.addBosDefault = true;

    const unknownOrControl = TokenAttr.Control | TokenAttr.Unknown;
    this.splitter = new SpecialSplitter(
      specialTokenIds(this.vocab).map((id) => ({
        id,
        text: this.vocab.tokens[id]!,
        controlLike: (this.vocab.attrs[id]! & unknownOrControl) !== 0,
      })),
    );
    this.pieces = new PieceTable(this.vocab);
  }

  /** Builds the tokenizer from a parsed GGUF header. */
  static fromGGUF(file: GGUFFile): Tokenizer {
    return new Tokenizer(file);
  }

  private specialId(value: unknown, fallback: string, what: string): number {
    if (typeof value === 'number' && Number.isInteger(value)) {
      if (value < 0 || value >= this.vocabSize) {
        throw new RullamaError('bad-gguf', `${what} id ${value} is outside the vocabulary of ${this.vocabSize}`);
      }
      return value;
    }
    const id = this.vocab.index.get(fallback);
    if (id === undefined) throw new RullamaError('bad-gguf', `no ${what} token: no id in the metadata and no ${fallback} in the vocabulary`);
    return id;
  }

  /** Text → token ids. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const addBos = options.addBos ?? this.addBosDefault;
    const parseSpecial = options.parseSpecial ?? true;
    const out: number[] = [];
    if (addBos) out.push(this.bos);
    // llama.cpp sees the text as UTF-8, where a lone surrogate can only be U+FFFD.
    const clean = HAS_LONE_SURROGATE.test(text) ? text.replace(LONE_SURROGATES, '\uFFFD') : text;
    for (const frag of this.splitter.split(clean, parseSpecial)) {
      if (typeof frag === 'number') out.push(frag);
      else this.encodeText(frag, out);
    }
    return out;
  }

  /** One fragment without special tokens. */
  private encodeText(fragment: string, out: number[]): void {
    const text = fragment.replaceAll(' ', '\u2581');
    const len = text.length;
    let i = 0;
    while (i < len) {
      const nl = text.charCodeAt(i) === 10;
      let j = i + 1;
      while (j < len && (text.charCodeAt(j) === 10) === nl) j++;
      const run = i === 0 && j === len ? text : text.slice(i, j);
      if (nl) {
        const id = this.vocab.index.get(run);
        if (id !== undefined) out.push(id);
        else this.bpe.encodeWord(run, out);
      } else {
        this.bpe.encodeRun(run, out);
      }
      i = j;
    }
  }

  /** Token ids → text. Throws RullamaError('bad-token') for ids outside the vocabulary. */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    return this.pieces.decode(ids, options.skipSpecial ?? true);
  }

  /** An incremental decoder for streaming generation. */
  createStreamDecoder(options: DecodeOptions = {}): StreamDecoder {
    return new StreamDecoder(this.pieces, options);
  }

  /** Id of the token whose string is exactly `str`, if any. */
  tokenId(str: string): number | undefined {
    return this.vocab.index.get(str);
  }

  /** The vocabulary string of token `id` (raw: '▁' for spaces, `<0xNN>` for bytes). */
  tokenString(id: number): string {
    this.pieces.check(id);
    return this.vocab.tokens[id]!;
  }

  /** Whether `id` is a control token (not printed by default; includes Gemma 4's EOG tokens). */
  isControl(id: number): boolean {
    this.pieces.check(id);
    return (this.vocab.attrs[id]! & TokenAttr.Control) !== 0;
  }

  /** Whether `id` is a user-defined token (`<|channel>`, `<|"|>`, …: printed as text). */
  isUserDefined(id: number): boolean {
    this.pieces.check(id);
    return (this.vocab.attrs[id]! & TokenAttr.UserDefined) !== 0;
  }

  /** Facts for `rullama inspect`. */
  summary(): TokenizerSummary {
    const s: TokenizerSummary = {
      model: this.modelName,
      vocabSize: this.vocabSize,
      merges: this.bpe.mergeCount,
      bos: this.bos,
      eos: this.eos,
      addBos: this.addBosDefault,
      specialTokens: this.splitter.count,
    };
    if (this.pre !== undefined) s.pre = this.pre;
    return s;
  }
}
