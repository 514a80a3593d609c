//! End-to-end runs on the quickstart fixture (310 documents, 82 queries, 99 qrels pairs).
//!
//! One full `tripletgen run --config configs/quickstart.toml` is shared by the tests of this file
//! (it embeds the corpus, the slow part); tests that need another run copy its workspace so they
//! reuse the cached embeddings, except the determinism test, which makes a second fresh run. The
//! run's report.html is checked as text and rendered in headless Chromium; `inspect` reads its files.

mod common;

use common::*;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const PARQUET_FORMATS: [&str; 4] = ["triplet", "n-tuple", "labeled-pair", "labeled-list"];

struct Shared {
    dir: PathBuf,
    out: Out,
}

static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();

/// The shared quickstart run (made once per test process).
fn shared() -> &'static Shared {
    let r = SHARED.get_or_init(|| {
        require_models();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("quickstart-shared");
        let _ = std::fs::remove_dir_all(&dir);
        let config = repo().join("configs/quickstart.toml");
        let out = run(tripletgen().arg("run").arg("--config").arg(&config).arg("--out").arg(&dir));
        if out.code != Some(0) {
            return Err(format!("quickstart run failed ({:?}):\n{}", out.code, out.stderr));
        }
        Ok(Shared { dir, out })
    });
    match r {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

fn quickstart() -> PathBuf {
    fixture("quickstart")
}

/// The fixture, plus the query variants a run generated (from its `variants.parquet`, if any).
struct Fixture {
    corpus: HashMap<String, Doc>,
    queries: HashMap<String, String>,
    qrels: HashMap<String, HashSet<String>>,
    variants: HashMap<String, Variant>,
    /// Known positives of every fixture query and every accepted variant.
    positives: HashMap<String, HashSet<String>>,
}

impl Fixture {
    /// Known positives of a query or accepted variant (panics for anything else).
    fn positives(&self, qid: &str) -> &HashSet<String> {
        if let Some(v) = self.variants.get(qid) {
            assert!(v.accepted, "query {qid:?} was mined but variants.parquet says it was rejected");
        }
        self.positives.get(qid).unwrap_or_else(|| panic!("query id {qid:?} is neither a fixture query nor a variant"))
    }
    /// The text of a query or variant.
    fn query_text(&self, qid: &str) -> &str {
        match self.queries.get(qid) {
            Some(t) => t,
            None => &self.variants[qid].text,
        }
    }
}

fn load_fixture(dir: &Path, out: &Path) -> Fixture {
    let qrels = read_qrels(&dir.join("qrels/test.tsv"));
    let variants = read_variants(out);
    let mut positives = qrels.clone();
    for (id, v) in variants.iter().filter(|(_, v)| v.accepted) {
        let p = match v.source_kind.as_str() {
            "query" => qrels.get(&v.source_id).cloned().unwrap_or_default(),
            "document" => HashSet::from([v.source_id.clone()]),
            other => panic!("variant {id}: unknown source_kind {other:?}"),
        };
        positives.insert(id.clone(), p);
    }
    Fixture {
        corpus: read_corpus(&dir.join("corpus.jsonl")),
        queries: read_queries(&dir.join("queries.jsonl")),
        qrels,
        variants,
        positives,
    }
}

/// A new output folder whose `workspace/` is a copy of the shared run's (all embeddings cached).
fn out_with_cached_workspace() -> (tempfile::TempDir, PathBuf) {
    let s = shared();
    let t = tmpdir();
    let out = t.path().join("out");
    copy_dir(&s.dir.join("workspace"), &out.join("workspace"));
    (t, out)
}

#[test]
fn quickstart_writes_every_file_and_counts_match_the_fixture() {
    let s = shared();
    for f in PARQUET_FORMATS {
        for name in [format!("{f}.parquet"), format!("{f}.provenance.parquet")] {
            assert!(s.dir.join(&name).is_file(), "{name} is missing in {}", s.dir.display());
        }
    }
    for name in ["flag.jsonl", "report.json", "manifest.json"] {
        assert!(s.dir.join(name).is_file(), "{name} is missing in {}", s.dir.display());
    }
    let report = read_json(&s.dir.join("report.json"));
    assert_eq!(num_at(&report, "/ingest/documents"), 310.0, "{}", report["ingest"]);
    assert_eq!(num_at(&report, "/ingest/queries_read"), 82.0, "{}", report["ingest"]);
    assert_eq!(num_at(&report, "/ingest/queries_with_positives"), 82.0, "{}", report["ingest"]);
    assert_eq!(num_at(&report, "/ingest/pairs"), 99.0, "{}", report["ingest"]);
    assert_eq!(num_at(&report, "/ingest/skipped"), 0.0);
    assert_eq!(num_at(&report, "/embed_documents/texts"), 310.0);
    assert_eq!(num_at(&report, "/embed_queries/texts"), 82.0);

    // Mined pairs: the 99 qrels pairs plus one per (accepted variant, positive it inherits).
    let fx = load_fixture(&quickstart(), &s.dir);
    let variant_pairs: usize =
        fx.variants.iter().filter(|(_, v)| v.accepted).map(|(id, _)| fx.positives(id).len()).sum();
    let pairs = num_at(&report, "/mine/pairs") as usize;
    assert_eq!(pairs, 99 + variant_pairs, "mine.pairs vs qrels + accepted variants");
    let given = read_provenance(&s.dir.join("labeled-list.provenance.parquet"))
        .iter()
        .filter(|r| fx.queries.contains_key(&r.query_id))
        .count();
    assert_eq!(given, 99, "labeled-list rows for the fixture's own queries");

    // Row counts: the files agree with each other and with the report.
    let negatives = num_at(&report, "/mine/negatives") as usize;
    assert!(negatives > 0 && negatives <= pairs * 5, "negatives = {negatives}");
    assert_eq!(parquet_rows(&s.dir.join("triplet.parquet")), negatives);
    assert_eq!(parquet_rows(&s.dir.join("labeled-pair.parquet")), pairs + negatives);
    assert_eq!(parquet_rows(&s.dir.join("labeled-list.parquet")), pairs);
    let dropped = num_at(&report, "/write/ntuple_pairs_dropped") as usize;
    assert_eq!(parquet_rows(&s.dir.join("n-tuple.parquet")), pairs - dropped);
    assert_eq!(read_jsonl(&s.dir.join("flag.jsonl")).len(), pairs);
    for f in PARQUET_FORMATS {
        assert_eq!(
            parquet_rows(&s.dir.join(format!("{f}.parquet"))),
            parquet_rows(&s.dir.join(format!("{f}.provenance.parquet"))),
            "{f}: provenance is not row-aligned"
        );
    }
    // The report lists the files it wrote, with their row counts and checksums.
    let files = report["write"]["files"].as_array().expect("write.files");
    let listed: HashMap<&str, &Value> = files.iter().map(|f| (f["file"].as_str().unwrap(), f)).collect();
    assert_eq!(listed["triplet.parquet"]["rows"].as_u64(), Some(negatives as u64));
    assert_eq!(listed["flag.jsonl"]["rows"].as_u64(), Some(pairs as u64));
    // ... and their checksums are the files' SHA-256.
    for f in files {
        let (name, sum) = (f["file"].as_str().unwrap(), f["sha256"].as_str().unwrap_or(""));
        if !sum.is_empty() {
            assert_eq!(sum, sha256_hex(&s.dir.join(name)), "report.json write.files: wrong sha256 for {name}");
        }
    }
    assert!(!listed["triplet.parquet"]["sha256"].as_str().unwrap_or("").is_empty(), "no checksum for triplet.parquet");

    // The manifest names the inputs with their checksums and the pinned model.
    let manifest = read_json(&s.dir.join("manifest.json"));
    let inputs = manifest["inputs"].as_array().unwrap_or_else(|| panic!("manifest.inputs: {manifest}"));
    let corpus = inputs.iter().find(|i| i["role"] == "corpus").expect("manifest input with role corpus");
    assert_eq!(corpus["sha256"].as_str(), Some(sha256_hex(&quickstart().join("corpus.jsonl")).as_str()), "{corpus}");
    assert!(manifest["config"]["mine"].is_object(), "manifest.config: {manifest}");
    assert_eq!(
        manifest.pointer("/model/checksums/model.onnx").and_then(Value::as_str),
        Some("8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"),
        "manifest.model: {}",
        manifest["model"]
    );
}

fn sha256_hex(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn quickstart_negatives_are_never_positives_of_their_query() {
    let s = shared();
    let fx = load_fixture(&quickstart(), &s.dir);
    // Every (query, positive) of the qrels appears exactly once in flag.jsonl and provenance.
    let lines = read_jsonl(&s.dir.join("flag.jsonl"));
    let mut seen_pairs = HashSet::new();
    for (i, l) in lines.iter().enumerate() {
        let qid = l["query_id"].as_str().expect("query_id");
        let positives = fx.positives(qid);
        let pos_ids = strs(&l["pos_ids"]);
        for p in &pos_ids {
            assert!(positives.contains(p), "line {}: pos_id {p} is not a qrels positive of {qid}", i + 1);
            assert!(seen_pairs.insert((qid.to_string(), p.clone())), "pair ({qid}, {p}) written twice");
        }
        for n in strs(&l["neg_ids"]) {
            assert!(!positives.contains(&n), "flag.jsonl line {}: negative {n} is a known positive of {qid}", i + 1);
        }
    }
    let all_pairs: usize = fx.qrels.values().map(HashSet::len).sum();
    let given = seen_pairs.iter().filter(|(q, _)| fx.queries.contains_key(q)).count();
    assert_eq!(given, all_pairs, "every qrels pair is mined once");

    for f in PARQUET_FORMATS {
        let path = s.dir.join(format!("{f}.provenance.parquet"));
        for (i, r) in read_provenance(&path).iter().enumerate() {
            let positives = fx.positives(&r.query_id);
            assert!(positives.contains(&r.positive_id), "{f} row {i}: positive_id {} not in qrels", r.positive_id);
            for n in &r.negative_ids {
                assert!(!positives.contains(n), "{f} provenance row {i}: negative {n} is a known positive of {}", r.query_id);
            }
        }
    }
}

#[test]
fn quickstart_negative_texts_differ_from_every_positive_text_of_the_query() {
    let s = shared();
    let fx = load_fixture(&quickstart(), &s.dir);
    let by_full_text: HashMap<String, String> =
        fx.corpus.iter().map(|(id, d)| (d.full(), id.clone())).collect();
    for (i, l) in read_jsonl(&s.dir.join("flag.jsonl")).iter().enumerate() {
        let qid = l["query_id"].as_str().unwrap();
        assert_eq!(l["query"].as_str(), Some(fx.query_text(qid)), "line {}: query text of {qid}", i + 1);
        let positives = fx.positives(qid);
        let pos_full: HashSet<String> = positives.iter().map(|p| norm(&fx.corpus[p].full())).collect();
        let pos_raw: HashSet<String> = positives.iter().map(|p| norm(&fx.corpus[p].text)).collect();
        // The texts written are the corpus texts (title + " " + text) of the ids written.
        let pos_texts = strs(&l["pos"]);
        for (t, id) in pos_texts.iter().zip(strs(&l["pos_ids"])) {
            assert_eq!(t, &fx.corpus[&id].full(), "line {}: pos text of {id}", i + 1);
        }
        let neg_texts = strs(&l["neg"]);
        let neg_ids = strs(&l["neg_ids"]);
        assert_eq!(neg_texts.len(), neg_ids.len());
        for (t, id) in neg_texts.iter().zip(&neg_ids) {
            assert_eq!(t, &fx.corpus[id].full(), "line {}: neg text of {id}", i + 1);
            assert!(!pos_full.contains(&norm(t)), "line {}: negative {id} has the text of a positive of {qid}", i + 1);
            let raw = &fx.corpus[by_full_text[t].as_str()].text;
            assert!(!pos_raw.contains(&norm(raw)), "line {}: negative {id} has the same body text as a positive of {qid}", i + 1);
            assert_ne!(norm(t), norm(fx.query_text(qid)), "line {}: negative {id} is the query text", i + 1);
        }
        let distinct: HashSet<&String> = neg_ids.iter().collect();
        assert_eq!(distinct.len(), neg_ids.len(), "line {}: repeated negative in {neg_ids:?}", i + 1);
    }
}

#[test]
fn quickstart_negative_scores_obey_the_relative_margin() {
    let s = shared();
    let mut checked = 0;
    for (i, l) in read_jsonl(&s.dir.join("flag.jsonl")).iter().enumerate() {
        let pos = nums(&l["pos_scores"]);
        assert_eq!(pos.len(), 1);
        let negs = nums(&l["neg_scores"]);
        for w in negs.windows(2) {
            assert!(w[0] >= w[1], "line {}: top sampling should give scores best first: {negs:?}", i + 1);
        }
        for n in negs {
            assert!(obeys_relative_margin(pos[0], n, 0.05), "line {}: negative score {n} > 0.95 x positive {}", i + 1, pos[0]);
            checked += 1;
        }
    }
    for r in read_provenance(&s.dir.join("triplet.provenance.parquet")) {
        assert_eq!(r.negative_ids.len(), 1, "triplet rows carry one negative");
        let n = r.negative_scores[0] as f64;
        assert!(obeys_relative_margin(r.positive_score as f64, n, 0.05), "{r:?}");
        assert!(r.negative_ranks[0] < 50, "rank beyond range_max: {r:?}");
    }
    assert!(checked > 400, "only {checked} negatives checked");
}

#[test]
fn quickstart_normal_run_prints_nothing_on_stdout() {
    let s = shared();
    assert_eq!(s.out.stdout, "", "stdout must stay empty (logs and summary go to stderr)");
    s.out.assert_no_panic();
    assert!(s.out.stderr.contains("310 documents"), "summary missing on stderr:\n{}", s.out.stderr);
}

#[test]
fn json_flag_prints_the_report_as_json_on_stdout() {
    let (_t, out) = out_with_cached_workspace();
    let o = run(tripletgen()
        .args(["run", "--json", "--config"])
        .arg(repo().join("configs/quickstart.toml"))
        .arg("--out")
        .arg(&out));
    o.assert_ok();
    let v: Value = serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", o.stdout));
    assert_eq!(num_at(&v, "/ingest/documents"), 310.0);
    assert_eq!(num_at(&v, "/ingest/pairs"), 99.0);
    let file = read_json(&out.join("report.json"));
    assert_eq!(v["mine"]["negatives"], file["mine"]["negatives"]);
    assert_eq!(v["ingest"], file["ingest"]);
}

#[test]
fn mine_subcommand_obeys_its_flags() {
    let (_t, out) = out_with_cached_workspace();
    let o = run(tripletgen()
        .arg("mine")
        .arg(quickstart())
        .arg("--out")
        .arg(&out)
        .args(["--num-negatives", "3", "--format", "triplet,n-tuple", "--sampling", "random", "--seed", "7"])
        .args(["--range-min", "2", "--range-max", "30"]));
    o.assert_ok();
    assert_eq!(o.stdout, "");
    for name in ["triplet.parquet", "triplet.provenance.parquet", "n-tuple.parquet", "n-tuple.provenance.parquet", "report.json"] {
        assert!(out.join(name).is_file(), "{name} missing");
    }
    for name in ["labeled-pair.parquet", "labeled-list.parquet", "flag.jsonl"] {
        assert!(!out.join(name).exists(), "{name} was written but not asked for");
    }
    assert_eq!(
        parquet_column_names(&out.join("n-tuple.parquet")),
        ["anchor", "positive", "negative_1", "negative_2", "negative_3"]
    );
    assert_eq!(parquet_column_names(&out.join("triplet.parquet")), ["anchor", "positive", "negative"]);

    let fx = load_fixture(&quickstart(), &out);
    let trip = read_provenance(&out.join("triplet.provenance.parquet"));
    let ntup = read_provenance(&out.join("n-tuple.provenance.parquet"));
    assert!(!trip.is_empty() && !ntup.is_empty());
    let mut ranks = Vec::new();
    for r in trip.iter().chain(&ntup) {
        for (&rank, (id, &score)) in r.negative_ranks.iter().zip(r.negative_ids.iter().zip(&r.negative_scores)) {
            assert!((2..30).contains(&rank), "rank {rank} outside [2, 30): {r:?}");
            assert!(!fx.positives(&r.query_id).contains(id), "negative {id} is a positive: {r:?}");
            assert!(obeys_relative_margin(r.positive_score as f64, score as f64, 0.05), "{r:?}");
            ranks.push(rank);
        }
    }
    for r in &ntup {
        assert_eq!(r.negative_ids.len(), 3, "n-tuple rows carry exactly 3 negatives: {r:?}");
    }
    // Per pair: 3 triplet rows at most.
    let per_pair = histogram(trip.iter().map(|r| (r.query_id.clone(), r.positive_id.clone())));
    assert!(per_pair.values().all(|&n| n <= 3), "{per_pair:?}");
    // Random sampling: not simply the 3 best candidates after range_min every time.
    let top3 = ntup.iter().filter(|r| r.negative_ranks.iter().copied().collect::<HashSet<_>>() == HashSet::from([2, 3, 4])).count();
    assert!(top3 < ntup.len() / 2, "{top3} of {} n-tuples are ranks 2,3,4: sampling looks like `top`", ntup.len());
    assert!(ranks.iter().any(|&r| r >= 10), "no rank >= 10 with random sampling over [2, 30): {:?}", histogram(ranks.clone()));

    let report = read_json(&out.join("report.json"));
    assert_eq!(num_at(&report, "/ingest/pairs"), 99.0);
    assert_eq!(num_at(&report, "/embed_documents/embedded"), 0.0, "the copied workspace should have served every document");
    let manifest = read_json(&out.join("manifest.json"));
    let m = &manifest["config"]["mine"];
    assert_eq!(m["num_negatives"], 3, "{m}");
    assert_eq!(m["seed"], 7, "{m}");
    assert_eq!(m["sampling"], "random", "{m}");
}

#[test]
fn two_fresh_runs_write_byte_identical_outputs() {
    let s = shared();
    let t = tmpdir();
    let b = t.path().join("second");
    run_config(&repo().join("configs/quickstart.toml"), &["--out", b.to_str().unwrap()]).assert_ok();
    let b_report = read_json(&b.join("report.json"));
    assert_eq!(num_at(&b_report, "/embed_documents/cached"), 0.0, "second run must use a fresh workspace");
    let mut names = vec!["flag.jsonl".to_string(), "report.html".to_string()];
    for f in PARQUET_FORMATS {
        names.push(format!("{f}.parquet"));
        names.push(format!("{f}.provenance.parquet"));
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let diff = differing_files(&s.dir, &b, &names);
    assert!(diff.is_empty(), "fresh runs differ in {diff:?}");
}

#[test]
fn cache_serves_a_second_run_and_reembeds_only_an_edited_document() {
    let s = shared();
    let (t, out) = out_with_cached_workspace();
    let ws = out.join("workspace");
    // Same inputs, same workspace: nothing is embedded and the outputs are the same bytes.
    run_config(&repo().join("configs/quickstart.toml"), &["--out", out.to_str().unwrap()]).assert_ok();
    let r = read_json(&out.join("report.json"));
    assert_eq!(num_at(&r, "/embed_documents/embedded"), 0.0, "{}", r["embed_documents"]);
    assert_eq!(num_at(&r, "/embed_documents/cached"), 310.0, "{}", r["embed_documents"]);
    assert_eq!(num_at(&r, "/embed_queries/embedded"), 0.0, "{}", r["embed_queries"]);
    let diff = differing_files(&s.dir, &out, &["triplet.parquet", "triplet.provenance.parquet", "flag.jsonl"]);
    assert!(diff.is_empty(), "cached run differs from the fresh run in {diff:?}");

    // Edit one document's text in a copy of the corpus: exactly that one is embedded again.
    let copy = t.path().join("edited");
    copy_dir(&quickstart(), &copy);
    let corpus = std::fs::read_to_string(copy.join("corpus.jsonl")).unwrap();
    let mut edited = 0;
    let lines: Vec<String> = corpus
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            if v["_id"] == "astro-010" {
                let t = v["text"].as_str().unwrap().to_string();
                v["text"] = Value::String(format!("{t} (Edited for the cache test.)"));
                edited += 1;
            }
            serde_json::to_string(&v).unwrap()
        })
        .collect();
    assert_eq!(edited, 1);
    std::fs::write(copy.join("corpus.jsonl"), lines.join("\n") + "\n").unwrap();
    let out2 = t.path().join("out2");
    let o = run(tripletgen().arg("mine").arg(&copy).arg("--out").arg(&out2).arg("--workspace").arg(&ws));
    o.assert_ok();
    let r = read_json(&out2.join("report.json"));
    assert_eq!(num_at(&r, "/embed_documents/embedded"), 1.0, "{}", r["embed_documents"]);
    assert_eq!(num_at(&r, "/embed_documents/cached"), 309.0, "{}", r["embed_documents"]);
    assert_eq!(num_at(&r, "/embed_queries/embedded"), 0.0, "{}", r["embed_queries"]);

    // And once more: now the edited text is cached too.
    let out3 = t.path().join("out3");
    run(tripletgen().arg("mine").arg(&copy).arg("--out").arg(&out3).arg("--workspace").arg(&ws)).assert_ok();
    let r = read_json(&out3.join("report.json"));
    assert_eq!(num_at(&r, "/embed_documents/embedded"), 0.0, "{}", r["embed_documents"]);
}

/// pyarrow reads every Parquet file with the exact schemas, provenance lines up with the data, and
/// `datasets.load_dataset("parquet", ...)` gives sentence-transformers the columns it needs.
#[test]
fn python_pyarrow_and_datasets_read_the_outputs() {
    let s = shared();
    let python = std::env::var("TRIPLETGEN_TEST_PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".into());
    let probe = std::process::Command::new(&python).args(["-c", "import pyarrow, datasets"]).output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "{python} cannot import pyarrow and datasets ({}). Run ./scripts/test.sh: it creates the pinned test venv \
             and sets TRIPLETGEN_TEST_PYTHON.",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("cannot run {python}: {e}. Run ./scripts/test.sh (it sets TRIPLETGEN_TEST_PYTHON)."),
    }
    let t = tmpdir();
    let o = std::process::Command::new(&python)
        .arg(repo().join("tests/python/check_outputs.py"))
        .arg("--out")
        .arg(&s.dir)
        .arg("--fixture")
        .arg(quickstart())
        .args(["--num-negatives", "5", "--relative-margin", "0.05"])
        .env("HF_HOME", t.path().join("hf"))
        .env("HF_DATASETS_CACHE", t.path().join("hf/datasets"))
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_DATASETS_OFFLINE", "1")
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "check_outputs.py failed:\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(stdout.contains("all checks passed"), "unexpected output:\n{stdout}\n{stderr}");
}

