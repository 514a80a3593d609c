//! Refreshing after the corpus changed: a rerun on an edited corpus with the same workspace embeds
//! only the added and changed documents, updates the saved HNSW graph instead of rebuilding it, and
//! writes what a full run on the new corpus writes (byte for byte with exact search; the same rows
//! with HNSW, whose graph depends on insertion order).

mod common;
#[path = "common/fake_llm.rs"]
mod fake_llm;

use common::*;
use serde_json::Value;
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

/// Documents of the fixture that no qrel points to (safe to delete without breaking qrels).
fn unreferenced_docs() -> Vec<String> {
    let qrels = read_qrels(&fixture("quickstart/qrels/test.tsv"));
    let referenced: HashSet<&String> = qrels.values().flatten().collect();
    let corpus = std::fs::read_to_string(fixture("quickstart/corpus.jsonl")).unwrap();
    corpus
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["_id"].as_str().unwrap().to_string())
        .filter(|id| !referenced.contains(id))
        .collect()
}

/// A copy of the quickstart BEIR folder.
fn beir_copy(dir: &Path) -> PathBuf {
    let b = dir.join("beir");
    copy_dir(&fixture("quickstart"), &b);
    b
}

/// The edit between the runs: delete 2 unreferenced documents, edit 3 (one of them a positive),
/// add 4. Returns (deleted ids, old texts of the edited documents).
fn edit_corpus(beir: &Path) -> (Vec<String>, Vec<String>) {
    let path = beir.join("corpus.jsonl");
    let qrels = read_qrels(&beir.join("qrels/test.tsv"));
    let positive = qrels.values().flatten().min().unwrap().clone();
    let free = unreferenced_docs();
    let deleted = vec![free[0].clone(), free[1].clone()];
    let edited: HashSet<String> = [positive, free[2].clone(), free[3].clone()].into();
    let mut old_texts = Vec::new();
    let mut out = String::new();
    for line in std::fs::read_to_string(&path).unwrap().lines() {
        let mut v: Value = serde_json::from_str(line).unwrap();
        let id = v["_id"].as_str().unwrap().to_string();
        if deleted.contains(&id) {
            continue;
        }
        if edited.contains(&id) {
            let text = v["text"].as_str().unwrap().to_string();
            old_texts.push(text.clone());
            v["text"] = Value::from(format!("{text} This passage was revised in the second edition."));
        }
        out.push_str(&v.to_string());
        out.push('\n');
    }
    for (i, t) in [
        "Saturn's rings are made mostly of water ice, with particles from grains to house-sized blocks.",
        "Sourdough bread rises thanks to wild yeast and lactic acid bacteria in the starter.",
        "The Rosetta Stone carries the same decree in hieroglyphic, Demotic and ancient Greek scripts.",
        "A heat pump moves heat from a cold place to a warm one using a refrigerant cycle.",
    ]
    .iter()
    .enumerate()
    {
        out.push_str(&serde_json::json!({"_id": format!("new-{i}"), "title": "", "text": t}).to_string());
        out.push('\n');
    }
    std::fs::write(&path, out).unwrap();
    (deleted, old_texts)
}

fn config(dir: &Path, name: &str, beir: &Path, workspace: &Path, index: &str) -> PathBuf {
    write(
        dir,
        &format!("{name}.toml"),
        &format!(
            "workspace = {}\n\n[input]\nbeir = {}\n\n[index]\n{index}\n\n[output]\ndir = {}\nformats = [\"triplet\", \"n-tuple\", \"flag-jsonl\"]\n",
            tp(workspace),
            tp(beir),
            tp(&dir.join(name))
        ),
    )
}

const DATA_FILES: &[&str] =
    &["triplet.parquet", "triplet.provenance.parquet", "n-tuple.parquet", "n-tuple.provenance.parquet", "flag.jsonl"];

/// Every (query, positive, negative) text triple of a run's flag.jsonl.
fn triples(out: &Path) -> BTreeSet<(String, String, String)> {
    let mut set = BTreeSet::new();
    for row in read_jsonl(&out.join("flag.jsonl")) {
        let q = row["query"].as_str().unwrap().to_string();
        for p in strs(&row["pos"]) {
            for n in strs(&row["neg"]) {
                set.insert((q.clone(), p.clone(), n));
            }
        }
    }
    set
}

