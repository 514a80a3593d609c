//! Contamination guard: keep evaluation sets out of the training data (`[exclude_eval]`,
//! `--exclude-eval DIR`).
//!
//! Each evaluation set is a BEIR folder, read by [`crate::ingest`]: the queries of its `split` and the
//! documents they judge relevant. A training query (given or generated) is removed when its
//! normalised text (lowercase letters and digits) equals an evaluation query's, or when the cosine of their embeddings is at least
//! `max_cosine`; its pairs are not mined. With `documents`, every corpus document whose normalised
//! text equals an evaluation query's relevant document is held out: it is no query's positive (a
//! query left with none is not mined) and never a negative (mining counts it under `eval document`).
//! The report counts what was removed and lists examples.

use crate::config::{ExcludeEvalConfig, InputConfig};
use crate::hash::{ContentHash, text_key};
use crate::index::exact_search;
use crate::ingest::{self, Dataset, IngestError};
use crate::vectors::Vectors;
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;

/// Errors of the contamination guard.
#[derive(Debug, thiserror::Error)]
pub enum ContaminationError {
    /// An evaluation set could not be read.
    #[error("exclude_eval: evaluation set {dir}: {source}")]
    Read {
        /// The BEIR folder.
        dir: PathBuf,
        /// What went wrong.
        source: IngestError,
    },
}

/// One evaluation set: the queries of its split that have relevant documents, and those documents.
pub struct EvalSet {
    /// The BEIR folder.
    pub dir: PathBuf,
    /// Its queries, documents and qrels.
    pub data: Dataset,
}

/// Read every configured evaluation set (titles joined to texts as the training input does).
pub fn load(cfg: &ExcludeEvalConfig, input: &InputConfig) -> Result<Vec<EvalSet>, ContaminationError> {
    cfg.dirs
        .iter()
        .map(|dir| {
            let inp = InputConfig {
                beir: Some(dir.clone()),
                split: cfg.split.clone(),
                corpus: Some(dir.join("corpus.jsonl")),
                queries: Some(dir.join("queries.jsonl")),
                qrels: Some(dir.join("qrels").join(format!("{}.tsv", cfg.split))),
                include_title: input.include_title,
                on_bad_record: input.on_bad_record,
                max_record_bytes: input.max_record_bytes,
                ..InputConfig::default()
            };
            let data =
                ingest::load(&inp, false).map_err(|source| ContaminationError::Read { dir: dir.clone(), source })?;
            Ok(EvalSet { dir: dir.clone(), data })
        })
        .collect()
}

/// The form two queries are compared in: lowercase letters and digits, single spaces.
fn query_key(text: &str) -> ContentHash {
    let kept: String = text.chars().map(|c| if c.is_alphanumeric() { c } else { ' ' }).collect();
    text_key(&kept, true)
}

/// The texts of every evaluation query, in set order (the rows of the vectors [`apply`] takes).
pub fn query_texts(sets: &[EvalSet]) -> Vec<&str> {
    sets.iter().flat_map(|s| s.data.queries.iter().map(|q| q.text.as_str())).collect()
}

/// Why a training query matched an evaluation query (report.json spells it `same-text`, `cosine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MatchReason {
    /// The same normalised text.
    SameText,
    /// A cosine of at least `max_cosine`.
    Cosine,
}

/// A removed training query and the evaluation query it matched.
#[derive(Debug, Clone, Serialize)]
pub struct Example {
    /// The training query's id.
    pub query_id: String,
    /// `given` or the strategy that generated it.
    pub strategy: String,
    /// Its text.
    pub query: String,
    /// The evaluation set's folder.
    pub eval_dir: PathBuf,
    /// The evaluation query's id.
    pub eval_query_id: String,
    /// Its text.
    pub eval_query: String,
    /// Why it matched.
    pub reason: MatchReason,
    /// Cosine similarity of the two queries.
    pub cosine: f32,
}

