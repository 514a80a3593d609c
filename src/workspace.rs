//! The workspace: a crash-safe SQLite store of everything a stage produced, keyed by content.
//!
//! It holds embeddings keyed by (model id, content hash), LLM answers keyed by call, judge verdicts
//! keyed by (judge id, hash of query and passage), and the snapshot of the last run's inputs. SQLite in WAL mode commits each batch
//! atomically, so a crash or a kill loses at most the batch in flight, and a rerun finds everything
//! committed before it.

use crate::hash::ContentHash;
use rusqlite::{Connection, OptionalExtension, params};
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
    #[error("workspace database {path}: {source}{}", disk_hint(.source))]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// A stored value has the wrong shape (written by another model or version).
    #[error("workspace database {path}: stored embedding has {got} bytes, expected {expected}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// Bytes found.
        got: usize,
        /// Bytes expected.
        expected: usize,
    },
}

/// What to do about a failed write: SQLite reports a full disk as "database or disk is full" and a
/// write refused for another reason (a file size limit, a failing device) as "disk I/O error".
fn disk_hint(e: &rusqlite::Error) -> &'static str {
    use rusqlite::ErrorCode::{DiskFull, SystemIoFailure};
    match e.sqlite_error_code() {
        Some(DiskFull | SystemIoFailure) => {
            " (no space left, or the write was refused: free space and rerun; everything stored before is kept and reused)"
        }
        _ => "",
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

/// The workspace database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS embeddings (
    model TEXT NOT NULL,
    key   BLOB NOT NULL,
    vec   BLOB NOT NULL,
    PRIMARY KEY (model, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS llm_cache (
    key      BLOB NOT NULL PRIMARY KEY,
    strategy TEXT NOT NULL,
    model    TEXT NOT NULL,
    response TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshot (
    kind      TEXT NOT NULL,
    id        TEXT NOT NULL,
    hash      BLOB NOT NULL,
    generated INTEGER NOT NULL DEFAULT 0,
    negatives INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS llm_batches (
    input_file TEXT NOT NULL PRIMARY KEY,
    endpoint   TEXT NOT NULL,
    batch_id   TEXT,
    custom_ids TEXT NOT NULL,
    done       INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS judgements (
    judge  TEXT NOT NULL,
    key    BLOB NOT NULL,
    score  REAL NOT NULL,
    label  INTEGER,
    detail TEXT,
    PRIMARY KEY (judge, key)
) WITHOUT ROWID;
";

/// Columns added to `snapshot` after its first version (added to older workspaces on open).
const SNAPSHOT_ADDED: &[&str] = &["generated", "negatives"];

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

impl Store {
    /// Open (or create) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir { path: dir.to_path_buf(), source })?;
        let path = dir.join("tripletgen.sqlite");
        let sq = |source| StoreError::Sqlite { path: path.clone(), source };
        let conn = Connection::open(&path).map_err(sq)?;
        conn.busy_timeout(std::time::Duration::from_secs(30)).map_err(sq)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sq)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(sq)?;
        conn.execute_batch(SCHEMA).map_err(sq)?;
        let columns: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('snapshot')")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(sq)?;
        for col in SNAPSHOT_ADDED.iter().filter(|c| !columns.iter().any(|x| x == *c)) {
            conn.execute_batch(&format!("ALTER TABLE snapshot ADD COLUMN {col} INTEGER NOT NULL DEFAULT 0"))
                .map_err(sq)?;
        }
        Ok(Store { conn, path })
    }

    fn sq(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |source| StoreError::Sqlite { path: self.path.clone(), source }
    }

    /// Look up embeddings of dimension `dim`; `None` where not stored.
    pub fn get_embeddings(
        &self,
        model: &str,
        keys: &[ContentHash],
        dim: usize,
    ) -> Result<Vec<Option<Vec<f32>>>, StoreError> {
        let mut stmt =
            self.conn.prepare_cached("SELECT vec FROM embeddings WHERE model = ?1 AND key = ?2").map_err(self.sq())?;
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let blob: Option<Vec<u8>> =
                stmt.query_row(params![model, &k.0[..]], |r| r.get(0)).optional().map_err(self.sq())?;
            out.push(match blob {
                None => None,
                Some(b) if b.len() == dim * 4 => {
                    Some(b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect())
                }
                Some(b) => {
                    return Err(StoreError::Corrupt { path: self.path.clone(), got: b.len(), expected: dim * 4 });
                }
            });
        }
        Ok(out)
    }

    /// Store embeddings in one transaction.
    pub fn put_embeddings(&mut self, model: &str, items: &[(ContentHash, &[f32])]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sq = |source| StoreError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(sq)?;
        {
            let mut stmt = tx
                .prepare_cached("INSERT OR REPLACE INTO embeddings (model, key, vec) VALUES (?1, ?2, ?3)")
                .map_err(sq)?;
            let mut buf = Vec::new();
            for (k, v) in items {
                buf.clear();
                for x in *v {
                    buf.extend_from_slice(&x.to_le_bytes());
                }
                stmt.execute(params![model, &k.0[..], &buf]).map_err(sq)?;
            }
        }
        tx.commit().map_err(sq)
    }

    /// Compare `items` (id, content hash) of `kind` ("document", "query") with the last snapshot.
    pub fn compare_snapshot(&self, kind: &str, items: &[(String, ContentHash)]) -> Result<Changes, StoreError> {
        let mut stmt = self.conn.prepare("SELECT id, hash FROM snapshot WHERE kind = ?1").map_err(self.sq())?;
        let mut previous: std::collections::HashMap<String, Vec<u8>> = stmt
            .query_map(params![kind], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)))
            .map_err(self.sq())?
            .collect::<Result<_, _>>()
            .map_err(self.sq())?;
        let mut c = Changes { first_run: previous.is_empty(), ..Changes::default() };
        for (id, hash) in items {
            match previous.remove(id) {
                None => c.added += 1,
                Some(h) if h == hash.0 => c.unchanged += 1,
                Some(_) => c.changed += 1,
            }
        }
        c.deleted = previous.len();
        Ok(c)
    }

    /// Replace the snapshot of `kind` with `items`, in one transaction (call after a run completed).
    pub fn save_snapshot(&mut self, kind: &str, items: &[Produced]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sq = |source| StoreError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(sq)?;
        tx.execute("DELETE FROM snapshot WHERE kind = ?1", params![kind]).map_err(sq)?;
        {
            let mut stmt = tx
                .prepare_cached("INSERT OR REPLACE INTO snapshot (kind, id, hash, generated, negatives) VALUES (?1, ?2, ?3, ?4, ?5)")
                .map_err(sq)?;
            for p in items {
                stmt.execute(params![kind, p.id, &p.hash.0[..], p.generated as i64, p.negatives as i64]).map_err(sq)?;
            }
        }
        tx.commit().map_err(sq)
    }

    /// The snapshot of `kind`, by id.
    pub fn snapshot(&self, kind: &str) -> Result<Vec<Produced>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, hash, generated, negatives FROM snapshot WHERE kind = ?1 ORDER BY id")
            .map_err(self.sq())?;
        stmt.query_map(params![kind], |r| {
            let hash: Vec<u8> = r.get(1)?;
            Ok(Produced {
                id: r.get(0)?,
                hash: ContentHash(hash.try_into().unwrap_or([0; 32])),
                generated: r.get::<_, i64>(2)? as usize,
                negatives: r.get::<_, i64>(3)? as usize,
            })
        })
        .map_err(self.sq())?
        .collect::<Result<_, _>>()
        .map_err(self.sq())
    }

    /// The folder of this workspace.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// A stored LLM answer (JSON of the response) for a request key.
    pub fn get_llm(&self, key: &ContentHash) -> Result<Option<String>, StoreError> {
        self.conn
            .prepare_cached("SELECT response FROM llm_cache WHERE key = ?1")
            .and_then(|mut st| st.query_row(params![&key.0[..]], |r| r.get(0)).optional())
            .map_err(self.sq())
    }

    /// Store one LLM answer the moment it arrives (its own transaction).
    pub fn put_llm(
        &mut self,
        key: &ContentHash,
        strategy: &str,
        model: &str,
        response: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO llm_cache (key, strategy, model, response) VALUES (?1, ?2, ?3, ?4)")
            .and_then(|mut st| st.execute(params![&key.0[..], strategy, model, response]))
            .map(|_| ())
            .map_err(self.sq())
    }

    /// Stored verdicts of `judge` for (query, passage) keys; `None` where not stored.
    pub fn get_judgements(&self, judge: &str, keys: &[ContentHash]) -> Result<Vec<Option<Scored>>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT score, label, detail FROM judgements WHERE judge = ?1 AND key = ?2")
            .map_err(self.sq())?;
        keys.iter()
            .map(|k| {
                stmt.query_row(params![judge, &k.0[..]], |r| {
                    Ok(Scored {
                        score: r.get::<_, f64>(0)? as f32,
                        label: r.get::<_, Option<i64>>(1)?.map(|l| l.clamp(0, 255) as u8),
                        detail: r.get(2)?,
                    })
                })
                .optional()
                .map_err(self.sq())
            })
            .collect()
    }

    /// Store verdicts of `judge` in one transaction.
    pub fn put_judgements(&mut self, judge: &str, items: &[(ContentHash, Scored)]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sq = |source| StoreError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(sq)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO judgements (judge, key, score, label, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(sq)?;
            for (k, s) in items {
                stmt.execute(params![judge, &k.0[..], f64::from(s.score), s.label.map(i64::from), s.detail])
                    .map_err(sq)?;
            }
        }
        tx.commit().map_err(sq)
    }

    /// Number of stored verdicts of `judge`.
    pub fn count_judgements(&self, judge: &str) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM judgements WHERE judge = ?1", params![judge], |r| r.get(0))
            .map_err(self.sq())
    }

    /// Number of stored LLM answers.
    pub fn count_llm(&self) -> Result<i64, StoreError> {
        self.conn.query_row("SELECT COUNT(*) FROM llm_cache", [], |r| r.get(0)).map_err(self.sq())
    }

    /// Number of stored embeddings for a model.
    pub fn count_embeddings(&self, model: &str) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM embeddings WHERE model = ?1", params![model], |r| r.get(0))
            .map_err(self.sq())
    }
}

