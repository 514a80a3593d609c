//! The files of the shared quickstart run: every file present, counts that match the fixture, no
//! negative that is a positive or has a positive's text, the relative margin, checksums, and the
//! Parquet read back by pyarrow and `datasets`.

use super::*;

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
        // The model fetch-models builds (src/models.rs MINILM_BUILD), and the file in the cache.
        Some("7379f18f94baf43f079fc44db7ce98fd96651788abca0edee0b8b719d7b0e671"),
        "manifest.model: {}",
        manifest["model"]
    );
    assert_eq!(
        manifest.pointer("/model/checksums/model.onnx").and_then(Value::as_str),
        Some(sha256_hex(&models_cache().join("all-minilm-l6-v2/model.onnx")).as_str())
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
                assert!(
                    !positives.contains(n),
                    "{f} provenance row {i}: negative {n} is a known positive of {}",
                    r.query_id
                );
            }
        }
    }
}

#[test]
fn quickstart_negative_texts_differ_from_every_positive_text_of_the_query() {
    let s = shared();
    let fx = load_fixture(&quickstart(), &s.dir);
    let by_full_text: HashMap<String, String> = fx.corpus.iter().map(|(id, d)| (d.full(), id.clone())).collect();
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
            assert!(
                !pos_raw.contains(&norm(raw)),
                "line {}: negative {id} has the same body text as a positive of {qid}",
                i + 1
            );
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
            assert!(
                obeys_relative_margin(pos[0], n, 0.05),
                "line {}: negative score {n} > 0.95 x positive {}",
                i + 1,
                pos[0]
            );
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

/// pyarrow reads every Parquet file with the exact schemas, provenance lines up with the data, and
/// `datasets.load_dataset("parquet", ...)` gives sentence-transformers the columns it needs.
#[test]
fn python_pyarrow_and_datasets_read_the_outputs() {
    let s = shared();
    let python =
        std::env::var("TRIPLETGEN_TEST_PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".into());
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
