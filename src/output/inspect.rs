//! Inspect: a readable sample of an output folder's rows with their provenance (`tripletgen inspect`).
//!
//! Reads `<format>.parquet` and its row-aligned `<format>.provenance.parquet`, keeps the rows whose
//! query strategy / query id match, and prints a slice (`--offset`, `-n`) or a seeded random sample
//! (`--seed`) either as text blocks for people or as JSON lines for tools. Data columns are printed
//! as they are in the file, whatever the format, so what you see is what a trainer reads; rows of
//! generated queries also show where the query came from (variants.parquet).

use crate::config::Format;
use crate::output::schema::{self, provenance, variants};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float32Type, Int64Type, UInt32Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rand::SeedableRng;
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Errors of `tripletgen inspect`.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The folder holds no tripletgen Parquet output.
    #[error("{dir} is not a tripletgen output folder: none of {looked_for} is there")]
    NotAnOutput {
        /// The folder.
        dir: PathBuf,
        /// The files looked for.
        looked_for: String,
    },
    /// A file that should be there is not.
    #[error("{path} is missing{hint}")]
    Missing {
        /// The file.
        path: PathBuf,
        /// What to do.
        hint: String,
    },
    /// A file could not be read as the Parquet tripletgen writes.
    #[error("cannot read {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// What to show.
#[derive(Debug, Clone, Default)]
pub struct InspectOptions {
    /// The format to read (None: the first present of triplet, n-tuple, labeled-pair, labeled-list).
    pub format: Option<Format>,
    /// Only rows whose query came from this strategy (`given` for input queries).
    pub strategy: Option<String>,
    /// Only rows of this query id.
    pub query_id: Option<String>,
    /// Rows to show.
    pub n: usize,
    /// Skip this many matching rows first (ignored with `seed`).
    pub offset: usize,
    /// Show a seeded random sample of the matching rows instead of a slice.
    pub seed: Option<u64>,
    /// Characters of each text shown (0 = all).
    pub width: usize,
}

/// A cell of a data column.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// Text.
    Text(String),
    /// A number (labels).
    Int(i64),
    /// A list of texts.
    Texts(Vec<String>),
    /// A list of numbers.
    Ints(Vec<i64>),
}

/// One output row with its provenance.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// 0-based row number in the file.
    pub row: usize,
    /// Query id.
    pub query_id: String,
    /// `given` or the strategy that generated the query.
    pub query_strategy: String,
    /// Positive document id.
    pub positive_id: String,
    /// Query-positive similarity.
    pub positive_score: f32,
    /// Negative document ids of this row.
    pub negative_ids: Vec<String>,
    /// Their similarities.
    pub negative_scores: Vec<f32>,
    /// Their ranks among the query's non-positive candidates.
    pub negative_ranks: Vec<u32>,
    /// How a generated query was made (from variants.parquet; None for input queries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<VariantInfo>,
    /// The training columns, as written.
    pub data: Vec<(String, Value)>,
}

/// Where a generated query came from (a row of variants.parquet).
#[derive(Debug, Clone, Serialize)]
pub struct VariantInfo {
    /// `query` or `document`.
    pub source_kind: String,
    /// The source query or document id.
    pub source_id: String,
    /// The source text.
    pub source_text: String,
    /// What changed (lexical) or how it was asked (LLM).
    pub detail: String,
    /// Cosine similarity to the source.
    pub fidelity: f32,
}

/// The selected rows and what they were selected from.
#[derive(Debug, Clone, Serialize)]
pub struct Selection {
    /// The data file read.
    pub file: String,
    /// Rows in the file.
    pub total: usize,
    /// Rows matching the filters.
    pub matching: usize,
    /// Strategies present in the file (to help when nothing matches).
    pub strategies: Vec<String>,
    /// The rows shown.
    pub rows: Vec<Row>,
}

const FORMATS: [Format; 4] = [Format::Triplet, Format::NTuple, Format::LabeledPair, Format::LabeledList];

