#!/usr/bin/env python3
"""Build two tiny random-weight cross-encoders (ONNX) and their torch reference scores.

No reranker weights can be downloaded here, so the Rust ONNX cross-encoder judge is
tested against these: same weights, scored once by PyTorch (the reference) and once
by ONNX Runtime (what the Rust side runs).

  fixtures/cross-encoder/bert-tiny/   BertForSequenceClassification, num_labels=1
                                      (ms-marco-MiniLM layout: input_ids,
                                      attention_mask, token_type_ids -> logits)
  fixtures/cross-encoder/xlmr-tiny/   XLMRobertaForSequenceClassification, num_labels=1
                                      (bge-reranker layout: input_ids, attention_mask
                                      -> logits)
  fixtures/cross-encoder/reference.jsonl   torch scores (+ a few input_ids)

Usage (venv outside the repo, see scripts/judge/requirements.txt):
  python3 -m venv ~/.cache/tripletgen/judge-venv
  ~/.cache/tripletgen/judge-venv/bin/pip install -r scripts/judge/requirements.txt
  ~/.cache/tripletgen/judge-venv/bin/python scripts/judge/make_tiny_cross_encoders.py

Everything is seeded; with the pinned versions a rerun reproduces the files
(model.onnx bytes may differ across exporter versions; scores must not).
The script verifies, with onnxruntime, that ONNX == torch within TOL and that
batched (padded) inference == single-pair inference, and fails otherwise.
"""
import argparse
import json
import math
import os
import random
import sys
from pathlib import Path

import numpy as np
import torch
import onnx
import onnxruntime as ort
import tokenizers
import transformers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (BertConfig, BertForSequenceClassification, BertTokenizerFast,
                          XLMRobertaConfig, XLMRobertaForSequenceClassification, XLMRobertaTokenizerFast)

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "fixtures" / "judge" / "cases.jsonl"
OUT = ROOT / "fixtures" / "cross-encoder"
SEED = 20261201
MAX_LENGTH = 128
VOCAB_SIZE = 1500
OPSET = 17
TOL = 1e-5
HEAD_STD = 0.4  # std of the re-drawn pooler/classifier weights (see scale_head)
N_INPUT_IDS = 8  # how many reference pairs also record their token ids

# Extra texts so that the tokenizers and the reference exercise normalisation:
# accents, upper case, digits, punctuation, CJK, an emoji, runs of spaces.
EXTRA_PAIRS = [
    ("Where is Zürich?", "Zürich is the largest city in Switzerland, on Lake Zürich. Its name in Italian is Zurigo."),
    ("WHO PAINTED THE MONA LISA?", "Leonardo   da Vinci painted it (c. 1503–1519); 東京 and 🙂 are out-of-vocabulary here."),
    ("a", "b"),
]
# Only in the reference, never in the training texts: characters unknown to both
# vocabularies (-> [UNK] / <unk>), a Greek word, an unseen emoji, a tab and a newline.
UNSEEN_PAIRS = [
    ("Ωμέγα ΣΥΝ ⚡?", "Unseen\tcharacters:\nÅngström, Ωμέγα, ⚡ and \u00a0non-breaking spaces."),
]


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_cases():
    return [json.loads(line) for line in CASES.read_text(encoding="utf-8").splitlines() if line.strip()]


def training_texts(cases):
    seen, texts = set(), []
    for c in cases:
        for t in (c["query"], c["passage"]):
            if t not in seen:
                seen.add(t)
                texts.append(t)
    for q, p in EXTRA_PAIRS:
        texts += [q, p]
    return texts


# ---------------------------------------------------------------- tokenizers

def _words(tok, texts):
    """Words after the tokenizer's own normaliser and pre-tokenizer, with counts."""
    counts = {}
    for t in texts:
        norm = tok.normalizer.normalize_str(t)
        for w, _ in tok.pre_tokenizer.pre_tokenize_str(norm):
            counts[w] = counts.get(w, 0) + 1
    return counts


def _top(counter, n, exclude):
    items = sorted(((c, w) for w, c in counter.items() if w not in exclude), key=lambda x: (-x[0], x[1]))
    return [w for _, w in items[:n]]


# The vocabularies are counted here rather than by tokenizers' trainers: those break ties
# in hash-map order, so two runs on the same texts give different vocabularies (checked
# with tokenizers 0.22.2). Counting with explicit sort keys is reproducible; the
# tokenizer itself (normaliser, pre-tokenizer, model, post-processor) is the library's.

