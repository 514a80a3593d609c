//! The database workspace: the same tables in PostgreSQL (`workspace = "postgres://user@host/db"`,
//! the password from `PGPASSWORD`), so that many machines share one workspace.
//!
//! The synchronous `postgres` client runs its own small runtime, which must not be entered from
//! inside another one, and store writes happen inside the LLM client's runtime. So one thread owns
//! the connection and runs each request sent to it (an actor); callers block on the answer, as they
//! do on SQLite. Each request is one statement or one transaction, and every write is an idempotent
//! upsert: when the connection drops (a server restart, a network cut), the thread reconnects with
//! backoff for up to five minutes and replays the request. The schema is versioned in
//! `schema_migrations` (version and checksum of each migration), applied under an advisory lock,
//! and checked on every open.

use super::{ArtifactHead, Backend, BatchRow, Count, Produced, Row, Scored, StoreError, Table};
use crate::hash::ContentHash;
use postgres::error::SqlState;
use postgres::{Client, Config, NoTls, Statement};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio_postgres_rustls::MakeRustlsConnect;

/// Migrations, in order: (version, SQL). Never edit one that shipped: add the next.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
    "CREATE TABLE embeddings (model TEXT NOT NULL, key BYTEA NOT NULL, vec BYTEA NOT NULL, PRIMARY KEY (model, key));
ALTER TABLE embeddings ALTER COLUMN vec SET STORAGE EXTERNAL;
CREATE TABLE llm_cache (key BYTEA PRIMARY KEY, strategy TEXT NOT NULL, model TEXT NOT NULL, response TEXT NOT NULL);
CREATE TABLE judgements (judge TEXT NOT NULL, key BYTEA NOT NULL, score DOUBLE PRECISION NOT NULL,
    label SMALLINT, detail BYTEA, PRIMARY KEY (judge, key));
CREATE TABLE snapshot (kind TEXT NOT NULL, id BYTEA NOT NULL, hash BYTEA NOT NULL,
    generated BIGINT NOT NULL DEFAULT 0, negatives BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (kind, id));
CREATE SEQUENCE llm_batches_seq;
CREATE TABLE llm_batches (input_file TEXT PRIMARY KEY, endpoint TEXT NOT NULL, batch_id TEXT,
    custom_ids TEXT NOT NULL, done BOOLEAN NOT NULL DEFAULT false,
    seq BIGINT NOT NULL DEFAULT nextval('llm_batches_seq'));
CREATE TABLE artifacts (name TEXT NOT NULL, generation BIGINT NOT NULL, chunk INT NOT NULL, data BYTEA NOT NULL,
    PRIMARY KEY (name, generation, chunk));
ALTER TABLE artifacts ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE TABLE artifact_heads (name TEXT PRIMARY KEY, generation BIGINT NOT NULL, sha256 BYTEA NOT NULL,
    bytes BIGINT NOT NULL, chunks INT NOT NULL, saved_at TIMESTAMPTZ NOT NULL DEFAULT now());",
    ),
    (2, super::queue::MIGRATION),
    (3, super::queue::MIGRATION_3),
];

/// Advisory lock key taken while migrating ("tripletm").
const MIGRATE_LOCK: i64 = 0x7472_6970_6c65_746d;

/// How long a dropped connection is retried before a request fails.
const RECONNECT_FOR: Duration = Duration::from_secs(300);

/// Rows per statement when looking up or storing many keys.
const CHUNK: usize = 5000;

/// Why `url` cannot be used as a workspace; never repeats the URL (it may hold a password).
pub(super) fn check_url(url: &str) -> Result<(), String> {
    let (plain, _tls) = split_tls(url)?;
    let config: Config = plain.parse().map_err(|e| format!("is not a valid PostgreSQL URL ({e})"))?;
    if config.get_password().is_some() {
        return Err("holds a password: remove it from the URL and set the PGPASSWORD environment variable instead (the URL is written to manifests and logs)".into());
    }
    if config.get_hosts().is_empty() {
        return Err("names no host (postgres://user@host:port/database)".into());
    }
    Ok(())
}

