#!/usr/bin/env python3
"""False-negative rate of mined negatives: the share of negatives whose text contains a gold answer
of their query (SQuAD normalisation, word boundaries: the same rule as tripletgen's judge), and the
mean query-negative cosine (hardness) from the retriever scores.

    python3 scripts/judge/fn_rate.py QUERIES.jsonl OUT_DIR [OUT_DIR ...]

QUERIES.jsonl: BEIR queries with `answers`. OUT_DIR: a `tripletgen mine` output folder with
flag.jsonl written with retriever scores (the default `--scores retriever`), or a JSONL of
{"query", "neg": [...], "neg_scores": [...]} lines from another tool (sentence-transformers'
mine_hard_negatives output converted by scripts/downstream). No dependencies.
"""
import json
import re
import string
import sys
from pathlib import Path


def normalize(s):
    s = "".join(c if (c.isalnum() or c.isspace()) else " " for c in s).lower()
    return " ".join(w for w in s.split() if w not in ("a", "an", "the"))


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    answers = {}
    for line in open(sys.argv[1], encoding="utf-8"):
        if line.strip():
            q = json.loads(line)
            a = q.get("answers") or []
            if isinstance(a, str):
                a = [a]
            answers[q["text"]] = [n for n in (normalize(x) for x in a) if n]
    print(f"{'run':<40} {'negatives':>9} {'with answer':>11} {'FN rate':>8} {'mean cos':>9}")
    for out in sys.argv[2:]:
        p = Path(out)
        f = p / "flag.jsonl" if p.is_dir() else p
        n = hit = 0
        cos = []
        for line in open(f, encoding="utf-8"):
            if not line.strip():
                continue
            row = json.loads(line)
            gold = answers.get(row["query"], [])
            for i, neg in enumerate(row["neg"]):
                n += 1
                hay = f" {normalize(neg)} "
                hit += any(f" {a} " in hay for a in gold)
                if i < len(row.get("neg_scores", [])):
                    cos.append(row["neg_scores"][i])
        rate = hit / n if n else 0.0
        mean = sum(cos) / len(cos) if cos else float("nan")
        print(f"{out:<40} {n:>9} {hit:>11} {rate:>8.3%} {mean:>9.3f}")


if __name__ == "__main__":
    main()
