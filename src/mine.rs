//! Mine: positive-aware hard negatives for every (query, positive) pair.
//!
//! For each query we retrieve enough candidates to survive the exclusions, drop every known positive
//! of the query (all its qrels, not only the pair at hand) and every document whose text equals a
//! positive's or the query's, then rank what is left (rank 0 = the best non-positive). For each pair,
//! the rules of sentence-transformers' `mine_hard_negatives` apply in a fixed order — range_min,
//! range_max, max_score, min_score, absolute_margin, relative_margin — and every candidate a rule
//! removes is counted against that rule. `relative_margin` uses `pos - |pos| * m`, which stays right
//! when scores are negative. Sampling is `top` or seeded `random` (seeded per pair, so the result does
//! not depend on the order or number of other queries).
//!
//! Candidates come from the dense index, from BM25 ([`crate::index::bm25`]), or from both, fused by
//! reciprocal rank or interleaving ([`fuse`]); each candidate keeps its rank in every list, and its
//! score is always the dense model's cosine, so the rules mean the same whatever found it.

use crate::config::{Fusion, MineConfig, Retriever, Sampling};
use crate::hash::ContentHash;
use crate::index::bm25::{Bm25, Bm25Stats};
use crate::index::{Index, IndexError};
use crate::ingest::Dataset;
use crate::judge::{JudgeError, JudgeStage, Walk};
use crate::progress;
use crate::vectors::dot;
use crate::vectors::{Hit, Vectors};
use crate::workspace::Store;
use rand::SeedableRng;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// Errors of the mining stage.
#[derive(Debug, thiserror::Error)]
pub enum MineError {
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The judge failed.
    #[error(transparent)]
    Judge(#[from] JudgeError),
}

/// A chosen negative.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Negative {
    /// Document index.
    pub doc: usize,
    /// Cosine similarity to the query.
    pub score: f32,
    /// Rank among the query's non-positive candidates (0 = most similar).
    pub rank: usize,
    /// Rank in the dense index's results (0 = top hit), when it found the document.
    pub dense_rank: Option<u32>,
    /// Rank in BM25's results (0 = top hit), when it found the document.
    pub bm25_rank: Option<u32>,
}

impl Negative {
    /// `dense`, `bm25` or `dense+bm25`: which retrievers found it.
    pub fn retrievers(&self) -> &'static str {
        match (self.dense_rank, self.bm25_rank) {
            (Some(_), Some(_)) => "dense+bm25",
            (None, Some(_)) => "bm25",
            _ => "dense",
        }
    }
}

/// A document found by the retrievers, with its rank in each list.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Found {
    doc: u32,
    dense: Option<u32>,
    bm25: Option<u32>,
}

/// Merge the dense hits (best first) and BM25's documents (best first) into one candidate order.
fn fuse(dense: &[Hit], lexical: &[u32], cfg: &MineConfig) -> Vec<Found> {
    let dense: Vec<u32> = dense.iter().map(|h| h.doc).collect();
    let single = |list: &[u32], is_dense: bool| {
        let rank = |r: usize| Some(r as u32);
        list.iter()
            .enumerate()
            .map(|(r, &doc)| Found { doc, dense: rank(r).filter(|_| is_dense), bm25: rank(r).filter(|_| !is_dense) })
            .collect()
    };
    if lexical.is_empty() {
        return single(&dense, true);
    }
    if dense.is_empty() {
        return single(lexical, false);
    }
    let mut found: Vec<Found> = Vec::with_capacity(dense.len() + lexical.len());
    let mut at: HashMap<u32, usize> = HashMap::with_capacity(dense.len() + lexical.len());
    for (list, is_dense) in [(dense.as_slice(), true), (lexical, false)] {
        for (r, &doc) in list.iter().enumerate() {
            let i = *at.entry(doc).or_insert_with(|| {
                found.push(Found { doc, dense: None, bm25: None });
                found.len() - 1
            });
            if is_dense {
                found[i].dense = Some(r as u32);
            } else {
                found[i].bm25 = Some(r as u32);
            }
        }
    }
    let rank_of = |f: &Found, r: Retriever| match r {
        Retriever::Dense => f.dense,
        Retriever::Bm25 => f.bm25,
    };
    match cfg.fusion {
        Fusion::Rrf => {
            let k = cfg.rrf_k as f64;
            let score =
                |f: &Found| [f.dense, f.bm25].iter().flatten().map(|&r| 1.0 / (k + r as f64 + 1.0)).sum::<f64>();
            found.sort_by(|a, b| score(b).total_cmp(&score(a)).then(a.doc.cmp(&b.doc)));
        }
        Fusion::Interleave => {
            // Position 2r (first retriever) or 2r + 1 (second) of each document's best list.
            let order = |f: &Found| {
                cfg.retrievers.iter().enumerate().filter_map(|(i, &r)| rank_of(f, r).map(|x| 2 * x as usize + i)).min()
            };
            found.sort_by_key(|f| (order(f).unwrap_or(usize::MAX), f.doc));
        }
    }
    found
}

