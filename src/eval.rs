//! Eval: retrieval metrics of embedding models on a BEIR-layout dataset (`tripletgen eval`).
//!
//! The corpus and queries are read by [`crate::ingest`], embedded by [`Embedder`] (cached in a
//! workspace like a run's) and searched with [`Index`] — the same code that mines negatives — so a
//! base model and a fine-tuned one (any ONNX model folder) are compared on equal terms.
//!
//! Conventions (those of trec_eval / pytrec_eval, which the integration test checks against):
//! * a document is relevant when its qrels grade is > 0; a (query, document) judged twice keeps the
//!   higher grade; queries of the split without a relevant document are skipped and counted
//!   (queries.jsonl may hold queries of other splits: they are read, not evaluated);
//! * `ndcg@k`: gain = the grade, discount 1 / log2(rank + 1) (rank from 1), divided by the DCG of the
//!   ideal ordering of the query's judged grades, cut at k;
//! * `recall@k`: relevant documents in the top k / all relevant documents of the query;
//! * `mrr@10`: 1 / rank of the first relevant document within the top 10, else 0;
//! * `map@D`: average precision over the retrieved list of depth D = max(k, 10) (precision at the
//!   rank of every relevant document retrieved, summed, divided by all relevant documents);
//! * the ranking is by score, ties by document order in the corpus; the run file carries the
//!   ranks, so other tools see the same order.
//!
//! Means are over the evaluated queries.

use crate::config::Config;
use crate::embed::Embedder;
use crate::index::Index;
use crate::ingest::records::read_records;
use crate::ingest::{self, IngestError};
use crate::models;
use crate::workspace::Store;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Errors of `tripletgen eval`: those of the pipeline stages it runs (ingest, embed, index, write),
/// so one enum serves both.
pub type EvalError = crate::pipeline::PipelineError;

/// Graded judgements of one query: document id -> grade.
pub type Judgements = HashMap<String, f64>;

/// What to compute.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Cutoffs of ndcg@k and recall@k (validated: non-empty, each >= 1).
    pub ks: Vec<usize>,
    /// Drop a retrieved document whose id equals the query's id (BEIR's `ignore_identical_ids`).
    pub ignore_identical_ids: bool,
    /// Where to write each model's TREC run file (empty, or one path per model).
    pub run_out: Vec<PathBuf>,
    /// Workspace for the embedding cache (None: a temporary one).
    pub workspace: Option<PathBuf>,
    /// Show progress bars.
    pub progress: bool,
}

impl EvalOptions {
    /// Retrieval depth: the largest cutoff, at least 10 (for mrr@10 and ndcg@10).
    pub fn depth(&self) -> usize {
        self.ks.iter().copied().max().unwrap_or(10).max(10)
    }
}

/// Results of one model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelResult {
    /// The model folder or name.
    pub model: String,
    /// Its cache id (checksums of model.onnx and tokenizer.json, pooling, max length).
    pub model_id: String,
    /// Index kind used.
    pub index: String,
    /// Mean of every metric over the evaluated queries.
    pub mean: BTreeMap<String, f64>,
    /// Every metric per query id.
    pub per_query: BTreeMap<String, BTreeMap<String, f64>>,
    /// The TREC run file written, if asked for.
    pub run_file: Option<PathBuf>,
    /// Documents and queries embedded now (not served by the cache).
    pub embedded: usize,
    /// Seconds for embedding, searching and scoring.
    pub seconds: f64,
}

/// The whole evaluation (printed with `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Dataset folder.
    pub dataset: PathBuf,
    /// Qrels split.
    pub split: String,
    /// Documents in the corpus.
    pub documents: usize,
    /// Queries read.
    pub queries_read: usize,
    /// Queries with at least one relevant document (evaluated).
    pub queries_evaluated: usize,
    /// Queries judged in the split without a relevant document (skipped).
    pub queries_skipped: usize,
    /// Retrieval depth.
    pub depth: usize,
    /// Metric names, in display order.
    pub metrics: Vec<String>,
    /// One entry per model, in the order given.
    pub models: Vec<ModelResult>,
}

/// The metric names for `ks`, in display order.
pub fn metric_names(ks: &[usize], depth: usize) -> Vec<String> {
    let mut v = vec!["ndcg@10".to_string(), "mrr@10".into(), format!("map@{depth}")];
    let mut ks = ks.to_vec();
    ks.sort_unstable();
    ks.dedup();
    v.extend(ks.iter().filter(|&&k| k != 10).map(|k| format!("ndcg@{k}")));
    v.extend(ks.iter().map(|k| format!("recall@{k}")));
    v
}

