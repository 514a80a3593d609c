//! Write: training files in the formats sentence-transformers and FlagEmbedding load as they are.
//!
//! Parquet formats carry only training columns (so `load_dataset("parquet", ...)` feeds a loss
//! without renaming or dropping anything); every row's provenance — query id, document ids, scores,
//! ranks — sits in a row-aligned `<format>.provenance.parquet` beside it. FlagEmbedding JSONL carries
//! its own ids. Every file is written to a temporary name in the output folder, synced, and renamed
//! when complete, so a finished-looking file is never half-written.

use crate::config::{Format, MineConfig};
use crate::fsx::AtomicFile;
use crate::generate::RejectReason;
use crate::ingest::Dataset;
use crate::mine::{MinedPair, Negative};
use crate::output::schema::{self, provenance, variants};
use arrow::array::{
    ArrayRef, BooleanBuilder, Float32Builder, Int64Builder, ListBuilder, RecordBatch, StringBuilder, UInt32Builder,
};
use arrow::datatypes::{Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors of the write stage.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A file could not be written (disk full, permissions…).
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Arrow or Parquet failed.
    #[error("cannot write {path}: {message}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// One written file.
#[derive(Debug, Clone, Serialize)]
pub struct OutputFile {
    /// File name inside the output folder.
    pub file: String,
    /// Format (or `provenance`, `manifest`…).
    pub kind: String,
    /// Rows (lines for JSONL).
    pub rows: usize,
    /// SHA-256 of the file.
    pub sha256: String,
}

/// What the write stage produced.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WriteStats {
    /// Files written.
    pub files: Vec<OutputFile>,
    /// n-tuple rows left out because the pair had fewer than num_negatives negatives.
    pub ntuple_pairs_dropped: usize,
    /// Seconds spent.
    pub seconds: f64,
}

/// Killpoints of an output file's commit (see [`crate::fsx`]).
pub(crate) const CHECKPOINTS: (&str, &str) = ("write-synced", "write-renamed");

/// Write `bytes` to `path` atomically (see [`crate::fsx`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    crate::fsx::write(path, bytes, CHECKPOINTS).map_err(|source| WriteError::Io { path: path.to_path_buf(), source })
}

/// Start an atomic output file.
pub(crate) fn create(path: &Path) -> Result<AtomicFile, WriteError> {
    AtomicFile::create(path, CHECKPOINTS).map_err(|source| WriteError::Io { path: path.to_path_buf(), source })
}

/// Commit an atomic output file.
pub(crate) fn commit(f: AtomicFile, path: &Path) -> Result<(), WriteError> {
    f.commit().map_err(|source| WriteError::Io { path: path.to_path_buf(), source })
}

/// What the judge adds to the outputs.
#[derive(Debug, Default)]
pub struct JudgeOutput {
    /// Candidates judged relevant that become extra positives, per query (`judge.action = "relabel"`).
    pub relabelled: std::collections::BTreeMap<usize, Vec<usize>>,
    /// The deciding judge score of every judged (query, document), for provenance.
    pub judge_scores: std::collections::HashMap<(usize, usize), f32>,
    /// With `output.scores = "judge"`: the last judge's score of every written (query, document).
    pub teacher: Option<std::collections::HashMap<(usize, usize), f32>>,
}

impl JudgeOutput {
    /// Collect what the outputs need from a judge stage that has run (scoring positives and chosen
    /// negatives with the last judge when `output.scores = "judge"`).
    pub fn of(
        judge: &mut crate::judge::JudgeStage,
        cfg: &crate::config::Config,
        ds: &Dataset,
        pairs: &[MinedPair],
        store: &mut crate::workspace::Store,
    ) -> Result<JudgeOutput, crate::judge::JudgeError> {
        let relabelled = judge.relabelled();
        let judge_scores = judge.verdicts().iter().filter_map(|(k, v)| Some((*k, v.score()?))).collect();
        let teacher = if cfg.output.scores == crate::config::ScoreSource::Judge {
            let mut keys: Vec<(usize, usize)> = Vec::new();
            for p in pairs {
                keys.push((p.query, p.positive));
                keys.extend(p.negatives.iter().map(|n| (p.query, n.doc)));
                keys.extend(relabelled.get(&p.query).into_iter().flatten().map(|&d| (p.query, d)));
            }
            Some(judge.teacher_scores(&keys, ds, store)?)
        } else {
            None
        };
        Ok(JudgeOutput { relabelled, judge_scores, teacher })
    }

