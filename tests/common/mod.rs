//! Helpers shared by the integration tests: running the binary, fixture readers, Parquet readers.
//!
//! The tests inherit the environment: `TRIPLETGEN_CACHE` is used when it is set, otherwise the tool's
//! default cache (`${XDG_CACHE_HOME:-~/.cache}/tripletgen`), which is where `./scripts/test.sh`
//! fetched the model. Every test writes into its own temporary folder under `CARGO_TARGET_TMPDIR`.
#![allow(dead_code)]

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float32Type, UInt32Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest a single pipeline run may take before the test fails instead of hanging.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A path under `fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    repo().join("fixtures").join(rel)
}

/// A fresh temporary folder (removed when dropped) inside cargo's per-target temp dir.
pub fn tmpdir() -> tempfile::TempDir {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&base).unwrap();
    tempfile::Builder::new().prefix("tg-").tempdir_in(base).unwrap()
}

/// The tripletgen binary, with the inherited environment minus log-level overrides.
pub fn tripletgen() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::new(env!("CARGO_BIN_EXE_tripletgen"));
    c.env_remove("TRIPLETGEN_LOG").env_remove("RUST_LOG").timeout(RUN_TIMEOUT);
    c
}

/// What a finished command printed.
#[derive(Debug, Clone)]
pub struct Out {
    /// Exit code (None when killed by a signal or the timeout).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Panic with everything printed unless the command exited 0.
    pub fn assert_ok(&self) -> &Self {
        assert_eq!(self.code, Some(0), "expected success\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
        self
    }
    /// Panic unless the command exited with `code` and did not panic.
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit code {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self.assert_no_panic()
    }
    /// Panic if stderr shows a Rust panic.
    pub fn assert_no_panic(&self) -> &Self {
        assert!(!self.stderr.contains("panicked"), "the binary panicked:\n{}", self.stderr);
        self
    }
    /// Panic unless stderr contains every one of `needles`.
    pub fn assert_stderr_has(&self, needles: &[&str]) -> &Self {
        for n in needles {
            assert!(self.stderr.contains(n), "stderr does not contain {n:?}:\n{}", self.stderr);
        }
        self
    }
}

/// Run and capture.
pub fn run(cmd: &mut assert_cmd::Command) -> Out {
    let o = cmd.output().expect("cannot start tripletgen");
    Out {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// `tripletgen run --config <config> [extra args]`.
pub fn run_config(config: &Path, extra: &[&str]) -> Out {
    run(tripletgen().arg("run").arg("--config").arg(config).args(extra))
}

/// A TOML string literal for a path (literal strings: no escapes needed on Unix paths).
pub fn tp(p: &Path) -> String {
    let s = p.display().to_string();
    assert!(!s.contains('\''), "path with a quote: {s}");
    format!("'{s}'")
}

/// Write `body` as `dir/name` and return the path.
pub fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, body).unwrap();
    p
}

/// The first `n` documents of the quickstart corpus, as `dir/corpus.jsonl`.
pub fn corpus_subset(dir: &Path, n: usize) -> PathBuf {
    let text = std::fs::read_to_string(fixture("quickstart/corpus.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().take(n).collect();
    write(dir, "corpus.jsonl", &(lines.join("\n") + "\n"))
}

/// Copy a folder recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// Parse a JSON file.
pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()))
}

/// Parse a JSONL file (every line must be a JSON value).
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{}:{}: invalid JSON: {e}", path.display(), i + 1))
        })
        .collect()
}

/// A JSON array of strings.
pub fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// A JSON array of numbers.
pub fn nums(v: &Value) -> Vec<f64> {
    v.as_array().unwrap_or_else(|| panic!("not an array: {v}")).iter().map(|x| x.as_f64().unwrap()).collect()
}

/// A number at a JSON pointer, e.g. `/ingest/documents`.
pub fn num_at(v: &Value, ptr: &str) -> f64 {
    v.pointer(ptr).and_then(Value::as_f64).unwrap_or_else(|| panic!("no number at {ptr} in {v}"))
}

/// BEIR qrels (TSV with header): query id -> relevant document ids (score > 0).
pub fn read_qrels(path: &Path) -> HashMap<String, HashSet<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut m: HashMap<String, HashSet<String>> = HashMap::new();
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        let score: f64 = f.get(2).map(|s| s.trim().parse().unwrap()).unwrap_or(1.0);
        if score > 0.0 {
            m.entry(f[0].to_string()).or_default().insert(f[1].to_string());
        }
    }
    m
}

/// A corpus document of a JSONL corpus.
#[derive(Debug, Clone)]
pub struct Doc {
    pub title: String,
    pub text: String,
}

impl Doc {
    /// The text tripletgen embeds and writes with `include_title = true`.
    pub fn full(&self) -> String {
        if self.title.trim().is_empty() { self.text.clone() } else { format!("{} {}", self.title.trim(), self.text) }
    }
}

/// A JSONL corpus: id -> document.
pub fn read_corpus(path: &Path) -> HashMap<String, Doc> {
    read_jsonl(path)
        .into_iter()
        .map(|v| {
            let id = v["_id"].as_str().unwrap().to_string();
            let title = v.get("title").and_then(Value::as_str).unwrap_or("").to_string();
            let text = v["text"].as_str().unwrap().to_string();
            (id, Doc { title, text })
        })
        .collect()
}

/// A JSONL queries file: id -> text.
pub fn read_queries(path: &Path) -> HashMap<String, String> {
    read_jsonl(path)
        .into_iter()
        .map(|v| (v["_id"].as_str().unwrap().to_string(), v["text"].as_str().unwrap().to_string()))
        .collect()
}

/// Whitespace-folded, lower-cased text (what "same text" means to the miner).
pub fn norm(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// Where the tool looks for fetched models (same rule as `models::cache_root` without a config).
pub fn models_cache() -> PathBuf {
    if let Some(d) = std::env::var_os("TRIPLETGEN_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache"));
    base.join("tripletgen")
}

/// The fetched ONNX Runtime library (panics with the fix when it is not there).
pub fn ort_lib() -> PathBuf {
    let p = models_cache().join("onnxruntime-1.24.4/libonnxruntime.so.1.24.4");
    assert!(
        p.is_file(),
        "{} is missing: run ./scripts/test.sh (it runs `tripletgen fetch-models` before the tests)",
        p.display()
    );
    p
}

/// Panic with the fix when the pinned model has not been fetched.
pub fn require_models() {
    ort_lib();
    let m = models_cache().join("all-minilm-l6-v2/model.onnx");
    assert!(
        m.is_file(),
        "{} is missing: run ./scripts/test.sh (it runs `tripletgen fetch-models` before the tests)",
        m.display()
    );
}

// ---------------------------------------------------------------------------------------------
// Parquet

/// Every record batch of a Parquet file, plus its schema as (name, data type) pairs.
pub fn read_parquet(path: &Path) -> (Vec<(String, String)>, Vec<RecordBatch>) {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let b = ParquetRecordBatchReaderBuilder::try_new(f).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let schema = b.schema().clone();
    let cols = schema.fields().iter().map(|f| (f.name().clone(), f.data_type().to_string())).collect();
    let batches = b.build().unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    (cols, batches)
}

/// Column names of a Parquet file.
pub fn parquet_column_names(path: &Path) -> Vec<String> {
    read_parquet(path).0.into_iter().map(|(n, _)| n).collect()
}

/// Number of rows of a Parquet file.
pub fn parquet_rows(path: &Path) -> usize {
    read_parquet(path).1.iter().map(RecordBatch::num_rows).sum()
}

/// A string column of a Parquet file.
pub fn string_column(path: &Path, name: &str) -> Vec<String> {
    let (_, batches) = read_parquet(path);
    let mut out = Vec::new();
    for b in &batches {
        let c = b.column_by_name(name).unwrap_or_else(|| panic!("{} has no column {name}", path.display()));
        let s = c.as_string::<i32>();
        for i in 0..s.len() {
            out.push(s.value(i).to_string());
        }
    }
    out
}

/// One row of a `<format>.provenance.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvRow {
    pub query_id: String,
    pub positive_id: String,
    pub positive_score: f32,
    pub negative_ids: Vec<String>,
    pub negative_scores: Vec<f32>,
    pub negative_ranks: Vec<u32>,
}

