#!/usr/bin/env python3
"""Check tripletgen's outputs the way their consumers read them (run by tests/quickstart.rs).

    check_outputs.py --out OUT_DIR --fixture BEIR_DIR [--num-negatives N] [--relative-margin M]

* every Parquet file is read with pyarrow and its schema is compared exactly;
* every `<format>.provenance.parquet` is row-aligned with its data file, and the texts in the data
  file are the fixture's texts for the ids in the provenance (anchor = query text, positive and
  negatives = corpus "title text", or "text" when the title is empty);
* negatives are never known positives and obey the relative margin;
* generated queries (variants.parquet) are mined only when accepted, with the positives they
  inherit, their own text as anchor and their strategy in `query_strategy`;
* `datasets.load_dataset("parquet", ...)` loads triplet.parquet with exactly the three string columns
  sentence-transformers' MultipleNegativesRankingLoss takes (anchor, positive, negative);
* flag.jsonl lines have FlagEmbedding's keys query / pos / neg / pos_scores / neg_scores;
* tevatron.jsonl is loaded as Tevatron does (`datasets.load_dataset("json")` mapped through
  tevatron's own TrainPreProcessor, with a whitespace tokenizer standing in for transformers') and
  holds the same pairs as flag.jsonl;
* beir/ is loaded by beir's GenericDataLoader: the fixture's corpus, every given and accepted
  generated query with its strategy, and the positives each inherits.

Prints "all checks passed" and exits 0, or prints every problem found and exits 1.
"""

import argparse
import json
import os
import sys
import tempfile

try:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import datasets
except ImportError as e:  # pragma: no cover - the Rust test checks this first
    print(f"missing Python package ({e}); run ./scripts/test.sh, which creates the pinned test venv", file=sys.stderr)
    sys.exit(2)

PROBLEMS = []


def problem(msg):
    PROBLEMS.append(msg)
    if len(PROBLEMS) <= 50:
        print("FAIL:", msg)


def check(cond, msg):
    if not cond:
        problem(msg)
    return cond


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_fixture(beir):
    corpus = {}
    for d in read_jsonl(os.path.join(beir, "corpus.jsonl")):
        title = (d.get("title") or "").strip()
        corpus[d["_id"]] = f"{title} {d['text']}" if title else d["text"]
    queries = {q["_id"]: q["text"] for q in read_jsonl(os.path.join(beir, "queries.jsonl"))}
    qrels = {}
    with open(os.path.join(beir, "qrels", "test.tsv"), encoding="utf-8") as f:
        next(f)
        for line in f:
            if not line.strip():
                continue
            qid, did, score = line.rstrip("\n").split("\t")
            if float(score) > 0:
                qrels.setdefault(qid, set()).add(did)
    return corpus, queries, qrels


S = pa.string()
PROVENANCE = pa.schema(
    [
        ("query_id", S),
        ("query_strategy", S),  # "given" for input queries, else the generating strategy
        ("positive_id", S),
        ("positive_score", pa.float32()),
        ("negative_ids", pa.list_(S)),
        ("negative_scores", pa.list_(pa.float32())),
        ("negative_ranks", pa.list_(pa.uint32())),
    ]
)


# With BM25 among mine.retrievers: which retrievers found each negative, and its rank in each.
RETRIEVERS = [
    ("negative_retrievers", pa.list_(S)),
    ("negative_dense_ranks", pa.list_(pa.uint32())),
    ("negative_bm25_ranks", pa.list_(pa.uint32())),
]


def expected_schema(fmt, n):
    if fmt == "triplet":
        return pa.schema([("anchor", S), ("positive", S), ("negative", S)])
    if fmt == "n-tuple":
        return pa.schema([("anchor", S), ("positive", S)] + [(f"negative_{i}", S) for i in range(1, n + 1)])
    if fmt == "labeled-pair":
        return pa.schema([("anchor", S), ("text", S), ("label", pa.int64())])
    if fmt == "labeled-list":
        return pa.schema([("anchor", S), ("texts", pa.list_(S)), ("labels", pa.list_(pa.int64()))])
    raise ValueError(fmt)


def same_types(actual, expected):
    """Names and types equal, in order (nullability and list item names are not compared)."""
    if actual.names != expected.names:
        return False
    for a, e in zip(actual, expected):
        at, et = a.type, e.type
        if pa.types.is_list(et):
            if not (pa.types.is_list(at) and at.value_type == et.value_type):
                return False
        elif at != et:
            return False
    return True