    fn extra_positives(&self, q: usize) -> &[usize] {
        self.relabelled.get(&q).map_or(&[], Vec::as_slice)
    }

    /// The written score of (q, d): the teacher's when scores come from the judge, else `retriever`.
    fn score(&self, q: usize, d: usize, retriever: f32) -> f32 {
        match &self.teacher {
            Some(t) => t.get(&(q, d)).copied().unwrap_or(f32::NAN),
            None => retriever,
        }
    }
}

/// Write every format of `formats` into `dir`.
pub fn write_all(
    dir: &Path,
    formats: &[Format],
    mine: &MineConfig,
    row_group_size: usize,
    ds: &Dataset,
    pairs: &[MinedPair],
    judged: Option<&JudgeOutput>,
) -> Result<WriteStats, WriteError> {
    let start = std::time::Instant::now();
    let mut stats = WriteStats::default();
    for &format in formats {
        match format {
            Format::FlagJsonl => {
                let file = schema::FLAG_JSONL;
                let rows = write_flag_jsonl(&dir.join(file), ds, pairs, judged)?;
                stats.files.push(output_file(dir, file, "flag-jsonl", rows)?);
            }
            Format::Tevatron => {
                let file = schema::TEVATRON_JSONL;
                let rows = write_tevatron(&dir.join(file), ds, pairs, judged)?;
                stats.files.push(output_file(dir, file, "tevatron", rows)?);
            }
            Format::Beir => stats.files.extend(write_beir(dir, ds, judged)?),
            _ => {
                let file = schema::data_file(format);
                let prov = schema::provenance_file(format);
                let retrievers = mine.uses_bm25();
                let target = Target { format, n: mine.num_negatives, row_group_size, judged, retrievers };
                let (rows, dropped) = write_parquet_format(&dir.join(&file), &dir.join(&prov), &target, ds, pairs)?;
                if format == Format::NTuple {
                    stats.ntuple_pairs_dropped = dropped;
                }
                stats.files.push(output_file(dir, &file, format.name(), rows)?);
                stats.files.push(output_file(dir, &prov, "provenance", rows)?);
            }
        }
    }
    stats.seconds = start.elapsed().as_secs_f64();
    Ok(stats)
}

fn output_file(dir: &Path, file: &str, kind: &str, rows: usize) -> Result<OutputFile, WriteError> {
    let path = dir.join(file);
    let sha256 = crate::hash::sha256_file(&path).map_err(|source| WriteError::Io { path, source })?;
    Ok(OutputFile { file: file.into(), kind: kind.into(), rows, sha256 })
}

/// Column builders for one format's training columns.
enum Columns {
    Triplet {
        anchor: StringBuilder,
        positive: StringBuilder,
        negative: StringBuilder,
        scores: Option<ListBuilder<Float32Builder>>,
    },
    NTuple {
        anchor: StringBuilder,
        positive: StringBuilder,
        negatives: Vec<StringBuilder>,
        scores: Option<ListBuilder<Float32Builder>>,
    },
    LabeledPair {
        anchor: StringBuilder,
        text: StringBuilder,
        label: Int64Builder,
    },
    LabeledList {
        anchor: StringBuilder,
        texts: ListBuilder<StringBuilder>,
        labels: ListBuilder<Int64Builder>,
    },
}

/// Row-aligned provenance builders.
struct Provenance {
    query_id: StringBuilder,
    query_strategy: StringBuilder,
    positive_id: StringBuilder,
    positive_score: Float32Builder,
    negative_ids: ListBuilder<StringBuilder>,
    negative_scores: ListBuilder<Float32Builder>,
    negative_ranks: ListBuilder<UInt32Builder>,
    /// With a judge: each negative's deciding judge score (null where no judge scored it), and
    /// whether the row's positive is a relabelled candidate.
    judge: Option<(ListBuilder<Float32Builder>, BooleanBuilder)>,
    /// With BM25 among the retrievers: which retrievers found each negative, and its rank in each.
    retrievers: Option<(ListBuilder<StringBuilder>, ListBuilder<UInt32Builder>, ListBuilder<UInt32Builder>)>,
}

impl Provenance {
    fn new(judged: bool, retrievers: bool) -> Self {
        let ranks = || ListBuilder::new(UInt32Builder::new());
        Provenance {
            query_id: StringBuilder::new(),
            query_strategy: StringBuilder::new(),
            positive_id: StringBuilder::new(),
            positive_score: Float32Builder::new(),
            negative_ids: ListBuilder::new(StringBuilder::new()),
            negative_scores: ListBuilder::new(Float32Builder::new()),
            negative_ranks: ListBuilder::new(UInt32Builder::new()),
            judge: judged.then(|| (ListBuilder::new(Float32Builder::new()), BooleanBuilder::new())),
            retrievers: retrievers.then(|| (ListBuilder::new(StringBuilder::new()), ranks(), ranks())),
        }
    }

