//! Ingest: read the corpus, queries and relevance judgements (or text pairs) into a [`Dataset`].
//!
//! Every malformed record becomes a [`BadRecord`] naming file, line (or row) and field. With
//! `on_bad_record = "stop"` (the default) the first one ends the run as an error; with `"skip"` it is
//! counted, listed in the report and left out. Duplicate ids, empty texts, invalid UTF-8 and qrels
//! that name unknown ids are treated the same way.

pub mod answers;
pub mod records;

pub use answers::Answers;

use crate::config::{BadRecordPolicy, InputConfig};
use crate::hash::ContentHash;
use records::{RawRecord, read_records};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a record is: a file and a 1-based line (text formats) or row (Parquet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// The file.
    pub file: PathBuf,
    /// 1-based line or row number.
    pub line: u64,
    /// True for Parquet rows.
    pub is_row: bool,
}

impl Location {
    /// A line of a text file.
    pub fn line(file: &Path, line: u64) -> Self {
        Location { file: file.to_path_buf(), line, is_row: false }
    }
    /// A row of a Parquet file.
    pub fn row(file: &Path, row: u64) -> Self {
        Location { file: file.to_path_buf(), line: row, is_row: true }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_row {
            write!(f, "{} row {}", self.file.display(), self.line)
        } else {
            write!(f, "{}:{}", self.file.display(), self.line)
        }
    }
}

/// One malformed input record.
#[derive(Debug, Clone, Serialize)]
pub struct BadRecord {
    /// Where.
    pub loc: Location,
    /// Which field, when one field is at fault.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for BadRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{}: field `{}` {}", self.loc, field, self.message),
            None => write!(f, "{}: {}", self.loc, self.message),
        }
    }
}

/// Errors of the ingest stage.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file as a whole cannot be used.
    #[error("{path}: {message}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A malformed record, with `on_bad_record = "stop"`.
    #[error("bad record at {0} (set input.on_bad_record = \"skip\" to skip and report such records)")]
    BadRecord(BadRecord),
    /// Nothing usable was left.
    #[error("{0}")]
    Empty(String),
}

/// A corpus document.
#[derive(Debug, Clone)]
pub struct Document {
    /// Its id.
    pub id: String,
    /// The text that is embedded and written (title and text joined when `include_title`).
    pub text: String,
    /// Content hash of `text`.
    pub hash: ContentHash,
}

/// A query.
#[derive(Debug, Clone)]
pub struct Query {
    /// Its id.
    pub id: String,
    /// Its text.
    pub text: String,
    /// Content hash of `text`.
    pub hash: ContentHash,
    /// For a generated query: where it came from. `None` for input queries.
    pub origin: Option<QueryOrigin>,
    /// Gold answer strings (the queries file's `answers` field, as in NQ, TriviaQA or SQuAD), used by
    /// the judge's gold-answer rule. Variants of a query inherit its answers.
    pub answers: Vec<String>,
}

/// Where a generated query came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryOrigin {
    /// Id of the source query.
    pub source_id: String,
    /// The strategy that generated it.
    pub strategy: crate::config::Strategy,
}

impl Query {
    /// `given` for input queries, else the generating strategy.
    pub fn strategy(&self) -> &'static str {
        self.origin.as_ref().map_or("given", |o| o.strategy.name())
    }
}

/// Everything mining needs: documents, queries, and which documents are positives of which query.
#[derive(Debug, Default)]
pub struct Dataset {
    /// Documents, in input order.
    pub docs: Vec<Document>,
    /// Queries that have at least one positive, in input order.
    pub queries: Vec<Query>,
    /// `positives[q]`: indices into `docs` of every known positive of query `q`, in input order.
    pub positives: Vec<Vec<usize>>,
    /// What was read, skipped and why.
    pub report: IngestReport,
    /// `held_out[d]`: document `d` is kept out of positives and negatives (an evaluation set's
    /// document, see [`crate::contamination`]). Empty: none is.
    pub held_out: Vec<bool>,
}

/// Counts of the ingest stage.
#[derive(Debug, Default, Clone, Serialize)]
pub struct IngestReport {
    /// Documents read.
    pub documents: usize,
    /// Queries read (including those without positives).
    pub queries_read: usize,
    /// Queries with at least one positive (the ones mined).
    pub queries_with_positives: usize,
    /// (query, positive) pairs.
    pub pairs: usize,
    /// Documents added from a pairs file because their text was not in the corpus.
    pub documents_from_pairs: usize,
    /// Malformed records that were skipped (all of them counted here).
    pub skipped: usize,
    /// The first 1000 skipped records, with their reasons.
    pub bad_records: Vec<BadRecord>,
}