def load_variants(out, corpus, queries, qrels):
    """Add the accepted variants of variants.parquet (if any) to queries and qrels.

    Returns query id -> strategy ("given" for the fixture's own queries). A variant of a query
    inherits the query's positives; a query generated from a document has that document as positive.
    """
    strategy = {qid: "given" for qid in queries}
    path = os.path.join(out, "variants.parquet")
    if not os.path.exists(path):
        return strategy
    originals = dict(queries)
    for v in pq.read_table(path).to_pylist():
        vid, kind, src = v["variant_id"], v["source_kind"], v["source_id"]
        if kind == "query":
            check(src in originals, f"variant {vid}: unknown source query {src}")
            check(v["source_text"] == originals.get(src), f"variant {vid}: source_text differs from query {src}")
            positives = qrels.get(src, set())
        else:
            check(kind == "document", f"variant {vid}: source_kind {kind!r}")
            check(src in corpus, f"variant {vid}: unknown source document {src}")
            check(v["source_text"] == corpus.get(src), f"variant {vid}: source_text differs from document {src}")
            positives = {src}
        if v["accepted"]:
            check(v["reason"] is None, f"variant {vid}: accepted with reason {v['reason']!r}")
            queries[vid] = v["text"]
            qrels[vid] = positives
            strategy[vid] = v["strategy"]
        else:
            check(bool(v["reason"]), f"variant {vid}: rejected without a reason")
    return strategy


def check_format(out, fmt, n, corpus, queries, qrels, margin, strategy):
    data_path = os.path.join(out, f"{fmt}.parquet")
    prov_path = os.path.join(out, f"{fmt}.provenance.parquet")
    data = pq.read_table(data_path)
    prov = pq.read_table(prov_path)
    exp = expected_schema(fmt, n)
    check(same_types(data.schema, exp), f"{fmt}.parquet schema is\n{data.schema}\nexpected\n{exp}")
    expected = PROVENANCE
    if "negative_retrievers" in prov.schema.names:  # mine.retrievers with bm25
        expected = pa.schema([(f.name, f.type) for f in PROVENANCE] + RETRIEVERS)
    check(same_types(prov.schema, expected), f"{fmt}.provenance.parquet schema is\n{prov.schema}\nexpected\n{expected}")
    if not check(data.num_rows == prov.num_rows, f"{fmt}: {data.num_rows} data rows but {prov.num_rows} provenance rows"):
        return 0
    check(data.num_rows > 0, f"{fmt}: no rows")
    rows = data.to_pylist()
    provs = prov.to_pylist()
    for i, (r, p) in enumerate(zip(rows, provs)):
        where = f"{fmt} row {i}"
        qid, pid = p["query_id"], p["positive_id"]
        if not check(qid in queries, f"{where}: unknown query_id {qid!r} (not a fixture query nor an accepted variant)"):
            continue
        check(p.get("query_strategy") == strategy[qid], f"{where}: query_strategy {p.get('query_strategy')!r} for {qid}")
        check(pid in qrels.get(qid, ()), f"{where}: positive_id {pid!r} is not a qrels positive of {qid}")
        check(r["anchor"] == queries[qid], f"{where}: anchor {r['anchor']!r} is not the text of query {qid}")
        neg_ids, neg_scores, neg_ranks = p["negative_ids"], p["negative_scores"], p["negative_ranks"]
        check(len(neg_ids) == len(neg_scores) == len(neg_ranks), f"{where}: provenance lists of different lengths")
        for nid, ns in zip(neg_ids, neg_scores):
            check(nid in corpus, f"{where}: unknown negative id {nid!r}")
            check(nid not in qrels[qid], f"{where}: negative {nid} is a known positive of {qid}")
            pos = p["positive_score"]
            check(ns <= pos - abs(pos) * margin + 1e-6, f"{where}: negative score {ns} breaks the relative margin (positive {pos})")
        negs = [corpus.get(x) for x in neg_ids]
        if fmt == "triplet":
            check(len(neg_ids) == 1, f"{where}: {len(neg_ids)} negative ids for one triplet")
            check(r["positive"] == corpus.get(pid), f"{where}: positive text is not the corpus text of {pid}")
            check(negs[:1] == [r["negative"]], f"{where}: negative text is not the corpus text of {neg_ids}")
        elif fmt == "n-tuple":
            check(len(neg_ids) == n, f"{where}: {len(neg_ids)} negative ids, expected {n}")
            check(r["positive"] == corpus.get(pid), f"{where}: positive text is not the corpus text of {pid}")
            got = [r[f"negative_{k}"] for k in range(1, n + 1)]
            check(got == negs, f"{where}: negative texts are not the corpus texts of {neg_ids}")
        elif fmt == "labeled-pair":
            if r["label"] == 1:
                check(neg_ids == [], f"{where}: a label-1 row has negative ids {neg_ids}")
                check(r["text"] == corpus.get(pid), f"{where}: label-1 text is not the corpus text of {pid}")
            else:
                check(r["label"] == 0, f"{where}: label {r['label']}")
                check(len(neg_ids) == 1 and r["text"] == negs[0], f"{where}: label-0 text is not the corpus text of {neg_ids}")
        elif fmt == "labeled-list":
            check(r["labels"] == [1] + [0] * len(neg_ids), f"{where}: labels {r['labels']} for {len(neg_ids)} negatives")
            check(r["texts"] == [corpus.get(pid)] + negs, f"{where}: texts are not the corpus texts of {[pid] + neg_ids}")
    return data.num_rows