    fn push(&mut self, ds: &Dataset, p: &MinedPair, negs: &[Negative], judged: Option<&JudgeOutput>) {
        self.push_row(ds, p, p.positive, p.positive_score, negs, judged, false);
    }

    /// A row whose positive is `positive` (the pair's, or a relabelled candidate scored `score`).
    #[allow(clippy::too_many_arguments)]
    fn push_row(
        &mut self,
        ds: &Dataset,
        p: &MinedPair,
        positive: usize,
        score: f32,
        negs: &[Negative],
        judged: Option<&JudgeOutput>,
        relabelled: bool,
    ) {
        self.query_id.append_value(&ds.queries[p.query].id);
        self.query_strategy.append_value(ds.queries[p.query].strategy());
        self.positive_id.append_value(&ds.docs[positive].id);
        self.positive_score.append_value(score);
        for n in negs {
            self.negative_ids.values().append_value(&ds.docs[n.doc].id);
            self.negative_scores.values().append_value(n.score);
            self.negative_ranks.values().append_value(n.rank as u32);
        }
        self.negative_ids.append(true);
        self.negative_scores.append(true);
        self.negative_ranks.append(true);
        if let Some((found_by, dense, bm25)) = self.retrievers.as_mut() {
            for n in negs {
                found_by.values().append_value(n.retrievers());
                dense.values().append_option(n.dense_rank);
                bm25.values().append_option(n.bm25_rank);
            }
            found_by.append(true);
            dense.append(true);
            bm25.append(true);
        }
        if let (Some((scores, relabel)), Some(j)) = (self.judge.as_mut(), judged) {
            for n in negs {
                scores.values().append_option(j.judge_scores.get(&(p.query, n.doc)).copied());
            }
            scores.append(true);
            relabel.append_value(relabelled);
        }
    }

    fn finish(&mut self) -> Vec<(&'static str, ArrayRef)> {
        let mut v = vec![
            (provenance::QUERY_ID, Arc::new(self.query_id.finish()) as ArrayRef),
            (provenance::QUERY_STRATEGY, Arc::new(self.query_strategy.finish())),
            (provenance::POSITIVE_ID, Arc::new(self.positive_id.finish())),
            (provenance::POSITIVE_SCORE, Arc::new(self.positive_score.finish())),
            (provenance::NEGATIVE_IDS, Arc::new(self.negative_ids.finish())),
            (provenance::NEGATIVE_SCORES, Arc::new(self.negative_scores.finish())),
            (provenance::NEGATIVE_RANKS, Arc::new(self.negative_ranks.finish())),
        ];
        if let Some((scores, relabelled)) = self.judge.as_mut() {
            v.push((provenance::NEGATIVE_JUDGE_SCORES, Arc::new(scores.finish())));
            v.push((provenance::RELABELLED, Arc::new(relabelled.finish())));
        }
        if let Some((found_by, dense, bm25)) = self.retrievers.as_mut() {
            v.push((provenance::NEGATIVE_RETRIEVERS, Arc::new(found_by.finish())));
            v.push((provenance::NEGATIVE_DENSE_RANKS, Arc::new(dense.finish())));
            v.push((provenance::NEGATIVE_BM25_RANKS, Arc::new(bm25.finish())));
        }
        v
    }
}

/// One Parquet format to write: what, how many negatives, row groups, and the judge's additions.
struct Target<'a> {
    format: Format,
    n: usize,
    /// Provenance says which retrievers found each negative.
    retrievers: bool,
    row_group_size: usize,
    judged: Option<&'a JudgeOutput>,
}

impl Columns {
    /// Builders for `format` with `n` negatives; with teacher scores, triplet and n-tuple get a
    /// `scores` column ([positive, negative…], sentence-transformers' `output_scores` layout).
    fn new(format: Format, n: usize, teacher: bool) -> Self {
        let scores = || teacher.then(|| ListBuilder::new(Float32Builder::new()));
        match format {
            Format::Triplet => Columns::Triplet {
                anchor: StringBuilder::new(),
                positive: StringBuilder::new(),
                negative: StringBuilder::new(),
                scores: scores(),
            },
            Format::NTuple => Columns::NTuple {
                anchor: StringBuilder::new(),
                positive: StringBuilder::new(),
                negatives: (0..n).map(|_| StringBuilder::new()).collect(),
                scores: scores(),
            },
            Format::LabeledPair => Columns::LabeledPair {
                anchor: StringBuilder::new(),
                text: StringBuilder::new(),
                label: Int64Builder::new(),
            },
            // The JSON formats have their own writers and never get here.
            Format::LabeledList | Format::FlagJsonl | Format::Tevatron | Format::Beir => Columns::LabeledList {
                anchor: StringBuilder::new(),
                texts: ListBuilder::new(StringBuilder::new()),
                labels: ListBuilder::new(Int64Builder::new()),
            },
        }
    }

