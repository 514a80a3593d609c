//! Judge: is a mined "negative" really not relevant to its query? Adjudicates the candidates that
//! mining would pick, before they are picked.
//!
//! A run has a cascade of judges ([`StageConfig`], each an implementation of [`Judge`]): a local
//! embedding teacher, a cross-encoder (ONNX folder or an HTTP rerank API), an LLM. Every stage but the
//! last screens: a candidate scoring below its `clear_below` is cleared (a fine negative) there; one at
//! or above goes on to the next stage. The last stage decides with its `threshold`. Candidates that
//! contain a gold answer of their query (the DPR rule, [`crate::ingest::answers`]) skip the screens and go straight to
//! the last stage; without any stage they are judged relevant on that ground alone. With
//! `judge.derive_answers`, queries without answers get one first: the LLM reads the answer span in
//! each of the query's positives (`LlmJudge::reader` in llm.rs, one stored call per (query, positive)).
//! An LLM judge is shown the query's answer whenever one is known.
//!
//! Invariants:
//! - Each (query text, passage text) is judged at most once per judge: every verdict is stored in the
//!   workspace under (judge id, hash of both texts) the moment it arrives, so a rerun, a resumed run or
//!   a refresh asks again only what was never answered. The judge id names the kind, the model (file
//!   checksums, or endpoint and model name), the prompt hash and every setting that changes a score.
//! - Only candidates that can change the outcome are judged: per pair, in the order mining would pick
//!   them, until `num_negatives` cleared ones are found (plus `judge.window` more on the first pass).
//! - `judge.max_calls` caps the calls of paid judges (LLM, HTTP). Candidates the cap leaves unjudged
//!   keep the verdict of the last stage that did judge them (or none: usable as negatives) and are
//!   counted in the report.
//! - A judgement that failed after its retries makes the candidate unusable in this run (it is not a
//!   negative) and is counted; the next run asks again.

mod llm;
mod rerank;
mod teacher;

use crate::config::Config;
use crate::hash::ContentHash;
use crate::ingest::Dataset;
use crate::workspace::queue::{Payload, Queue, Unit, UnitOutcome};
use crate::workspace::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::time::Instant;

pub use crate::config::judge::{JudgeAction, JudgeConfig, JudgeKind, RerankApi, StageConfig};
pub use crate::ingest::Answers;
pub use crate::workspace::Scored;
pub use rerank::OnnxCrossEncoder;

/// Errors of the judge stage.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// A judge could not be set up (model folder, runtime, endpoint).
    #[error("judge {judge}: {message}")]
    Setup {
        /// Which judge (`judge.stages[i]` and its kind).
        judge: String,
        /// What went wrong.
        message: String,
    },
    /// A local model failed on a batch.
    #[error("judge {judge}: inference failed: {message}")]
    Inference {
        /// Which judge.
        judge: String,
        /// What ONNX Runtime said.
        message: String,
    },
    /// The server stopped answering (down, refusing, quota exhausted). Every verdict received before
    /// is stored; a rerun sends only the rest.
    #[error(
        "judge {judge}: stopped: {why}. {stored} verdicts of this run are stored in the workspace; rerun to judge the {not_sent} left"
    )]
    Stopped {
        /// Which judge.
        judge: String,
        /// Why.
        why: String,
        /// Verdicts stored in this run by this judge.
        stored: usize,
        /// Judgements not sent.
        not_sent: usize,
    },
    /// The workspace store.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One item to judge.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// The query text.
    pub query: &'a str,
    /// The passage text.
    pub passage: &'a str,
    /// The query's answer, when known (shown to judges that read answers).
    pub answer: Option<&'a str>,
}

/// How a judge run ended.
#[derive(Debug, Default)]
pub struct Ended {
    /// Why it stopped before delivering every item (server down, quota), if it did.
    pub stopped_by: Option<String>,
    /// Items never sent.
    pub not_sent: usize,
    /// Prompt and completion tokens used (LLM judges).
    pub tokens: (u64, u64),
}

/// A judge: scores (query, passage) items. Implementations deliver each result to `sink` as soon as
/// it exists (the caller stores it before anything else can go wrong); a failed item is an `Err`
/// with the reason, and the run goes on.
pub trait Judge {
    /// Identity in cache keys: kind, model, prompt hash and every setting that changes a score.
    fn id(&self) -> &str;
    /// True when calls cost money or a remote server's time (counted against `judge.max_calls`).
    fn paid(&self) -> bool;
    /// For judges that show an item's answer in their prompt: a tag of how (the answer prompt's
    /// hash), stored in the verdict's key with the answer. `None`: answers are ignored.
    fn answer_salt(&self) -> Option<&str> {
        None
    }
    /// Work to do before scoring `items` that needs the workspace (an embedding teacher embeds the
    /// texts here, cached).
    fn prepare(&mut self, _items: &[Item<'_>], _store: &mut Store) -> Result<(), JudgeError> {
        Ok(())
    }
    /// Score `items`, calling `sink(i, result)` for each; `sink` may stop the run.
    fn score(
        &mut self,
        items: &[Item<'_>],
        sink: &mut dyn FnMut(usize, Result<Scored, String>) -> ControlFlow<()>,
    ) -> Result<Ended, JudgeError>;
    /// Price of this many prompt and completion tokens, when configured.
    fn cost(&self, _prompt_tokens: u64, _completion_tokens: u64) -> Option<f64> {
        None
    }
    /// Planned cost of judging `items` without sending anything: (calls, prompt tokens, completion
    /// tokens at most).
    fn estimate(&self, items: &[Item<'_>]) -> (u64, u64, u64) {
        (items.len() as u64, 0, 0)
    }
}

/// Who decided a candidate's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    /// The gold-answer rule with no judge configured.
    GoldAnswer,
    /// Stage `i` of the cascade.
    Stage(u8),
    /// Not judged: `judge.max_calls` was reached (earlier stages' scores, if any, stand).
    Budget,
    /// The judgement failed (server error after retries): not usable this run.
    Failed,
}

/// The verdict on one (query, candidate document).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// Judged relevant: not a negative of this query.
    pub relevant: bool,
    /// Who decided.
    pub by: DecidedBy,
    /// The candidate contains a gold answer of the query.
    pub gold: bool,
    /// Scores of the stages that judged it, in cascade order: (stage, score).
    pub scores: Vec<(u8, f32)>,
}

impl Verdict {
    /// Usable as a negative.
    pub fn usable(&self) -> bool {
        !self.relevant && self.by != DecidedBy::Failed
    }
    /// The score of the deciding stage (the last score), if any judge scored it.
    pub fn score(&self) -> Option<f32> {
        self.scores.last().map(|s| s.1)
    }
}

/// A pair's candidates in the order mining would pick them, and how many negatives it wants.
#[derive(Debug, Clone, Copy)]
pub struct Walk<'a> {
    /// Query index.
    pub query: usize,
    /// Candidate document indices, in pick order.
    pub docs: &'a [usize],
    /// Negatives wanted.
    pub want: usize,
}

