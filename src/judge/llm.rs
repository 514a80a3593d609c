//! The LLM judge: an OpenAI-compatible chat model answers, for each (query, passage), whether the
//! passage answers the query, with the prompt of configs/prompts/judge.txt (query and passage between
//! data markers). A prompt may ask for `yes`/`no` (the built-in one: small models are far better
//! calibrated on a strict yes/no question than on a graded scale) or for a grade 0-3. The score is
//! P(yes), or the expected grade / 3, from the first token's log probabilities where the server
//! returns them (OpenAI, vLLM, llama.cpp), else 1/0 or the grade / 3. Calls go through
//! [`crate::llm::Client`]: concurrency, rate limits, retries with backoff and Retry-After, the key
//! from the environment.

use super::{Ended, Item, Judge, JudgeError, Scored, StageConfig};
use crate::config::Config;
use crate::generate::llm::{Template, cut, fenced};
use crate::llm::{ChatRequest, Client, LlmConfig};
use std::ops::ControlFlow;

/// Alternatives asked for per token (OpenAI allows up to 20).
const TOP_LOGPROBS: u8 = 10;

/// See the module doc.
pub(crate) struct LlmJudge {
    id: String,
    client: Client,
    cfg: LlmConfig,
    template: Template,
    max_chars: usize,
    /// Where batch jobs are recorded (`llm.mode = "batch"`).
    workspace: crate::workspace::Location,
}

impl LlmJudge {
    pub(crate) fn new(st: &StageConfig, cfg: &Config, name: &str) -> Result<Self, JudgeError> {
        let setup = |message: String| JudgeError::Setup { judge: name.to_string(), message };
        let mut llm = cfg.llm.clone().ok_or_else(|| setup("needs an [llm] section (the server to ask)".into()))?;
        if let Some(m) = &st.model {
            llm.model = m.clone();
        }
        if let Some(u) = &st.base_url {
            llm.base_url = u.clone();
            llm.endpoints.clear();
        }
        // A verdict is one token; a few more let a chatty model say "Grade: 3".
        llm.max_tokens = 8;
        llm.temperature = 0.0;
        llm.json_mode = false;
        let template = match &st.prompt {
            Some(p) => Template::new(
                std::fs::read_to_string(p).map_err(|e| setup(format!("cannot read {}: {e}", p.display())))?,
            ),
            None => Template::new(include_str!("../../configs/prompts/judge.txt").to_string()),
        };
        let client = Client::new(&llm).map_err(|e| setup(e.to_string()))?;
        let id = format!("llm:{}:prompt:{}:chars:{}", llm.model, template.hash, st.max_passage_chars());
        Ok(LlmJudge {
            id,
            client,
            cfg: llm,
            template,
            max_chars: st.max_passage_chars(),
            workspace: cfg.workspace_location(),
        })
    }

    fn request(&self, item: &Item<'_>) -> ChatRequest {
        let prompt = self
            .template
            .render(&[("query", &fenced(item.query)), ("passage", &fenced(cut(item.passage, self.max_chars)))]);
        ChatRequest { top_logprobs: Some(TOP_LOGPROBS), ..ChatRequest::user(prompt) }
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

impl Judge for LlmJudge {
    fn id(&self) -> &str {
        &self.id
    }
    fn paid(&self) -> bool {
        true
    }
    fn score(
        &mut self,
        items: &[Item<'_>],
        sink: &mut dyn FnMut(usize, Result<Scored, String>) -> ControlFlow<()>,
    ) -> Result<Ended, JudgeError> {
        let requests: Vec<(usize, ChatRequest)> =
            items.iter().enumerate().map(|(i, it)| (i, self.request(it))).collect();
        let mut tokens = (0u64, 0u64);
        let summary = self
            .client
            .run_planned(requests, &self.workspace, |i, res| match res {
                Ok(r) => {
                    tokens.0 += r.prompt_tokens;
                    tokens.1 += r.completion_tokens;
                    sink(i, scored(&r.content, &r.top_logprobs))
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
}