    /// Append the rows of one pair (and their provenance); returns rows added.
    fn push(&mut self, prov: &mut Provenance, ds: &Dataset, p: &MinedPair, judged: Option<&JudgeOutput>) -> usize {
        let anchor = ds.queries[p.query].text.as_str();
        let positive = ds.docs[p.positive].text.as_str();
        let extra: &[usize] = judged.map_or(&[], |j| j.extra_positives(p.query));
        let score = |d: usize, retriever: f32| judged.map_or(retriever, |j| j.score(p.query, d, retriever));
        match self {
            Columns::Triplet { anchor: a, positive: pc, negative, scores } => {
                for n in &p.negatives {
                    a.append_value(anchor);
                    pc.append_value(positive);
                    negative.append_value(&ds.docs[n.doc].text);
                    if let Some(sc) = scores {
                        sc.values().append_value(score(p.positive, p.positive_score));
                        sc.values().append_value(score(n.doc, n.score));
                        sc.append(true);
                    }
                    prov.push(ds, p, std::slice::from_ref(n), judged);
                }
                p.negatives.len()
            }
            Columns::NTuple { anchor: a, positive: pc, negatives, scores } => {
                if p.negatives.len() < negatives.len() {
                    return 0;
                }
                a.append_value(anchor);
                pc.append_value(positive);
                for (b, n) in negatives.iter_mut().zip(&p.negatives) {
                    b.append_value(&ds.docs[n.doc].text);
                }
                let negs = &p.negatives[..negatives.len()];
                if let Some(sc) = scores {
                    sc.values().append_value(score(p.positive, p.positive_score));
                    for n in negs {
                        sc.values().append_value(score(n.doc, n.score));
                    }
                    sc.append(true);
                }
                prov.push(ds, p, negs, judged);
                1
            }
            Columns::LabeledPair { anchor: a, text, label } => {
                a.append_value(anchor);
                text.append_value(positive);
                label.append_value(1);
                prov.push(ds, p, &[], judged);
                for &d in extra {
                    a.append_value(anchor);
                    text.append_value(&ds.docs[d].text);
                    label.append_value(1);
                    let js = judged.and_then(|j| j.judge_scores.get(&(p.query, d)).copied()).unwrap_or(f32::NAN);
                    prov.push_row(ds, p, d, js, &[], judged, true);
                }
                for n in &p.negatives {
                    a.append_value(anchor);
                    text.append_value(&ds.docs[n.doc].text);
                    label.append_value(0);
                    prov.push(ds, p, std::slice::from_ref(n), judged);
                }
                1 + extra.len() + p.negatives.len()
            }
            Columns::LabeledList { anchor: a, texts, labels } => {
                a.append_value(anchor);
                texts.values().append_value(positive);
                labels.values().append_value(1);
                for &d in extra {
                    texts.values().append_value(&ds.docs[d].text);
                    labels.values().append_value(1);
                }
                for n in &p.negatives {
                    texts.values().append_value(&ds.docs[n.doc].text);
                    labels.values().append_value(0);
                }
                texts.append(true);
                labels.append(true);
                prov.push(ds, p, &p.negatives, judged);
                1
            }
        }
    }

    fn finish(&mut self) -> Vec<(String, ArrayRef)> {
        fn s(b: &mut StringBuilder) -> ArrayRef {
            Arc::new(b.finish())
        }
        match self {
            Columns::Triplet { anchor, positive, negative, scores } => {
                let mut v = vec![
                    ("anchor".into(), s(anchor)),
                    ("positive".into(), s(positive)),
                    ("negative".into(), s(negative)),
                ];
                if let Some(sc) = scores {
                    v.push((schema::SCORES.into(), Arc::new(sc.finish())));
                }
                v
            }
            Columns::NTuple { anchor, positive, negatives, scores } => {
                let mut v = vec![("anchor".to_string(), s(anchor)), ("positive".into(), s(positive))];
                for (i, b) in negatives.iter_mut().enumerate() {
                    v.push((format!("negative_{}", i + 1), s(b)));
                }
                if let Some(sc) = scores {
                    v.push((schema::SCORES.into(), Arc::new(sc.finish())));
                }
                v
            }
            Columns::LabeledPair { anchor, text, label } => {
                vec![("anchor".into(), s(anchor)), ("text".into(), s(text)), ("label".into(), Arc::new(label.finish()))]
            }
            Columns::LabeledList { anchor, texts, labels } => vec![
                ("anchor".into(), s(anchor)),
                ("texts".into(), Arc::new(texts.finish())),
                ("labels".into(), Arc::new(labels.finish())),
            ],
        }
    }
}