/// HNSW search on the fixture: deterministic (serial insertion), positive-aware, and close to exact.
#[test]
fn hnsw_index_is_deterministic_positive_aware_and_close_to_exact() {
    let mut outs = Vec::new();
    let mut keep = Vec::new();
    for index in ["hnsw", "hnsw", "exact"] {
        let (t, out) = out_with_cached_workspace();
        let o = run(tripletgen()
            .arg("mine")
            .arg(quickstart())
            .arg("--out")
            .arg(&out)
            .args(["--index", index, "--format", "triplet,flag-jsonl"]));
        o.assert_ok();
        assert_eq!(o.stdout, "", "stdout must stay empty with --index {index}");
        let r = read_json(&out.join("report.json"));
        assert_eq!(r["index"]["kind"], index, "{}", r["index"]);
        outs.push(out);
        keep.push(t);
    }
    let diff = differing_files(&outs[0], &outs[1], &["triplet.parquet", "triplet.provenance.parquet", "flag.jsonl"]);
    assert!(diff.is_empty(), "two HNSW runs differ in {diff:?}");

    let fx = load_fixture(&quickstart(), &outs[0]);
    let hnsw = read_jsonl(&outs[0].join("flag.jsonl"));
    let exact = read_jsonl(&outs[2].join("flag.jsonl"));
    assert_eq!(hnsw.len(), exact.len());
    let (mut same, mut total) = (0, 0);
    for (h, e) in hnsw.iter().zip(&exact) {
        assert_eq!(h["query_id"], e["query_id"]);
        let qid = h["query_id"].as_str().unwrap();
        let hn = strs(&h["neg_ids"]);
        for n in &hn {
            assert!(!fx.positives(qid).contains(n), "HNSW negative {n} is a positive of {qid}");
        }
        let en: HashSet<String> = strs(&e["neg_ids"]).into_iter().collect();
        same += hn.iter().filter(|n| en.contains(*n)).count();
        total += en.len();
    }
    assert!(total > 0);
    assert!(same as f64 >= 0.9 * total as f64, "HNSW found only {same} of the {total} exact negatives");
}

