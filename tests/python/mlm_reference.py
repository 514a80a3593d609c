#!/usr/bin/env python3
"""A tiny masked language model and its reference implementation, for tests/lexical.rs.

    mlm_reference.py build DIR --tokenizer TOKENIZER_JSON
        writes DIR/model.onnx (seeded random weights; inputs input_ids, attention_mask,
        token_type_ids; output logits [batch, sequence, vocabulary]) and DIR/tokenizer.json;
    mlm_reference.py check DIR --variants VARIANTS_PARQUET --k K [--min N]
        recomputes, in numpy from the same weights and with a WordPiece tokenizer written here,
        the logits at the masked word of every `contextual` variant's source query, and checks that
        each replacement is among the K best whole words there. Exits 1 on any mismatch.

The model is small and random: the test checks that tripletgen runs an ONNX masked LM the way the
reference computes it (tokenisation, mask position, batching, padding, logits, whole-word filter),
not what a trained model would say.
"""

import argparse
import json
import os
import shutil
import sys
import unicodedata

import numpy as np

DIM = 16
SEED = 7


def weights(vocab):
    rng = np.random.default_rng(SEED)
    return {
        "E": rng.standard_normal((vocab, DIM)).astype(np.float32),
        "T": rng.standard_normal((2, DIM)).astype(np.float32) * 0.1,
        "W": rng.standard_normal((DIM, vocab)).astype(np.float32),
        "b": rng.standard_normal(vocab).astype(np.float32) * 0.1,
    }


def vocab_of(tokenizer_json):
    with open(tokenizer_json, encoding="utf-8") as f:
        tok = json.load(f)
    return tok["model"]["vocab"]


def build(out, tokenizer_json):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    vocab = vocab_of(tokenizer_json)
    w = weights(len(vocab))
    nodes = [
        helper.make_node("Gather", ["E", "input_ids"], ["x"]),
        helper.make_node("Gather", ["T", "token_type_ids"], ["tt"]),
        helper.make_node("Add", ["x", "tt"], ["xt"]),
        helper.make_node("Cast", ["attention_mask"], ["m2"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["m2", "axis2"], ["m"]),
        helper.make_node("Mul", ["xt", "m"], ["xm"]),
        helper.make_node("ReduceSum", ["xm", "axis1"], ["s"], keepdims=1),
        helper.make_node("ReduceSum", ["m", "axis1"], ["n"], keepdims=1),
        helper.make_node("Div", ["s", "n"], ["ctx"]),
        helper.make_node("Add", ["xt", "ctx"], ["h0"]),
        helper.make_node("Tanh", ["h0"], ["h"]),
        helper.make_node("MatMul", ["h", "W"], ["l0"]),
        helper.make_node("Add", ["l0", "b"], ["logits"]),
    ]
    inits = [numpy_helper.from_array(v, k) for k, v in w.items()] + [
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
    ]
    ids = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"]) for n in ("input_ids", "attention_mask", "token_type_ids")]
    out_info = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", len(vocab)])
    graph = helper.make_graph(nodes, "tiny-mlm", ids, [out_info], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    os.makedirs(out, exist_ok=True)
    onnx.save(model, os.path.join(out, "model.onnx"))
    shutil.copy(tokenizer_json, os.path.join(out, "tokenizer.json"))


def wordpiece(text, vocab):
    """BERT uncased: lowercase, strip accents, split on whitespace and punctuation, greedy WordPiece."""
    text = "".join(c for c in unicodedata.normalize("NFD", text.lower()) if unicodedata.category(c) != "Mn")
    words, cur = [], ""
    for c in text:
        if c.isspace():
            words.append(cur)
            cur = ""
        elif unicodedata.category(c).startswith("P") or (33 <= ord(c) <= 47 or 58 <= ord(c) <= 64 or 91 <= ord(c) <= 96 or 123 <= ord(c) <= 126):
            words += [cur, c]
            cur = ""
        else:
            cur += c
    words.append(cur)
    ids = [vocab["[CLS]"]]
    for word in filter(None, words):
        if word == "\0mask":
            ids.append(vocab["[MASK]"])
            continue
        start, pieces = 0, []
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in vocab:
                    pieces.append(vocab[piece])
                    break
                end -= 1
            if end == start:
                pieces = [vocab["[UNK]"]]
                break
            start = end
        ids += pieces
    return ids + [vocab["[SEP]"]]


def logits_at_mask(ids, w, mask_id):
    x = w["E"][ids] + w["T"][0]
    h = np.tanh(x + x.mean(axis=0, keepdims=True))
    out = h @ w["W"] + w["b"]
    return out[ids.index(mask_id)]


def strip(token):
    """tripletgen's tokenize: punctuation kept aside from the word."""
    alnum = [i for i, c in enumerate(token) if c.isalnum()]
    return token[alnum[0] : alnum[-1] + 1] if alnum else ""


def check(model_dir, variants, k, minimum):
    import pyarrow.parquet as pq

    vocab = vocab_of(os.path.join(model_dir, "tokenizer.json"))
    w = weights(len(vocab))
    whole = {}
    for t, i in vocab.items():
        if not t.startswith("##") and len(t) > 1 and t.isalpha():
            whole[i] = t.lower()
    rows = [r for r in pq.read_table(variants).to_pylist() if r["strategy"] == "contextual"]
    checked, problems = 0, []
    for r in rows:
        for change in r["detail"].split("; "):
            old, new = change.replace(" (antonym)", "").split(" -> ")
            tokens = r["source_text"].split()
            at = next(i for i, t in enumerate(tokens) if strip(t) == old)
            word = strip(tokens[at])
            tokens[at] = tokens[at].replace(word, "\0mask", 1)
            ids = wordpiece(" ".join(tokens), vocab)
            row = logits_at_mask(ids, w, vocab["[MASK]"])
            order = sorted(whole, key=lambda i: (-row[i], i))
            top = []
            for i in order:
                if whole[i] not in top:
                    top.append(whole[i])
                if len(top) == k:
                    break
            checked += 1
            if new.lower() not in top:
                problems.append(f"{r['variant_id']}: {old} -> {new}, reference top {k}: {top}")
    print(f"{checked} replacements in {len(rows)} contextual variants checked against the reference")
    for p in problems[:20]:
        print("FAIL:", p)
    if problems or checked < minimum:
        print(f"{len(problems)} mismatches; {checked} checked (at least {minimum} wanted)")
        sys.exit(1)
    print("all replacements match the reference")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["build", "check"])
    ap.add_argument("dir")
    ap.add_argument("--tokenizer")
    ap.add_argument("--variants")
    ap.add_argument("--k", type=int, default=13)
    ap.add_argument("--min", type=int, default=1)
    a = ap.parse_args()
    if a.command == "build":
        build(a.dir, a.tokenizer)
    else:
        check(a.dir, a.variants, a.k, a.min)


if __name__ == "__main__":
    main()
