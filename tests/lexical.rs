//! LLM-free query variants end to end: generated, filtered with reasons, recorded, and mined like
//! given queries without ever using a positive of their source query as a negative.

mod common;
use common::*;
use std::collections::{HashMap, HashSet};
use std::path::Path;

fn config(dir: &Path, strategies: &str, extra: &str) -> std::path::PathBuf {
    let body = format!(
        "[input]\nbeir = {}\n[generate.lexical]\nstrategies = [{strategies}]\nvariants_per_query = 2\n{extra}\n\
         [output]\ndir = {}\nformats = [\"triplet\", \"flag-jsonl\"]\n",
        tp(&fixture("quickstart")),
        tp(&dir.join("out")),
    );
    write(dir, "c.toml", &body)
}

#[test]
fn variants_are_filtered_recorded_and_mined_with_their_source_positives() {
    require_models();
    let t = tmpdir();
    let all =
        "\"synonym\", \"hypernym\", \"embedding-neighbour\", \"random-insert\", \"random-delete\", \"random-swap\"";
    let cfg = config(t.path(), all, "");
    run_config(&cfg, &[]).assert_ok();
    let out = t.path().join("out");

    let report = read_json(&out.join("report.json"));
    let generate = report["generate"].as_object().unwrap();
    assert_eq!(generate.len(), 6, "{generate:?}");
    let produced: f64 = generate.values().map(|v| v["produced"].as_f64().unwrap()).sum();
    let accepted: f64 = report["filter"].as_object().unwrap().values().map(|v| v["accepted"].as_f64().unwrap()).sum();
    assert!(produced > 300.0, "82 queries x 6 strategies x 2: {produced}");

    // Every candidate is in variants.parquet, accepted ones without a reason, rejected ones with one.
    let v = out.join("variants.parquet");
    assert_eq!(parquet_rows(&v) as f64, produced);
    let ids = string_column(&v, "variant_id");
    let texts = string_column(&v, "text");
    let sources = string_column(&v, "source_text");
    let batches = read_parquet(&v).1;
    let mut accepted_ids = HashSet::new();
    let mut reasons = HashMap::new();
    let mut row = 0;
    for b in &batches {
        use arrow::array::{Array, AsArray};
        let acc = b.column_by_name("accepted").unwrap().as_boolean();
        let reason = b.column_by_name("reason").unwrap().as_string::<i32>();
        for i in 0..b.num_rows() {
            assert_ne!(texts[row], sources[row], "a variant equal to its source is never produced");
            if acc.value(i) {
                assert!(reason.is_null(i));
                accepted_ids.insert(ids[row].clone());
            } else {
                assert!(!reason.is_null(i));
                *reasons.entry(reason.value(i).to_string()).or_insert(0) += 1;
            }
            row += 1;
        }
    }
    assert_eq!(accepted_ids.len() as f64, accepted);
    assert!(accepted > 0.0 && !reasons.is_empty(), "some accepted and some rejected: {reasons:?}");

    // Accepted variants are mined: they appear as queries; their negatives exclude every positive of
    // their source query.
    let qrels = read_qrels(&fixture("quickstart/qrels/test.tsv"));
    let lines = read_jsonl(&out.join("flag.jsonl"));
    let mut mined_variants = HashSet::new();
    for l in &lines {
        let qid = l["query_id"].as_str().unwrap();
        if let Some((source, _)) = qid.split_once('#') {
            mined_variants.insert(qid.to_string());
            let pos = &qrels[source];
            for n in strs(&l["neg_ids"]) {
                assert!(!pos.contains(&n), "{qid}: negative {n} is a positive of {source}");
            }
            for p in strs(&l["pos_ids"]) {
                assert!(pos.contains(&p), "{qid}: positive {p} is not a positive of {source}");
            }
        }
    }
    assert_eq!(mined_variants, accepted_ids);

    // The training provenance says which strategy made each query.
    let strategies: HashSet<String> =
        string_column(&out.join("triplet.provenance.parquet"), "query_strategy").into_iter().collect();
    assert!(strategies.contains("given") && strategies.len() > 2, "{strategies:?}");
}