/// Rows in the workspace's embedding table (0 while it does not exist or is locked).
fn stored_embeddings(ws: &Path) -> i64 {
    let db = ws.join("tripletgen.sqlite");
    if !db.exists() {
        return 0;
    }
    let Ok(c) = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else { return 0 };
    c.query_row("SELECT count(*) FROM embeddings", [], |r| r.get(0)).unwrap_or(0)
}

/// A run killed (SIGKILL) while embedding keeps every committed batch: the rerun embeds only the rest
/// and the result is the same as an uninterrupted run's.
#[test]
fn a_killed_run_resumes_from_the_committed_embeddings() {
    require_models();
    let t = tmpdir();
    let ws = t.path().join("ws");
    let out = t.path().join("out");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tripletgen"))
        .arg("mine")
        .arg(quickstart())
        .arg("--out")
        .arg(&out)
        .arg("--workspace")
        .arg(&ws)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let mut killed_at = None;
    while start.elapsed() < std::time::Duration::from_secs(300) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        let n = stored_embeddings(&ws);
        if n >= 64 {
            child.kill().unwrap();
            killed_at = Some(n);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait().unwrap();
    let Some(seen) = killed_at else {
        panic!("the run finished (or stalled) before 64 embeddings were committed; cannot test the kill");
    };
    assert!(!out.join("triplet.parquet").exists(), "a killed run left triplet.parquet");
    let kept = stored_embeddings(&ws);
    assert!(kept >= seen, "embeddings lost by the kill: {seen} seen before, {kept} after");

    run(tripletgen().arg("mine").arg(quickstart()).arg("--out").arg(&out).arg("--workspace").arg(&ws)).assert_ok();
    let r = read_json(&out.join("report.json"));
    let cached = num_at(&r, "/embed_documents/cached") as i64;
    let embedded = num_at(&r, "/embed_documents/embedded") as i64;
    assert!(cached >= seen.min(310), "only {cached} documents cached after the kill ({kept} rows kept)");
    assert_eq!(cached + embedded, 310, "{}", r["embed_documents"]);
    assert!(embedded < 310, "everything was embedded again");

    // Same result as an uninterrupted run.
    let (_t2, clean) = out_with_cached_workspace();
    run(tripletgen().arg("mine").arg(quickstart()).arg("--out").arg(&clean)).assert_ok();
    let diff = differing_files(&out, &clean, &["triplet.parquet", "triplet.provenance.parquet"]);
    assert!(diff.is_empty(), "the resumed run differs from an uninterrupted one in {diff:?}");
}

/// Two runs at once on one (empty) workspace: both succeed (SQLite waits for its lock) and write the
/// same bytes.
#[test]
fn two_concurrent_runs_can_share_one_workspace() {
    require_models();
    let t = tmpdir();
    let ws = t.path().join("ws");
    let spawn = |name: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tripletgen"))
            .arg("mine")
            .arg(quickstart())
            .arg("--out")
            .arg(t.path().join(name))
            .arg("--workspace")
            .arg(&ws)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("a"), spawn("b"));
    for (name, child) in [("a", a), ("b", b)] {
        let o = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "run {name} failed:\n{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let diff = differing_files(&t.path().join("a"), &t.path().join("b"), &["triplet.parquet", "triplet.provenance.parquet"]);
    assert!(diff.is_empty(), "concurrent runs differ in {diff:?}");
    let ra = read_json(&t.path().join("a/report.json"));
    let rb = read_json(&t.path().join("b/report.json"));
    let embedded = num_at(&ra, "/embed_documents/embedded") + num_at(&rb, "/embed_documents/embedded");
    assert!(embedded >= 310.0, "documents embedded by the two runs together: {embedded}");
}

// ---------------------------------------------------------------------------------------------
// report.html, review.jsonl, inspect

/// The plots every quickstart report.html has (the quickstart generates lexical variants).
const PLOTS: [&str; 7] = [
    "plot-scores",
    "plot-negative-ranks",
    "plot-removed",
    "plot-above-positive",
    "plot-fidelity",
    "plot-round-trip",
    "plot-strategies",
];

/// The markup of `<figure id="{id}">…</figure>` in `html` (panics when absent).
fn figure<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html.find(&format!("<figure id=\"{id}\">")).unwrap_or_else(|| panic!("report.html has no figure {id}"));
    let end = html[start..].find("</figure>").unwrap_or_else(|| panic!("figure {id} is not closed")) + start;
    &html[start..end]
}

