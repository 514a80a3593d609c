#!/usr/bin/env python3
"""The peer for the judge benchmark: sentence-transformers `mine_hard_negatives` (relative_margin 0.05,
range_max 50, 5 negatives by default, top sampling, the base all-MiniLM-L6-v2) on a BEIR folder, written as
flag.jsonl-like lines {"query", "neg", "neg_scores"} for scripts/judge/fn_rate.py.

    python st_flag.py BEIR_DIR OUT.jsonl [SPLIT [NUM_NEGATIVES]]    (in the scripts/downstream venv)

SPLIT: the qrels file (default test); NUM_NEGATIVES: default 5.
"""
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "downstream"))


def main():
    beir, out = Path(sys.argv[1]), sys.argv[2]
    split = sys.argv[3] if len(sys.argv) > 3 else "test"
    num_negatives = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    import torch
    from datasets import Dataset
    from sentence_transformers import util
    from st_mine import load_pairs
    from train import load_model

    torch.set_num_threads(2)
    corpus, anchors, positives = load_pairs(beir, split)
    model = load_model(256)
    ds = Dataset.from_dict({"anchor": anchors, "positive": positives})
    res = util.mine_hard_negatives(
        ds, model, corpus=list(corpus.values()), range_max=50, relative_margin=0.05, num_negatives=num_negatives,
        sampling_strategy="top", output_format="n-tuple", output_scores=True, batch_size=32, verbose=False,
    )
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        for row in res:
            negs = [row[k] for k in row if k.startswith("negative")]
            f.write(json.dumps({"query": row["anchor"], "neg": negs, "neg_scores": row["scores"][1:]}) + "\n")
    os.replace(out + ".tmp", out)


if __name__ == "__main__":
    main()
