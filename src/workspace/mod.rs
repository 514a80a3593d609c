//! The workspace: a crash-safe store of everything a stage produced, keyed by content.
//!
//! It holds embeddings keyed by (model id, content hash), LLM answers keyed by call, judge verdicts
//! keyed by (judge id, hash of query and passage), the snapshot of the last run's inputs, the batch
//! jobs in flight and the saved HNSW graph. Two backends hold the same tables under the same keys:
//! a SQLite file in a folder ([`sqlite`], the default: one machine, no server) and a PostgreSQL
//! database ([`pg`], `workspace = "postgres://user@host/db"`: shared by many machines). Each write is
//! one transaction, so a crash or a kill loses at most the batch in flight, and a rerun finds
//! everything committed before it. Both schemas are versioned and checked on open.

mod pg;
pub mod queue;
mod sqlite;

use crate::hash::ContentHash;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Errors of the workspace store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The folder could not be created.
    #[error("cannot create workspace folder {path}: {source}")]
    Dir {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// SQLite failed (disk full, corrupt file, …).
    #[error("workspace database {path}: {source}{}", sqlite::disk_hint(.source))]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// PostgreSQL failed (unreachable past the reconnect window, refused login, …).
    #[error("workspace {url}: {}{}", pg::describe(.error), pg::hint(.error))]
    Postgres {
        /// The database URL (it never holds a password).
        url: String,
        /// The driver's error (described in the message, so not a source: it would repeat).
        error: postgres::Error,
    },
    /// The workspace cannot be used as asked: written by a newer tripletgen or another schema
    /// history, coordinated by another run, a copy destination that is not empty, a stored file
    /// that fails its checksum, a connection thread that stopped.
    #[error("workspace {at}: {why}")]
    Refused {
        /// Path or URL.
        at: String,
        /// What is wrong and what to do.
        why: String,
    },
    /// A stored value has the wrong shape (written by another model or version).
    #[error("workspace {at}: stored embedding has {got} bytes, expected {expected}")]
    Corrupt {
        /// Path or URL.
        at: String,
        /// Bytes found.
        got: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// A local file of the workspace (the saved index) could not be read or written.
    #[error("workspace {at}: {path}: {source}")]
    File {
        /// Path or URL of the workspace.
        at: String,
        /// The local file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Where a workspace lives: `workspace = "DIR"` (SQLite in that folder) or
/// `workspace = "postgres://user@host:port/db"` (a database; the password comes from `PGPASSWORD`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A folder holding `tripletgen.sqlite` and `index/`.
    Dir(PathBuf),
    /// A PostgreSQL connection URL, as written (checked by [`Location::check`]).
    Postgres(String),
}

impl Location {
    /// Read a `--workspace` / `workspace =` value: a URL when it starts with `postgres://` or
    /// `postgresql://`, else a folder. Never fails: [`Location::check`] judges the URL, so that an
    /// error never has to repeat a URL that may hold a password.
    pub fn parse(s: &str) -> Location {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Location::Postgres(s.to_string())
        } else {
            Location::Dir(PathBuf::from(s))
        }
    }

    /// Why this location cannot be used, if it cannot (a password in the URL, TLS, a garbled URL).
    pub fn check(&self) -> Result<(), String> {
        match self {
            Location::Dir(_) => Ok(()),
            Location::Postgres(url) => pg::check_url(url),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Dir(d) => write!(f, "{}", d.display()),
            Location::Postgres(u) => f.write_str(u),
        }
    }
}

impl Serialize for Location {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Location {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Location::parse(&String::deserialize(d)?))
    }
}

impl std::str::FromStr for Location {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Location::parse(s))
    }
}

/// What a judge said about one (query, passage), as stored (`crate::judge` re-exports it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// Relevance in [0, 1] (see [`StageConfig::threshold`]).
    pub score: f32,
    /// The graded label, for judges that give one (LLM: 0-3).
    pub label: Option<u8>,
    /// The judge's raw answer, when it has one worth keeping (LLM text).
    pub detail: Option<String>,
}

/// One input (document or query) as the last completed run saw it: its content hash and what the
/// run produced from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Produced {
    /// Document or query id.
    pub id: String,
    /// Content hash of its text.
    pub hash: ContentHash,
    /// Accepted generated queries made from it (synthetic queries of a document, variants of a query).
    pub generated: usize,
    /// Mined negatives: of a query, all its rows' negatives; of a document, the rows that use it as one.
    pub negatives: usize,
}

