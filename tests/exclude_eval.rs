//! The contamination guard end to end: `--exclude-eval DIR` on the quickstart fixture with a small
//! evaluation set that repeats one training query (other case and punctuation), rewords another, and
//! judges copies of three corpus documents relevant.

mod common;
use common::*;
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;

fn eval_set(dir: &Path) {
    let corpus = read_corpus(&fixture("quickstart/corpus.jsonl"));
    let copy = |id: &str| {
        let d = &corpus[id];
        serde_json::json!({"_id": format!("ev-{id}"), "title": d.title, "text": d.text}).to_string()
    };
    write(dir, "corpus.jsonl", &format!("{}\n{}\n{}\n", copy("astro-004"), copy("astro-001"), copy("astro-002")));
    write(
        dir,
        "queries.jsonl",
        concat!(
            "{\"_id\": \"e1\", \"text\": \"Why does Mars look RED?\"}\n",
            "{\"_id\": \"e2\", \"text\": \"what is the tallest volcano in our solar system\"}\n",
            "{\"_id\": \"e3\", \"text\": \"how do bees make honey\"}\n",
        ),
    );
    write(
        dir,
        "qrels/test.tsv",
        "query-id\tcorpus-id\tscore\ne1\tev-astro-004\t1\ne2\tev-astro-002\t1\ne3\tev-astro-001\t1\n",
    );
}

fn ids(out: &Path) -> (HashSet<String>, HashSet<String>) {
    let mut queries = HashSet::new();
    let mut docs = HashSet::new();
    for l in read_jsonl(&out.join("tevatron.jsonl")) {
        queries.insert(l["query_id"].as_str().unwrap().to_string());
        for key in ["positive_passages", "negative_passages"] {
            for p in l[key].as_array().unwrap() {
                docs.insert(p["docid"].as_str().unwrap().to_string());
            }
        }
    }
    (queries, docs)
}

#[test]
fn evaluation_queries_and_documents_stay_out_of_the_training_data() {
    require_models();
    let t = tmpdir();
    let eval = t.path().join("eval");
    eval_set(&eval);
    let cfg = write(
        t.path(),
        "c.toml",
        &format!(
            "workspace = {}\n[input]\nbeir = {}\n[exclude_eval]\nmax_cosine = 0.85\n[output]\ndir = {}\nformats = [\"tevatron\", \"beir\"]\n",
            tp(&t.path().join("ws")),
            tp(&fixture("quickstart")),
            tp(&t.path().join("out"))
        ),
    );
    // Without the guard (same workspace: the second run embeds only the evaluation queries).
    let plain = t.path().join("plain.toml");
    std::fs::write(&plain, std::fs::read_to_string(&cfg).unwrap().replace("/out'", "/plain'")).unwrap();
    run_config(&plain, &[]).assert_ok();
    let (q_plain, d_plain) = ids(&t.path().join("plain"));
    assert!(q_plain.contains("q001") && q_plain.contains("q002"), "{q_plain:?}");
    assert!(
        d_plain.contains("astro-004") && d_plain.contains("astro-001"),
        "the held-out documents are used without the guard"
    );

    let o = run_config(&cfg, &["--exclude-eval", eval.to_str().unwrap()]);
    o.assert_ok();
    let out = t.path().join("out");
    let report = read_json(&out.join("report.json"));
    let x = &report["exclude_eval"];
    assert_eq!(x["eval_queries"], 3, "{x}");
    assert_eq!(x["queries_same_text"], 1, "{x}");
    assert!(x["queries_near"].as_u64().unwrap() >= 1, "the reworded query: {x}");
    assert_eq!(x["documents_held_out"], 3, "{x}");
    let examples = x["examples"].as_array().unwrap();
    assert_eq!(examples[0]["query_id"], "q001");
    assert_eq!(examples[0]["eval_query_id"], "e1");
    assert!(o.stderr.contains("exclude  1 eval set(s)"), "{}", o.stderr);

    let (queries, docs) = ids(&out);
    assert!(!queries.contains("q001") && !queries.contains("q002"), "matching training queries are not mined");
    for held in ["astro-004", "astro-001", "astro-002"] {
        assert!(!docs.contains(held), "{held} is an evaluation document but appears in tevatron.jsonl");
    }
    assert!(num_at(&report, "/mine/removed/eval_document") > 0.0, "mining skipped held-out candidates");
    let removed = x["queries_same_text"].as_u64().unwrap() + x["queries_near"].as_u64().unwrap();
    assert_eq!(
        q_plain.len() - queries.len(),
        removed as usize + x["queries_without_positives"].as_u64().unwrap() as usize
    );
    let beir: Vec<Value> = read_jsonl(&out.join("beir/queries.jsonl"));
    assert!(beir.iter().all(|q| q["_id"] != "q001"), "removed queries are left out of the BEIR folder");
    let qrels = std::fs::read_to_string(out.join("beir/qrels/train.tsv")).unwrap();
    assert!(
        !qrels.contains("\tastro-004\t") && !qrels.contains("\tastro-001\t"),
        "held-out documents are no positives"
    );

    // A folder that is not a BEIR set is a configuration error naming the key.
    let o = run_config(&cfg, &["--exclude-eval", t.path().to_str().unwrap()]);
    o.assert_code(2).assert_stderr_has(&["exclude_eval.dirs", "corpus.jsonl"]);
}
