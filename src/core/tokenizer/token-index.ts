/**
 * String → token id, as an open-addressing hash over UTF-16 code units. Unlike a Map it can
 * look up a substring without cutting it out, which is what makes reading half a million
 * `"left right"` merge entries cheap (a Map lookup of a fresh slice costs ~0.4 µs, mostly
 * hashing and flattening the slice).
 */
export class TokenIndex {
  private readonly strings: readonly string[];
  private readonly mask: number;
  /** Slot → token id + 1 (0 = empty). */
  private readonly slots: Int32Array;
  private readonly hashes: Int32Array;

  /** Indexes `strings`; when a string occurs twice the later id wins (as in llama.cpp). */
  constructor(strings: readonly string[]) {
    this.strings = strings;
    let cap = 1024;
    while (cap < strings.length * 2) cap *= 2;
    this.mask = cap - 1;
    this.slots = new Int32Array(cap);
    this.hashes = new Int32Array(cap);
    for (let id = 0; id < strings.length; id++) {
      const s = strings[id]!;
      const h = hashRange(s, 0, s.length);
      let i = h & this.mask;
      for (;;) {
        const slot = this.slots[i]!;
        if (slot === 0) {
          this.slots[i] = id + 1;
          this.hashes[i] = h;
          break;
        }
        if (this.hashes[i] === h && strings[slot - 1] === s) {
          this.slots[i] = id + 1;
          break;
        }
        i = (i + 1) & this.mask;
      }
    }
  }

  get size(): number {
    return this.strings.length;
  }

  get(s: string): number | undefined {
    const id = this.getRange(s, 0, s.length);
    return id < 0 ? undefined : id;
  }

  /** Id of the token equal to `s.slice(start, end)`, or -1. */
  getRange(s: string, start: number, end: number): number {
    const h = hashRange(s, start, end);
    const len = end - start;
    let i = h & this.mask;
    for (;;) {
      const slot = this.slots[i]!;
      if (slot === 0) return -1;
      if (this.hashes[i] === h) {
        const t = this.strings[slot - 1]!;
        if (t.length === len && s.startsWith(t, start)) return slot - 1;
      }
      i = (i + 1) & this.mask;
    }
  }
}

function hashRange(s: string, start: number, end: number): number {
  let h = 0x811c9dc5 ^ (end - start);
  for (let i = start; i < end; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return h;
}