const MAX_LISTED_BAD: usize = 1000;

struct Collector<'a> {
    policy: BadRecordPolicy,
    report: &'a mut IngestReport,
}

impl Collector<'_> {
    fn reject(&mut self, b: BadRecord) -> Result<(), IngestError> {
        match self.policy {
            BadRecordPolicy::Stop => Err(IngestError::BadRecord(b)),
            BadRecordPolicy::Skip => {
                log::debug!("skipping {b}");
                self.report.skipped += 1;
                if self.report.bad_records.len() < MAX_LISTED_BAD {
                    self.report.bad_records.push(b);
                }
                Ok(())
            }
        }
    }
}

/// Take a required, non-blank field or describe what is wrong.
fn required(rec: &RawRecord, i: usize, name: &str) -> Result<String, BadRecord> {
    match &rec.values[i] {
        None => Err(BadRecord { loc: rec.loc.clone(), field: Some(name.into()), message: "is missing".into() }),
        Some(s) if s.trim().is_empty() => Err(BadRecord {
            loc: rec.loc.clone(),
            field: Some(name.into()),
            message: "is empty or whitespace only".into(),
        }),
        Some(s) if s.contains(records::LIST_SEP) => Err(BadRecord {
            loc: rec.loc.clone(),
            field: Some(name.into()),
            message: "must be a string, found an array".into(),
        }),
        Some(s) => Ok(s.clone()),
    }
}

/// Read the inputs named by `cfg` (already validated). With `corpus_only`, having no queries is not
/// an error (synthetic queries will be generated from the documents).
pub fn load(cfg: &InputConfig, corpus_only: bool) -> Result<Dataset, IngestError> {
    let mut ds = Dataset::default();
    let mut report = IngestReport::default();
    let mut col = Collector { policy: cfg.on_bad_record, report: &mut report };
    let mut doc_index: HashMap<String, usize> = HashMap::new();
    let mut doc_seen_at: HashMap<String, Location> = HashMap::new();
    // Hash of the text without the title, for matching pair positives written without it.
    let mut raw_text_index: HashMap<ContentHash, usize> = HashMap::new();

    // Corpus.
    let corpus = cfg.corpus.as_deref().expect("validated: corpus is set");
    let f = &cfg.corpus_fields;
    read_records(corpus, &[&f.id, &f.title, &f.text], cfg.max_record_bytes, &mut |item| {
        let rec = match item {
            Ok(r) => r,
            Err(b) => return col.reject(b),
        };
        let id = match required(&rec, 0, &f.id) {
            Ok(v) => v,
            Err(b) => return col.reject(b),
        };
        let text = match required(&rec, 2, &f.text) {
            Ok(v) => v,
            Err(b) => return col.reject(b),
        };
        if let Some(first) = doc_seen_at.get(&id) {
            let msg = format!("repeats id {id:?} first seen at {first}");
            return col.reject(BadRecord { loc: rec.loc, field: Some(f.id.clone()), message: msg });
        }
        let title = rec.values[1].as_deref().map(str::trim).unwrap_or("");
        raw_text_index.entry(ContentHash::of(&text)).or_insert(ds.docs.len());
        let full = if cfg.include_title && !title.is_empty() { format!("{title} {text}") } else { text };
        doc_seen_at.insert(id.clone(), rec.loc);
        doc_index.insert(id.clone(), ds.docs.len());
        let hash = ContentHash::of(&full);
        ds.docs.push(Document { id, text: full, hash });
        Ok(())
    })?;

    if let Some(pairs) = &cfg.pairs {
        load_pairs(cfg, pairs, &mut ds, &mut doc_index, raw_text_index, &mut col)?;
    } else if cfg.queries.is_some() {
        load_queries_and_qrels(cfg, &mut ds, &doc_index, &mut col)?;
    }
    report.documents = ds.docs.len();
    report.queries_with_positives = ds.queries.len();
    report.pairs = ds.positives.iter().map(Vec::len).sum();
    if ds.docs.is_empty() {
        return Err(IngestError::Empty(format!("{}: no usable documents", corpus.display())));
    }
    if report.pairs == 0 && !corpus_only {
        return Err(IngestError::Empty(
            "no (query, positive) pairs: check the qrels/pairs input and field names".into(),
        ));
    }
    ds.report = report;
    Ok(ds)
}

