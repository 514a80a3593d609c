#!/usr/bin/env python3
"""Validate fixtures/judge/cases.jsonl (no dependencies; Python >= 3.8).

Usage: python3 scripts/judge/check_cases.py [PATH]   (default: fixtures/judge/cases.jsonl)

Checks the schema, unique ids, the label implied by each category, the minimum
count per category, and the answer-string rules:
  - `answers`: a gold answer appears in the passage;
  - `answers-paraphrased`: NO gold answer appears;
  - `answer-string-other-sense`: a gold answer DOES appear.
"Appears" is decided after SQuAD-style normalisation (lowercase, punctuation
removed, articles a/an/the removed, whitespace collapsed) as a whole-token
sequence, so "11" matches "Apollo 11" but not "2011".
Prints counts per category and label, and exits 1 on any error.
"""
import json
import re
import string
import sys
from collections import Counter, defaultdict
from pathlib import Path

CATEGORIES = {
    "answers": True,
    "answers-paraphrased": True,
    "same-topic-no-answer": False,
    "answer-string-other-sense": False,
    "off-topic": False,
    "near-miss": False,
}
MIN_PER_CATEGORY = 15
MIN_CASES = 130
REQUIRED = {"id": str, "query": str, "answers": list, "passage": str, "relevant": bool, "category": str}
OPTIONAL = {"query_id": str}
WORDS = (40, 120)
SENTENCES = (2, 5)
PUNCT = set(string.punctuation)


def normalize(text):
    """The SQuAD v1.1 evaluation normaliser."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in PUNCT)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def contains(passage, answer):
    p, a = normalize(passage).split(), normalize(answer).split()
    if not a:
        return False
    return any(p[i:i + len(a)] == a for i in range(len(p) - len(a) + 1))


def sentence_count(text):
    # Sentence ends: . ! ? followed by a space and a capital letter or quote, or the end.
    return len(re.findall(r"[.!?](?=\s+[A-Z'\"]|\s*$)", text.strip()))


def main():
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "fixtures/judge/cases.jsonl")
    errors, warnings = [], []
    cases, ids = [], set()
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            errors.append(f"line {lineno}: empty line")
            continue
        try:
            case = json.loads(line)
        except json.JSONDecodeError as e:
            errors.append(f"line {lineno}: invalid JSON: {e}")
            continue
        where = f"line {lineno} ({case.get('id', '?')})"
        for key, typ in REQUIRED.items():
            if key not in case:
                errors.append(f"{where}: missing field {key!r}")
            elif not isinstance(case[key], typ):
                errors.append(f"{where}: field {key!r} must be {typ.__name__}")
        for key in case:
            if key not in REQUIRED and key not in OPTIONAL:
                errors.append(f"{where}: unknown field {key!r}")
        if any(key not in case or not isinstance(case[key], REQUIRED[key]) for key in REQUIRED):
            continue
        if not re.fullmatch(r"j\d{3,}", case["id"]):
            errors.append(f"{where}: id must look like j001")
        if case["id"] in ids:
            errors.append(f"{where}: duplicate id")
        ids.add(case["id"])
        if not case["answers"] or not all(isinstance(a, str) and a.strip() for a in case["answers"]):
            errors.append(f"{where}: answers must be a non-empty list of non-empty strings")
            continue
        cat = case["category"]
        if cat not in CATEGORIES:
            errors.append(f"{where}: unknown category {cat!r}")
            continue
        if case["relevant"] != CATEGORIES[cat]:
            errors.append(f"{where}: category {cat} must have relevant={CATEGORIES[cat]}")
        found = [a for a in case["answers"] if contains(case["passage"], a)]
        if cat == "answers" and not found:
            errors.append(f"{where}: category answers but no gold answer appears in the passage")
        if cat == "answers-paraphrased" and found:
            errors.append(f"{where}: paraphrased passage contains gold answer(s) {found}")
        if cat == "answer-string-other-sense" and not found:
            errors.append(f"{where}: other-sense passage contains no gold answer")
        words = len(case["passage"].split())
        if not WORDS[0] <= words <= WORDS[1]:
            warnings.append(f"{where}: passage has {words} words (expected {WORDS[0]}-{WORDS[1]})")
        sents = sentence_count(case["passage"])
        if not SENTENCES[0] <= sents <= SENTENCES[1]:
            warnings.append(f"{where}: passage has ~{sents} sentences (expected {SENTENCES[0]}-{SENTENCES[1]})")
        cases.append(case)

    # Per-query consistency: one query text has one answers list (and one query_id if given).
    by_query = defaultdict(list)
    for c in cases:
        by_query[c["query"]].append(c)
    for q, cs in by_query.items():
        if len({json.dumps(c["answers"]) for c in cs}) > 1:
            errors.append(f"query {q!r}: different answers lists across cases")
        if len({c.get("query_id") for c in cs}) > 1:
            errors.append(f"query {q!r}: different query_id values across cases")
        if not any(c["relevant"] for c in cs):
            warnings.append(f"query {q!r}: no relevant passage")
    passages = Counter(c["passage"] for c in cases)
    for p, n in passages.items():
        if n > 1:
            errors.append(f"passage used {n} times: {p[:60]}...")

    by_cat = Counter(c["category"] for c in cases)
    by_label = Counter(c["relevant"] for c in cases)
    if len(cases) < MIN_CASES:
        errors.append(f"only {len(cases)} cases (want >= {MIN_CASES})")
    for cat in CATEGORIES:
        if by_cat[cat] < MIN_PER_CATEGORY:
            errors.append(f"category {cat}: {by_cat[cat]} cases (want >= {MIN_PER_CATEGORY})")

    total = len(cases) or 1
    multi = sum(1 for cs in by_query.values() if len(cs) > 1)
    print(f"{path}: {len(cases)} cases, {len(by_query)} queries ({multi} with several passages)")
    print(f"  relevant: {by_label[True]} ({100 * by_label[True] / total:.1f}%)  "
          f"not relevant: {by_label[False]} ({100 * by_label[False] / total:.1f}%)")
    for cat, rel in CATEGORIES.items():
        print(f"  {cat:28s} {by_cat[cat]:4d}  relevant={str(rel).lower()}")
    for w in warnings:
        print("warning:", w)
    for e in errors:
        print("error:", e)
    print("OK" if not errors else f"FAILED: {len(errors)} error(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
