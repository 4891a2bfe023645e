/**
 * Rank-based BPE over Unicode code points (raw text, no GPT-2 byte remapping), as llama.cpp's
 * gemma4 path does it: start from one symbol per code point, repeatedly merge the adjacent
 * pair with the lowest merge rank (ties: leftmost), then look every final symbol up in the
 * vocabulary, falling back to `<0xNN>` byte tokens for symbols that are not tokens.
 *
 * Symbols are numbered like tokens; strings that occur in the merge list or the text but are
 * not tokens get extra numbers from `vocabSize` up, so that a pair of symbols is a pair of
 * integers and the merge table is an open-addressing hash of (left, right) → rank.
 */
import { RullamaError } from '../errors.js';
import type { VocabData } from './vocab.js';

const SPACE_MARK = 0x2581; // '▁'
/** Below this many symbols a word is merged by rescanning an array; above it, with a heap. */
const SMALL_WORD = 32;
/** Words up to this many UTF-16 units are cached. */
const CACHE_MAX_WORD = 64;
const CACHE_MAX_ENTRIES = 1 << 16;

export class BpeModel {
  readonly mergeCount: number;
  private readonly vocab: VocabData;
  private readonly n: number;
  private readonly extraStrings: string[] = [];
  private readonly extraIndex = new Map<string, number>();

  // Merge hash table: keys (left, right), value rank. Empty slots have left = -1.
  private readonly mask: number;
  private readonly keyLeft: Int32Array;
  private readonly keyRight: Int32Array;
  private readonly slotRank: Int32Array;
  /** Merged symbol of each rank, computed on first use (-1 = not yet). */
  private readonly mergeResult: Int32Array;
  private readonly mergeLeft: Int32Array;
  private readonly mergeRight: Int32Array;

  /** Symbol of each BMP code unit (-1 = not yet looked up); astral code points use a Map. */
  private readonly bmpSymbol = new Int32Array(0x10000).fill(-1);
  private readonly astralSymbol = new Map<number, number>();

  /**
   * Code units c such that some merge joins a left symbol ending in c (not '▁') to a right
   * symbol starting with '▁'. Text may be cut before a '▁' whose predecessor is not '▁' and not
   * in this set without changing the BPE result, because no merge can ever span such a cut.
   */
  private readonly joinsSpaceAfter = new Uint8Array(0x10000);

  private readonly cache = new Map<string, readonly number[]>();

  constructor(vocab: VocabData, merges: readonly string[]) {
    this.vocab = vocab;
    this.n = vocab.tokens.length;
    if (this.n >= 1 << 30) throw new RullamaError('unsupported', `vocabulary of ${this.n} tokens is too large`);
    this.mergeCount = merges.length;

    let cap = 1024;
    while (cap < merges.length * 2) cap *= 2;
    this.mask = cap - 1;
    this.keyLeft = new Int32Array(cap).fill(-1);
    this.keyRight = new Int32Array(cap);
    this.slotRank = new Int32Array(cap);
    this.mergeResult = new Int32Array(merges.length).fill(-1);
    this.mergeLeft = new Int32Array(merges.length).fill(-1);
    this.mergeRight = new Int32Array(merges.length).fill(-1);

    const index = vocab.index;
    for (let r = 0; r < merges.length; r++) {
      const m = merges[r]!;
      // llama.cpp splits at the first space after the first character; an entry without one
      // becomes the pair ("", "") which can never match a symbol.
      const p = m.indexOf(' ', 1);
      if (p < 0) continue;
      let l = index.getRange(m, 0, p);
      if (l < 0) l = this.extraSymbol(m.slice(0, p));
      let rt = index.getRange(m, p + 1, m.length);
      if (rt < 0) rt = this.extraSymbol(m.slice(p + 1));
      if (this.insert(l, rt, r)) {
        this.mergeLeft[r] = l;
        this.mergeRight[r] = rt;
        const last = m.charCodeAt(p - 1);
        if (last !== SPACE_MARK && m.charCodeAt(p + 1) === SPACE_MARK) this.joinsSpaceAfter[last] = 1;
      }
    }
  }