#[test]
fn a_refresh_embeds_only_what_changed_and_equals_a_full_run_on_the_new_corpus() {
    require_models();
    let t = tmpdir();
    let beir = beir_copy(t.path());
    let ws = t.path().join("ws");
    run_config(&config(t.path(), "first", &beir, &ws, "kind = \"exact\""), &[]).assert_ok();

    let (deleted, old_texts) = edit_corpus(&beir);
    run_config(&config(t.path(), "refresh", &beir, &ws, "kind = \"exact\""), &[]).assert_ok();
    let r = read_json(&t.path().join("refresh/report.json"));
    let docs = &r["changes"]["documents"];
    assert_eq!(
        (docs["added"].as_u64(), docs["changed"].as_u64(), docs["deleted"].as_u64()),
        (Some(4), Some(3), Some(2)),
        "{docs}"
    );
    assert_eq!(
        num_at(&r, "/embed_documents/embedded"),
        7.0,
        "only added and changed documents are embedded: {}",
        r["embed_documents"]
    );
    assert_eq!(num_at(&r, "/embed_queries/embedded"), 0.0, "the queries did not change");

    // No row references a deleted document or the old text of an edited one.
    for row in read_jsonl(&t.path().join("refresh/flag.jsonl")) {
        for text in strs(&row["pos"]).iter().chain(&strs(&row["neg"])) {
            assert!(!old_texts.iter().any(|old| text.ends_with(old.as_str())), "an old document text survived: {text}");
        }
    }
    for p in read_provenance(&t.path().join("refresh/triplet.provenance.parquet")) {
        let ids = std::iter::once(&p.positive_id).chain(&p.negative_ids);
        assert!(
            ids.clone().all(|id| !deleted.contains(id)),
            "a row of query {} references a deleted document",
            p.query_id
        );
    }

    // The workspace records each input's hash and what was produced from it.
    let store = tripletgen::workspace::Store::open(&ws).unwrap();
    let docs = store.snapshot("document").unwrap();
    assert_eq!(docs.len(), 310 - 2 + 4);
    assert!(docs.iter().all(|d| !deleted.contains(&d.id)));
    let triplet_rows = parquet_rows(&t.path().join("refresh/triplet.parquet"));
    assert_eq!(
        docs.iter().map(|d| d.negatives).sum::<usize>(),
        triplet_rows,
        "one triplet row per (query, negative) use"
    );
    let queries = store.snapshot("query").unwrap();
    assert_eq!(queries.iter().map(|q| q.negatives).sum::<usize>(), triplet_rows);

    // A full run on the new corpus in a fresh workspace writes the same files, byte for byte.
    run_config(&config(t.path(), "full", &beir, &t.path().join("ws-full"), "kind = \"exact\""), &[]).assert_ok();
    let diff = differing_files(&t.path().join("refresh"), &t.path().join("full"), DATA_FILES);
    assert!(diff.is_empty(), "refresh and full run differ in {diff:?}");
}

#[test]
fn a_refresh_updates_the_saved_hnsw_graph_and_rebuilds_past_the_share() {
    require_models();
    let t = tmpdir();
    let beir = beir_copy(t.path());
    let ws = t.path().join("ws");
    let hnsw = "kind = \"hnsw\"\nrebuild_share = 0.2";
    run_config(&config(t.path(), "first", &beir, &ws, hnsw), &[]).assert_ok();
    let r = read_json(&t.path().join("first/report.json"));
    assert_eq!(r["index"]["graph"]["mode"], "built", "{}", r["index"]);
    let graph_file = ws.join("index/hnsw.bin");
    assert!(graph_file.is_file(), "the graph is saved in the workspace");

    edit_corpus(&beir);
    run_config(&config(t.path(), "refresh", &beir, &ws, hnsw), &[]).assert_ok();
    let r = read_json(&t.path().join("refresh/report.json"));
    let g = &r["index"]["graph"];
    assert_eq!(g["mode"], "updated", "{g}");
    assert_eq!(
        (g["inserted"].as_u64(), g["dead"].as_u64()),
        (Some(7), Some(5)),
        "4 added + 3 edited inserted; 2 deleted + 3 old versions dead: {g}"
    );
    assert_eq!(g["reused"].as_u64(), Some(310 - 2 - 3), "{g}");

    run_config(&config(t.path(), "full", &beir, &t.path().join("ws-full"), hnsw), &[]).assert_ok();
    let (refreshed, full) = (triples(&t.path().join("refresh")), triples(&t.path().join("full")));
    assert!(!full.is_empty());
    assert_eq!(refreshed, full, "the refreshed graph mines the same triplets as a graph built from scratch");

    // Another mining setting reuses everything before mining: no embedding, the graph as saved.
    let fewer = "kind = \"hnsw\"\nrebuild_share = 0.2\n\n[mine]\nnum_negatives = 2";
    run_config(&config(t.path(), "fewer", &beir, &ws, fewer), &[]).assert_ok();
    let r = read_json(&t.path().join("fewer/report.json"));
    assert_eq!(
        (r["index"]["graph"]["mode"].as_str(), r["index"]["graph"]["inserted"].as_u64()),
        (Some("updated"), Some(0)),
        "{}",
        r["index"]
    );
    assert_eq!(num_at(&r, "/embed_documents/embedded") + num_at(&r, "/embed_queries/embedded"), 0.0);
    let cols = parquet_column_names(&t.path().join("fewer/n-tuple.parquet"));
    assert_eq!(cols, ["anchor", "positive", "negative_1", "negative_2"], "the new mining setting took effect");

    // Past the share: deleting a quarter of the (unreferenced) documents rebuilds the graph.
    let free: HashSet<String> = unreferenced_docs().into_iter().take(80).collect();
    let path = beir.join("corpus.jsonl");
    let kept: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|l| !free.contains(serde_json::from_str::<Value>(l).unwrap()["_id"].as_str().unwrap()))
        .map(String::from)
        .collect();
    std::fs::write(&path, kept.join("\n") + "\n").unwrap();
    run_config(&config(t.path(), "big-change", &beir, &ws, hnsw), &[]).assert_ok();
    let r = read_json(&t.path().join("big-change/report.json"));
    assert_eq!(r["index"]["graph"]["mode"], "rebuilt", "{}", r["index"]);

    // Another M invalidates the saved graph (and only the graph: no document is embedded again).
    run_config(&config(t.path(), "other-m", &beir, &ws, "kind = \"hnsw\"\nm = 8"), &[]).assert_ok();
    let r = read_json(&t.path().join("other-m/report.json"));
    assert_eq!(r["index"]["graph"]["mode"], "rebuilt", "{}", r["index"]);
    assert_eq!(num_at(&r, "/embed_documents/embedded"), 0.0);
}

