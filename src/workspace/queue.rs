//! The work queue of a database workspace: the expensive work of a run, cut into units that any
//! number of `tripletgen worker` processes, on any machines, claim with a lease.
//!
//! `tripletgen run` on a PostgreSQL workspace is the coordinator: it registers a run (one at a time
//! per database, held by an advisory lock), queues what its cache lookups missed as units, works on
//! them itself too, and waits until every unit is done. Workers claim units with
//! `FOR UPDATE SKIP LOCKED` (no unit goes to two workers at once), store the results in the
//! workspace's tables exactly as a single process would, and mark the unit done. A unit whose lease
//! expires (its worker died or stalled) goes to the next claimer. Results are content-keyed upserts,
//! so a unit done twice stores the same rows; the coordinator reads everything back from the tables.
//! A worker renews the lease of the unit it works on from a heartbeat thread (its own connection),
//! so a slow unit keeps its worker and only a dead or cut-off worker loses it.
//!
//! Queued: embedding (documents, queries, variants), LLM calls of query generation, judge calls
//! (every judge kind). A unit's counts (tokens, failures) come back in its `result`.

use super::StoreError;
use super::pg::Pg;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// Migration 2 of the PostgreSQL schema: runs, units and workers.
pub(super) const MIGRATION: &str = "CREATE TABLE runs (id BIGSERIAL PRIMARY KEY, host TEXT NOT NULL, pid INT NOT NULL,
    state TEXT NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done', 'failed', 'abandoned')),
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(), finished_at TIMESTAMPTZ);
CREATE TABLE units (id BIGSERIAL PRIMARY KEY, run_id BIGINT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    kind TEXT NOT NULL, needs TEXT NOT NULL, items INT NOT NULL, payload BYTEA NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'leased', 'done', 'failed', 'cancelled')),
    attempts INT NOT NULL DEFAULT 0, worker TEXT, lease_until TIMESTAMPTZ, finished_at TIMESTAMPTZ, error TEXT);
CREATE INDEX units_open ON units (run_id, id) WHERE state IN ('queued', 'leased');
CREATE TABLE workers (name TEXT PRIMARY KEY, host TEXT NOT NULL, pid INT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(), last_seen TIMESTAMPTZ NOT NULL DEFAULT now(),
    units_done BIGINT NOT NULL DEFAULT 0, items_done BIGINT NOT NULL DEFAULT 0);";

/// Migration 3: what a finished unit reports back to its coordinator (JSON counts).
pub(super) const MIGRATION_3: &str = "ALTER TABLE units ADD COLUMN result BYTEA;";

/// Advisory lock held by the coordinating run of a database ("tripletg").
const COORDINATOR_LOCK: i64 = 0x7472_6970_6c65_7467;

/// A unit's work.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Payload {
    /// Embed `texts` with `prefix` (as [`crate::embed::Embedder::embed_cached`] would).
    Embed {
        /// The prefix (`embed.document_prefix` / `query_prefix`).
        prefix: String,
        /// The texts, without the prefix.
        texts: Vec<String>,
    },
    /// Send LLM calls (query generation); each answer is stored under its key.
    Llm {
        /// The calls.
        calls: Vec<crate::generate::llm::QueuedCall>,
    },
    /// Score (query, passage) pairs with the judge the unit needs; verdicts are stored.
    Judge {
        /// The pairs.
        items: Vec<(String, String)>,
        /// The answer shown with each pair, when known (empty: none).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        answers: Vec<Option<String>>,
    },
}

impl Payload {
    fn kind(&self) -> &'static str {
        match self {
            Payload::Embed { .. } => "embed",
            Payload::Llm { .. } => "llm",
            Payload::Judge { .. } => "judge",
        }
    }

    fn items(&self) -> usize {
        match self {
            Payload::Embed { texts, .. } => texts.len(),
            Payload::Llm { calls } => calls.len(),
            Payload::Judge { items, .. } => items.len(),
        }
    }
}

/// What a unit's claimer does with it: `Ok(result)` completes it (the result goes back to the
/// coordinator), `Err(message)` gives it back for another attempt.
pub type UnitOutcome = Result<Option<Vec<u8>>, String>;

