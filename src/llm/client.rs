//! The HTTP client: one logical call with rate limiting and retries ([`Client::chat`]), many calls
//! with bounded concurrency and results delivered as they arrive ([`Client::run_all`],
//! [`Client::run_blocking`]), and running usage totals ([`UsageStats`]).
//!
//! One `reqwest::Client` (one connection pool) serves every call; a request body is serialised once
//! per logical call and reused by its retries.

use super::limiter::Limiter;
use super::{ChatRequest, ChatResponse, LlmConfig};
use crate::config::ConfigError;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use rand::Rng;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::{Serialize, Serializer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::ControlFlow;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};
use tokio::sync::{Notify, Semaphore};

/// Longest wait a server's `Retry-After` can impose on one retry.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(900);

/// Fewest consecutive calls that exhaust their retries before [`Client::run_all`] stops.
const DOWN_AFTER_CONSECUTIVE: usize = 8;

/// Longest excerpt of a server body kept in an error.
const EXCERPT_CHARS: usize = 200;

/// Why a call failed. Messages never contain the API key (server bodies are redacted).
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The configuration cannot work (see [`LlmConfig::validate`]).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The HTTP client or the async runtime could not be set up.
    #[error("llm: cannot set up the client: {0}")]
    Setup(String),
    /// No complete answer within `llm.timeout_secs` (retryable).
    #[error("llm: no answer within {secs} s (llm.timeout_secs)")]
    Timeout {
        /// The per-attempt timeout.
        secs: f64,
    },
    /// Connecting failed or the connection broke before a complete answer (retryable).
    #[error("llm: connection failed: {message}")]
    Connection {
        /// What the HTTP stack said.
        message: String,
    },
    /// An HTTP error status. 408, 429, 500, 502, 503, 504 are retried; others are final.
    #[error("llm: HTTP {status} from the server{}: {body}", retry_after.map(|d| format!(" (Retry-After {:.1} s)", d.as_secs_f64())).unwrap_or_default())]
    Status {
        /// The status code.
        status: u16,
        /// The first characters of the body (redacted).
        body: String,
        /// The server's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// A 429 whose body says the account's quota is used up: retrying cannot help.
    #[error("llm: HTTP 429, the account's quota is exhausted (not retried): {body}")]
    QuotaExhausted {
        /// The first characters of the body (redacted).
        body: String,
    },
    /// A 200 whose body is not the expected JSON (retryable).
    #[error("llm: invalid response: {message}; body: {body}")]
    InvalidResponse {
        /// What is wrong.
        message: String,
        /// The first characters of the body (redacted).
        body: String,
    },
    /// A 200 with an empty `choices` array (retryable).
    #[error("llm: the server answered with no choices")]
    EmptyChoices,
    /// `finish_reason == "content_filter"`: the server refused; retrying would be refused again.
    #[error("llm: the answer was blocked by the server's content filter (not retried)")]
    ContentFilter,
    /// A call sent through the Batch API got no answer (its job failed, expired or was cancelled,
    /// or the request failed inside the job). Not retried in this run; a rerun sends it again.
    #[error("llm: {message}")]
    Batch {
        /// What happened.
        message: String,
    },
    /// The retry budget is spent.
    #[error(
        "llm: gave up after {attempts} attempt{}; last error: {}",
        if *attempts == 1 { "" } else { "s" },
        last.to_string().trim_start_matches("llm: ")
    )]
    RetriesExhausted {
        /// HTTP attempts made.
        attempts: u32,
        /// The last attempt's error.
        last: Box<LlmError>,
    },
}

impl LlmError {
    /// Whether another attempt could succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::Timeout { .. }
            | LlmError::Connection { .. }
            | LlmError::InvalidResponse { .. }
            | LlmError::EmptyChoices => true,
            LlmError::Status { status, .. } => retryable_status(*status),
            _ => false,
        }
    }

    /// Whether every other request of the run would fail the same way (bad key, unknown model or
    /// path, exhausted quota): [`Client::run_all`] then stops starting new requests.
    pub fn stops_run(&self) -> bool {
        match self {
            LlmError::QuotaExhausted { .. } | LlmError::Config(_) | LlmError::Setup(_) => true,
            LlmError::Status { status, .. } => matches!(status, 401 | 403 | 404),
            _ => false,
        }
    }

    /// The error of the last attempt (`self` unless retries were exhausted).
    pub fn last_cause(&self) -> &LlmError {
        match self {
            LlmError::RetriesExhausted { last, .. } => last,
            e => e,
        }
    }

    /// A short stable name for counting: `timeout`, `connection`, `http_429`, `invalid_response`,
    /// `empty_choices`, `content_filter`, `quota_exhausted`, `config`, `setup`; an exhausted retry
    /// budget is named by its last cause.
    pub fn kind(&self) -> String {
        match self {
            LlmError::Config(_) => "config".into(),
            LlmError::Setup(_) => "setup".into(),
            LlmError::Timeout { .. } => "timeout".into(),
            LlmError::Connection { .. } => "connection".into(),
            LlmError::Status { status, .. } => format!("http_{status}"),
            LlmError::QuotaExhausted { .. } => "quota_exhausted".into(),
            LlmError::InvalidResponse { .. } => "invalid_response".into(),
            LlmError::EmptyChoices => "empty_choices".into(),
            LlmError::ContentFilter => "content_filter".into(),
            LlmError::Batch { .. } => "batch".into(),
            LlmError::RetriesExhausted { last, .. } => last.kind(),
        }
    }
}

fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Running totals of one client (all calls so far).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UsageStats {
    /// Logical calls started.
    pub calls: u64,
    /// HTTP requests sent (first attempts + retries).
    pub requests_sent: u64,
    /// Requests that were retries.
    pub retries: u64,
    /// Calls that returned an answer.
    pub succeeded: u64,
    /// Of those, answers cut at `max_tokens`.
    pub truncated: u64,
    /// Calls that ended in an error.
    pub failed: u64,
    /// Prompt tokens of successful calls.
    pub prompt_tokens: u64,
    /// Completion tokens of successful calls.
    pub completion_tokens: u64,
    /// Successful calls whose token counts are estimates (no `usage` from the server).
    pub usage_estimated: u64,
    /// Times all workers were paused by a 429 or a 503 with `Retry-After`.
    pub pauses: u64,
    /// Failed calls by [`LlmError::kind`].
    pub failures_by_kind: BTreeMap<String, u64>,
    /// Retried attempts by [`LlmError::kind`] of the failure that caused them.
    pub retries_by_cause: BTreeMap<String, u64>,
    /// Per server, when there are several (`endpoints`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<ServerStats>,
}

impl UsageStats {
    /// Cost of the tokens used so far, if a price is configured.
    pub fn cost(&self, cfg: &LlmConfig) -> Option<f64> {
        cfg.cost(self.prompt_tokens, self.completion_tokens)
    }
}

/// What [`Client::post_json`] got: the parsed answer, the attempts it took and the server (index in
/// the config's order) that gave it.
#[derive(Debug)]
pub struct Posted<T> {
    /// The parsed answer.
    pub value: T,
    /// HTTP attempts (1 = no retry).
    pub attempts: u32,
    /// Which server answered.
    pub server: usize,
}

/// How a [`Client::run_all`] ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    /// Results handed to the callback (successes and errors).
    pub delivered: usize,
    /// Items never sent because the run stopped early.
    pub not_started: usize,
    /// Why the run stopped early: the callback asked, or the error that would fail every request.
    pub stopped_by: Option<String>,
}

/// The API key; only for the header and for redaction. Its Debug never shows it.
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// An OpenAI-compatible chat client. Cheap to share by reference across tasks.
pub struct Client {
    http: reqwest::Client,
    cfg: LlmConfig,
    secret: Option<Secret>,
    servers: Vec<Server>,
    /// Signalled whenever a request slot is given back, so a waiting request can pick a server.
    freed: Notify,
    stats: Mutex<UsageStats>,
}

/// One server of a client: its own slots, rate limits, 429 pause and health.
struct Server {
    base_url: String,
    concurrency: usize,
    slots: Semaphore,
    limiter: Limiter,
    /// Taken out after a failure (only when the client has several servers) until this instant.
    out_until: Mutex<Option<tokio::time::Instant>>,
    /// Failures in a row: each one doubles how long the server is taken out.
    strikes: std::sync::atomic::AtomicU32,
    stats: Mutex<ServerStats>,
}

impl Server {
    /// When this server can take requests again, if it is taken out or paused now.
    fn unusable_until(&self, now: tokio::time::Instant) -> Option<tokio::time::Instant> {
        let out = lock(&self.out_until).filter(|t| *t > now);
        match (out, self.limiter.paused_until()) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// The URL of `path` on this server.
    fn url(&self, path: &str) -> Result<reqwest::Url, LlmError> {
        reqwest::Url::parse(&format!("{}/{}", self.base_url, path.trim_start_matches('/')))
            .map_err(|e| LlmError::Setup(format!("{} + {path:?}: {e}", self.base_url)))
    }
}

/// Lock a mutex of plain numbers (a poisoned lock only means another worker panicked mid-update).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What one server of a client did (the per-endpoint lines of the summary).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServerStats {
    /// The server's base URL.
    pub base_url: String,
    /// HTTP requests sent to it (retries included).
    pub requests: u64,
    /// Requests it answered usefully.
    pub succeeded: u64,
    /// Requests that failed (status, timeout, connection, garbled answer).
    pub errors: u64,
    /// Times it was taken out after a failure and its work sent to the other servers.
    pub taken_out: u64,
}

