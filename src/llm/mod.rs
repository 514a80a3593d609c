//! OpenAI-compatible chat client for query generation.
//!
//! [`LlmConfig`] is the `[llm]` section of a run (validated once, like the rest of
//! [`crate::config`]). [`Client::chat`] performs one logical call — rate limited on requests and
//! tokens per minute, retried with exponential backoff and full jitter, pausing every worker when the
//! server answers 429 — and [`Client::run_all`] / [`Client::run_blocking`] run many calls with bounded
//! concurrency, handing each result to the caller the moment it arrives so it can be persisted before
//! anything else can go wrong. [`estimate`] prices a run before it is made, and [`parse_list`] /
//! [`parse_single`] turn a model's free-form answer into strings without guessing.
//!
//! The API key is read from the environment variable named by [`LlmConfig::api_key_env`]; it is never
//! stored in the config, never logged, and redacted from anything the server echoes back.

mod client;
mod limiter;
mod parse;

pub use client::{Client, LlmError, RunSummary, UsageStats};
pub use parse::{ParseFailure, parse_list, parse_single};

use crate::config::ConfigError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Header names that carry credentials (refused in `llm.headers`, whose values are written to
/// manifest.json; the key belongs in the variable `llm.api_key_env` names).
fn is_credential_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(n.as_str(), "authorization" | "proxy-authorization" | "cookie")
        || ["key", "token", "secret", "auth", "password"].iter().any(|w| n.contains(w))
}

/// The `[llm]` section: which OpenAI-compatible server to call and how hard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// Base URL of the API, e.g. `http://127.0.0.1:8080/v1`; requests go to
    /// `{base_url}/chat/completions`.
    pub base_url: String,
    /// Model name sent with every request.
    pub model: String,
    /// Name of the environment variable holding the API key (never the key itself). Unset: no key
    /// is sent (local servers).
    pub api_key_env: Option<String>,
    /// Header carrying the key. Unset: `Authorization: Bearer <key>`; set (e.g. `api-key` for Azure):
    /// the raw key in that header.
    pub api_key_header: Option<String>,
    /// Extra headers sent with every request.
    pub headers: BTreeMap<String, String>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Client-side limit on requests per minute (requests are spaced evenly).
    pub requests_per_minute: Option<u32>,
    /// Client-side limit on tokens per minute (prompt estimate + `max_tokens`, corrected with the
    /// usage the server reports).
    pub tokens_per_minute: Option<u32>,
    /// Retries after the first attempt for retryable failures (429, 5xx, timeouts, connection errors,
    /// garbled bodies, empty choices).
    pub max_retries: u32,
    /// First backoff before a retry, in milliseconds (doubles each retry, with full jitter).
    pub initial_backoff_ms: u64,
    /// Longest backoff, in milliseconds. A server's `Retry-After` is honoured even when longer
    /// (up to 15 minutes, with a warning).
    pub max_backoff_ms: u64,
    /// Timeout of one HTTP attempt (connect + answer), in seconds.
    pub timeout_secs: f64,
    /// Sampling temperature (0–2).
    pub temperature: f64,
    /// Completion length limit sent as `max_tokens`.
    pub max_tokens: u32,
    /// Ask for a JSON object (`response_format: {"type": "json_object"}`).
    pub json_mode: bool,
    /// Sampling seed sent as `seed` (servers that support it are then more reproducible).
    pub seed: Option<u64>,
    /// Price per million prompt tokens, for estimates and usage reports.
    pub price_per_million_input: Option<f64>,
    /// Price per million completion tokens, for estimates and usage reports.
    pub price_per_million_output: Option<f64>,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8080/v1".into(),
            model: "default".into(),
            api_key_env: None,
            api_key_header: None,
            headers: BTreeMap::new(),
            concurrency: 4,
            requests_per_minute: None,
            tokens_per_minute: None,
            max_retries: 6,
            initial_backoff_ms: 500,
            max_backoff_ms: 60_000,
            timeout_secs: 120.0,
            temperature: 0.7,
            max_tokens: 256,
            json_mode: false,
            seed: None,
            price_per_million_input: None,
            price_per_million_output: None,
        }
    }
}