def check_flag(out, corpus, queries, qrels):
    lines = read_jsonl(os.path.join(out, "flag.jsonl"))
    check(len(lines) > 0, "flag.jsonl is empty")
    for i, d in enumerate(lines, 1):
        where = f"flag.jsonl line {i}"
        for key in ("query", "pos", "neg", "pos_scores", "neg_scores"):
            check(key in d, f"{where}: no {key!r}")
        if not all(k in d for k in ("query", "pos", "neg", "pos_scores", "neg_scores")):
            continue
        check(isinstance(d["query"], str), f"{where}: query is not a string")
        for key in ("pos", "neg", "pos_scores", "neg_scores"):
            check(isinstance(d[key], list), f"{where}: {key} is not a list")
        check(all(isinstance(t, str) for t in d["pos"] + d["neg"]), f"{where}: pos/neg hold non-strings")
        check(all(isinstance(x, (int, float)) for x in d["pos_scores"] + d["neg_scores"]), f"{where}: non-numeric scores")
        check(len(d["pos"]) == len(d["pos_scores"]) >= 1, f"{where}: pos and pos_scores differ in length")
        check(len(d["neg"]) == len(d["neg_scores"]), f"{where}: neg and neg_scores differ in length")
        qid = d.get("query_id")
        if qid is not None:
            check(d["query"] == queries.get(qid), f"{where}: query is not the text of {qid}")
            for nid in d.get("neg_ids", []):
                check(nid not in qrels.get(qid, ()), f"{where}: negative {nid} is a known positive of {qid}")
            check([corpus.get(x) for x in d.get("pos_ids", [])] == d["pos"], f"{where}: pos texts do not match pos_ids")
            check([corpus.get(x) for x in d.get("neg_ids", [])] == d["neg"], f"{where}: neg texts do not match neg_ids")
    return len(lines)


class WhitespaceTokenizer:
    """Stands in for a transformers tokenizer in tevatron's preprocessor (only `encode` is called)."""

    def __init__(self):
        self.vocab = {}

    def encode(self, text, add_special_tokens=False, max_length=None, truncation=False):
        ids = [self.vocab.setdefault(w, len(self.vocab)) for w in text.split()]
        return ids[:max_length] if truncation and max_length else ids

    def decode(self, ids):
        words = {i: w for w, i in self.vocab.items()}
        return " ".join(words[i] for i in ids)