/// A request slot on one server; giving it back wakes a request waiting for one.
struct Slot<'a> {
    _permit: tokio::sync::SemaphorePermit<'a>,
    freed: &'a Notify,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.freed.notify_waiters();
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("servers", &self.servers.iter().map(|s| s.base_url.as_str()).collect::<Vec<_>>())
            .field("model", &self.cfg.model)
            .field("api_key_env", &self.cfg.api_key_env)
            .field("api_key", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("concurrency", &self.cfg.concurrency)
            .finish_non_exhaustive()
    }
}

/// The request body, borrowing the request (serialised once per logical call).
#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    messages: &'a [super::Message],
    temperature: f64,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not", serialize_with = "json_object")]
    response_format: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    logprobs: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_logprobs: Option<u8>,
}

fn json_object<S: Serializer>(_: &bool, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Rf {
        r#type: &'static str,
    }
    Rf { r#type: "json_object" }.serialize(s)
}

impl Client {
    /// Validate `cfg`, read the API key from the variable it names, and build the HTTP client
    /// (per-attempt timeout, key header, extra headers).
    pub fn new(cfg: &LlmConfig) -> Result<Client, LlmError> {
        cfg.validate("llm config")?;
        let secret = match &cfg.api_key_env {
            Some(var) => match std::env::var(var) {
                Ok(v) => Some(Secret(v.trim().to_string())),
                // validate() saw it; it may have been removed since.
                Err(_) => return Err(LlmError::Setup(format!("${var} (llm.api_key_env) is not set"))),
            },
            None => None,
        };
        let mut headers = HeaderMap::new();
        for (k, v) in &cfg.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| LlmError::Setup(format!("llm.headers: {k:?} is not a header name")))?;
            let mut value = HeaderValue::from_str(v)
                .map_err(|_| LlmError::Setup(format!("llm.headers: the value of {k:?} is not a header value")))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        if let Some(Secret(key)) = &secret {
            let (name, value) = match &cfg.api_key_header {
                Some(h) => (
                    HeaderName::from_bytes(h.as_bytes())
                        .map_err(|_| LlmError::Setup(format!("llm.api_key_header: {h:?} is not a header name")))?,
                    HeaderValue::from_str(key),
                ),
                None => (header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {key}"))),
            };
            let mut value = value.map_err(|_| {
                LlmError::Setup(format!(
                    "the API key in ${} is not usable in an HTTP header",
                    cfg.api_key_env.as_deref().unwrap_or("")
                ))
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let timeout = Duration::from_secs_f64(cfg.timeout_secs);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(30)))
            .default_headers(headers)
            .pool_max_idle_per_host(cfg.servers().iter().map(|s| s.concurrency).max().unwrap_or(1))
            .build()
            .map_err(|e| LlmError::Setup(e.without_url().to_string()))?;
        let jitter = Duration::from_millis(cfg.initial_backoff_ms.min(1000));
        let servers = cfg
            .servers()
            .into_iter()
            .map(|s| Server {
                concurrency: s.concurrency.max(1),
                slots: Semaphore::new(s.concurrency.max(1)),
                limiter: Limiter::new(s.requests_per_minute, s.tokens_per_minute, jitter),
                out_until: Mutex::new(None),
                strikes: Default::default(),
                stats: Mutex::new(ServerStats { base_url: s.base_url.clone(), ..Default::default() }),
                base_url: s.base_url,
            })
            .collect();
        Ok(Client {
            http,
            cfg: cfg.clone(),
            secret,
            servers,
            freed: Notify::new(),
            stats: Mutex::new(UsageStats::default()),
        })
    }

    /// Requests in flight at once over all servers.
    pub fn concurrency(&self) -> usize {
        self.servers.iter().map(|s| s.concurrency).sum()
    }

    /// Per-server counts so far, in the order of the config.
    pub fn server_stats(&self) -> Vec<ServerStats> {
        self.servers.iter().map(|s| lock(&s.stats).clone()).collect()
    }

    /// Wait for a request slot on the best server: not taken out, not paused by a 429, with the most
    /// free slots (ties: the first in the config). When none is usable, wait for a slot to be given
    /// back or for the first server to come back, whichever is first.
    async fn pick(&self) -> (usize, Slot<'_>) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let now = tokio::time::Instant::now();
            let mut best: Option<(usize, &Server)> = None;
            let mut back_at: Option<tokio::time::Instant> = None;
            for (i, s) in self.servers.iter().enumerate() {
                if let Some(t) = s.unusable_until(now) {
                    back_at = Some(back_at.map_or(t, |b| b.min(t)));
                    continue;
                }
                if s.slots.available_permits() > best.map_or(0, |(_, b)| b.slots.available_permits()) {
                    best = Some((i, s));
                }
            }
            if let Some((i, s)) = best
                && let Ok(permit) = s.slots.try_acquire()
            {
                return (i, Slot { _permit: permit, freed: &self.freed });
            }
            if best.is_some() {
                continue;
            }
            match back_at {
                Some(t) => {
                    tokio::select! {
                        _ = freed => {}
                        _ = tokio::time::sleep_until(t) => {}
                    }
                }
                None => freed.await,
            }
        }
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &LlmConfig {
        &self.cfg
    }

    /// A snapshot of the usage totals so far.
    pub fn usage(&self) -> UsageStats {
        let mut u = self.stats().clone();
        if self.servers.len() > 1 {
            u.servers = self.server_stats();
        }
        u
    }

    pub(super) fn stats(&self) -> std::sync::MutexGuard<'_, UsageStats> {
        lock(&self.stats)
    }

    /// One logical call: wait for the rate limits, send, retry retryable failures with backoff
    /// (honouring `Retry-After`, pausing every worker on 429), and return the first answer or the
    /// final error.
    pub async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        self.stats().calls += 1;
        let max_tokens = req.max_tokens.unwrap_or(self.cfg.max_tokens);
        let body = match self.chat_body(req) {
            Ok(b) => b,
            Err(e) => return Err(self.fail(e)),
        };
        let prompt_est = req.prompt_tokens_estimate();
        let charge = prompt_est + u64::from(max_tokens);
        let posted =
            self.post_json("chat/completions", body, charge, |bytes| parse_response(bytes, prompt_est)).await?;
        let mut resp = posted.value;
        resp.attempts = posted.attempts;
        self.servers[posted.server].limiter.correct_tokens(charge, resp.prompt_tokens + resp.completion_tokens);
        let mut s = self.stats();
        s.truncated += u64::from(resp.truncated);
        s.usage_estimated += u64::from(resp.usage_estimated);
        s.prompt_tokens += resp.prompt_tokens;
        s.completion_tokens += resp.completion_tokens;
        Ok(resp)
    }

    /// The chat-completions JSON body of `req` (the config's settings where it has no override).
    pub(crate) fn chat_body(&self, req: &ChatRequest) -> Result<Vec<u8>, LlmError> {
        let body = Body {
            model: &self.cfg.model,
            messages: &req.messages,
            temperature: req.temperature.unwrap_or(self.cfg.temperature),
            max_tokens: req.max_tokens.unwrap_or(self.cfg.max_tokens),
            seed: req.seed.or(self.cfg.seed),
            response_format: req.json_mode.unwrap_or(self.cfg.json_mode),
            logprobs: req.top_logprobs.is_some(),
            top_logprobs: req.top_logprobs,
        };
        serde_json::to_vec(&body).map_err(|e| LlmError::Setup(format!("cannot serialise the request: {e}")))
    }

    /// The URL of `path` on every server, comma-separated (e.g. `rerank` for `{base_url}/rerank`),
    /// for messages; an error when a URL cannot be formed.
    pub fn endpoint(&self, path: &str) -> Result<String, LlmError> {
        let urls = self.servers.iter().map(|s| s.url(path).map(String::from)).collect::<Result<Vec<_>, _>>()?;
        Ok(urls.join(", "))
    }

    /// POST a JSON `body` to `path` under a server's base URL with the client's guarantees — rate
    /// limits (`charge` tokens), retries with backoff and `Retry-After`, one 429 pausing every worker
    /// of that server, the key redacted from errors — and turn the answer into a `T` with `parse` (an
    /// `InvalidResponse` is retried like a garbled body). With several servers, a server that fails
    /// is taken out for a while (the backoff, doubling with each failure in a row) and the retry goes
    /// at once to another one. [`Client::chat`] is this with the chat-completions body; other JSON
    /// APIs of the same server (embeddings, rerank, score) use it directly.
    pub async fn post_json<T>(
        &self,
        path: &str,
        body: Vec<u8>,
        charge: u64,
        parse: impl Fn(&[u8]) -> Result<T, LlmError>,
    ) -> Result<Posted<T>, LlmError> {
        self.send(Method::POST, path, body, "application/json", charge, parse).await
    }

    /// [`Client::post_json`] for any method and content type (`GET` with an empty body, a multipart
    /// upload): the same limits, retries and server choice.
    pub(crate) async fn send<T>(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
        charge: u64,
        parse: impl Fn(&[u8]) -> Result<T, LlmError>,
    ) -> Result<Posted<T>, LlmError> {
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let (index, slot) = self.pick().await;
            let server = &self.servers[index];
            server.limiter.acquire(charge).await;
            {
                let mut s = self.stats();
                s.requests_sent += 1;
                if attempt > 1 {
                    s.retries += 1;
                }
            }
            lock(&server.stats).requests += 1;
            let result = match server.url(path) {
                Ok(url) => self.attempt(&method, &url, content_type, reqwest::Body::from(body.clone()), &parse).await,
                Err(e) => Err(e),
            };
            drop(slot);
            let err = match result {
                Ok(value) => {
                    self.stats().succeeded += 1;
                    lock(&server.stats).succeeded += 1;
                    server.strikes.store(0, Ordering::Relaxed);
                    return Ok(Posted { value, attempts: attempt, server: index });
                }
                Err(e) => e,
            };
            lock(&server.stats).errors += 1;
            if !err.is_retryable() {
                return Err(self.fail(err));
            }
            if attempt > self.cfg.max_retries {
                return Err(self.fail(LlmError::RetriesExhausted { attempts: attempt, last: Box::new(err) }));
            }
            let retry_after = match &err {
                LlmError::Status { retry_after, .. } => *retry_after,
                _ => None,
            };
            let delay = match retry_after {
                Some(d) => {
                    if d > Duration::from_millis(self.cfg.max_backoff_ms) {
                        log::warn!(
                            "llm: {} asks to wait {:.0} s before retrying",
                            server.base_url,
                            d.as_secs_f64().min(MAX_RETRY_AFTER.as_secs_f64())
                        );
                    }
                    d.min(MAX_RETRY_AFTER)
                }
                None => self.backoff(attempt),
            };
            let status = match &err {
                LlmError::Status { status, .. } => *status,
                _ => 0,
            };
            let now = tokio::time::Instant::now();
            if (status == 429 || (status == 503 && retry_after.is_some())) && server.limiter.pause_until(now + delay) {
                self.stats().pauses += 1;
                log::info!(
                    "llm: HTTP {status} from {}: pausing its requests for {:.2} s",
                    server.base_url,
                    delay.as_secs_f64()
                );
            } else if self.servers.len() > 1 {
                let strikes = server.strikes.fetch_add(1, Ordering::Relaxed);
                let out = self.backoff_cap(strikes + 1);
                *lock(&server.out_until) = Some(now + out);
                lock(&server.stats).taken_out += 1;
                log::warn!(
                    "llm: {} failed ({err}); taken out for {:.1} s, its work goes to the other servers",
                    server.base_url,
                    out.as_secs_f64()
                );
            }
            {
                let mut s = self.stats();
                *s.retries_by_cause.entry(err.kind()).or_default() += 1;
            }
            // Another server can take the retry now; with one server (or none usable), wait.
            let now = tokio::time::Instant::now();
            if self.servers.iter().any(|s| s.unusable_until(now).is_none()) && self.servers.len() > 1 {
                log::debug!(
                    "llm: attempt {attempt}/{} failed ({err}); retrying on another server",
                    self.cfg.max_retries + 1
                );
                continue;
            }
            log::debug!(
                "llm: attempt {attempt}/{} failed ({err}); retrying in {:.2} s",
                self.cfg.max_retries + 1,
                delay.as_secs_f64()
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// The exponential backoff without jitter: min(max, initial · 2^(n-1)).
    fn backoff_cap(&self, n: u32) -> Duration {
        let exp = self.cfg.initial_backoff_ms.saturating_mul(1u64 << (n.max(1) - 1).min(30));
        Duration::from_millis(exp.min(self.cfg.max_backoff_ms))
    }

    /// Full jitter: uniform in [0, min(max, initial · 2^(attempt-1))].
    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self.backoff_cap(attempt).as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(0..=cap))
    }

    fn fail(&self, e: LlmError) -> LlmError {
        let mut s = self.stats();
        s.failed += 1;
        *s.failures_by_kind.entry(e.kind()).or_default() += 1;
        e
    }

    /// One HTTP attempt.
    async fn attempt<T>(
        &self,
        method: &Method,
        url: &reqwest::Url,
        content_type: &str,
        body: reqwest::Body,
        parse: &impl Fn(&[u8]) -> Result<T, LlmError>,
    ) -> Result<T, LlmError> {
        let mut request = self.http.request(method.clone(), url.clone());
        if *method != Method::GET {
            request = request.header(header::CONTENT_TYPE, content_type).body(body);
        }
        let resp = request.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        let retry_after = parse_retry_after(resp.headers(), SystemTime::now());
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(e))?;
        if !status.is_success() {
            return Err(self.status_error(status, &bytes, retry_after));
        }
        parse(&bytes).map_err(|e| match e {
            LlmError::InvalidResponse { message, body } => {
                LlmError::InvalidResponse { message: self.redact(&message), body: self.redact(&body) }
            }
            e => e,
        })
    }

    fn transport_error(&self, e: reqwest::Error) -> LlmError {
        if e.is_timeout() {
            return LlmError::Timeout { secs: self.cfg.timeout_secs };
        }
        let mut message = String::new();
        // Add the causes ("connection reset by peer", …) that reqwest keeps in its source chain.
        let e = e.without_url();
        let err: &(dyn std::error::Error + 'static) = &e;
        message.push_str(&e.to_string());
        let mut cause = err.source();
        while let Some(c) = cause {
            let s = c.to_string();
            if !message.contains(&s) {
                message.push_str(": ");
                message.push_str(&s);
            }
            cause = c.source();
        }
        if error_chain_has_timeout(err) {
            return LlmError::Timeout { secs: self.cfg.timeout_secs };
        }
        LlmError::Connection { message: self.redact(&message) }
    }

    fn status_error(&self, status: StatusCode, body: &[u8], retry_after: Option<Duration>) -> LlmError {
        let text = String::from_utf8_lossy(body);
        let body = self.redact(&excerpt(&text));
        if status == StatusCode::TOO_MANY_REQUESTS && text.contains("insufficient_quota") {
            return LlmError::QuotaExhausted { body };
        }
        LlmError::Status { status: status.as_u16(), body, retry_after }
    }

    /// Replace the API key wherever it appears (servers sometimes echo the key they refused).
    fn redact(&self, s: &str) -> String {
        match &self.secret {
            Some(Secret(k)) if k.len() >= 4 && s.contains(k.as_str()) => s.replace(k.as_str(), "[redacted]"),
            _ => s.to_string(),
        }
    }

    /// Run `items` with at most `llm.concurrency` calls in flight, handing each result to
    /// `on_result` the moment it arrives (in completion order, on the caller's task, so the callback
    /// need not be `Send`). New items stop being started when the callback returns
    /// `ControlFlow::Break`, when an error would fail every request ([`LlmError::stops_run`]), or
    /// when the server looks down (max(8, 2 × concurrency) calls in a row exhausted their retries);
    /// calls already in flight still finish and are delivered, so nothing paid for is lost.
    pub async fn run_all<K, F>(&self, items: Vec<(K, ChatRequest)>, mut on_result: F) -> RunSummary
    where
        F: FnMut(K, Result<ChatResponse, LlmError>) -> ControlFlow<()>,
    {
        let mut pending = items.into_iter();
        let mut in_flight = FuturesUnordered::new();
        let mut summary = RunSummary::default();
        let limit = self.concurrency().max(1);
        let give_up_after = (2 * limit).max(DOWN_AFTER_CONSECUTIVE);
        let mut consecutive_exhausted = 0usize;
        loop {
            while summary.stopped_by.is_none() && in_flight.len() < limit {
                let Some((key, req)) = pending.next() else { break };
                in_flight.push(async move {
                    let result = self.chat(&req).await;
                    (key, result)
                });
            }
            let Some((key, result)) = in_flight.next().await else { break };
            match &result {
                Ok(_) => consecutive_exhausted = 0,
                Err(LlmError::RetriesExhausted { .. }) => consecutive_exhausted += 1,
                Err(_) => {}
            }
            if summary.stopped_by.is_none() {
                if let Err(e) = &result
                    && e.stops_run()
                {
                    log::warn!("llm: stopping the run: {e}");
                    summary.stopped_by = Some(e.to_string());
                } else if consecutive_exhausted >= give_up_after
                    && let Err(e) = &result
                {
                    let why = format!(
                        "the server looks down: {consecutive_exhausted} calls in a row failed after all retries; last: {e}"
                    );
                    log::warn!("llm: stopping the run: {why}");
                    summary.stopped_by = Some(why);
                }
            }
            summary.delivered += 1;
            if on_result(key, result).is_break() && summary.stopped_by.is_none() {
                summary.stopped_by = Some("stopped by the caller".into());
            }
        }
        summary.not_started = pending.len();
        summary
    }

    /// [`Client::run_all`] from synchronous code: runs on a small current-thread tokio runtime
    /// built for this call. Refused (an error, not a panic) when called from inside a runtime.
    pub fn run_blocking<K, F>(&self, items: Vec<(K, ChatRequest)>, on_result: F) -> Result<RunSummary, LlmError>
    where
        F: FnMut(K, Result<ChatResponse, LlmError>) -> ControlFlow<()>,
    {
        Ok(blocking_runtime()?.block_on(self.run_all(items, on_result)))
    }

    /// [`Client::chat`] from synchronous code (same runtime rules as [`Client::run_blocking`]).
    pub fn chat_blocking(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        blocking_runtime()?.block_on(self.chat(req))
    }
}