/// A record batch; only the columns named in `nullable` may hold nulls (a fixed schema whatever the
/// data).
fn batch(columns: Vec<(String, ArrayRef)>, nullable: &[&str]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let fields: Vec<Field> =
        columns.iter().map(|(n, a)| Field::new(n, a.data_type().clone(), nullable.contains(&n.as_str()))).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns.into_iter().map(|(_, a)| a).collect())
}

/// Streams record batches into a Parquet file that is renamed into place when finished.
struct ParquetSink {
    file: Option<AtomicFile>,
    writer: Option<ArrowWriter<std::fs::File>>,
    path: PathBuf,
    row_group_size: usize,
}

impl ParquetSink {
    fn new(path: &Path, row_group_size: usize) -> Result<Self, WriteError> {
        Ok(ParquetSink { file: Some(create(path)?), writer: None, path: path.to_path_buf(), row_group_size })
    }

    fn err(&self, e: impl std::fmt::Display) -> WriteError {
        WriteError::Parquet { path: self.path.clone(), message: e.to_string() }
    }

    fn write(&mut self, b: RecordBatch) -> Result<(), WriteError> {
        if self.writer.is_none() {
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid level")))
                .set_max_row_group_row_count(Some(self.row_group_size))
                .set_created_by(format!("tripletgen {}", env!("CARGO_PKG_VERSION")))
                .build();
            let f = self.file.as_mut().expect("open").file().try_clone().map_err(|e| self.err(e))?;
            self.writer = Some(ArrowWriter::try_new(f, b.schema(), Some(props)).map_err(|e| self.err(e))?);
        }
        let w = self.writer.as_mut().expect("created");
        w.write(&b).map_err(|e| WriteError::Parquet { path: self.path.clone(), message: e.to_string() })?;
        crate::killpoint::hit("write-batch"); // mid-file: no footer yet
        Ok(())
    }

    fn finish(mut self) -> Result<(), WriteError> {
        if let Some(w) = self.writer.take() {
            w.close().map_err(|e| self.err(e))?;
        }
        commit(self.file.take().expect("open"), &self.path)
    }
}

fn write_parquet_format(
    path: &Path,
    prov_path: &Path,
    t: &Target<'_>,
    ds: &Dataset,
    pairs: &[MinedPair],
) -> Result<(usize, usize), WriteError> {
    let (format, row_group_size) = (t.format, t.row_group_size);
    let mut data = ParquetSink::new(path, row_group_size)?;
    let mut prov_sink = ParquetSink::new(prov_path, row_group_size)?;
    let mut rows = 0;
    let mut dropped = 0;
    let mut cols = Columns::new(format, t.n, t.judged.is_some_and(|j| j.teacher.is_some()));
    let mut prov = Provenance::new(t.judged.is_some(), t.retrievers);
    let mut pending = 0;
    let flush = |cols: &mut Columns, prov: &mut Provenance, data: &mut ParquetSink, ps: &mut ParquetSink| {
        let b = batch(cols.finish(), &[]).map_err(|e| data.err(e))?;
        data.write(b)?;
        let pb = batch(
            prov.finish().into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            &[provenance::NEGATIVE_JUDGE_SCORES],
        )
        .map_err(|e| ps.err(e))?;
        ps.write(pb)
    };
    for p in pairs {
        let added = cols.push(&mut prov, ds, p, t.judged);
        if format == Format::NTuple && added == 0 {
            dropped += 1;
        }
        rows += added;
        pending += added;
        if pending >= row_group_size {
            flush(&mut cols, &mut prov, &mut data, &mut prov_sink)?;
            pending = 0;
        }
    }
    if pending > 0 || rows == 0 {
        flush(&mut cols, &mut prov, &mut data, &mut prov_sink)?;
    }
    data.finish()?;
    prov_sink.finish()?;
    Ok((rows, dropped))
}

