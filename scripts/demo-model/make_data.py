#!/usr/bin/env python3
"""
Data recipe of the demo model (issue 5): English chat turns built from Debian packages.

Sources (install: apt-get install -y wordnet-base bible-kjv-text bible-kjv):
  * WordNet 3.0 (wordnet-base, /usr/share/wordnet; WordNet 3.0 licence, BSD-like): glosses and
    example sentences -> "What does X mean?" / "Define X." / "Use X in a sentence." turns.
  * King James Version (bible-kjv-text, read with the `bible` program of bible-kjv; the KJV text is
    in the public domain): plain passages and "Continue this passage" turns.
GCIDE (dict-gcide) is GPL-2+ and is deliberately NOT used, so the weights carry no GPL text.

Writes OUT/{train,heldout}.jsonl and OUT/ci_questions.json. Each JSONL line is one sample:
  {"kind": "chat", "turns": [[user, model], ...]}   rendered with the Gemma 4 chat template
  {"kind": "text", "text": "..."}                    plain text after <bos>
Deterministic (seeded); python3 stdlib only.

Held-out data:
  * 1.5% of the WordNet lemmas (all their turns) and every 40th KJV chapter: held-out perplexity.
  * CI_WORDS: ten definition questions used by the CI check (test/node/demo-model.test.ts). Their
    exact question form "What does X mean?" never occurs in training for these words; the same
    definition does occur under other question forms ("Define X.", "What is the meaning of X?"),
    so the check measures whether the model maps a new phrasing onto a definition it learned.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys

WN = "/usr/share/wordnet"
POS_NAME = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}

# word -> expected key word of its first WordNet sense (checked to occur in that gloss below).
CI_WORDS = {
    "water": "liquid",
    "king": "sovereign",
    "bread": "food",
    "river": "stream",
    "mountain": "land",
    "moon": "satellite",
    "city": "urban",
    "tree": "plant",
    "ship": "vessel",
    "sword": "weapon",
}

QUESTION_FORMS = [
    "What does {w} mean?",
    "What is the meaning of {w}?",
    "Define {w}.",
    "What is the definition of {w}?",
    "Explain the word {w}.",
    "What is meant by {w}?",
]
ASK = QUESTION_FORMS[0]  # the CI form


def read_data(pos_file: str) -> dict[str, tuple[str, list[str], str]]:
    """offset -> (pos letter, words, gloss) from a data.* file."""
    out = {}
    with open(os.path.join(WN, f"data.{pos_file}"), encoding="latin-1") as f:
        for line in f:
            if line.startswith("  "):
                continue
            head, _, gloss = line.partition(" | ")
            parts = head.split()
            off, ss_type, w_cnt = parts[0], parts[2], int(parts[3], 16)
            words = [parts[4 + 2 * i] for i in range(w_cnt)]
            out[off] = (ss_type, words, gloss.strip())
    return out


def split_gloss(gloss: str) -> tuple[str, list[str]]:
    """'def; "ex one"; "ex two"' -> ('def', ['ex one', 'ex two'])."""
    examples = re.findall(r'"([^"]+)"', gloss)
    definition = re.sub(r'\s*;?\s*"[^"]*"', "", gloss).strip().rstrip(";").strip()
    definition = re.sub(r"\s+", " ", definition)
    definition = definition.split("; ")[0].strip()  # the first clause keeps answers short
    return definition, [re.sub(r"\s+", " ", e).strip() for e in examples]


def clean_word(w: str) -> str:
    return re.sub(r"\(.*?\)$", "", w).replace("_", " ")


def wordnet_lemmas() -> dict[str, list[dict]]:
    """lemma -> senses (pos, definition, examples, tagged count), in WordNet sense order."""
    lemmas: dict[str, list[dict]] = {}
    for pf in ("noun", "verb", "adj", "adv"):
        data = read_data(pf)
        with open(os.path.join(WN, f"index.{pf}"), encoding="latin-1") as f:
            for line in f:
                if line.startswith("  "):
                    continue
                p = line.split()
                lemma, syn_cnt, p_cnt = p[0], int(p[2]), int(p[3])
                tagged = int(p[5 + p_cnt])
                offsets = p[-syn_cnt:]
                word = lemma.replace("_", " ")
                if not re.fullmatch(r"[a-z][a-z' -]*[a-z]", word) or len(word) > 24:
                    continue
                for rank, off in enumerate(offsets):
                    ss_type, words, gloss = data[off]
                    definition, examples = split_gloss(gloss)
                    if len(definition) < 3:
                        continue
                    ex = [e for e in examples if re.search(r"\b" + re.escape(word), e, re.I)]
                    lemmas.setdefault(word, []).append(
                        {"pos": POS_NAME[ss_type], "def": definition, "examples": ex, "tagged": tagged, "rank": rank,
                         "synonyms": [clean_word(w) for w in words if clean_word(w).lower() != word][:3]}
                    )
    return lemmas


def answer_for(word: str, senses: list[dict]) -> str:
    s = senses[0]
    text = f"{word} ({s['pos']}) means {s['def']}."
    if len(senses) > 1 and senses[1]["def"] != s["def"]:
        text += f" It can also mean {senses[1]['def']}."
    if s["examples"]:
        text += f' For example: "{s["examples"][0]}".'
    return text[0].upper() + text[1:]


def kjv_verses() -> list[tuple[str, int, int, str]]:
    """[(book, chapter, verse, text)] from the `bible` program."""
    out = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], check=True, capture_output=True, text=True).stdout
    verses = []
    for line in out.splitlines():
        m = re.match(r"^(\S+?)(\d+):(\d+) (.*)$", line)
        if m:
            verses.append((m.group(1), int(m.group(2)), int(m.group(3)), m.group(4).strip()))
    return verses


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tmp/demo-model/data")
    ap.add_argument("--seed", type=int, default=5)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = random.Random(a.seed)

    lemmas = wordnet_lemmas()
    for w, key in CI_WORDS.items():
        assert w in lemmas, w
        assert key in lemmas[w][0]["def"].lower(), (w, key, lemmas[w][0]["def"])
    words = sorted(lemmas)
    rng.shuffle(words)
    n_held = int(len(words) * 0.015)
    held_words = set(w for w in words[:n_held] if w not in CI_WORDS)

    train_turns: list[tuple[str, str]] = []
    held_turns: list[tuple[str, str]] = []
    for w in sorted(lemmas):
        senses = lemmas[w]
        ans = answer_for(w, senses)
        common = max(s["tagged"] for s in senses) > 0
        turns = []
        if w in CI_WORDS:
            forms = QUESTION_FORMS[1:]  # every form except the CI one
        else:
            k = 3 if common else 1
            forms = rng.sample(QUESTION_FORMS, k)
        for f in forms:
            turns.append((f.format(w=w), ans))
        ex = [e for s in senses for e in s["examples"]]
        if ex and (common or rng.random() < 0.3):
            turns.append((f"Use the word {w} in a sentence.", ex[0][0].upper() + ex[0][1:] + "."))
        syn = senses[0]["synonyms"]
        if syn and (common or rng.random() < 0.2):
            turns.append((f"What is another word for {w}?", f"Another word for {w} is {syn[0]}."))
        (held_turns if w in held_words else train_turns).extend(turns)

    verses = kjv_verses()
    chapters: dict[tuple[str, int], list[tuple[int, str]]] = {}
    for b, c, v, t in verses:
        chapters.setdefault((b, c), []).append((v, t))
    train_text, held_text = [], []
    for i, ((b, c), vs) in enumerate(chapters.items()):
        held = i % 40 == 17
        for j in range(0, len(vs), 6):  # passages of up to six verses
            passage = " ".join(t for _, t in vs[j : j + 6])
            (held_text if held else train_text).append(passage)
        for j in range(len(vs) - 1):
            if rng.random() < 0.5:
                turn = (f"Continue this passage: {vs[j][1]}", vs[j + 1][1])
                (held_turns if held else train_turns).append(turn)

    def chats(turns: list[tuple[str, str]], per: tuple[int, int]) -> list[dict]:
        turns = turns[:]
        rng.shuffle(turns)
        out, i = [], 0
        while i < len(turns):
            k = rng.randint(*per)
            out.append({"kind": "chat", "turns": [list(t) for t in turns[i : i + k]]})
            i += k
        return out

    train = chats(train_turns, (1, 4)) + [{"kind": "text", "text": t} for t in train_text]
    held = chats(held_turns, (1, 1)) + [{"kind": "text", "text": t} for t in held_text]
    rng.shuffle(train)
    for name, rows in (("train", train), ("heldout", held)):
        with open(os.path.join(a.out, f"{name}.jsonl"), "w") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    ci = [{"question": ASK.format(w=w), "word": w, "key": k, "reference": answer_for(w, lemmas[w])} for w, k in CI_WORDS.items()]
    with open(os.path.join(a.out, "ci_questions.json"), "w") as f:
        json.dump(ci, f, indent=1)
    stats = {
        "lemmas": len(lemmas), "heldout_lemmas": len(held_words), "train_turns": len(train_turns), "heldout_turns": len(held_turns),
        "kjv_verses": len(verses), "kjv_train_passages": len(train_text), "kjv_heldout_passages": len(held_text),
        "train_samples": len(train), "heldout_samples": len(held),
    }
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