/// Verdicts by (query index, document index).
pub type Verdicts = HashMap<(usize, usize), Verdict>;

/// Counts of one stage of the cascade.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StageStats {
    /// Its kind.
    pub kind: String,
    /// Its cache identity.
    pub id: String,
    /// Items it judged (cached or not).
    pub judged: usize,
    /// Of those, answered from the workspace.
    pub cached: usize,
    /// Of those, sent to the judge in this run.
    pub sent: usize,
    /// Failed after retries.
    pub failed: usize,
    /// Scored at or above its threshold.
    pub flagged: usize,
    /// Cleared here (below `clear_below`; for the last stage: below the threshold).
    pub cleared: usize,
    /// Passed on to the next stage.
    pub escalated: usize,
    /// Seconds spent scoring (not counting cached items).
    pub seconds: f64,
    /// Prompt tokens used (LLM).
    pub prompt_tokens: u64,
    /// Completion tokens used (LLM).
    pub completion_tokens: u64,
    /// Cost of those tokens, when a price is configured.
    pub cost: Option<f64>,
}

/// Agreement of two consecutive stages on the items both judged.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Agreement {
    /// The earlier stage.
    pub from: usize,
    /// The later stage.
    pub to: usize,
    /// Both said relevant (each by its own threshold).
    pub both_relevant: usize,
    /// Only the earlier one said relevant.
    pub only_first: usize,
    /// Only the later one said relevant.
    pub only_second: usize,
    /// Neither (possible when the earlier stage's `clear_below` is below its threshold).
    pub neither: usize,
}

/// A candidate judged relevant, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct Example {
    /// Query id.
    pub query_id: String,
    /// Document id.
    pub doc_id: String,
    /// The deciding score, if a judge scored it.
    pub score: Option<f32>,
    /// It contains a gold answer.
    pub gold: bool,
}

/// Answers read from positives (`judge.derive_answers`), for the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DerivedAnswers {
    /// Queries without answers that have a positive to read.
    pub queries: usize,
    /// Of those, queries that got an answer found in a positive.
    pub answered: usize,
    /// The reader's counts: (query, positive) items read, from the workspace, sent, failed;
    /// `flagged` is the items whose answer was found in the passage.
    pub reader: StageStats,
    /// Up to 10 answers read: (query id, answer).
    pub examples: Vec<(String, String)>,
}

/// Counts of the judge stage (report.json `judge`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct JudgeStats {
    /// Distinct (query, candidate) verdicts reached.
    pub candidates: usize,
    /// Of those, containing a gold (or derived) answer of their query.
    pub gold_flagged: usize,
    /// Judged relevant (not negatives).
    pub relevant: usize,
    /// Relevant ones relabelled as positives (`action = "relabel"`).
    pub relabelled: usize,
    /// Queries whose pairs were dropped (`drop_query_above`).
    pub queries_dropped: usize,
    /// Pairs dropped with them.
    pub pairs_dropped: usize,
    /// Candidates left unjudged by `max_calls`.
    pub unjudged_by_budget: usize,
    /// Candidates whose judgement failed.
    pub failed: usize,
    /// Passes over the pairs (first pass + top-ups for pairs that lost candidates).
    pub passes: usize,
    /// Calls sent to paid judges.
    pub paid_calls: u64,
    /// Per stage.
    pub stages: Vec<StageStats>,
    /// Between consecutive stages.
    pub agreement: Vec<Agreement>,
    /// Answers read from positives (`judge.derive_answers`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub derived: Option<DerivedAnswers>,
    /// Up to 10 candidates judged relevant (first in query order).
    pub examples: Vec<Example>,
    /// Seconds in the stage.
    pub seconds: f64,
    /// With a dry run: what each paid stage would send (nothing was sent).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub planned: Vec<DryRunStage>,
}