impl LlmConfig {
    /// Refuse values that cannot work, naming the key (`llm.…`), `origin` (the config file or
    /// "command line") and what would be valid. Checks that the API key variable, when named, is set
    /// (the message names the variable, never its value).
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            key: format!("llm.{key}"),
            message,
        };
        match reqwest::Url::parse(&self.base_url) {
            // Credentials in the URL would be written to manifest.json and shown in errors.
            Ok(u) if !u.username().is_empty() || u.password().is_some() => {
                return Err(bad(
                    "base_url",
                    "contains a user name or password: the config is written to manifest.json, so secrets \
                     go in the variable llm.api_key_env names (with llm.api_key_header for another header)"
                        .into(),
                ));
            }
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            Ok(u) => {
                return Err(bad(
                    "base_url",
                    format!("is {:?}: the scheme {:?} is not http or https", self.base_url, u.scheme()),
                ));
            }
            Err(e) => {
                return Err(bad(
                    "base_url",
                    format!("is {:?}, which is not a URL ({e}); e.g. http://127.0.0.1:8080/v1", self.base_url),
                ));
            }
        }
        if self.model.trim().is_empty() {
            return Err(bad("model", "is empty: name the model the server should run".into()));
        }
        if let Some(var) = &self.api_key_env {
            if var.is_empty() || var.contains('=') || var.contains('\0') {
                return Err(bad("api_key_env", format!("is {var:?}, which is not an environment variable name")));
            }
            match std::env::var(var) {
                Ok(v) if v.trim().is_empty() => {
                    return Err(bad("api_key_env", format!("names ${var}, which is set but empty")));
                }
                Ok(v) if reqwest::header::HeaderValue::from_str(&format!("Bearer {v}")).is_err() => {
                    return Err(bad(
                        "api_key_env",
                        format!("names ${var}, whose value is not usable in an HTTP header (control characters?)"),
                    ));
                }
                Ok(_) => {}
                Err(std::env::VarError::NotPresent) => {
                    return Err(bad(
                        "api_key_env",
                        format!(
                            "names ${var}, which is not set: export it, or remove llm.api_key_env for a server without a key"
                        ),
                    ));
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(bad("api_key_env", format!("names ${var}, whose value is not valid UTF-8")));
                }
            }
        }
        if let Some(h) = &self.api_key_header {
            if reqwest::header::HeaderName::from_bytes(h.as_bytes()).is_err() {
                return Err(bad("api_key_header", format!("is {h:?}, which is not a valid HTTP header name")));
            }
            if self.api_key_env.is_none() {
                return Err(bad("api_key_header", "is set but llm.api_key_env is not: name the key's variable".into()));
            }
        }
        for (name, value) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(bad("headers", format!("has {name:?}, which is not a valid HTTP header name")));
            }
            if is_credential_header(name) {
                return Err(bad(
                    "headers",
                    format!(
                        "has {name:?}, which looks like a credential: the config is written to manifest.json, so \
                         put the secret in an environment variable named by llm.api_key_env, with \
                         llm.api_key_header = {name:?}"
                    ),
                ));
            }
            if reqwest::header::HeaderValue::from_str(value).is_err() {
                return Err(bad("headers", format!("{name:?} has a value that is not a valid HTTP header value")));
            }
        }
        if self.concurrency == 0 || self.concurrency > 1024 {
            return Err(bad("concurrency", format!("is {}; use 1 to 1024", self.concurrency)));
        }
        if self.requests_per_minute == Some(0) {
            return Err(bad("requests_per_minute", "is 0; use at least 1, or remove it for no limit".into()));
        }
        if self.tokens_per_minute == Some(0) {
            return Err(bad("tokens_per_minute", "is 0; use at least 1, or remove it for no limit".into()));
        }
        if self.max_retries > 100 {
            return Err(bad("max_retries", format!("is {}; use 0 to 100", self.max_retries)));
        }
        if self.initial_backoff_ms == 0 {
            return Err(bad("initial_backoff_ms", "is 0; use at least 1".into()));
        }
        if self.max_backoff_ms < self.initial_backoff_ms {
            return Err(bad(
                "max_backoff_ms",
                format!("is {}, below llm.initial_backoff_ms ({})", self.max_backoff_ms, self.initial_backoff_ms),
            ));
        }
        if !(self.timeout_secs.is_finite() && self.timeout_secs > 0.0 && self.timeout_secs <= 86_400.0) {
            return Err(bad("timeout_secs", format!("is {}; use a number of seconds above 0", self.timeout_secs)));
        }
        if !(self.temperature.is_finite() && (0.0..=2.0).contains(&self.temperature)) {
            return Err(bad("temperature", format!("is {}; use 0 to 2", self.temperature)));
        }
        if self.max_tokens == 0 {
            return Err(bad("max_tokens", "is 0; use at least 1".into()));
        }
        for (key, price) in [
            ("price_per_million_input", self.price_per_million_input),
            ("price_per_million_output", self.price_per_million_output),
        ] {
            if let Some(p) = price
                && !(p.is_finite() && p >= 0.0)
            {
                return Err(bad(key, format!("is {p}; use a price of 0 or more")));
            }
        }
        Ok(())
    }

    /// Cost of the given token counts, if at least one price is set (an unset price counts as 0).
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> Option<f64> {
        if self.price_per_million_input.is_none() && self.price_per_million_output.is_none() {
            return None;
        }
        Some(
            prompt_tokens as f64 * self.price_per_million_input.unwrap_or(0.0) / 1e6
                + completion_tokens as f64 * self.price_per_million_output.unwrap_or(0.0) / 1e6,
        )
    }
}

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
    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self { role: Role::Assistant, content: content.into() }
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

    fn invalid(c: &LlmConfig) -> String {
        c.validate("x.toml").unwrap_err().to_string()
    }

    #[test]
    fn defaults_validate_and_roundtrip_toml() {
        let c = LlmConfig::default();
        c.validate("x.toml").unwrap();
        let s = toml::to_string(&c).unwrap();
        let back: LlmConfig = toml::from_str(&s).unwrap();
        assert_eq!(back, c);
        let c: LlmConfig = toml::from_str("timeout_secs = 30\nconcurrency = 2").unwrap();
        assert_eq!(c.timeout_secs, 30.0);
        assert_eq!(c.concurrency, 2);
        assert!(toml::from_str::<LlmConfig>("api_key = \"sk-x\"").is_err(), "unknown keys are refused");
    }

    #[test]
    fn validate_names_the_key() {
        let c = LlmConfig { concurrency: 0, ..Default::default() };
        assert!(invalid(&c).contains("`llm.concurrency`"), "{}", invalid(&c));
        let c = LlmConfig { base_url: "ftp://host/v1".into(), ..Default::default() };
        assert!(invalid(&c).contains("`llm.base_url`"));
        let c = LlmConfig { base_url: "localhost:8080".into(), ..Default::default() };
        assert!(invalid(&c).contains("`llm.base_url`"));
        let c = LlmConfig { temperature: 3.0, ..Default::default() };
        assert!(invalid(&c).contains("`llm.temperature`"));
        let c = LlmConfig { max_backoff_ms: 10, initial_backoff_ms: 100, ..Default::default() };
        assert!(invalid(&c).contains("`llm.max_backoff_ms`"));
        let c = LlmConfig { timeout_secs: 0.0, ..Default::default() };
        assert!(invalid(&c).contains("`llm.timeout_secs`"));
        let c = LlmConfig { requests_per_minute: Some(0), ..Default::default() };
        assert!(invalid(&c).contains("`llm.requests_per_minute`"));
        let mut headers = BTreeMap::new();
        headers.insert("bad header".to_string(), "v".to_string());
        let c = LlmConfig { headers, ..Default::default() };
        assert!(invalid(&c).contains("`llm.headers`"));
        for secret in ["Authorization", "x-api-key", "X-Auth-Token", "cookie"] {
            let c = LlmConfig { headers: BTreeMap::from([(secret.to_string(), "sk-secret-value".to_string())]), ..Default::default() };
            let e = invalid(&c);
            assert!(e.contains("`llm.headers`") && e.contains("api_key_env") && !e.contains("sk-secret-value"), "{e}");
        }
        let c = LlmConfig { headers: BTreeMap::from([("OpenAI-Organization".to_string(), "org-1".to_string())]), ..Default::default() };
        assert!(c.validate("test").is_ok(), "an ordinary header is fine");
        let c = LlmConfig { base_url: "https://user:sk-secret@api.example.com/v1".into(), ..Default::default() };
        let e = invalid(&c);
        assert!(e.contains("`llm.base_url`") && !e.contains("sk-secret"), "{e}");
        let c = LlmConfig { price_per_million_input: Some(-1.0), ..Default::default() };
        assert!(invalid(&c).contains("`llm.price_per_million_input`"));
    }

    #[test]
    fn missing_key_variable_is_named() {
        let var = "TRIPLETGEN_TEST_SURELY_UNSET_KEY_VAR";
        let c = LlmConfig { api_key_env: Some(var.into()), ..Default::default() };
        let e = invalid(&c);
        assert!(e.contains("`llm.api_key_env`") && e.contains(var), "{e}");
    }

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
