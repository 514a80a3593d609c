//! Filter: accept or reject generated variants, keeping every rejected candidate with its reason.
//!
//! Checks, in order (the first failing one is the reason): a rejection made at generation (an answer
//! that could not be parsed); word count bounds; same text as the source or an earlier accepted
//! variant of it (after folding case and whitespace); for queries generated from a document, a
//! verbatim copy of the document; fidelity — the cosine similarity to the source query or document —
//! below the floor (meaning drifted) or above the ceiling (adds nothing); near-duplicate of an earlier
//! accepted variant of the same source (embedding cosine); and round-trip consistency — the variant
//! must retrieve one of its positives within the top k.

use crate::config::FilterConfig;
use crate::generate::{Candidate, RejectReason, Source};
use crate::hash::text_key;
use crate::index::{Index, IndexError};
use crate::ingest::Dataset;
use crate::vectors::Vectors;
use crate::vectors::dot;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// The verdict on one candidate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// Kept for mining.
    pub accepted: bool,
    /// Why it was rejected.
    pub reason: Option<RejectReason>,
    /// Cosine similarity to the source.
    pub fidelity: f32,
    /// Rank (0-based) of the best positive among the variant's search results, when found within
    /// `round_trip_k`.
    pub round_trip_rank: Option<usize>,
}

/// Per-strategy filter counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StrategyFilterStats {
    /// Candidates checked.
    pub candidates: usize,
    /// Accepted.
    pub accepted: usize,
    /// Rejections by reason.
    pub rejected: BTreeMap<String, usize>,
    /// Mean fidelity of all candidates.
    pub mean_fidelity: f32,
    /// Mean fidelity of the accepted ones.
    pub mean_fidelity_accepted: f32,
}

/// Filter counts by strategy.
pub type FilterStats = BTreeMap<String, StrategyFilterStats>;

/// Judge every candidate (the per-strategy counts of all rounds are [`summarize`]d once, at the end). `query_vecs` holds the dataset's queries, `cand_vecs` the candidates, in
/// order; document vectors come from the index.
pub fn filter(
    cands: &[Candidate],
    ds: &Dataset,
    query_vecs: &Vectors,
    cand_vecs: &Vectors,
    index: &Index,
    cfg: &FilterConfig,
) -> Result<Vec<Decision>, IndexError> {
    let round_trip: Vec<Option<usize>> = if cfg.round_trip_k > 0 && !cands.is_empty() {
        index
            .search_batch(cand_vecs, cfg.round_trip_k)?
            .into_iter()
            .zip(cands)
            .map(|(hits, c)| {
                let pos = c.source.positives(ds);
                hits.iter().position(|h| pos.contains(&(h.doc as usize)))
            })
            .collect()
    } else {
        vec![None; cands.len()]
    };
    // Per source: texts and vectors already accepted (the source itself counts for texts).
    let mut seen_text: HashMap<Source, HashSet<crate::hash::ContentHash>> = HashMap::new();
    let mut accepted_vecs: HashMap<Source, Vec<usize>> = HashMap::new();
    let mut decisions = Vec::with_capacity(cands.len());
    for (i, c) in cands.iter().enumerate() {
        let v = cand_vecs.row(i);
        let (source_vec, lo, hi) = match c.source {
            Source::Query(q) => (query_vecs.row(q), cfg.fidelity_min, cfg.fidelity_max),
            Source::Document(d) => (index.vector(d), cfg.document_fidelity_min, cfg.document_fidelity_max),
        };
        let fidelity = dot(v, source_vec);
        let words = c.text.split_whitespace().count();
        let texts = seen_text.entry(c.source).or_insert_with(|| HashSet::from([text_key(c.source.text(ds), true)]));
        let key = text_key(&c.text, true);
        let near_dup = || {
            accepted_vecs
                .get(&c.source)
                .is_some_and(|prev| prev.iter().any(|&j| dot(v, cand_vecs.row(j)) >= cfg.dedup_cosine))
        };
        let reason = if c.rejected.is_some() {
            c.rejected
        } else if words < cfg.min_words {
            Some(RejectReason::TooShort)
        } else if words > cfg.max_words {
            Some(RejectReason::TooLong)
        } else if texts.contains(&key) {
            Some(RejectReason::DuplicateText)
        } else if matches!(c.source, Source::Document(_)) && copied_from(&c.text, c.source.text(ds)) {
            Some(RejectReason::CopiedFromDocument)
        } else if fidelity < lo {
            Some(RejectReason::FidelityBelowMin)
        } else if fidelity > hi {
            Some(RejectReason::FidelityAboveMax)
        } else if near_dup() {
            Some(RejectReason::NearDuplicate)
        } else if cfg.round_trip_k > 0 && round_trip[i].is_none() {
            Some(RejectReason::RoundTripMiss)
        } else {
            None
        };
        if reason.is_none() {
            texts.insert(key);
            accepted_vecs.entry(c.source).or_default().push(i);
        }
        decisions.push(Decision { accepted: reason.is_none(), reason, fidelity, round_trip_rank: round_trip[i] });
    }
    Ok(decisions)
}