def tevatron_preprocessor():
    """tevatron's TrainPreProcessor, loaded from its file (the package's __init__ imports transformers)."""
    import importlib.util

    spec = importlib.util.find_spec("tevatron")
    path = os.path.join(os.path.dirname(spec.origin), "datasets", "preprocessor.py")
    mod_spec = importlib.util.spec_from_file_location("tevatron_preprocessor", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod.TrainPreProcessor


def check_tevatron(out, corpus, queries, qrels):
    path = os.path.join(out, "tevatron.jsonl")
    flag = read_jsonl(os.path.join(out, "flag.jsonl"))
    tok = WhitespaceTokenizer()
    with tempfile.TemporaryDirectory() as cache:
        ds = datasets.load_dataset("json", data_files={"train": path}, split="train", cache_dir=cache)
        check(ds.num_rows == len(flag) > 0, f"tevatron.jsonl has {ds.num_rows} rows, flag.jsonl {len(flag)}")
        encoded = ds.map(tevatron_preprocessor()(tok, query_max_length=64, text_max_length=100000), remove_columns=ds.column_names)
    for i, (raw, enc, fl) in enumerate(zip(ds, encoded, flag), 1):
        where = f"tevatron.jsonl line {i}"
        qid = raw["query_id"]
        check(raw["query"] == queries.get(qid) == fl["query"], f"{where}: query is not the text of {qid}")
        check([p["docid"] for p in raw["positive_passages"]] == fl["pos_ids"], f"{where}: positives differ from flag.jsonl")
        check([p["docid"] for p in raw["negative_passages"]] == fl["neg_ids"], f"{where}: negatives differ from flag.jsonl")
        for p in raw["positive_passages"] + raw["negative_passages"]:
            check(p["text"] == corpus.get(p["docid"]), f"{where}: text of {p['docid']} is not the corpus text")
            check(isinstance(p["score"], float), f"{where}: score of {p['docid']} is {p['score']!r}")
        for p in raw["negative_passages"]:
            check(p["docid"] not in qrels.get(qid, ()), f"{where}: negative {p['docid']} is a known positive of {qid}")
        check(tok.decode(enc["query"]) == " ".join(raw["query"].split()), f"{where}: tevatron reads another query")
        check(len(enc["positives"]) == len(raw["positive_passages"]) and len(enc["negatives"]) == len(raw["negative_passages"]),
              f"{where}: tevatron sees {len(enc['positives'])} positives, {len(enc['negatives'])} negatives")
        if enc["negatives"]:
            check(tok.decode(enc["negatives"][0]) == " ".join(raw["negative_passages"][0]["text"].split()), f"{where}: first negative")
    return ds.num_rows


def check_beir(out, corpus, queries, qrels, strategy):
    from beir.datasets.data_loader import GenericDataLoader

    folder = os.path.join(out, "beir")
    b_corpus, b_queries, b_qrels = GenericDataLoader(data_folder=folder).load(split="train")
    texts = {k: (f"{d['title']} {d['text']}" if d.get("title") else d["text"]) for k, d in b_corpus.items()}
    check(texts == corpus, f"beir corpus: {len(texts)} documents, fixture {len(corpus)}, or other texts")
    meta = {q["_id"]: q["metadata"] for q in read_jsonl(os.path.join(folder, "queries.jsonl"))}
    mined = {q for q in strategy if qrels.get(q)}
    check(set(b_queries) == mined == set(meta), f"beir queries: {len(b_queries)} ({len(meta)} in the file), mined {len(mined)}")
    given = [q for q, s in strategy.items() if s == "given"]
    check(given and all(b_queries.get(q) == queries[q] for q in given), "beir: a given query's text differs")
    for q in given:
        check(set(b_qrels.get(q, {})) == set(qrels.get(q, ())), f"beir qrels of {q} differ from the fixture's")
    for q in mined:
        s = strategy[q]
        check(meta.get(q, {}).get("strategy") == s, f"beir query {q}: strategy {meta.get(q)} != {s}")
        src = meta.get(q, {}).get("source_id")
        if s != "given" and src in qrels:
            check(set(b_qrels.get(q, {})) == set(qrels[src]), f"beir: variant {q} does not inherit the positives of {src}")
    return len(b_queries)


def check_datasets(out, expected_rows):
    path = os.path.join(out, "triplet.parquet")
    with tempfile.TemporaryDirectory() as cache:
        ds = datasets.load_dataset("parquet", data_files={"train": path}, split="train", cache_dir=cache)
        # MultipleNegativesRankingLoss takes (anchor, positive, negative) text columns and nothing else.
        check(ds.column_names == ["anchor", "positive", "negative"], f"datasets columns {ds.column_names}")
        for name, feat in ds.features.items():
            check(isinstance(feat, datasets.Value) and feat.dtype == "string", f"datasets column {name} is {feat}")
        check(ds.num_rows == expected_rows, f"datasets sees {ds.num_rows} rows, pyarrow {expected_rows}")
        first = ds[0]
        check(all(isinstance(first[c], str) and first[c] for c in ds.column_names), f"first row {first}")
        nt = datasets.load_dataset(
            "parquet", data_files={"train": os.path.join(out, "n-tuple.parquet")}, split="train", cache_dir=cache
        )
        check(nt.column_names[:2] == ["anchor", "positive"], f"n-tuple columns {nt.column_names}")
        return ds.num_rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--fixture", required=True)
    ap.add_argument("--num-negatives", type=int, default=5)
    ap.add_argument("--relative-margin", type=float, default=0.05)
    a = ap.parse_args()
    corpus, queries, qrels = load_fixture(a.fixture)
    strategy = load_variants(a.out, corpus, queries, qrels)
    counts = {"variants accepted": sum(1 for s in strategy.values() if s != "given")}
    for fmt in ("triplet", "n-tuple", "labeled-pair", "labeled-list"):
        counts[fmt] = check_format(a.out, fmt, a.num_negatives, corpus, queries, qrels, a.relative_margin, strategy)
    counts["flag.jsonl"] = check_flag(a.out, corpus, queries, qrels)
    counts["tevatron.jsonl"] = check_tevatron(a.out, corpus, queries, qrels)
    counts["beir queries"] = check_beir(a.out, corpus, queries, qrels, strategy)
    counts["datasets triplet"] = check_datasets(a.out, counts["triplet"])
    print("rows:", json.dumps(counts))
    print(f"pyarrow {pa.__version__}, datasets {datasets.__version__}")
    if PROBLEMS:
        print(f"{len(PROBLEMS)} problem(s) found")
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