/// Write `variants.parquet`: every generated candidate with its verdict and provenance.
pub fn write_variants(
    dir: &Path,
    ds: &Dataset,
    cands: &[crate::generate::Candidate],
    decisions: &[crate::filter::Decision],
) -> Result<OutputFile, WriteError> {
    use arrow::array::{BooleanBuilder, Int32Builder};
    let file = schema::VARIANTS;
    let path = dir.join(file);
    let mut sink = ParquetSink::new(&path, 65_536)?;
    // The string columns, in order: always set, then set only for some candidates (nullable).
    let always = [
        variants::VARIANT_ID,
        variants::SOURCE_KIND,
        variants::SOURCE_ID,
        variants::STRATEGY,
        variants::TEXT,
        variants::SOURCE_TEXT,
        variants::DETAIL,
    ];
    let sometimes = [
        variants::MODEL,
        variants::TEMPLATE_HASH,
        variants::PIVOT_LANGUAGE,
        variants::PIVOT_TEXT,
        variants::ANSWER,
        variants::RAW_ANSWER,
        variants::REASON,
    ];
    let names: Vec<&str> = always.iter().chain(&sometimes).copied().collect();
    let mut strings: Vec<StringBuilder> = names.iter().map(|_| StringBuilder::new()).collect();
    let mut fidelity = Float32Builder::new();
    let mut rank = Int32Builder::new();
    let mut accepted = BooleanBuilder::new();
    for (c, d) in cands.iter().zip(decisions) {
        let llm = c.llm.as_ref();
        let values: [Option<&str>; 14] = [
            Some(&c.id),
            Some(c.source.kind()),
            Some(c.source.id(ds)),
            Some(c.strategy.name()),
            Some(&c.text),
            Some(c.source.text(ds)),
            Some(&c.detail),
            llm.map(|l| l.model.as_str()),
            llm.map(|l| l.template_hash.as_str()),
            llm.and_then(|l| l.pivot_language.as_deref()),
            llm.and_then(|l| l.pivot_text.as_deref()),
            llm.and_then(|l| l.answer.as_deref()),
            llm.and_then(|l| l.raw.as_deref()),
            d.reason.map(RejectReason::name),
        ];
        for (b, v) in strings.iter_mut().zip(values) {
            b.append_option(v);
        }
        fidelity.append_value(d.fidelity);
        rank.append_option(d.round_trip_rank.map(|r| r as i32));
        accepted.append_value(d.accepted);
    }
    let mut cols: Vec<(String, ArrayRef)> =
        names.iter().zip(strings.iter_mut()).map(|(n, b)| (n.to_string(), Arc::new(b.finish()) as ArrayRef)).collect();
    let reason = cols.pop().expect("reason column");
    cols.push((variants::FIDELITY.into(), Arc::new(fidelity.finish())));
    cols.push((variants::ROUND_TRIP_RANK.into(), Arc::new(rank.finish())));
    cols.push((variants::ACCEPTED.into(), Arc::new(accepted.finish())));
    cols.push(reason);
    let nullable: Vec<&str> = sometimes.iter().copied().chain([variants::ROUND_TRIP_RANK]).collect();
    let b = batch(cols, &nullable).map_err(|e| sink.err(e))?;
    sink.write(b)?;
    sink.finish()?;
    output_file(dir, file, "variants", cands.len())
}

#[derive(Serialize)]
struct FlagLine<'a> {
    query: &'a str,
    pos: Vec<&'a str>,
    neg: Vec<&'a str>,
    pos_scores: Vec<f32>,
    neg_scores: Vec<f32>,
    query_id: &'a str,
    pos_ids: Vec<&'a str>,
    neg_ids: Vec<&'a str>,
}

/// A pair's positives: the mined positive, then the candidates the judge relabelled (their score is
/// the teacher's, else the deciding judge score: their retriever score is not kept).
fn positives_of(p: &MinedPair, judged: Option<&JudgeOutput>) -> Vec<(usize, f32)> {
    let q = p.query;
    let score = judged.map_or(p.positive_score, |j| j.score(q, p.positive, p.positive_score));
    let extra: &[usize] = judged.map_or(&[], |j| j.extra_positives(q));
    let extra_score = |d: usize| {
        judged.and_then(|j| j.teacher.as_ref().or(Some(&j.judge_scores))?.get(&(q, d)).copied()).unwrap_or(f32::NAN)
    };
    std::iter::once((p.positive, score)).chain(extra.iter().map(|&d| (d, extra_score(d)))).collect()
}