/// How the inputs changed since the last completed run with this workspace.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Changes {
    /// True when the workspace had no previous run.
    pub first_run: bool,
    /// Ids new since the last run.
    pub added: usize,
    /// Ids whose text changed.
    pub changed: usize,
    /// Ids gone since the last run.
    pub deleted: usize,
    /// Ids with the same text.
    pub unchanged: usize,
}

/// A batch job row: (input file, job id, custom ids as JSON).
type BatchRow = (String, Option<String>, String);

/// A stored file (the saved HNSW graph) in a database workspace: its SHA-256 and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArtifactHead {
    sha256: [u8; 32],
    bytes: u64,
    chunks: u32,
    generation: i64,
}

/// The tables of a workspace, one implementation per backend. Values go in and out as stored
/// (embeddings as little-endian f32 bytes); [`Store`] does the decoding and the checks once.
pub(crate) trait Backend: Send {
    /// Path or URL, for messages.
    fn describe(&self) -> String;
    fn get_embeddings(&self, model: &str, keys: &[ContentHash]) -> Result<Vec<Option<Vec<u8>>>, StoreError>;
    fn put_embeddings(&mut self, model: &str, items: Vec<(ContentHash, Vec<u8>)>) -> Result<(), StoreError>;
    fn get_llm(&self, key: &ContentHash) -> Result<Option<String>, StoreError>;
    fn put_llm(&mut self, key: &ContentHash, strategy: &str, model: &str, response: &str) -> Result<(), StoreError>;
    fn get_judgements(&self, judge: &str, keys: &[ContentHash]) -> Result<Vec<Option<Scored>>, StoreError>;
    fn put_judgements(&mut self, judge: &str, items: &[(ContentHash, Scored)]) -> Result<(), StoreError>;
    /// The snapshot of `kind`, ordered by the bytes of the id.
    fn snapshot(&self, kind: &str) -> Result<Vec<Produced>, StoreError>;
    /// Replace the snapshot of `kind`, in one transaction.
    fn save_snapshot(&mut self, kind: &str, items: &[Produced]) -> Result<(), StoreError>;
    fn count(&self, what: Count<'_>) -> Result<i64, StoreError>;
    /// Open batch jobs of `endpoint`, oldest save first.
    fn open_batches(&mut self, endpoint: &str) -> Result<Vec<BatchRow>, StoreError>;
    fn save_batch(&mut self, r: &crate::llm::BatchRecord, custom_ids: &str) -> Result<(), StoreError>;
    /// Up to `limit` rows of `table` after `after` (a key this backend returned), in key order.
    fn scan(&self, table: Table, after: Option<&Row>, limit: usize) -> Result<Vec<Row>, StoreError>;
    /// Every batch job record (done or not), oldest save first.
    fn all_batches(&self) -> Result<Vec<crate::llm::BatchRecord>, StoreError>;
    /// The head of a stored file (databases only: a folder keeps its files as files).
    fn artifact_head(&self, _name: &str) -> Result<Option<ArtifactHead>, StoreError> {
        Ok(None)
    }
    fn read_artifact_chunk(&self, _head: &ArtifactHead, _name: &str, _chunk: u32) -> Result<Vec<u8>, StoreError> {
        unreachable!("only databases store files")
    }
    /// Store chunk `chunk` of generation `generation` of `name` (not yet visible).
    fn write_artifact_chunk(
        &mut self,
        _name: &str,
        _generation: i64,
        _chunk: u32,
        _data: Vec<u8>,
    ) -> Result<(), StoreError> {
        unreachable!("only databases store files")
    }
    /// Make `head` the stored version of `name` and drop every other generation, in one transaction.
    fn publish_artifact(&mut self, _name: &str, _head: &ArtifactHead) -> Result<(), StoreError> {
        unreachable!("only databases store files")
    }
}

/// The keyed tables that [`Backend::scan`] pages through (for `workspace copy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    Embeddings,
    Llm,
    Judgements,
}

/// One row of a [`Table`], as stored.
#[derive(Debug, Clone)]
pub(crate) enum Row {
    Embedding { model: String, key: ContentHash, vec: Vec<u8> },
    Llm { key: ContentHash, strategy: String, model: String, response: String },
    Judgement { judge: String, key: ContentHash, scored: Scored },
}

impl Row {
    /// The row's key as (group, key): (model, key), ("", key), (judge, key).
    fn sort_key(&self) -> (&str, &ContentHash) {
        match self {
            Row::Embedding { model, key, .. } => (model, key),
            Row::Llm { key, .. } => ("", key),
            Row::Judgement { judge, key, .. } => (judge, key),
        }
    }
}

