//! Faults around a whole run (the binary, a fake OpenAI-compatible server, a real workspace): the
//! server dies mid-run (and comes back during the retries, or only after the run gave up), answers
//! arrive after the client gave up on them, the disk holding the workspace fills up, and a document
//! far longer than the model's window. Each time: a clear message, nothing lost, nothing paid twice,
//! and the same outputs as an undisturbed run.

mod common;
#[path = "common/fake_llm.rs"]
mod fake_llm;

use common::*;
use fake_llm::FakeLlm;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// Data files compared with the undisturbed run.
const DATA_FILES: &[&str] = &["triplet.parquet", "triplet.provenance.parquet", "flag.jsonl", "variants.parquet"];

/// The outputs of an undisturbed run on the 30-document subset (computed once per test process).
fn reference() -> &'static Path {
    static REF: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &REF.get_or_init(|| {
        let server = FakeLlm::start(fake_llm::echo);
        let t = tmpdir();
        let corpus = corpus_subset(t.path(), 30);
        run_config(&server.pipeline_config(t.path(), &corpus, "", ""), &[]).assert_ok();
        let out = t.path().join("out");
        (t, out)
    })
    .1
}

fn stored_answers(ws: &Path) -> i64 {
    tripletgen::workspace::Store::open(ws).and_then(|s| s.count_llm()).unwrap()
}

fn assert_same_outputs(out: &Path) {
    let differ = differing_files(reference(), out, DATA_FILES);
    assert!(differ.is_empty(), "{differ:?} differ from the undisturbed run's");
}

#[test]
fn server_dies_mid_run_and_comes_back_within_the_retries() {
    require_models();
    reference(); // before this test's server starts dying
    // The 5th request kills the server for 1.5 s; retries (up to 20, backoff with full jitter up to
    // 1 s: ~9 s expected) outlast it.
    let server =
        FakeLlm::start(
            |n, req| if n == 4 { fake_llm::die(Duration::from_millis(1500)) } else { fake_llm::echo(n, req) },
        );
    let t = tmpdir();
    let corpus = corpus_subset(t.path(), 30);
    let cfg = server.pipeline_config(
        t.path(),
        &corpus,
        "",
        "max_retries = 20\ninitial_backoff_ms = 200\nmax_backoff_ms = 1000",
    );
    run_config(&cfg, &[]).assert_ok();
    let report = read_json(&t.path().join("out/report.json"));
    let llm = &report["llm"];
    assert_eq!(llm["failed"], serde_json::json!({}), "every call succeeded after the outage: {llm}");
    assert!(num_at(&report, "/llm/attempts") > num_at(&report, "/llm/sent"), "the outage cost retries: {llm}");
    assert_eq!(stored_answers(&t.path().join("out/workspace")) as f64, num_at(&report, "/llm/planned"));
    assert_same_outputs(&t.path().join("out"));
}

#[test]
fn server_dies_for_good_the_run_stops_clearly_and_the_next_run_sends_only_what_is_missing() {
    require_models();
    // The 7th request kills the server for 60 s: longer than the run keeps trying.
    let server =
        FakeLlm::start(|n, req| if n == 6 { fake_llm::die(Duration::from_secs(60)) } else { fake_llm::echo(n, req) });
    let t = tmpdir();
    let corpus = corpus_subset(t.path(), 30);
    let cfg = server.pipeline_config(t.path(), &corpus, "", "max_retries = 1");
    let o = run_config(&cfg, &[]);
    o.assert_code(1);
    o.assert_stderr_has(&["LLM calls stopped", "calls in a row failed", "Rerun to send only those"]);
    assert!(!t.path().join("out/triplet.parquet").exists(), "no output from the stopped run");
    let stored = stored_answers(&t.path().join("out/workspace")) as usize;
    assert!(stored >= 6, "the answers before the outage were kept: {stored}");

    server.up();
    let before = server.count();
    run_config(&cfg, &[]).assert_ok();
    let report = read_json(&t.path().join("out/report.json"));
    let planned = num_at(&report, "/llm/planned") as usize;
    assert_eq!(server.count() - before, planned - stored, "the rerun sent exactly the calls not stored");
    assert_eq!(num_at(&report, "/llm/cached") as usize, stored);
    assert_same_outputs(&t.path().join("out"));
}

