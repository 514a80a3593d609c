//! Report: what a run did, as JSON (`report.json`, also inside manifest.json) and as the terminal summary.

use crate::embed::EmbedStats;
use crate::filter::FilterStats;
use crate::generate::StrategyCounts;
use crate::index::IndexStats;
use crate::ingest::IngestReport;
use crate::mine::{MineStats, MinedPair};
use crate::output::write::WriteStats;
use crate::workspace::Changes;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Quantiles and a histogram of a set of scores.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Distribution {
    /// How many.
    pub count: usize,
    /// Mean.
    pub mean: f32,
    /// Minimum, 10th, 25th, 50th, 75th, 90th percentile, maximum.
    pub quantiles: [f32; 7],
}

impl Distribution {
    /// Summarise `v` (any order).
    pub fn of(mut v: Vec<f32>) -> Distribution {
        if v.is_empty() {
            return Distribution::default();
        }
        v.sort_unstable_by(f32::total_cmp);
        let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        Distribution {
            count: v.len(),
            mean: (v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64) as f32,
            quantiles: [q(0.0), q(0.1), q(0.25), q(0.5), q(0.75), q(0.9), q(1.0)],
        }
    }
}

/// Positive and negative score distributions of the mined pairs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Scores {
    /// Query-positive similarities.
    pub positive: Distribution,
    /// Query-negative similarities of the chosen negatives.
    pub negative: Distribution,
    /// Ranks (0-based, among non-positive candidates) of the chosen negatives.
    pub negative_rank: Distribution,
}

impl Scores {
    /// From the mined pairs.
    pub fn of(pairs: &[MinedPair]) -> Scores {
        Scores {
            positive: Distribution::of(pairs.iter().map(|p| p.positive_score).collect()),
            negative: Distribution::of(pairs.iter().flat_map(|p| p.negatives.iter().map(|n| n.score)).collect()),
            negative_rank: Distribution::of(
                pairs.iter().flat_map(|p| p.negatives.iter().map(|n| n.rank as f32)).collect(),
            ),
        }
    }
}

/// Input changes since the last completed run with the same workspace.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InputChanges {
    /// Documents.
    pub documents: Changes,
    /// Given queries.
    pub queries: Changes,
}

impl std::fmt::Display for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} added, {} changed, {} deleted, {} unchanged",
            self.added, self.changed, self.deleted, self.unchanged
        )
    }
}

/// Seconds per stage.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    /// Reading inputs.
    pub ingest: f64,
    /// Loading the model.
    pub load_model: f64,
    /// Generating variants.
    pub generate: f64,
    /// Filtering variants.
    pub filter: f64,
    /// Embedding documents and queries.
    pub embed: f64,
    /// Building the index.
    pub index: f64,
    /// Mining.
    pub mine: f64,
    /// Writing outputs.
    pub write: f64,
    /// The whole run.
    pub total: f64,
}

/// Peak resident memory of the process (VmHWM from /proc/self/status, bytes; 0 where there is no
/// /proc), read at the end of each stage.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Memory {
    /// The peak over the whole run.
    pub peak_rss_bytes: u64,
    /// The peak so far at the end of each stage, in run order: the first stage that shows the final
    /// peak is the one that reached it.
    pub peak_after: Vec<StagePeak>,
}

/// The peak RSS at the end of one stage.
#[derive(Debug, Clone, Serialize)]
pub struct StagePeak {
    /// The stage (`ingest`, `load_model`, `embed_documents`, `index`, `embed_queries`, `generate`,
    /// `mine`, `write`).
    pub stage: &'static str,
    /// VmHWM at its end.
    pub peak_rss_bytes: u64,
}

impl Memory {
    /// Record the peak so far at the end of `stage`.
    pub fn mark(&mut self, stage: &'static str) {
        let peak = crate::bench::machine::peak();
        self.peak_rss_bytes = self.peak_rss_bytes.max(peak);
        self.peak_after.push(StagePeak { stage, peak_rss_bytes: peak });
    }

    /// The stage during which the final peak was reached.
    pub fn peak_stage(&self) -> Option<&'static str> {
        self.peak_after.iter().find(|p| p.peak_rss_bytes >= self.peak_rss_bytes).map(|p| p.stage)
    }
}