impl JudgeStats {
    /// Lines of the run summary.
    pub fn summary(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "  judge    {} candidates in {} passes: {} relevant ({} contain a gold answer), {} relabelled, {} queries dropped ({} pairs); {} failed, {} unjudged (judge.max_calls); {:.1}s",
            self.candidates,
            self.passes,
            self.relevant,
            self.gold_flagged,
            self.relabelled,
            self.queries_dropped,
            self.pairs_dropped,
            self.failed,
            self.unjudged_by_budget,
            self.seconds
        );
        if let Some(d) = &self.derived {
            let r = &d.reader;
            let cost = r.cost.map(|c| format!(", ${c:.4}")).unwrap_or_default();
            let _ = writeln!(
                s,
                "           answers  read for {} of {} queries without one: {} positives read ({} from the workspace, {} sent, {} failed), {} + {} tokens{cost}",
                d.answered, d.queries, r.judged, r.cached, r.sent, r.failed, r.prompt_tokens, r.completion_tokens
            );
        }
        for (i, st) in self.stages.iter().enumerate() {
            let rate = if st.seconds > 0.0 { st.sent as f64 / st.seconds } else { 0.0 };
            let cost = st.cost.map(|c| format!(", ${c:.4}")).unwrap_or_default();
            let tokens = if st.prompt_tokens + st.completion_tokens > 0 {
                format!(", {} + {} tokens{cost}", st.prompt_tokens, st.completion_tokens)
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "           [{i}] {:<13} {} judged: {} from the workspace, {} sent ({rate:.1}/s), {} failed; {} flagged, {} cleared, {} passed on{tokens}",
                st.kind, st.judged, st.cached, st.sent, st.failed, st.flagged, st.cleared, st.escalated
            );
        }
        for a in &self.agreement {
            let both = a.both_relevant + a.only_first + a.only_second + a.neither;
            if both > 0 {
                let _ = writeln!(
                    s,
                    "           [{}] vs [{}] on {both}: agree {:.0}% ({} both relevant, {} only [{}], {} only [{}])",
                    a.from,
                    a.to,
                    100.0 * (a.both_relevant + a.neither) as f64 / both as f64,
                    a.both_relevant,
                    a.only_first,
                    a.from,
                    a.only_second,
                    a.to
                );
            }
        }
        s
    }
}

/// The judge stage of a run: the cascade, the gold answers, the settings.
pub struct JudgeStage {
    cfg: JudgeConfig,
    judges: Vec<Box<dyn Judge>>,
    answers: Vec<Answers>,
    /// Per query: its answers as shown to judges ("a / b"), when known.
    answer_text: Vec<Option<String>>,
    /// Reads answers from positives (`judge.derive_answers`).
    reader: Option<llm::LlmJudge>,
    /// Queries whose answers were looked for already.
    derived: Vec<bool>,
    verdicts: Verdicts,
    /// Plan paid calls instead of sending them (`--dry-run`).
    dry: bool,
    /// Stats so far.
    pub stats: JudgeStats,
}

impl std::fmt::Debug for JudgeStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JudgeStage").field("stages", &self.stats.stages.len()).finish_non_exhaustive()
    }
}

/// What a stage returned for one item.
#[derive(Debug)]
enum Got {
    Score(Scored),
    /// Not sent: `judge.max_calls` was reached.
    Budget,
    /// Failed after retries (or not sent because the judge stopped).
    Failed,
}

/// Where one candidate stands in the cascade.
#[derive(Debug, Clone, Copy)]
struct Pending {
    key: (usize, usize),
    stage: usize,
    /// It contains a gold answer of its query.
    gold: bool,
}

impl JudgeStage {
    /// Build every judge of `cfg.judge` (loading models, checking endpoints' settings) for the
    /// queries of `ds` (their gold answers are read here).
    pub fn new(cfg: &Config, ds: &Dataset) -> Result<JudgeStage, JudgeError> {
        let jc = cfg.judge.clone().unwrap_or_default();
        let judges = build_judges(cfg)?;
        let given: Vec<&[String]> =
            ds.queries.iter().map(|q| if jc.gold_answers { q.answers.as_slice() } else { &[] }).collect();
        let answers = given.iter().map(|a| Answers::new(a)).collect();
        let answer_text = given.iter().map(|a| shown(a)).collect();
        let reader = if jc.derive_answers { Some(llm::LlmJudge::reader(cfg)?) } else { None };
        let stats = JudgeStats {
            stages: judges
                .iter()
                .zip(&jc.stages)
                .map(|(j, s)| StageStats { kind: s.kind.name().into(), id: j.id().into(), ..Default::default() })
                .collect(),
            agreement: (1..judges.len()).map(|i| Agreement { from: i - 1, to: i, ..Default::default() }).collect(),
            derived: reader.as_ref().map(|r| DerivedAnswers {
                reader: StageStats { kind: "answers".into(), id: r.id().into(), ..Default::default() },
                ..Default::default()
            }),
            ..Default::default()
        };
        let derived = vec![false; ds.queries.len()];
        Ok(JudgeStage {
            cfg: jc,
            judges,
            answers,
            answer_text,
            reader,
            derived,
            verdicts: HashMap::new(),
            dry: false,
            stats,
        })
    }

    /// Plan instead of calling paid judges: their items are counted, estimated and left unjudged
    /// (see [`JudgeStats::planned`]).
    pub fn plan_only(&mut self) {
        self.dry = true;
    }

    /// True when there is anything to judge with: a stage, answers to read, or gold answers on
    /// some query.
    pub fn is_active(&self) -> bool {
        !self.judges.is_empty() || self.reader.is_some() || self.answers.iter().any(|a| !a.is_empty())
    }

    /// Every verdict so far.
    pub fn verdicts(&self) -> &Verdicts {
        &self.verdicts
    }