/// Read and select rows of the output folder `dir`.
pub fn select(dir: &Path, opts: &InspectOptions) -> Result<Selection, InspectError> {
    let format = match opts.format {
        Some(f) => f,
        None => *FORMATS.iter().find(|f| dir.join(schema::data_file(**f)).is_file()).ok_or_else(|| {
            InspectError::NotAnOutput {
                dir: dir.to_path_buf(),
                looked_for: FORMATS.iter().map(|f| schema::data_file(*f)).collect::<Vec<_>>().join(", "),
            }
        })?,
    };
    let file = schema::data_file(format);
    let data_path = dir.join(&file);
    let prov_path = dir.join(schema::provenance_file(format));
    if !data_path.is_file() {
        let hint = if dir.join(schema::REPORT_JSON).is_file() {
            format!(" (this run did not write the {} format; see output.formats)", format.name())
        } else {
            format!(" ({} does not look like a tripletgen output folder)", dir.display())
        };
        return Err(InspectError::Missing { path: data_path, hint });
    }
    if !prov_path.is_file() {
        return Err(InspectError::Missing {
            path: prov_path,
            hint: " (it is written beside every Parquet format)".into(),
        });
    }
    let mut rows = read_provenance(&prov_path)?;
    let data = read_data(&data_path)?;
    if data.len() != rows.len() {
        return Err(InspectError::Read {
            path: prov_path,
            message: format!(
                "{} rows, but {} has {}: the files are not from the same run",
                rows.len(),
                file,
                data.len()
            ),
        });
    }
    for (r, d) in rows.iter_mut().zip(data) {
        r.data = d;
    }
    let variants_path = dir.join(schema::VARIANTS);
    let variants = if variants_path.is_file() { read_variants(&variants_path)? } else { Default::default() };
    let total = rows.len();
    let strategies: BTreeSet<String> = rows.iter().map(|r| r.query_strategy.clone()).collect();
    rows.retain(|r| {
        opts.strategy.as_ref().is_none_or(|s| &r.query_strategy == s)
            && opts.query_id.as_ref().is_none_or(|q| &r.query_id == q)
    });
    let matching = rows.len();
    let rows: Vec<Row> = match opts.seed {
        Some(seed) => {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut idx = rand::seq::index::sample(&mut rng, rows.len(), opts.n.min(rows.len())).into_vec();
            idx.sort_unstable();
            idx.into_iter().map(|i| rows[i].clone()).collect()
        }
        None => rows.into_iter().skip(opts.offset).take(opts.n).collect(),
    };
    let rows = rows
        .into_iter()
        .map(|mut r: Row| {
            r.variant = variants.get(&r.query_id).cloned();
            r
        })
        .collect();
    Ok(Selection { file, total, matching, strategies: strategies.into_iter().collect(), rows })
}