/// A pair's negatives with their written scores.
fn negatives_of(p: &MinedPair, judged: Option<&JudgeOutput>) -> Vec<(usize, f32)> {
    p.negatives.iter().map(|n| (n.doc, judged.map_or(n.score, |j| j.score(p.query, n.doc, n.score)))).collect()
}

fn write_flag_jsonl(
    path: &Path,
    ds: &Dataset,
    pairs: &[MinedPair],
    judged: Option<&JudgeOutput>,
) -> Result<usize, WriteError> {
    write_jsonl(
        path,
        pairs.iter().map(|p| {
            let (pos, neg) = (positives_of(p, judged), negatives_of(p, judged));
            let text = |v: &[(usize, f32)]| v.iter().map(|&(d, _)| ds.docs[d].text.as_str()).collect();
            let ids = |v: &[(usize, f32)]| v.iter().map(|&(d, _)| ds.docs[d].id.as_str()).collect();
            FlagLine {
                query: &ds.queries[p.query].text,
                pos: text(&pos),
                neg: text(&neg),
                pos_scores: pos.iter().map(|&(_, s)| s).collect(),
                neg_scores: neg.iter().map(|&(_, s)| s).collect(),
                query_id: &ds.queries[p.query].id,
                pos_ids: ids(&pos),
                neg_ids: ids(&neg),
            }
        }),
    )
}

#[derive(Serialize)]
struct TevatronLine<'a> {
    query_id: &'a str,
    query: &'a str,
    positive_passages: Vec<TevatronPassage<'a>>,
    negative_passages: Vec<TevatronPassage<'a>>,
}

#[derive(Serialize)]
struct TevatronPassage<'a> {
    docid: &'a str,
    text: &'a str,
    /// The written score (retriever, or teacher with `output.scores = "judge"`): Tevatron's
    /// distillation trainer reads it.
    score: f32,
}

/// `tevatron.jsonl`: one line per mined pair, in Tevatron's training layout (the `title` key is left
/// out: titles are part of `text` when `input.include_title` is on).
fn write_tevatron(
    path: &Path,
    ds: &Dataset,
    pairs: &[MinedPair],
    judged: Option<&JudgeOutput>,
) -> Result<usize, WriteError> {
    let passages = |v: Vec<(usize, f32)>| {
        v.into_iter()
            .map(|(d, score)| TevatronPassage { docid: &ds.docs[d].id, text: &ds.docs[d].text, score })
            .collect()
    };
    write_jsonl(
        path,
        pairs.iter().map(|p| TevatronLine {
            query_id: &ds.queries[p.query].id,
            query: &ds.queries[p.query].text,
            positive_passages: passages(positives_of(p, judged)),
            negative_passages: passages(negatives_of(p, judged)),
        }),
    )
}

#[derive(Serialize)]
struct BeirDoc<'a> {
    _id: &'a str,
    title: &'a str,
    text: &'a str,
}

#[derive(Serialize)]
struct BeirQuery<'a> {
    _id: &'a str,
    text: &'a str,
    metadata: BeirQueryMeta<'a>,
}

#[derive(Serialize)]
struct BeirQueryMeta<'a> {
    strategy: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_id: Option<&'a str>,
}

/// `beir/`: every document, every query with positives (given and accepted generated ones, with their
/// strategy and source in `metadata`; queries the contamination guard removed are left out) and their positives (with the judge's relabelled ones) as a BEIR folder, to
/// evaluate on the generated queries or hand them to other tools.
fn write_beir(dir: &Path, ds: &Dataset, judged: Option<&JudgeOutput>) -> Result<Vec<OutputFile>, WriteError> {
    let beir = dir.join(schema::BEIR_DIR);
    let qrels_dir = beir.join("qrels");
    std::fs::create_dir_all(&qrels_dir).map_err(|source| WriteError::Io { path: qrels_dir.clone(), source })?;
    let docs = write_jsonl(
        &beir.join("corpus.jsonl"),
        ds.docs.iter().map(|d| BeirDoc { _id: &d.id, title: "", text: &d.text }),
    )?;
    let queries = write_jsonl(
        &beir.join("queries.jsonl"),
        ds.queries.iter().zip(&ds.positives).filter(|(_, ps)| !ps.is_empty()).map(|(q, _)| BeirQuery {
            _id: &q.id,
            text: &q.text,
            metadata: BeirQueryMeta {
                strategy: q.strategy(),
                source_id: q.origin.as_ref().map(|o| o.source_id.as_str()),
            },
        }),
    )?;
    let relabelled = judged.map(|j| &j.relabelled);
    let qrels = format!("qrels/{}.tsv", schema::BEIR_SPLIT);
    let rows = write_qrels(&beir.join(&qrels), ds, relabelled)?;
    let file =
        |name: &str, kind: &str, rows: usize| output_file(dir, &format!("{}/{name}", schema::BEIR_DIR), kind, rows);
    Ok(vec![
        file("corpus.jsonl", "beir-corpus", docs)?,
        file("queries.jsonl", "beir-queries", queries)?,
        file(&qrels, "beir-qrels", rows)?,
    ])
}