/// libpq's TLS parameters taken off `url`: the URL without them, and the TLS client to use.
/// `sslmode=require`, `verify-ca` and `verify-full` all mean TLS with the server's certificate
/// verified (host name included) against `sslrootcert=FILE` (PEM), else the system's CA
/// certificates: a connection is never encrypted to an unverified server. `disable`, `allow`,
/// `prefer` or no `sslmode`: no TLS.
fn split_tls(url: &str) -> Result<(String, Option<MakeRustlsConnect>), String> {
    let Some((base, query)) = url.split_once('?') else { return Ok((url.to_string(), None)) };
    let (mut mode, mut rootcert, mut kept) = (None, None, Vec::new());
    for param in query.split('&').filter(|p| !p.is_empty()) {
        match param.split_once('=') {
            Some(("sslmode", v)) => mode = Some(v.to_string()),
            Some(("sslrootcert", v)) => rootcert = Some(std::path::PathBuf::from(v)),
            _ => kept.push(param),
        }
    }
    let plain = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    match mode.as_deref() {
        None | Some("disable" | "allow" | "prefer") if rootcert.is_none() => Ok((plain, None)),
        None | Some("disable" | "allow" | "prefer") => {
            Err("gives sslrootcert without sslmode=verify-full: add sslmode=verify-full to use TLS".into())
        }
        Some("require" | "verify-ca" | "verify-full") => Ok((plain, Some(tls_client(rootcert.as_deref())?))),
        Some(other) => Err(format!(
            "has sslmode={other}; use disable, prefer, require, verify-ca or verify-full (the last three verify the server's certificate)"
        )),
    }
}

/// A rustls client trusting `rootcert` (PEM), or the system's CA certificates.
fn tls_client(rootcert: Option<&std::path::Path>) -> Result<MakeRustlsConnect, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match rootcert {
        Some(path) => {
            let bad = |e: &dyn std::fmt::Display| {
                format!("has sslrootcert={}, which cannot be read as PEM certificates ({e})", path.display())
            };
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
                roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
            if roots.is_empty() {
                return Err(format!("has sslrootcert={}, which holds no certificate", path.display()));
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(
                    "asks for TLS, but this system has no CA certificates: give the server's CA with sslrootcert=FILE"
                        .into(),
                );
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed ({e})"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// The driver's message, with the server's detail when there is one.
pub(super) fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            // "error performing TLS handshake" says little without its cause.
            Some(cause) if !e.to_string().contains(&cause.to_string()) => format!("{e}: {cause}"),
            _ => e.to_string(),
        },
    }
}

fn tls_failure(e: &postgres::Error) -> bool {
    e.as_db_error().is_none() && e.to_string().contains("TLS")
}

/// What to do about it, where that is clear.
pub(super) fn hint(e: &postgres::Error) -> &'static str {
    match e.code() {
        Some(c) if *c == SqlState::INVALID_PASSWORD || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
            ": check the user in the URL and the PGPASSWORD environment variable"
        }
        Some(c) if *c == SqlState::INVALID_CATALOG_NAME => ": create the database first (createdb NAME)",
        _ if tls_failure(e) => {
            ": the server's certificate could not be verified for that host; give its CA with sslrootcert=FILE in the URL"
        }
        _ if e.as_db_error().is_none() && !e.is_closed() => {
            ": is the server running and reachable at that host and port?"
        }
        _ => "",
    }
}

