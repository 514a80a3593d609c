//! OpenAI-compatible chat client for query generation.
//!
//! Its settings are [`LlmConfig`], the `[llm]` section of a run (in [`crate::config::llm`],
//! validated once like the rest of the config). [`Client::chat`] performs one logical call — rate limited on requests and
//! tokens per minute, retried with exponential backoff and full jitter, pausing every worker when the
//! server answers 429 — and [`Client::run_all`] / [`Client::run_blocking`] run many calls with bounded
//! concurrency, handing each result to the caller the moment it arrives so it can be persisted before
//! anything else can go wrong. [`estimate`] prices a run before it is made, and [`parse_list`] /
//! [`parse_single`] turn a model's free-form answer into strings without guessing.
//!
//! The API key is read from the environment variable named by [`LlmConfig::api_key_env`]; it is never
//! stored in the config, never logged, and redacted from anything the server echoes back.

mod batch;
mod client;
mod limiter;
mod parse;

pub use batch::{BatchJournal, BatchRecord};
pub use client::{Client, LlmError, Posted, RunSummary, ServerStats, UsageStats};
pub use parse::{ListItem, ParseFailure, parse_items, parse_list, parse_single};

pub use crate::config::llm::{LlmConfig, LlmMode};
use serde::{Deserialize, Serialize};

/// Who speaks a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions.
    System,
    /// The prompt.
    User,
    /// A previous model turn (few-shot examples).
    Assistant,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who speaks.
    pub role: Role,
    /// What is said.
    pub content: String,
}

impl Message {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self { role: Role::System, content: content.into() }
    }
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self { role: Role::User, content: content.into() }
    }
}

/// One logical chat call: the messages and optional per-request overrides of the config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The conversation.
    pub messages: Vec<Message>,
    /// Overrides [`LlmConfig::temperature`].
    pub temperature: Option<f64>,
    /// Overrides [`LlmConfig::max_tokens`].
    pub max_tokens: Option<u32>,
    /// Overrides [`LlmConfig::seed`].
    pub seed: Option<u64>,
    /// Overrides [`LlmConfig::json_mode`].
    pub json_mode: Option<bool>,
    /// Ask for the log probabilities of this many alternatives of each generated token
    /// (`logprobs: true, top_logprobs: n`); servers that ignore it simply send none.
    pub top_logprobs: Option<u8>,
}

impl ChatRequest {
    /// A request with these messages and no overrides.
    pub fn new(messages: Vec<Message>) -> Self {
        Self { messages, ..Self::default() }
    }
    /// A request made of one user message.
    pub fn user(prompt: impl Into<String>) -> Self {
        Self::new(vec![Message::user(prompt)])
    }
    /// Estimated prompt tokens: characters / 4 (rounded up) plus 3 per message and 3 for the reply.
    pub fn prompt_tokens_estimate(&self) -> u64 {
        let chars: usize = self.messages.iter().map(|m| m.content.chars().count()).sum();
        (chars as u64).div_ceil(4) + 3 * self.messages.len() as u64 + 3
    }
}

/// What one call produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// `choices[0].message.content`.
    pub content: String,
    /// `choices[0].finish_reason`, when the server sent one.
    pub finish_reason: Option<String>,
    /// The answer hit `max_tokens` (`finish_reason == "length"`): possibly cut mid-item.
    pub truncated: bool,
    /// Prompt tokens (from `usage`, or estimated when [`ChatResponse::usage_estimated`]).
    pub prompt_tokens: u64,
    /// Completion tokens (from `usage`, or estimated when [`ChatResponse::usage_estimated`]).
    pub completion_tokens: u64,
    /// The server sent no usable `usage`; the token counts are estimates (characters / 4).
    pub usage_estimated: bool,
    /// The model the server says answered, when it says.
    pub model: Option<String>,
    /// HTTP attempts this call took (1 = no retry).
    pub attempts: u32,
    /// Alternatives of the first generated token with their log probabilities, when asked for
    /// with [`ChatRequest::top_logprobs`] and sent by the server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_logprobs: Vec<(String, f64)>,
}

/// What a dry run would cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Calls (one per request; retries not counted).
    pub calls: u64,
    /// Estimated prompt tokens over all calls.
    pub prompt_tokens_est: u64,
    /// Upper bound of completion tokens (sum of `max_tokens`).
    pub completion_tokens_max: u64,
    /// Estimated cost at most, when a price is configured.
    pub cost_est: Option<f64>,
}

/// Estimate calls, tokens and cost of `requests` without calling anything.
pub fn estimate(requests: &[ChatRequest], cfg: &LlmConfig) -> Estimate {
    let prompt: u64 = requests.iter().map(ChatRequest::prompt_tokens_estimate).sum();
    let completion: u64 = requests.iter().map(|r| u64::from(r.max_tokens.unwrap_or(cfg.max_tokens))).sum();
    Estimate {
        calls: requests.len() as u64,
        prompt_tokens_est: prompt,
        completion_tokens_max: completion,
        cost_est: cfg.cost(prompt, completion),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_counts_tokens_and_cost() {
        let cfg = LlmConfig {
            max_tokens: 100,
            price_per_million_input: Some(1.0),
            price_per_million_output: Some(2.0),
            ..Default::default()
        };
        let reqs = vec![
            ChatRequest::user("a".repeat(400)),
            ChatRequest { max_tokens: Some(50), ..ChatRequest::user("b".repeat(40)) },
        ];
        let e = estimate(&reqs, &cfg);
        assert_eq!(e.calls, 2);
        assert_eq!(e.prompt_tokens_est, (100 + 6) + (10 + 6));
        assert_eq!(e.completion_tokens_max, 150);
        let cost = e.cost_est.unwrap();
        assert!((cost - (122.0 * 1.0 + 150.0 * 2.0) / 1e6).abs() < 1e-12);
        assert_eq!(estimate(&reqs, &LlmConfig::default()).cost_est, None);
    }
}