/// What the guard removed (report.json `exclude_eval`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ContaminationStats {
    /// The cosine threshold used.
    pub max_cosine: f32,
    /// Evaluation sets read.
    pub eval_sets: usize,
    /// Their queries.
    pub eval_queries: usize,
    /// Their relevant documents.
    pub eval_documents: usize,
    /// Training queries removed because their normalised text equals an evaluation query's.
    pub queries_same_text: usize,
    /// Training queries removed because their cosine to an evaluation query is >= `max_cosine`.
    pub queries_near: usize,
    /// Removed queries per strategy (`given`, or the generating strategy).
    pub queries_by_strategy: std::collections::BTreeMap<String, usize>,
    /// Corpus documents held out (same text as an evaluation query's relevant document).
    pub documents_held_out: usize,
    /// (query, positive) links dropped because the positive is held out.
    pub positives_dropped: usize,
    /// Queries left without any positive by that (not mined).
    pub queries_without_positives: usize,
    /// The first removed queries, in query order.
    pub examples: Vec<Example>,
}

impl ContaminationStats {
    /// The terminal summary lines (with up to three examples).
    pub fn summary(&self) -> String {
        let mut s = format!(
            "  exclude  {} eval set(s): {} queries, {} relevant documents\n           removed {} training queries ({} same text, {} cosine >= {}); {} documents held out ({} positives dropped, {} queries left without positives)\n",
            self.eval_sets,
            self.eval_queries,
            self.eval_documents,
            self.queries_same_text + self.queries_near,
            self.queries_same_text,
            self.queries_near,
            self.max_cosine,
            self.documents_held_out,
            self.positives_dropped,
            self.queries_without_positives
        );
        for e in self.examples.iter().take(3) {
            let why = if e.reason == MatchReason::SameText { "same text; " } else { "" };
            s.push_str(&format!(
                "           {:?} ({}) ~ {:?} ({why}cosine {:.3})\n",
                e.query, e.strategy, e.eval_query, e.cosine
            ));
        }
        s
    }
}