/// A claimed unit.
#[derive(Debug, Clone)]
pub struct Unit {
    /// Its id.
    pub id: i64,
    /// What to do.
    pub payload: Payload,
    /// The component it needs (the embedding model id).
    pub needs: String,
}

impl Unit {
    /// Its items: texts, calls or pairs.
    pub fn items(&self) -> usize {
        self.payload.items()
    }
}

/// Progress of the units of a run, or of all running runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Queued or leased.
    pub open: i64,
    /// Done.
    pub done: i64,
    /// Failed for good.
    pub failed: i64,
}

/// A connection to the queue tables (its own, beside the store's).
pub struct Queue {
    pg: Pg,
    /// The coordinator's run, when this is the coordinator.
    run: Option<i64>,
    /// This process's name in `units.worker`.
    pub name: String,
    /// Lease of a claimed unit.
    pub lease: Duration,
    /// Claims of one unit before it fails for good.
    pub max_attempts: i32,
    /// Items per unit: texts to embed, LLM calls, judge pairs.
    pub unit_size: crate::config::QueueConfig,
    heartbeat: Heartbeat,
}

/// Renews the lease of the unit its queue works on, every third of the lease, on its own thread and
/// connection (the queue's own connection may be busy, or its process busy embedding).
struct Heartbeat {
    current: Arc<Mutex<Option<i64>>>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    fn start(url: &str, name: String, lease: Duration) -> Result<Heartbeat, StoreError> {
        let pg = Pg::connect(url)?;
        let current = Arc::new(Mutex::new(None::<i64>));
        let (stop, stopped) = mpsc::channel::<()>();
        let held = current.clone();
        let every = (lease / 3).max(Duration::from_millis(300));
        let thread = std::thread::Builder::new()
            .name("queue-heartbeat".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    let Some(id) = *held.lock().expect("heartbeat lock") else { continue };
                    let (name, secs) = (name.clone(), lease.as_secs_f64());
                    let renewed = pg.call(move |c| {
                        c.client.execute(
                            "UPDATE units SET lease_until = now() + make_interval(secs => $3)
                             WHERE id = $1 AND worker = $2 AND state = 'leased'",
                            &[&id, &name, &secs],
                        )
                    });
                    if let Err(e) = renewed {
                        log::warn!("queue: cannot renew the lease of unit {id}: {e}");
                    }
                }
            })
            .map_err(|source| StoreError::File { at: url.into(), path: "(heartbeat thread)".into(), source })?;
        Ok(Heartbeat { current, stop: Some(stop), thread: Some(thread) })
    }

    fn hold(&self, unit: Option<i64>) {
        *self.current.lock().expect("heartbeat lock") = unit;
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "?".into())
}

impl Queue {
    /// Connect to the queue of the workspace at `url` as `name`.
    pub fn connect(url: &str, name: String, cfg: &crate::config::QueueConfig) -> Result<Queue, StoreError> {
        let lease = Duration::from_secs_f64(cfg.lease_seconds);
        Ok(Queue {
            pg: Pg::connect(url)?,
            run: None,
            heartbeat: Heartbeat::start(url, name.clone(), lease)?,
            name,
            lease,
            max_attempts: cfg.max_attempts as i32,
            unit_size: cfg.clone(),
        })
    }