/// What [`Backend::count`] counts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Count<'a> {
    Embeddings(&'a str),
    Llm,
    Judgements(&'a str),
}

pub mod copy;

/// The workspace store, whichever backend holds it.
pub struct Store {
    backend: Box<dyn Backend>,
    location: Location,
    /// The work queue, when this process coordinates a run on a database workspace.
    queue: Option<queue::Queue>,
}

/// The saved HNSW graph: a file of the workspace folder, or a stored file of a database workspace.
pub const GRAPH_FILE: &str = "index/hnsw.bin";

/// Files of a database workspace are stored in pieces of this size.
const ARTIFACT_CHUNK: usize = 16 << 20;

impl Store {
    /// Open (or create) the SQLite store in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Box::new(sqlite::Sqlite::open(dir)?),
            location: Location::Dir(dir.to_path_buf()),
            queue: None,
        })
    }

    /// Open (or create) the store at `location`: a folder, or a PostgreSQL database (connecting,
    /// and creating or upgrading its tables).
    pub fn connect(location: &Location) -> Result<Store, StoreError> {
        match location {
            Location::Dir(d) => Store::open(d),
            Location::Postgres(url) => {
                Ok(Store { backend: Box::new(pg::Pg::connect(url)?), location: location.clone(), queue: None })
            }
        }
    }

    /// Coordinate through `queue`: the stages hand their expensive work to it (see [`queue`]).
    pub fn attach_queue(&mut self, queue: queue::Queue) {
        self.queue = Some(queue);
    }

    /// The queue, taken out while a stage works with it (the stage's own work then goes to the
    /// store directly); give it back with [`Store::attach_queue`].
    pub fn take_queue(&mut self) -> Option<queue::Queue> {
        self.queue.take()
    }

    /// End the coordinated run, if any, as done.
    pub fn finish_queue(&mut self) -> Result<(), StoreError> {
        self.queue.take().map_or(Ok(()), |mut q| q.finish(true))
    }

    /// Where this store lives.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Look up embeddings of dimension `dim`; `None` where not stored.
    pub fn get_embeddings(
        &self,
        model: &str,
        keys: &[ContentHash],
        dim: usize,
    ) -> Result<Vec<Option<Vec<f32>>>, StoreError> {
        self.backend
            .get_embeddings(model, keys)?
            .into_iter()
            .map(|blob| match blob {
                None => Ok(None),
                Some(b) if b.len() == dim * 4 => {
                    Ok(Some(b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect()))
                }
                Some(b) => Err(StoreError::Corrupt { at: self.backend.describe(), got: b.len(), expected: dim * 4 }),
            })
            .collect()
    }

    /// Store embeddings in one transaction.
    pub fn put_embeddings(&mut self, model: &str, items: &[(ContentHash, &[f32])]) -> Result<(), StoreError> {
        let rows = items.iter().map(|(k, v)| (*k, v.iter().flat_map(|x| x.to_le_bytes()).collect())).collect();
        self.backend.put_embeddings(model, rows)
    }

    /// Compare `items` (id, content hash) of `kind` ("document", "query") with the last snapshot.
    pub fn compare_snapshot(&self, kind: &str, items: &[(String, ContentHash)]) -> Result<Changes, StoreError> {
        let mut previous: std::collections::HashMap<String, ContentHash> =
            self.backend.snapshot(kind)?.into_iter().map(|p| (p.id, p.hash)).collect();
        let mut c = Changes { first_run: previous.is_empty(), ..Changes::default() };
        for (id, hash) in items {
            match previous.remove(id) {
                None => c.added += 1,
                Some(h) if h == *hash => c.unchanged += 1,
                Some(_) => c.changed += 1,
            }
        }
        c.deleted = previous.len();
        Ok(c)
    }

    /// Replace the snapshot of `kind` with `items`, in one transaction (call after a run completed).
    pub fn save_snapshot(&mut self, kind: &str, items: &[Produced]) -> Result<(), StoreError> {
        self.backend.save_snapshot(kind, items)
    }

    /// The snapshot of `kind`, by id.
    pub fn snapshot(&self, kind: &str) -> Result<Vec<Produced>, StoreError> {
        self.backend.snapshot(kind)
    }

    /// A stored LLM answer (JSON of the response) for a request key.
    pub fn get_llm(&self, key: &ContentHash) -> Result<Option<String>, StoreError> {
        self.backend.get_llm(key)
    }

    /// Store one LLM answer the moment it arrives (its own transaction).
    pub fn put_llm(
        &mut self,
        key: &ContentHash,
        strategy: &str,
        model: &str,
        response: &str,
    ) -> Result<(), StoreError> {
        self.backend.put_llm(key, strategy, model, response)
    }

    /// Stored verdicts of `judge` for (query, passage) keys; `None` where not stored.
    pub fn get_judgements(&self, judge: &str, keys: &[ContentHash]) -> Result<Vec<Option<Scored>>, StoreError> {
        self.backend.get_judgements(judge, keys)
    }

    /// Store verdicts of `judge` in one transaction.
    pub fn put_judgements(&mut self, judge: &str, items: &[(ContentHash, Scored)]) -> Result<(), StoreError> {
        self.backend.put_judgements(judge, items)
    }

    /// Number of stored verdicts of `judge`.
    pub fn count_judgements(&self, judge: &str) -> Result<i64, StoreError> {
        self.backend.count(Count::Judgements(judge))
    }

    /// Number of stored LLM answers.
    pub fn count_llm(&self) -> Result<i64, StoreError> {
        self.backend.count(Count::Llm)
    }

    /// Number of stored embeddings for a model.
    pub fn count_embeddings(&self, model: &str) -> Result<i64, StoreError> {
        self.backend.count(Count::Embeddings(model))
    }

    /// The folder where this workspace keeps files that are used in place (the HNSW graph, the
    /// BM25 index): the workspace folder itself, or for a database `<output_dir>/workspace-cache`
    /// (the graph is copied in and out with [`Store::fetch_file`] and [`Store::save_file`]).
    pub fn local_dir(&self, output_dir: &Path) -> PathBuf {
        match &self.location {
            Location::Dir(d) => d.clone(),
            Location::Postgres(_) => output_dir.join("workspace-cache"),
        }
    }

    /// Make `local` (the file `name` of a database workspace) equal to the stored one: download it
    /// when it differs, delete it when none is stored. Nothing to do for a folder workspace.
    pub fn fetch_file(&self, name: &str, local: &Path) -> Result<(), StoreError> {
        if matches!(self.location, Location::Dir(_)) {
            return Ok(());
        }
        let file_err = |source| StoreError::File { at: self.backend.describe(), path: local.to_path_buf(), source };
        let Some(head) = self.backend.artifact_head(name)? else {
            return match std::fs::remove_file(local) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(file_err(e)),
                _ => Ok(()),
            };
        };
        if sha256_of(local).ok().flatten() == Some(head.sha256) {
            return Ok(());
        }
        let mut out =
            crate::fsx::AtomicFile::create(local, ("artifact-synced", "artifact-renamed")).map_err(file_err)?;
        let mut sha = <sha2::Sha256 as sha2::Digest>::new();
        for i in 0..head.chunks {
            let data = self.backend.read_artifact_chunk(&head, name, i)?;
            sha2::Digest::update(&mut sha, &data);
            std::io::Write::write_all(out.file(), &data).map_err(file_err)?;
        }
        let got: [u8; 32] = sha2::Digest::finalize(sha).into();
        if got != head.sha256 {
            return Err(StoreError::Refused {
                at: self.backend.describe(),
                why: format!("the stored {name} does not match its checksum (it changed while being read); rerun"),
            });
        }
        out.commit().map_err(file_err)
    }

    /// Store `local` as the file `name` of a database workspace when it differs from the stored
    /// one (nothing to do for a folder workspace, or when `local` does not exist).
    pub fn save_file(&mut self, name: &str, local: &Path) -> Result<(), StoreError> {
        if matches!(self.location, Location::Dir(_)) {
            return Ok(());
        }
        let at = self.backend.describe();
        let file_err = |source| StoreError::File { at: at.clone(), path: local.to_path_buf(), source };
        let Some(sha256) = sha256_of(local).map_err(file_err)? else { return Ok(()) };
        let previous = self.backend.artifact_head(name)?;
        if previous.as_ref().map(|h| h.sha256) == Some(sha256) {
            return Ok(());
        }
        let generation = previous.map_or(1, |h| h.generation + 1);
        let mut f = std::fs::File::open(local).map_err(file_err)?;
        let (mut chunks, mut bytes) = (0u32, 0u64);
        loop {
            let mut data = Vec::with_capacity(ARTIFACT_CHUNK);
            std::io::Read::take(&mut f, ARTIFACT_CHUNK as u64).read_to_end(&mut data).map_err(file_err)?;
            if data.is_empty() && chunks > 0 {
                break;
            }
            bytes += data.len() as u64;
            let last = data.len() < ARTIFACT_CHUNK;
            self.backend.write_artifact_chunk(name, generation, chunks, data)?;
            chunks += 1;
            if last {
                break;
            }
        }
        self.backend.publish_artifact(name, &ArtifactHead { sha256, bytes, chunks, generation })
    }
}

