//! The `[llm]` section: which OpenAI-compatible server to call and how hard, and its validation.
//! The client that uses it is [`crate::llm`].

use super::ConfigError;
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
    /// Several servers (replicas or providers) instead of `base_url`: requests are spread over them
    /// by free slots, a failing one is taken out for a while and its work retried on the others.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointConfig>,
    /// `online` (chat completions one by one) or `batch` (the OpenAI Batch API: the planned calls
    /// are uploaded as batch jobs, polled, and their answers stored when the results are downloaded).
    pub mode: LlmMode,
    /// Batch mode: seconds between two looks at a job's status.
    pub batch_poll_secs: f64,
    /// Batch mode: the job's `completion_window` (OpenAI accepts `24h`).
    pub batch_completion_window: String,
    /// Batch mode: most requests in one job (OpenAI: 50,000).
    pub batch_max_requests: usize,
    /// Batch mode: the fraction of the online prices a batch costs (OpenAI: 0.5).
    pub batch_price_factor: f64,
}

/// How LLM calls are sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LlmMode {
    /// Chat completions, one request per call.
    #[default]
    Online,
    /// The OpenAI Batch API (`/files`, `/batches`).
    Batch,
}

/// One server of `endpoints`; unset limits are the section's (`concurrency`, `requests_per_minute`,
/// `tokens_per_minute`), applied to this server alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Base URL of this server.
    pub base_url: String,
    /// Requests in flight at once on this server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// Client-side requests per minute for this server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    /// Client-side tokens per minute for this server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u32>,
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
            endpoints: Vec::new(),
            mode: LlmMode::Online,
            batch_poll_secs: 30.0,
            batch_completion_window: "24h".into(),
            batch_max_requests: 50_000,
            batch_price_factor: 0.5,
        }
    }
}

impl LlmConfig {
    /// Refuse values that cannot work, naming the key (`llm.…`), `origin` (the config file or
    /// "command line") and what would be valid. Checks that the API key variable, when named, is set
    /// (the message names the variable, never its value).
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        self.validate_as(origin, "llm")
    }

    /// [`LlmConfig::validate`] for settings that live in another section (`model` for a remote
    /// embedding server): errors name `{section}.{key}`.
    pub fn validate_as(&self, origin: &str, section: &str) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            key: format!("{section}.{key}"),
            message,
        };
        if self.endpoints.is_empty() {
            check_base_url(&self.base_url, origin, section, "base_url")?;
        } else if self.base_url != LlmConfig::default().base_url {
            return Err(bad(
                "endpoints",
                format!("and {section}.base_url are both set: list every server in endpoints"),
            ));
        }
        if self.mode == LlmMode::Batch {
            if !self.endpoints.is_empty() {
                return Err(bad(
                    "mode",
                    "is \"batch\": a batch job lives on one server; use base_url, not endpoints".into(),
                ));
            }
            if !(self.batch_poll_secs.is_finite() && self.batch_poll_secs > 0.0 && self.batch_poll_secs <= 3600.0) {
                return Err(bad(
                    "batch_poll_secs",
                    format!("is {}; use a number of seconds above 0, at most 3600", self.batch_poll_secs),
                ));
            }
            if self.batch_completion_window.trim().is_empty() {
                return Err(bad("batch_completion_window", "is empty; OpenAI accepts \"24h\"".into()));
            }
            if !(1..=50_000).contains(&self.batch_max_requests) {
                return Err(bad("batch_max_requests", format!("is {}; use 1 to 50000", self.batch_max_requests)));
            }
            if !(self.batch_price_factor.is_finite() && (0.0..=1.0).contains(&self.batch_price_factor)) {
                return Err(bad(
                    "batch_price_factor",
                    format!("is {}; use 0 to 1 (OpenAI: 0.5)", self.batch_price_factor),
                ));
            }
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            check_base_url(&e.base_url, origin, section, &format!("endpoints[{i}].base_url"))?;
            if e.concurrency.is_some_and(|c| c == 0 || c > 1024) {
                return Err(bad(&format!("endpoints[{i}].concurrency"), "is out of range; use 1 to 1024".into()));
            }
            if e.requests_per_minute == Some(0) || e.tokens_per_minute == Some(0) {
                return Err(bad(&format!("endpoints[{i}]"), "has a limit of 0 per minute; use at least 1".into()));
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
                            "names ${var}, which is not set: export it, or remove {section}.api_key_env for a server without a key"
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
                return Err(bad(
                    "api_key_header",
                    format!("is set but {section}.api_key_env is not: name the key's variable"),
                ));
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

    /// The servers to call: `endpoints`, or `base_url` alone.
    pub fn servers(&self) -> Vec<Endpoint> {
        let one = |e: &EndpointConfig| Endpoint {
            base_url: e.base_url.trim_end_matches('/').to_string(),
            concurrency: e.concurrency.unwrap_or(self.concurrency),
            requests_per_minute: e.requests_per_minute.or(self.requests_per_minute),
            tokens_per_minute: e.tokens_per_minute.or(self.tokens_per_minute),
        };
        if self.endpoints.is_empty() {
            vec![one(&EndpointConfig {
                base_url: self.base_url.clone(),
                concurrency: None,
                requests_per_minute: None,
                tokens_per_minute: None,
            })]
        } else {
            self.endpoints.iter().map(one).collect()
        }
    }

    /// Cost of the given token counts, if at least one price is set (an unset price counts as 0);
    /// at batch prices (`batch_price_factor`) in batch mode.
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> Option<f64> {
        if self.price_per_million_input.is_none() && self.price_per_million_output.is_none() {
            return None;
        }
        let factor = if self.mode == LlmMode::Batch { self.batch_price_factor } else { 1.0 };
        Some(
            factor
                * (prompt_tokens as f64 * self.price_per_million_input.unwrap_or(0.0) / 1e6
                    + completion_tokens as f64 * self.price_per_million_output.unwrap_or(0.0) / 1e6),
        )
    }
}

/// Refuse a base URL that is not http(s) with a host, or that carries credentials.
fn check_base_url(url: &str, origin: &str, section: &str, key: &str) -> Result<(), ConfigError> {
    let bad =
        |message: String| ConfigError::Invalid { origin: origin.to_string(), key: format!("{section}.{key}"), message };
    match reqwest::Url::parse(url) {
        // Credentials in the URL would be written to manifest.json and shown in errors.
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            return Err(bad(format!(
                "contains a user name or password: the config is written to manifest.json, so secrets \
                         go in the variable {section}.api_key_env names"
            )));
        }
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        Ok(u) => {
            return Err(bad(format!("is {:?}: the scheme {:?} is not http or https", url, u.scheme())));
        }
        Err(e) => {
            return Err(bad(format!("is {:?}, which is not a URL ({e}); e.g. http://127.0.0.1:8080/v1", url)));
        }
    }
    Ok(())
}

/// One server as the client uses it: `endpoints[i]` with the section's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// Base URL (no trailing `/`).
    pub base_url: String,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Requests per minute.
    pub requests_per_minute: Option<u32>,
    /// Tokens per minute.
    pub tokens_per_minute: Option<u32>,
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
            let c = LlmConfig {
                headers: BTreeMap::from([(secret.to_string(), "sk-secret-value".to_string())]),
                ..Default::default()
            };
            let e = invalid(&c);
            assert!(e.contains("`llm.headers`") && e.contains("api_key_env") && !e.contains("sk-secret-value"), "{e}");
        }
        let c = LlmConfig {
            headers: BTreeMap::from([("OpenAI-Organization".to_string(), "org-1".to_string())]),
            ..Default::default()
        };
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
}