fn relevant(rels: &Judgements, doc: &str) -> bool {
    rels.get(doc).is_some_and(|&g| g > 0.0)
}

fn discount(i: usize) -> f64 {
    1.0 / ((i + 2) as f64).log2()
}

/// nDCG@k with gain = grade (trec_eval's `ndcg_cut`).
pub fn ndcg_at(ranking: &[&str], rels: &Judgements, k: usize) -> f64 {
    let dcg: f64 = ranking
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, d)| rels.get(*d).copied().unwrap_or(0.0).max(0.0) * discount(i))
        .sum();
    let mut ideal: Vec<f64> = rels.values().copied().filter(|&g| g > 0.0).collect();
    ideal.sort_unstable_by(|a, b| b.total_cmp(a));
    let idcg: f64 = ideal.iter().take(k).enumerate().map(|(i, g)| g * discount(i)).sum();
    if idcg > 0.0 { dcg / idcg } else { 0.0 }
}

/// Relevant documents in the top k / all relevant documents.
pub fn recall_at(ranking: &[&str], rels: &Judgements, k: usize) -> f64 {
    let total = rels.values().filter(|&&g| g > 0.0).count();
    if total == 0 {
        return 0.0;
    }
    ranking.iter().take(k).filter(|d| relevant(rels, d)).count() as f64 / total as f64
}

/// 1 / rank of the first relevant document within the top k, else 0.
pub fn mrr_at(ranking: &[&str], rels: &Judgements, k: usize) -> f64 {
    ranking.iter().take(k).position(|d| relevant(rels, d)).map_or(0.0, |i| 1.0 / (i + 1) as f64)
}

/// Average precision over the whole ranking (trec_eval's `map` on that ranking).
pub fn average_precision(ranking: &[&str], rels: &Judgements) -> f64 {
    let total = rels.values().filter(|&&g| g > 0.0).count();
    if total == 0 {
        return 0.0;
    }
    let mut hits = 0;
    let mut sum = 0.0;
    for (i, d) in ranking.iter().enumerate() {
        if relevant(rels, d) {
            hits += 1;
            sum += hits as f64 / (i + 1) as f64;
        }
    }
    sum / total as f64
}

/// Every metric of one query (names as [`metric_names`]); `ranking` is cut at the depth already.
pub fn query_metrics(ranking: &[&str], rels: &Judgements, ks: &[usize], depth: usize) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    m.insert("ndcg@10".to_string(), ndcg_at(ranking, rels, 10));
    m.insert("mrr@10".to_string(), mrr_at(ranking, rels, 10));
    m.insert(format!("map@{depth}"), average_precision(&ranking[..ranking.len().min(depth)], rels));
    for &k in ks {
        m.insert(format!("ndcg@{k}"), ndcg_at(ranking, rels, k));
        m.insert(format!("recall@{k}"), recall_at(ranking, rels, k));
    }
    m
}

/// Graded qrels of the queries (query id -> judgements), read from the qrels file `cfg` names.
fn read_grades(cfg: &Config) -> Result<HashMap<String, Judgements>, IngestError> {
    let inp = &cfg.input;
    let path = inp.qrels.as_deref().expect("validated: qrels is set");
    let f = &inp.qrels_fields;
    let mut out: HashMap<String, Judgements> = HashMap::new();
    // Ingest has already applied `on_bad_record` to this file; records it rejected are skipped here.
    read_records(path, &[&f.query_id, &f.doc_id, &f.score], inp.max_record_bytes, &mut |item| {
        let Ok(rec) = item else { return Ok(()) };
        let (Some(q), Some(d)) = (rec.values[0].as_deref(), rec.values[1].as_deref()) else { return Ok(()) };
        let grade = match rec.values[2].as_deref().map(str::trim) {
            None | Some("") => 1.0,
            Some(s) => match s.parse::<f64>() {
                Ok(g) => g,
                Err(_) => return Ok(()),
            },
        };
        let g = out.entry(q.to_string()).or_default().entry(d.to_string()).or_insert(grade);
        *g = g.max(grade);
        Ok(())
    })?;
    Ok(out)
}