/// Read a provenance file (panics if a column is missing or has another type).
pub fn read_provenance(path: &Path) -> Vec<ProvRow> {
    let (_, batches) = read_parquet(path);
    let mut rows = Vec::new();
    for b in &batches {
        let col =
            |n: &str| b.column_by_name(n).unwrap_or_else(|| panic!("{} has no column {n}", path.display())).clone();
        let qid = col("query_id");
        let qid = qid.as_string::<i32>();
        let pid = col("positive_id");
        let pid = pid.as_string::<i32>();
        let ps = col("positive_score");
        let ps = ps.as_primitive::<Float32Type>();
        let nid = col("negative_ids");
        let nid = nid.as_list::<i32>();
        let ns = col("negative_scores");
        let ns = ns.as_list::<i32>();
        let nr = col("negative_ranks");
        let nr = nr.as_list::<i32>();
        for i in 0..b.num_rows() {
            let ids = nid.value(i);
            let ids = ids.as_string::<i32>();
            let sc = ns.value(i);
            let sc = sc.as_primitive::<Float32Type>();
            let rk = nr.value(i);
            let rk = rk.as_primitive::<UInt32Type>();
            rows.push(ProvRow {
                query_id: qid.value(i).to_string(),
                positive_id: pid.value(i).to_string(),
                positive_score: ps.value(i),
                negative_ids: (0..ids.len()).map(|j| ids.value(j).to_string()).collect(),
                negative_scores: (0..sc.len()).map(|j| sc.value(j)).collect(),
                negative_ranks: (0..rk.len()).map(|j| rk.value(j)).collect(),
            });
        }
    }
    rows
}

