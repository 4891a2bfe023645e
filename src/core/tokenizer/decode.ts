/**
 * Token ids → text. Each token becomes bytes: normal tokens are their string with '▁' turned
 * back into a space, `<0xNN>` byte tokens are one raw byte, user-defined tokens are their
 * string, control/unknown tokens are nothing unless asked for (then their string), unused ones
 * nothing. The bytes of a sequence are decoded as UTF-8 at once, so a character spread over
 * several byte tokens comes out whole.
 */
import { RullamaError } from '../errors.js';
import { TokenAttr, type VocabData } from './vocab.js';

const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);

export interface DecodeOptions {
  /** Leave control tokens (`<bos>`, `<|turn>`, …) out of the text. Default true. */
  skipSpecial?: boolean;
}

export class PieceTable {
  private readonly vocab: VocabData;
  /** Bytes of each token as printed when specials are skipped / shown. */
  private readonly plain: Array<Uint8Array | undefined>;
  private readonly special: Array<Uint8Array | undefined>;

  constructor(vocab: VocabData) {
    this.vocab = vocab;
    this.plain = new Array(vocab.tokens.length);
    this.special = new Array(vocab.tokens.length);
  }

  check(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocab.tokens.length) {
      throw new RullamaError('bad-token', `token id ${id} is outside the vocabulary (0..${this.vocab.tokens.length - 1})`);
    }
  }

  /** The bytes token `id` prints as. Throws RullamaError('bad-token') for ids out of range. */
  bytes(id: number, skipSpecial: boolean): Uint8Array {
    this.check(id);
    const table = skipSpecial ? this.plain : this.special;
    let b = table[id];
    if (b === undefined) {
      b = this.compute(id, skipSpecial);
      table[id] = b;
    }
    return b;
  }

  private compute(id: number, skipSpecial: boolean): Uint8Array {
    const attr = this.vocab.attrs[id]!;
    const text = this.vocab.tokens[id]!;
    if (attr & (TokenAttr.Control | TokenAttr.Unknown)) return skipSpecial ? EMPTY : encoder.encode(text);
    if (attr & TokenAttr.UserDefined) return encoder.encode(text);
    if (attr & TokenAttr.Normal) return encoder.encode(text.replaceAll('\u2581', ' '));
    if (attr & TokenAttr.Byte) return Uint8Array.of(this.vocab.byteOf.get(id)!);
    return EMPTY;
  }

  decode(ids: readonly number[], skipSpecial: boolean): string {
    const parts: Uint8Array[] = new Array(ids.length);
    let total = 0;
    for (let i = 0; i < ids.length; i++) {
      const b = this.bytes(ids[i]!, skipSpecial);
      parts[i] = b;
      total += b.length;
    }
    const all = new Uint8Array(total);
    let off = 0;
    for (const b of parts) {
      all.set(b, off);
      off += b.length;
    }
    return new TextDecoder('utf-8', { ignoreBOM: true }).decode(all);
  }
}

/**
 * Incremental decoding for generation: `push(id)` returns the text that became complete with
 * this token. Bytes of a UTF-8 character that is still missing its continuation bytes are
 * held back (never shown as U+FFFD); `flush()` returns what is left, with U+FFFD only for
 * bytes that can never form a character.
 */
export class StreamDecoder {
  private decoder = new TextDecoder('utf-8', { ignoreBOM: true });
  private readonly pieces: PieceTable;
  private readonly skipSpecial: boolean;

  constructor(pieces: PieceTable, options: DecodeOptions = {}) {
    this.pieces = pieces;
    this.skipSpecial = options.skipSpecial ?? true;
  }

  push(id: number): string {
    const b = this.pieces.bytes(id, this.skipSpecial);
    if (b.length === 0) return '';
    return this.decoder.decode(b, { stream: true });
  }

  /** Ends the stream: returns the held-back bytes (as U+FFFD if incomplete) and resets. */
  flush(): string {
    const rest = this.decoder.decode();
    this.decoder = new TextDecoder('utf-8', { ignoreBOM: true });
    return rest;
  }
}