/// Per-strategy counts and mean fidelities of judged candidates.
pub fn summarize(cands: &[Candidate], decisions: &[Decision]) -> FilterStats {
    let mut stats = FilterStats::new();
    let mut sums: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for (c, d) in cands.iter().zip(decisions) {
        let s = stats.entry(c.strategy.name().to_string()).or_default();
        s.candidates += 1;
        let sum = sums.entry(c.strategy.name()).or_default();
        sum.0 += d.fidelity as f64;
        if d.accepted {
            s.accepted += 1;
            sum.1 += d.fidelity as f64;
        } else {
            *s.rejected.entry(d.reason.map_or("", RejectReason::name).to_string()).or_default() += 1;
        }
    }
    for (name, (all, acc)) in sums {
        let s = stats.get_mut(name).expect("present");
        s.mean_fidelity = (all / s.candidates.max(1) as f64) as f32;
        s.mean_fidelity_accepted = if s.accepted > 0 { (acc / s.accepted as f64) as f32 } else { 0.0 };
    }
    stats
}

/// A query copied verbatim from its document: its folded text (at least four words) occurs in the
/// document's folded text.
fn copied_from(query: &str, doc: &str) -> bool {
    let fold = |t: &str| {
        t.split_whitespace()
            .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let q = fold(query);
    q.split(' ').count() >= 4 && fold(doc).contains(&q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{IndexConfig, IndexKind};
    use crate::hash::ContentHash;
    use crate::ingest::{Document, Query};

    fn unit(v: &[f32]) -> Vec<f32> {
        let mut v = v.to_vec();
        crate::vectors::normalize(&mut v);
        v
    }

    #[test]
    fn each_rule_rejects_with_its_reason() {
        let q = |id: &str, t: &str| Query {
            id: id.into(),
            text: t.into(),
            hash: ContentHash::of(t),
            origin: None,
            answers: Vec::new(),
        };
        let d = |id: &str| Document { id: id.into(), text: id.into(), hash: ContentHash::of(id) };
        let ds = Dataset {
            docs: vec![d("a"), d("b")],
            queries: vec![q("q", "red planet mars")],
            positives: vec![vec![0]],
            ..Default::default()
        };
        let docs = Vectors { dim: 2, data: [unit(&[1.0, 0.0]), unit(&[0.0, 1.0])].concat() };
        let (index, _) =
            Index::build(docs, &IndexConfig { kind: IndexKind::Exact, ..Default::default() }, None, false).unwrap();
        let qv = Vectors { dim: 2, data: unit(&[1.0, 0.1]) };
        let cand = |t: &str| Candidate {
            id: t.into(),
            source: Source::Query(0),
            strategy: crate::config::Strategy::Lexical(crate::config::LexicalStrategy::Synonym),
            text: t.into(),
            detail: String::new(),
            llm: None,
            rejected: None,
        };
        let cands = vec![
            cand("Red  Planet mars"),     // duplicate of the source text
            cand("red world mars"),       // accepted
            cand("red world mars again"), // near-duplicate of the accepted one
            cand("blue"),                 // fidelity too low
            cand("red planet mars!"),     // fidelity too high
            cand("crimson planet mars"),  // retrieves b first, a second -> round-trip miss with k=1
        ];
        let cv = Vectors {
            dim: 2,
            data: [
                unit(&[1.0, 0.1]),
                unit(&[1.0, 0.3]),
                unit(&[1.0, 0.3]),
                unit(&[0.0, 1.0]),
                unit(&[1.0, 0.1]),
                unit(&[0.8, 0.9]),
            ]
            .concat(),
        };
        let cfg = FilterConfig {
            fidelity_min: 0.6,
            fidelity_max: 0.999,
            dedup_cosine: 0.99,
            round_trip_k: 1,
            ..Default::default()
        };
        let dec = filter(&cands, &ds, &qv, &cv, &index, &cfg).unwrap();
        let stats = summarize(&cands, &dec);
        let reasons: Vec<Option<RejectReason>> = dec.iter().map(|d| d.reason).collect();
        assert_eq!(
            reasons,
            vec![
                Some(RejectReason::DuplicateText),
                None,
                Some(RejectReason::NearDuplicate),
                Some(RejectReason::FidelityBelowMin),
                Some(RejectReason::FidelityAboveMax),
                Some(RejectReason::RoundTripMiss)
            ]
        );
        assert_eq!(dec[1].round_trip_rank, Some(0));
        assert_eq!(stats["synonym"].accepted, 1);
        assert_eq!(stats["synonym"].candidates, 6);
    }

    #[test]
    fn verbatim_copies_of_the_document_are_caught() {
        assert!(copied_from(
            "The Mercury is the smallest planet!",
            "Mercury: the mercury is the smallest planet in the Solar System."
        ));
        assert!(!copied_from("smallest planet", "the smallest planet in the Solar System"), "too short to call a copy");
        assert!(!copied_from("which planet is the smallest one", "Mercury is the smallest planet"));
    }
}
