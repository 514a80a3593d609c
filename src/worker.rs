//! `tripletgen worker`: works on the units that coordinating runs queue in a PostgreSQL workspace
//! (see [`crate::workspace::queue`]), on any machine that can reach the database and has the
//! models. It reads the same config as the run (only `[model]`, `[embed]`, `[llm]`, `[judge]`,
//! `[queue]` and `workspace` matter here; the inputs need not exist on its machine), claims units
//! whose component it has (its embedding model, its LLM, its judges), stores the results in the
//! workspace, and exits once no unit has come for `--idle-exit` seconds, none is waiting and no
//! coordinator is alive (one may queue its next stage's units later), so that a Kubernetes Indexed
//! Job or a Slurm array task completes after its run.

use crate::config::Config;
use crate::embed::{EmbedError, Embedder};
use crate::generate::llm::{llm_unit, queue_needs};
use crate::judge::{JudgeError, judge_unit};
use crate::llm::{Client, LlmError};
use crate::models::{self, ModelError};
use crate::workspace::queue::{Payload, Queue, default_worker_name};
use crate::workspace::{Location, Store, StoreError};
use std::time::{Duration, Instant};

/// Errors of a worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The workspace or its queue.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The embedding model.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Embedding (a unit failing repeatedly ends as a failed unit instead).
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// The LLM client of `[llm]` could not be built.
    #[error("LLM client: {0}")]
    Llm(#[from] LlmError),
    /// A judge of `[judge]` could not be built.
    #[error(transparent)]
    Judge(#[from] JudgeError),
}

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Its name in the queue (default: `w<index>` under Kubernetes or Slurm, else `host:pid`).
    pub name: Option<String>,
    /// Exit after this long without a unit (and none waiting).
    pub idle_exit: Duration,
}

/// What a worker did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Units finished.
    pub units: usize,
    /// Items (texts, LLM calls, judge pairs) of those units.
    pub items: usize,
    /// Units given back after an error.
    pub released: usize,
}

/// Work until idle; `cfg` has passed [`Config::validate_worker`].
pub fn run(cfg: &Config, opts: &WorkerOptions) -> Result<WorkerReport, WorkerError> {
    let location = cfg.workspace_location();
    let Location::Postgres(url) = &location else { unreachable!("validate_worker refuses a folder") };
    let name = opts.name.clone().unwrap_or_else(default_worker_name);
    let mut store = Store::connect(&location)?;
    let mut queue = Queue::connect(url, name.clone(), &cfg.queue)?;
    // What this worker can do: embed with its model, send LLM calls with its `[llm]`, and judge with
    // each stage of its `[judge]`; units needing anything else are left to others.
    let mut embedder = Embedder::load(&models::resolve(&cfg.model)?, cfg)?;
    let llm =
        cfg.llm.as_ref().map(|l| Ok::<_, LlmError>((Client::new(l)?, l.model.clone(), queue_needs(l)))).transpose()?;
    let mut judges = crate::judge::build_judges(cfg)?;
    let mut needs = vec![embedder.model_id.clone()];
    needs.extend(llm.iter().map(|l| l.2.clone()));
    needs.extend(judges.iter().map(|j| j.id().to_string()));
    log::info!("worker {name}: waiting for units of {url} ({})", needs.join(", "));
    let mut report = WorkerReport::default();
    let mut idle = Instant::now();
    loop {
        let Some(unit) = queue.claim(&needs)? else {
            if idle.elapsed() >= opts.idle_exit && !queue.work_pending()? {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
            continue;
        };
        let outcome = match &unit.payload {
            Payload::Embed { .. } => embedder.embed_unit(&mut store, &unit, "worker"),
            Payload::Llm { .. } => match &llm {
                Some((client, model, _)) => llm_unit(client, model, &mut store, &unit),
                None => Err("this worker has no [llm]".into()),
            },
            Payload::Judge { .. } => match judges.iter_mut().find(|j| j.id() == unit.needs) {
                Some(judge) => judge_unit(judge.as_mut(), &mut store, &unit),
                None => Err(format!("this worker has no judge {}", unit.needs)),
            },
        };
        match outcome {
            Ok(result) => {
                queue.complete(&unit, result)?;
                report.units += 1;
                report.items += unit.items();
                log::debug!("worker {name}: unit {} done ({} items)", unit.id, unit.items());
            }
            Err(e) => {
                log::warn!("worker {name}: unit {} failed: {e}; giving it back", unit.id);
                queue.release(&unit, &e)?;
                report.released += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        idle = Instant::now();
    }
    log::info!(
        "worker {name}: idle for {:.0}s, nothing queued and no run coordinating: exiting after {} units ({} items, {} given back)",
        opts.idle_exit.as_secs_f64(),
        report.units,
        report.items,
        report.released
    );
    Ok(report)
}
