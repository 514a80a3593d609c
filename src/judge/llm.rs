//! The LLM judge: an OpenAI-compatible chat model answers, for each (query, passage), whether the
//! passage answers the query, with the prompt of configs/prompts/judge.txt (query and passage between
//! data markers). A prompt may ask for `yes`/`no` (the built-in one: small models are far better
//! calibrated on a strict yes/no question than on a graded scale) or for a grade 0-3. The score is
//! P(yes), or the expected grade / 3, from the first token's log probabilities where the server
//! returns them (OpenAI, vLLM, llama.cpp), else 1/0 or the grade / 3. Calls go through
//! [`crate::llm::Client`]: concurrency, rate limits, retries with backoff and Retry-After, the key
//! from the environment.
//!
//! When the query's answer is known (gold, or read from its positive), the judge is shown it
//! (configs/prompts/judge_answer.txt): "does this passage give this answer?" is a far easier
//! question for a small model than "does it answer the question?". The same type reads those
//! answers ([`LlmJudge::reader`], `judge.derive_answers`): a "judge" of (query, positive) whose
//! verdict carries the answer span, so it is stored, resumed and budgeted like any verdict.

use super::{Ended, Item, Judge, JudgeError, Scored, StageConfig};
use crate::config::Config;
use crate::generate::llm::{Template, cut, fenced};
use crate::llm::{ChatRequest, Client, LlmConfig};
use std::ops::ControlFlow;

/// Alternatives asked for per token (OpenAI allows up to 20).
const TOP_LOGPROBS: u8 = 10;

/// What an [`LlmJudge`] asks.
enum Task {
    /// Does the passage answer the query? With `answered` (configs/prompts/judge_answer.txt) when
    /// the item's answer is known.
    Relevance { answered: Template },
    /// The answer span in a positive (configs/prompts/answer.txt): label 1 with the span as
    /// `detail` when the reply is found in the passage ([`read_span`]), else label 0.
    Answer,
}

/// See the module doc.
pub(crate) struct LlmJudge {
    id: String,
    task: Task,
    client: Client,
    cfg: LlmConfig,
    template: Template,
    max_chars: usize,
    /// Where batch jobs are recorded (`llm.mode = "batch"`).
    workspace: crate::workspace::Location,
}

/// A template from `path`, or the built-in text.
fn load_template(
    path: Option<&std::path::Path>,
    builtin: &str,
    setup: &dyn Fn(String) -> JudgeError,
) -> Result<Template, JudgeError> {
    Ok(Template::new(match path {
        Some(p) => std::fs::read_to_string(p).map_err(|e| setup(format!("cannot read {}: {e}", p.display())))?,
        None => builtin.to_string(),
    }))
}

/// Most tokens of a verdict: one, and a few more for a chatty model's "Grade: 3".
const VERDICT_TOKENS: u32 = 8;
/// Most tokens of an answer span (ten words and some slack).
const ANSWER_TOKENS: u32 = 32;

impl LlmJudge {
    /// The relevance judge of stage `st`.
    pub(crate) fn new(st: &StageConfig, cfg: &Config, name: &str) -> Result<Self, JudgeError> {
        let setup = |message: String| JudgeError::Setup { judge: name.to_string(), message };
        let template = load_template(st.prompt.as_deref(), include_str!("../../configs/prompts/judge.txt"), &setup)?;
        let answered =
            load_template(st.answer_prompt.as_deref(), include_str!("../../configs/prompts/judge_answer.txt"), &setup)?;
        Self::build("llm", Task::Relevance { answered }, template, st, cfg, VERDICT_TOKENS, &setup)
    }

    /// The answer reader of `judge.derive_answers`, with the model and server of the last `llm`
    /// stage of the cascade, else `[llm]`'s.
    pub(crate) fn reader(cfg: &Config) -> Result<Self, JudgeError> {
        let setup = |message: String| JudgeError::Setup { judge: "judge.derive_answers".into(), message };
        let jc = cfg.judge.clone().unwrap_or_default();
        let st = jc.stages.iter().rev().find(|s| s.kind == super::JudgeKind::Llm).cloned();
        let st = st.unwrap_or_else(|| StageConfig::of(super::JudgeKind::Llm));
        let template =
            load_template(jc.derive_prompt.as_deref(), include_str!("../../configs/prompts/answer.txt"), &setup)?;
        Self::build("answer", Task::Answer, template, &st, cfg, ANSWER_TOKENS, &setup)
    }