fn parquet_batches(path: &Path) -> Result<Vec<RecordBatch>, InspectError> {
    let err = |e: &dyn std::fmt::Display| InspectError::Read { path: path.to_path_buf(), message: e.to_string() };
    let f = std::fs::File::open(path).map_err(|e| err(&e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| err(&e))?.build().map_err(|e| err(&e))?;
    reader.collect::<Result<Vec<_>, _>>().map_err(|e| err(&e))
}

fn read_provenance(path: &Path) -> Result<Vec<Row>, InspectError> {
    let mut rows = Vec::new();
    for b in parquet_batches(path)? {
        let col = |name: &str, want: &str| {
            b.column_by_name(name).cloned().ok_or_else(|| InspectError::Read {
                path: path.to_path_buf(),
                message: format!("no {want} column {name:?}: not a tripletgen provenance file"),
            })
        };
        let (qid, strat, pid, ps) = (
            col(provenance::QUERY_ID, "text")?,
            col(provenance::QUERY_STRATEGY, "text")?,
            col(provenance::POSITIVE_ID, "text")?,
            col(provenance::POSITIVE_SCORE, "number")?,
        );
        let (nid, ns, nr) = (
            col(provenance::NEGATIVE_IDS, "list")?,
            col(provenance::NEGATIVE_SCORES, "list")?,
            col(provenance::NEGATIVE_RANKS, "list")?,
        );
        let bad = |e: &str| InspectError::Read {
            path: path.to_path_buf(),
            message: format!("unexpected column types ({e})"),
        };
        let (qid, strat, pid) = (
            qid.as_string_opt::<i32>().ok_or_else(|| bad(provenance::QUERY_ID))?,
            strat.as_string_opt::<i32>().ok_or_else(|| bad(provenance::QUERY_STRATEGY))?,
            pid.as_string_opt::<i32>().ok_or_else(|| bad(provenance::POSITIVE_ID))?,
        );
        let ps = ps.as_primitive_opt::<Float32Type>().ok_or_else(|| bad(provenance::POSITIVE_SCORE))?;
        let (nid, ns, nr) = (
            nid.as_list_opt::<i32>().ok_or_else(|| bad(provenance::NEGATIVE_IDS))?,
            ns.as_list_opt::<i32>().ok_or_else(|| bad(provenance::NEGATIVE_SCORES))?,
            nr.as_list_opt::<i32>().ok_or_else(|| bad(provenance::NEGATIVE_RANKS))?,
        );
        for i in 0..b.num_rows() {
            let (ids, sc, rk) = (nid.value(i), ns.value(i), nr.value(i));
            let ids = ids.as_string_opt::<i32>().ok_or_else(|| bad(provenance::NEGATIVE_IDS))?;
            let sc = sc.as_primitive_opt::<Float32Type>().ok_or_else(|| bad(provenance::NEGATIVE_SCORES))?;
            let rk = rk.as_primitive_opt::<UInt32Type>().ok_or_else(|| bad(provenance::NEGATIVE_RANKS))?;
            rows.push(Row {
                row: rows.len(),
                query_id: qid.value(i).to_string(),
                query_strategy: strat.value(i).to_string(),
                positive_id: pid.value(i).to_string(),
                positive_score: ps.value(i),
                negative_ids: (0..ids.len()).map(|j| ids.value(j).to_string()).collect(),
                negative_scores: sc.values().to_vec(),
                negative_ranks: rk.values().to_vec(),
                variant: None,
                data: Vec::new(),
            });
        }
    }
    Ok(rows)
}

/// variants.parquet: variant id -> where it came from.
fn read_variants(path: &Path) -> Result<std::collections::HashMap<String, VariantInfo>, InspectError> {
    let mut out = std::collections::HashMap::new();
    for b in parquet_batches(path)? {
        let bad =
            |name: &str| InspectError::Read { path: path.to_path_buf(), message: format!("no text column {name:?}") };
        let text = |name: &str| {
            b.column_by_name(name).and_then(|c| c.as_string_opt::<i32>().cloned()).ok_or_else(|| bad(name))
        };
        let (id, kind, src, src_text, detail) = (
            text(variants::VARIANT_ID)?,
            text(variants::SOURCE_KIND)?,
            text(variants::SOURCE_ID)?,
            text(variants::SOURCE_TEXT)?,
            text(variants::DETAIL)?,
        );
        let fidelity = b
            .column_by_name("fidelity")
            .and_then(|c| c.as_primitive_opt::<Float32Type>().cloned())
            .ok_or_else(|| bad("fidelity"))?;
        for i in 0..b.num_rows() {
            out.insert(
                id.value(i).to_string(),
                VariantInfo {
                    source_kind: kind.value(i).to_string(),
                    source_id: src.value(i).to_string(),
                    source_text: src_text.value(i).to_string(),
                    detail: detail.value(i).to_string(),
                    fidelity: fidelity.value(i),
                },
            );
        }
    }
    Ok(out)
}

fn read_data(path: &Path) -> Result<Vec<Vec<(String, Value)>>, InspectError> {
    let mut out = Vec::new();
    for b in parquet_batches(path)? {
        let schema = b.schema();
        let mut rows: Vec<Vec<(String, Value)>> = vec![Vec::new(); b.num_rows()];
        for (field, col) in schema.fields().iter().zip(b.columns()) {
            let name = field.name().clone();
            let unsupported = || InspectError::Read {
                path: path.to_path_buf(),
                message: format!("column {name:?} has type {}", field.data_type()),
            };
            for (i, row) in rows.iter_mut().enumerate() {
                let v = match col.data_type() {
                    DataType::Utf8 => Value::Text(col.as_string::<i32>().value(i).to_string()),
                    DataType::Int64 => Value::Int(col.as_primitive::<Int64Type>().value(i)),
                    DataType::List(f) => {
                        let item = col.as_list::<i32>().value(i);
                        match f.data_type() {
                            DataType::Utf8 => {
                                let s = item.as_string::<i32>();
                                Value::Texts((0..s.len()).map(|j| s.value(j).to_string()).collect())
                            }
                            DataType::Int64 => Value::Ints(item.as_primitive::<Int64Type>().values().to_vec()),
                            _ => return Err(unsupported()),
                        }
                    }
                    _ => return Err(unsupported()),
                };
                row.push((name.clone(), v));
            }
        }
        out.extend(rows);
    }
    Ok(out)
}

fn short(s: &str, width: usize) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if width == 0 || flat.chars().count() <= width {
        return flat;
    }
    let cut: String = flat.chars().take(width).collect();
    format!("{}…", cut.trim_end())
}

