//! A SIGKILLed run resumes from the embeddings it committed.

use super::*;

/// Rows in the workspace's embedding table (0 while it does not exist or is locked).
fn stored_embeddings(ws: &Path) -> i64 {
    let db = ws.join("tripletgen.sqlite");
    if !db.exists() {
        return 0;
    }
    let Ok(c) = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return 0;
    };
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