/// Run `cfg`; returns (requests the server received during the run, the run's report).
fn run_counted(server: &fake_llm::FakeLlm, cfg: &Path, out: &Path) -> (usize, Value) {
    let before = server.count();
    run_config(cfg, &[]).assert_ok();
    (server.count() - before, read_json(&out.join("report.json")))
}

#[test]
fn a_setting_change_redoes_only_what_depends_on_it() {
    require_models();
    let server = fake_llm::FakeLlm::start(fake_llm::echo);
    let t = tmpdir();
    let corpus = corpus_subset(t.path(), 12);
    let out = t.path().join("out");
    let cfg = server.pipeline_config(t.path(), &corpus, "", "");
    let base = std::fs::read_to_string(&cfg).unwrap();
    let embedded = |r: &Value| num_at(r, "/embed_documents/embedded") + num_at(r, "/embed_queries/embedded");

    let (first, r) = run_counted(&server, &cfg, &out);
    assert!(first > 6, "synthetic and paraphrase calls: {}", r["llm"]);
    let synthetic_calls = 6; // one call per document, max_documents = 6

    // The same settings: nothing is sent or embedded again.
    let (n, r) = run_counted(&server, &cfg, &out);
    assert_eq!((n, embedded(&r)), (0, 0.0), "{}", r["llm"]);

    // Another synthetic prompt template: the synthetic calls again (their answers are the same here,
    // so the paraphrases of the synthetic queries come from the workspace); no document is embedded.
    let prompts = t.path().join("prompts");
    copy_dir(&repo().join("configs/prompts"), &prompts);
    let synth = prompts.join("synthetic.txt");
    std::fs::write(&synth, std::fs::read_to_string(&synth).unwrap() + "\nWrite natural queries.\n").unwrap();
    let with_prompts = base.replace(
        "paraphrases_per_query = 1\n",
        &format!("paraphrases_per_query = 1\nprompts_dir = {}\n", tp(&prompts)),
    );
    assert_ne!(with_prompts, base);
    std::fs::write(&cfg, &with_prompts).unwrap();
    let (n, r) = run_counted(&server, &cfg, &out);
    assert_eq!(n, synthetic_calls, "only the synthetic calls are sent again: {}", r["llm"]);
    assert_eq!(num_at(&r, "/embed_documents/embedded"), 0.0);

    // Another mining setting: no request, no embedding, the saved graph as it was.
    std::fs::write(&cfg, format!("[mine]\nnum_negatives = 2\n\n{with_prompts}")).unwrap();
    let (n, r) = run_counted(&server, &cfg, &out);
    assert_eq!((n, embedded(&r)), (0, 0.0), "{}", r["llm"]);
    assert_eq!(r["index"]["graph"]["inserted"].as_u64(), Some(0), "{}", r["index"]);

    // Another LLM model: every call again, still no document embedded.
    let other_model = server.pipeline_config(t.path(), &corpus, "", "model = \"fake-2\"");
    std::fs::write(&cfg, std::fs::read_to_string(&other_model).unwrap()).unwrap();
    let (n, r) = run_counted(&server, &cfg, &out);
    assert_eq!(n, first, "{}", r["llm"]);
    assert_eq!(num_at(&r, "/embed_documents/embedded"), 0.0);
}