#[test]
fn answers_arriving_after_the_client_gave_up_are_neither_lost_nor_double_counted() {
    require_models();
    reference();
    // The first attempt of every call answers "LATE" after 2.5 s, past the 1 s timeout; the retry
    // answers at once.
    let seen = std::sync::Mutex::new(std::collections::HashSet::new());
    let server = FakeLlm::start(move |n, req| {
        if seen.lock().unwrap().insert(req.body.clone()) {
            fake_llm::completion("{\"queries\": [\"LATE late late late\"], \"paraphrases\": [\"LATE late late\"]}")
                .after(Duration::from_millis(2500))
        } else {
            fake_llm::echo(n, req)
        }
    });
    let t = tmpdir();
    let corpus = corpus_subset(t.path(), 30);
    let cfg = server.pipeline_config(t.path(), &corpus, "", "timeout_secs = 1.0\nmax_retries = 3");
    run_config(&cfg, &[]).assert_ok();
    let report = read_json(&t.path().join("out/report.json"));
    let planned = num_at(&report, "/llm/planned");
    assert_eq!(num_at(&report, "/llm/sent"), planned, "{}", report["llm"]);
    assert!(
        num_at(&report, "/llm/attempts") >= 2.0 * planned,
        "a timed-out attempt and a retry per call: {}",
        report["llm"]
    );
    assert_eq!(report["llm"]["failed"], serde_json::json!({}));
    assert_eq!(stored_answers(&t.path().join("out/workspace")) as f64, planned, "one stored answer per call");
    let texts = string_column(&t.path().join("out/variants.parquet"), "text");
    assert!(texts.iter().all(|t| !t.contains("LATE")), "a late answer was used: {texts:?}");
    assert_same_outputs(&t.path().join("out"));
}

/// A small file system for the workspace: a tmpfs when this process may mount one (root), else a
/// file size limit (RLIMIT_FSIZE, with SIGXFSZ ignored so writes fail with EFBIG) on the run.
enum SmallDisk {
    Tmpfs(PathBuf),
    FileSizeLimit(u64),
}