/// Evaluate every model of `models` (each a `[model]` section) on the dataset `cfg.input` names.
/// `cfg` must be validated; its `embed` and `index` sections apply to every model.
pub fn evaluate(
    cfg: &Config,
    models: &[crate::config::ModelConfig],
    opts: &EvalOptions,
) -> Result<EvalReport, EvalError> {
    let ds = ingest::load(&cfg.input, false)?;
    let grades = read_grades(cfg)?;
    let depth = opts.depth();
    let tmp;
    let ws = match &opts.workspace {
        Some(w) => w.clone(),
        None => {
            tmp = tempfile::Builder::new().prefix("tripletgen-eval-").tempdir().map_err(EvalError::TempDir)?;
            tmp.path().to_path_buf()
        }
    };
    let mut store = Store::open(&ws)?;
    let empty = Judgements::new();
    let mut results = Vec::new();
    for (mi, model) in models.iter().enumerate() {
        let start = std::time::Instant::now();
        let mut mcfg = cfg.clone();
        mcfg.model = model.clone();
        let resolved = models::resolve(&mcfg.model)?;
        let mut embedder = Embedder::load(&resolved, &mcfg)?;
        let doc_texts: Vec<&str> = ds.docs.iter().map(|d| d.text.as_str()).collect();
        let (doc_vecs, ds_stats) =
            embedder.embed_cached(&mut store, &doc_texts, &cfg.embed.document_prefix, "docs", opts.progress)?;
        let query_texts: Vec<&str> = ds.queries.iter().map(|q| q.text.as_str()).collect();
        let (query_vecs, qs_stats) =
            embedder.embed_cached(&mut store, &query_texts, &cfg.embed.query_prefix, "queries", opts.progress)?;
        let (model_name, model_id) = (embedder.model_name.clone(), embedder.model_id.clone());
        drop(embedder);
        let (index, _) = Index::build(doc_vecs, &cfg.index, None, opts.progress)?;
        let hits = index.search_batch(&query_vecs, depth + opts.ignore_identical_ids as usize)?;
        let mut per_query = BTreeMap::new();
        let mut run = String::new();
        for (q, hits) in ds.queries.iter().zip(&hits) {
            let ranked: Vec<(&str, f32)> = hits
                .iter()
                .map(|h| (ds.docs[h.doc as usize].id.as_str(), h.score))
                .filter(|(d, _)| !(opts.ignore_identical_ids && *d == q.id))
                .take(depth)
                .collect();
            let ids: Vec<&str> = ranked.iter().map(|(d, _)| *d).collect();
            per_query.insert(q.id.clone(), query_metrics(&ids, grades.get(&q.id).unwrap_or(&empty), &opts.ks, depth));
            for (r, (d, s)) in ranked.iter().enumerate() {
                let _ = writeln!(run, "{} Q0 {} {} {:.7} tripletgen", q.id, d, r + 1, s);
            }
        }
        let run_file = match opts.run_out.get(mi) {
            Some(p) => {
                crate::output::write::write_atomic(p, run.as_bytes())?;
                Some(p.clone())
            }
            None => None,
        };
        let names = metric_names(&opts.ks, depth);
        let n = per_query.len().max(1) as f64;
        let mean = names.iter().map(|m| (m.clone(), per_query.values().map(|q| q[m]).sum::<f64>() / n)).collect();
        results.push(ModelResult {
            model: model_name,
            model_id,
            index: index.kind().to_string(),
            mean,
            per_query,
            run_file,
            embedded: ds_stats.embedded + qs_stats.embedded,
            seconds: start.elapsed().as_secs_f64(),
        });
    }
    Ok(EvalReport {
        dataset: cfg.input.beir.clone().unwrap_or_default(),
        split: cfg.input.split.clone(),
        documents: ds.docs.len(),
        queries_read: ds.report.queries_read,
        queries_evaluated: ds.queries.len(),
        queries_skipped: grades.values().filter(|j| !j.values().any(|&g| g > 0.0)).count(),
        depth,
        metrics: metric_names(&opts.ks, depth),
        models: results,
    })
}