/// A connection with its prepared statements.
pub(super) struct Conn {
    pub(super) client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl Conn {
    pub(super) fn prepared(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }
}

type Job = Box<dyn FnOnce(&mut Session) + Send>;

/// The connection thread's state.
struct Session {
    conn: Conn,
    config: Config,
    tls: Option<MakeRustlsConnect>,
    url: String,
    /// Session-level advisory locks held: taken again after a reconnect.
    locks: Vec<i64>,
    /// Set when a lock could not be taken again (another session took it meanwhile).
    lost: Arc<AtomicBool>,
}

/// Errors after which a reconnect and a replay may succeed.
fn transient(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(c) => {
            c.code().starts_with("08")
                || [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN, SqlState::CANNOT_CONNECT_NOW].contains(c)
                || [SqlState::T_R_SERIALIZATION_FAILURE, SqlState::T_R_DEADLOCK_DETECTED].contains(c)
        }
        // Without a code: a dropped connection shows as an I/O error; anything else (a value that
        // does not fit its column) would fail again.
        None => std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

fn open(config: &Config, tls: &Option<MakeRustlsConnect>) -> Result<Conn, postgres::Error> {
    let client = match tls {
        Some(tls) => config.connect(tls.clone())?,
        None => config.connect(NoTls)?,
    };
    Ok(Conn { client, statements: HashMap::new() })
}

impl Session {
    /// Run `f`, reconnecting and replaying it while the connection is down (up to [`RECONNECT_FOR`]).
    fn run<R>(&mut self, f: &mut dyn FnMut(&mut Conn) -> Result<R, postgres::Error>) -> Result<R, postgres::Error> {
        let start = Instant::now();
        let mut wait = Duration::from_millis(200);
        loop {
            let e = match f(&mut self.conn) {
                Ok(r) => return Ok(r),
                Err(e) if transient(&e) && start.elapsed() < RECONNECT_FOR => e,
                Err(e) => return Err(e),
            };
            log::warn!("workspace {}: {}; reconnecting", self.url, describe(&e));
            loop {
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(5));
                match open(&self.config, &self.tls) {
                    Ok(c) => {
                        self.conn = c;
                        log::info!("workspace {}: reconnected after {:.1}s", self.url, start.elapsed().as_secs_f64());
                        self.relock();
                        break;
                    }
                    Err(e) if start.elapsed() < RECONNECT_FOR => {
                        log::debug!("workspace {}: still unreachable: {}", self.url, describe(&e))
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

impl Session {
    /// Take the held advisory locks again on a new connection; one that another session holds now
    /// is lost for good.
    fn relock(&mut self) {
        for key in self.locks.clone() {
            let got =
                self.conn.client.query_one("SELECT pg_try_advisory_lock($1)", &[&key]).map(|r| r.get::<_, bool>(0));
            if !matches!(got, Ok(true)) {
                log::error!("workspace {}: advisory lock {key:#x} lost while the connection was down", self.url);
                self.locks.retain(|k| *k != key);
                self.lost.store(true, Ordering::SeqCst);
            }
        }
    }
}

/// Apply the missing migrations in one transaction under an advisory lock; `Ok(Err(why))` when
/// the database belongs to a newer tripletgen or its history differs from this build's.
fn migrate(c: &mut Client) -> Result<Result<(), String>, postgres::Error> {
    let mut tx = c.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INT PRIMARY KEY, checksum TEXT NOT NULL,
            tool_version TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )?;
    let applied: Vec<(i32, String)> = tx
        .query("SELECT version, checksum FROM schema_migrations ORDER BY version", &[])?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    for (version, checksum) in &applied {
        match MIGRATIONS.iter().find(|m| m.0 == *version) {
            None => {
                return Ok(Err(format!(
                    "it was written by a newer tripletgen (schema version {version}; this one knows up to {known}): upgrade tripletgen, or use another database"
                )));
            }
            Some((_, sql)) if blake3::hash(sql.as_bytes()).to_hex().as_str() != checksum => {
                return Ok(Err(format!(
                    "migration {version} in schema_migrations differs from this tripletgen's (checksum {checksum}): the database was set up by another build; use another database"
                )));
            }
            Some(_) => {}
        }
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| !applied.iter().any(|a| a.0 == m.0)) {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, checksum, tool_version) VALUES ($1, $2, $3)",
            &[version, &blake3::hash(sql.as_bytes()).to_hex().as_str(), &env!("CARGO_PKG_VERSION")],
        )?;
    }
    tx.commit()?;
    Ok(Ok(()))
}

/// A PostgreSQL workspace: the handle to its connection thread.
pub(super) struct Pg {
    url: String,
    lost: Arc<AtomicBool>,
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Pg {
    /// Connect (the password from `PGPASSWORD`), then create or check the schema.
    pub(super) fn connect(url: &str) -> Result<Pg, StoreError> {
        check_url(url).map_err(|why| StoreError::Refused { at: "workspace URL".into(), why })?;
        let (plain, tls) = split_tls(url).map_err(|why| StoreError::Refused { at: "workspace URL".into(), why })?;
        let mut config: Config = plain.parse().expect("checked");
        if tls.is_some() {
            config.ssl_mode(postgres::config::SslMode::Require);
        }
        if let Ok(pw) = std::env::var("PGPASSWORD") {
            config.password(pw);
        }
        if config.get_application_name().is_none() {
            config.application_name(&format!("tripletgen {}", std::process::id()));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        // A link that goes silent (no reset) is noticed within about half a minute, idle or not.
        config
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3);
        config.tcp_user_timeout(Duration::from_secs(30));
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready_tx, ready) = mpsc::sync_channel(1);
        let thread_url = url.to_string();
        let lost = Arc::new(AtomicBool::new(false));
        let thread_lost = lost.clone();
        let thread = std::thread::Builder::new()
            .name("workspace-pg".into())
            .spawn(move || {
                let opened = open(&config, &tls).and_then(|mut conn| Ok(migrate(&mut conn.client)?.map(|()| conn)));
                let conn = match opened {
                    Ok(Ok(conn)) => {
                        let _ = ready_tx.send(Ok(Ok(())));
                        conn
                    }
                    Ok(Err(why)) => return drop(ready_tx.send(Ok(Err(why)))),
                    Err(e) => return drop(ready_tx.send(Err(e))),
                };
                let mut session = Session { conn, config, tls, url: thread_url, locks: Vec::new(), lost: thread_lost };
                for job in queue {
                    job(&mut session);
                }
            })
            .map_err(|source| StoreError::File { at: url.into(), path: "(connection thread)".into(), source })?;
        let pg = Pg { url: url.to_string(), lost, jobs: Some(jobs), thread: Some(thread) };
        match ready.recv() {
            Ok(Ok(Ok(()))) => Ok(pg),
            Ok(Ok(Err(why))) => Err(StoreError::Refused { at: pg.url.clone(), why }),
            Ok(Err(error)) => Err(StoreError::Postgres { url: pg.url.clone(), error }),
            Err(_) => Err(pg.gone()),
        }
    }

    fn gone(&self) -> StoreError {
        StoreError::Refused { at: self.url.clone(), why: "the connection thread stopped".into() }
    }

    /// The URL (no password).
    pub(super) fn url(&self) -> &str {
        &self.url
    }

    /// Run `f` on the connection thread and wait for its answer.
    pub(super) fn call<R: Send + 'static>(
        &self,
        mut f: impl FnMut(&mut Conn) -> Result<R, postgres::Error> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.on_session(move |s| s.run(&mut f))
    }

    fn on_session<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Session) -> Result<R, postgres::Error> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |s: &mut Session| drop(tx.send(f(s))));
        self.jobs.as_ref().expect("open until dropped").send(job).map_err(|_| self.gone())?;
        rx.recv().map_err(|_| self.gone())?.map_err(|error| StoreError::Postgres { url: self.url.clone(), error })
    }