  /** Number for a string that is not a token (created on first sight). */
  private extraSymbol(s: string): number {
    let id = this.extraIndex.get(s);
    if (id === undefined) {
      id = this.n + this.extraStrings.length;
      this.extraStrings.push(s);
      this.extraIndex.set(s, id);
    }
    return id;
  }

  private symbolString(id: number): string {
    return id < this.n ? this.vocab.tokens[id]! : this.extraStrings[id - this.n]!;
  }

  private hash(l: number, r: number): number {
    let h = Math.imul(l, 0x9e3779b1) ^ Math.imul(r + 0x7f4a7c15, 0x85ebca77);
    h ^= h >>> 15;
    return h & this.mask;
  }

  /** Adds (l, r) → rank unless the pair is already present (the first rank wins). */
  private insert(l: number, r: number, rank: number): boolean {
    let i = this.hash(l, r);
    const kl = this.keyLeft;
    for (;;) {
      const k = kl[i]!;
      if (k === -1) {
        kl[i] = l;
        this.keyRight[i] = r;
        this.slotRank[i] = rank;
        return true;
      }
      if (k === l && this.keyRight[i] === r) return false;
      i = (i + 1) & this.mask;
    }
  }

  /** Merge rank of the pair, or -1. */
  rank(l: number, r: number): number {
    let i = this.hash(l, r);
    const kl = this.keyLeft;
    for (;;) {
      const k = kl[i]!;
      if (k === -1) return -1;
      if (k === l && this.keyRight[i] === r) return this.slotRank[i]!;
      i = (i + 1) & this.mask;
    }
  }

  private merged(rank: number): number {
    let id = this.mergeResult[rank]!;
    if (id === -1) {
      const s = this.symbolString(this.mergeLeft[rank]!) + this.symbolString(this.mergeRight[rank]!);
      id = this.vocab.index.get(s) ?? this.extraSymbol(s);
      this.mergeResult[rank] = id;
    }
    return id;
  }

  private codePointSymbol(cp: number): number {
    if (cp < 0x10000) {
      let id = this.bmpSymbol[cp]!;
      if (id === -1) {
        const s = String.fromCharCode(cp);
        id = this.vocab.index.get(s) ?? this.extraSymbol(s);
        this.bmpSymbol[cp] = id;
      }
      return id;
    }
    let id = this.astralSymbol.get(cp);
    if (id === undefined) {
      const s = String.fromCodePoint(cp);
      id = this.vocab.index.get(s) ?? this.extraSymbol(s);
      this.astralSymbol.set(cp, id);
    }
    return id;
  }

  /**
   * Encodes a run of text that holds no '\n' (spaces already replaced by '▁'), or a run of
   * only '\n', appending token ids to `out`. Long runs are cut at word starts where no merge
   * can cross, and each piece is merged (and cached) on its own.
   */
  encodeRun(run: string, out: number[]): void {
    const len = run.length;
    const joins = this.joinsSpaceAfter;
    let start = 0;
    let prev = run.charCodeAt(0);
    for (let i = 1; i < len; i++) {
      const c = run.charCodeAt(i);
      if (c === SPACE_MARK && prev !== SPACE_MARK && joins[prev] === 0) {
        this.encodeWord(run.slice(start, i), out);
        start = i;
      }
      prev = c;
    }
    this.encodeWord(start === 0 ? run : run.slice(start), out);
  }

  /** BPE of one piece that merges cannot extend beyond. */
  encodeWord(word: string, out: number[]): void {
    const cacheable = word.length <= CACHE_MAX_WORD;
    if (cacheable) {
      const hit = this.cache.get(word);
      if (hit !== undefined) {
        for (let i = 0; i < hit.length; i++) out.push(hit[i]!);
        return;
      }
    }
    const symbols: number[] = [];
    for (let i = 0; i < word.length; i++) {
      let cp = word.charCodeAt(i);
      if (cp >= 0xd800 && cp <= 0xdbff && i + 1 < word.length) {
        const lo = word.charCodeAt(i + 1);
        if (lo >= 0xdc00 && lo <= 0xdfff) {
          cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          i++;
        }
      }
      symbols.push(this.codePointSymbol(cp));
    }
    const merged = symbols.length < 2 ? symbols : symbols.length <= SMALL_WORD ? this.mergeSmall(symbols) : this.mergeHeap(symbols);
    const ids = this.finish(merged);
    if (cacheable) {
      if (this.cache.size >= CACHE_MAX_ENTRIES) this.cache.clear();
      this.cache.set(word, ids);
    }
    for (let i = 0; i < ids.length; i++) out.push(ids[i]!);
  }

