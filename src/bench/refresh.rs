//! `tripletgen bench refresh`: the cost of a refresh after a small corpus change, next to the full
//! run that preceded it, on generated documents.
//!
//! Writes a BEIR folder of `n` generated documents (realistic mixed lengths, see
//! [`super::synth::generate_documents`]) with queries and qrels, runs the whole pipeline with HNSW
//! and synthetic query generation against an in-process instant LLM server (so LLM requests can be
//! counted), changes a share of the documents (a third edited, a third deleted, a third added), runs
//! again with the same workspace, and compares the embedding and index stages' times and the LLM
//! requests sent.

use super::synth::{Vocabulary, generate_documents};
use crate::config::Config;
use crate::output::report::RunReport;
use anyhow::{Context, Result, bail};
use clap::Args;
use rand::SeedableRng;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// Target: the refresh's embedding and index stages take at most this share of the full run's.
pub const TARGET_SHARE: f64 = 0.05;

/// Options of the refresh benchmark.
#[derive(Debug, Args, Clone)]
pub struct RefreshBenchArgs {
    /// Generated documents.
    #[arg(long, default_value_t = 100_000)]
    pub n: usize,
    /// Share of the documents changed between the runs (a third edited, deleted and added each).
    #[arg(long, default_value_t = 0.01)]
    pub change: f64,
    /// Queries (each with one positive) given with the corpus.
    #[arg(long, default_value_t = 1_000)]
    pub queries: usize,
    /// Folder for the corpus, workspace and outputs (default: a temporary folder, removed after).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}

/// One run's numbers.
#[derive(Debug, Serialize)]
pub struct RunNumbers {
    /// Seconds in the embedding stage (documents, queries, variants; cache lookups included).
    pub embed_seconds: f64,
    /// Seconds in the index stage (build, or load + update + save).
    pub index_seconds: f64,
    /// Whole run.
    pub total_seconds: f64,
    /// Documents embedded (not found in the cache).
    pub documents_embedded: usize,
    /// `built`, `updated` or `rebuilt`.
    pub index_mode: String,
    /// LLM requests sent.
    pub llm_sent: usize,
    /// LLM answers taken from the workspace.
    pub llm_cached: usize,
}

/// The benchmark's result.
#[derive(Debug, Serialize)]
pub struct RefreshReport {
    /// Documents.
    pub n: usize,
    /// Documents edited, deleted and added.
    pub edited: usize,
    /// Deleted.
    pub deleted: usize,
    /// Added.
    pub added: usize,
    /// The first run.
    pub full: RunNumbers,
    /// The run after the change.
    pub refresh: RunNumbers,
    /// refresh / full, embedding stage.
    pub embed_share: f64,
    /// refresh / full, index stage.
    pub index_share: f64,
    /// refresh / full, embedding + index stages.
    pub embed_index_share: f64,
}

fn numbers(r: &RunReport) -> RunNumbers {
    RunNumbers {
        embed_seconds: r.timings.embed,
        index_seconds: r.timings.index,
        total_seconds: r.timings.total,
        documents_embedded: r.embed_documents.embedded,
        index_mode: r.index.graph.as_ref().map_or_else(|| r.index.kind.to_string(), |g| g.mode.to_string()),
        llm_sent: r.llm.as_ref().map_or(0, |l| l.sent),
        llm_cached: r.llm.as_ref().map_or(0, |l| l.cached),
    }
}

/// Run the benchmark; prints a table on stderr (and the JSON report on stdout with `json`).
pub fn run(a: &RefreshBenchArgs, seed: u64, show_progress: bool, json: bool) -> Result<RefreshReport> {
    if a.n < 100 || !(0.0..=0.5).contains(&a.change) || a.queries == 0 || a.queries > a.n / 2 {
        bail!("bench refresh needs --n >= 100, 0 <= --change <= 0.5 and 1 <= --queries <= n/2");
    }
    let tmp;
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir().context("cannot create a temporary folder")?;
            tmp.path().to_path_buf()
        }
    };
    let beir = dir.join("beir");
    std::fs::create_dir_all(beir.join("qrels"))?;
    let vocab =
        Vocabulary::from_corpus(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/quickstart/corpus.jsonl"));
    log::info!("bench refresh: generating {} documents", a.n);
    let mut docs: Vec<(String, String)> =
        generate_documents(&vocab, a.n, seed).into_iter().enumerate().map(|(i, t)| (format!("d{i}"), t)).collect();
    // Queries: the first words of every (n / queries)-th document, which is their positive.
    let step = a.n / a.queries;
    let mut queries = String::new();
    let mut qrels = String::from("query-id\tcorpus-id\tscore\n");
    for (qi, (id, text)) in docs.iter().step_by(step).take(a.queries).enumerate() {
        let words: Vec<&str> = text.split_whitespace().take(8).collect();
        writeln!(queries, "{}", serde_json::json!({"_id": format!("q{qi}"), "text": words.join(" ")}))?;
        writeln!(qrels, "q{qi}\t{id}\t1")?;
    }
    std::fs::write(beir.join("queries.jsonl"), queries)?;
    std::fs::write(beir.join("qrels/test.tsv"), qrels)?;
    write_corpus(&beir, &docs)?;

    let server = super::servers::InstantServer::start().context("cannot start the in-process instant LLM server")?;
    let config = format!(
        "workspace = {ws:?}\n\n[input]\nbeir = {beir:?}\n\n[index]\nkind = \"hnsw\"\n\n\
         [generate.llm]\nstrategies = [\"synthetic\"]\nqueries_per_document = 1\n\n[filter]\nround_trip_k = 0\n\n\
         [llm]\nbase_url = {url:?}\nmodel = \"instant\"\nconcurrency = 32\n\n[output]\ndir = {out:?}\nformats = [\"triplet\"]\n",
        ws = dir.join("workspace"),
        beir = beir,
        url = server.base_url(),
        out = dir.join("out"),
    );
    let config_path = dir.join("bench-refresh.toml");
    std::fs::write(&config_path, config)?;
    let mut cfg = Config::load(&config_path)?;
    cfg.validate(&config_path.display().to_string())?;
    let opts = crate::pipeline::RunOptions { progress: show_progress };

    log::info!("bench refresh: full run on {} documents", a.n);
    let full = crate::pipeline::run_with(&cfg, opts)?;

    // Change: edit, delete and add a third of the share each, never touching a positive.
    let k = ((a.n as f64 * a.change) / 3.0).round() as usize;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let free: Vec<usize> = (0..a.n).filter(|i| i % step != 0 || i / step >= a.queries).collect();
    let picked = rand::seq::index::sample(&mut rng, free.len(), 2 * k).into_vec();
    let (edit, delete) = picked.split_at(k);
    for &i in edit {
        docs[free[i]].1.push_str(" This passage was revised.");
    }
    let gone: std::collections::HashSet<usize> = delete.iter().map(|&i| free[i]).collect();
    let mut docs: Vec<(String, String)> =
        docs.into_iter().enumerate().filter(|(i, _)| !gone.contains(i)).map(|(_, d)| d).collect();
    docs.extend(
        generate_documents(&vocab, k, seed ^ 0xadd).into_iter().enumerate().map(|(i, t)| (format!("added{i}"), t)),
    );
    write_corpus(&beir, &docs)?;

    log::info!("bench refresh: refresh after editing, deleting and adding {k} documents each");
    let refresh = crate::pipeline::run_with(&cfg, opts)?;
    drop(server);

    let (f, r) = (numbers(&full), numbers(&refresh));
    let share = |a: f64, b: f64| a / b.max(1e-9);
    let report = RefreshReport {
        n: a.n,
        edited: k,
        deleted: k,
        added: k,
        embed_share: share(r.embed_seconds, f.embed_seconds),
        index_share: share(r.index_seconds, f.index_seconds),
        embed_index_share: share(r.embed_seconds + r.index_seconds, f.embed_seconds + f.index_seconds),
        full: f,
        refresh: r,
    };
    let text = render(&report);
    if json {
        eprint!("{text}");
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        eprint!("{text}");
    }
    Ok(report)
}

