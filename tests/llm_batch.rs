//! `llm.mode = "batch"` against a server speaking the OpenAI Batch API's shapes (files, batches,
//! polling, output and error files): the same outputs as online calls, cost at batch prices, no call
//! paid twice across a rerun or a kill while a job is in flight, and jobs that fail, expire, are
//! cancelled or fail one request.

mod common;
#[path = "common/fake_batch.rs"]
mod fake_batch;
#[path = "common/fake_llm.rs"]
mod fake_llm;

use common::*;
use fake_batch::{End, FakeBatch};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

const BATCH: &str =
    "mode = \"batch\"\nbatch_poll_secs = 0.02\nprice_per_million_input = 1.0\nprice_per_million_output = 2.0";

/// Run the pipeline; `kill_at` dies at that checkpoint. Returns (success, killed, stderr).
fn run_pipeline(cfg: &Path, kill_at: Option<&str>) -> (bool, bool, String) {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tripletgen"));
    c.args(["run", "--config"]).arg(cfg).env_remove("TRIPLETGEN_LOG").env_remove("RUST_LOG");
    if let Some(k) = kill_at {
        c.env("TRIPLETGEN_KILL_AT", k);
    }
    let o = c.output().unwrap();
    (o.status.success(), o.status.signal().is_some(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// The data files of an output folder (report and manifest hold timings), by name.
fn data_files(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet" || x == "jsonl"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    assert!(v.len() >= 4, "{v:?}");
    v
}

/// The online reference run: its output folder and the number of LLM calls it made.
fn reference(base: &Path, corpus: &Path) -> (PathBuf, usize) {
    let server = fake_llm::FakeLlm::start(fake_llm::echo);
    let cfg = server.pipeline_config(&base.join("online"), corpus, "", "");
    let (ok, _, err) = run_pipeline(&cfg, None);
    assert!(ok, "{err}");
    (base.join("online/out"), server.count())
}

#[test]
fn batch_mode_matches_online_costs_half_and_never_pays_twice() {
    require_models();
    let base = tmpdir();
    let corpus = corpus_subset(base.path(), 20);
    let (online, calls) = reference(base.path(), &corpus);

    let fb = FakeBatch::start();
    let dir = base.path().join("batch");
    let cfg = fb.server.pipeline_config(&dir, &corpus, "", BATCH);
    let (ok, _, err) = run_pipeline(&cfg, None);
    assert!(ok, "{err}");
    assert_eq!(data_files(&dir.join("out")), data_files(&online), "batch answers changed the outputs");
    // Two rounds (synthetic queries, then their paraphrases): two files, two jobs, each call once.
    assert_eq!(fb.counts(), (2, calls, 2));
    let r = read_json(&dir.join("out/report.json"));
    let (p, c) = (num_at(&r, "/llm/prompt_tokens"), num_at(&r, "/llm/completion_tokens"));
    let cost = num_at(&r, "/llm/cost");
    assert!((cost - 0.5 * (p + 2.0 * c) / 1e6).abs() < 1e-12, "batch prices: {cost} for {p} + {c} tokens");
    // A rerun finds every answer in the workspace: nothing uploaded, nothing created.
    let (ok, _, err) = run_pipeline(&cfg, None);
    assert!(ok, "{err}");
    assert_eq!(fb.counts(), (2, calls, 2));

    // Killed after the upload, after the create answered (not yet recorded), after it was recorded:
    // the rerun finishes the job it has (adopting the unrecorded one), sends no call twice and
    // writes the same outputs.
    for point in ["batch-uploaded:1", "batch-create-answered:1", "batch-created:1", "batch-created:2"] {
        let fb = FakeBatch::start();
        let dir = base.path().join(point.replace(':', "-"));
        let cfg = fb.server.pipeline_config(&dir, &corpus, "", BATCH);
        let (_, killed, err) = run_pipeline(&cfg, Some(point));
        assert!(killed, "{point}: not killed: {err}");
        let (ok, _, err) = run_pipeline(&cfg, None);
        assert!(ok, "{point}: {err}");
        let (uploads, lines, created) = fb.counts();
        assert_eq!((uploads, lines, created), (2, calls, 2), "{point}: a call was sent twice");
        assert_eq!(data_files(&dir.join("out")), data_files(&online), "{point}");
    }
}

#[test]
fn jobs_that_fail_expire_or_are_cancelled_lose_nothing_they_answered() {
    require_models();
    let base = tmpdir();
    let corpus = corpus_subset(base.path(), 20);
    let (online, calls) = reference(base.path(), &corpus);

    // A job that fails as a whole: the run stops with the job's error; a rerun (the server fixed)
    // sends the calls again and finishes.
    let fb = FakeBatch::start();
    fb.end_with(End::Failed);
    let dir = base.path().join("failed");
    let cfg = fb.server.pipeline_config(&dir, &corpus, "", BATCH);
    let (ok, _, err) = run_pipeline(&cfg, None);
    assert!(!ok);
    assert!(err.contains("batch job batch_0 failed") && err.contains("invalid_json_line"), "{err}");
    fb.end_with(End::Completed);
    let (ok, _, err) = run_pipeline(&cfg, None);
    assert!(ok, "{err}");
    assert_eq!(data_files(&dir.join("out")), data_files(&online));

    // Expired or cancelled after 4 answers, or one request failing inside the job: the answers that
    // came back are stored (the rerun does not send them again), the rest are counted as failed
    // and sent again by the rerun. (A higher concurrency raises the "calls failing in a row" that
    // stop a run, max(4, 2 x concurrency), above what these jobs lose.)
    for end in [End::Expired(4), End::Cancelled(4), End::OneError(1)] {
        let fb = FakeBatch::start();
        fb.end_with(end);
        let dir = base.path().join(format!("{end:?}").replace(['(', ')'], ""));
        let cfg = fb.server.pipeline_config(&dir, &corpus, "", &format!("{BATCH}\nconcurrency = 16"));
        let (ok, _, err) = run_pipeline(&cfg, None);
        assert!(ok, "{end:?}: too few failures to stop the run: {err}");
        let r = read_json(&dir.join("out/report.json"));
        let failed = num_at(&r, "/llm/failed/batch") as usize;
        assert!(failed >= 1, "{end:?}: {}", r["llm"]);
        let (_, first_lines, _) = fb.counts();
        fb.end_with(End::Completed);
        let (ok, _, err) = run_pipeline(&cfg, None);
        assert!(ok, "{end:?}: {err}");
        let (_, lines, _) = fb.counts();
        let answered_first = first_lines - failed;
        assert_eq!(lines - first_lines, calls - answered_first, "{end:?}: the rerun sent only the unanswered calls");
        assert_eq!(data_files(&dir.join("out")), data_files(&online), "{end:?}");
    }
}

#[test]
fn the_llm_judge_runs_through_batch_jobs_too() {
    require_models();
    const JUDGE: &str = "[judge]\nwindow = 1\n\n[[judge.stages]]\nkind = \"llm\"\n";
    let base = tmpdir();
    let corpus = corpus_subset(base.path(), 20);
    let server = fake_llm::FakeLlm::start(fake_llm::echo);
    let cfg = server.pipeline_config(&base.path().join("online"), &corpus, JUDGE, "");
    let (ok, _, err) = run_pipeline(&cfg, None);
    assert!(ok, "{err}");
    let online = base.path().join("online/out");
    let judged = num_at(&read_json(&online.join("report.json")), "/judge/stages/0/sent") as usize;
    assert!(judged > 0);

    let fb = FakeBatch::start();
    let dir = base.path().join("batch");
    let cfg = fb.server.pipeline_config(&dir, &corpus, JUDGE, BATCH);
    let (ok, _, err) = run_pipeline(&cfg, None);
    assert!(ok, "{err}");
    let (uploads, lines, created) = fb.counts();
    assert_eq!(lines, server.count(), "every generation and judge call once");
    assert!(uploads >= 3 && uploads == created, "generation's two rounds and the judge's: {uploads}");
    let r = read_json(&dir.join("out/report.json"));
    assert_eq!(num_at(&r, "/judge/stages/0/sent") as usize, judged);
    assert_eq!(data_files(&dir.join("out")), data_files(&online), "batch verdicts changed the outputs");
}