fn load_queries_and_qrels(
    cfg: &InputConfig,
    ds: &mut Dataset,
    doc_index: &HashMap<String, usize>,
    col: &mut Collector<'_>,
) -> Result<(), IngestError> {
    let queries_path = cfg.queries.as_deref().expect("validated: queries is set");
    let qf = &cfg.query_fields;
    let mut query_text: HashMap<String, (String, usize, Vec<String>)> = HashMap::new(); // id -> (text, input order, answers)
    let mut query_seen_at: HashMap<String, Location> = HashMap::new();
    read_records(queries_path, &[&qf.id, &qf.text, &qf.answers], cfg.max_record_bytes, &mut |item| {
        let rec = match item {
            Ok(r) => r,
            Err(b) => return col.reject(b),
        };
        let (id, text) = match required(&rec, 0, &qf.id).and_then(|id| Ok((id, required(&rec, 1, &qf.text)?))) {
            Ok(v) => v,
            Err(b) => return col.reject(b),
        };
        if let Some(first) = query_seen_at.get(&id) {
            let msg = format!("repeats id {id:?} first seen at {first}");
            return col.reject(BadRecord { loc: rec.loc, field: Some(qf.id.clone()), message: msg });
        }
        let answers: Vec<String> = rec.values[2]
            .as_deref()
            .map(|a| a.split(records::LIST_SEP).map(str::trim).filter(|a| !a.is_empty()).map(String::from).collect())
            .unwrap_or_default();
        query_seen_at.insert(id.clone(), rec.loc);
        let order = query_text.len();
        query_text.insert(id, (text, order, answers));
        Ok(())
    })?;
    col.report.queries_read = query_text.len();

    let qrels_path = cfg.qrels.as_deref().expect("validated: qrels is set");
    let rf = &cfg.qrels_fields;
    let mut positives: HashMap<String, Vec<usize>> = HashMap::new();
    read_records(qrels_path, &[&rf.query_id, &rf.doc_id, &rf.score], cfg.max_record_bytes, &mut |item| {
        let rec = match item {
            Ok(r) => r,
            Err(b) => return col.reject(b),
        };
        let ids = required(&rec, 0, &rf.query_id).and_then(|q| Ok((q, required(&rec, 1, &rf.doc_id)?)));
        let (qid, did) = match ids {
            Ok(v) => v,
            Err(b) => return col.reject(b),
        };
        let score: f64 = match rec.values[2].as_deref().map(str::trim) {
            None | Some("") => 1.0,
            Some(s) => match s.parse() {
                Ok(v) => v,
                Err(_) => {
                    let msg = format!("is {s:?}, not a number");
                    return col.reject(BadRecord { loc: rec.loc, field: Some(rf.score.clone()), message: msg });
                }
            },
        };
        if !query_text.contains_key(&qid) {
            let msg = format!("names query {qid:?}, which is not in {}", queries_path.display());
            return col.reject(BadRecord { loc: rec.loc, field: Some(rf.query_id.clone()), message: msg });
        }
        let Some(&d) = doc_index.get(&did) else {
            let msg = format!("names document {did:?}, which is not in the corpus");
            return col.reject(BadRecord { loc: rec.loc, field: Some(rf.doc_id.clone()), message: msg });
        };
        if score > 0.0 {
            let v = positives.entry(qid).or_default();
            if !v.contains(&d) {
                v.push(d);
            }
        }
        Ok(())
    })?;

    let mut ordered: Vec<(usize, String, String, Vec<String>)> = query_text
        .into_iter()
        .filter(|(id, _)| positives.contains_key(id))
        .map(|(id, (text, order, answers))| (order, id, text, answers))
        .collect();
    ordered.sort_unstable_by_key(|(order, ..)| *order);
    for (_, id, text, answers) in ordered {
        let hash = ContentHash::of(&text);
        ds.positives.push(positives.remove(&id).unwrap_or_default());
        ds.queries.push(Query { id, text, hash, origin: None, answers });
    }
    Ok(())
}

