#!/usr/bin/env python3
"""Arm (b): sentence-transformers `mine_hard_negatives` on the train split (the reference miner).

    st_mine.py BEIR_TRAIN_DIR OUT.parquet [--num-negatives 1]

One row per (query, positive) qrel pair of qrels/train.tsv, corpus = every train passage, the base
all-MiniLM-L6-v2 (fp32, max_seq_length 256 like tripletgen's model.max_length), range_max 50,
relative_margin 0.05, sampling "top", output_format "triplet": the same settings as tripletgen's
defaults, so (b) and (c) differ by the miner only.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))


def load_pairs(beir, split):
    """(corpus texts by id, anchors, positives) of a BEIR folder: one (query, positive) per qrel of
    qrels/<split>.tsv with a score > 0; a passage is its title and text, as tripletgen embeds it."""
    corpus = {}
    for line in open(beir / "corpus.jsonl", encoding="utf-8"):
        r = json.loads(line)
        corpus[r["_id"]] = (r.get("title", "") + " " + r["text"]).strip()
    queries = {}
    for line in open(beir / "queries.jsonl", encoding="utf-8"):
        r = json.loads(line)
        queries[r["_id"]] = r["text"]
    anchors, positives = [], []
    for i, line in enumerate(open(beir / "qrels" / f"{split}.tsv", encoding="utf-8")):
        if i == 0:
            continue
        q, c, s = line.rstrip("\n").split("\t")
        if float(s) > 0:
            anchors.append(queries[q])
            positives.append(corpus[c])
    return corpus, anchors, positives


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("beir")
    ap.add_argument("out")
    ap.add_argument("--num-negatives", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--split", default="train", help="qrels/<split>.tsv gives the pairs")
    args = ap.parse_args()
    import torch
    from datasets import Dataset
    from sentence_transformers import util

    from train import load_model

    torch.set_num_threads(args.threads)
    corpus, anchors, positives = load_pairs(Path(args.beir), args.split)
    t0 = time.time()
    model = load_model(256)
    ds = Dataset.from_dict({"anchor": anchors, "positive": positives})
    out = util.mine_hard_negatives(
        ds,
        model,
        corpus=list(corpus.values()),
        range_max=50,
        relative_margin=0.05,
        num_negatives=args.num_negatives,
        sampling_strategy="top",
        output_format="triplet",
        batch_size=32,
        verbose=True,
    )
    tmp = args.out + ".tmp"
    out.to_parquet(tmp)
    os.replace(tmp, args.out)
    print(json.dumps({"pairs": len(anchors), "rows": len(out), "secs": round(time.time() - t0, 1)}), file=sys.stderr)


if __name__ == "__main__":
    main()