/// Rectangles with a positive width and height in an SVG fragment.
fn drawn_rects(svg: &str) -> usize {
    let attr = |tag: &str, name: &str| -> f64 {
        let key = format!(" {name}=\"");
        tag.find(&key).and_then(|i| tag[i + key.len()..].split('"').next()).and_then(|v| v.parse().ok()).unwrap_or(0.0)
    };
    svg.split("<rect").skip(1).map(|t| &t[..t.find('>').unwrap_or(t.len())]).filter(|t| attr(t, "width") > 0.0 && attr(t, "height") > 0.0).count()
}

#[test]
fn report_html_is_self_contained_escaped_and_has_every_plot() {
    let s = shared();
    let path = s.dir.join("report.html");
    let html = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(html.len() < 1_000_000, "report.html is {} bytes", html.len());
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    for needle in ["<script", "<link", "<img", "<iframe", "@import", "url("] {
        assert!(!html.contains(needle), "report.html contains {needle:?}: it must need nothing from outside");
    }
    let without_ns = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    assert!(!without_ns.contains("http://") && !without_ns.contains("https://"), "report.html refers to a URL");
    // No timings and no absolute paths: the page is the same for the same inputs.
    assert!(!html.contains(&s.dir.display().to_string()), "report.html contains the output path");
    for id in PLOTS {
        let f = figure(&html, id);
        assert!(f.contains("<svg"), "{id} has no inline SVG");
        assert!(drawn_rects(f) >= 3, "{id}: only {} drawn rectangles:\n{f}", drawn_rects(f));
        assert!(f.contains("<text"), "{id} has no axis labels");
    }
    // User text is escaped: rust-005 says `Result<T, E>`, fin-004 `S&P 500`.
    assert!(!html.contains("Result<T, E>"), "unescaped document text in report.html");
    assert!(html.contains("Result&lt;T, E&gt;") || !html.contains("rust-005"), "rust-005 shown but not escaped as expected");
    assert!(!html.contains("S&P"), "unescaped ampersand from fin-004");
    // Sample tables stay small.
    for section in ["triplets", "rejected", "false-negatives"] {
        let start = html.find(&format!("<section id=\"{section}\"")).unwrap_or_else(|| panic!("no section {section}"));
        let end = html[start..].find("</section>").unwrap() + start;
        let rows = html[start..end].matches("<tr>").count();
        assert!((2..=31).contains(&rows), "section {section}: {rows} table rows");
    }
    // The numbers agree with report.json.
    let report = read_json(&s.dir.join("report.json"));
    let pairs = num_at(&report, "/mine/pairs") as usize;
    assert!(html.contains(&format!("{pairs} pairs")), "header lacks the pair count {pairs}");
    let hist = report["mine"]["candidates_above_positive"].as_object().expect("mine.candidates_above_positive");
    let total: u64 = hist.values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(total as usize, pairs, "the per-pair distribution covers every pair: {hist:?}");
    let above: u64 = hist.iter().filter(|(k, _)| *k != "0").map(|(_, v)| v.as_u64().unwrap()).sum();
    assert_eq!(above as f64, num_at(&report, "/mine/pairs_with_candidates_above_positive"));
}

