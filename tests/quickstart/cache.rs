//! Reproducibility and the embedding cache: two fresh runs write the same bytes, a second run embeds
//! nothing and an edit re-embeds one document, two concurrent runs share one workspace.

use super::*;

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
    let diff =
        differing_files(&t.path().join("a"), &t.path().join("b"), &["triplet.parquet", "triplet.provenance.parquet"]);
    assert!(diff.is_empty(), "concurrent runs differ in {diff:?}");
    let ra = read_json(&t.path().join("a/report.json"));
    let rb = read_json(&t.path().join("b/report.json"));
    let embedded = num_at(&ra, "/embed_documents/embedded") + num_at(&rb, "/embed_documents/embedded");
    assert!(embedded >= 310.0, "documents embedded by the two runs together: {embedded}");
}