    /// Take the session-level advisory lock `key` if free (false: another session holds it). It is
    /// taken again after every reconnect; [`Pg::lock_lost`] tells if that failed.
    pub(super) fn try_lock(&self, key: i64) -> Result<bool, StoreError> {
        self.on_session(move |s| {
            let got = s.run(&mut |c| Ok(c.client.query_one("SELECT pg_try_advisory_lock($1)", &[&key])?.get(0)))?;
            if got {
                s.locks.push(key);
            }
            Ok(got)
        })
    }

    /// Give the lock `key` back.
    pub(super) fn unlock(&self, key: i64) -> Result<(), StoreError> {
        self.on_session(move |s| {
            s.locks.retain(|k| *k != key);
            s.run(&mut |c| c.client.execute("SELECT pg_advisory_unlock($1)", &[&key]).map(drop))
        })
    }

    /// True once a lock of [`Pg::try_lock`] could not be taken again after a reconnect.
    pub(super) fn lock_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Keep the last of equal keys (PostgreSQL refuses one key twice in an upsert; SQLite's REPLACE
/// keeps the last).
fn last_of_each<T>(items: Vec<(Vec<u8>, T)>) -> Vec<(Vec<u8>, T)> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<_> = items.into_iter().rev().filter(|(k, _)| seen.insert(k.clone())).collect();
    out.reverse();
    out
}

impl Backend for Pg {
    fn describe(&self) -> String {
        self.url.clone()
    }

