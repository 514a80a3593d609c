#!/usr/bin/env python3
"""Check `tripletgen eval` against pytrec_eval (trec_eval's C code) on the same run (run by tests/eval.rs).

    check_eval.py --report EVAL_JSON --run RUN_FILE --qrels QRELS_TSV [--model-index I] [--tolerance 1e-6]

* RUN_FILE is the TREC run tripletgen wrote (`--run-out`): its ranks must follow its scores (best
  first). pytrec_eval is given the ranking as tripletgen ranked it (score = -rank, so ties in the
  similarity cannot be reordered by trec_eval's docid tie-break);
* QRELS_TSV is the BEIR qrels (query-id, corpus-id, score; grades used as they are);
* for every query tripletgen evaluated, ndcg@k (ndcg_cut), recall@k (recall), map@D (map on the
  depth-D run) and mrr@10 (recip_rank on the run cut at 10) must equal pytrec_eval's within the
  tolerance, and so must the means;
* queries in the qrels without a relevant document must be the ones tripletgen skipped.

Prints "max abs difference <x> over <n> values" and "all checks passed", or every problem and exits 1.
"""

import argparse
import json
import sys

try:
    import pytrec_eval
except ImportError as e:  # pragma: no cover - the Rust test checks this first
    print(f"missing Python package ({e}); run ./scripts/test.sh, which creates the pinned test venv", file=sys.stderr)
    sys.exit(2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--report", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--qrels", required=True)
    ap.add_argument("--model-index", type=int, default=0)
    ap.add_argument("--tolerance", type=float, default=1e-6)
    a = ap.parse_args()

    with open(a.report, encoding="utf-8") as f:
        report = json.load(f)
    model = report["models"][a.model_index]
    ours = model["per_query"]
    depth = report["depth"]
    problems = []

    qrels = {}
    with open(a.qrels, encoding="utf-8") as f:
        next(f)
        for line in f:
            if not line.strip():
                continue
            qid, did, score = line.rstrip("\n").split("\t")
            g = int(float(score))
            prev = qrels.setdefault(qid, {}).get(did)
            qrels[qid][did] = g if prev is None else max(prev, g)
    with_relevant = {q for q, d in qrels.items() if any(g > 0 for g in d.values())}
    if set(ours) != with_relevant:
        problems.append(f"evaluated queries differ from those with a relevant document: "
                        f"only ours {sorted(set(ours) - with_relevant)[:5]}, only qrels {sorted(with_relevant - set(ours))[:5]}")
    if report["queries_skipped"] != len(set(qrels) - with_relevant):
        problems.append(f"queries_skipped = {report['queries_skipped']}, qrels has {len(set(qrels) - with_relevant)} without a relevant document")

    run, last = {}, {}
    with open(a.run, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            qid, q0, did, rank, score, tag = line.split()
            rank, score = int(rank), float(score)
            if q0 != "Q0" or tag != "tripletgen":
                problems.append(f"run line {n}: not TREC format: {line!r}")
            prev = last.get(qid)
            if prev is not None and (rank != prev[0] + 1 or score > prev[1]):
                problems.append(f"run line {n}: rank {rank} / score {score} after rank {prev[0]} / score {prev[1]}")
            last[qid] = (rank, score)
            run.setdefault(qid, {})[did] = -float(rank)
    if len(run) != len(ours) or any(len(d) != depth for d in run.values()):
        problems.append(f"run file: {len(run)} queries (want {len(ours)}), depths {sorted({len(d) for d in run.values()})} (want {depth})")

    ks = sorted({int(m.split("@")[1]) for m in model["mean"] if m.startswith("recall@")})
    cut = ",".join(map(str, ks))
    qrels_eval = {q: qrels[q] for q in ours}
    ev = pytrec_eval.RelevanceEvaluator(qrels_eval, {f"ndcg_cut.{cut},10", f"recall.{cut}", "map"})
    theirs = ev.evaluate({q: run[q] for q in ours})
    top10 = {q: {d: s for d, s in docs.items() if s >= -10} for q, docs in run.items() if q in ours}
    rr = pytrec_eval.RelevanceEvaluator(qrels_eval, {"recip_rank"}).evaluate(top10)

    pairs = {"ndcg@10": "ndcg_cut_10", "mrr@10": "recip_rank", f"map@{depth}": "map"}
    for k in ks:
        pairs[f"ndcg@{k}"] = f"ndcg_cut_{k}"
        pairs[f"recall@{k}"] = f"recall_{k}"
    missing = set(model["mean"]) - set(pairs)
    if missing:
        problems.append(f"metrics without a pytrec_eval counterpart: {sorted(missing)}")
    worst, count = 0.0, 0
    for name, measure in pairs.items():
        ref = {q: (rr if measure == "recip_rank" else theirs)[q][measure] for q in ours}
        for q in ours:
            d = abs(ours[q][name] - ref[q])
            worst, count = max(worst, d), count + 1
            if d > a.tolerance:
                problems.append(f"{q} {name}: tripletgen {ours[q][name]!r}, pytrec_eval {ref[q]!r}")
        mean = sum(ref.values()) / len(ref)
        d = abs(model["mean"][name] - mean)
        worst, count = max(worst, d), count + 1
        if d > a.tolerance:
            problems.append(f"mean {name}: tripletgen {model['mean'][name]!r}, pytrec_eval {mean!r}")
        print(f"{name:<12} tripletgen {model['mean'][name]:.6f}  pytrec_eval {mean:.6f}")

    for p in problems[:50]:
        print("FAIL:", p)
    print(f"max abs difference {worst:.3g} over {count} values")
    if problems:
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