/// The result for one (query, positive) pair.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MinedPair {
    /// Query index.
    pub query: usize,
    /// Positive document index.
    pub positive: usize,
    /// Cosine similarity of query and positive.
    pub positive_score: f32,
    /// Chosen negatives, best first.
    pub negatives: Vec<Negative>,
    /// Non-positive candidates that scored above the positive (likely false negatives or a weak
    /// positive).
    pub above_positive: usize,
    /// Candidates scoring within `review_margin` of the positive or above it, best first, with what
    /// became of each: all of them with `mine.review`, else the first [`SUSPECTS_KEPT`] (for the
    /// HTML report).
    pub suspects: Vec<Suspect>,
}

/// Suspects kept per pair when `mine.review` is off (enough for the report's table).
pub const SUSPECTS_KEPT: usize = 3;

/// What became of a retrieved candidate of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Removed by `range_min`.
    RangeMin,
    /// Removed by `max_score`.
    MaxScore,
    /// Removed by `min_score`.
    MinScore,
    /// Removed by `absolute_margin`.
    AbsoluteMargin,
    /// Removed by `relative_margin`.
    RelativeMargin,
    /// Judged relevant to the query (a false negative) by the judge stage.
    JudgedRelevant,
    /// Allowed, but not picked.
    NotSampled,
    /// Chosen as a negative.
    Chosen,
}

impl Outcome {
    /// The name used in files and reports (the rule's config key for removals).
    pub fn name(self) -> &'static str {
        match self {
            Outcome::RangeMin => "range_min",
            Outcome::MaxScore => "max_score",
            Outcome::MinScore => "min_score",
            Outcome::AbsoluteMargin => "absolute_margin",
            Outcome::RelativeMargin => "relative_margin",
            Outcome::JudgedRelevant => "judged_relevant",
            Outcome::NotSampled => "not_sampled",
            Outcome::Chosen => "chosen",
        }
    }
}

/// A candidate scoring close to (or above) its pair's positive: a possible false negative.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Suspect {
    /// The candidate (document index, score, rank).
    pub candidate: Negative,
    /// What the rules did with it.
    pub outcome: Outcome,
}

/// Why candidates were removed, and how many.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RuleCounts {
    /// Known positives of the query found among the candidates (counted per pair).
    pub known_positive: u64,
    /// Same text as a positive or as the query (counted per pair).
    pub same_text: u64,
    /// Documents held out by the contamination guard (`exclude_eval.documents`; counted per pair).
    #[serde(skip_serializing_if = "is_zero")]
    pub eval_document: u64,
    /// Rank below `range_min`.
    pub range_min: u64,
    /// Score above `max_score`.
    pub max_score: u64,
    /// Score below `min_score`.
    pub min_score: u64,
    /// Too close to the positive by `absolute_margin`.
    pub absolute_margin: u64,
    /// Too close to the positive by `relative_margin`.
    pub relative_margin: u64,
    /// Judged relevant by the judge stage (walked past while picking).
    #[serde(skip_serializing_if = "is_zero")]
    pub judged_relevant: u64,
    /// Allowed, but not picked (beyond num_negatives).
    pub not_sampled: u64,
}

