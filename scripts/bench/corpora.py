#!/usr/bin/env python3
"""Larger BEIR folders for the speed and memory benchmarks, built from the repository's fixtures.

  python3 scripts/bench/corpora.py 10k  OUT_DIR
  python3 scripts/bench/corpora.py 100k OUT_DIR

Both start from the 6,554 real passages of fixtures/nq-open (Wikipedia, 2,600), fixtures/downstream
train and test (COVID-QA papers, 3,039 + 915) and their 4,035 questions with qrels, ids prefixed by
the fixture (nq-, tr-, te-) so none collide:

* 10k:  10,000 documents: the 3,446 longest passages are split in two at the sentence boundary
        nearest their middle (a question's qrel goes to the half that contains its gold answer,
        else the first half), the others are kept whole.
* 100k: the 10k folder plus 90,000 documents of two sentences each, drawn with a fixed seed from
        every sentence of the 6,554 passages (each pair used once): same vocabulary and length
        scale as real passages, so the embedding, index and mining work is realistic.

The output is deterministic (same bytes on every run); the folder gets corpus.jsonl, queries.jsonl
(with `answers`) and qrels/test.tsv. Standard library only.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCES = [("nq-", "fixtures/nq-open", "test"), ("tr-", "fixtures/downstream/train", "train"),
           ("te-", "fixtures/downstream/test", "test")]
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load():
    docs, queries, qrels = [], [], []
    for prefix, folder, split in SOURCES:
        base = os.path.join(ROOT, folder)
        docs += [{"_id": prefix + d["_id"], "title": d.get("title", ""), "text": d["text"]}
                 for d in read_jsonl(os.path.join(base, "corpus.jsonl"))]
        queries += [{"_id": prefix + q["_id"], "text": q["text"], "answers": q.get("answers", [])}
                    for q in read_jsonl(os.path.join(base, "queries.jsonl"))]
        with open(os.path.join(base, "qrels", f"{split}.tsv"), encoding="utf-8") as f:
            for i, line in enumerate(f):
                parts = line.rstrip("\n").split("\t")
                if i == 0 and parts[0] == "query-id":
                    continue
                qrels.append((prefix + parts[0], prefix + parts[1], parts[2]))
    return docs, queries, qrels


def split_middle(text):
    """Two halves at the sentence boundary nearest the middle, or None when there is none."""
    cuts = [m.start() for m in SENTENCE_END.finditer(text)]
    if not cuts:
        return None
    cut = min(cuts, key=lambda c: abs(c - len(text) / 2))
    a, b = text[:cut].strip(), text[cut:].strip()
    return (a, b) if a and b else None


def build_10k(docs, queries, qrels, target=10_000):
    answers = {q["_id"]: [a.lower() for a in q["answers"] if a] for q in queries}
    need = target - len(docs)
    order = sorted(range(len(docs)), key=lambda i: (-len(docs[i]["text"]), docs[i]["_id"]))
    halves = {}
    for i in order:
        if len(halves) == need:
            break
        parts = split_middle(docs[i]["text"])
        if parts:
            halves[docs[i]["_id"]] = parts
    if len(halves) < need:
        sys.exit(f"only {len(halves)} passages can be split; {need} needed")
    out = []
    for d in docs:
        if d["_id"] in halves:
            for k, part in enumerate(halves[d["_id"]]):
                out.append({"_id": f"{d['_id']}.{k}", "title": d["title"], "text": part})
        else:
            out.append(d)
    new_qrels = []
    for qid, did, score in qrels:
        if did in halves:
            hit = [k for k, part in enumerate(halves[did]) if any(x in part.lower() for x in answers.get(qid, []))]
            did = f"{did}.{hit[0] if hit else 0}"
        new_qrels.append((qid, did, score))
    return out, new_qrels


def build_100k(docs, queries, qrels):
    base, new_qrels = build_10k(docs, queries, qrels)
    sentences = sorted({s.strip() for d in docs for s in SENTENCE_END.split(d["text"]) if len(s.strip()) > 20})
    rng = random.Random(16)
    seen, extra = set(), []
    while len(extra) < 90_000:
        i, j = rng.randrange(len(sentences)), rng.randrange(len(sentences))
        if i == j or (i, j) in seen:
            continue
        seen.add((i, j))
        extra.append({"_id": f"syn-{len(extra):05d}", "title": "", "text": sentences[i] + " " + sentences[j]})
    return base + extra, new_qrels


def write(out_dir, docs, queries, qrels):
    os.makedirs(os.path.join(out_dir, "qrels"), exist_ok=True)
    with open(os.path.join(out_dir, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    with open(os.path.join(out_dir, "queries.jsonl"), "w", encoding="utf-8") as f:
        for q in queries:
            f.write(json.dumps(q, ensure_ascii=False) + "\n")
    with open(os.path.join(out_dir, "qrels", "test.tsv"), "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid, did, score in qrels:
            f.write(f"{qid}\t{did}\t{score}\n")


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("10k", "100k"):
        sys.exit(__doc__)
    docs, queries, qrels = load()
    docs, qrels = (build_10k if sys.argv[1] == "10k" else build_100k)(docs, queries, qrels)
    write(sys.argv[2], docs, queries, qrels)
    print(f"{sys.argv[2]}: {len(docs)} documents, {len(queries)} queries, {len(qrels)} qrels", file=sys.stderr)


if __name__ == "__main__":
    main()
