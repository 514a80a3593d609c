//! `tripletgen workspace copy FROM TO`: move a workspace between a folder (SQLite) and a database
//! (PostgreSQL), in either direction, then prove the copy: every table of both sides is digested
//! (order-independent, so collations do not matter) and the digests must be equal.

use super::{GRAPH_FILE, Location, Row, Store, StoreError, Table};
use crate::hash::ContentHash;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Rows per table, in copy order.
type Counts = Vec<(&'static str, u64)>;

/// Rows read and written per step.
const PAGE: usize = 2000;

/// The keyed tables, in copy order, with their names in reports.
const TABLES: [(&str, Table); 3] =
    [("embeddings", Table::Embeddings), ("llm answers", Table::Llm), ("verdicts", Table::Judgements)];

/// Snapshot kinds the pipeline writes.
const KINDS: [&str; 2] = ["document", "query"];

/// What a copy moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// Rows per table, in copy order.
    pub rows: Counts,
    /// Whether the saved HNSW graph was copied (a workspace without one has none).
    pub graph_bytes: Option<u64>,
    /// The digest both sides share (hex).
    pub digest: String,
}

fn refused(at: &Location, why: String) -> StoreError {
    StoreError::Refused { at: at.to_string(), why }
}

/// Copy everything `from` holds into `to`, which must be empty, and verify the copy.
pub fn copy(from: &Location, to: &Location) -> Result<CopyReport, StoreError> {
    if from == to {
        return Err(refused(to, "is the workspace being copied: name another destination".into()));
    }
    let src = Store::connect(from)?;
    let mut dst = Store::connect(to)?;
    let (held, _) = digest(&dst)?;
    if held.iter().any(|(_, n)| *n > 0) {
        let what: Vec<String> = held.iter().filter(|(_, n)| *n > 0).map(|(t, n)| format!("{n} {t}")).collect();
        return Err(refused(
            to,
            format!("already holds a workspace ({}): copy into an empty folder or database", what.join(", ")),
        ));
    }
    let mut rows = Vec::new();
    for (name, table) in TABLES {
        let n = for_each_page(&src, table, |page, so_far| {
            write_page(&mut dst, page)?;
            let done = so_far + page.len() as u64;
            if page.len() == PAGE && done % 100_000 < PAGE as u64 {
                log::info!("workspace copy: {done} {name} so far");
            }
            Ok(())
        })?;
        rows.push((name, n));
    }
    let mut snapshot_rows = 0;
    for kind in KINDS {
        let items = src.snapshot(kind)?;
        snapshot_rows += items.len() as u64;
        if !items.is_empty() {
            dst.save_snapshot(kind, &items)?;
        }
    }
    rows.push(("snapshot rows", snapshot_rows));
    let batches = src.backend.all_batches()?;
    for b in &batches {
        crate::llm::BatchJournal::save_batch(&mut dst, b).map_err(|why| refused(to, why))?;
    }
    rows.push(("batch jobs", batches.len() as u64));
    let graph_bytes = copy_graph(&src, &mut dst)?;

    let (a, da) = digest(&src)?;
    let (b, db) = digest(&dst)?;
    if (&a, &da) != (&b, &db) {
        return Err(refused(
            to,
            format!(
                "the copy differs from its source after copying ({a:?} vs {b:?}): was the source written to meanwhile? Copy again into an empty destination"
            ),
        ));
    }
    Ok(CopyReport { rows, graph_bytes, digest: da })
}

fn write_page(dst: &mut Store, page: &[Row]) -> Result<(), StoreError> {
    let mut embeddings: BTreeMap<&str, Vec<(ContentHash, Vec<u8>)>> = BTreeMap::new();
    let mut verdicts: BTreeMap<&str, Vec<(ContentHash, super::Scored)>> = BTreeMap::new();
    for row in page {
        match row {
            Row::Embedding { model, key, vec } => embeddings.entry(model).or_default().push((*key, vec.clone())),
            Row::Llm { key, strategy, model, response } => dst.put_llm(key, strategy, model, response)?,
            Row::Judgement { judge, key, scored } => verdicts.entry(judge).or_default().push((*key, scored.clone())),
        }
    }
    for (model, items) in embeddings {
        dst.backend.put_embeddings(model, items)?;
    }
    for (judge, items) in verdicts {
        dst.put_judgements(judge, &items)?;
    }
    Ok(())
}