fn write_corpus(beir: &Path, docs: &[(String, String)]) -> Result<()> {
    let mut s = String::new();
    for (id, text) in docs {
        writeln!(s, "{}", serde_json::json!({"_id": id, "title": "", "text": text}))?;
    }
    std::fs::write(beir.join("corpus.jsonl"), s)?;
    Ok(())
}

fn render(r: &RefreshReport) -> String {
    let (f, x) = (&r.full, &r.refresh);
    let mut t = String::new();
    let _ = writeln!(t, "\nRefresh: {} documents; {} edited, {} deleted, {} added", r.n, r.edited, r.deleted, r.added);
    let _ = writeln!(t, "  {:<34} {:>12} {:>12} {:>9}   target", "", "full run", "refresh", "share");
    let row = |t: &mut String, name: &str, a: f64, b: f64, target: &str| {
        let _ = writeln!(t, "  {name:<34} {a:>11.1}s {b:>11.1}s {:>8.1}%   {target}", 100.0 * b / a.max(1e-9));
    };
    let verdict = |s: f64| if s <= TARGET_SHARE { "<= 5%: met" } else { "<= 5%: MISSED" };
    row(&mut t, "embedding stage", f.embed_seconds, x.embed_seconds, "");
    row(&mut t, "index stage", f.index_seconds, x.index_seconds, "");
    row(
        &mut t,
        "embedding + index",
        f.embed_seconds + f.index_seconds,
        x.embed_seconds + x.index_seconds,
        verdict(r.embed_index_share),
    );
    row(&mut t, "whole run", f.total_seconds, x.total_seconds, "");
    let _ = writeln!(t, "  {:<34} {:>12} {:>12}", "documents embedded", f.documents_embedded, x.documents_embedded);
    let _ = writeln!(t, "  {:<34} {:>12} {:>12}", "index", f.index_mode, x.index_mode);
    let _ = writeln!(
        t,
        "  {:<34} {:>12} {:>12}   {} expected (edited + added)",
        "LLM requests sent (cached)",
        format!("{} ({})", f.llm_sent, f.llm_cached),
        format!("{} ({})", x.llm_sent, x.llm_cached),
        r.edited + r.added
    );
    t
}
