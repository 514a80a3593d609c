#!/usr/bin/env python3
"""False-negative rate of mined negatives: the share of negatives whose text contains a gold answer
of their query (SQuAD normalisation, word boundaries: the same rule as tripletgen's judge), and the
mean query-negative cosine (hardness) from the retriever scores.

    python3 scripts/judge/fn_rate.py [--audit AUDIT.jsonl] QUERIES.jsonl OUT_DIR [OUT_DIR ...]

QUERIES.jsonl: BEIR queries with `answers`. OUT_DIR: a `tripletgen mine` output folder with
flag.jsonl written with retriever scores (the default `--scores retriever`), or a JSONL of
{"query", "neg": [...], "neg_scores": [...]} lines from another tool (sentence-transformers'
mine_hard_negatives output converted by scripts/downstream). No dependencies.

--audit: hand labels of negatives that contain a gold answer ({"query", "passage", "answers": true|false}
per line). A gold string in a passage is not always an answer ("2017" in a passage about another
season); with labels, the table adds the audited rate (negatives that contain the answer *and* answer
the query) and prints the hits that still need a label to stderr.
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
    args = sys.argv[1:]
    audit = None
    if args[:1] == ["--audit"]:
        audit = {}
        for line in open(args[1], encoding="utf-8"):
            if line.strip():
                a = json.loads(line)
                audit[(a["query"], a["passage"])] = a["answers"]
        args = args[2:]
    if len(args) < 2:
        sys.exit(__doc__)
    answers = {}
    for line in open(args[0], encoding="utf-8"):
        if line.strip():
            q = json.loads(line)
            a = q.get("answers") or []
            if isinstance(a, str):
                a = [a]
            answers[q["text"]] = [n for n in (normalize(x) for x in a) if n]
    head = f"{'run':<40} {'negatives':>9} {'with answer':>11} {'FN rate':>8} {'mean cos':>9}"
    print(head + (f" {'answering':>9} {'audited FN':>10}" if audit is not None else ""))
    missing = []
    for out in args[1:]:
        p = Path(out)
        f = p / "flag.jsonl" if p.is_dir() else p
        n = hit = real = 0
        cos = []
        for line in open(f, encoding="utf-8"):
            if not line.strip():
                continue
            row = json.loads(line)
            gold = answers.get(row["query"], [])
            for i, neg in enumerate(row["neg"]):
                n += 1
                hay = f" {normalize(neg)} "
                found = any(f" {a} " in hay for a in gold)
                hit += found
                if found and audit is not None:
                    label = audit.get((row["query"], neg))
                    if label is None:
                        missing.append({"query": row["query"], "passage": neg, "gold": gold})
                    real += bool(label)
                if i < len(row.get("neg_scores", [])):
                    cos.append(row["neg_scores"][i])
        rate = hit / n if n else 0.0
        mean = sum(cos) / len(cos) if cos else float("nan")
        line = f"{out:<40} {n:>9} {hit:>11} {rate:>8.3%} {mean:>9.3f}"
        if audit is not None:
            line += f" {real:>9} {(real / n if n else 0.0):>10.3%}"
        print(line)
    seen = set()
    for m in missing:
        if (m["query"], m["passage"]) not in seen:
            seen.add((m["query"], m["passage"]))
            print("unlabelled: " + json.dumps(m, ensure_ascii=False), file=sys.stderr)


if __name__ == "__main__":
    main()