/// A generated query variant (a row of `variants.parquet`).
#[derive(Debug, Clone)]
pub struct Variant {
    /// `query` (a variant of a query: it inherits the query's positives) or `document` (a synthetic
    /// query whose positive is the document).
    pub source_kind: String,
    pub source_id: String,
    pub strategy: String,
    pub text: String,
    pub accepted: bool,
    /// Synthetic queries: the answer span the LLM gave.
    pub answer: Option<String>,
}

/// `variants.parquet` of an output folder, by variant id (empty when the run generated none).
pub fn read_variants(out: &Path) -> HashMap<String, Variant> {
    let path = out.join("variants.parquet");
    if !path.exists() {
        return HashMap::new();
    }
    let (_, batches) = read_parquet(&path);
    let mut m = HashMap::new();
    for b in &batches {
        let col = |n: &str| b.column_by_name(n).unwrap_or_else(|| panic!("variants.parquet has no column {n}")).clone();
        let (id, kind, src, strat, text, acc) =
            (col("variant_id"), col("source_kind"), col("source_id"), col("strategy"), col("text"), col("accepted"));
        let answer = col("answer");
        let answer = answer.as_string::<i32>();
        let (id, kind, src, strat, text, acc) = (
            id.as_string::<i32>(),
            kind.as_string::<i32>(),
            src.as_string::<i32>(),
            strat.as_string::<i32>(),
            text.as_string::<i32>(),
            acc.as_boolean(),
        );
        for i in 0..b.num_rows() {
            m.insert(
                id.value(i).to_string(),
                Variant {
                    source_kind: kind.value(i).to_string(),
                    source_id: src.value(i).to_string(),
                    strategy: strat.value(i).to_string(),
                    text: text.value(i).to_string(),
                    accepted: acc.value(i),
                    answer: answer.is_valid(i).then(|| answer.value(i).to_string()),
                },
            );
        }
    }
    m
}

/// Byte comparison of the named files in two folders; returns the names that differ.
/// Every file under `dir` (recursively) whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p).unwrap().windows(needle.len()).any(|w| w == needle.as_bytes()) {
                hits.push(p.display().to_string());
            }
        }
    }
    hits
}

pub fn differing_files(a: &Path, b: &Path, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .filter(|n| {
            let x = std::fs::read(a.join(n)).unwrap_or_else(|e| panic!("{}: {e}", a.join(n).display()));
            let y = std::fs::read(b.join(n)).unwrap_or_else(|e| panic!("{}: {e}", b.join(n).display()));
            x != y
        })
        .map(|n| n.to_string())
        .collect()
}

/// Count values (for readable assertion messages).
pub fn histogram<T: Ord + Clone>(v: impl IntoIterator<Item = T>) -> BTreeMap<T, usize> {
    let mut m = BTreeMap::new();
    for x in v {
        *m.entry(x).or_insert(0) += 1;
    }
    m
}

/// The relative-margin rule: `neg <= pos - |pos| * m` (with a little room for f32 rounding).
pub fn obeys_relative_margin(pos: f64, neg: f64, m: f64) -> bool {
    neg <= pos - pos.abs() * m + 1e-6
}