    /// Judge what `walks` need: per walk, candidates in order until `want` usable ones are found
    /// (plus `window` on the first pass), in passes, each pass sending every stage's items at once.
    /// Verdicts accumulate in [`JudgeStage::verdicts`].
    pub fn adjudicate(&mut self, walks: &[Walk<'_>], ds: &Dataset, store: &mut Store) -> Result<(), JudgeError> {
        let t = Instant::now();
        self.derive(walks, ds, store)?;
        // Per walk: position of the next candidate to look at.
        let mut next = vec![0usize; walks.len()];
        let mut first = true;
        loop {
            let mut todo: Vec<(usize, usize)> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for (w, walk) in walks.iter().enumerate() {
                let usable = walk.docs[..next[w]].iter().filter(|&&d| self.usable(walk.query, d)).count();
                let mut need = walk.want.saturating_sub(usable);
                if first && need > 0 {
                    need += self.cfg.window;
                }
                while need > 0 && next[w] < walk.docs.len() {
                    let key = (walk.query, walk.docs[next[w]]);
                    next[w] += 1;
                    need -= 1;
                    if !self.verdicts.contains_key(&key) && seen.insert(key) {
                        todo.push(key);
                    } else if self.verdicts.get(&key).is_some_and(|v| !v.usable()) {
                        need += 1; // already known to be unusable: look one further
                    }
                }
            }
            first = false;
            if todo.is_empty() {
                break;
            }
            self.stats.passes += 1;
            self.resolve(&todo, ds, store)?;
        }
        self.stats.seconds += t.elapsed().as_secs_f64();
        Ok(())
    }

    /// Score extra (query, document) items with the last stage only (for `output.scores = "judge"`:
    /// positives and chosen negatives all get the same teacher's score). Returns the scores found.
    pub fn teacher_scores(
        &mut self,
        keys: &[(usize, usize)],
        ds: &Dataset,
        store: &mut Store,
    ) -> Result<HashMap<(usize, usize), f32>, JudgeError> {
        let mut out = HashMap::new();
        let Some(last) = self.judges.len().checked_sub(1) else { return Ok(out) };
        let mut need = Vec::new();
        for &k in keys {
            match self.verdicts.get(&k).and_then(|v| v.scores.iter().find(|s| s.0 as usize == last)) {
                Some(&(_, s)) => {
                    out.insert(k, s);
                }
                None => need.push(k),
            }
        }
        need.sort_unstable();
        need.dedup();
        let scored = self.run_stage(last, &need, ds, store, false)?;
        for (k, r) in need.into_iter().zip(scored) {
            if let Got::Score(s) = r {
                out.insert(k, s.score);
            }
        }
        Ok(out)
    }

    fn usable(&self, q: usize, d: usize) -> bool {
        self.verdicts.get(&(q, d)).is_none_or(Verdict::usable)
    }

    /// Take `keys` through the cascade.
    fn resolve(&mut self, keys: &[(usize, usize)], ds: &Dataset, store: &mut Store) -> Result<(), JudgeError> {
        let last = self.judges.len().checked_sub(1);
        let mut scores: HashMap<(usize, usize), Vec<(u8, f32)>> = HashMap::new();
        let mut pending: Vec<Pending> = Vec::new();
        for &key in keys {
            let gold = self.answers[key.0].found_in(&ds.docs[key.1].text).is_some();
            if gold {
                self.stats.gold_flagged += 1;
            }
            match last {
                None => self.decide(key, gold, gold, DecidedBy::GoldAnswer, Vec::new(), ds),
                // The gold-answer rule flags: skip the screens, the strongest judge decides.
                Some(l) => pending.push(Pending { key, stage: if gold { l } else { 0 }, gold }),
            }
        }
        let Some(last) = last else { return Ok(()) };
        for stage in 0..=last {
            let here: Vec<(usize, usize)> = pending.iter().filter(|p| p.stage == stage).map(|p| p.key).collect();
            let gold_of: HashMap<(usize, usize), bool> =
                pending.iter().filter(|p| p.stage == stage).map(|p| (p.key, p.gold)).collect();
            if here.is_empty() {
                continue;
            }
            let results = self.run_stage(stage, &here, ds, store, true)?;
            let clear = self.cfg.stages[stage].clear_below();
            let mut escalate = Vec::new();
            for (key, r) in here.into_iter().zip(results) {
                let gold = gold_of[&key];
                let mut sc = scores.remove(&key).unwrap_or_default();
                let r = match r {
                    Got::Score(r) => r,
                    missing => {
                        // Failed, or not judged because of the budget: earlier scores stand.
                        let by = if matches!(missing, Got::Budget) { DecidedBy::Budget } else { DecidedBy::Failed };
                        if by == DecidedBy::Budget {
                            self.stats.unjudged_by_budget += 1;
                        } else {
                            self.stats.failed += 1;
                        }
                        let relevant = match sc.last() {
                            Some(&(s, v)) => v >= self.threshold(s as usize, key.0),
                            None => gold,
                        };
                        self.decide(key, relevant, gold, by, sc, ds);
                        continue;
                    }
                };
                sc.push((stage as u8, r.score));
                let flagged = r.score >= self.threshold(stage, key.0);
                self.stats.stages[stage].flagged += flagged as usize;
                if stage > 0
                    && let Some(&(prev, pv)) = sc.iter().rev().nth(1)
                    && prev as usize == stage - 1
                {
                    let prev_flagged = pv >= self.threshold(prev as usize, key.0);
                    let a = &mut self.stats.agreement[stage - 1];
                    match (prev_flagged, flagged) {
                        (true, true) => a.both_relevant += 1,
                        (true, false) => a.only_first += 1,
                        (false, true) => a.only_second += 1,
                        (false, false) => a.neither += 1,
                    }
                }
                if stage == last {
                    self.stats.stages[stage].cleared += (!flagged) as usize;
                    self.decide(key, flagged, gold, DecidedBy::Stage(stage as u8), sc, ds);
                } else if r.score < clear {
                    self.stats.stages[stage].cleared += 1;
                    self.decide(key, false, gold, DecidedBy::Stage(stage as u8), sc, ds);
                } else {
                    self.stats.stages[stage].escalated += 1;
                    scores.insert(key, sc);
                    escalate.push(key);
                }
            }
            let escalate: std::collections::HashSet<(usize, usize)> = escalate.into_iter().collect();
            for p in pending.iter_mut() {
                if p.stage == stage && escalate.contains(&p.key) {
                    p.stage = stage + 1;
                }
            }
        }
        Ok(())
    }

    /// The threshold of `stage` for a candidate of query `q`: its `answer_threshold` when the stage's
    /// judge is shown the query's answer, else its `threshold`.
    fn threshold(&self, stage: usize, q: usize) -> f32 {
        let st = &self.cfg.stages[stage];
        if self.judges[stage].answer_salt().is_some() && self.answer_text[q].is_some() {
            st.answer_threshold()
        } else {
            st.threshold()
        }
    }

    fn decide(
        &mut self,
        key: (usize, usize),
        relevant: bool,
        gold: bool,
        by: DecidedBy,
        scores: Vec<(u8, f32)>,
        ds: &Dataset,
    ) {
        let v = Verdict { relevant, by, gold, scores };
        self.stats.candidates += 1;
        if relevant {
            self.stats.relevant += 1;
            if self.stats.examples.len() < 10 {
                self.stats.examples.push(Example {
                    query_id: ds.queries[key.0].id.clone(),
                    doc_id: ds.docs[key.1].id.clone(),
                    score: v.score(),
                    gold,
                });
            }
        }
        self.verdicts.insert(key, v);
    }

    /// Score `keys` with stage `stage`: from the workspace where stored, the rest through the judge
    /// (within the budget when `budgeted`), each result stored as it arrives.
    fn run_stage(
        &mut self,
        stage: usize,
        keys: &[(usize, usize)],
        ds: &Dataset,
        store: &mut Store,
        budgeted: bool,
    ) -> Result<Vec<Got>, JudgeError> {
        let items: Vec<Item<'_>> = keys
            .iter()
            .map(|&(q, d)| Item {
                query: &ds.queries[q].text,
                passage: &ds.docs[d].text,
                answer: self.answer_text[q].as_deref(),
            })
            .collect();
        let mut spend = Spend {
            max_calls: if budgeted { self.cfg.max_calls } else { 0 },
            paid_calls: &mut self.stats.paid_calls,
            dry: self.dry,
            planned: &mut self.stats.planned,
        };
        run_judge(self.judges[stage].as_mut(), Some(stage), &mut self.stats.stages[stage], &items, store, &mut spend)
    }

    /// `judge.derive_answers`: read the answer of each query of `walks` that has none in each of its
    /// positives (stored: a rerun reads nothing twice), and use the spans found like gold answers.
    /// A dry run plans these calls instead (and goes on without the answers).
    fn derive(&mut self, walks: &[Walk<'_>], ds: &Dataset, store: &mut Store) -> Result<(), JudgeError> {
        let (Some(reader), Some(derived)) = (self.reader.as_mut(), self.stats.derived.as_mut()) else {
            return Ok(());
        };
        let mut keys = Vec::new();
        for w in walks {
            let q = w.query;
            if std::mem::replace(&mut self.derived[q], true)
                || !self.answers[q].is_empty()
                || ds.positives[q].is_empty()
            {
                continue;
            }
            derived.queries += 1;
            keys.extend(ds.positives[q].iter().map(|&d| (q, d)));
        }
        if keys.is_empty() {
            return Ok(());
        }
        let items: Vec<Item<'_>> = keys
            .iter()
            .map(|&(q, d)| Item { query: &ds.queries[q].text, passage: &ds.docs[d].text, answer: None })
            .collect();
        let mut spend = Spend {
            max_calls: self.cfg.max_calls,
            paid_calls: &mut self.stats.paid_calls,
            dry: self.dry,
            planned: &mut self.stats.planned,
        };
        let got = run_judge(reader, None, &mut derived.reader, &items, store, &mut spend)?;
        let mut spans: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for (&(q, _), g) in keys.iter().zip(got) {
            if let Got::Score(Scored { label: Some(1), detail: Some(span), .. }) = g {
                derived.reader.flagged += 1;
                spans.entry(q).or_default().push(span);
            }
        }
        for (q, found) in spans {
            derived.answered += 1;
            if derived.examples.len() < 10 {
                derived.examples.push((ds.queries[q].id.clone(), found.join(" / ")));
            }
            self.answers[q] = Answers::new(&found);
            self.answer_text[q] = shown(&found);
        }
        Ok(())
    }

    /// Drop queries with too many relevant candidates (`drop_query_above`): the query indices.
    pub fn dropped_queries(&self) -> std::collections::BTreeSet<usize> {
        let n = self.cfg.drop_query_above;
        if n == 0 {
            return Default::default();
        }
        let mut per_query: BTreeMap<usize, usize> = BTreeMap::new();
        for (&(q, _), v) in &self.verdicts {
            if v.relevant {
                *per_query.entry(q).or_default() += 1;
            }
        }
        per_query.into_iter().filter(|&(_, c)| c > n).map(|(q, _)| q).collect()
    }

    /// Relabelled positives per query (`action = "relabel"`), sorted by document index.
    pub fn relabelled(&self) -> BTreeMap<usize, Vec<usize>> {
        let mut out: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        if self.cfg.action != JudgeAction::Relabel {
            return out;
        }
        for (&(q, d), v) in &self.verdicts {
            if v.relevant {
                out.entry(q).or_default().push(d);
            }
        }
        for v in out.values_mut() {
            v.sort_unstable();
        }
        out
    }
}

/// What scoring may spend, and where a dry run's plan goes.
struct Spend<'a> {
    /// Most paid calls in the run (0: no limit).
    max_calls: u64,
    /// Paid calls sent so far in the run.
    paid_calls: &'a mut u64,
    /// Plan paid calls instead of sending them.
    dry: bool,
    /// The plan.
    planned: &'a mut Vec<DryRunStage>,
}

/// Score `items` with `judge` (stage `stage` of the cascade; `None`: the answer reader, which never
/// goes through the work queue, since workers build only the cascade's judges): from the workspace
/// where stored, the rest through the judge within `spend`, each result stored as it arrives. Counts
/// go to `stats`.
fn run_judge(
    judge: &mut dyn Judge,
    stage: Option<usize>,
    stats: &mut StageStats,
    items: &[Item<'_>],
    store: &mut Store,
    spend: &mut Spend<'_>,
) -> Result<Vec<Got>, JudgeError> {
    let id = judge.id().to_string();
    let hashes: Vec<ContentHash> = items.iter().map(|it| item_key(judge.answer_salt(), it)).collect();
    let mut out: Vec<Got> =
        store.get_judgements(&id, &hashes)?.into_iter().map(|s| s.map_or(Got::Failed, Got::Score)).collect();
    stats.judged += items.len();
    let mut todo: Vec<usize> = (0..items.len()).filter(|&i| !matches!(out[i], Got::Score(_))).collect();
    stats.cached += items.len() - todo.len();
    if judge.paid() && spend.max_calls > 0 {
        let left = spend.max_calls.saturating_sub(*spend.paid_calls);
        if (todo.len() as u64) > left {
            for &i in &todo[left as usize..] {
                out[i] = Got::Budget;
            }
            todo.truncate(left as usize);
        }
    }
    if todo.is_empty() {
        return Ok(out);
    }
    let todo_items: Vec<Item<'_>> = todo.iter().map(|&i| items[i]).collect();
    if judge.paid() && spend.dry {
        let (calls, prompt, completion) = judge.estimate(&todo_items);
        let plan = match spend.planned.iter().position(|p| p.stage == stage && p.kind == stats.kind) {
            Some(i) => &mut spend.planned[i],
            None => {
                spend.planned.push(DryRunStage { stage, kind: stats.kind.clone(), ..Default::default() });
                spend.planned.last_mut().expect("just pushed")
            }
        };
        plan.candidates += items.len();
        plan.stored += items.len() - todo.len();
        plan.calls += calls;
        plan.prompt_tokens_est += prompt;
        plan.completion_tokens_max += completion;
        plan.cost_est = judge.cost(plan.prompt_tokens_est, plan.completion_tokens_max);
        for &i in &todo {
            out[i] = Got::Budget;
        }
        return Ok(out);
    }
    let t = Instant::now();
    log::info!(
        "judge: {} ({id}): scoring {} items ({} from the workspace)",
        stats.kind,
        todo.len(),
        items.len() - todo.len()
    );
    let (scoring, verdicts) = match store.take_queue() {
        Some(mut queue) if stage.is_some() => {
            let done = score_queued(judge, &mut queue, store, &todo_items);
            store.attach_queue(queue);
            done?
        }
        _ => score_items(judge, store, &todo_items, true)?,
    };
    for (&i, v) in todo.iter().zip(verdicts) {
        if let Some(v) = v {
            out[i] = Got::Score(v);
        }
    }
    let sent = todo.len() - scoring.not_sent;
    stats.sent += sent;
    stats.failed += scoring.failed;
    stats.seconds += t.elapsed().as_secs_f64();
    stats.prompt_tokens += scoring.tokens.0;
    stats.completion_tokens += scoring.tokens.1;
    stats.cost = judge.cost(stats.prompt_tokens, stats.completion_tokens);
    if judge.paid() {
        *spend.paid_calls += sent as u64;
    }
    if let Some(why) = scoring.stopped {
        return Err(JudgeError::Stopped { judge: id, why, stored: scoring.stored, not_sent: scoring.not_sent });
    }
    Ok(out)
}

/// A query's answers as a judge is shown them, when it has any.
fn shown(answers: &[String]) -> Option<String> {
    let a: Vec<&str> = answers.iter().map(|a| a.trim()).filter(|a| !a.is_empty()).collect();
    (!a.is_empty()).then(|| a.join(" / "))
}

/// What a dry run of one paid stage would send on the first pass (later passes and stages after a
/// screen depend on answers, so they are not counted).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DryRunStage {
    /// Stage index (none for the answer reader).
    pub stage: Option<usize>,
    /// Its kind.
    pub kind: String,
    /// Candidates that reached it.
    pub candidates: usize,
    /// Already judged and stored.
    pub stored: usize,
    /// Calls it would send.
    pub calls: u64,
    /// Estimated prompt tokens.
    pub prompt_tokens_est: u64,
    /// Completion tokens at most.
    pub completion_tokens_max: u64,
    /// Cost at most, when prices are configured.
    pub cost_est: Option<f64>,
}

/// One labelled (query, passage) case of a judge fixture (fixtures/judge/cases.jsonl).
#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    /// Case id.
    pub id: String,
    /// The query.
    pub query: String,
    /// Its gold answers.
    #[serde(default)]
    pub answers: Vec<String>,
    /// The passage.
    pub passage: String,
    /// Whether the passage answers the query.
    pub relevant: bool,
    /// What makes the case easy or hard.
    #[serde(default)]
    pub category: String,
}

