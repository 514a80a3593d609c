#!/usr/bin/env python3
"""Build fixtures/downstream from COVID-QA (deepset-ai/COVID-QA, Apache-2.0): BEIR folders split by article.

    python3 scripts/downstream/build_data.py SOURCE_JSON OUT_DIR

SOURCE_JSON is data/question-answering/200423_covidQA.json of the deepset-ai/COVID-QA repository
(commit fb2eb5e249618457e5359806601086c635c8eb8f), sha256 checked below. The selection rule (also in
fixtures/downstream/README.md):

* every article's text is cut into passages: paragraphs (blank-line separated) are split into
  sentences, sentences are packed into passages of at most MAX_WORDS words; a passage is closed at a
  paragraph end once it holds MIN_WORDS words; a sentence longer than MAX_WORDS becomes passages of
  MAX_WORDS words;
* a question's relevant passages are those that overlap its answer span (grade 1);
* articles (sorted by document_id) are shuffled with random.Random(SEED); the first N_TEST are the
  test articles, the rest train. No test passage or question appears in train/, and vice versa.
* train/: corpus (train passages), queries (train questions, with `answers`), qrels/train.tsv.
  test/: corpus (test passages only), queries (test questions), qrels/test.tsv.
Deterministic: the same source gives byte-identical files.
"""
import hashlib
import json
import random
import re
import sys
from pathlib import Path

SOURCE_SHA256 = "ab310b4e39f726e087c8fa3d1787c73771dacddc584977204ebe3cc889ee1264"
SEED = 20261201
N_TEST = 22
MAX_WORDS = 120
MIN_WORDS = 40

SENT_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")


def spans(text, pattern):
    """(start, end) of the pieces of text between matches of pattern, stripped, non-empty."""
    out, pos = [], 0
    for m in pattern.finditer(text):
        out.append((pos, m.start()))
        pos = m.end()
    out.append((pos, len(text)))
    res = []
    for s, e in out:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            res.append((s, e))
    return res


def word_spans(text, s, e):
    return [(s + m.start(), s + m.end()) for m in re.finditer(r"\S+", text[s:e])]


def passages(text):
    """Char spans (start, end) of the passages of one article."""
    chunks = []
    cur_s = cur_e = None
    cur_words = 0

    def close():
        nonlocal cur_s, cur_e, cur_words
        if cur_s is not None:
            chunks.append((cur_s, cur_e))
        cur_s = cur_e = None
        cur_words = 0

    for ps, pe in spans(text, re.compile(r"\n\s*\n")):
        for ss, se in spans(text[ps:pe], SENT_RE):
            ss, se = ps + ss, ps + se
            words = word_spans(text, ss, se)
            if len(words) > MAX_WORDS:
                close()
                for i in range(0, len(words), MAX_WORDS):
                    part = words[i : i + MAX_WORDS]
                    chunks.append((part[0][0], part[-1][1]))
                continue
            if cur_words + len(words) > MAX_WORDS:
                close()
            if cur_s is None:
                cur_s = ss
            cur_e = se
            cur_words += len(words)
        if cur_words >= MIN_WORDS:
            close()
    close()
    return chunks


def main():
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    raw = src.read_bytes()
    got = hashlib.sha256(raw).hexdigest()
    if got != SOURCE_SHA256:
        sys.exit(f"{src}: sha256 {got}, expected {SOURCE_SHA256}")
    data = json.loads(raw)["data"]
    articles = []
    for art in data:
        for para in art["paragraphs"]:
            articles.append(para)
    articles.sort(key=lambda p: int(p["document_id"]))
    order = list(range(len(articles)))
    random.Random(SEED).shuffle(order)
    test_idx = set(order[:N_TEST])

    splits = {"train": ([], [], []), "test": ([], [], [])}
    stats = {"train": [0, 0, 0], "test": [0, 0, 0]}
    bad = 0
    for i, para in enumerate(articles):
        split = "test" if i in test_idx else "train"
        corpus, queries, qrels = splits[split]
        text = para["context"]
        doc = int(para["document_id"])
        chunks = passages(text)
        ids = [f"d{doc}-{k:03d}" for k in range(len(chunks))]
        for cid, (s, e) in zip(ids, chunks):
            corpus.append({"_id": cid, "title": "", "text": text[s:e]})
        stats[split][0] += 1
        stats[split][1] += len(chunks)
        for qa in para["qas"]:
            if qa.get("is_impossible") or not qa["answers"]:
                continue
            rel = set()
            texts = []
            for ans in qa["answers"]:
                a_s = ans["answer_start"]
                a_t = ans["text"]
                if text[a_s : a_s + len(a_t)] != a_t:
                    found = text.find(a_t)
                    if found < 0:
                        bad += 1
                        continue
                    a_s = found
                a_e = a_s + len(a_t.rstrip())
                texts.append(a_t.strip())
                for cid, (s, e) in zip(ids, chunks):
                    if s < a_e and a_s < e:
                        rel.add(cid)
            if not rel:
                continue
            qid = f"q{qa['id']}"
            queries.append({"_id": qid, "text": qa["question"].strip(), "answers": texts})
            for cid in sorted(rel):
                qrels.append((qid, cid))
            stats[split][2] += 1

    for split, (corpus, queries, qrels) in splits.items():
        d = out / split
        (d / "qrels").mkdir(parents=True, exist_ok=True)
        with open(d / "corpus.jsonl", "w", encoding="utf-8") as f:
            for r in corpus:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        with open(d / "queries.jsonl", "w", encoding="utf-8") as f:
            for r in queries:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        with open(d / "qrels" / f"{split}.tsv", "w", encoding="utf-8") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for q, c in qrels:
                f.write(f"{q}\t{c}\t1\n")
    for split, (a, p, q) in stats.items():
        print(f"{split}: {a} articles, {p} passages, {q} questions, {len(splits[split][2])} qrels")
    print(f"answers not found in their context: {bad}")


if __name__ == "__main__":
    main()
