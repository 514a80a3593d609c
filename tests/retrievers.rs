//! `mine.retrievers = ["dense", "bm25"]` end to end on the quickstart fixture: provenance says which
//! retriever found each negative, the BM25 index in the workspace is refreshed incrementally and gives
//! the same bytes as a fresh build, and the outputs pass the consumers' checks.

mod common;
use arrow::array::{Array, AsArray};
use arrow::datatypes::UInt32Type;
use common::*;
use std::path::Path;

fn config(dir: &Path, name: &str, beir: &Path, workspace: &str, mine: &str) -> std::path::PathBuf {
    write(
        dir,
        &format!("{name}.toml"),
        &format!(
            "workspace = {}\n[input]\nbeir = {}\n[mine]\n{mine}\n[output]\ndir = {}\nformats = [\"triplet\", \"n-tuple\", \"labeled-pair\", \"labeled-list\", \"flag-jsonl\", \"tevatron\", \"beir\"]\n",
            tp(&dir.join(workspace)),
            tp(beir),
            tp(&dir.join(name))
        ),
    )
}

fn bytes(out: &Path) -> Vec<u8> {
    let mut v = std::fs::read(out.join("triplet.parquet")).unwrap();
    v.extend(std::fs::read(out.join("triplet.provenance.parquet")).unwrap());
    v
}

#[test]
fn bm25_candidates_are_fused_recorded_and_refreshed_incrementally() {
    require_models();
    let t = tmpdir();
    let hybrid = "retrievers = [\"dense\", \"bm25\"]";
    let cfg = config(t.path(), "hybrid", &fixture("quickstart"), "ws", hybrid);
    let o = run_config(&cfg, &[]);
    o.assert_ok();
    assert!(o.stderr.contains("negatives found by:") && o.stderr.contains("bm25 index: 310 texts"), "{}", o.stderr);
    let out = t.path().join("hybrid");
    let report = read_json(&out.join("report.json"));
    let by = &report["mine"]["negatives_by_retriever"];
    assert!(by["bm25"].as_u64().unwrap() > 0, "BM25 adds negatives dense search did not find: {by}");
    assert!(by["dense+bm25"].as_u64().unwrap() > 0, "{by}");

    // Provenance: the retrievers and each one's rank, consistent with each other.
    let (_, batches) = read_parquet(&out.join("triplet.provenance.parquet"));
    let mut rows = 0;
    for b in &batches {
        let col = |name: &str| b.column_by_name(name).unwrap_or_else(|| panic!("no {name}")).as_list::<i32>().clone();
        let (found, dense, bm25) =
            (col("negative_retrievers"), col("negative_dense_ranks"), col("negative_bm25_ranks"));
        for r in 0..b.num_rows() {
            let f = found.value(r);
            let f = f.as_string::<i32>();
            let d = dense.value(r);
            let d = d.as_primitive::<UInt32Type>();
            let m = bm25.value(r);
            let m = m.as_primitive::<UInt32Type>();
            for i in 0..f.len() {
                let expected = match (d.is_valid(i), m.is_valid(i)) {
                    (true, true) => "dense+bm25",
                    (false, true) => "bm25",
                    (true, false) => "dense",
                    (false, false) => panic!("row {r}: a negative no retriever found"),
                };
                assert_eq!(f.value(i), expected, "row {r}");
                rows += 1;
            }
        }
    }
    assert!(rows > 0);
    if let Some(py) = std::env::var_os("TRIPLETGEN_TEST_PYTHON") {
        let o = run(assert_cmd::Command::new(py).arg(repo().join("tests/python/check_outputs.py")).args([
            "--out",
            out.to_str().unwrap(),
            "--fixture",
            fixture("quickstart").to_str().unwrap(),
        ]));
        assert_eq!(o.code, Some(0), "{}\n{}", o.stdout, o.stderr);
    }

    // Same input, reused index: same bytes; a fresh workspace: same bytes.
    let first = bytes(&out);
    run_config(&cfg, &[]).assert_ok();
    assert!(bytes(&out) == first, "rerun with the saved BM25 index");
    let fresh = config(t.path(), "fresh", &fixture("quickstart"), "ws-fresh", hybrid);
    run_config(&fresh, &[]).assert_ok();
    assert!(bytes(&t.path().join("fresh")) == first, "fresh BM25 index");

    // Drop five documents: the saved index deletes them and matches a fresh build of the new corpus.
    let changed = t.path().join("changed");
    copy_dir(&fixture("quickstart"), &changed);
    let corpus = std::fs::read_to_string(changed.join("corpus.jsonl")).unwrap();
    let kept: Vec<&str> =
        corpus.lines().filter(|l| !["cook-01", "garden-02"].iter().any(|p| l.contains(&format!("\"{p}")))).collect();
    let dropped = corpus.lines().count() - kept.len();
    assert!(dropped > 0);
    std::fs::write(changed.join("corpus.jsonl"), kept.join("\n") + "\n").unwrap();
    let qrels = std::fs::read_to_string(changed.join("qrels/test.tsv")).unwrap();
    let ids: std::collections::HashSet<String> = kept
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["_id"].as_str().unwrap().to_string())
        .collect();
    let qrels: Vec<&str> = qrels
        .lines()
        .filter(|l| l.starts_with("query-id") || l.split('\t').nth(1).is_some_and(|d| ids.contains(d)))
        .collect();
    std::fs::write(changed.join("qrels/test.tsv"), qrels.join("\n") + "\n").unwrap();
    let updated = config(t.path(), "updated", &changed, "ws", hybrid);
    run_config(&updated, &[]).assert_ok();
    let b = &read_json(&t.path().join("updated/report.json"))["mine"]["bm25"];
    assert_eq!((b["added"].as_u64(), b["deleted"].as_u64()), (Some(0), Some(dropped as u64)), "{b}");
    let rebuilt = config(t.path(), "rebuilt", &changed, "ws-rebuilt", hybrid);
    run_config(&rebuilt, &[]).assert_ok();
    assert!(bytes(&t.path().join("updated")) == bytes(&t.path().join("rebuilt")), "refreshed = rebuilt");

    // BM25 alone, interleaved fusion, and a bad list.
    let alone = config(t.path(), "alone", &fixture("quickstart"), "ws", "retrievers = [\"bm25\"]");
    run_config(&alone, &[]).assert_ok();
    let by = &read_json(&t.path().join("alone/report.json"))["mine"]["negatives_by_retriever"];
    assert!(by.get("dense").is_none() && by["bm25"].as_u64().unwrap() > 0, "{by}");
    let il = config(t.path(), "il", &fixture("quickstart"), "ws", &format!("{hybrid}\nfusion = \"interleave\""));
    run_config(&il, &[]).assert_ok();
    let bad = config(t.path(), "bad", &fixture("quickstart"), "ws", "retrievers = [\"bm25\", \"bm25\"]");
    run_config(&bad, &[]).assert_code(2).assert_stderr_has(&["mine.retrievers"]);
}
