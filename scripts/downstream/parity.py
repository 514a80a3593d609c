#!/usr/bin/env python3
"""Parity check, once: the base all-MiniLM-L6-v2 in sentence-transformers (torch fp32) vs `tripletgen
eval` of our fp32 ONNX export of it (the result file of arm a). Same test split, exact cosine
ranking, nDCG@10 with trec_eval conventions (gain = grade, 1/log2(rank+1), ideal from the judged
grades; ties by corpus order).

    parity.py BEIR_TEST_DIR a.json OUT.json
"""
import json
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))


def main():
    beir, a_json, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    import numpy as np
    import torch

    from train import load_model

    torch.set_num_threads(2)
    docs, ids = [], []
    for line in open(beir / "corpus.jsonl", encoding="utf-8"):
        r = json.loads(line)
        ids.append(r["_id"])
        docs.append((r.get("title", "") + " " + r["text"]).strip() if r.get("title") else r["text"])
    queries = {}
    for line in open(beir / "queries.jsonl", encoding="utf-8"):
        r = json.loads(line)
        queries[r["_id"]] = r["text"]
    qrels = {}
    for i, line in enumerate(open(beir / "qrels" / "test.tsv", encoding="utf-8")):
        if i == 0:
            continue
        q, c, s = line.rstrip("\n").split("\t")
        if float(s) > 0:
            qrels.setdefault(q, {})[c] = max(qrels.get(q, {}).get(c, 0), float(s))
    model = load_model(256)
    D = model.encode(docs, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    qids = [q for q in queries if q in qrels]
    Q = model.encode([queries[q] for q in qids], batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    S = Q @ D.T
    per = {}
    for i, q in enumerate(qids):
        order = sorted(range(len(ids)), key=lambda j: (-S[i, j], j))[:10]
        dcg = sum(qrels[q].get(ids[j], 0) / math.log2(r + 2) for r, j in enumerate(order))
        ideal = sorted(qrels[q].values(), reverse=True)[:10]
        idcg = sum(g / math.log2(r + 2) for r, g in enumerate(ideal))
        per[q] = dcg / idcg if idcg > 0 else 0.0
    st = sum(per.values()) / len(per)
    a = json.loads(a_json.read_text())["models"][0]
    tg = a["mean"]["ndcg@10"]
    tg_per = {q: v["ndcg@10"] for q, v in a["per_query"].items()}
    diffs = [abs(per[q] - tg_per[q]) for q in per if q in tg_per]
    res = {"st_ndcg@10": st, "tripletgen_ndcg@10": tg, "queries": len(per),
           "queries_with_different_ndcg@10": sum(1 for d in diffs if d > 1e-6),
           "max_per_query_abs_diff": max(diffs) if diffs else None}
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res), file=sys.stderr)


if __name__ == "__main__":
    main()