    /// Become the coordinator: take the database's coordinator lock (or refuse, naming the run that
    /// holds it), mark runs left `running` by dead coordinators abandoned, and register a run.
    pub fn coordinate(&mut self) -> Result<i64, StoreError> {
        let (host, pid) = (host(), std::process::id() as i32);
        let locked = self.pg.try_lock(COORDINATOR_LOCK)?;
        let got: Result<i64, String> = self.pg.call(move |c| {
            if !locked {
                let holder = c
                    .client
                    .query_opt(
                        "SELECT id, host, pid, to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') FROM runs
                         WHERE state = 'running' ORDER BY id DESC LIMIT 1",
                        &[],
                    )?
                    .map(|r| format!("run {}, host {}, pid {}, since {} UTC", r.get::<_, i64>(0), r.get::<_, String>(1), r.get::<_, i32>(2), r.get::<_, String>(3)))
                    .unwrap_or_else(|| "starting".into());
                return Ok(Err(holder));
            }
            let mut tx = c.client.transaction()?;
            tx.execute(
                "UPDATE units SET state = 'cancelled' WHERE state IN ('queued', 'leased')
                 AND run_id IN (SELECT id FROM runs WHERE state = 'running')",
                &[],
            )?;
            tx.execute("UPDATE runs SET state = 'abandoned', finished_at = now() WHERE state = 'running'", &[])?;
            let id: i64 =
                tx.query_one("INSERT INTO runs (host, pid) VALUES ($1, $2) RETURNING id", &[&host, &pid])?.get(0);
            tx.execute("DELETE FROM runs WHERE id < $1::bigint - 3", &[&id])?;
            tx.commit()?;
            Ok(Ok(id))
        })?;
        let id = got.map_err(|holder| StoreError::Refused {
            at: self.pg.url().to_string(),
            why: format!(
                "is coordinated by another `tripletgen run` ({holder}): wait for it or stop it (its lock goes when its process ends); workers use `tripletgen worker`"
            ),
        })?;
        self.run = Some(id);
        Ok(id)
    }

    /// Mark the coordinator's run finished (`done` or `failed`) and cancel what is left of it.
    pub fn finish(&mut self, ok: bool) -> Result<(), StoreError> {
        let Some(run) = self.run.take() else { return Ok(()) };
        let state = if ok { "done" } else { "failed" };
        self.pg.call(move |c| {
            let mut tx = c.client.transaction()?;
            tx.execute(
                "UPDATE units SET state = 'cancelled' WHERE run_id = $1 AND state IN ('queued', 'leased')",
                &[&run],
            )?;
            tx.execute("UPDATE runs SET state = $2, finished_at = now() WHERE id = $1", &[&run, &state])?;
            tx.commit()
        })?;
        self.pg.unlock(COORDINATOR_LOCK)
    }