pub(super) fn blocking_runtime() -> Result<tokio::runtime::Runtime, LlmError> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(LlmError::Setup(
            "run_blocking/chat_blocking called from inside an async runtime; use run_all/chat".into(),
        ));
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LlmError::Setup(format!("cannot start the async runtime: {e}")))
}

fn error_chain_has_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// The first characters of a body, on one line.
fn excerpt(s: &str) -> String {
    let mut out: String = s.chars().take(EXCERPT_CHARS).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if s.chars().nth(EXCERPT_CHARS).is_some() {
        out.push('…');
    }
    out.trim().to_string()
}

/// `retry-after-ms` (OpenAI), or `Retry-After` as seconds or an HTTP date.
pub(crate) fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(ms) = headers.get("retry-after-ms").and_then(|v| v.to_str().ok())
        && let Ok(ms) = ms.trim().parse::<f64>()
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms.min(1e9) / 1000.0));
    }
    let v = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parse a 200 body. Never panics on any input.
pub(crate) fn parse_response(bytes: &[u8], prompt_est: u64) -> Result<ChatResponse, LlmError> {
    let invalid =
        |message: String| LlmError::InvalidResponse { message, body: excerpt(&String::from_utf8_lossy(bytes)) };
    let v: Value = serde_json::from_slice(bytes).map_err(|e| invalid(format!("the body is not JSON ({e})")))?;
    let Some(choices) = v.get("choices").and_then(Value::as_array) else {
        let detail = v
            .get("error")
            .map(|e| e.get("message").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| e.to_string()))
            .map(|m| format!(" (error: {})", excerpt(&m)))
            .unwrap_or_default();
        return Err(invalid(format!("no `choices` array{detail}")));
    };
    let Some(choice) = choices.first() else { return Err(LlmError::EmptyChoices) };
    let finish_reason = choice.get("finish_reason").and_then(Value::as_str).map(str::to_string);
    if finish_reason.as_deref() == Some("content_filter") {
        return Err(LlmError::ContentFilter);
    }
    let truncated = finish_reason.as_deref() == Some("length");
    let content = match choice.get("message").and_then(|m| m.get("content")) {
        Some(Value::String(s)) => Some(s.clone()),
        // Content parts: [{"type": "text", "text": "..."}].
        Some(Value::Array(parts)) => {
            let text: String = parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect();
            Some(text)
        }
        _ => choice.get("text").and_then(Value::as_str).map(str::to_string), // legacy completions
    };
    let content = match content {
        Some(c) => c,
        None if truncated => String::new(),
        None => return Err(invalid("choices[0].message.content is missing".into())),
    };
    let usage = v.get("usage");
    let count = |k: &str| usage.and_then(|u| u.get(k)).and_then(Value::as_u64);
    let (prompt_tokens, completion_tokens, usage_estimated) = match (count("prompt_tokens"), count("completion_tokens"))
    {
        (Some(p), Some(c)) => (p, c, false),
        _ => (prompt_est, (content.chars().count() as u64).div_ceil(4), true),
    };
    Ok(ChatResponse {
        content,
        finish_reason,
        truncated,
        prompt_tokens,
        completion_tokens,
        usage_estimated,
        model: v.get("model").and_then(Value::as_str).map(str::to_string),
        attempts: 1,
        top_logprobs: first_token_logprobs(choice),
    })
}