/// A judge's accuracy on labelled cases.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CaseReport {
    /// Cases judged.
    pub cases: usize,
    /// Relevant cases judged relevant.
    pub true_positive: usize,
    /// Not-relevant cases judged relevant.
    pub false_positive: usize,
    /// Relevant cases judged not relevant.
    pub false_negative: usize,
    /// Not-relevant cases judged not relevant.
    pub true_negative: usize,
    /// Cases whose judgement failed.
    pub failed: usize,
    /// Accuracy per category: (correct, cases).
    pub by_category: BTreeMap<String, (usize, usize)>,
    /// Judge calls sent (the rest came from the workspace).
    pub sent: usize,
    /// Seconds spent.
    pub seconds: f64,
}

impl CaseReport {
    /// Share of cases judged right.
    pub fn accuracy(&self) -> f64 {
        (self.true_positive + self.true_negative) as f64 / self.cases.max(1) as f64
    }
    /// Of the cases judged relevant, the share that are.
    pub fn precision(&self) -> f64 {
        self.true_positive as f64 / (self.true_positive + self.false_positive).max(1) as f64
    }
    /// Of the relevant cases, the share judged relevant (what the judge exists for).
    pub fn recall(&self) -> f64 {
        self.true_positive as f64 / (self.true_positive + self.false_negative).max(1) as f64
    }
}

