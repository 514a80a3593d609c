//! The folder workspace: `<dir>/tripletgen.sqlite` in WAL mode (one machine, no server). Its schema
//! version is SQLite's `user_version`; a workspace of an older version is upgraded on open, a newer
//! one refused.

use super::{Backend, BatchRow, Count, Produced, Row, Scored, StoreError, Table};
use crate::hash::ContentHash;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};

/// What to do about a failed write: SQLite reports a full disk as "database or disk is full" and a
/// write refused for another reason (a file size limit, a failing device) as "disk I/O error".
pub(super) fn disk_hint(e: &rusqlite::Error) -> &'static str {
    use rusqlite::ErrorCode::{DiskFull, SystemIoFailure};
    match e.sqlite_error_code() {
        Some(DiskFull | SystemIoFailure) => {
            " (no space left, or the write was refused: free space and rerun; everything stored before is kept and reused)"
        }
        _ => "",
    }
}

/// Migration 1 (`user_version` 0 → 1): the tables. Workspaces written before versions were
/// recorded have `user_version` 0 and some of these tables already; `IF NOT EXISTS` and
/// [`SNAPSHOT_ADDED`] bring them up to date.
const SCHEMA_1: &str = "
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

/// Columns added to `snapshot` after its first version (added to older workspaces by migration 1).
const SNAPSHOT_ADDED: &[&str] = &["generated", "negatives"];

/// The schema version this build writes (SQLite `user_version`).
const VERSION: i64 = 1;

/// A verdict from the columns score, label, detail starting at `at`.
fn scored(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Scored> {
    Ok(Scored {
        score: r.get::<_, f64>(at)? as f32,
        label: r.get::<_, Option<i64>>(at + 1)?.map(|l| l.clamp(0, 255) as u8),
        detail: r.get(at + 2)?,
    })
}

pub(super) struct Sqlite {
    conn: Connection,
    path: PathBuf,
}

impl Sqlite {
    pub(super) fn open(dir: &Path) -> Result<Sqlite, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir { path: dir.to_path_buf(), source })?;
        let path = dir.join("tripletgen.sqlite");
        let sq = |source| StoreError::Sqlite { path: path.clone(), source };
        let mut conn = Connection::open(&path).map_err(sq)?;
        conn.busy_timeout(std::time::Duration::from_secs(30)).map_err(sq)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sq)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(sq)?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sq)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sq)?;
        if version > VERSION {
            return Err(StoreError::Refused {
                at: path.display().to_string(),
                why: format!(
                    "it was written by a newer tripletgen (schema version {version}; this one knows up to {VERSION}): upgrade tripletgen, or use another workspace"
                ),
            });
        }
        if version < 1 {
            tx.execute_batch(SCHEMA_1).map_err(sq)?;
            let columns: Vec<String> = tx
                .prepare("SELECT name FROM pragma_table_info('snapshot')")
                .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                .map_err(sq)?;
            for col in SNAPSHOT_ADDED.iter().filter(|c| !columns.iter().any(|x| x == *c)) {
                tx.execute_batch(&format!("ALTER TABLE snapshot ADD COLUMN {col} INTEGER NOT NULL DEFAULT 0"))
                    .map_err(sq)?;
            }
        }
        if version < VERSION {
            tx.pragma_update(None, "user_version", VERSION).map_err(sq)?;
        }
        tx.commit().map_err(sq)?;
        Ok(Sqlite { conn, path })
    }

    fn sq(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |source| StoreError::Sqlite { path: self.path.clone(), source }
    }

    /// Run `f` in one transaction.
    fn tx<T>(&mut self, f: impl FnOnce(&rusqlite::Transaction) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let path = self.path.clone();
        let sq = |source| StoreError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(sq)?;
        let out = f(&tx).map_err(sq)?;
        tx.commit().map_err(sq)?;
        Ok(out)
    }
}

impl Backend for Sqlite {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn get_embeddings(&self, model: &str, keys: &[ContentHash]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut stmt =
            self.conn.prepare_cached("SELECT vec FROM embeddings WHERE model = ?1 AND key = ?2").map_err(self.sq())?;
        keys.iter()
            .map(|k| stmt.query_row(params![model, &k.0[..]], |r| r.get(0)).optional().map_err(self.sq()))
            .collect()
    }