impl RuleCounts {
    /// The removals of every rule in the order the rules run, named as reports show them (the rule's
    /// config key; the checks before the rules by what they remove; `eval document` only when the
    /// contamination guard held a candidate out).
    /// (The judge's count comes last, and only when the judge passed over a candidate.)
    pub fn removals(&self) -> Vec<(&'static str, u64)> {
        let mut v = vec![
            ("known positive", self.known_positive),
            ("same text", self.same_text),
            (Outcome::RangeMin.name(), self.range_min),
            (Outcome::MaxScore.name(), self.max_score),
            (Outcome::MinScore.name(), self.min_score),
            (Outcome::AbsoluteMargin.name(), self.absolute_margin),
            (Outcome::RelativeMargin.name(), self.relative_margin),
        ];
        if self.eval_document > 0 {
            v.insert(2, ("eval document", self.eval_document));
        }
        if self.judged_relevant > 0 {
            v.push((Outcome::JudgedRelevant.name(), self.judged_relevant));
        }
        v
    }
}

/// Mining counts and score distributions.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MineStats {
    /// Queries mined.
    pub queries: usize,
    /// Pairs mined.
    pub pairs: usize,
    /// Candidates retrieved per query.
    pub candidates_per_query: usize,
    /// Removed candidates per rule.
    pub removed: RuleCounts,
    /// Pairs that got fewer than num_negatives negatives.
    pub pairs_short: usize,
    /// Pairs that got no negative at all.
    pub pairs_without_negatives: usize,
    /// Negatives chosen.
    pub negatives: usize,
    /// Pairs with at least one non-positive candidate scoring above the positive.
    pub pairs_with_candidates_above_positive: usize,
    /// Distribution of candidates above the positive per pair: count -> pairs (only candidates
    /// within `range_max` are seen, so counts stop there).
    pub candidates_above_positive: std::collections::BTreeMap<usize, usize>,
    /// Candidates written to review.jsonl (with `mine.review`).
    pub review_candidates: usize,
    /// With BM25 among the retrievers: its index and search times.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bm25: Option<Bm25Stats>,
    /// With several retrievers: chosen negatives by the retrievers that found them (`dense`, `bm25`,
    /// `dense+bm25`).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub negatives_by_retriever: std::collections::BTreeMap<String, usize>,
    /// Seconds spent searching and filtering.
    pub seconds: f64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Mine negatives for every pair of `ds`. With a `judge`, the candidates each pair would pick are