    fn get_embeddings(&self, model: &str, keys: &[ContentHash]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let model = model.to_string();
        let keys: Vec<Vec<u8>> = keys.iter().map(|k| k.0.to_vec()).collect();
        self.call(move |c| {
            let st = c.prepared("SELECT key, vec FROM embeddings WHERE model = $1 AND key = ANY($2)")?;
            let mut found: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
            for chunk in keys.chunks(CHUNK) {
                for row in c.client.query(&st, &[&model, &chunk])? {
                    found.insert(row.get(0), row.get(1));
                }
            }
            Ok(keys.iter().map(|k| found.remove(k)).collect())
        })
    }

    fn put_embeddings(&mut self, model: &str, items: Vec<(ContentHash, Vec<u8>)>) -> Result<(), StoreError> {
        let model = model.to_string();
        let (keys, vecs): (Vec<Vec<u8>>, Vec<Vec<u8>>) =
            last_of_each(items.into_iter().map(|(k, v)| (k.0.to_vec(), v)).collect()).into_iter().unzip();
        self.call(move |c| {
            let st = c.prepared(
                "INSERT INTO embeddings (model, key, vec) SELECT $1, k, v FROM unnest($2::bytea[], $3::bytea[]) AS t(k, v)
                 ON CONFLICT (model, key) DO UPDATE SET vec = EXCLUDED.vec",
            )?;
            c.client.execute(&st, &[&model, &keys, &vecs]).map(drop)
        })
    }

    fn get_llm(&self, key: &ContentHash) -> Result<Option<String>, StoreError> {
        let key = key.0.to_vec();
        self.call(move |c| {
            let st = c.prepared("SELECT response FROM llm_cache WHERE key = $1")?;
            Ok(c.client.query_opt(&st, &[&key])?.map(|r| r.get(0)))
        })
    }

    fn put_llm(&mut self, key: &ContentHash, strategy: &str, model: &str, response: &str) -> Result<(), StoreError> {
        let (key, strategy, model, response) =
            (key.0.to_vec(), strategy.to_string(), model.to_string(), response.to_string());
        self.call(move |c| {
            let st = c.prepared(
                "INSERT INTO llm_cache (key, strategy, model, response) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (key) DO UPDATE SET strategy = EXCLUDED.strategy, model = EXCLUDED.model, response = EXCLUDED.response",
            )?;
            c.client.execute(&st, &[&key, &strategy, &model, &response]).map(drop)
        })
    }