/// Everything a run reports (written as `report.json`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    /// Tool version.
    pub version: String,
    /// Output folder.
    pub output_dir: PathBuf,
    /// Ingest counts and skipped records.
    pub ingest: IngestReport,
    /// What changed since the last run with this workspace.
    pub changes: InputChanges,
    /// Document embedding.
    pub embed_documents: EmbedStats,
    /// Query embedding.
    pub embed_queries: EmbedStats,
    /// Generated-variant embedding.
    pub embed_variants: EmbedStats,
    /// Generation counts per strategy.
    pub generate: BTreeMap<String, StrategyCounts>,
    /// Filter outcomes per strategy.
    pub filter: FilterStats,
    /// LLM calls, cache hits, tokens and cost (when LLM strategies ran).
    pub llm: Option<crate::generate::llm::LlmStats>,
    /// Index.
    pub index: IndexStats,
    /// Mining.
    pub mine: MineStats,
    /// The judge stage (when a judge or gold answers were used).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judge: Option<crate::judge::JudgeStats>,
    /// The contamination guard (`exclude_eval`), when evaluation sets were given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclude_eval: Option<crate::contamination::ContaminationStats>,
    /// Score distributions.
    pub scores: Scores,
    /// Files written.
    pub write: WriteStats,
    /// Time per stage.
    pub timings: Timings,
    /// Peak memory, and after which stage it was reached.
    pub memory: Memory,
}

fn fmt_dist(d: &Distribution) -> String {
    if d.count == 0 {
        return "none".into();
    }
    let q = d.quantiles;
    format!(
        "min {:.3}  p10 {:.3}  p50 {:.3}  p90 {:.3}  max {:.3}  (mean {:.3}, n={})",
        q[0], q[1], q[3], q[5], q[6], d.mean, d.count
    )
}