/// judged first (in chunks of queries, so memory stays bounded) and those judged relevant are passed
/// over; pairs of queries with too many relevant candidates are dropped (`judge.drop_query_above`).
pub fn mine(
    ds: &Dataset,
    index: &Index,
    query_vecs: &Vectors,
    cfg: &MineConfig,
    mut bm25: Option<&mut Bm25>,
    mut judge: Option<(&mut JudgeStage, &mut Store)>,
    show_progress: bool,
) -> Result<(Vec<MinedPair>, MineStats), MineError> {
    let use_dense = cfg.retrievers.contains(&Retriever::Dense);
    let start = std::time::Instant::now();
    // Documents sharing a normalised text.
    let doc_keys: Vec<ContentHash> =
        ds.docs.iter().map(|d| crate::hash::text_key(&d.text, cfg.normalize_text_match)).collect();
    let mut by_text: HashMap<ContentHash, Vec<usize>> = HashMap::new();
    for (i, k) in doc_keys.iter().enumerate() {
        by_text.entry(*k).or_default().push(i);
    }
    // Per query: the set of excluded documents (known positives + same-text documents).
    let excluded: Vec<HashSet<usize>> = ds
        .queries
        .iter()
        .enumerate()
        .map(|(q, query)| {
            let mut ex: HashSet<usize> = ds.positives[q].iter().copied().collect();
            let mut keys: Vec<ContentHash> = ds.positives[q].iter().map(|&d| doc_keys[d]).collect();
            keys.push(crate::hash::text_key(&query.text, cfg.normalize_text_match));
            for k in keys {
                if let Some(same) = by_text.get(&k) {
                    ex.extend(same.iter().copied());
                }
            }
            ex
        })
        .collect();
    let max_excluded = excluded.iter().map(HashSet::len).max().unwrap_or(0);
    // Held-out documents are skipped too: retrieve up to range_max more for them.
    let held_out = ds.held_out.iter().filter(|h| **h).count().min(cfg.range_max);
    let k = (cfg.range_max + max_excluded + held_out).min(index.len());

    let pb = progress::bar(ds.queries.len() as u64, "mine", "queries", show_progress);
    let chunk = 1024;
    let mut pairs_out = Vec::new();
    let mut removed = RuleCounts::default();
    for start_q in (0..ds.queries.len()).step_by(chunk) {
        let end_q = (start_q + chunk).min(ds.queries.len());
        let mut sub = Vectors { dim: query_vecs.dim, data: Vec::new() };
        sub.data.extend_from_slice(&query_vecs.data[start_q * query_vecs.dim..end_q * query_vecs.dim]);
        let dense: Vec<Vec<Hit>> =
            if use_dense { index.search_batch(&sub, k)? } else { vec![Vec::new(); end_q - start_q] };
        let lexical: Vec<Vec<u32>> = match bm25.as_deref_mut() {
            Some(b) => {
                let texts: Vec<&str> = ds.queries[start_q..end_q].iter().map(|q| q.text.as_str()).collect();
                b.search_batch(&texts, k).map_err(IndexError::from)?
            }
            None => vec![Vec::new(); end_q - start_q],
        };
        crate::killpoint::hit("mine-search");
        let results: Vec<(Vec<Ruled>, RuleCounts)> = (start_q..end_q)
            .into_par_iter()
            .map(|q| {
                let ex = &excluded[q];
                let mut counts = RuleCounts::default();
                let mut candidates = Vec::with_capacity(cfg.range_max);
                let (mut hit_positive, mut hit_same_text, mut hit_held_out) = (0, 0, 0);
                let qv = query_vecs.row(q);
                let hits = &dense[q - start_q];
                for f in fuse(hits, &lexical[q - start_q], cfg) {
                    if candidates.len() == cfg.range_max {
                        break;
                    }
                    let d = f.doc as usize;
                    if ds.held_out.get(d).copied().unwrap_or(false) {
                        hit_held_out += 1;
                        continue;
                    }
                    if ex.contains(&d) {
                        if ds.positives[q].contains(&d) {
                            hit_positive += 1;
                        } else {
                            hit_same_text += 1;
                        }
                        continue;
                    }
                    candidates.push(Negative {
                        doc: d,
                        // The dense score where the index found it, else computed the same way.
                        score: f.dense.map_or_else(|| dot(qv, index.vector(d)), |r| hits[r as usize].score),
                        rank: candidates.len(),
                        dense_rank: f.dense,
                        bm25_rank: f.bm25,
                    });
                }
                let out = ds.positives[q]
                    .iter()
                    .map(|&p| {
                        counts.known_positive += hit_positive;
                        counts.same_text += hit_same_text;
                        counts.eval_document += hit_held_out;
                        let pos_score = dot(qv, index.vector(p));
                        apply_rules(q, p, pos_score, candidates.clone(), cfg, &mut counts)
                    })
                    .collect();
                (out, counts)
            })
            .collect();
        let mut ruled = Vec::new();
        for (r, c) in results {
            ruled.extend(r);
            add_counts(&mut removed, &c);
        }
        let judged = match judge.as_mut() {
            Some((j, store)) if j.is_active() => {
                let orders: Vec<Vec<usize>> = ruled.iter().map(|r| r.walk_order(cfg, ds)).collect();
                let walks: Vec<Walk<'_>> = ruled
                    .iter()
                    .zip(&orders)
                    .map(|(r, o)| Walk { query: r.query, docs: o, want: cfg.num_negatives })
                    .collect();
                j.adjudicate(&walks, ds, store)?;
                crate::killpoint::hit("judge");
                Some((orders, &**j))
            }
            _ => None,
        };
        for (i, r) in ruled.into_iter().enumerate() {
            let p = match &judged {
                None => r.pick(cfg, ds, &mut removed),
                Some((orders, j)) => r.pick_judged(&orders[i], j, cfg, &mut removed),
            };
            pairs_out.push(p);
        }
        pb.inc((end_q - start_q) as u64);
    }
    pb.finish_and_clear();
    if let Some((j, _)) = judge.as_mut() {
        let dropped = j.dropped_queries();
        if !dropped.is_empty() {
            let before = pairs_out.len();
            pairs_out.retain(|p| !dropped.contains(&p.query));
            j.stats.queries_dropped = dropped.len();
            j.stats.pairs_dropped = before - pairs_out.len();
        }
        j.stats.relabelled = j.relabelled().values().map(Vec::len).sum();
    }

    let mut stats = MineStats {
        queries: ds.queries.len(),
        pairs: pairs_out.len(),
        candidates_per_query: k,
        removed,
        seconds: start.elapsed().as_secs_f64(),
        ..Default::default()
    };
    for p in &pairs_out {
        stats.negatives += p.negatives.len();
        stats.pairs_short += (p.negatives.len() < cfg.num_negatives) as usize;
        stats.pairs_without_negatives += p.negatives.is_empty() as usize;
        stats.pairs_with_candidates_above_positive += (p.above_positive > 0) as usize;
        *stats.candidates_above_positive.entry(p.above_positive).or_default() += 1;
        if cfg.review {
            stats.review_candidates += p.suspects.len();
        }
        if cfg.uses_bm25() {
            for n in &p.negatives {
                *stats.negatives_by_retriever.entry(n.retrievers().to_string()).or_default() += 1;
            }
        }
    }
    stats.bm25 = bm25.map(|b| b.stats.clone());
    Ok((pairs_out, stats))
}