impl EvalReport {
    /// A table for people: one column per model, plus the difference to the first model.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} (split {}): {} queries evaluated, {} judged without a relevant document skipped ({} read), {} documents, depth {}",
            self.dataset.display(),
            self.split,
            self.queries_evaluated,
            self.queries_skipped,
            self.queries_read,
            self.documents,
            self.depth
        );
        for (i, m) in self.models.iter().enumerate() {
            let _ = writeln!(
                s,
                "  [{}] {} ({} index, {:.1}s, {} texts embedded)",
                i + 1,
                m.model,
                m.index,
                m.seconds,
                m.embedded
            );
        }
        let _ = write!(s, "{:<12}", "metric");
        for i in 0..self.models.len() {
            let _ = write!(s, " {:>9}", format!("[{}]", i + 1));
            if i > 0 {
                let _ = write!(s, " {:>9}", format!("[{}]-[1]", i + 1));
            }
        }
        s.push('\n');
        for name in &self.metrics {
            let _ = write!(s, "{name:<12}");
            let base = self.models.first().map(|m| m.mean[name]).unwrap_or(0.0);
            for (i, m) in self.models.iter().enumerate() {
                let v = m.mean[name];
                let _ = write!(s, " {v:>9.4}");
                if i > 0 {
                    let _ = write!(s, " {:>+9.4}", v - base);
                }
            }
            s.push('\n');
        }
        s
    }
}

/// Which model a `--model` value names: a folder when it exists or reads as a path (starts with `/`,
/// `.` or `~`; validation then names a missing folder), else a model name.
pub fn model_from_arg(arg: &str, base: &crate::config::ModelConfig) -> crate::config::ModelConfig {
    let mut m = base.clone();
    if Path::new(arg).is_dir() || arg.starts_with(['/', '.', '~']) {
        m.dir = Some(PathBuf::from(arg));
    } else {
        m.dir = None;
        m.name = arg.to_string();
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rels(pairs: &[(&str, f64)]) -> Judgements {
        pairs.iter().map(|(d, g)| (d.to_string(), *g)).collect()
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn ndcg_by_hand() {
        // Grades: a=3, b=2, c=0 (judged non-relevant), d=1. Ranking: c a x d b.
        let r = rels(&[("a", 3.0), ("b", 2.0), ("c", 0.0), ("d", 1.0)]);
        let ranking = ["c", "a", "x", "d", "b"];
        let dcg = 3.0 / 3f64.log2() + 1.0 / 5f64.log2() + 2.0 / 6f64.log2();
        let idcg = 3.0 + 2.0 / 3f64.log2() + 1.0 / 2.0;
        close(ndcg_at(&ranking, &r, 10), dcg / idcg);
        // Cut at 2: only "a" at rank 2 counts; the ideal list is cut at 2 too.
        close(ndcg_at(&ranking, &r, 2), (3.0 / 3f64.log2()) / (3.0 + 2.0 / 3f64.log2()));
        close(ndcg_at(&["a", "b", "d"], &r, 3), 1.0);
        close(ndcg_at(&["x"], &r, 10), 0.0);
    }

    #[test]
    fn recall_mrr_and_ap_by_hand() {
        let r = rels(&[("a", 1.0), ("b", 1.0), ("c", 0.0), ("d", 2.0)]);
        let ranking = ["c", "a", "x", "d", "y"]; // relevant at ranks 2 and 4; b never retrieved
        close(recall_at(&ranking, &r, 1), 0.0);
        close(recall_at(&ranking, &r, 2), 1.0 / 3.0);
        close(recall_at(&ranking, &r, 5), 2.0 / 3.0);
        close(mrr_at(&ranking, &r, 10), 0.5);
        close(mrr_at(&ranking, &r, 1), 0.0);
        // AP = (1/2 + 2/4) / 3 relevant.
        close(average_precision(&ranking, &r), (0.5 + 0.5) / 3.0);
        close(average_precision(&["a", "b", "d"], &r), 1.0);
        close(average_precision(&ranking, &rels(&[("c", 0.0)])), 0.0);
    }

    #[test]
    fn metric_names_and_query_metrics_agree() {
        let names = metric_names(&[100, 1, 10, 3], 100);
        assert_eq!(
            names,
            [
                "ndcg@10",
                "mrr@10",
                "map@100",
                "ndcg@1",
                "ndcg@3",
                "ndcg@100",
                "recall@1",
                "recall@3",
                "recall@10",
                "recall@100"
            ]
        );
        let m = query_metrics(&["a", "b"], &rels(&[("b", 1.0)]), &[1, 3, 10, 100], 100);
        for n in &names {
            assert!(m.contains_key(n), "{n} missing from {m:?}");
        }
        close(m["recall@1"], 0.0);
        close(m["recall@3"], 1.0);
        close(m["ndcg@1"], 0.0);
        close(m["ndcg@3"], 1.0 / 3f64.log2());
    }
}