impl Selection {
    /// Text blocks for people.
    pub fn text(&self, opts: &InspectOptions) -> String {
        let mut s = String::new();
        let how = match opts.seed {
            Some(seed) => format!("a random sample, seed {seed}"),
            None => format!("from match {}", opts.offset + 1),
        };
        let _ = writeln!(
            s,
            "{}: {} rows, {} match, showing {} ({how})",
            self.file,
            self.total,
            self.matching,
            self.rows.len()
        );
        if self.matching == 0 {
            let _ = writeln!(s, "no rows match; query strategies in this file: {}", self.strategies.join(", "));
        }
        let w = opts.width;
        for r in &self.rows {
            let _ = writeln!(
                s,
                "\n── row {} ─ query {} ({}) ─ positive {} ({:.3})",
                r.row, r.query_id, r.query_strategy, r.positive_id, r.positive_score
            );
            let negs: Vec<String> = r
                .negative_ids
                .iter()
                .zip(&r.negative_scores)
                .zip(&r.negative_ranks)
                .map(|((id, sc), rk)| format!("{id} ({sc:.3}, rank {rk})"))
                .collect();
            if let Some(v) = &r.variant {
                let _ = writeln!(
                    s,
                    "   generated from {} {} (fidelity {:.3}): {}",
                    v.source_kind,
                    v.source_id,
                    v.fidelity,
                    short(&v.source_text, w)
                );
                if !v.detail.is_empty() {
                    let _ = writeln!(s, "   how: {}", short(&v.detail, w));
                }
            }
            if !negs.is_empty() {
                let _ = writeln!(s, "   negatives: {}", negs.join(", "));
            }
            for (name, v) in &r.data {
                match v {
                    Value::Text(t) => {
                        let _ = writeln!(s, "   {name:<11} {}", short(t, w));
                    }
                    Value::Int(x) => {
                        let _ = writeln!(s, "   {name:<11} {x}");
                    }
                    Value::Ints(xs) => {
                        let _ = writeln!(s, "   {name:<11} {xs:?}");
                    }
                    Value::Texts(ts) => {
                        for (j, t) in ts.iter().enumerate() {
                            let _ = writeln!(s, "   {:<11} {}", format!("{name}[{j}]"), short(t, w));
                        }
                    }
                }
            }
        }
        s
    }

    /// One JSON object per row, each on a line.
    pub fn jsonl(&self) -> String {
        let mut s = String::new();
        for r in &self.rows {
            let mut v = serde_json::to_value(r).expect("rows serialise");
            let data: serde_json::Map<String, serde_json::Value> =
                r.data.iter().map(|(k, x)| (k.clone(), serde_json::to_value(x).expect("values serialise"))).collect();
            v["data"] = serde_json::Value::Object(data);
            s.push_str(&v.to_string());
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_without_outputs_is_named() {
        let t = tempfile::tempdir().unwrap();
        let e = select(t.path(), &InspectOptions { n: 5, ..Default::default() }).unwrap_err().to_string();
        assert!(e.contains(&t.path().display().to_string()) && e.contains("triplet.parquet"), "{e}");
        let e = select(t.path(), &InspectOptions { format: Some(Format::NTuple), n: 5, ..Default::default() })
            .unwrap_err()
            .to_string();
        assert!(e.contains("n-tuple.parquet is missing") && e.contains("does not look like"), "{e}");
    }

    #[test]
    fn short_folds_whitespace_and_cuts() {
        assert_eq!(short("a  b\n c", 0), "a b c");
        assert_eq!(short("abcdef", 3), "abc…");
    }
}