    fn get_judgements(&self, judge: &str, keys: &[ContentHash]) -> Result<Vec<Option<Scored>>, StoreError> {
        let judge = judge.to_string();
        let keys: Vec<Vec<u8>> = keys.iter().map(|k| k.0.to_vec()).collect();
        self.call(move |c| {
            let st =
                c.prepared("SELECT key, score, label, detail FROM judgements WHERE judge = $1 AND key = ANY($2)")?;
            let mut found: HashMap<Vec<u8>, Scored> = HashMap::new();
            for chunk in keys.chunks(CHUNK) {
                for row in c.client.query(&st, &[&judge, &chunk])? {
                    let detail: Option<Vec<u8>> = row.get(3);
                    found.insert(
                        row.get(0),
                        Scored {
                            score: row.get::<_, f64>(1) as f32,
                            label: row.get::<_, Option<i16>>(2).map(|l| l.clamp(0, 255) as u8),
                            detail: detail.map(|d| String::from_utf8_lossy(&d).into_owned()),
                        },
                    );
                }
            }
            Ok(keys.iter().map(|k| found.remove(k)).collect())
        })
    }

    fn put_judgements(&mut self, judge: &str, items: &[(ContentHash, Scored)]) -> Result<(), StoreError> {
        let judge = judge.to_string();
        let rows = last_of_each(items.iter().map(|(k, s)| (k.0.to_vec(), s.clone())).collect());
        let keys: Vec<Vec<u8>> = rows.iter().map(|r| r.0.clone()).collect();
        let scores: Vec<f64> = rows.iter().map(|r| f64::from(r.1.score)).collect();
        let labels: Vec<Option<i16>> = rows.iter().map(|r| r.1.label.map(i16::from)).collect();
        let details: Vec<Option<Vec<u8>>> =
            rows.iter().map(|r| r.1.detail.as_ref().map(|d| d.as_bytes().to_vec())).collect();
        self.call(move |c| {
            let st = c.prepared(
                "INSERT INTO judgements (judge, key, score, label, detail)
                 SELECT $1, k, s, l, d FROM unnest($2::bytea[], $3::float8[], $4::int2[], $5::bytea[]) AS t(k, s, l, d)
                 ON CONFLICT (judge, key) DO UPDATE SET score = EXCLUDED.score, label = EXCLUDED.label, detail = EXCLUDED.detail",
            )?;
            c.client.execute(&st, &[&judge, &keys, &scores, &labels, &details]).map(drop)
        })
    }

    fn snapshot(&self, kind: &str) -> Result<Vec<Produced>, StoreError> {
        let kind = kind.to_string();
        self.call(move |c| {
            let st = c.prepared("SELECT id, hash, generated, negatives FROM snapshot WHERE kind = $1 ORDER BY id")?;
            Ok(c.client
                .query(&st, &[&kind])?
                .iter()
                .map(|r| {
                    let (id, hash): (Vec<u8>, Vec<u8>) = (r.get(0), r.get(1));
                    Produced {
                        id: String::from_utf8_lossy(&id).into_owned(),
                        hash: ContentHash(hash.try_into().unwrap_or([0; 32])),
                        generated: r.get::<_, i64>(2) as usize,
                        negatives: r.get::<_, i64>(3) as usize,
                    }
                })
                .collect())
        })
    }

    fn save_snapshot(&mut self, kind: &str, items: &[Produced]) -> Result<(), StoreError> {
        let kind = kind.to_string();
        let rows = last_of_each(items.iter().map(|p| (p.id.as_bytes().to_vec(), p.clone())).collect());
        let ids: Vec<Vec<u8>> = rows.iter().map(|r| r.0.clone()).collect();
        let hashes: Vec<Vec<u8>> = rows.iter().map(|r| r.1.hash.0.to_vec()).collect();
        let generated: Vec<i64> = rows.iter().map(|r| r.1.generated as i64).collect();
        let negatives: Vec<i64> = rows.iter().map(|r| r.1.negatives as i64).collect();
        self.call(move |c| {
            let delete = c.prepared("DELETE FROM snapshot WHERE kind = $1")?;
            let insert = c.prepared(
                "INSERT INTO snapshot (kind, id, hash, generated, negatives)
                 SELECT $1, i, h, g, n FROM unnest($2::bytea[], $3::bytea[], $4::int8[], $5::int8[]) AS t(i, h, g, n)",
            )?;
            let mut tx = c.client.transaction()?;
            tx.execute(&delete, &[&kind])?;
            tx.execute(&insert, &[&kind, &ids, &hashes, &generated, &negatives])?;
            tx.commit()
        })
    }