  /** Symbols → token ids, with byte fallback for symbols that are not tokens. */
  private finish(symbols: readonly number[]): number[] {
    const ids: number[] = [];
    for (const s of symbols) {
      if (s < this.n) {
        ids.push(s);
        continue;
      }
      const bytes = utf8Encoder.encode(this.extraStrings[s - this.n]!);
      for (const b of bytes) {
        const id = this.vocab.byteIds[b]!;
        if (id >= 0) ids.push(id); // llama.cpp drops bytes that have no token
      }
    }
    return ids;
  }

  /** Array version for short words: keeps the rank of every adjacent pair, rescans for the minimum. */
  mergeSmall(input: readonly number[]): number[] {
    const sym = input.slice();
    const ranks: number[] = [];
    for (let i = 0; i + 1 < sym.length; i++) ranks.push(this.rank(sym[i]!, sym[i + 1]!));
    for (;;) {
      let best = -1;
      let bestRank = 0x7fffffff;
      for (let i = 0; i < ranks.length; i++) {
        const r = ranks[i]!;
        if (r >= 0 && r < bestRank) {
          bestRank = r;
          best = i;
        }
      }
      if (best < 0) return sym;
      sym[best] = this.merged(bestRank);
      sym.splice(best + 1, 1);
      ranks.splice(best, 1);
      if (best > 0) ranks[best - 1] = this.rank(sym[best - 1]!, sym[best]!);
      if (best < ranks.length) ranks[best] = this.rank(sym[best]!, sym[best + 1]!);
    }
  }

  /**
   * Heap version for long words: a linked list of symbols and a min-heap of (rank, left
   * position). A popped entry is used only if the pair now at that position still has that
   * rank; entries for every current pair are always in the heap, so this merges exactly what
   * the array version does.
   */
  mergeHeap(input: readonly number[]): number[] {
    const n = input.length;
    const sym = Int32Array.from(input);
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const heap = new MinHeap();
    const POS = 0x100000000; // 2^32: key = rank * 2^32 + position
    for (let i = 0; i + 1 < n; i++) {
      const r = this.rank(sym[i]!, sym[i + 1]!);
      if (r >= 0) heap.push(r * POS + i);
    }
    while (heap.size > 0) {
      const key = heap.pop();
      const rank = Math.floor(key / POS);
      const left = key - rank * POS;
      const right = next[left]!;
      if (right < 0 || sym[left]! < 0) continue;
      if (this.rank(sym[left]!, sym[right]!) !== rank) continue;
      sym[left] = this.merged(rank);
      sym[right] = -1;
      const after = next[right]!;
      next[left] = after;
      if (after >= 0) prev[after] = left;
      const before = prev[left]!;
      if (before >= 0) {
        const r = this.rank(sym[before]!, sym[left]!);
        if (r >= 0) heap.push(r * POS + before);
      }
      if (after >= 0) {
        const r = this.rank(sym[left]!, sym[after]!);
        if (r >= 0) heap.push(r * POS + left);
      }
    }
    const out: number[] = [];
    for (let i = 0; i !== -1; i = next[i]!) out.push(sym[i]!);
    return out;
  }
}

const utf8Encoder = new TextEncoder();

/** Binary min-heap of non-negative numbers. */
class MinHeap {
  private a: number[] = [];

  get size(): number {
    return this.a.length;
  }

  push(v: number): void {
    const a = this.a;
    let i = a.length;
    a.push(v);
    while (i > 0) {
      const p = (i - 1) >> 1;
      const pv = a[p]!;
      if (pv <= v) break;
      a[i] = pv;
      i = p;
    }
    a[i] = v;
  }

  pop(): number {
    const a = this.a;
    const top = a[0]!;
    const last = a.pop()!;
    const n = a.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && a[r]! < a[l]! ? r : l;
        if (a[c]! >= last) break;
        a[i] = a[c]!;
        i = c;
      }
      a[i] = last;
    }
    return top;
  }
}