use std::io::Read as _;

/// SHA-256 of a file, `None` when it does not exist.
fn sha256_of(path: &Path) -> std::io::Result<Option<[u8; 32]>> {
    match crate::hash::sha256_file(path) {
        Ok(hex) => {
            let mut sha = [0u8; 32];
            hex::decode_to_slice(hex, &mut sha).expect("sha256_file gives 64 hex digits");
            Ok(Some(sha))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Batch jobs of `llm.mode = "batch"`, kept so that a rerun finishes them instead of paying again.
impl crate::llm::BatchJournal for Store {
    fn open_batches(&mut self, endpoint: &str) -> Result<Vec<crate::llm::BatchRecord>, String> {
        let at = self.backend.describe();
        let rows = self.backend.open_batches(endpoint).map_err(|e| e.to_string())?;
        rows.into_iter()
            .map(|(input_file, batch_id, ids)| {
                Ok(crate::llm::BatchRecord {
                    custom_ids: serde_json::from_str(&ids)
                        .map_err(|e| format!("{at}: a garbled batch record ({e})"))?,
                    input_file,
                    endpoint: endpoint.to_string(),
                    batch_id,
                    done: false,
                })
            })
            .collect()
    }

    fn save_batch(&mut self, r: &crate::llm::BatchRecord) -> Result<(), String> {
        let ids = serde_json::to_string(&r.custom_ids).expect("strings serialise");
        self.backend.save_batch(r, &ids).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let k1 = ContentHash::of("a");
        let k2 = ContentHash::of("b");
        {
            let mut s = Store::open(dir.path()).unwrap();
            s.put_embeddings("m", &[(k1, &[1.0, -2.5])]).unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        let got = s.get_embeddings("m", &[k1, k2], 2).unwrap();
        assert_eq!(got, vec![Some(vec![1.0, -2.5]), None]);
        assert_eq!(s.get_embeddings("other", &[k1], 2).unwrap(), vec![None]);
        assert!(matches!(s.get_embeddings("m", &[k1], 3), Err(StoreError::Corrupt { .. })));
        assert_eq!(s.count_embeddings("m").unwrap(), 1);
    }

    #[test]
    fn snapshot_diff_counts_added_changed_deleted_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let h = |id: &str, t: &str| (id.to_string(), ContentHash::of(t));
        let first = [h("a", "1"), h("b", "2"), h("c", "3")];
        assert!(s.compare_snapshot("document", &first).unwrap().first_run);
        let produced: Vec<Produced> = first
            .iter()
            .enumerate()
            .map(|(i, (id, hash))| Produced { id: id.clone(), hash: *hash, generated: i, negatives: 2 * i })
            .collect();
        s.save_snapshot("document", &produced).unwrap();
        assert_eq!(s.snapshot("document").unwrap(), produced);
        let now = [h("a", "1"), h("b", "2b"), h("d", "4")];
        let c = s.compare_snapshot("document", &now).unwrap();
        assert_eq!(c, Changes { first_run: false, added: 1, changed: 1, deleted: 1, unchanged: 1 });
        assert!(s.compare_snapshot("query", &now).unwrap().first_run, "kinds are separate");
    }

    #[test]
    fn locations_are_urls_or_folders_and_a_password_in_a_url_is_refused_without_repeating_it() {
        assert_eq!(Location::parse("ws"), Location::Dir("ws".into()));
        assert!(matches!(Location::parse("postgres://u@h/db"), Location::Postgres(_)));
        assert!(matches!(Location::parse("postgresql://u@h:5433/db"), Location::Postgres(_)));
        assert_eq!(Location::parse("postgres://u@h/db").check(), Ok(()));
        for bad in ["postgres://u:s3cr3t@h/db", "postgres://u@h/db?password=s3cr3t"] {
            let e = Location::parse(bad).check().unwrap_err();
            assert!(e.contains("PGPASSWORD") && !e.contains("s3cr3t"), "{e}");
        }
        let e = Location::parse("postgres://u@h/db?sslmode=sometimes").check().unwrap_err();
        assert!(e.contains("sslmode=sometimes") && e.contains("verify-full"), "{e}");
        let e = Location::parse("postgres://u@h/db?sslrootcert=/etc/ca.pem").check().unwrap_err();
        assert!(e.contains("sslmode=verify-full"), "{e}");
        let e = Location::parse("postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
            .check()
            .unwrap_err();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        // The TLS parameters are taken off before the driver parses the rest.
        assert!(Location::parse("postgres://u@h/db?sslmode=disable&connect_timeout=5").check().is_ok());
        assert!(Location::parse("postgres://u@h:notaport/db").check().is_err());
    }
}
