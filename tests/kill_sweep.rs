//! The kill sweep: a run on a fixture subset (embedding, LLM synthetic queries and paraphrases through
//! a fake server, filtering, an HNSW index and a BM25 index, mining, five output formats) is killed with SIGKILL at many
//! checkpoints spread over every stage (chosen with a seeded generator from the checkpoints an
//! uninterrupted run passes, see `src/killpoint.rs`), then rerun. For every kill point:
//!
//! - the process died by SIGKILL at that point;
//! - every third time, the rerun is killed again at another point (a run that continues a killed
//!   run's workspace is killed too);
//! - every output file present after a kill is whole (Parquet read back to the end, JSON and JSONL
//!   parsed): a finished-looking file is never half-written;
//! - the rerun completes, removing the temporary files the killed run left; its data files equal the uninterrupted run's byte for byte, and report.json
//!   and manifest.json equal it once timings and cache counters are removed;
//! - the rerun sends exactly the LLM calls (generation and judge) whose answers were not stored before
//!   the kill (counted at the server): no stored answer is paid for twice.

mod common;
#[path = "common/fake_llm.rs"]
mod fake_llm;

use common::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

/// At least this many kill points.
const KILL_POINTS: usize = 24;
/// The generator's seed (the points are printed, so a failure can be replayed).
const SEED: u64 = 20_261_121;

const DATA_FILES: &[&str] = &[
    "triplet.parquet",
    "triplet.provenance.parquet",
    "n-tuple.parquet",
    "n-tuple.provenance.parquet",
    "labeled-pair.parquet",
    "labeled-pair.provenance.parquet",
    "labeled-list.parquet",
    "labeled-list.provenance.parquet",
    "flag.jsonl",
    "variants.parquet",
    "report.html",
];

/// Run the binary quietly with extra environment; returns its exit status.
fn run_with(cfg: &Path, env: &[(&str, &Path)]) -> std::process::ExitStatus {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tripletgen"));
    c.args(["-q", "run", "--config"]).arg(cfg).env_remove("TRIPLETGEN_LOG").env_remove("RUST_LOG");
    c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    if !o.status.success() && o.status.signal().is_none() {
        panic!("tripletgen failed: {}\n{}", o.status, String::from_utf8_lossy(&o.stderr));
    }
    o.status
}

/// Drop what legitimately differs between an uninterrupted run and a resumed one: timings, memory, rates,
/// cache counters, the change report (the resumed run has a snapshot from no completed run), and how
/// the HNSW graph and the BM25 index came to be (`index.graph`: built, or loaded from the workspace
/// where a persisted graph exists; `mine.bm25.added`/`deleted`: what the refresh had to do).
fn normalized(mut v: Value) -> Value {
    const VOLATILE: &[&str] = &[
        "timings",
        "memory",
        "seconds",
        "changes",
        "output_dir",
        "graph",
        "cached",
        "embedded",
        "tokens",
        "sent",
        "attempts",
        "prompt_tokens",
        "completion_tokens",
        "cost",
        "paid_calls",
        "added",
        "deleted",
    ];
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.retain(|k, _| !VOLATILE.contains(&k.as_str()) && !k.ends_with("_seconds"));
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

/// Every file with a final name in `out` is whole. Returns the names present.
fn assert_outputs_whole(out: &Path, point: &str) -> BTreeSet<String> {
    let mut present = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(out) else { return present };
    for e in entries {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if e.file_type().unwrap().is_dir() || name.starts_with('.') {
            continue; // the workspace; hidden temporary files are never read
        }
        if name.ends_with(".parquet") {
            // read_parquet reads every batch and panics on a truncated file or footer.
            if std::panic::catch_unwind(|| read_parquet(&path)).is_err() {
                panic!("kill at {point}: {name} is not a whole Parquet file");
            }
        } else if name.ends_with(".jsonl") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.is_empty() || text.ends_with('\n'), "kill at {point}: {name} ends mid-line");
            for (i, l) in text.lines().enumerate() {
                assert!(serde_json::from_str::<Value>(l).is_ok(), "kill at {point}: {name}:{} is not JSON", i + 1);
            }
        } else if name.ends_with(".json") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(serde_json::from_str::<Value>(&text).is_ok(), "kill at {point}: {name} is not whole JSON");
        } else if name.ends_with(".html") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.trim_end().ends_with("</html>"), "kill at {point}: {name} is cut short");
        } else {
            panic!("kill at {point}: unexpected file {name} in the output folder");
        }
        present.insert(name);
    }
    present
}