/// The chromium binary: $TRIPLETGEN_CHROMIUM, else `chromium` on PATH. None (after printing
/// "skipped") only when the developer set TRIPLETGEN_SKIP_CHROMIUM=1; refused under CI=true.
fn chromium(test: &str) -> Option<PathBuf> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"));
    if var("TRIPLETGEN_SKIP_CHROMIUM").is_some() {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("TRIPLETGEN_SKIP_CHROMIUM is set under CI=true: CI must render the report (unset it)");
        }
        eprintln!("skipped: {test} needs Chromium and TRIPLETGEN_SKIP_CHROMIUM=1 is set");
        return None;
    }
    if let Some(p) = var("TRIPLETGEN_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file());
    Some(found.unwrap_or_else(|| {
        panic!("chromium is not installed: run ./scripts/test.sh (it installs the Debian package `chromium`), or set TRIPLETGEN_CHROMIUM")
    }))
}

/// Run headless Chromium on `page` with a fresh profile and no network features; returns stdout.
fn headless(chromium: &Path, page: &Path, extra: &[String]) -> String {
    let profile = tmpdir();
    let o = std::process::Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", chromium.display()));
    assert!(o.status.success(), "chromium failed ({:?}):\n{}", o.status, String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Pixels of an RGB(A) screenshot within `tol` of each colour.
fn colour_counts(png_path: &Path, colours: &[[u8; 3]], tol: u8) -> (usize, usize, Vec<usize>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png_path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().expect("image size fits in memory")];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let px = &buf[..info.buffer_size()];
    let near = |a: u8, b: u8| a.abs_diff(b) <= tol;
    let mut counts = vec![0; colours.len()];
    let mut non_white = 0;
    let mut distinct = std::collections::HashSet::new();
    for p in px.chunks_exact(channels) {
        if distinct.len() < 10_000 {
            distinct.insert((p[0], p[1], p[2]));
        }
        if p[0] < 245 || p[1] < 245 || p[2] < 245 {
            non_white += 1;
        }
        for (c, n) in colours.iter().zip(counts.iter_mut()) {
            if near(p[0], c[0]) && near(p[1], c[1]) && near(p[2], c[2]) {
                *n += 1;
            }
        }
    }
    assert!(distinct.len() > 50, "the screenshot has only {} colours: blank?", distinct.len());
    (px.len() / channels, non_white, counts)
}

#[test]
fn report_html_renders_in_headless_chromium() {
    let s = shared();
    let Some(chromium) = chromium("report_html_renders_in_headless_chromium") else { return };
    let page = s.dir.join("report.html");
    // The DOM Chromium built: every plot is an <svg> with drawn shapes.
    let dom = headless(&chromium, &page, &["--dump-dom".into()]);
    assert!(dom.contains("tripletgen run report"), "dumped DOM does not look like the report:\n{}", &dom[..dom.len().min(2000)]);
    for id in PLOTS {
        let f = figure(&dom, id);
        assert!(f.contains("<svg"), "{id}: no <svg> in Chromium's DOM");
        assert!(drawn_rects(f) >= 3, "{id}: {} drawn rectangles in Chromium's DOM", drawn_rects(f));
    }
    // The pixels of the whole page: not blank, and the plots' colours are painted.
    let t = tmpdir();
    let shot = t.path().join("report.png");
    headless(&chromium, &page, &[format!("--screenshot={}", shot.display()), "--window-size=1300,9000".into()]);
    let blend = |c: [u8; 3]| c.map(|x| (x as f64 * 0.55 + 255.0 * 0.45).round() as u8);
    let (neutral, rejected, accepted) = ([0x45, 0x6b, 0xa8], [0xc0, 0x39, 0x2b], [0x1b, 0x9e, 0x77]);
    let (pos, neg) = (blend([0x1b, 0x9e, 0x77]), blend([0xd9, 0x5f, 0x02])); // 55 % opaque on white
    let colours = [neutral, rejected, accepted, pos, neg];
    let (pixels, non_white, counts) = colour_counts(&shot, &colours, 6);
    eprintln!("page screenshot: {pixels} pixels, {non_white} not white, plot colours {counts:?}");
    assert!(non_white * 20 > pixels, "only {non_white} of {pixels} pixels are not white");
    // Each plot alone (its figure on a page with the report's styles): painted, in its own colours.
    let html = std::fs::read_to_string(&page).unwrap();
    let head = &html[..html.find("<body>").expect("<body>") + "<body>".len()];
    let expect: [(&str, Vec<[u8; 3]>); 7] = [
        ("plot-scores", vec![pos, neg]),
        ("plot-negative-ranks", vec![neutral]),
        ("plot-removed", vec![rejected]),
        ("plot-above-positive", vec![neutral]),
        ("plot-fidelity", vec![blend(accepted), blend(rejected)]),
        ("plot-round-trip", vec![neutral]),
        ("plot-strategies", vec![accepted, rejected]),
    ];
    for (id, want) in expect {
        let one = t.path().join(format!("{id}.html"));
        std::fs::write(&one, format!("{head}\n{}</figure>\n</body></html>\n", figure(&html, id))).unwrap();
        let png = t.path().join(format!("{id}.png"));
        headless(&chromium, &one, &[format!("--screenshot={}", png.display()), "--window-size=700,480".into()]);
        let (pixels, non_white, counts) = colour_counts(&png, &want, 6);
        eprintln!("{id}: {non_white} of {pixels} pixels not white, its colours {counts:?}");
        assert!(non_white * 25 > pixels, "{id}: only {non_white} of {pixels} pixels are not white");
        for (c, n) in want.iter().zip(&counts) {
            assert!(*n > 150, "{id}: colour {c:02x?} covers only {n} pixels: the plot did not render");
        }
    }
}

#[test]
fn review_file_lists_candidates_close_to_the_positive() {
    let (_t, out) = out_with_cached_workspace();
    let margin = 0.03;
    let o = run(tripletgen()
        .arg("mine")
        .arg(quickstart())
        .arg("--out")
        .arg(&out)
        .args(["--review", "--review-margin", &margin.to_string(), "--format", "flag-jsonl"]));
    o.assert_ok();
    let fx = load_fixture(&quickstart(), &out);
    let lines = read_jsonl(&out.join("review.jsonl"));
    assert!(!lines.is_empty(), "no pair has a candidate within {margin} of its positive on the quickstart?");
    let flag: HashMap<(String, String), Vec<String>> = read_jsonl(&out.join("flag.jsonl"))
        .iter()
        .map(|l| ((l["query_id"].as_str().unwrap().to_string(), strs(&l["pos_ids"])[0].clone()), strs(&l["neg_ids"])))
        .collect();
    let outcomes = ["range_min", "max_score", "min_score", "absolute_margin", "relative_margin", "not_sampled", "chosen"];
    let (mut total, mut above_pairs, mut relative) = (0, 0, 0);
    for (i, l) in lines.iter().enumerate() {
        let qid = l["query_id"].as_str().unwrap();
        let pid = l["positive_id"].as_str().unwrap();
        assert!(fx.positives(qid).contains(pid), "line {}: {pid} is not a positive of {qid}", i + 1);
        assert_eq!(l["query"].as_str(), Some(fx.query_text(qid)));
        assert_eq!(l["positive"].as_str(), Some(fx.corpus[pid].full().as_str()));
        let pos = l["positive_score"].as_f64().unwrap();
        let cands = l["candidates"].as_array().unwrap();
        assert!(!cands.is_empty());
        let mut above = 0;
        let mut last_rank = None;
        for c in cands {
            let (id, score, rank) = (c["doc_id"].as_str().unwrap(), c["score"].as_f64().unwrap(), c["rank"].as_u64().unwrap());
            assert!(!fx.positives(qid).contains(id), "line {}: known positive {id} listed as a candidate", i + 1);
            assert_eq!(c["text"].as_str(), Some(fx.corpus[id].full().as_str()));
            assert!(score > pos - margin - 1e-6, "line {}: {id} scores {score}, positive {pos}, margin {margin}", i + 1);
            assert!((c["margin"].as_f64().unwrap() - (score - pos)).abs() < 1e-5);
            assert!(last_rank.is_none_or(|r| rank > r), "line {}: ranks not increasing", i + 1);
            last_rank = Some(rank);
            let outcome = c["outcome"].as_str().unwrap();
            assert!(outcomes.contains(&outcome), "unknown outcome {outcome}");
            let chosen = flag[&(qid.to_string(), pid.to_string())].contains(&id.to_string());
            assert_eq!(outcome == "chosen", chosen, "line {}: {id} outcome {outcome} but chosen in flag.jsonl = {chosen}", i + 1);
            // With relative_margin 0.05 on, nothing scoring above the positive can be chosen.
            if score > pos {
                above += 1;
                assert_ne!(outcome, "chosen", "line {}: {id} beats the positive and was chosen", i + 1);
            }
            relative += (outcome == "relative_margin") as usize;
        }
        assert_eq!(l["candidates_above_positive"].as_u64(), Some(above), "line {}", i + 1);
        above_pairs += (above > 0) as usize;
        total += cands.len();
    }
    assert!(relative > 0, "the relative margin removed nothing that was listed");
    let report = read_json(&out.join("report.json"));
    assert_eq!(num_at(&report, "/mine/review_candidates") as usize, total);
    assert_eq!(num_at(&report, "/mine/pairs_with_candidates_above_positive") as usize, above_pairs);
    let files = report["write"]["files"].as_array().unwrap();
    let review = files.iter().find(|f| f["file"] == "review.jsonl").expect("review.jsonl in write.files");
    assert_eq!(review["rows"].as_u64(), Some(lines.len() as u64));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains(&format!("({total} in all)")), "report.html does not mention the review file's size");
}