    /// Queue `payloads` for the coordinator's run; returns their ids.
    pub fn submit(&mut self, needs: &str, payloads: &[Payload]) -> Result<Vec<i64>, StoreError> {
        let run = self.run.expect("submit is for the coordinator");
        let kinds: Vec<&str> = payloads.iter().map(Payload::kind).collect();
        let items: Vec<i32> = payloads.iter().map(|p| p.items() as i32).collect();
        let bodies: Vec<Vec<u8>> =
            payloads.iter().map(|p| serde_json::to_vec(p).expect("payload serialises")).collect();
        let (kinds, needs): (Vec<String>, String) = (kinds.into_iter().map(String::from).collect(), needs.to_string());
        self.pg.call(move |c| {
            Ok(c.client
                .query(
                    "INSERT INTO units (run_id, kind, needs, items, payload)
                     SELECT $1, k, $2, i, p FROM unnest($3::text[], $4::int4[], $5::bytea[]) WITH ORDINALITY AS t(k, i, p, n)
                     ORDER BY n RETURNING id",
                    &[&run, &needs, &kinds, &items, &bodies],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })
    }

    /// Claim the oldest claimable unit (queued, or leased past its lease) that needs one of `needs`:
    /// of the coordinator's run, or, for a worker, of any running run.
    pub fn claim(&mut self, needs: &[String]) -> Result<Option<Unit>, StoreError> {
        let (run, needs, name) = (self.run, needs.to_vec(), self.name.clone());
        let (lease, max) = (self.lease.as_secs_f64(), self.max_attempts);
        self.pg.call(move |c| {
            // One statement (one round trip, one commit): units claimed too often without finishing
            // fail for good (a unit that kills its workers must not loop), and the oldest claimable
            // other unit is taken.
            let claim = c.prepared(
                "WITH stale AS (UPDATE units SET state = 'failed', error = 'claimed ' || attempts || ' times without finishing'
                     WHERE state = 'leased' AND lease_until < now() AND attempts >= $5),
                 c AS (SELECT u.id FROM units u JOIN runs r ON r.id = u.run_id
                     WHERE r.state = 'running' AND ($1::bigint IS NULL OR u.run_id = $1) AND u.needs = ANY($2)
                       AND (u.state = 'queued' OR (u.state = 'leased' AND u.lease_until < now() AND u.attempts < $5))
                     ORDER BY u.id FOR UPDATE OF u SKIP LOCKED LIMIT 1)
                 UPDATE units u SET state = 'leased', worker = $3, attempts = u.attempts + 1,
                     lease_until = now() + make_interval(secs => $4)
                 FROM c WHERE u.id = c.id RETURNING u.id, u.needs, u.payload",
            )?;
            let row = c.client.query_opt(&claim, &[&run, &needs, &name, &lease, &max])?;
            Ok(row.map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1), r.get::<_, Vec<u8>>(2))))
        })?
        .map(|(id, needs, body)| {
            let payload = serde_json::from_slice(&body).map_err(|e| StoreError::Refused {
                at: self.pg.url().to_string(),
                why: format!("unit {id} has a payload this tripletgen cannot read ({e}): are workers and coordinator the same version?"),
            })?;
            self.heartbeat.hold(Some(id));
            Ok(Unit { id, payload, needs })
        })
        .transpose()
    }

    /// Mark a claimed unit done with its `result` (a unit whose lease went to another claimer is
    /// left to it).
    pub fn complete(&mut self, unit: &Unit, result: Option<Vec<u8>>) -> Result<(), StoreError> {
        self.heartbeat.hold(None);
        let (id, name, items) = (unit.id, self.name.clone(), unit.payload.items() as i64);
        let (host, pid) = (host(), std::process::id() as i32);
        self.pg.call(move |c| {
            // One statement: the unit done (unless its lease went to another claimer) and the
            // worker's counts.
            let complete = c.prepared(
                "WITH d AS (UPDATE units SET state = 'done', finished_at = now(), lease_until = NULL, result = $2
                     WHERE id = $1 AND state = 'leased')
                 INSERT INTO workers (name, host, pid, units_done, items_done) VALUES ($3, $4, $5, 1, $6)
                 ON CONFLICT (name) DO UPDATE SET last_seen = now(), host = EXCLUDED.host, pid = EXCLUDED.pid,
                     units_done = workers.units_done + 1, items_done = workers.items_done + EXCLUDED.items_done",
            )?;
            c.client.execute(&complete, &[&id, &result, &name, &host, &pid, &items]).map(drop)
        })
    }

    /// Give a unit back after an error (another claimer retries it, up to `max_attempts` claims).
    pub fn release(&mut self, unit: &Unit, error: &str) -> Result<(), StoreError> {
        self.heartbeat.hold(None);
        let (id, error) = (unit.id, error.to_string());
        self.pg.call(move |c| {
            c.client
                .execute(
                    "UPDATE units SET state = 'queued', lease_until = NULL, error = $2 WHERE id = $1 AND state = 'leased'",
                    &[&id, &error],
                )
                .map(drop)
        })
    }

    /// The results of the units `ids` (JSON of `T`), in the order of `ids` (`None` where a unit
    /// reported none).
    pub fn results<T: serde::de::DeserializeOwned>(&mut self, ids: &[i64]) -> Result<Vec<Option<T>>, StoreError> {
        let wanted = ids.to_vec();
        let mut by_id: std::collections::HashMap<i64, Option<Vec<u8>>> = self.pg.call(move |c| {
            let rows = c.client.query("SELECT id, result FROM units WHERE id = ANY($1)", &[&wanted])?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })?;
        ids.iter()
            .map(|id| {
                let Some(bytes) = by_id.remove(id).flatten() else { return Ok(None) };
                serde_json::from_slice(&bytes).map(Some).map_err(|e| StoreError::Refused {
                    at: self.pg.url().to_string(),
                    why: format!("unit {id} reported a result this tripletgen cannot read ({e})"),
                })
            })
            .collect()
    }

    /// Queue `payloads` (each needing `needs`) for the coordinator's run, then work on them here
    /// too, with `work`, until every one is done, by this process or by workers; a progress bar
    /// counts units. Returns the units' ids in payload order. A unit that fails for good (or
    /// `work` failing here) ends it with an error; the coordinator lock lost to another run too.
    pub fn run_units(
        &mut self,
        needs: &str,
        payloads: &[Payload],
        label: &str,
        show_progress: bool,
        mut work: impl FnMut(&Unit) -> UnitOutcome,
    ) -> Result<Vec<i64>, StoreError> {
        if payloads.is_empty() {
            return Ok(Vec::new());
        }
        let ids = self.submit(needs, payloads)?;
        let items: usize = payloads.iter().map(Payload::items).sum();
        log::info!("{label}: {items} items queued as {} units for workers (this process works on them too)", ids.len());
        let pb = crate::progress::bar(ids.len() as u64, label, "units", show_progress);
        let needs = [needs.to_string()];
        let at = self.pg.url().to_string();
        let failed = |why: String| StoreError::Refused { at: at.clone(), why };
        loop {
            if self.pg.lock_lost() {
                return Err(failed("lost its coordinator lock while the connection was down, and another `tripletgen run` holds it now: this run stops".into()));
            }
            if let Some(unit) = self.claim(&needs)? {
                match work(&unit) {
                    Ok(result) => self.complete(&unit, result)?,
                    Err(e) => {
                        self.release(&unit, &e)?;
                        return Err(failed(format!("unit {} failed here: {e}", unit.id)));
                    }
                }
                continue;
            }
            let p = self.progress(&ids)?;
            pb.set_position(p.done as u64);
            if p.failed > 0 {
                let why = self.failure(&ids)?.unwrap_or_else(|| "a unit failed".into());
                return Err(failed(format!("a queued unit failed for good: {why}")));
            }
            if p.open == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        pb.finish_and_clear();
        Ok(ids)
    }

    /// How far the units `ids` are.
    pub fn progress(&mut self, ids: &[i64]) -> Result<Progress, StoreError> {
        let ids = ids.to_vec();
        self.pg.call(move |c| {
            let r = c.client.query_one(
                "SELECT count(*) FILTER (WHERE state IN ('queued', 'leased')), count(*) FILTER (WHERE state = 'done'),
                        count(*) FILTER (WHERE state IN ('failed', 'cancelled'))
                 FROM units WHERE id = ANY($1)",
                &[&ids],
            )?;
            Ok(Progress { open: r.get(0), done: r.get(1), failed: r.get(2) })
        })
    }

    /// True while there is or may come work: a unit open in a running run, or a live coordinator
    /// (one holding the coordinator lock: between its stages it queues nothing for a while).
    pub fn work_pending(&mut self) -> Result<bool, StoreError> {
        let (high, low) = (COORDINATOR_LOCK >> 32, COORDINATOR_LOCK & 0xffff_ffff);
        self.pg.call(move |c| {
            Ok(c.client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM units u JOIN runs r ON r.id = u.run_id
                                    WHERE r.state = 'running' AND u.state IN ('queued', 'leased'))
                         OR EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
                                    AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1
                                    AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
                    &[&high, &low],
                )?
                .get(0))
        })
    }

    /// The error of a failed unit among `ids`, if any.
    pub fn failure(&mut self, ids: &[i64]) -> Result<Option<String>, StoreError> {
        let ids = ids.to_vec();
        self.pg.call(move |c| {
            Ok(c.client
                .query_opt(
                    "SELECT 'unit ' || id || ': ' || coalesce(error, state) FROM units
                     WHERE id = ANY($1) AND state IN ('failed', 'cancelled') ORDER BY id LIMIT 1",
                    &[&ids],
                )?
                .map(|r| r.get(0)))
        })
    }
}