impl SmallDisk {
    /// A tmpfs of `bytes` on `dir`, when mounting is permitted.
    fn tmpfs(dir: &Path, bytes: u64) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then(|| SmallDisk::Tmpfs(dir.to_path_buf()))
    }

    /// Run with the limit in force.
    fn run(&self, cfg: &Path) -> Out {
        let mut c = tripletgen();
        c.arg("run").arg("--config").arg(cfg);
        if let SmallDisk::FileSizeLimit(bytes) = *self {
            use std::os::unix::process::CommandExt;
            let mut std_cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tripletgen"));
            std_cmd.arg("run").arg("--config").arg(cfg).env_remove("TRIPLETGEN_LOG").env_remove("RUST_LOG");
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                std_cmd.pre_exec(move || {
                    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    let lim = libc::rlimit { rlim_cur: bytes, rlim_max: bytes };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let o = std_cmd.output().unwrap();
            return Out {
                code: o.status.code(),
                stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            };
        }
        run(&mut c)
    }

    /// Give the disk room again.
    fn grow(&self) {
        if let SmallDisk::Tmpfs(dir) = self {
            let ok = std::process::Command::new("mount").args(["-o", "remount,size=256m"]).arg(dir).status().unwrap();
            assert!(ok.success());
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if let SmallDisk::Tmpfs(dir) = self {
            let _ = std::process::Command::new("umount").arg(dir).status();
        }
    }
}

#[test]
fn the_workspace_disk_fills_up_the_run_stops_clearly_and_the_next_run_continues() {
    let t = tmpdir();
    let ws = t.path().join("small-disk");
    match SmallDisk::tmpfs(&ws, 160 * 1024) {
        Some(disk) => disk_fills_up(&t, &ws, disk),
        None => eprintln!("skipped: mounting a tmpfs is not permitted here (the file size limit test still runs)"),
    }
}

#[test]
fn a_file_size_limit_on_the_workspace_stops_the_run_clearly_and_the_next_run_continues() {
    let t = tmpdir();
    let ws = t.path().join("workspace");
    disk_fills_up(&t, &ws, SmallDisk::FileSizeLimit(160 * 1024));
}

fn disk_fills_up(t: &tempfile::TempDir, ws: &Path, disk: SmallDisk) {
    require_models();
    reference();
    let server = FakeLlm::start(fake_llm::echo);
    let corpus = corpus_subset(t.path(), 30);
    let mode = match &disk {
        SmallDisk::Tmpfs(_) => "a 160 KiB tmpfs",
        SmallDisk::FileSizeLimit(_) => "a 160 KiB file size limit",
    };
    let cfg = server.pipeline_config(t.path(), &corpus, &format!("workspace = {}", tp(ws)), "");
    let o = disk.run(&cfg);
    o.assert_code(1);
    o.assert_stderr_has(&["tripletgen.sqlite", "no space left, or the write was refused"]);
    assert!(
        o.stderr.contains("database or disk is full") || o.stderr.contains("disk I/O error"),
        "the SQLite error is shown ({mode}):\n{}",
        o.stderr
    );
    assert!(!t.path().join("out/triplet.parquet").exists());
    eprintln!("disk full ({mode}): {}", o.stderr.lines().find(|l| l.starts_with("error")).unwrap_or_default());

    disk.grow();
    let sent_before = server.count();
    let o = run(tripletgen().arg("run").arg("--config").arg(&cfg));
    o.assert_ok();
    let report = read_json(&t.path().join("out/report.json"));
    let reused = num_at(&report, "/embed_documents/cached") + num_at(&report, "/llm/cached");
    assert!(reused > 0.0, "the next run reused what the full disk had kept ({mode}): {report}");
    assert_eq!(server.count() - sent_before, num_at(&report, "/llm/sent") as usize);
    assert_same_outputs(&t.path().join("out"));
}

#[test]
fn a_document_far_longer_than_the_window_is_truncated_by_the_documented_rule_and_counted() {
    require_models();
    let server = FakeLlm::start(fake_llm::echo);
    let t = tmpdir();
    let corpus_text = std::fs::read_to_string(corpus_subset(t.path(), 8)).unwrap();
    let long_text = "the history of the long document continues with more words ".repeat(8_000); // ~480 KB, ~80k tokens
    let long = serde_json::json!({"_id": "long-1", "title": "A very long document", "text": long_text});
    let corpus = write(t.path(), "corpus.jsonl", &format!("{long}\n{corpus_text}"));
    let cfg = server.pipeline_config(t.path(), &corpus, "", "");
    for pass in 0..2 {
        let o = run_config(&cfg, &[]);
        o.assert_ok();
        let report = read_json(&t.path().join("out/report.json"));
        assert_eq!(num_at(&report, "/embed_documents/truncated"), 1.0, "pass {pass}: {}", report["embed_documents"]);
        assert_eq!(num_at(&report, "/llm/documents_cut"), 1.0, "pass {pass}: {}", report["llm"]);
        o.assert_stderr_has(&["1 truncated", "1 documents cut to generate.llm.max_document_chars"]);
    }
    // The prompt carried the first max_document_chars (2000) characters, cut at a word boundary.
    let prompts: Vec<String> = server.requests().iter().map(|r| r.prompt()).collect();
    let slot = prompts
        .iter()
        .filter_map(|p| fake_llm::slot(p, "DOCUMENT"))
        .find(|d| d.starts_with("A very long document"))
        .expect("a prompt for the long document");
    assert!(slot.len() <= 2000 && slot.len() > 1000, "{} characters", slot.len());
    assert!(long_text.starts_with(slot.trim_start_matches("A very long document ")));
}