/// What scoring some pairs did (also a queued judge unit's result).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Scoring {
    /// Verdicts stored.
    pub stored: usize,
    /// Pairs whose judgement failed after retries.
    pub failed: usize,
    /// Pairs never sent (the judge stopped).
    pub not_sent: usize,
    /// Prompt and completion tokens (LLM judges).
    pub tokens: (u64, u64),
    /// Why the judge stopped before the end (server down, quota), if it did.
    pub stopped: Option<String>,
}

/// The workspace key of a verdict on `item`, under its judge's id: (query, passage), and the answer
/// shown with the judge's `salt` when the judge reads answers.
fn item_key(salt: Option<&str>, item: &Item<'_>) -> ContentHash {
    match (salt, item.answer) {
        (Some(salt), Some(answer)) => {
            ContentHash::of_parts(&[item.query.as_bytes(), item.passage.as_bytes(), salt.as_bytes(), answer.as_bytes()])
        }
        _ => ContentHash::of_parts(&[item.query.as_bytes(), item.passage.as_bytes()]),
    }
}

/// Score the pairs whose verdicts by `judge` are not stored yet, storing each verdict as it arrives
/// (paid ones one by one, local ones in batches of 256): a unit taken over from a dead worker asks
/// only what that worker had not stored. Returns the verdicts in item order (`None`: failed or not
/// sent).
pub fn score_items(
    judge: &mut dyn Judge,
    store: &mut Store,
    items: &[Item<'_>],
    show_progress: bool,
) -> Result<(Scoring, Vec<Option<Scored>>), JudgeError> {
    let id = judge.id().to_string();
    let hashes: Vec<ContentHash> = items.iter().map(|it| item_key(judge.answer_salt(), it)).collect();
    let mut out = store.get_judgements(&id, &hashes)?;
    let todo: Vec<usize> = (0..items.len()).filter(|&i| out[i].is_none()).collect();
    let mut scoring = Scoring::default();
    if todo.is_empty() {
        return Ok((scoring, out));
    }
    let todo_items: Vec<Item<'_>> = todo.iter().map(|&i| items[i]).collect();
    judge.prepare(&todo_items, store)?;
    let pb = crate::progress::bar(todo.len() as u64, "judge", "pairs", show_progress);
    let paid = judge.paid();
    let mut persist_error = None;
    let mut buffer: Vec<(ContentHash, Scored)> = Vec::new();
    let flush = |store: &mut Store, buffer: &mut Vec<(ContentHash, Scored)>, stored: &mut usize| {
        store.put_judgements(&id, buffer)?;
        *stored += buffer.len();
        buffer.clear();
        crate::killpoint::hit("judge-verdict");
        Ok::<(), StoreError>(())
    };
    let ended = judge.score(&todo_items, &mut |j, r| {
        pb.inc(1);
        let i = todo[j];
        match r {
            Ok(s) => {
                buffer.push((hashes[i], s.clone()));
                if (paid || buffer.len() >= 256)
                    && let Err(e) = flush(store, &mut buffer, &mut scoring.stored)
                {
                    persist_error = Some(e);
                    return ControlFlow::Break(());
                }
                out[i] = Some(s);
            }
            Err(msg) => {
                scoring.failed += 1;
                log::debug!("judge {id}: item failed: {msg}");
            }
        }
        ControlFlow::Continue(())
    })?;
    pb.finish_and_clear();
    if persist_error.is_none() && !buffer.is_empty() {
        persist_error = flush(store, &mut buffer, &mut scoring.stored).err();
    }
    if let Some(e) = persist_error {
        return Err(e.into());
    }
    scoring.not_sent = ended.not_sent;
    scoring.tokens = ended.tokens;
    scoring.stopped = ended.stopped_by;
    Ok((scoring, out))
}

/// [`score_items`] through the work queue: units of `queue.judge_unit` pairs, worked on here and by
/// workers; the verdicts are read back from the workspace and the units' counts summed.
fn score_queued(
    judge: &mut dyn Judge,
    queue: &mut Queue,
    store: &mut Store,
    items: &[Item<'_>],
) -> Result<(Scoring, Vec<Option<Scored>>), JudgeError> {
    let payloads: Vec<Payload> = items
        .chunks(queue.unit_size.judge_unit.max(1))
        .map(|c| Payload::Judge {
            items: c.iter().map(|it| (it.query.to_string(), it.passage.to_string())).collect(),
            answers: if c.iter().any(|it| it.answer.is_some()) {
                c.iter().map(|it| it.answer.map(str::to_string)).collect()
            } else {
                Vec::new()
            },
        })
        .collect();
    let id = judge.id().to_string();
    let ids = queue.run_units(&id, &payloads, "judge", true, |u| judge_unit(&mut *judge, store, u))?;
    let mut total = Scoring::default();
    for s in queue.results::<Scoring>(&ids)?.into_iter().flatten() {
        total.stored += s.stored;
        total.failed += s.failed;
        total.tokens.0 += s.tokens.0;
        total.tokens.1 += s.tokens.1;
    }
    let hashes: Vec<ContentHash> = items.iter().map(|it| item_key(judge.answer_salt(), it)).collect();
    Ok((total, store.get_judgements(&id, &hashes)?))
}

/// Do a judge unit (on a worker or the coordinator) with `judge`, the one its `needs` names: a unit
/// whose judge stopped early (server down, quota) is given back, to be tried again.
pub fn judge_unit(judge: &mut dyn Judge, store: &mut Store, unit: &Unit) -> UnitOutcome {
    let Payload::Judge { items, answers } = &unit.payload else {
        return Err(format!("unit {} is not a judge unit", unit.id));
    };
    let items: Vec<Item<'_>> = items
        .iter()
        .enumerate()
        .map(|(i, (q, p))| Item { query: q, passage: p, answer: answers.get(i).and_then(Option::as_deref) })
        .collect();
    let (scoring, _) = score_items(judge, store, &items, false).map_err(|e| e.to_string())?;
    if let Some(why) = &scoring.stopped {
        return Err(format!("judge {} stopped: {why}", judge.id()));
    }
    Ok(Some(serde_json::to_vec(&scoring).expect("counts serialise")))
}

/// Build every judge of `cfg.judge`, in cascade order (loading models, checking endpoints).
pub fn build_judges(cfg: &Config) -> Result<Vec<Box<dyn Judge>>, JudgeError> {
    let jc = cfg.judge.clone().unwrap_or_default();
    let mut judges: Vec<Box<dyn Judge>> = Vec::new();
    for (i, st) in jc.stages.iter().enumerate() {
        let name = format!("judge.stages[{i}] ({})", st.kind.name());
        let j: Box<dyn Judge> = match st.kind {
            JudgeKind::Llm => Box::new(llm::LlmJudge::new(st, cfg, &name)?),
            JudgeKind::CrossEncoder => rerank::build(st, cfg, &name)?,
            JudgeKind::Embedding => Box::new(teacher::Teacher::new(st, cfg, &name)?),
        };
        judges.push(j);
    }
    Ok(judges)
}

/// Read labelled cases (JSON lines), naming the line of a bad one.
pub fn read_cases(path: &std::path::Path) -> Result<Vec<Case>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1)))
        .collect()
}