impl RunReport {
    /// A summary a person reads at a glance.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let i = &self.ingest;
        let m = &self.mine;
        let t = &self.timings;
        let _ = writeln!(s, "tripletgen {} — done in {:.1}s", self.version, t.total);
        let _ = writeln!(
            s,
            "  input    {} documents, {} queries with positives ({} read), {} pairs, {} bad records skipped",
            i.documents, i.queries_with_positives, i.queries_read, i.pairs, i.skipped
        );
        if !self.changes.documents.first_run {
            let _ = writeln!(s, "  changes  documents {}; queries {}", self.changes.documents, self.changes.queries);
        }
        for (label, e) in
            [("docs", &self.embed_documents), ("queries", &self.embed_queries), ("variants", &self.embed_variants)]
        {
            if label == "variants" && e.texts == 0 {
                continue;
            }
            let rate = if e.seconds > 0.0 { e.embedded as f64 / e.seconds } else { 0.0 };
            let tail = if e.remote {
                let cost = e.cost.map(|c| format!(", ${c:.4}")).unwrap_or_default();
                format!("on the server: {} tokens{cost}, long texts truncated by the server", e.tokens)
            } else {
                format!("{} truncated", e.truncated)
            };
            let _ = writeln!(
                s,
                "  embed    {label:<8} {} texts: {} cached, {} embedded ({:.0}/s), {tail}",
                e.texts, e.cached, e.embedded, rate
            );
            for u in &e.servers {
                let rate = if e.seconds > 0.0 { u.vectors as f64 / e.seconds } else { 0.0 };
                let _ = writeln!(
                    s,
                    "           {}: {} vectors ({rate:.0}/s), {} requests, {} errors, taken out {}x",
                    u.base_url, u.vectors, u.requests, u.errors, u.taken_out
                );
            }
        }
        if !self.generate.is_empty() {
            let _ =
                writeln!(s, "  variants strategy              made  accepted   mean fidelity  top rejection reasons");
            for (name, g) in &self.generate {
                let f = self.filter.get(name).cloned().unwrap_or_default();
                let mut reasons: Vec<(&String, &usize)> = f.rejected.iter().collect();
                reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
                let top: Vec<String> = reasons.iter().take(3).map(|(r, n)| format!("{r} {n}")).collect();
                let pct = if g.produced > 0 { 100.0 * f.accepted as f64 / g.produced as f64 } else { 0.0 };
                let _ = writeln!(
                    s,
                    "           {name:<21} {:>5}  {:>5} {:>3.0}%   {:.3}          {}",
                    g.produced,
                    f.accepted,
                    pct,
                    f.mean_fidelity,
                    top.join(", ")
                );
            }
        }
        if let Some(l) = &self.llm {
            let failed: usize = l.failed.values().sum();
            let cost = l.cost.map(|c| format!(", ${c:.4}")).unwrap_or_default();
            let cut = match l.documents_cut {
                0 => String::new(),
                n => format!("; {n} documents cut to generate.llm.max_document_chars in prompts"),
            };
            let spans = match l.answers_given {
                0 => String::new(),
                n => format!("; {} of {n} answer spans found in their document", l.answers_in_document),
            };
            let _ = writeln!(
                s,
                "  llm      {} calls: {} from the workspace, {} sent ({} HTTP attempts), {} failed, {} not started; {} + {} tokens{cost}; {} truncated, {} unparseable{cut}{spans}",
                l.planned,
                l.cached,
                l.sent,
                l.attempts,
                failed,
                l.not_started,
                l.prompt_tokens,
                l.completion_tokens,
                l.truncated,
                l.unparseable
            );
            for u in &l.servers {
                let _ = writeln!(
                    s,
                    "           {}: {} answered, {} requests, {} errors, taken out {}x",
                    u.base_url, u.succeeded, u.requests, u.errors, u.taken_out
                );
            }
        }
        let recall = match &self.index.recall {
            Some(r) => format!(", recall@{} {:.3} on {} queries", r.k, r.recall, r.queries),
            None => String::new(),
        };
        let graph = match &self.index.graph {
            Some(g) if g.mode == crate::index::GraphMode::Updated => {
                format!("; saved graph updated: {} kept, {} inserted, {} gone", g.reused, g.inserted, g.dead)
            }
            Some(g) => format!("; graph {} and saved", g.mode),
            None => String::new(),
        };
        let _ =
            writeln!(s, "  index    {} over {} documents{}{}", self.index.kind, self.index.documents, recall, graph);
        if let Some(x) = &self.exclude_eval {
            s.push_str(&x.summary());
        }
        let _ = writeln!(
            s,
            "  mine     {} pairs -> {} negatives; {} pairs short of negatives, {} with none",
            m.pairs, m.negatives, m.pairs_short, m.pairs_without_negatives
        );
        let removed: Vec<String> = m.removed.removals().iter().map(|(rule, n)| format!("{rule} {n}")).collect();
        let _ = writeln!(s, "           removed: {}", removed.join(", "));
        if !m.negatives_by_retriever.is_empty() {
            let by: Vec<String> = m.negatives_by_retriever.iter().map(|(r, n)| format!("{r} {n}")).collect();
            let _ = writeln!(s, "           negatives found by: {}", by.join(", "));
        }
        if let Some(b) = &m.bm25 {
            let _ = writeln!(
                s,
                "           bm25 index: {} texts ({} added, {} deleted) in {:.2}s; searched in {:.2}s",
                b.documents, b.added, b.deleted, b.build_seconds, b.search_seconds
            );
        }
        let _ = writeln!(
            s,
            "           {} pairs had candidates scoring above their positive (possible false negatives)",
            m.pairs_with_candidates_above_positive
        );
        if let Some(j) = &self.judge {
            s.push_str(&j.summary());
        }
        let _ = writeln!(s, "  scores   positive  {}", fmt_dist(&self.scores.positive));
        let _ = writeln!(s, "           negative  {}", fmt_dist(&self.scores.negative));
        let _ = writeln!(
            s,
            "  time     ingest {:.2}s, model {:.2}s, embed {:.2}s, generate {:.2}s, index {:.2}s, filter {:.2}s, mine {:.2}s, write {:.2}s",
            t.ingest, t.load_model, t.embed, t.generate, t.index, t.filter, t.mine, t.write
        );
        if let Some(stage) = self.memory.peak_stage() {
            let mib = self.memory.peak_rss_bytes as f64 / f64::from(1 << 20);
            let _ = writeln!(s, "  memory   peak {mib:.0} MiB, reached in {stage}");
        }
        let _ = writeln!(s, "  output   {}", self.output_dir.display());
        for f in &self.write.files {
            let _ = writeln!(s, "           {:<36} {:>8} rows", f.file, f.rows);
        }
        let _ = writeln!(
            s,
            "           report.html (plots, samples), report.json, manifest.json (counts, timings, config, checksums)"
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let d = Distribution::of((0..=100).map(|i| i as f32 / 100.0).collect());
        assert_eq!(d.count, 101);
        assert_eq!(d.quantiles[0], 0.0);
        assert_eq!(d.quantiles[3], 0.5);
        assert_eq!(d.quantiles[6], 1.0);
        assert!((d.mean - 0.5).abs() < 1e-6);
    }
}
