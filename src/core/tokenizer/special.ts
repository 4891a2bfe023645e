/**
 * Splitting text on special-token strings before BPE, with llama.cpp's semantics:
 * special tokens are taken longest first (by UTF-8 length; equal lengths by id), and each one
 * claims its leftmost non-overlapping occurrences in the text that no longer one has claimed.
 * This differs from a left-to-right longest-match scan only when two specials overlap.
 */

export interface SpecialToken {
  readonly id: number;
  readonly text: string;
  /** Skipped when special parsing is off (control and unknown tokens; user-defined ones stay). */
  readonly controlLike: boolean;
}

/** A run of plain text, or a token id produced by a special-token match. */
export type Fragment = string | number;

const utf8Length = (s: string): number => {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
};

export class SpecialSplitter {
  /** Specials in processing order (longest first). */
  private readonly ordered: SpecialToken[];
  /** Rank of each special in processing order, by id. */
  private readonly order = new Map<number, number>();
  /** First UTF-16 code unit → specials starting with it. */
  private readonly byFirst = new Map<number, SpecialToken[]>();

  constructor(specials: readonly SpecialToken[]) {
    const list = specials.filter((s) => s.text.length > 0).map((s) => ({ s, bytes: utf8Length(s.text) }));
    list.sort((a, b) => b.bytes - a.bytes || a.s.id - b.s.id);
    this.ordered = list.map((x) => x.s);
    this.ordered.forEach((s, i) => {
      this.order.set(s.id, i);
      const c = s.text.charCodeAt(0);
      let bucket = this.byFirst.get(c);
      if (!bucket) this.byFirst.set(c, (bucket = []));
      bucket.push(s);
    });
  }

  get count(): number {
    return this.ordered.length;
  }

  /** Splits `text` into plain-text runs and special-token ids, in order. */
  split(text: string, parseSpecial: boolean): Fragment[] {
    if (text.length === 0) return [];
    // Collect every occurrence of every (enabled) special, grouped by processing order.
    let hits: Array<number[] | undefined> | undefined;
    const byFirst = this.byFirst;
    for (let i = 0; i < text.length; i++) {
      const bucket = byFirst.get(text.charCodeAt(i));
      if (bucket === undefined) continue;
      for (const s of bucket) {
        if (!parseSpecial && s.controlLike) continue;
        if (text.startsWith(s.text, i)) {
          hits ??= new Array(this.ordered.length);
          const k = this.order.get(s.id)!;
          (hits[k] ??= []).push(i);
        }
      }
    }
    if (hits === undefined) return [text];

    // Claim occurrences longest-special first; a claim may not overlap an earlier claim or
    // an earlier occurrence of the same special.
    const claimedBy = new Int32Array(text.length).fill(-1);
    const starts: Array<[number, number, number]> = []; // [start, end, id]
    for (let k = 0; k < hits.length; k++) {
      const positions = hits[k];
      if (positions === undefined) continue;
      const s = this.ordered[k]!;
      const len = s.text.length;
      let lastEnd = 0;
      for (const p of positions) {
        if (p < lastEnd) continue;
        let free = true;
        for (let j = p; j < p + len; j++) {
          if (claimedBy[j] !== -1) {
            free = false;
            break;
          }
        }
        if (!free) continue;
        claimedBy.fill(k, p, p + len);
        starts.push([p, p + len, s.id]);
        lastEnd = p + len;
      }
    }
    starts.sort((a, b) => a[0] - b[0]);
    const out: Fragment[] = [];
    let pos = 0;
    for (const [start, end, id] of starts) {
      if (start > pos) out.push(text.slice(pos, start));
      out.push(id);
      pos = end;
    }
    if (pos < text.length) out.push(text.slice(pos));
    return out;
  }
}