def train_wordpiece(texts):
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(vocab={s: i for i, s in enumerate(specials)}, unk_token="[UNK]",
                                     max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    words = _words(tok, texts)
    chars = sorted({c for w in words for c in w})
    vocab = list(specials) + chars + ["##" + c for c in chars]
    taken = set(vocab)
    for w in _top(words, (VOCAB_SIZE - len(vocab)) * 2 // 3, taken):  # whole words
        vocab.append(w)
        taken.add(w)
    pieces = {}
    for w, c in words.items():  # frequent word-initial pieces and ##suffixes of words not in vocab
        if w in taken or len(w) < 4:
            continue
        for k in range(2, min(6, len(w))):
            pieces[w[:k]] = pieces.get(w[:k], 0) + c
            pieces["##" + w[-k:]] = pieces.get("##" + w[-k:], 0) + c
    vocab += _top(pieces, VOCAB_SIZE - len(vocab), taken)
    tok.model = models.WordPiece(vocab={w: i for i, w in enumerate(vocab)}, unk_token="[UNK]",
                                 max_input_chars_per_word=100)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tok.add_special_tokens(specials)
    fast = BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                             cls_token="[CLS]", mask_token="[MASK]", do_lower_case=True,
                             model_max_length=MAX_LENGTH)
    return fast


def train_unigram(texts):
    # XLM-R order: <s>=0 <pad>=1 </s>=2 <unk>=3; <mask> is the last id in the real model,
    # here it is 4 (ids are read from the files, never assumed).
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.Unigram([(s, 0.0) for s in specials], unk_id=3, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(tokenizers.Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    words = _words(tok, texts)  # words start with the metaspace
    counts = {}
    for w, c in words.items():
        for ch in w:
            counts[ch] = counts.get(ch, 0) + c
    chars = set(counts)
    keep = set(chars) | set(_top(words, (VOCAB_SIZE - len(specials) - len(chars)) * 2 // 3, chars))  # whole words
    for w, c in words.items():
        counts[w] = counts.get(w, 0) + c
        if w in keep:
            continue
        for i in range(len(w)):  # substrings of the other words
            for j in range(i + 2, min(len(w), i + 6) + 1):
                counts[w[i:j]] = counts.get(w[i:j], 0) + c
    keep |= set(_top({k: v for k, v in counts.items() if k not in keep},
                     VOCAB_SIZE - len(specials) - len(keep), set()))
    total = sum(counts[k] for k in keep)
    scored = sorted(((math.log(counts[k] / total), k) for k in keep), key=lambda x: (-x[0], x[1]))
    vocab = [(s, 0.0) for s in specials] + [(k, sc) for sc, k in scored]
    tok.model = models.Unigram(vocab, unk_id=3, byte_fallback=False)
    tok.post_processor = processors.RobertaProcessing(sep=("</s>", tok.token_to_id("</s>")),
                                                      cls=("<s>", tok.token_to_id("<s>")),
                                                      trim_offsets=True, add_prefix_space=True)
    tok.add_special_tokens(specials)
    fast = XLMRobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                   cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                                   model_max_length=MAX_LENGTH)
    return fast


# ---------------------------------------------------------------- models

def scale_head(model, std):
    """HF's init (std 0.02) gives logits of ~0.01 that hardly differ between pairs;
    widen the head (pooler/classifier) so scores spread over roughly [-3, 3]."""
    g = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ("pooler" in name or "classifier" in name) and name.endswith("weight"):
                p.copy_(torch.randn(p.shape, generator=g) * std)


def build_bert(vocab_size, pad_id):
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=MAX_LENGTH, type_vocab_size=2,
                     pad_token_id=pad_id, num_labels=1, initializer_range=0.2,
                     hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    cfg.id2label = {0: "LABEL_0"}
    cfg.label2id = {"LABEL_0": 0}
    cfg._attn_implementation = "eager"
    seed_everything(SEED)
    model = BertForSequenceClassification(cfg)
    scale_head(model, HEAD_STD)
    return model.eval()


def build_xlmr(vocab_size, pad_id, bos_id, eos_id):
    # Position ids start at padding_idx + 1, so max_position_embeddings = max_length + pad_id + 1
    # (XLM-R/bge-reranker: 512 + 2 = 514).
    cfg = XLMRobertaConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=MAX_LENGTH + pad_id + 1,
                           type_vocab_size=1, pad_token_id=pad_id, bos_token_id=bos_id, eos_token_id=eos_id,
                           num_labels=1, initializer_range=0.2,
                           hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    cfg.id2label = {0: "LABEL_0"}
    cfg.label2id = {"LABEL_0": 0}
    cfg._attn_implementation = "eager"
    seed_everything(SEED)
    model = XLMRobertaForSequenceClassification(cfg)
    scale_head(model, HEAD_STD)
    return model.eval()


class LogitsOnly(torch.nn.Module):
    def __init__(self, model, with_token_types):
        super().__init__()
        self.model = model
        self.with_token_types = with_token_types

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        if self.with_token_types:
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).logits
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def export_onnx(model, tokenizer, with_token_types, path, sample_pairs):
    enc = tokenizer([q for q, _ in sample_pairs], [p for _, p in sample_pairs], truncation="only_second",
                    max_length=MAX_LENGTH, padding="longest", return_tensors="pt")
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if with_token_types else [])
    args = tuple(enc[n] for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["logits"] = {0: "batch"}
    # The wrapper must be in eval mode too: the exporter restores the wrapper's mode
    # afterwards, and a fresh Module is in training mode (dropout on) by default.
    wrapper = LogitsOnly(model, with_token_types).eval()
    torch.onnx.export(wrapper, args, str(path), input_names=names,
                      output_names=["logits"], dynamic_axes=axes, opset_version=OPSET, dynamo=False,
                      do_constant_folding=True)
    model.eval()
    assert not model.training
    m = onnx.load(str(path))
    onnx.checker.check_model(m)
    m.producer_name = "tripletgen scripts/judge/make_tiny_cross_encoders.py"
    onnx.save(m, str(path))
    return names


# ---------------------------------------------------------------- reference pairs

def reference_pairs(cases):
    """~40 (query, passage) pairs: whole query groups (one relevant + several not),
    some single cases, one long passage that is truncated, odd texts."""
    by_q = {}
    for c in cases:
        by_q.setdefault(c["query"], []).append(c)
    groups = list(by_q.values())
    pairs = []
    for g in groups[:5]:  # five whole query groups
        for c in g:
            pairs.append({"case_id": c["id"], "query": c["query"], "passage": c["passage"],
                          "relevant": c["relevant"], "category": c["category"]})
    for g in groups[5::2]:  # one case from every second remaining group
        c = g[len(g) // 2]
        pairs.append({"case_id": c["id"], "query": c["query"], "passage": c["passage"],
                      "relevant": c["relevant"], "category": c["category"]})
    # Short passages (first sentence of a case), so that padding within a batch matters.
    for g in groups[1:5]:
        c = g[-1]
        pairs.append({"case_id": None, "query": c["query"], "passage": c["passage"].split(". ")[0] + ".",
                      "relevant": None, "category": "short-passage"})
    # A long passage: all passages of one query joined, far beyond 128 tokens.
    g = groups[6]
    pairs.append({"case_id": None, "query": g[0]["query"], "passage": " ".join(c["passage"] for c in g),
                  "relevant": None, "category": "long-truncated"})
    for q, p in EXTRA_PAIRS + UNSEEN_PAIRS:
        pairs.append({"case_id": None, "query": q, "passage": p, "relevant": None, "category": "tokenizer-edge"})
    for i, p in enumerate(pairs, 1):
        p["pair_id"] = f"r{i:02d}"
    return pairs


def torch_scores(model, tokenizer, names, pairs, batched):
    out = []
    with torch.no_grad():
        if batched:
            enc = tokenizer([p["query"] for p in pairs], [p["passage"] for p in pairs], truncation="only_second",
                            max_length=MAX_LENGTH, padding="longest", return_tensors="pt")
            logits = model(**{n: enc[n] for n in names}).logits[:, 0]
            return [float(x) for x in logits]
        for p in pairs:
            enc = tokenizer(p["query"], p["passage"], truncation="only_second", max_length=MAX_LENGTH,
                            return_tensors="pt")
            out.append(float(model(**{n: enc[n] for n in names}).logits[0, 0]))
    return out


def ort_scores(path, tokenizer, names, pairs, batch_size):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == names, [i.name for i in sess.get_inputs()]
    assert [o.name for o in sess.get_outputs()] == ["logits"]
    scores = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        enc = tokenizer([p["query"] for p in chunk], [p["passage"] for p in chunk], truncation="only_second",
                        max_length=MAX_LENGTH, padding="longest", return_tensors="np")
        feeds = {n: enc[n].astype(np.int64) for n in names}
        (logits,) = sess.run(["logits"], feeds)
        assert logits.shape == (len(chunk), 1), logits.shape
        scores += [float(x) for x in logits[:, 0]]
    return scores


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def write_hf_files(model, tokenizer, folder):
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(folder)
    model.save_pretrained(folder, safe_serialization=True)  # model.safetensors: the torch weights
    tokenizer.save_pretrained(folder)
    # keep the folder to what a loader needs: drop files HF may add that we do not use
    for f in folder.iterdir():
        f.chmod(0o644)
    for extra in ("added_tokens.json", "generation_config.json"):
        (folder / extra).unlink(missing_ok=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    cases = load_cases()
    texts = training_texts(cases)
    pairs = reference_pairs(cases)
    export_sample = [(pairs[0]["query"], pairs[0]["passage"]), ("short?", "tiny.")]

    specs = []
    bert_tok = train_wordpiece(texts)
    bert = build_bert(len(bert_tok), bert_tok.pad_token_id)
    specs.append(("bert-tiny", bert, bert_tok, True))
    xlmr_tok = train_unigram(texts)
    xlmr = build_xlmr(len(xlmr_tok), xlmr_tok.pad_token_id, xlmr_tok.bos_token_id, xlmr_tok.eos_token_id)
    specs.append(("xlmr-tiny", xlmr, xlmr_tok, False))

    report = {}
    for name, model, tok, with_tt in specs:
        folder = args.out / name
        write_hf_files(model, tok, folder)
        names = export_onnx(model, tok, with_tt, folder / "model.onnx", export_sample)
        # Reload the tokenizer from the written files: the reference must use exactly them.
        tok = type(tok).from_pretrained(folder)
        single = torch_scores(model, tok, names, pairs, batched=False)
        batched = torch_scores(model, tok, names, pairs, batched=True)
        onnx_single = ort_scores(folder / "model.onnx", tok, names, pairs, batch_size=1)
        onnx_b8 = ort_scores(folder / "model.onnx", tok, names, pairs, batch_size=8)
        onnx_all = ort_scores(folder / "model.onnx", tok, names, pairs, batch_size=len(pairs))
        diffs = {
            "torch_batched_vs_single": max(abs(a - b) for a, b in zip(single, batched)),
            "onnx_single_vs_torch": max(abs(a - b) for a, b in zip(single, onnx_single)),
            "onnx_batch8_vs_torch": max(abs(a - b) for a, b in zip(single, onnx_b8)),
            "onnx_batch_all_vs_torch": max(abs(a - b) for a, b in zip(single, onnx_all)),
        }
        report[name] = {"diffs": diffs, "min": min(single), "max": max(single),
                        "input_names": names}
        for k, v in diffs.items():
            if not v <= TOL:
                sys.exit(f"{name}: {k} = {v:.3g} > {TOL}")
        for i, p in enumerate(pairs):
            enc = tok(p["query"], p["passage"], truncation="only_second", max_length=MAX_LENGTH)
            full = tok(p["query"], p["passage"], truncation=False)
            rec = {"logit": single[i], "sigmoid": sigmoid(single[i]), "num_tokens": len(enc["input_ids"]),
                   "num_tokens_untruncated": len(full["input_ids"])}
            if i < N_INPUT_IDS or p["category"] in ("long-truncated", "tokenizer-edge"):
                rec["input_ids"] = enc["input_ids"]
                if with_tt:
                    rec["token_type_ids"] = enc["token_type_ids"]
                rec["tokens"] = tok.convert_ids_to_tokens(enc["input_ids"])
            p[name] = rec

    lines = []
    meta = {"_meta": {
        "seed": SEED, "max_length": MAX_LENGTH, "truncation": "only_second", "padding": "right (longest in batch)",
        "score": "logits[:, 0] of the fp32 torch model in eval mode, one pair at a time (no padding)",
        "sigmoid": "1 / (1 + exp(-logit))", "tolerance": TOL,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "tokenizers": tokenizers.__version__, "onnx": onnx.__version__,
                     "onnxruntime": ort.__version__, "numpy": np.__version__, "python": sys.version.split()[0]},
        "measured_max_abs_diff": {k: v["diffs"] for k, v in report.items()},
    }}
    lines.append(json.dumps(meta, ensure_ascii=False))
    keys = ["pair_id", "case_id", "category", "relevant", "query", "passage", "bert-tiny", "xlmr-tiny"]
    for p in pairs:
        lines.append(json.dumps({k: p[k] for k in keys}, ensure_ascii=False))
    (args.out / "reference.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    for name, r in report.items():
        print(f"{name}: inputs {r['input_names']}, logits in [{r['min']:.3f}, {r['max']:.3f}]")
        for k, v in r["diffs"].items():
            print(f"  max |diff| {k:26s} {v:.2e}")
    for name in report:
        lens = [p[name]["num_tokens"] for p in pairs]
        truncated = [p["pair_id"] for p in pairs if p[name]["num_tokens_untruncated"] > MAX_LENGTH]
        print(f"{name}: {len(pairs)} reference pairs, {min(lens)}-{max(lens)} tokens; "
              f"truncated at {MAX_LENGTH}: {truncated}")


if __name__ == "__main__":
    main()