    /// The client for `st`'s model and server overrides of `[llm]`, deterministic, at most
    /// `max_tokens`.
    fn build(
        kind: &str,
        task: Task,
        template: Template,
        st: &StageConfig,
        cfg: &Config,
        max_tokens: u32,
        setup: &dyn Fn(String) -> JudgeError,
    ) -> Result<Self, JudgeError> {
        let mut llm = cfg.llm.clone().ok_or_else(|| setup("needs an [llm] section (the server to ask)".into()))?;
        if let Some(m) = &st.model {
            llm.model = m.clone();
        }
        if let Some(u) = &st.base_url {
            llm.base_url = u.clone();
            llm.endpoints.clear();
        }
        llm.max_tokens = max_tokens;
        llm.temperature = 0.0;
        llm.json_mode = false;
        let client = Client::new(&llm).map_err(|e| setup(e.to_string()))?;
        let id = format!("{kind}:{}:prompt:{}:chars:{}", llm.model, template.hash, st.max_passage_chars());
        Ok(LlmJudge {
            id,
            task,
            client,
            cfg: llm,
            template,
            max_chars: st.max_passage_chars(),
            workspace: cfg.workspace_location(),
        })
    }

    fn request(&self, item: &Item<'_>) -> ChatRequest {
        let (query, passage) = (fenced(item.query), fenced(cut(item.passage, self.max_chars)));
        match (&self.task, item.answer) {
            (Task::Relevance { answered }, Some(a)) => ChatRequest {
                top_logprobs: Some(TOP_LOGPROBS),
                ..ChatRequest::user(answered.render(&[
                    ("query", &query),
                    ("answer", &fenced(a)),
                    ("passage", &passage),
                ]))
            },
            (Task::Relevance { .. }, None) => ChatRequest {
                top_logprobs: Some(TOP_LOGPROBS),
                ..ChatRequest::user(self.template.render(&[("query", &query), ("passage", &passage)]))
            },
            (Task::Answer, _) => ChatRequest::user(self.template.render(&[("query", &query), ("passage", &passage)])),
        }
    }
}

/// The verdict in an answer: its first word, `yes` (label 1) / `no` (label 0), or its first digit
/// 0-3 (a grade, label = the grade), with its score (1 / 0, or grade / 3).
fn verdict(content: &str) -> Option<(u8, f32)> {
    let word: String = content
        .trim_start_matches(|c: char| !c.is_alphanumeric())
        .chars()
        .take_while(|c| c.is_alphanumeric())
        .collect::<String>()
        .to_lowercase();
    match word.as_str() {
        "yes" => return Some((1, 1.0)),
        "no" => return Some((0, 0.0)),
        _ => {}
    }
    let d = content.chars().find(|c| c.is_ascii_digit())?.to_digit(10).filter(|&d| d <= 3)? as u8;
    Some((d, f32::from(d) / 3.0))
}

/// The expected score over the first token's alternatives that are verdicts of the same kind as the
/// answer (yes/no or grades), weighted by their probabilities.
fn expected(top: &[(String, f64)], yes_no: bool) -> Option<f32> {
    let (mut mass, mut sum) = (0.0f64, 0.0f64);
    for (tok, lp) in top {
        let t = tok.trim();
        let kind_ok = if yes_no { t.chars().all(char::is_alphabetic) } else { t.len() == 1 };
        if let Some((_, v)) = verdict(t).filter(|_| kind_ok && !t.is_empty()) {
            let p = lp.exp();
            mass += p;
            sum += p * f64::from(v);
        }
    }
    (mass > 0.0).then(|| (sum / mass) as f32)
}

/// Turn an answer into a score.
pub(crate) fn scored(content: &str, top: &[(String, f64)]) -> Result<Scored, String> {
    let (label, plain) =
        verdict(content).ok_or_else(|| format!("no yes/no or grade 0-3 in the answer {:?}", cut(content, 80)))?;
    let yes_no = content.trim_start().starts_with(|c: char| c.is_alphabetic());
    let score = expected(top, yes_no).unwrap_or(plain);
    Ok(Scored { score, label: Some(label), detail: Some(content.trim().to_string()) })
}

/// The answer span in a reply: its first line, without a leading "Answer:", quotes or a final
/// full stop; label 1 when it is found in `passage` and is not just words of the query (a span
/// the query already holds, "Nigeria" for "the wind that blows across nigeria", is in every
/// passage on the topic and tells nothing).
pub(crate) fn read_span(content: &str, query: &str, passage: &str) -> Scored {
    let line = content.trim().lines().next().unwrap_or("").trim();
    let line = line.strip_prefix("Answer:").or_else(|| line.strip_prefix("answer:")).unwrap_or(line).trim();
    let quote = |c: char| matches!(c, '"' | '\'' | '`' | '*' | '“' | '”');
    let span = line.trim_end_matches(|c: char| c == '.' || quote(c)).trim_start_matches(quote).trim();
    let normal = crate::ingest::answers::normalize(span);
    let found = !normal.is_empty()
        && normal != "none"
        && span.split_whitespace().count() <= 20
        && crate::ingest::Answers::new(&[span]).found_in(passage).is_some()
        && crate::ingest::Answers::new(&[span]).found_in(query).is_none();
    Scored { score: if found { 1.0 } else { 0.0 }, label: Some(found as u8), detail: Some(span.to_string()) }
}