/// Write a BEIR qrels file (header, then query-id, corpus-id, 1): every query's positives, plus the
/// candidates the judge relabelled. Returns the rows written.
fn write_qrels(
    path: &Path,
    ds: &Dataset,
    relabelled: Option<&std::collections::BTreeMap<usize, Vec<usize>>>,
) -> Result<usize, WriteError> {
    let mut text = String::from("query-id\tcorpus-id\tscore\n");
    let mut rows = 0;
    for (q, ps) in ds.positives.iter().enumerate() {
        for &d in ps.iter().chain(relabelled.and_then(|r| r.get(&q)).into_iter().flatten()) {
            text.push_str(&format!("{}\t{}\t1\n", ds.queries[q].id, ds.docs[d].id));
            rows += 1;
        }
    }
    write_atomic(path, text.as_bytes())?;
    Ok(rows)
}

/// Write `qrels.judged.tsv` (BEIR qrels layout: query-id, corpus-id, score): the positives of every
/// mined query plus the candidates the judge relabelled as positives.
pub fn write_judged_qrels(
    dir: &Path,
    ds: &Dataset,
    relabelled: &std::collections::BTreeMap<usize, Vec<usize>>,
) -> Result<OutputFile, WriteError> {
    let file = schema::JUDGED_QRELS;
    let rows = write_qrels(&dir.join(file), ds, Some(relabelled))?;
    output_file(dir, file, "qrels", rows)
}

#[derive(Serialize)]
struct ReviewLine<'a> {
    query_id: &'a str,
    query_strategy: &'a str,
    query: &'a str,
    positive_id: &'a str,
    positive: &'a str,
    positive_score: f32,
    candidates_above_positive: usize,
    candidates: Vec<ReviewCandidate<'a>>,
}

#[derive(Serialize)]
struct ReviewCandidate<'a> {
    doc_id: &'a str,
    text: &'a str,
    score: f32,
    /// score - positive_score (> 0: the candidate beat the positive).
    margin: f32,
    rank: usize,
    outcome: &'static str,
}

/// Write `review.jsonl`: one line per pair with suspicious candidates (see [`MinedPair::suspects`]).
pub fn write_review(dir: &Path, ds: &Dataset, pairs: &[MinedPair]) -> Result<OutputFile, WriteError> {
    let file = schema::REVIEW;
    let rows = write_jsonl(
        &dir.join(file),
        pairs.iter().filter(|p| !p.suspects.is_empty()).map(|p| {
            let q = &ds.queries[p.query];
            ReviewLine {
                query_id: &q.id,
                query_strategy: q.strategy(),
                query: &q.text,
                positive_id: &ds.docs[p.positive].id,
                positive: &ds.docs[p.positive].text,
                positive_score: p.positive_score,
                candidates_above_positive: p.above_positive,
                candidates: p
                    .suspects
                    .iter()
                    .map(|s| ReviewCandidate {
                        doc_id: &ds.docs[s.candidate.doc].id,
                        text: &ds.docs[s.candidate.doc].text,
                        score: s.candidate.score,
                        margin: s.candidate.score - p.positive_score,
                        rank: s.candidate.rank,
                        outcome: s.outcome.name(),
                    })
                    .collect(),
            }
        }),
    )?;
    output_file(dir, file, "review", rows)
}

/// Write one JSON value per line, atomically; returns the lines written.
fn write_jsonl<T: Serialize>(path: &Path, lines: impl Iterator<Item = T>) -> Result<usize, WriteError> {
    let mut f = create(path)?;
    let io = |source| WriteError::Io { path: path.to_path_buf(), source };
    let mut w = std::io::BufWriter::new(f.file().try_clone().map_err(io)?);
    let mut rows = 0;
    for line in lines {
        serde_json::to_writer(&mut w, &line).map_err(|e| io(e.into()))?;
        w.write_all(b"\n").map_err(io)?;
        rows += 1;
    }
    w.flush().map_err(io)?;
    drop(w);
    commit(f, path)?;
    Ok(rows)
}