/// Run the cascade of `cfg` (with the gold-answer rule when `use_answers`) on labelled `cases`,
/// with verdicts cached in `store` like a run's.
pub fn evaluate_cases(
    cfg: &Config,
    cases: &[Case],
    use_answers: bool,
    store: &mut Store,
) -> Result<CaseReport, JudgeError> {
    let t = Instant::now();
    let mut ds = Dataset::default();
    for c in cases {
        ds.queries.push(crate::ingest::Query {
            id: c.id.clone(),
            text: c.query.clone(),
            hash: ContentHash::of(&c.query),
            origin: None,
            answers: if use_answers { c.answers.clone() } else { Vec::new() },
        });
        ds.docs.push(crate::ingest::Document {
            id: c.id.clone(),
            text: c.passage.clone(),
            hash: ContentHash::of(&c.passage),
        });
        ds.positives.push(Vec::new());
    }
    let mut stage = JudgeStage::new(cfg, &ds)?;
    let docs: Vec<[usize; 1]> = (0..cases.len()).map(|i| [i]).collect();
    let walks: Vec<Walk<'_>> = docs.iter().enumerate().map(|(i, d)| Walk { query: i, docs: d, want: 1 }).collect();
    stage.adjudicate(&walks, &ds, store)?;
    let mut r = CaseReport { cases: cases.len(), ..Default::default() };
    for (i, c) in cases.iter().enumerate() {
        let Some(v) = stage.verdicts.get(&(i, i)) else { continue };
        if v.by == DecidedBy::Failed {
            r.failed += 1;
            continue;
        }
        match (c.relevant, v.relevant) {
            (true, true) => r.true_positive += 1,
            (false, true) => r.false_positive += 1,
            (true, false) => r.false_negative += 1,
            (false, false) => r.true_negative += 1,
        }
        let e = r.by_category.entry(c.category.clone()).or_default();
        e.0 += (c.relevant == v.relevant) as usize;
        e.1 += 1;
    }
    r.sent = stage.stats.stages.iter().map(|s| s.sent).sum();
    r.seconds = t.elapsed().as_secs_f64();
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_part_of_the_key_only_for_judges_that_read_it() {
        let plain = Item { query: "q", passage: "p", answer: None };
        let with = Item { answer: Some("a"), ..plain };
        // A judge that ignores answers: one verdict whatever the answer.
        assert_eq!(item_key(None, &plain), item_key(None, &with));
        // One that reads them: a verdict per (answer, answer prompt), and none without an answer
        // shares a key with one given an answer.
        assert_ne!(item_key(Some("h1"), &plain), item_key(Some("h1"), &with));
        assert_eq!(item_key(Some("h1"), &plain), item_key(None, &plain));
        assert_ne!(item_key(Some("h1"), &with), item_key(Some("h2"), &with));
        assert_ne!(item_key(Some("h1"), &with), item_key(Some("h1"), &Item { answer: Some("b"), ..plain }));
        assert_eq!(shown(&["1990".into(), " in 1990 ".into(), "".into()]).as_deref(), Some("1990 / in 1990"));
        assert_eq!(shown(&[]), None);
    }
}