fn add_counts(a: &mut RuleCounts, b: &RuleCounts) {
    a.known_positive += b.known_positive;
    a.same_text += b.same_text;
    a.eval_document += b.eval_document;
    a.range_min += b.range_min;
    a.max_score += b.max_score;
    a.min_score += b.min_score;
    a.absolute_margin += b.absolute_margin;
    a.relative_margin += b.relative_margin;
    a.judged_relevant += b.judged_relevant;
    a.not_sampled += b.not_sampled;
}

/// One pair after the rules: its candidates, what each rule did, and the allowed ones (by index).
#[derive(Debug, Clone)]
struct Ruled {
    query: usize,
    positive: usize,
    pos_score: f32,
    candidates: Vec<Negative>,
    outcomes: Vec<Outcome>,
    allowed: Vec<usize>,
    above_positive: usize,
}

/// Apply the rules to one pair's candidates (already free of positives, ranked, cut at range_max).
fn apply_rules(
    query: usize,
    positive: usize,
    pos_score: f32,
    candidates: Vec<Negative>,
    cfg: &MineConfig,
    counts: &mut RuleCounts,
) -> Ruled {
    let above_positive = candidates.iter().filter(|c| c.score > pos_score).count();
    let mut outcomes = Vec::with_capacity(candidates.len());
    let mut allowed = Vec::with_capacity(candidates.len());
    for (i, c) in candidates.iter().enumerate() {
        let (outcome, count) = if c.rank < cfg.range_min {
            (Outcome::RangeMin, &mut counts.range_min)
        } else if cfg.max_score.is_some_and(|m| c.score > m) {
            (Outcome::MaxScore, &mut counts.max_score)
        } else if cfg.min_score.is_some_and(|m| c.score < m) {
            (Outcome::MinScore, &mut counts.min_score)
        } else if cfg.absolute_margin.is_some_and(|m| c.score > pos_score - m) {
            (Outcome::AbsoluteMargin, &mut counts.absolute_margin)
        } else if cfg.relative_margin.is_some_and(|m| c.score > pos_score - pos_score.abs() * m) {
            (Outcome::RelativeMargin, &mut counts.relative_margin)
        } else {
            allowed.push(i);
            (Outcome::NotSampled, &mut counts.not_sampled)
        };
        *count += 1;
        outcomes.push(outcome);
    }
    Ruled { query, positive, pos_score, candidates, outcomes, allowed, above_positive }
}