/// What `tripletgen status` shows: the newest run, its units, the workers' recent rates.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    /// Stored rows: embeddings, LLM answers, verdicts.
    pub stored: (i64, i64, i64),
    /// The newest run: id, host, pid, state, started (UTC), seconds since.
    pub run: Option<(i64, String, i32, String, String, f64)>,
    /// Its units by state: (state, units, items).
    pub units: Vec<(String, i64, i64)>,
    /// Workers that finished units in the last 5 minutes: (name, units, items, seconds since the last).
    pub workers: Vec<(String, i64, i64, f64)>,
    /// Items (texts, calls, pairs) per second over the last 5 minutes.
    pub rate: f64,
    /// Items not done yet (queued or leased).
    pub left: i64,
}

impl Queue {
    /// The state of the workspace's queue, for `tripletgen status`.
    pub fn status(&mut self) -> Result<Status, StoreError> {
        self.pg.call(|c| {
            let mut s = Status::default();
            let r = c.client.query_one(
                "SELECT (SELECT count(*) FROM embeddings), (SELECT count(*) FROM llm_cache), (SELECT count(*) FROM judgements)",
                &[],
            )?;
            s.stored = (r.get(0), r.get(1), r.get(2));
            let Some(run) = c.client.query_opt(
                "SELECT id, host, pid, state, to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
                        extract(epoch FROM coalesce(finished_at, now()) - started_at)::float8
                 FROM runs ORDER BY id DESC LIMIT 1",
                &[],
            )?
            else {
                return Ok(s);
            };
            let id: i64 = run.get(0);
            s.run = Some((id, run.get(1), run.get(2), run.get(3), run.get(4), run.get(5)));
            s.units = c
                .client
                .query(
                    "SELECT state, count(*), coalesce(sum(items), 0)::bigint FROM units WHERE run_id = $1 GROUP BY state ORDER BY state",
                    &[&id],
                )?
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            s.left = s.units.iter().filter(|u| u.0 == "queued" || u.0 == "leased").map(|u| u.2).sum();
            s.workers = c
                .client
                .query(
                    "SELECT u.worker, count(*), coalesce(sum(u.items), 0)::bigint,
                            extract(epoch FROM now() - max(u.finished_at))::float8
                     FROM units u WHERE u.state = 'done' AND u.finished_at > now() - interval '5 minutes'
                     GROUP BY u.worker ORDER BY u.worker",
                    &[],
                )?
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect();
            let window: f64 = c
                .client
                .query_one(
                    "SELECT least(300, extract(epoch FROM now() - min(started_at)))::float8 FROM runs WHERE id = $1",
                    &[&id],
                )?
                .get(0);
            let recent: i64 = s.workers.iter().map(|w| w.2).sum();
            s.rate = if window > 0.0 { recent as f64 / window } else { 0.0 };
            Ok(s)
        })
    }
}