    fn put_embeddings(&mut self, model: &str, items: Vec<(ContentHash, Vec<u8>)>) -> Result<(), StoreError> {
        self.tx(|tx| {
            let mut stmt =
                tx.prepare_cached("INSERT OR REPLACE INTO embeddings (model, key, vec) VALUES (?1, ?2, ?3)")?;
            for (k, v) in &items {
                stmt.execute(params![model, &k.0[..], v])?;
            }
            Ok(())
        })
    }

    fn get_llm(&self, key: &ContentHash) -> Result<Option<String>, StoreError> {
        self.conn
            .prepare_cached("SELECT response FROM llm_cache WHERE key = ?1")
            .and_then(|mut st| st.query_row(params![&key.0[..]], |r| r.get(0)).optional())
            .map_err(self.sq())
    }

    fn put_llm(&mut self, key: &ContentHash, strategy: &str, model: &str, response: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO llm_cache (key, strategy, model, response) VALUES (?1, ?2, ?3, ?4)")
            .and_then(|mut st| st.execute(params![&key.0[..], strategy, model, response]))
            .map(|_| ())
            .map_err(self.sq())
    }

    fn get_judgements(&self, judge: &str, keys: &[ContentHash]) -> Result<Vec<Option<Scored>>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT score, label, detail FROM judgements WHERE judge = ?1 AND key = ?2")
            .map_err(self.sq())?;
        keys.iter()
            .map(|k| stmt.query_row(params![judge, &k.0[..]], |r| scored(r, 0)).optional().map_err(self.sq()))
            .collect()
    }

    fn put_judgements(&mut self, judge: &str, items: &[(ContentHash, Scored)]) -> Result<(), StoreError> {
        self.tx(|tx| {
            let mut stmt = tx.prepare_cached(
                "INSERT OR REPLACE INTO judgements (judge, key, score, label, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (k, s) in items {
                stmt.execute(params![judge, &k.0[..], f64::from(s.score), s.label.map(i64::from), s.detail])?;
            }
            Ok(())
        })
    }

    fn snapshot(&self, kind: &str) -> Result<Vec<Produced>, StoreError> {
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

    fn save_snapshot(&mut self, kind: &str, items: &[Produced]) -> Result<(), StoreError> {
        self.tx(|tx| {
            tx.execute("DELETE FROM snapshot WHERE kind = ?1", params![kind])?;
            let mut stmt = tx.prepare_cached(
                "INSERT OR REPLACE INTO snapshot (kind, id, hash, generated, negatives) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for p in items {
                stmt.execute(params![kind, p.id, &p.hash.0[..], p.generated as i64, p.negatives as i64])?;
            }
            Ok(())
        })
    }

    fn count(&self, what: Count<'_>) -> Result<i64, StoreError> {
        let r = match what {
            Count::Embeddings(m) => {
                self.conn.query_row("SELECT COUNT(*) FROM embeddings WHERE model = ?1", params![m], |r| r.get(0))
            }
            Count::Llm => self.conn.query_row("SELECT COUNT(*) FROM llm_cache", [], |r| r.get(0)),
            Count::Judgements(j) => {
                self.conn.query_row("SELECT COUNT(*) FROM judgements WHERE judge = ?1", params![j], |r| r.get(0))
            }
        };
        r.map_err(self.sq())
    }

    fn scan(&self, table: Table, after: Option<&Row>, limit: usize) -> Result<Vec<Row>, StoreError> {
        let (group, key) = after.map_or(("", &[][..]), |r| {
            let (g, k) = r.sort_key();
            (g, &k.0[..])
        });
        let first = after.is_none();
        let hash = |v: Vec<u8>| ContentHash(v.try_into().unwrap_or([0; 32]));
        let limit = limit as i64;
        let r: rusqlite::Result<Vec<Row>> = match table {
            Table::Embeddings => self
                .conn
                .prepare_cached(
                    "SELECT model, key, vec FROM embeddings WHERE ?1 OR (model, key) > (?2, ?3) ORDER BY model, key LIMIT ?4",
                )
                .and_then(|mut st| {
                    st.query_map(params![first, group, key, limit], |r| {
                        Ok(Row::Embedding { model: r.get(0)?, key: hash(r.get(1)?), vec: r.get(2)? })
                    })?
                    .collect()
                }),
            Table::Llm => self
                .conn
                .prepare_cached(
                    "SELECT key, strategy, model, response FROM llm_cache WHERE ?1 OR key > ?2 ORDER BY key LIMIT ?3",
                )
                .and_then(|mut st| {
                    st.query_map(params![first, key, limit], |r| {
                        Ok(Row::Llm { key: hash(r.get(0)?), strategy: r.get(1)?, model: r.get(2)?, response: r.get(3)? })
                    })?
                    .collect()
                }),
            Table::Judgements => self
                .conn
                .prepare_cached(
                    "SELECT judge, key, score, label, detail FROM judgements WHERE ?1 OR (judge, key) > (?2, ?3)
                     ORDER BY judge, key LIMIT ?4",
                )
                .and_then(|mut st| {
                    st.query_map(params![first, group, key, limit], |r| {
                        Ok(Row::Judgement { judge: r.get(0)?, key: hash(r.get(1)?), scored: scored(r, 2)? })
                    })?
                    .collect()
                }),
        };
        r.map_err(self.sq())
    }

    fn all_batches(&self) -> Result<Vec<crate::llm::BatchRecord>, StoreError> {
        self.conn
            .prepare("SELECT input_file, endpoint, batch_id, custom_ids, done FROM llm_batches ORDER BY rowid")
            .and_then(|mut st| {
                st.query_map([], |r| {
                    let ids: String = r.get(3)?;
                    Ok(crate::llm::BatchRecord {
                        input_file: r.get(0)?,
                        endpoint: r.get(1)?,
                        batch_id: r.get(2)?,
                        custom_ids: serde_json::from_str(&ids).unwrap_or_default(),
                        done: r.get(4)?,
                    })
                })?
                .collect()
            })
            .map_err(self.sq())
    }

    fn open_batches(&mut self, endpoint: &str) -> Result<Vec<BatchRow>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT input_file, batch_id, custom_ids FROM llm_batches WHERE endpoint = ?1 AND done = 0 ORDER BY rowid",
            )
            .and_then(|mut st| st.query_map(params![endpoint], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect())
            .map_err(self.sq())
    }

    fn save_batch(&mut self, r: &crate::llm::BatchRecord, custom_ids: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO llm_batches (input_file, endpoint, batch_id, custom_ids, done) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut st| st.execute(params![r.input_file, r.endpoint, r.batch_id, custom_ids, r.done]))
            .map(|_| ())
            .map_err(self.sq())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::Store;

    #[test]
    fn a_workspace_of_the_first_version_gains_the_new_snapshot_columns_and_a_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("tripletgen.sqlite")).unwrap();
        conn.execute_batch("CREATE TABLE snapshot (kind TEXT NOT NULL, id TEXT NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (kind, id)) WITHOUT ROWID;
             INSERT INTO snapshot VALUES ('document', 'a', zeroblob(32));").unwrap();
        drop(conn);
        let s = Store::open(dir.path()).unwrap();
        let rows = s.snapshot("document").unwrap();
        assert_eq!((rows.len(), rows[0].generated, rows[0].negatives), (1, 0, 0));
        drop(s);
        let conn = Connection::open(dir.path().join("tripletgen.sqlite")).unwrap();
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, VERSION);
    }

    #[test]
    fn a_workspace_of_a_newer_version_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let conn = Connection::open(dir.path().join("tripletgen.sqlite")).unwrap();
        conn.pragma_update(None, "user_version", VERSION + 1).unwrap();
        drop(conn);
        let e = Store::open(dir.path()).err().expect("refused").to_string();
        assert!(e.contains("newer tripletgen") && e.contains("tripletgen.sqlite"), "{e}");
        let conn = Connection::open(dir.path().join("tripletgen.sqlite")).unwrap();
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, VERSION + 1);
    }
}
