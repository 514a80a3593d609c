//! `tripletgen bench queue`: the work queue of a PostgreSQL workspace against an LLM server that
//! answers at once (in this process), so that the store and the queue are all that is measured.
//!
//! - **Overhead per unit**: claim + complete of empty units, one process (the price of a unit on
//!   top of its work).
//! - **Scaling**: `--units` LLM units of `--calls` calls each (every answer stored in the workspace,
//!   as in a run), done by the coordinator (this process) alone and with 1, 2, 4 `tripletgen
//!   worker` processes beside it: units/s and calls/s. Next to it, the same calls sent by one
//!   process into a SQLite workspace with no queue: the baseline a queue must beat once servers,
//!   not the database, are the limit.
//!
//! `scripts/bench/workspace.sh` starts a private PostgreSQL server and runs this after `bench
//! workspace`.

use super::servers::InstantServer;
use crate::config::QueueConfig;
use crate::generate::llm::{QueuedCall, llm_unit, queue_needs, send_calls};
use crate::hash::ContentHash;
use crate::llm::{ChatRequest, Client, LlmConfig};
use crate::workspace::queue::{Payload, Queue};
use crate::workspace::{Location, Store};
use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use std::io::BufRead;
use std::time::{Duration, Instant};

/// Options of the queue benchmark.
#[derive(Debug, Args, Clone)]
pub struct QueueBenchArgs {
    /// The PostgreSQL workspace (postgres://user@host/db; a scratch database: the benchmark writes
    /// to it and coordinates runs on it). The password comes from `PGPASSWORD`.
    #[arg(long)]
    pub workspace: String,
    /// LLM units per round.
    #[arg(long, default_value_t = 120)]
    pub units: usize,
    /// Calls per unit (as `queue.llm_unit`).
    #[arg(long, default_value_t = 32)]
    pub calls: usize,
    /// Worker counts to measure (beside the coordinator, which works too).
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,4")]
    pub workers: Vec<usize>,
    /// Empty units for the overhead measurement.
    #[arg(long, default_value_t = 500)]
    pub empty_units: usize,
}

/// One configuration's throughput.
#[derive(Debug, Serialize)]
pub struct Throughput {
    /// `sqlite, no queue` or `postgres, coordinator + N workers`.
    pub setup: String,
    /// Worker processes (beside the coordinator); `None` for the SQLite baseline.
    pub workers: Option<usize>,
    /// Units per second.
    pub units_per_sec: f64,
    /// LLM calls answered and stored per second.
    pub calls_per_sec: f64,
}

/// What the benchmark measured.
#[derive(Debug, Serialize)]
pub struct QueueBenchReport {
    /// Milliseconds of claim + complete per unit (one process, empty units).
    pub overhead_ms_per_unit: f64,
    /// The SQLite baseline first, then PostgreSQL with each worker count.
    pub throughput: Vec<Throughput>,
}

fn llm_config(base_url: &str) -> LlmConfig {
    LlmConfig {
        base_url: base_url.into(),
        model: "instant".into(),
        concurrency: 16,
        max_retries: 0,
        ..LlmConfig::default()
    }
}

/// `units` payloads of `calls` calls each, with keys no earlier round used.
fn payloads(round: &str, units: usize, calls: usize) -> Vec<Payload> {
    (0..units)
        .map(|u| Payload::Llm {
            calls: (0..calls)
                .map(|i| QueuedCall {
                    key: ContentHash::of(&format!("{round}/{u}/{i}")),
                    strategy: "bench".into(),
                    request: ChatRequest::user(format!("question {u} {i} of {round}")),
                })
                .collect(),
        })
        .collect()
}

/// Start `n` workers on `config` and wait until each is polling (they are killed after the round:
/// by then every unit is done).
fn start_workers(config: &std::path::Path, n: usize) -> Result<Vec<std::process::Child>> {
    let exe = std::env::current_exe().context("the tripletgen binary")?;
    let mut children = Vec::new();
    for i in 0..n {
        let mut child = std::process::Command::new(&exe)
            .args(["worker", "--config"])
            .arg(config)
            .args(["--name", &format!("bench-w{i}"), "--idle-exit", "3600"])
            .env("TRIPLETGEN_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("starting a worker")?;
        let stderr = child.stderr.take().expect("piped");
        let (ready, wait) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("waiting for units") {
                    let _ = ready.send(());
                }
            }
        });
        if wait.recv_timeout(Duration::from_secs(120)).is_err() {
            let _ = child.kill();
            bail!("worker {i} did not start polling within 2 minutes");
        }
        children.push(child);
    }
    Ok(children)
}