/// Remove the training queries that match an evaluation query (their positives are cleared, so they
/// are not mined) and, with `cfg.documents`, hold out the evaluation documents (`ds.held_out`).
/// `query_vecs` are the training queries' vectors, `eval_vecs` those of [`query_texts`].
pub fn apply(
    ds: &mut Dataset,
    query_vecs: &Vectors,
    sets: &[EvalSet],
    eval_vecs: &Vectors,
    cfg: &ExcludeEvalConfig,
) -> ContaminationStats {
    let eval: Vec<(usize, usize)> =
        sets.iter().enumerate().flat_map(|(s, set)| (0..set.data.queries.len()).map(move |q| (s, q))).collect();
    let mut stats = ContaminationStats {
        max_cosine: cfg.max_cosine,
        eval_sets: sets.len(),
        eval_queries: eval.len(),
        ..Default::default()
    };
    let by_text: HashMap<ContentHash, usize> =
        eval.iter().enumerate().rev().map(|(i, &(s, q))| (query_key(&sets[s].data.queries[q].text), i)).collect();
    let nearest = exact_search(eval_vecs, query_vecs, 1);
    for (q, hits) in nearest.iter().enumerate() {
        if ds.positives[q].is_empty() {
            continue;
        }
        let best = hits.first().map(|h| (h.doc as usize, h.score));
        let (row, reason, cosine) = match (by_text.get(&query_key(&ds.queries[q].text)), best) {
            (Some(&i), _) => (i, MatchReason::SameText, crate::vectors::dot(query_vecs.row(q), eval_vecs.row(i))),
            (None, Some((i, score))) if score >= cfg.max_cosine => (i, MatchReason::Cosine, score),
            _ => continue,
        };
        ds.positives[q].clear();
        let query = &ds.queries[q];
        match reason {
            MatchReason::SameText => stats.queries_same_text += 1,
            MatchReason::Cosine => stats.queries_near += 1,
        }
        *stats.queries_by_strategy.entry(query.strategy().to_string()).or_default() += 1;
        if stats.examples.len() < cfg.examples {
            let (s, e) = eval[row];
            let eq = &sets[s].data.queries[e];
            stats.examples.push(Example {
                query_id: query.id.clone(),
                strategy: query.strategy().to_string(),
                query: query.text.clone(),
                eval_dir: sets[s].dir.clone(),
                eval_query_id: eq.id.clone(),
                eval_query: eq.text.clone(),
                reason,
                cosine,
            });
        }
    }
    let mut eval_docs: Vec<ContentHash> = sets
        .iter()
        .flat_map(|s| s.data.positives.iter().flatten().map(|&d| text_key(&s.data.docs[d].text, true)))
        .collect();
    eval_docs.sort_unstable();
    eval_docs.dedup();
    stats.eval_documents = eval_docs.len();
    if cfg.documents {
        ds.held_out = ds.docs.iter().map(|d| eval_docs.binary_search(&text_key(&d.text, true)).is_ok()).collect();
        stats.documents_held_out = ds.held_out.iter().filter(|h| **h).count();
        for ps in &mut ds.positives {
            let before = ps.len();
            ps.retain(|&d| !ds.held_out[d]);
            stats.positives_dropped += before - ps.len();
            stats.queries_without_positives += (before > 0 && ps.is_empty()) as usize;
        }
    }
    if stats.queries_same_text + stats.queries_near + stats.documents_held_out > 0 {
        log::info!(
            "exclude_eval: removed {} training queries, held out {} documents",
            stats.queries_same_text + stats.queries_near,
            stats.documents_held_out
        );
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{Document, Query};

    fn doc(t: &str) -> Document {
        Document { id: t.into(), text: t.into(), hash: ContentHash::of(t) }
    }
    fn query(t: &str) -> Query {
        Query { id: t.into(), text: t.into(), hash: ContentHash::of(t), origin: None, answers: Vec::new() }
    }
    fn vecs(rows: &[[f32; 2]]) -> Vectors {
        let mut data: Vec<f32> = rows.iter().flatten().copied().collect();
        for r in data.chunks_mut(2) {
            crate::vectors::normalize(r);
        }
        Vectors { dim: 2, data }
    }

    #[test]
    fn same_text_and_near_queries_go_and_eval_documents_are_held_out() {
        let mut ds = Dataset {
            docs: vec![doc("alpha doc"), doc("beta doc"), doc("gamma doc")],
            queries: vec![query("What is Alpha?"), query("beta question"), query("far away"), query("only gamma")],
            positives: vec![vec![0], vec![1], vec![0, 1], vec![2]],
            ..Default::default()
        };
        let eval = Dataset {
            docs: vec![doc("Gamma  doc"), doc("unrelated")],
            queries: vec![query("what is alpha"), query("beta query")],
            positives: vec![vec![1], vec![0]],
            ..Default::default()
        };
        let sets = vec![EvalSet { dir: "eval".into(), data: eval }];
        let qv = vecs(&[[1.0, 0.0], [0.0, 1.0], [1.0, -1.0], [-1.0, 0.2]]);
        let ev = vecs(&[[1.0, 0.1], [0.05, 1.0]]);
        let cfg = ExcludeEvalConfig { max_cosine: 0.99, ..Default::default() };
        let st = apply(&mut ds, &qv, &sets, &ev, &cfg);
        assert_eq!((st.queries_same_text, st.queries_near), (1, 1), "{st:?}");
        assert_eq!(ds.positives[0], Vec::<usize>::new(), "same text after normalisation");
        assert_eq!(ds.positives[1], Vec::<usize>::new(), "cosine 0.999");
        assert_eq!(ds.positives[2], vec![0, 1], "far from every eval query");
        assert_eq!((st.examples[0].reason, st.examples[1].reason), (MatchReason::SameText, MatchReason::Cosine));
        assert_eq!(st.examples[0].eval_query_id, "what is alpha");
        assert_eq!(ds.held_out, vec![false, false, true], "gamma doc has an eval positive's text");
        assert_eq!((st.documents_held_out, st.positives_dropped, st.queries_without_positives), (1, 1, 1));
        assert_eq!(st.queries_by_strategy["given"], 2);

        let mut ds2 = Dataset {
            positives: vec![vec![2]],
            queries: vec![query("x")],
            docs: ds.docs.clone(),
            ..Default::default()
        };
        let off = ExcludeEvalConfig { documents: false, max_cosine: 0.99, ..Default::default() };
        let st = apply(&mut ds2, &vecs(&[[-1.0, 0.2]]), &sets, &ev, &off);
        assert!(ds2.held_out.is_empty() && ds2.positives[0] == vec![2] && st.documents_held_out == 0);
    }
}
