//! Query generation end to end through a REAL llama.cpp server (SmolLM2-135M): synthetic queries from
//! documents, paraphrases, contextual replacements and backtranslations, answers parsed or rejected with reasons, answers
//! stored in the workspace, triplets written; a second run sends nothing; a run killed mid-way is
//! finished by the next one without paying twice.
//!
//! A 135M model writes poor queries: these tests check the plumbing and the promises, not quality.

mod common;
#[path = "common/llama.rs"]
mod llama;

use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

fn config(dir: &Path, server: &llama::LlamaServer, strategies: &str, max_documents: usize) -> std::path::PathBuf {
    config_for(dir, &fixture("quickstart/corpus.jsonl"), server, strategies, max_documents)
}

fn config_for(
    dir: &Path,
    corpus: &Path,
    server: &llama::LlamaServer,
    strategies: &str,
    max_documents: usize,
) -> std::path::PathBuf {
    let mut llm = server.config();
    llm.max_tokens = 96;
    let body = format!(
        "[input]\ncorpus = {}\n\n[generate.llm]\nstrategies = [{strategies}]\nqueries_per_document = 2\n\
         max_documents = {max_documents}\nparaphrases_per_query = 1\npivot_languages = [\"French\"]\n\n\
         [filter]\ndocument_fidelity_min = 0.0\nfidelity_min = 0.0\nround_trip_k = 0\n\n\
         [output]\ndir = {}\nformats = [\"triplet\", \"flag-jsonl\"]\n\n{}",
        tp(corpus),
        tp(&dir.join("out")),
        toml::to_string(&std::collections::BTreeMap::from([("llm", llm)])).unwrap(),
    );
    write(dir, "llm.toml", &body)
}

/// Completion tasks the server has logged so far (llama-server logs "processing task" once per
/// request it serves).
fn requests_seen(server: &llama::LlamaServer) -> usize {
    server.log().matches("processing task").count()
}

#[test]
fn generation_end_to_end_then_a_rerun_sends_no_request() {
    require_models();
    // A private server: the request counts read from its log must not include other tests' requests.
    let Some(own) = llama::LlamaServer::start() else { return llama::skipped("generation_end_to_end") };
    let server = &own;
    let t = tmpdir();
    let cfg = config(t.path(), server, "\"synthetic\", \"paraphrase\", \"backtranslation\", \"contextual\"", 3);
    let out = t.path().join("out");

    let before = requests_seen(server);
    run_config(&cfg, &[]).assert_ok();
    let report = read_json(&out.join("report.json"));
    let llm = &report["llm"];
    let sent = num_at(&report, "/llm/sent");
    assert!(sent >= 3.0, "3 synthetic calls at least: {llm}");
    assert_eq!(num_at(&report, "/llm/cached"), 0.0, "{llm}");
    assert!(num_at(&report, "/llm/prompt_tokens") > 0.0, "{llm}");
    let seen = requests_seen(server) - before;
    assert!(seen as f64 >= sent, "the server saw {seen} requests, the client counted {sent}");

    // Every candidate is in variants.parquet with its provenance; rejected ones with a reason, and
    // unparseable answers with the raw text.
    let v = out.join("variants.parquet");
    let strategies = string_column(&v, "strategy");
    assert!(strategies.iter().any(|s| s == "synthetic"), "{strategies:?}");
    let details = string_column(&v, "detail");
    let contextual: Vec<&String> =
        strategies.iter().zip(&details).filter(|(s, _)| *s == "contextual").map(|(_, d)| d).collect();
    if strategies.iter().any(|s| s == "paraphrase") {
        assert!(!contextual.is_empty(), "a contextual call per query, like paraphrase: {strategies:?}");
    }
    assert!(contextual.iter().all(|d| d.starts_with("marked: ")), "{contextual:?}");
    let models = string_column(&v, "model");
    assert!(models.iter().all(|m| m == llama::MODEL), "{models:?}");
    assert!(string_column(&v, "template_hash").iter().all(|h| h.len() == 16));
    let (_, batches) = read_parquet(&v);
    for b in &batches {
        use arrow::array::{Array, AsArray};
        let acc = b.column_by_name("accepted").unwrap().as_boolean();
        let reason = b.column_by_name("reason").unwrap().as_string::<i32>();
        let raw = b.column_by_name("raw_answer").unwrap().as_string::<i32>();
        for i in 0..b.num_rows() {
            assert_eq!(acc.value(i), reason.is_null(i), "row {i}: accepted iff no reason");
            if !reason.is_null(i) && reason.value(i) == "unparseable-answer" {
                assert!(!raw.is_null(i) && !raw.value(i).is_empty(), "unparseable answers keep the raw text");
            }
        }
    }
    let accepted: f64 = report["filter"].as_object().unwrap().values().map(|s| s["accepted"].as_f64().unwrap()).sum();
    if accepted > 0.0 {
        assert!(parquet_rows(&out.join("triplet.parquet")) > 0, "accepted queries are mined");
    }
    let triplets = std::fs::read(out.join("triplet.parquet")).unwrap();
    let variants = std::fs::read(&v).unwrap();

    // Second run, same workspace: every answer comes from the workspace; same outputs.
    let before = requests_seen(server);
    run_config(&cfg, &[]).assert_ok();
    let report2 = read_json(&out.join("report.json"));
    assert_eq!(num_at(&report2, "/llm/sent"), 0.0, "{}", report2["llm"]);
    assert_eq!(num_at(&report2, "/llm/cached"), num_at(&report2, "/llm/planned"));
    assert_eq!(requests_seen(server), before, "the server saw no request on the rerun");
    assert_eq!(std::fs::read(out.join("triplet.parquet")).unwrap(), triplets);
    assert_eq!(std::fs::read(&v).unwrap(), variants);
}