impl Judge for LlmJudge {
    fn id(&self) -> &str {
        &self.id
    }
    fn paid(&self) -> bool {
        true
    }
    fn answer_salt(&self) -> Option<&str> {
        match &self.task {
            Task::Relevance { answered } => Some(&answered.hash),
            Task::Answer => None,
        }
    }
    fn score(
        &mut self,
        items: &[Item<'_>],
        sink: &mut dyn FnMut(usize, Result<Scored, String>) -> ControlFlow<()>,
    ) -> Result<Ended, JudgeError> {
        let requests: Vec<(usize, ChatRequest)> =
            items.iter().enumerate().map(|(i, it)| (i, self.request(it))).collect();
        let mut tokens = (0u64, 0u64);
        let task = &self.task;
        let summary = self
            .client
            .run_planned(requests, &self.workspace, |i, res| match res {
                Ok(r) => {
                    tokens.0 += r.prompt_tokens;
                    tokens.1 += r.completion_tokens;
                    sink(
                        i,
                        match task {
                            Task::Relevance { .. } => scored(&r.content, &r.top_logprobs),
                            Task::Answer => Ok(read_span(&r.content, items[i].query, items[i].passage)),
                        },
                    )
                }
                Err(e) => sink(i, Err(e.to_string())),
            })
            .map_err(|e| JudgeError::Setup { judge: self.id.clone(), message: e.to_string() })?;
        let stopped_by = summary.stopped_by.filter(|_| summary.not_started > 0);
        Ok(Ended { stopped_by, not_sent: summary.not_started, tokens })
    }
    fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> Option<f64> {
        self.cfg.cost(prompt_tokens, completion_tokens)
    }
    fn estimate(&self, items: &[Item<'_>]) -> (u64, u64, u64) {
        let reqs: Vec<ChatRequest> = items.iter().map(|it| self.request(it)).collect();
        let e = crate::llm::estimate(&reqs, &self.cfg);
        (e.calls, e.prompt_tokens_est, e.completion_tokens_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_and_logprob_scores() {
        assert_eq!(verdict("3"), Some((3, 1.0)));
        assert_eq!(verdict("Grade: 2."), Some((2, 2.0 / 3.0)));
        assert_eq!(verdict("Yes."), Some((1, 1.0)));
        assert_eq!(verdict(" no, it does not"), Some((0, 0.0)));
        assert_eq!(verdict("7"), None);
        assert_eq!(verdict("none"), None);
        assert_eq!(verdict("Nothing"), None);
        let top = vec![
            ("3".to_string(), (0.6f64).ln()),
            ("0".to_string(), (0.2f64).ln()),
            ("Grade".to_string(), (0.2f64).ln()),
        ];
        let s = scored("3", &top).unwrap();
        assert!((s.score - (0.6 * 3.0 / 0.8 / 3.0) as f32).abs() < 1e-6, "{}", s.score);
        assert_eq!(s.label, Some(3));
        assert_eq!(scored("1", &[]).unwrap().score, 1.0 / 3.0);
        // yes/no: P(yes) over the yes/no alternatives, whatever their case.
        let top = vec![
            ("Yes".to_string(), (0.5f64).ln()),
            ("yes".to_string(), (0.1f64).ln()),
            ("No".to_string(), (0.3f64).ln()),
            ("1".to_string(), (0.1f64).ln()),
        ];
        let s = scored("Yes", &top).unwrap();
        assert!((s.score - (0.6 / 0.9) as f32).abs() < 1e-6, "{}", s.score);
        assert_eq!(s.label, Some(1));
        assert_eq!(scored("no", &[]).unwrap().score, 0.0);
        assert!(scored("I cannot tell", &[]).is_err());
    }

    #[test]
    fn answer_spans_must_be_in_the_passage() {
        let query = "when was the eiffel tower completed";
        let passage = "The Eiffel tower was completed in 1889 by Gustave Eiffel's company.";
        let read = |reply: &str| read_span(reply, query, passage);
        let s = read("Answer: \"1889\".\nIt was built for the fair.");
        assert_eq!((s.label, s.detail.as_deref()), (Some(1), Some("1889")));
        assert_eq!(read("Gustave Eiffel's company").label, Some(1));
        // Made up, absent, a refusal, or words of the query: not an answer.
        assert_eq!(read("1887").label, Some(0));
        assert_eq!(read("none").label, Some(0));
        assert_eq!(read("None.").label, Some(0));
        assert_eq!(read("").label, Some(0));
        assert_eq!(read("The Eiffel Tower").label, Some(0));
    }
}