/// Run the benchmark and print its tables (JSON on stdout with `json`).
pub fn run(a: &QueueBenchArgs, json: bool) -> Result<QueueBenchReport> {
    anyhow::ensure!(a.units > 0 && a.calls > 0, "--units and --calls must be at least 1");
    let location = Location::parse(&a.workspace);
    let Location::Postgres(url) = &location else { bail!("--workspace must be a postgres:// URL") };
    location.check().map_err(|why| anyhow::anyhow!("--workspace {why}"))?;
    let server = InstantServer::start().context("cannot start the in-process instant server")?;
    let llm = llm_config(&server.base_url());
    let client = Client::new(&llm)?;
    let stamp = ContentHash::of(&format!("{:?}", Instant::now())).short();

    // Overhead: claim + complete of empty units.
    let qc = QueueConfig::default();
    let mut queue = Queue::connect(url, "bench-coordinator".into(), &qc)?;
    queue.coordinate()?;
    let empty: Vec<Payload> = (0..a.empty_units).map(|_| Payload::Llm { calls: Vec::new() }).collect();
    let t = Instant::now();
    queue.run_units("bench-empty", &empty, "empty", false, |_| Ok(None))?;
    let overhead_ms_per_unit = t.elapsed().as_secs_f64() * 1000.0 / a.empty_units as f64;
    queue.finish(true)?;
    drop(queue);

    // Baseline: one process, SQLite, no queue.
    let dir = tempfile::tempdir().context("temporary folder")?;
    let mut throughput = Vec::new();
    {
        let mut store = Store::open(dir.path())?;
        let calls: Vec<QueuedCall> = payloads(&format!("{stamp}/sqlite"), a.units, a.calls)
            .into_iter()
            .flat_map(|p| match p {
                Payload::Llm { calls } => calls,
                _ => unreachable!(),
            })
            .collect();
        let t = Instant::now();
        for unit in calls.chunks(a.calls) {
            let (sent, _) = send_calls(&client, &llm.model, &mut store, unit, false)?;
            anyhow::ensure!(sent.stored == unit.len(), "the instant server failed calls: {:?}", sent.errors.first());
        }
        let secs = t.elapsed().as_secs_f64();
        throughput.push(Throughput {
            setup: "sqlite, one process, no queue".into(),
            workers: None,
            units_per_sec: a.units as f64 / secs,
            calls_per_sec: (a.units * a.calls) as f64 / secs,
        });
    }

    // PostgreSQL: the coordinator with 0, 1, 2, 4 workers.
    let config = dir.path().join("worker.toml");
    std::fs::write(
        &config,
        format!(
            "workspace = \"{url}\"\n\n{}\n[queue]\nlease_seconds = 30.0\n",
            toml::to_string(&std::collections::BTreeMap::from([("llm", &llm)]))?
        ),
    )?;
    for &n in &a.workers {
        let mut workers = start_workers(&config, n)?;
        let mut store = Store::connect(&location)?;
        let mut queue = Queue::connect(url, "bench-coordinator".into(), &qc)?;
        queue.coordinate()?;
        let units = payloads(&format!("{stamp}/pg{n}"), a.units, a.calls);
        let t = Instant::now();
        let ids = queue
            .run_units(&queue_needs(&llm), &units, "bench", false, |u| llm_unit(&client, &llm.model, &mut store, u))?;
        let secs = t.elapsed().as_secs_f64();
        queue.finish(true)?;
        anyhow::ensure!(ids.len() == a.units, "every unit was queued");
        for w in &mut workers {
            let _ = w.kill();
            let _ = w.wait();
        }
        throughput.push(Throughput {
            setup: format!("postgres, coordinator + {n} workers"),
            workers: Some(n),
            units_per_sec: a.units as f64 / secs,
            calls_per_sec: (a.units * a.calls) as f64 / secs,
        });
    }

    let report = QueueBenchReport { overhead_ms_per_unit, throughput };
    let mut table = format!(
        "work queue on PostgreSQL, instant LLM server ({} units of {} calls per row, every answer stored):\n\
         claim + complete: {:.2} ms per unit (target: the store adds under {} ms per unit)\n\
         | setup | units/s | calls/s | vs SQLite |\n| --- | --- | --- | --- |\n",
        a.units,
        a.calls,
        report.overhead_ms_per_unit,
        super::workspace::TARGET_MS_PER_UNIT
    );
    let base = report.throughput[0].calls_per_sec;
    for r in &report.throughput {
        table += &format!(
            "| {} | {:.1} | {:.0} | {:.2}x |\n",
            r.setup,
            r.units_per_sec,
            r.calls_per_sec,
            r.calls_per_sec / base
        );
    }
    if json {
        eprint!("{table}");
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{table}");
    }
    Ok(report)
}