fn stored_answers(ws: &Path) -> i64 {
    if !ws.join("tripletgen.sqlite").exists() {
        return 0;
    }
    let s = tripletgen::workspace::Store::open(ws).unwrap();
    s.count_llm().unwrap() + s.count_judgements(&JUDGE_ID).unwrap() + s.count_judgements(&READER_ID).unwrap()
}

/// The LLM judge of the sweep's config (model "fake", the built-in prompt), as stored.
const JUDGE_ID_PREFIX: &str = "llm:fake:prompt:";
static JUDGE_ID: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let prompt = std::fs::read_to_string(repo().join("configs/prompts/judge.txt")).unwrap();
    let hash = tripletgen::hash::ContentHash::of(&prompt).short();
    format!("{JUDGE_ID_PREFIX}{hash}:chars:4000")
});

/// The answer reader of the sweep's config (`derive_answers`, the built-in prompt), as stored.
static READER_ID: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let prompt = std::fs::read_to_string(repo().join("configs/prompts/answer.txt")).unwrap();
    format!("answer:fake:prompt:{}:chars:4000", tripletgen::hash::ContentHash::of(&prompt).short())
});

/// The judge section of the sweep's config (the fake server grades every candidate), and BM25
/// candidates beside the dense ones (the BM25 index in the workspace is killed mid-refresh too).
const JUDGE: &str = "[judge]\nwindow = 1\nderive_answers = true\n\n[[judge.stages]]\nkind = \"llm\"\n\n[mine]\nretrievers = [\"dense\", \"bm25\"]\n";

/// Pick `n` (checkpoint, hit) points: one at random in every checkpoint first (every stage gets
/// killed), the rest at random among all hits.
fn pick_points(hits: &BTreeMap<String, u64>, n: usize, seed: u64) -> Vec<(String, u64)> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut chosen: BTreeSet<(String, u64)> = BTreeSet::new();
    for (name, &count) in hits {
        chosen.insert((name.clone(), rng.random_range(1..=count)));
    }
    let mut all: Vec<(String, u64)> =
        hits.iter().flat_map(|(name, &count)| (1..=count).map(move |i| (name.clone(), i))).collect();
    all.shuffle(&mut rng);
    for p in all {
        if chosen.len() >= n {
            break;
        }
        chosen.insert(p);
    }
    let mut v: Vec<_> = chosen.into_iter().collect();
    v.shuffle(&mut rng);
    v
}