#[test]
fn eda_alone_needs_no_wordnet_and_is_deterministic() {
    require_models();
    let runs: Vec<Vec<u8>> = (0..2)
        .map(|_| {
            let t = tmpdir();
            let empty = t.path().join("no-wordnet");
            std::fs::create_dir_all(&empty).unwrap();
            let cfg = config(t.path(), "\"random-swap\", \"random-delete\"", "");
            run(tripletgen().arg("run").arg("--config").arg(&cfg).env("WORDNET_DIR", &empty)).assert_ok();
            std::fs::read(t.path().join("out/variants.parquet")).unwrap()
        })
        .collect();
    assert_eq!(runs[0], runs[1], "same seed, same variants file");
}

#[test]
fn missing_wordnet_is_a_clear_error() {
    require_models();
    let t = tmpdir();
    let empty = t.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let cfg = config(t.path(), "\"synonym\"", &format!("wordnet_dir = {}", tp(&empty)));
    run_config(&cfg, &[]).assert_code(1).assert_stderr_has(&[
        "WordNet",
        "index.noun",
        "tripletgen fetch-models",
        "wordnet-base",
    ]);
}

#[test]
fn impossible_lexical_settings_are_refused_at_load() {
    let t = tmpdir();
    let cfg = config(t.path(), "\"synonym\", \"synonym\"", "");
    run_config(&cfg, &[]).assert_code(2).assert_stderr_has(&["generate.lexical.strategies", "twice"]);
    let cfg = config(t.path(), "\"random-swap\"", "swap_rate = 1.5");
    run_config(&cfg, &[]).assert_code(2).assert_stderr_has(&["generate.lexical.swap_rate", "0 to 1"]);
    let cfg = config(t.path(), "\"blah\"", "");
    run_config(&cfg, &[]).assert_code(2).assert_stderr_has(&["blah"]);
}

#[test]
fn contextual_replacements_are_the_masked_language_models_best_words() {
    require_models();
    let Some(py) = std::env::var_os("TRIPLETGEN_TEST_PYTHON") else {
        eprintln!("skipped: TRIPLETGEN_TEST_PYTHON is not set (./scripts/test.sh sets it)");
        return;
    };
    let t = tmpdir();
    let mlm = t.path().join("mlm");
    let script = repo().join("tests/python/mlm_reference.py");
    let tokenizer = models_cache().join("all-minilm-l6-v2/tokenizer.json");
    let o =
        run(assert_cmd::Command::new(&py).arg(&script).args(["build"]).arg(&mlm).arg("--tokenizer").arg(&tokenizer));
    assert_eq!(o.code, Some(0), "{}\n{}", o.stdout, o.stderr);

    // A missing model folder is a configuration error that names the LLM alternative.
    let cfg = config(t.path(), "\"contextual\"", "");
    run_config(&cfg, &[]).assert_code(2).assert_stderr_has(&["generate.lexical.mlm_dir", "generate.llm.strategies"]);

    let extra = format!("mlm_dir = {}\nreplace_rate = 0.3\n[filter]\nfidelity_min = 0.0\nround_trip_k = 0\n", tp(&mlm));
    let cfg = config(t.path(), "\"contextual\"", &extra);
    run_config(&cfg, &[]).assert_ok();
    let v = t.path().join("out/variants.parquet");
    let first = std::fs::read(&v).unwrap();
    let o = run(assert_cmd::Command::new(&py)
        .arg(&script)
        .arg("check")
        .arg(&mlm)
        .arg("--variants")
        .arg(&v)
        .args(["--k", "16", "--min", "50"]));
    assert_eq!(o.code, Some(0), "{}\n{}", o.stdout, o.stderr);
    run_config(&cfg, &[]).assert_ok();
    assert!(std::fs::read(&v).unwrap() == first, "same model, same variants");
}