/// Copy the saved graph file; returns its size when there was one.
fn copy_graph(src: &Store, dst: &mut Store) -> Result<Option<u64>, StoreError> {
    let tmp = tempfile::tempdir().map_err(|source| StoreError::File {
        at: src.location.to_string(),
        path: std::env::temp_dir(),
        source,
    })?;
    let file: PathBuf = match &src.location {
        Location::Dir(d) => d.join(GRAPH_FILE),
        Location::Postgres(_) => {
            let f = tmp.path().join("hnsw.bin");
            src.fetch_file(GRAPH_FILE, &f)?;
            f
        }
    };
    let Ok(meta) = std::fs::metadata(&file) else { return Ok(None) };
    match &dst.location {
        Location::Dir(d) => {
            let target = d.join(GRAPH_FILE);
            let err = |source| StoreError::File { at: d.display().to_string(), path: target.clone(), source };
            let mut out =
                crate::fsx::AtomicFile::create(&target, ("artifact-synced", "artifact-renamed")).map_err(err)?;
            std::io::copy(&mut std::fs::File::open(&file).map_err(err)?, out.file()).map_err(err)?;
            out.commit().map_err(err)?;
        }
        Location::Postgres(_) => dst.save_file(GRAPH_FILE, &file)?,
    }
    Ok(Some(meta.len()))
}

/// Call `f` on each page of `table` in key order (with the rows seen before it); returns the rows.
fn for_each_page(
    s: &Store,
    table: Table,
    mut f: impl FnMut(&[Row], u64) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    let (mut n, mut after) = (0u64, None::<Row>);
    loop {
        let page = s.backend.scan(table, after.as_ref(), PAGE)?;
        f(&page, n)?;
        n += page.len() as u64;
        if page.len() < PAGE {
            return Ok(n);
        }
        after = page.into_iter().last();
    }
}

/// Rows per table, and one digest of everything: each row hashed on its own and the hashes added
/// (so the order rows come back in does not matter), the snapshot and the batch jobs in order.
fn digest(s: &Store) -> Result<(Counts, String), StoreError> {
    let mut sum = [0u64; 4];
    let mut add = |h: ContentHash| {
        for (i, lane) in sum.iter_mut().enumerate() {
            *lane = lane.wrapping_add(u64::from_le_bytes(h.0[i * 8..i * 8 + 8].try_into().expect("8 bytes")));
        }
    };
    let mut counts = Vec::new();
    for (name, table) in TABLES {
        let n = for_each_page(s, table, |page, _| {
            for row in page {
                add(match row {
                    Row::Embedding { model, key, vec } => ContentHash::of_parts(&[b"e", model.as_bytes(), &key.0, vec]),
                    Row::Llm { key, strategy, model, response } => ContentHash::of_parts(&[
                        b"l",
                        &key.0,
                        strategy.as_bytes(),
                        model.as_bytes(),
                        response.as_bytes(),
                    ]),
                    Row::Judgement { judge, key, scored } => ContentHash::of_parts(&[
                        b"j",
                        judge.as_bytes(),
                        &key.0,
                        &scored.score.to_le_bytes(),
                        &[scored.label.is_some() as u8, scored.label.unwrap_or(0)],
                        scored.detail.as_deref().unwrap_or("\u{0}none").as_bytes(),
                    ]),
                });
            }
            Ok(())
        })?;
        counts.push((name, n));
    }
    let mut snapshot_rows = 0;
    for kind in KINDS {
        for p in s.snapshot(kind)? {
            snapshot_rows += 1;
            add(ContentHash::of_parts(&[
                b"s",
                kind.as_bytes(),
                p.id.as_bytes(),
                &p.hash.0,
                &(p.generated as u64).to_le_bytes(),
                &(p.negatives as u64).to_le_bytes(),
            ]));
        }
    }
    counts.push(("snapshot rows", snapshot_rows));
    let batches = s.backend.all_batches()?;
    let json = serde_json::to_string(
        &batches.iter().map(|b| (&b.input_file, &b.endpoint, &b.batch_id, &b.custom_ids, b.done)).collect::<Vec<_>>(),
    )
    .expect("strings serialise");
    add(ContentHash::of_parts(&[b"b", json.as_bytes()]));
    counts.push(("batch jobs", batches.len() as u64));
    let graph = match &s.location {
        Location::Dir(d) => super::sha256_of(&d.join(GRAPH_FILE)).map_err(|source| StoreError::File {
            at: d.display().to_string(),
            path: d.join(GRAPH_FILE),
            source,
        })?,
        Location::Postgres(_) => s.backend.artifact_head(GRAPH_FILE)?.map(|h| h.sha256),
    };
    add(ContentHash::of_parts(&[b"g", graph.as_ref().map_or(&[][..], |h| &h[..])]));
    let hex: String = sum.iter().map(|l| format!("{l:016x}")).collect();
    Ok((counts, hex))
}