#[test]
fn killed_anywhere_the_rerun_finishes_with_identical_outputs_and_no_repaid_call() {
    require_models();
    let started = std::time::Instant::now();
    let server = fake_llm::FakeLlm::start(fake_llm::echo);
    let base = tmpdir();
    let corpus = corpus_subset(base.path(), 30);

    // The uninterrupted run, listing the checkpoints it passes.
    let reference = base.path().join("reference");
    let cfg = server.pipeline_config(&reference, &corpus, JUDGE, "");
    let list = base.path().join("checkpoints.txt");
    assert!(run_with(&cfg, &[("TRIPLETGEN_KILL_LIST", &list)]).success());
    let planned = server.count();
    let ref_out = reference.join("out");
    let ref_report = read_json(&ref_out.join("report.json"));
    let read = num_at(&ref_report, "/judge/derived/reader/sent") as usize;
    let judged = num_at(&ref_report, "/judge/stages/0/sent") as usize + read;
    assert!(judged > read && read > 0, "the reader read and the judge judged: {}", ref_report["judge"]);
    assert_eq!(num_at(&ref_report, "/llm/planned") as usize + judged, planned, "every planned call was sent once");
    assert!(planned >= 12, "the sweep needs LLM calls to kill between: {}", ref_report["llm"]);
    let mut hits: BTreeMap<String, u64> = BTreeMap::new();
    for l in std::fs::read_to_string(&list).unwrap().lines() {
        *hits.entry(l.to_string()).or_default() += 1;
    }
    for stage in [
        "ingest",
        "embed-batch",
        "llm-answer",
        "filter",
        "index-synced",
        "index-saved",
        "bm25-commit",
        "index",
        "mine-search",
        "judge-verdict",
        "judge",
        "mine",
        "write-batch",
        "write-synced",
        "write-renamed",
        "report",
    ] {
        assert!(hits.contains_key(stage), "the run never passed checkpoint {stage}: {hits:?}");
    }

    let points = pick_points(&hits, KILL_POINTS, SEED);
    eprintln!("checkpoints of an uninterrupted run: {hits:?}\nkill points (seed {SEED}): {points:?}");
    assert!(points.len() >= 20);

    // Every third kill is followed by a second one, in the first rerun (which continues the killed
    // run's workspace), at another point; a point the resumed run no longer reaches lets it finish.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(SEED + 1);
    let all: Vec<(String, u64)> = hits.iter().flat_map(|(name, &c)| (1..=c).map(move |i| (name.clone(), i))).collect();
    let mut double_kills = 0;
    for (i, (name, n)) in points.iter().enumerate() {
        let mut point = format!("{name}:{n}");
        let dir = base.path().join(format!("kill-{i:02}"));
        let cfg = server.pipeline_config(&dir, &corpus, JUDGE, "");
        let out = dir.join("out");
        let ws = out.join("workspace");

        let status = run_with(&cfg, &[("TRIPLETGEN_KILL_AT", Path::new(&point))]);
        assert_eq!(status.signal(), Some(libc::SIGKILL), "kill at {point}: the run was not killed ({status})");
        assert_outputs_whole(&out, &point);
        if i % 3 == 0 {
            let (name2, n2) = &all[rng.random_range(0..all.len())];
            let second = format!("{name2}:{n2}");
            let status = run_with(&cfg, &[("TRIPLETGEN_KILL_AT", Path::new(&second))]);
            assert!(status.success() || status.signal() == Some(libc::SIGKILL), "{status}");
            if !status.success() {
                double_kills += 1;
            }
            point = format!("{point} then {second}");
            assert_outputs_whole(&out, &point);
        }
        let stored = stored_answers(&ws) as usize;

        let before = server.count();
        assert!(run_with(&cfg, &[]).success());
        let sent_now = server.count() - before;
        assert_eq!(
            sent_now,
            planned - stored,
            "kill at {point}: {stored} answers were stored before the kill, the rerun sent {sent_now} of {planned}"
        );

        let present = assert_outputs_whole(&out, &point);
        let leftovers: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "kill at {point}: the rerun left temporary files {leftovers:?}");
        for f in DATA_FILES.iter().chain(&["report.json", "manifest.json"]) {
            assert!(present.contains(*f), "kill at {point}: {f} missing after the rerun");
        }
        let differ = differing_files(&ref_out, &out, DATA_FILES);
        assert!(differ.is_empty(), "kill at {point}: {differ:?} differ from the uninterrupted run's");
        let report = read_json(&out.join("report.json"));
        let judge_sent =
            num_at(&report, "/judge/stages/0/sent") as usize + num_at(&report, "/judge/derived/reader/sent") as usize;
        assert_eq!(num_at(&report, "/llm/sent") as usize + judge_sent, sent_now, "kill at {point}: report vs server");
        assert_eq!(normalized(report), normalized(ref_report.clone()), "kill at {point}: report.json differs");
        let mut manifest = read_json(&out.join("manifest.json"));
        let mut ref_manifest = read_json(&ref_out.join("manifest.json"));
        for m in [&mut manifest, &mut ref_manifest] {
            // Paths name each run's own folder.
            m["config"]["output"]["dir"] = Value::Null;
            m["report"]["output_dir"] = Value::Null;
        }
        assert_eq!(normalized(manifest), normalized(ref_manifest), "kill at {point}: manifest.json differs");
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(double_kills >= 3, "only {double_kills} second kills happened");
    eprintln!(
        "kill sweep: {} points ({double_kills} killed twice) in {:.0}s",
        points.len(),
        started.elapsed().as_secs_f64()
    );
}