/// Batch jobs of `llm.mode = "batch"`, kept so that a rerun finishes them instead of paying again.
impl crate::llm::BatchJournal for Store {
    fn open_batches(&mut self, endpoint: &str) -> Result<Vec<crate::llm::BatchRecord>, String> {
        let rows: Vec<(String, Option<String>, String)> = self
            .conn
            .prepare_cached(
                "SELECT input_file, batch_id, custom_ids FROM llm_batches WHERE endpoint = ?1 AND done = 0 ORDER BY rowid",
            )
            .and_then(|mut st| st.query_map(params![endpoint], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect())
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        rows.into_iter()
            .map(|(input_file, batch_id, ids)| {
                Ok(crate::llm::BatchRecord {
                    custom_ids: serde_json::from_str(&ids)
                        .map_err(|e| format!("{}: a garbled batch record ({e})", self.path.display()))?,
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
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO llm_batches (input_file, endpoint, batch_id, custom_ids, done) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut st| st.execute(params![r.input_file, r.endpoint, r.batch_id, ids, r.done]))
            .map(|_| ())
            .map_err(|e| format!("{}: {e}", self.path.display()))
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
    fn a_workspace_of_the_first_version_gains_the_new_snapshot_columns() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("tripletgen.sqlite")).unwrap();
        conn.execute_batch("CREATE TABLE snapshot (kind TEXT NOT NULL, id TEXT NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (kind, id)) WITHOUT ROWID;
             INSERT INTO snapshot VALUES ('document', 'a', zeroblob(32));").unwrap();
        drop(conn);
        let s = Store::open(dir.path()).unwrap();
        let rows = s.snapshot("document").unwrap();
        assert_eq!((rows.len(), rows[0].generated, rows[0].negatives), (1, 0, 0));
    }
}