#[test]
fn a_run_killed_mid_generation_is_finished_without_paying_twice() {
    require_models();
    let Some(server) = llama::LlamaServer::shared() else { return llama::skipped("killed_mid_generation") };
    let t = tmpdir();
    let cfg = config(t.path(), server, "\"synthetic\"", 12);
    let ws = t.path().join("out/workspace");

    // Start, wait until a few answers are stored, kill -9.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tripletgen"))
        .args(["-q", "run", "--config"])
        .arg(&cfg)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let stored_before_kill = loop {
        std::thread::sleep(Duration::from_millis(200));
        let n = if ws.join("tripletgen.sqlite").is_file() {
            tripletgen::workspace::Store::open(&ws).and_then(|s| s.count_llm()).unwrap_or(0)
        } else {
            0
        };
        if n >= 3 {
            child.kill().unwrap();
            child.wait().unwrap();
            break n;
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        assert!(start.elapsed() < Duration::from_secs(300), "no answer stored after 5 minutes");
    };
    assert!(!t.path().join("out/triplet.parquet").exists(), "no output from the killed run");

    // The rerun sends only what is missing.
    run_config(&cfg, &[]).assert_ok();
    let report = read_json(&t.path().join("out/report.json"));
    let planned = num_at(&report, "/llm/planned");
    let cached = num_at(&report, "/llm/cached");
    let sent = num_at(&report, "/llm/sent");
    assert_eq!(planned, 12.0, "{}", report["llm"]);
    assert!(cached >= stored_before_kill as f64, "{cached} cached, {stored_before_kill} stored before the kill");
    assert_eq!(cached + sent, planned, "{}", report["llm"]);
}

#[test]
fn a_refresh_asks_the_llm_only_for_added_and_edited_documents() {
    require_models();
    let Some(own) = llama::LlamaServer::start() else { return llama::skipped("refresh_asks_only_for_changes") };
    let server = &own;
    let t = tmpdir();
    let corpus = t.path().join("corpus.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(fixture("quickstart/corpus.jsonl"))
        .unwrap()
        .lines()
        .take(6)
        .map(String::from)
        .collect();
    std::fs::write(&corpus, lines.join("\n") + "\n").unwrap();
    let cfg = config_for(t.path(), &corpus, server, "\"synthetic\"", 100);
    let out = t.path().join("out");

    let before = requests_seen(server);
    run_config(&cfg, &[]).assert_ok();
    let first = read_json(&out.join("report.json"));
    assert_eq!(num_at(&first, "/llm/sent"), 6.0, "one synthetic call per document: {}", first["llm"]);
    assert_eq!(requests_seen(server) - before, 6);

    // Delete document 0, edit document 1, add one: two new calls, four from the workspace.
    let id = |l: &str| serde_json::from_str::<serde_json::Value>(l).unwrap()["_id"].as_str().unwrap().to_string();
    let (deleted, edited) = (id(&lines[0]), id(&lines[1]));
    let mut v: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    v["text"] = format!("{} It was revised.", v["text"].as_str().unwrap()).into();
    let mut new_lines = vec![v.to_string()];
    new_lines.extend(lines[2..].iter().cloned());
    new_lines.push(serde_json::json!({"_id": "added-1", "title": "Tides", "text": "Tides rise and fall twice a day because of the Moon's gravity."}).to_string());
    std::fs::write(&corpus, new_lines.join("\n") + "\n").unwrap();

    let before = requests_seen(server);
    run_config(&cfg, &[]).assert_ok();
    let r = read_json(&out.join("report.json"));
    assert_eq!((num_at(&r, "/llm/sent"), num_at(&r, "/llm/cached")), (2.0, 4.0), "{}", r["llm"]);
    assert_eq!(requests_seen(server) - before, 2, "the server saw only the edited and the added document's calls");
    let docs = &r["changes"]["documents"];
    assert_eq!(
        (docs["added"].as_u64(), docs["changed"].as_u64(), docs["deleted"].as_u64()),
        (Some(1), Some(1), Some(1)),
        "{docs}"
    );

    // Queries generated from the deleted document are gone; the edited one's come from its new text.
    let variants = read_variants(&out);
    assert!(variants.values().all(|v| v.source_id != deleted), "a query of the deleted document survived");
    let synthetic: Vec<&String> = variants.values().map(|v| &v.source_id).collect();
    assert!(synthetic.contains(&&edited) && synthetic.contains(&&"added-1".to_string()), "{synthetic:?}");
}