fn load_pairs(
    cfg: &InputConfig,
    path: &Path,
    ds: &mut Dataset,
    doc_index: &mut HashMap<String, usize>,
    raw_text_index: HashMap<ContentHash, usize>,
    col: &mut Collector<'_>,
) -> Result<(), IngestError> {
    let pf = &cfg.pair_fields;
    // A positive matches a document by its text with or without the title.
    let mut doc_by_text = raw_text_index;
    for (i, d) in ds.docs.iter().enumerate() {
        doc_by_text.entry(d.hash).or_insert(i);
    }
    let mut query_by_text: HashMap<ContentHash, usize> = HashMap::new();
    let mut added = 0usize;
    read_records(path, &[&pf.query, &pf.positive], cfg.max_record_bytes, &mut |item| {
        let rec = match item {
            Ok(r) => r,
            Err(b) => return col.reject(b),
        };
        let (query, positive) =
            match required(&rec, 0, &pf.query).and_then(|q| Ok((q, required(&rec, 1, &pf.positive)?))) {
                Ok(v) => v,
                Err(b) => return col.reject(b),
            };
        col.report.queries_read += 1;
        let phash = ContentHash::of(&positive);
        let d = *doc_by_text.entry(phash).or_insert_with(|| {
            let id = format!("pair-doc-{}", phash.short());
            doc_index.insert(id.clone(), ds.docs.len());
            ds.docs.push(Document { id, text: positive, hash: phash });
            added += 1;
            ds.docs.len() - 1
        });
        let qhash = ContentHash::of(&query);
        let q = *query_by_text.entry(qhash).or_insert_with(|| {
            ds.queries.push(Query {
                id: format!("pair-q-{}", qhash.short()),
                text: query,
                hash: qhash,
                origin: None,
                answers: Vec::new(),
            });
            ds.positives.push(Vec::new());
            ds.queries.len() - 1
        });
        if !ds.positives[q].contains(&d) {
            ds.positives[q].push(d);
        }
        Ok(())
    })?;
    col.report.documents_from_pairs = added;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg_for(corpus: &Path, queries: &Path, qrels: &Path) -> InputConfig {
        InputConfig {
            corpus: Some(corpus.into()),
            queries: Some(queries.into()),
            qrels: Some(qrels.into()),
            ..InputConfig::default()
        }
    }

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    #[test]
    fn stop_names_file_line_and_field_and_skip_counts() {
        let dir = tempfile::tempdir().unwrap();
        let c = write(
            dir.path(),
            "c.jsonl",
            "{\"_id\":\"a\",\"text\":\"alpha\"}\n{\"_id\":\"b\",\"text\":\"  \"}\n{\"_id\":\"a\",\"text\":\"again\"}\n{\"_id\":\"c\",\"title\":\"T\",\"text\":\"gamma\"}\n",
        );
        let q = write(
            dir.path(),
            "q.jsonl",
            "{\"_id\":\"q1\",\"text\":\"find alpha\"}\n{\"_id\":\"q2\",\"text\":\"no qrels\"}\n",
        );
        let r = write(dir.path(), "r.tsv", "query-id\tcorpus-id\tscore\nq1\ta\t1\nq1\tzzz\t1\nq1\tc\t2\nq1\tc\t0\n");
        let mut cfg = cfg_for(&c, &q, &r);
        let e = load(&cfg, false).unwrap_err().to_string();
        assert!(e.contains("c.jsonl:2") && e.contains("`text`") && e.contains("whitespace"), "{e}");

        cfg.on_bad_record = BadRecordPolicy::Skip;
        let ds = load(&cfg, false).unwrap();
        assert_eq!(ds.docs.len(), 2);
        assert_eq!(ds.docs[1].text, "T gamma");
        assert_eq!(ds.report.skipped, 3, "{:?}", ds.report.bad_records);
        let msgs: Vec<String> = ds.report.bad_records.iter().map(|b| b.to_string()).collect();
        assert!(msgs[1].contains("c.jsonl:3") && msgs[1].contains("c.jsonl:1"), "{msgs:?}");
        assert!(msgs[2].contains("r.tsv:3") && msgs[2].contains("corpus-id") && msgs[2].contains("zzz"), "{msgs:?}");
        assert_eq!(ds.queries.len(), 1);
        assert_eq!(ds.positives[0], vec![0, 1]);
        assert_eq!(ds.report.queries_read, 2);
    }

    #[test]
    fn pairs_match_corpus_text_and_group_queries() {
        let dir = tempfile::tempdir().unwrap();
        let c = write(
            dir.path(),
            "c.jsonl",
            "{\"_id\":\"a\",\"text\":\"alpha\"}\n{\"_id\":\"b\",\"title\":\"B\",\"text\":\"beta\"}\n",
        );
        let p = write(
            dir.path(),
            "p.jsonl",
            "{\"query\":\"q one\",\"positive\":\"alpha\"}\n{\"query\":\"q one\",\"positive\":\"new text\"}\n{\"query\":\"q two\",\"positive\":\"beta\"}\n",
        );
        let cfg = InputConfig { corpus: Some(c), pairs: Some(p), ..InputConfig::default() };
        let ds = load(&cfg, false).unwrap();
        assert_eq!(ds.docs.len(), 3);
        assert_eq!(ds.report.documents_from_pairs, 1);
        assert_eq!(ds.queries.len(), 2);
        assert_eq!(ds.positives, vec![vec![0, 2], vec![1]]);
    }
}
