#!/usr/bin/env python3
"""
Learns the demo model's BPE vocabulary in the Gemma 4 format (spec §4) from the training JSONL
of make_data.py, and writes it as JSON (tokens, token types, scores, merges, special ids).

Layout, chosen to look like the real Gemma 4 vocabulary where it matters:
  0..106        the real Gemma 4 ids: <pad> <eos> <bos> <unk> <mask> [multimodal], <unusedN>
                fillers, <|tool> <tool|> <|tool_call> <tool_call|> <|tool_response>
                <tool_response|> <|"|> (46..52), <|think|> (98), <|channel> <channel|> (100, 101),
                <|turn> <turn|> (105, 106); token types as in the real file (3 control, 4
                user-defined, 1 normal)
  107..114      "\\n" × 1..8 (a newline run that is a token is emitted whole)
  115..370      byte fallback <0x00>..<0xFF> (type 6)
  then          merged tokens in merge order, then single characters (the alphabet), then the
                multimodal control tokens <|image> <|audio> <|image|> <|audio|> <image|>
                <audio|> <|video|>
Scores are all -1000, as in llama.cpp's Gemma 4 files (BPE does not use them).

Merges are learned on "units" (a letter run with an optional leading '▁', one digit, a
punctuation run with an optional leading '▁', runs of '▁'), so no merge joins a word to the next
one and digits stay single tokens (as in Gemma 4). Encoding does not split into units: it runs
rank-based BPE over whole runs of non-newline text exactly as llama.cpp and src/core/tokenizer do.
"""
from __future__ import annotations

import argparse
import collections
import heapq
import json
import re
import sys

SPACE = "\u2581"

RESERVED = {
    0: ("<pad>", 3), 1: ("<eos>", 3), 2: ("<bos>", 3), 3: ("<unk>", 3), 4: ("<mask>", 3), 5: ("[multimodal]", 1),
    46: ("<|tool>", 3), 47: ("<tool|>", 3), 48: ("<|tool_call>", 4), 49: ("<tool_call|>", 4),
    50: ("<|tool_response>", 4), 51: ("<tool_response|>", 4), 52: ('<|"|>', 4),
    98: ("<|think|>", 3), 100: ("<|channel>", 4), 101: ("<channel|>", 4), 105: ("<|turn>", 3), 106: ("<turn|>", 3),
}
TAIL_CONTROL = ["<|image>", "<|audio>", "<|image|>", "<|audio|>", "<image|>", "<audio|>", "<|video|>"]
NEWLINE_RUNS = 8
UNIT = re.compile(r"▁?[^\W\d_]+|\d|▁?[^\w▁]+|▁+|_+")


def render(sample: dict) -> list[str]:
    """Text fragments between special tokens (what BPE sees) of one training sample."""
    if sample["kind"] == "text":
        return [sample["text"]]
    out = []
    for u, m in sample["turns"]:
        out += ["user\n" + u.strip(), "\n", "model\n" + m.strip(), "\n"]
    return out


def reserved_tokens() -> list[tuple[str, int]]:
    toks = []
    unused = 0
    for i in range(107):
        if i in RESERVED:
            toks.append(RESERVED[i])
        elif i > 5:
            toks.append((f"<unused{unused}>", 1))
            unused += 1
    return toks


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="tmp/demo-model/data/train.jsonl")
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--min-char-count", type=int, default=20)
    ap.add_argument("--out", default="models/demo/tokenizer.json")
    a = ap.parse_args()

    words: collections.Counter[str] = collections.Counter()
    chars: collections.Counter[str] = collections.Counter()
    with open(a.data) as f:
        for line in f:
            for frag in render(json.loads(line)):
                for run in re.findall(r"[^\n]+", frag.replace(" ", SPACE)):
                    chars.update(run)
                    words.update(UNIT.findall(run))
    alphabet = sorted(c for c, n in chars.items() if n >= a.min_char_count or (" " <= c <= "~"))
    alphabet = [c for c in alphabet if c != " "]
    if SPACE not in alphabet:
        alphabet.append(SPACE)
    aset = set(alphabet)

    head = reserved_tokens()
    head += [("\n" * k, 1) for k in range(1, NEWLINE_RUNS + 1)]
    head += [(f"<0x{b:02X}>", 6) for b in range(256)]
    n_fixed = len(head) + len(alphabet) + len(TAIL_CONTROL)
    budget = a.vocab_size - n_fixed
    assert budget > 0

    # Words as symbol lists; words with characters outside the alphabet are not learned from.
    wl = [(list(w), n) for w, n in words.items() if all(c in aset for c in w) and len(w) > 1]
    pair_count: collections.Counter[tuple[str, str]] = collections.Counter()
    where: dict[tuple[str, str], set[int]] = collections.defaultdict(set)
    for i, (sym, n) in enumerate(wl):
        for p in zip(sym, sym[1:]):
            pair_count[p] += n
            where[p].add(i)
    heap = [(-n, p) for p, n in pair_count.items()]
    heapq.heapify(heap)

    merges: list[str] = []
    merged_tokens: list[str] = []
    known = set(t for t, _ in head) | aset | set(TAIL_CONTROL)
    while len(merged_tokens) < budget and heap:
        negn, p = heapq.heappop(heap)
        if pair_count.get(p, 0) != -negn or -negn <= 0:
            if pair_count.get(p, 0) > 0 and pair_count[p] != -negn:
                heapq.heappush(heap, (-pair_count[p], p))
            continue
        if -negn < 2:
            break
        new = p[0] + p[1]
        merges.append(f"{p[0]} {p[1]}")
        if new not in known:
            known.add(new)
            merged_tokens.append(new)
        changed: set[tuple[str, str]] = set()
        for i in list(where[p]):
            sym, n = wl[i]
            j = 0
            out = []
            # remove the old pairs of this word, merge, add the new pairs
            for q in zip(sym, sym[1:]):
                pair_count[q] -= n
                changed.add(q)
            while j < len(sym):
                if j + 1 < len(sym) and sym[j] == p[0] and sym[j + 1] == p[1]:
                    out.append(new)
                    j += 2
                else:
                    out.append(sym[j])
                    j += 1
            wl[i] = (out, n)
            for q in zip(out, out[1:]):
                pair_count[q] += n
                where[q].add(i)
                changed.add(q)
        del pair_count[p]
        where.pop(p, None)
        for q in changed:
            c = pair_count.get(q, 0)
            if c > 0:
                heapq.heappush(heap, (-c, q))

    tokens = head + [(t, 1) for t in merged_tokens] + [(c, 1) for c in alphabet] + [(t, 3) for t in TAIL_CONTROL]
    strings = [t for t, _ in tokens]
    assert len(set(strings)) == len(strings), "duplicate token strings"
    out = {
        "format": "gemma4-bpe",
        "vocab_size": len(tokens),
        "tokens": strings,
        "token_types": [ty for _, ty in tokens],
        "scores": [-1000.0] * len(tokens),
        "merges": merges,
        "special": {"bos": 2, "eos": 1, "unknown": 3, "padding": 0, "mask": 4},
        "trained_on": a.data,
        "alphabet": len(alphabet),
    }
    with open(a.out, "w") as f:
        json.dump(out, f, ensure_ascii=False, indent=0)
    print(json.dumps({"vocab_size": len(tokens), "merges": len(merges), "merged_tokens": len(merged_tokens), "alphabet": len(alphabet),
                      "sample": merged_tokens[:40]}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