#[test]
fn inspect_shows_rows_with_their_provenance() {
    let s = shared();
    let fx = load_fixture(&quickstart(), &s.dir);
    let prov = read_provenance(&s.dir.join("triplet.provenance.parquet"));
    let anchors = string_column(&s.dir.join("triplet.parquet"), "anchor");
    // JSON: filtered by strategy, the rows are the file's rows with the provenance of the same row.
    let o = run(tripletgen().arg("inspect").arg(&s.dir).args(["--strategy", "synonym", "-n", "4", "--offset", "2", "--json"]));
    o.assert_ok();
    let rows: Vec<Value> = o.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 4, "{}", o.stdout);
    let synonym_rows: Vec<usize> = prov.iter().enumerate().filter(|(_, r)| fx.variants.get(&r.query_id).is_some_and(|v| v.strategy == "synonym")).map(|(i, _)| i).collect();
    for (r, want) in rows.iter().zip(&synonym_rows[2..6]) {
        let i = r["row"].as_u64().unwrap() as usize;
        assert_eq!(i, *want, "offset 2 of the synonym rows");
        assert_eq!(r["query_strategy"], "synonym");
        assert_eq!(r["query_id"].as_str(), Some(prov[i].query_id.as_str()));
        assert_eq!(strs(&r["negative_ids"]), prov[i].negative_ids);
        assert_eq!(r["data"]["anchor"].as_str(), Some(anchors[i].as_str()));
        assert_eq!(r["data"]["anchor"].as_str(), Some(fx.query_text(&prov[i].query_id)));
        assert_eq!(r["data"]["negative"].as_str(), Some(fx.corpus[&prov[i].negative_ids[0]].full().as_str()));
        // Generated queries carry where they came from (variants.parquet).
        let v = &fx.variants[&prov[i].query_id];
        assert_eq!(r["variant"]["source_id"].as_str(), Some(v.source_id.as_str()), "{r}");
        assert_eq!(r["variant"]["source_text"].as_str(), Some(fx.queries[&v.source_id].as_str()), "{r}");
    }
    // Text: one query's labeled-list rows, one per positive.
    let o = run(tripletgen().arg("inspect").arg(&s.dir).args(["--format", "labeled-list", "--query-id", "q002", "-n", "50"]));
    o.assert_ok();
    let n = fx.qrels["q002"].len();
    assert!(o.stdout.starts_with(&format!("labeled-list.parquet: {} rows, {n} match, showing {n}", read_provenance(&s.dir.join("labeled-list.provenance.parquet")).len())), "{}", o.stdout);
    assert_eq!(o.stdout.matches("── row ").count(), n);
    assert!(o.stdout.contains(&fx.queries["q002"]) && o.stdout.contains("labels"), "{}", o.stdout);
    assert!(!o.stdout.contains("generated from"), "q002 is an input query:\n{}", o.stdout);
    // Seeded samples repeat; different seeds differ.
    let sample = |seed: &str| run(tripletgen().arg("inspect").arg(&s.dir).args(["-n", "5", "--seed", seed])).assert_ok().stdout.clone();
    assert_eq!(sample("1"), sample("1"));
    assert_ne!(sample("1"), sample("2"));
    // Errors: not an output folder (exit 1, the file named), a bad format (exit 2).
    let t = tmpdir();
    run(tripletgen().arg("inspect").arg(t.path())).assert_code(1).assert_stderr_has(&["not a tripletgen output folder", "triplet.parquet"]);
    run(tripletgen().arg("inspect").arg(&s.dir).args(["--format", "csv"])).assert_code(2).assert_stderr_has(&["--format"]);
}