    fn count(&self, what: Count<'_>) -> Result<i64, StoreError> {
        let (sql, arg): (&'static str, Option<String>) = match what {
            Count::Embeddings(m) => ("SELECT count(*) FROM embeddings WHERE model = $1", Some(m.into())),
            Count::Llm => ("SELECT count(*) FROM llm_cache", None),
            Count::Judgements(j) => ("SELECT count(*) FROM judgements WHERE judge = $1", Some(j.into())),
        };
        self.call(move |c| {
            let st = c.prepared(sql)?;
            let row = match &arg {
                Some(a) => c.client.query_one(&st, &[a])?,
                None => c.client.query_one(&st, &[])?,
            };
            Ok(row.get(0))
        })
    }

    fn scan(&self, table: Table, after: Option<&Row>, limit: usize) -> Result<Vec<Row>, StoreError> {
        let (group, key, first) = match after {
            Some(r) => {
                let (g, k) = r.sort_key();
                (g.to_string(), k.0.to_vec(), false)
            }
            None => (String::new(), Vec::new(), true),
        };
        let limit = limit as i64;
        let hash = |v: Vec<u8>| ContentHash(v.try_into().unwrap_or([0; 32]));
        self.call(move |c| {
            Ok(match table {
                Table::Embeddings => {
                    let st = c.prepared(
                        "SELECT model, key, vec FROM embeddings WHERE $1 OR (model, key) > ($2, $3) ORDER BY model, key LIMIT $4",
                    )?;
                    c.client
                        .query(&st, &[&first, &group, &key, &limit])?
                        .into_iter()
                        .map(|r| Row::Embedding { model: r.get(0), key: hash(r.get(1)), vec: r.get(2) })
                        .collect()
                }
                Table::Llm => {
                    let st = c.prepared(
                        "SELECT key, strategy, model, response FROM llm_cache WHERE $1 OR key > $2 ORDER BY key LIMIT $3",
                    )?;
                    c.client
                        .query(&st, &[&first, &key, &limit])?
                        .into_iter()
                        .map(|r| Row::Llm { key: hash(r.get(0)), strategy: r.get(1), model: r.get(2), response: r.get(3) })
                        .collect()
                }
                Table::Judgements => {
                    let st = c.prepared(
                        "SELECT judge, key, score, label, detail FROM judgements WHERE $1 OR (judge, key) > ($2, $3)
                         ORDER BY judge, key LIMIT $4",
                    )?;
                    c.client
                        .query(&st, &[&first, &group, &key, &limit])?
                        .into_iter()
                        .map(|r| {
                            let detail: Option<Vec<u8>> = r.get(4);
                            Row::Judgement {
                                judge: r.get(0),
                                key: hash(r.get(1)),
                                scored: Scored {
                                    score: r.get::<_, f64>(2) as f32,
                                    label: r.get::<_, Option<i16>>(3).map(|l| l.clamp(0, 255) as u8),
                                    detail: detail.map(|d| String::from_utf8_lossy(&d).into_owned()),
                                },
                            }
                        })
                        .collect()
                }
            })
        })
    }

    fn all_batches(&self) -> Result<Vec<crate::llm::BatchRecord>, StoreError> {
        self.call(|c| {
            let st =
                c.prepared("SELECT input_file, endpoint, batch_id, custom_ids, done FROM llm_batches ORDER BY seq")?;
            Ok(c.client
                .query(&st, &[])?
                .into_iter()
                .map(|r| crate::llm::BatchRecord {
                    input_file: r.get(0),
                    endpoint: r.get(1),
                    batch_id: r.get(2),
                    custom_ids: serde_json::from_str(r.get::<_, &str>(3)).unwrap_or_default(),
                    done: r.get(4),
                })
                .collect())
        })
    }