impl Ruled {
    /// The per-pair random stream (seeded by the pair's texts, so it does not depend on other pairs).
    fn rng(&self, cfg: &MineConfig, ds: &Dataset) -> rand_chacha::ChaCha8Rng {
        let (qh, ph) = (&ds.queries[self.query].hash, &ds.docs[self.positive].hash);
        rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed ^ ContentHash::of_parts(&[&qh.0, &ph.0]).as_u64())
    }

    /// Without a judge: the first `num_negatives` allowed (top) or a seeded sample of them (random).
    fn pick(self, cfg: &MineConfig, ds: &Dataset, counts: &mut RuleCounts) -> MinedPair {
        let n = cfg.num_negatives.min(self.allowed.len());
        let picked: Vec<usize> = match cfg.sampling {
            Sampling::Top => self.allowed[..n].to_vec(),
            Sampling::Random => {
                let mut idx = rand::seq::index::sample(&mut self.rng(cfg, ds), self.allowed.len(), n).into_vec();
                idx.sort_unstable();
                idx.into_iter().map(|i| self.allowed[i]).collect()
            }
        };
        self.finish(picked, cfg, counts)
    }

    /// The order a judged pick walks the allowed candidates in (document indices): rank order for
    /// `top`, a seeded shuffle for `random`.
    fn walk_order(&self, cfg: &MineConfig, ds: &Dataset) -> Vec<usize> {
        let mut order: Vec<usize> = self.allowed.clone();
        if cfg.sampling == Sampling::Random {
            let perm = rand::seq::index::sample(&mut self.rng(cfg, ds), order.len(), order.len()).into_vec();
            order = perm.into_iter().map(|i| self.allowed[i]).collect();
        }
        order.into_iter().map(|i| self.candidates[i].doc).collect()
    }

    /// With a judge: walk `order` (document indices), skip candidates judged relevant (or whose
    /// judgement failed), pick the first `num_negatives` usable ones; best rank first.
    fn pick_judged(
        mut self,
        order: &[usize],
        judge: &JudgeStage,
        cfg: &MineConfig,
        counts: &mut RuleCounts,
    ) -> MinedPair {
        let at: HashMap<usize, usize> = self.candidates.iter().enumerate().map(|(i, c)| (c.doc, i)).collect();
        let mut picked = Vec::with_capacity(cfg.num_negatives);
        for d in order {
            if picked.len() == cfg.num_negatives {
                break;
            }
            let i = at[d];
            match judge.verdicts().get(&(self.query, *d)) {
                Some(v) if !v.usable() => {
                    if v.relevant {
                        self.outcomes[i] = Outcome::JudgedRelevant;
                        counts.judged_relevant += 1;
                        counts.not_sampled -= 1;
                    }
                }
                _ => picked.push(i),
            }
        }
        picked.sort_unstable();
        self.finish(picked, cfg, counts)
    }

    fn finish(mut self, picked: Vec<usize>, cfg: &MineConfig, counts: &mut RuleCounts) -> MinedPair {
        counts.not_sampled -= picked.len() as u64;
        for &i in &picked {
            self.outcomes[i] = Outcome::Chosen;
        }
        let negatives = picked.iter().map(|&i| self.candidates[i]).collect();
        let keep = if cfg.review { usize::MAX } else { SUSPECTS_KEPT };
        let pos_score = self.pos_score;
        let suspects = self
            .candidates
            .iter()
            .zip(self.outcomes)
            .filter(|(c, _)| c.score > pos_score - cfg.review_margin)
            .take(keep)
            .map(|(c, outcome)| Suspect { candidate: *c, outcome })
            .collect();
        MinedPair {
            query: self.query,
            positive: self.positive,
            positive_score: pos_score,
            negatives,
            above_positive: self.above_positive,
            suspects,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(scores: &[f32]) -> Vec<Negative> {
        scores
            .iter()
            .enumerate()
            .map(|(i, &s)| Negative { doc: 100 + i, score: s, rank: i, dense_rank: Some(i as u32), bm25_rank: None })
            .collect()
    }

    fn cfg() -> MineConfig {
        MineConfig { relative_margin: None, num_negatives: 10, ..MineConfig::default() }
    }

    #[test]
    fn fusion_orders_by_reciprocal_rank_or_alternates_and_keeps_both_ranks() {
        let docs = |f: &[Found]| f.iter().map(|x| x.doc).collect::<Vec<_>>();
        let dense: Vec<Hit> = [1, 2, 3].map(|doc| Hit { doc, score: 0.0 }).to_vec();
        let bm25 = [3, 4, 1];
        let rrf = fuse(&dense, &bm25, &cfg());
        // 1: 1/61 + 1/63; 3: 1/63 + 1/61 (tie, by document); 2: 1/62; 4: 1/62 (tie, by document).
        assert_eq!(docs(&rrf), vec![1, 3, 2, 4]);
        assert_eq!(rrf[1], Found { doc: 3, dense: Some(2), bm25: Some(0) });
        assert_eq!(rrf[3], Found { doc: 4, dense: None, bm25: Some(1) });
        let il =
            MineConfig { fusion: Fusion::Interleave, retrievers: vec![Retriever::Dense, Retriever::Bm25], ..cfg() };
        assert_eq!(docs(&fuse(&dense, &bm25, &il)), vec![1, 3, 2, 4], "d1 b3 d2 b4 (d3, b1 already taken)");
        let il = MineConfig { retrievers: vec![Retriever::Bm25, Retriever::Dense], ..il };
        assert_eq!(docs(&fuse(&dense, &bm25, &il)), vec![3, 1, 4, 2], "BM25 first");
        assert_eq!(docs(&fuse(&dense, &[], &cfg())), vec![1, 2, 3], "one list: its order");
        assert!(fuse(&[], &bm25, &cfg()).iter().all(|f| f.dense.is_none() && f.bm25.is_some()));
    }

    /// A one-query dataset with a positive (doc 0) and candidates 100.. .
    fn ds() -> Dataset {
        let mut ds = Dataset::default();
        for i in 0..200 {
            let t = format!("doc {i}");
            ds.docs.push(crate::ingest::Document { id: t.clone(), hash: ContentHash::of(&t), text: t });
        }
        ds.queries.push(crate::ingest::Query {
            id: "q".into(),
            text: "x".into(),
            hash: ContentHash::of("x"),
            origin: None,
            answers: Vec::new(),
        });
        ds.positives.push(vec![0]);
        ds
    }

    fn mine_pair(pos: f32, cands: Vec<Negative>, c: &MineConfig, counts: &mut RuleCounts) -> MinedPair {
        apply_rules(0, 0, pos, cands, c, counts).pick(c, &ds(), counts)
    }

    fn run(c: &MineConfig, pos: f32, scores: &[f32]) -> (Vec<usize>, RuleCounts) {
        let mut counts = RuleCounts::default();
        let p = mine_pair(pos, cands(scores), c, &mut counts);
        (p.negatives.iter().map(|n| n.doc).collect(), counts)
    }

    #[test]
    fn relative_margin_is_percent_of_positive() {
        let c = MineConfig { relative_margin: Some(0.05), ..cfg() };
        // pos 0.8 -> keep if <= 0.76
        let (kept, counts) = run(&c, 0.8, &[0.9, 0.77, 0.76, 0.5]);
        assert_eq!(kept, vec![102, 103]);
        assert_eq!(counts.relative_margin, 2);
    }

    #[test]
    fn relative_margin_with_negative_scores_does_not_flip() {
        // sentence-transformers #3819: with pos = -0.2, pos*(1-m) = -0.19 > pos, letting a
        // negative scoring -0.195 (closer than the positive) through.
        let c = MineConfig { relative_margin: Some(0.05), ..cfg() };
        let (kept, _) = run(&c, -0.2, &[-0.195, -0.21, -0.5]);
        assert_eq!(kept, vec![102]);
    }

    #[test]
    fn rules_apply_in_order_and_count_once() {
        let c = MineConfig {
            range_min: 1,
            max_score: Some(0.95),
            min_score: Some(0.1),
            absolute_margin: Some(0.1),
            num_negatives: 1,
            ..cfg()
        };
        let (kept, counts) = run(&c, 0.9, &[0.99, 0.97, 0.85, 0.7, 0.6, 0.05]);
        assert_eq!(kept, vec![103]);
        assert_eq!(counts.range_min, 1);
        assert_eq!(counts.max_score, 1);
        assert_eq!(counts.absolute_margin, 1);
        assert_eq!(counts.min_score, 1);
        assert_eq!(counts.not_sampled, 1);
    }

    #[test]
    fn suspects_carry_the_rule_that_removed_them() {
        let c = MineConfig {
            range_min: 1,
            relative_margin: Some(0.05),
            num_negatives: 1,
            review: true,
            review_margin: 0.1,
            ..cfg()
        };
        let mut counts = RuleCounts::default();
        // pos 0.8: 0.9 and 0.85 score above it; 0.75 and 0.72 are within the 0.1 review margin (and
        // below 95 % of the positive, 0.76); 0.6 is not a suspect.
        let p = mine_pair(0.8, cands(&[0.9, 0.85, 0.75, 0.72, 0.6]), &c, &mut counts);
        assert_eq!(p.above_positive, 2);
        let got: Vec<(usize, Outcome)> = p.suspects.iter().map(|s| (s.candidate.doc, s.outcome)).collect();
        assert_eq!(
            got,
            vec![
                (100, Outcome::RangeMin),
                (101, Outcome::RelativeMargin),
                (102, Outcome::Chosen),
                (103, Outcome::NotSampled)
            ],
            "{:?}",
            p.suspects
        );
        assert_eq!(p.negatives.iter().map(|n| n.doc).collect::<Vec<_>>(), vec![102]);
        assert_eq!((counts.range_min, counts.relative_margin, counts.not_sampled), (1, 1, 2));
        // Without review, at most SUSPECTS_KEPT are kept.
        let c = MineConfig { relative_margin: None, review: false, review_margin: 1.0, ..cfg() };
        let p = mine_pair(0.5, cands(&[0.9, 0.85, 0.8, 0.7, 0.6]), &c, &mut counts);
        assert_eq!(p.suspects.len(), SUSPECTS_KEPT);
        assert!(p.suspects.iter().all(|s| s.outcome == Outcome::Chosen));
        let c = MineConfig { review: true, ..c };
        let p = mine_pair(0.5, cands(&[0.9, 0.85, 0.8, 0.7, 0.6]), &c, &mut counts);
        assert_eq!(p.suspects.len(), 5);
    }

    #[test]
    fn random_sampling_is_seeded_and_sorted() {
        let c = MineConfig { sampling: Sampling::Random, num_negatives: 3, ..cfg() };
        let scores: Vec<f32> = (0..20).map(|i| 0.9 - i as f32 * 0.01).collect();
        let (a, _) = run(&c, 0.95, &scores);
        let (b, _) = run(&c, 0.95, &scores);
        assert_eq!(a, b);
        assert_eq!(a.len(), 3);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        let c2 = MineConfig { seed: 7, ..c };
        let (d, _) = run(&c2, 0.95, &scores);
        assert_ne!(a, d);
    }
}
