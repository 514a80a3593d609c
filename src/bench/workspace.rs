//! `tripletgen bench workspace`: what the store costs per unit of work, on a folder (SQLite) and on
//! a PostgreSQL database given by `--workspace` (the password from `PGPASSWORD`;
//! `scripts/bench/workspace.sh` starts a private server on this machine and runs it).
//!
//! The units are the pipeline's: a batch of embeddings stored (`embed.batch_size` 384-d vectors in
//! one transaction) and looked up again, one LLM answer stored the moment it arrives and looked up,
//! a batch of judge verdicts stored and looked up. Each is timed over `--units` repetitions with
//! fresh keys, so every write inserts. The target of the many-machines issue: the store adds under
//! 5 ms per unit.

use crate::hash::ContentHash;
use crate::workspace::{Location, Scored, Store};
use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;
use std::time::Instant;

/// Target: milliseconds the store may add per unit of work.
pub const TARGET_MS_PER_UNIT: f64 = 5.0;

/// Options of the workspace benchmark.
#[derive(Debug, Args, Clone)]
pub struct WorkspaceBenchArgs {
    /// A PostgreSQL workspace to measure next to SQLite (postgres://user@host/db, an empty or
    /// scratch database: the benchmark writes to it). Without it only SQLite is measured.
    #[arg(long)]
    pub workspace: Option<String>,
    /// Repetitions of each unit.
    #[arg(long, default_value_t = 200)]
    pub units: usize,
    /// Vectors per embedding unit (as `embed.batch_size`).
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
}

/// Milliseconds per unit for one store.
#[derive(Debug, Serialize)]
pub struct StoreNumbers {
    /// `sqlite` or `postgres`.
    pub store: &'static str,
    /// Store a batch of embeddings (one transaction).
    pub put_embeddings_ms: f64,
    /// Look the batch up again.
    pub get_embeddings_ms: f64,
    /// Store one LLM answer.
    pub put_llm_ms: f64,
    /// Look one LLM answer up.
    pub get_llm_ms: f64,
    /// Store a batch of verdicts (one transaction).
    pub put_judgements_ms: f64,
    /// Look the batch of verdicts up.
    pub get_judgements_ms: f64,
}

fn ms(t: Instant, n: usize) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0 / n as f64
}

fn measure(store: &mut Store, name: &'static str, a: &WorkspaceBenchArgs) -> Result<StoreNumbers> {
    let run = ContentHash::of(&format!("{:?}", Instant::now())).short();
    let key = |unit: usize, i: usize| ContentHash::of(&format!("{run}/{unit}/{i}"));
    let vector: Vec<f32> = (0..384).map(|i| (i as f32 * 0.37).sin()).collect();
    let model = format!("bench-{run}");
    let mut keys = Vec::new();
    let t = Instant::now();
    for u in 0..a.units {
        let batch: Vec<(ContentHash, &[f32])> = (0..a.batch).map(|i| (key(u, i), &vector[..])).collect();
        keys.push(batch.iter().map(|b| b.0).collect::<Vec<_>>());
        store.put_embeddings(&model, &batch)?;
    }
    let put_embeddings_ms = ms(t, a.units);
    let t = Instant::now();
    for k in &keys {
        let got = store.get_embeddings(&model, k, 384)?;
        anyhow::ensure!(got.iter().all(Option::is_some), "a stored vector was not found");
    }
    let get_embeddings_ms = ms(t, a.units);
    let answer = format!("{{\"content\":\"{}\",\"prompt_tokens\":210}}", "a paraphrased question ".repeat(20));
    let t = Instant::now();
    for u in 0..a.units {
        store.put_llm(&key(u, usize::MAX), "paraphrase", "bench", &answer)?;
    }
    let put_llm_ms = ms(t, a.units);
    let t = Instant::now();
    for u in 0..a.units {
        anyhow::ensure!(store.get_llm(&key(u, usize::MAX))?.is_some(), "a stored answer was not found");
    }
    let get_llm_ms = ms(t, a.units);
    let judge = format!("llm:bench-{run}");
    let verdict = Scored { score: 0.42, label: Some(0), detail: Some("no".into()) };
    let t = Instant::now();
    for k in &keys {
        let items: Vec<(ContentHash, Scored)> = k.iter().map(|k| (*k, verdict.clone())).collect();
        store.put_judgements(&judge, &items)?;
    }
    let put_judgements_ms = ms(t, a.units);
    let t = Instant::now();
    for k in &keys {
        store.get_judgements(&judge, k)?;
    }
    let get_judgements_ms = ms(t, a.units);
    Ok(StoreNumbers {
        store: name,
        put_embeddings_ms,
        get_embeddings_ms,
        put_llm_ms,
        get_llm_ms,
        put_judgements_ms,
        get_judgements_ms,
    })
}

/// Run the benchmark and print its table (or JSON).
pub fn run(a: &WorkspaceBenchArgs, json: bool) -> Result<Vec<StoreNumbers>> {
    anyhow::ensure!(a.units > 0 && a.batch > 0, "--units and --batch must be at least 1");
    let dir = tempfile::tempdir().context("temporary folder")?;
    let mut out = vec![measure(&mut Store::open(dir.path())?, "sqlite", a)?];
    if let Some(url) = &a.workspace {
        let location = Location::parse(url);
        location.check().map_err(|why| anyhow::anyhow!("--workspace {why}"))?;
        out.push(measure(&mut Store::connect(&location)?, "postgres", a)?);
    }
    let mut table = format!(
        "store cost per unit ({} units; an embedding unit is {} vectors of 384 floats, a verdict unit {} verdicts), ms:\n\
         | store | put embeddings | get embeddings | put LLM answer | get LLM answer | put verdicts | get verdicts |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n",
        a.units, a.batch, a.batch
    );
    for n in &out {
        table += &format!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
            n.store,
            n.put_embeddings_ms,
            n.get_embeddings_ms,
            n.put_llm_ms,
            n.get_llm_ms,
            n.put_judgements_ms,
            n.get_judgements_ms
        );
    }
    table += &format!("target: under {TARGET_MS_PER_UNIT} ms per unit\n");
    if json {
        eprint!("{table}");
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{table}");
    }
    Ok(out)
}