    fn open_batches(&mut self, endpoint: &str) -> Result<Vec<BatchRow>, StoreError> {
        let endpoint = endpoint.to_string();
        self.call(move |c| {
            let st = c.prepared(
                "SELECT input_file, batch_id, custom_ids FROM llm_batches WHERE endpoint = $1 AND NOT done ORDER BY seq",
            )?;
            Ok(c.client.query(&st, &[&endpoint])?.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
        })
    }

    fn save_batch(&mut self, r: &crate::llm::BatchRecord, custom_ids: &str) -> Result<(), StoreError> {
        let (file, endpoint, id, ids, done) =
            (r.input_file.clone(), r.endpoint.clone(), r.batch_id.clone(), custom_ids.to_string(), r.done);
        self.call(move |c| {
            let st = c.prepared(
                "INSERT INTO llm_batches (input_file, endpoint, batch_id, custom_ids, done) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (input_file) DO UPDATE SET endpoint = EXCLUDED.endpoint, batch_id = EXCLUDED.batch_id,
                     custom_ids = EXCLUDED.custom_ids, done = EXCLUDED.done, seq = nextval('llm_batches_seq')",
            )?;
            c.client.execute(&st, &[&file, &endpoint, &id, &ids, &done]).map(drop)
        })
    }

    fn artifact_head(&self, name: &str) -> Result<Option<ArtifactHead>, StoreError> {
        let name = name.to_string();
        self.call(move |c| {
            let st = c.prepared("SELECT sha256, bytes, chunks, generation FROM artifact_heads WHERE name = $1")?;
            Ok(c.client.query_opt(&st, &[&name])?.map(|r| ArtifactHead {
                sha256: r.get::<_, Vec<u8>>(0).try_into().unwrap_or([0; 32]),
                bytes: r.get::<_, i64>(1) as u64,
                chunks: r.get::<_, i32>(2) as u32,
                generation: r.get(3),
            }))
        })
    }

    fn read_artifact_chunk(&self, head: &ArtifactHead, name: &str, chunk: u32) -> Result<Vec<u8>, StoreError> {
        let (name, generation, chunk) = (name.to_string(), head.generation, chunk as i32);
        self.call(move |c| {
            let st = c.prepared("SELECT data FROM artifacts WHERE name = $1 AND generation = $2 AND chunk = $3")?;
            Ok(c.client.query_opt(&st, &[&name, &generation, &chunk])?.map(|r| r.get(0)).unwrap_or_default())
        })
    }

    fn write_artifact_chunk(
        &mut self,
        name: &str,
        generation: i64,
        chunk: u32,
        data: Vec<u8>,
    ) -> Result<(), StoreError> {
        let (name, chunk) = (name.to_string(), chunk as i32);
        self.call(move |c| {
            let st = c.prepared(
                "INSERT INTO artifacts (name, generation, chunk, data) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name, generation, chunk) DO UPDATE SET data = EXCLUDED.data",
            )?;
            c.client.execute(&st, &[&name, &generation, &chunk, &data]).map(drop)
        })
    }

    fn publish_artifact(&mut self, name: &str, head: &ArtifactHead) -> Result<(), StoreError> {
        let name = name.to_string();
        let (sha, bytes, chunks, generation) =
            (head.sha256.to_vec(), head.bytes as i64, head.chunks as i32, head.generation);
        self.call(move |c| {
            let mut tx = c.client.transaction()?;
            tx.execute(
                "INSERT INTO artifact_heads (name, generation, sha256, bytes, chunks) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (name) DO UPDATE SET generation = EXCLUDED.generation, sha256 = EXCLUDED.sha256,
                     bytes = EXCLUDED.bytes, chunks = EXCLUDED.chunks, saved_at = now()",
                &[&name, &generation, &sha, &bytes, &chunks],
            )?;
            tx.execute("DELETE FROM artifacts WHERE name = $1 AND generation <> $2", &[&name, &generation])?;
            tx.commit()
        })
    }
}