impl Status {
    /// The human-readable form.
    pub fn render(&self, url: &str) -> String {
        let mut out = format!(
            "workspace {url}\nstored   {} embeddings, {} LLM answers, {} verdicts\n",
            self.stored.0, self.stored.1, self.stored.2
        );
        let Some((id, host, pid, state, started, secs)) = &self.run else {
            return out + "runs     none yet\n";
        };
        out += &format!("run      {id} ({state}), host {host}, pid {pid}, started {started} UTC, {secs:.0}s ago\n");
        let units: Vec<String> = self.units.iter().map(|(st, n, items)| format!("{n} {st} ({items} items)")).collect();
        out += &format!("units    {}\n", if units.is_empty() { "none".into() } else { units.join(", ") });
        for (name, units, items, seen) in &self.workers {
            out += &format!(
                "worker   {name}: {units} units, {items} items in the last 5 min, last finished {seen:.0}s ago\n"
            );
        }
        if self.left > 0 && self.rate > 0.0 {
            out += &format!(
                "eta      {:.0}s ({} items left at {:.1} items/s)\n",
                self.left as f64 / self.rate,
                self.left,
                self.rate
            );
        }
        out
    }
}

impl Drop for Queue {
    /// A coordinator that ends without [`Queue::finish`] (an error) marks its run failed, so that
    /// workers stop waiting for it; a killed one leaves that to the next coordinator.
    fn drop(&mut self) {
        if self.run.is_some() {
            let _ = self.finish(false);
        }
    }
}

/// This process's default worker name: `w<index>` in a Kubernetes Indexed Job
/// (`JOB_COMPLETION_INDEX`) or a Slurm array (`SLURM_ARRAY_TASK_ID`), else `host:pid`.
pub fn default_worker_name() -> String {
    ["JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .map(|i| format!("w{i}"))
        .unwrap_or_else(|| format!("{}:{}", host(), std::process::id()))
}

/// The coordinator's name in `units.worker`.
pub fn coordinator_name() -> String {
    format!("coordinator {}:{}", host(), std::process::id())
}