/// The alternatives of the first generated token, `choices[0].logprobs.content[0].top_logprobs`
/// (OpenAI, vLLM, llama.cpp), as (token, log probability); empty when the server sent none.
fn first_token_logprobs(choice: &Value) -> Vec<(String, f64)> {
    let Some(first) = choice.pointer("/logprobs/content/0") else { return Vec::new() };
    let mut out: Vec<(String, f64)> = first
        .get("top_logprobs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t.get("token")?.as_str()?.to_string(), t.get("logprob")?.as_f64()?)))
        .collect();
    if out.is_empty()
        && let (Some(tok), Some(lp)) =
            (first.get("token").and_then(Value::as_str), first.get("logprob").and_then(Value::as_f64))
    {
        out.push((tok.to_string(), lp));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_variants() {
        let ok = br#"{"model":"m","choices":[{"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1}}"#;
        let r = parse_response(ok, 99).unwrap();
        assert_eq!((r.content.as_str(), r.prompt_tokens, r.completion_tokens, r.usage_estimated), ("hi", 5, 1, false));
        assert_eq!(r.model.as_deref(), Some("m"));
        assert!(r.top_logprobs.is_empty());
        let lp = br#"{"choices":[{"message":{"content":"3"},"logprobs":{"content":[{"token":"3","logprob":-0.1,"top_logprobs":[{"token":"3","logprob":-0.1},{"token":"2","logprob":-2.5}]}]}}]}"#;
        assert_eq!(parse_response(lp, 0).unwrap().top_logprobs, vec![("3".to_string(), -0.1), ("2".to_string(), -2.5)]);
        let no_usage = br#"{"choices":[{"message":{"content":"abcdefgh"},"finish_reason":"length"}]}"#;
        let r = parse_response(no_usage, 7).unwrap();
        assert!(r.truncated && r.usage_estimated);
        assert_eq!((r.prompt_tokens, r.completion_tokens), (7, 2));
        let parts = br#"{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}}]}"#;
        assert_eq!(parse_response(parts, 0).unwrap().content, "ab");
        assert!(matches!(parse_response(br#"{"choices":[]}"#, 0), Err(LlmError::EmptyChoices)));
        assert!(matches!(
            parse_response(br#"{"choices":[{"message":{"content":null},"finish_reason":"content_filter"}]}"#, 0),
            Err(LlmError::ContentFilter)
        ));
        for garbage in [&b""[..], b"{", b"null", b"[1,2]", b"{\"choices\": 3}", b"{\"choices\":[null]}", b"\xff\xfe"] {
            let e = parse_response(garbage, 0).unwrap_err();
            assert!(e.is_retryable(), "{e}");
        }
        let e = parse_response(br#"{"error":{"message":"model overloaded"}}"#, 0).unwrap_err();
        assert!(e.to_string().contains("model overloaded"), "{e}");
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        let mut h = HeaderMap::new();
        assert_eq!(parse_retry_after(&h, now), None);
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(parse_retry_after(&h, now), Some(Duration::from_secs(3)));
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("Sun, 06 Nov 1994 08:49:47 GMT"));
        assert_eq!(parse_retry_after(&h, now), Some(Duration::from_secs(10)));
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("Sun, 06 Nov 1994 08:00:00 GMT"));
        assert_eq!(parse_retry_after(&h, now), Some(Duration::ZERO), "a past date means now");
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(parse_retry_after(&h, now), None);
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("-5"));
        assert_eq!(parse_retry_after(&h, now), None);
        h.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(parse_retry_after(&h, now), Some(Duration::from_millis(250)));
    }

    #[test]
    fn excerpt_is_short_and_one_line() {
        let e = excerpt(&format!("a\nb{}", "é".repeat(500)));
        assert!(e.starts_with("a b") && e.ends_with('…'));
        assert!(e.chars().count() <= EXCERPT_CHARS + 1);
    }

    #[test]
    fn request_body_shape() {
        let msgs = vec![super::super::Message::user("q")];
        let b = Body {
            model: "m",
            messages: &msgs,
            temperature: 0.5,
            max_tokens: 9,
            seed: Some(1),
            response_format: true,
            logprobs: false,
            top_logprobs: None,
        };
        let v: Value = serde_json::to_value(&b).unwrap();
        assert_eq!(v["response_format"]["type"], "json_object");
        assert_eq!(v["messages"][0]["role"], "user");
        assert_eq!(v["seed"], 1);
        assert!(v.get("logprobs").is_none() && v.get("top_logprobs").is_none(), "no logprobs unless asked: {v}");
        let b = Body { seed: None, response_format: false, logprobs: true, top_logprobs: Some(5), ..b };
        let v: Value = serde_json::to_value(&b).unwrap();
        assert!(v.get("response_format").is_none() && v.get("seed").is_none());
        assert_eq!((v["logprobs"].as_bool(), v["top_logprobs"].as_u64()), (Some(true), Some(5)));
    }
}
