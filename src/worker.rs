//! `tripletgen worker`: works on the units that coordinating runs queue in a PostgreSQL workspace
//! (see [`crate::workspace::queue`]), on any machine that can reach the database and has the
//! models. It reads the same config as the run (only `[model]`, `[embed]`, `[queue]` and
//! `workspace` matter here; the inputs need not exist on its machine), claims units whose component
//! it has, stores the results in the workspace, and exits once no unit has come for `--idle-exit`
//! seconds and none is waiting in a running run, so that a Kubernetes Indexed Job or a Slurm array
//! task completes.

use crate::config::Config;
use crate::embed::{EmbedError, Embedder};
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
    /// Texts embedded or found stored, over those units.
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
    let mut embedder = Embedder::load(&models::resolve(&cfg.model)?, cfg)?;
    let needs = [embedder.model_id.clone()];
    log::info!("worker {name}: waiting for units of {url}");
    let mut report = WorkerReport::default();
    let mut idle = Instant::now();
    loop {
        let Some(unit) = queue.claim(&needs)? else {
            if idle.elapsed() >= opts.idle_exit && queue.open_anywhere()? == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
            continue;
        };
        let Payload::Embed { prefix, texts } = &unit.payload;
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        match embedder.embed_cached(&mut store, &refs, prefix, "worker", false) {
            Ok(_) => {
                queue.complete(&unit)?;
                report.units += 1;
                report.items += texts.len();
                log::debug!("worker {name}: unit {} done ({} texts)", unit.id, texts.len());
            }
            Err(e) => {
                log::warn!("worker {name}: unit {} failed: {e}; giving it back", unit.id);
                queue.release(&unit, &e.to_string())?;
                report.released += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        idle = Instant::now();
    }
    log::info!(
        "worker {name}: idle for {:.0}s and nothing queued: exiting after {} units ({} texts, {} given back)",
        opts.idle_exit.as_secs_f64(),
        report.units,
        report.items,
        report.released
    );
    Ok(report)
}
