//! `tripletgen bench llm`: the LLM client's own overhead.
//!
//! Two comparisons, each between tripletgen's [`Client::run_blocking`] and a plain load generator
//! (one shared `reqwest::Client`, `concurrency` tasks each taking the next prompt from a shared
//! counter, the JSON body read with `serde_json::Value`) sending the same prompts with the same
//! `model`, `temperature`, `max_tokens` and `seed`:
//!
//! * **instant**: a hand-rolled HTTP/1.1 keep-alive server started in this process on
//!   127.0.0.1:0, on its own thread and tokio runtime, answering every request at once with a fixed
//!   chat-completions body (with `usage`). It measures how many requests per second the client can
//!   drive at all (target: [`TARGET_INSTANT_RPS`]), so it is never the bottleneck.
//! * **llama.cpp** (optional): the real `llama-server` started with `scripts/llama-server.sh`
//!   (SmolLM2-135M-Instruct, two slots), at the configured concurrency. Target: tripletgen's
//!   throughput within [`TARGET_LLAMA_GAP_PCT`] % of the plain generator's.
//!
//! Both clients have the same per-request timeout and run on a current-thread tokio runtime built
//! inside the timed section (that is what [`Client::run_blocking`] does), so only the client code
//! differs. Both are warmed up first, and the runs alternate (plain, tripletgen, tripletgen, plain, …: the order flips every round) so a
//! steady drift of a shared machine's speed cancels; a ratio is total requests over total seconds of
//! all rounds of one client, divided by the other's. Against llama.cpp (temperature 0, seed 42) both
//! clients should get the same completion tokens; the summary says whether they did.

use super::servers::{InstantServer, LlamaServer};
use crate::llm::{ChatRequest, Client, LlmConfig};
use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Target: requests per second tripletgen's client sustains against a server that answers at once.
pub const TARGET_INSTANT_RPS: f64 = 2000.0;
/// Target: tripletgen's throughput against llama.cpp at most this much below the plain generator's
/// (percent).
pub const TARGET_LLAMA_GAP_PCT: f64 = 5.0;

/// `target` of the in-process server that answers at once.
pub const TARGET_INSTANT: &str = "instant";
/// `target` of the real llama.cpp server.
pub const TARGET_LLAMA: &str = "llama.cpp";
/// `client` of tripletgen's [`Client`].
pub const CLIENT_TRIPLETGEN: &str = "tripletgen";
/// `client` of the plain load generator.
pub const CLIENT_PLAIN: &str = "plain";

/// The model alias `scripts/llama-server.sh` gives the server.
const LLAMA_MODEL: &str = "smollm2-135m-instruct";
/// Per-request timeout of both clients (generous: a busy 2-core machine).
const TIMEOUT_SECS: f64 = 180.0;

/// What to run (see [`run_with`]; [`run`] uses the defaults for everything but the llama.cpp load).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LlmBenchOptions {
    /// Requests per timed run against the instant server.
    pub instant_requests: usize,
    /// Requests in flight against the instant server.
    pub instant_concurrency: usize,
    /// Untimed requests per client before the instant runs.
    pub instant_warmup: usize,
    /// Also compare against the real llama.cpp server.
    pub llama: bool,
    /// Requests per timed run against llama.cpp.
    pub llama_requests: usize,
    /// Requests in flight against llama.cpp (the server has 2 slots).
    pub llama_concurrency: usize,
    /// `max_tokens` of every llama.cpp request.
    pub llama_max_tokens: u32,
    /// Untimed requests per client before the llama.cpp runs.
    pub llama_warmup: usize,
    /// Timed runs per client and target; the order of the two clients flips every round.
    pub rounds: usize,
    /// Print the table on stderr (when the caller prints JSON on stdout).
    pub table_to_stderr: bool,
}

impl Default for LlmBenchOptions {
    fn default() -> Self {
        Self {
            instant_requests: 20_000,
            instant_concurrency: 32,
            instant_warmup: 2_000,
            llama: false,
            llama_requests: 40,
            llama_concurrency: 2,
            llama_max_tokens: 16,
            llama_warmup: 4,
            rounds: 4,
            table_to_stderr: false,
        }
    }
}

/// One timed run of one client against one server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LlmBenchResult {
    /// [`TARGET_INSTANT`] or [`TARGET_LLAMA`].
    pub target: String,
    /// [`CLIENT_TRIPLETGEN`] or [`CLIENT_PLAIN`].
    pub client: String,
    /// 1-based round (plain runs first in odd rounds, tripletgen in even ones).
    pub round: usize,
    /// Requests sent.
    pub requests: usize,
    /// Of those, requests that did not give an answer with content.
    pub failed: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Wall time of the run.
    pub seconds: f64,
    /// `requests / seconds`.
    pub requests_per_sec: f64,
    /// Completion tokens the server reported (llama.cpp only).
    pub completion_tokens: Option<u64>,
    /// `completion_tokens / seconds` (llama.cpp only).
    pub completion_tokens_per_sec: Option<f64>,
}

/// Run the benchmark with the default instant-server load (20,000 requests, 32 in flight, 4 rounds)
/// and, when `llama` is true, `requests` requests per run with `concurrency` in flight against the
/// real llama.cpp server (4 rounds, `max_tokens` 16, temperature 0, seed 42). Prints the table and
/// the verdicts to stdout; returns every timed run. Call it from synchronous code (it builds its own
/// runtimes).
pub fn run(requests: usize, concurrency: usize, llama: bool, json: bool) -> Result<Vec<LlmBenchResult>> {
    run_with(&LlmBenchOptions {
        llama,
        table_to_stderr: json,
        llama_requests: requests,
        llama_concurrency: concurrency,
        ..LlmBenchOptions::default()
    })
}

/// Run the benchmark as `opts` says; prints the table and the verdicts to stdout and returns every
/// timed run.
pub fn run_with(opts: &LlmBenchOptions) -> Result<Vec<LlmBenchResult>> {
    if opts.instant_requests == 0 || opts.instant_concurrency == 0 || opts.rounds == 0 {
        bail!("bench llm: requests, concurrency and rounds must be at least 1");
    }
    if opts.llama && (opts.llama_requests == 0 || opts.llama_concurrency == 0) {
        bail!("bench llm: llama.cpp requests and concurrency must be at least 1");
    }
    if tokio::runtime::Handle::try_current().is_ok() {
        bail!("bench llm: run it from synchronous code, not from inside an async runtime");
    }
    let mut results = Vec::new();

    // --- instant server ----------------------------------------------------------------------------
    {
        let server = InstantServer::start().context("cannot start the in-process instant server")?;
        let load = Load {
            target: TARGET_INSTANT,
            base_url: server.base_url(),
            model: "instant".into(),
            concurrency: opts.instant_concurrency,
            max_tokens: 16,
            temperature: 0.0,
            seed: 42,
        };
        log::info!(
            "bench llm: instant server on {}: {} requests x {} rounds per client, {} in flight",
            server.base_url(),
            opts.instant_requests,
            opts.rounds,
            opts.instant_concurrency
        );
        let warmup = prompts(opts.instant_warmup, 1_000_000);
        load.plain(&warmup, 0)?;
        load.tripletgen(&warmup, 0)?;
        let ps = prompts(opts.instant_requests, 0);
        for round in 1..=opts.rounds {
            results.extend(load.round(&ps, round)?);
        }
    }

    // --- llama.cpp ---------------------------------------------------------------------------------
    if opts.llama {
        log::info!("bench llm: starting llama-server ({} start)", super::servers::llama_script().display());
        let server = LlamaServer::start(true)?;
        let load = Load {
            target: TARGET_LLAMA,
            base_url: server.base_url(),
            model: LLAMA_MODEL.into(),
            concurrency: opts.llama_concurrency,
            max_tokens: opts.llama_max_tokens,
            temperature: 0.0,
            seed: 42,
        };
        log::info!(
            "bench llm: llama-server pid {} on port {}: {} requests x {} rounds per client, {} in flight, max_tokens {}",
            server.pid(),
            server.port(),
            opts.llama_requests,
            opts.rounds,
            opts.llama_concurrency,
            opts.llama_max_tokens
        );
        let warmup = prompts(opts.llama_warmup, 1_000_000);
        if !warmup.is_empty() {
            load.plain(&warmup, 0)?;
            load.tripletgen(&warmup, 0)?;
        }
        let ps = prompts(opts.llama_requests, 0);
        for round in 1..=opts.rounds {
            results.extend(load.round(&ps, round)?);
        }
        drop(server);
    }

    // The table is the answer unless JSON was asked for (then the JSON is, and the table is for people).
    if opts.table_to_stderr {
        eprint!("{}", table(&results));
    } else {
        print!("{}", table(&results));
    }
    Ok(results)
}

/// Throughput of tripletgen over the plain generator against `target` (total requests over total
/// seconds of every round of each), if both ran.
pub fn throughput_ratio(results: &[LlmBenchResult], target: &str) -> Option<f64> {
    let tg = aggregate_rps(results, target, CLIENT_TRIPLETGEN)?;
    let plain = aggregate_rps(results, target, CLIENT_PLAIN)?;
    (plain > 0.0).then(|| tg / plain)
}

/// Total requests over total seconds of `client`'s runs against `target`.
pub fn aggregate_rps(results: &[LlmBenchResult], target: &str, client: &str) -> Option<f64> {
    let (n, s) = results
        .iter()
        .filter(|r| r.target == target && r.client == client)
        .fold((0usize, 0.0f64), |(n, s), r| (n + r.requests, s + r.seconds));
    (s > 0.0).then(|| n as f64 / s)
}

/// The result table and the verdicts, as printed by [`run_with`].
pub fn table(results: &[LlmBenchResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:<10} {:>5} {:>8} {:>6} {:>5} {:>9} {:>10} {:>10}",
        "target", "client", "round", "requests", "failed", "conc", "seconds", "req/s", "tokens/s"
    );
    for r in results {
        let _ = writeln!(
            out,
            "{:<10} {:<10} {:>5} {:>8} {:>6} {:>5} {:>9.3} {:>10.1} {:>10}",
            r.target,
            r.client,
            r.round,
            r.requests,
            r.failed,
            r.concurrency,
            r.seconds,
            r.requests_per_sec,
            r.completion_tokens_per_sec.map(|t| format!("{t:.1}")).unwrap_or_else(|| "-".into())
        );
    }
    for target in [TARGET_INSTANT, TARGET_LLAMA] {
        let (Some(tg), Some(plain)) =
            (aggregate_rps(results, target, CLIENT_TRIPLETGEN), aggregate_rps(results, target, CLIENT_PLAIN))
        else {
            continue;
        };
        let ratio = tg / plain;
        let failed: usize = results.iter().filter(|r| r.target == target).map(|r| r.failed).sum();
        let verdict = if target == TARGET_INSTANT {
            format!(
                "target >= {TARGET_INSTANT_RPS:.0} req/s: {}",
                if tg >= TARGET_INSTANT_RPS { "met" } else { "MISSED" }
            )
        } else {
            format!(
                "target: within {TARGET_LLAMA_GAP_PCT:.0}% of plain: {}",
                if ratio >= 1.0 - TARGET_LLAMA_GAP_PCT / 100.0 { "met" } else { "MISSED" }
            )
        };
        // Same prompts, temperature 0 and seed: both clients should have made the server generate
        // the same number of tokens (if not, the comparison is not like for like).
        let tokens = |client: &str| -> Vec<u64> {
            results
                .iter()
                .filter(|r| r.target == target && r.client == client)
                .filter_map(|r| r.completion_tokens)
                .collect()
        };
        let (tg_tokens, plain_tokens) = (tokens(CLIENT_TRIPLETGEN), tokens(CLIENT_PLAIN));
        let tokens_note = if tg_tokens.is_empty() {
            String::new()
        } else if tg_tokens == plain_tokens {
            format!("; same completion tokens per run ({})", join(&tg_tokens))
        } else {
            format!("; completion tokens DIFFER (plain {}, tripletgen {})", join(&plain_tokens), join(&tg_tokens))
        };
        let _ = writeln!(
            out,
            "{target}: tripletgen {tg:.1} req/s, plain {plain:.1} req/s, ratio tripletgen/plain {ratio:.3} ({verdict}){}{tokens_note}",
            if failed > 0 { format!("; {failed} requests FAILED") } else { String::new() }
        );
    }
    out
}

fn join(xs: &[u64]) -> String {
    xs.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}

/// `n` distinct short prompts (`offset` keeps warm-up prompts apart from the timed ones).
fn prompts(n: usize, offset: usize) -> Arc<Vec<String>> {
    const TOPICS: [&str; 12] = [
        "planets",
        "bread baking",
        "train travel",
        "old cameras",
        "football tactics",
        "climate",
        "gardening",
        "jazz history",
        "chess openings",
        "volcanoes",
        "coffee",
        "bicycles",
    ];
    Arc::new(
        (offset..offset + n)
            .map(|i| format!("Write one short search query about {} (#{i}).", TOPICS[i % TOPICS.len()]))
            .collect(),
    )
}

/// The common settings of both clients against one server.
struct Load {
    target: &'static str,
    base_url: String,
    model: String,
    concurrency: usize,
    max_tokens: u32,
    temperature: f64,
    seed: u64,
}

/// What one timed run saw.
struct Tally {
    ok: usize,
    failed: usize,
    completion_tokens: u64,
    first_error: Option<String>,
}

impl Load {
    /// Both clients on the same prompts: plain first in odd rounds, tripletgen first in even ones
    /// (plain, tripletgen, tripletgen, plain, …), so a steady drift of the machine's speed cancels
    /// over two rounds instead of favouring whichever client runs later.
    fn round(&self, prompts: &Arc<Vec<String>>, round: usize) -> Result<[LlmBenchResult; 2]> {
        Ok(if round % 2 == 1 {
            let plain = self.plain(prompts, round)?;
            [plain, self.tripletgen(prompts, round)?]
        } else {
            let tg = self.tripletgen(prompts, round)?;
            [self.plain(prompts, round)?, tg]
        })
    }

    fn result(&self, client: &str, round: usize, requests: usize, secs: f64, t: Tally) -> LlmBenchResult {
        if let Some(e) = &t.first_error {
            log::warn!(
                "bench llm: {} against {}: {} of {requests} requests failed; first: {e}",
                client,
                self.target,
                t.failed
            );
        }
        debug_assert_eq!(t.ok + t.failed, requests);
        let llama = self.target == TARGET_LLAMA;
        let secs = secs.max(1e-9);
        LlmBenchResult {
            target: self.target.into(),
            client: client.into(),
            round,
            requests,
            failed: t.failed,
            concurrency: self.concurrency,
            seconds: secs,
            requests_per_sec: requests as f64 / secs,
            completion_tokens: llama.then_some(t.completion_tokens),
            completion_tokens_per_sec: llama.then(|| t.completion_tokens as f64 / secs),
        }
    }

    /// tripletgen's path: [`Client::run_blocking`] over every prompt, timed as a whole.
    fn tripletgen(&self, prompts: &[String], round: usize) -> Result<LlmBenchResult> {
        let cfg = LlmConfig {
            base_url: self.base_url.clone(),
            model: self.model.clone(),
            concurrency: self.concurrency,
            max_retries: 0,
            timeout_secs: TIMEOUT_SECS,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            seed: Some(self.seed),
            ..LlmConfig::default()
        };
        let client = Client::new(&cfg).context("cannot build tripletgen's LLM client")?;
        let items: Vec<(usize, ChatRequest)> =
            prompts.iter().enumerate().map(|(i, p)| (i, ChatRequest::user(p.clone()))).collect();
        let mut t = Tally { ok: 0, failed: 0, completion_tokens: 0, first_error: None };
        let start = Instant::now();
        let summary = client
            .run_blocking(items, |_, r| {
                match r {
                    Ok(resp) => {
                        t.ok += 1;
                        t.completion_tokens += resp.completion_tokens;
                    }
                    Err(e) => {
                        t.failed += 1;
                        t.first_error.get_or_insert_with(|| e.to_string());
                    }
                }
                ControlFlow::Continue(())
            })
            .map_err(|e| anyhow!("{e}"))?;
        let secs = start.elapsed().as_secs_f64();
        if summary.not_started > 0 {
            bail!(
                "bench llm: tripletgen's run against {} stopped early ({}): {} requests not sent",
                self.target,
                summary.stopped_by.unwrap_or_default(),
                summary.not_started
            );
        }
        Ok(self.result(CLIENT_TRIPLETGEN, round, prompts.len(), secs, t))
    }

    /// The plain load generator: one shared `reqwest::Client`, `concurrency` tasks on a
    /// current-thread runtime, each taking the next prompt from a shared counter.
    fn plain(&self, prompts: &Arc<Vec<String>>, round: usize) -> Result<LlmBenchResult> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(TIMEOUT_SECS))
            .build()
            .context("cannot build the plain reqwest client")?;
        let url = format!("{}/chat/completions", self.base_url);
        let start = Instant::now();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let t = rt.block_on(async {
            let next = Arc::new(AtomicUsize::new(0));
            let tasks: Vec<_> = (0..self.concurrency)
                .map(|_| {
                    let (http, url, prompts, next) = (http.clone(), url.clone(), prompts.clone(), next.clone());
                    let (model, temperature, max_tokens, seed) =
                        (self.model.clone(), self.temperature, self.max_tokens, self.seed);
                    tokio::spawn(async move {
                        let mut t = Tally { ok: 0, failed: 0, completion_tokens: 0, first_error: None };
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(prompt) = prompts.get(i) else { break };
                            let body = json!({
                                "model": model,
                                "messages": [{"role": "user", "content": prompt}],
                                "temperature": temperature,
                                "max_tokens": max_tokens,
                                "seed": seed,
                            });
                            match plain_request(&http, &url, &body).await {
                                Ok(tokens) => {
                                    t.ok += 1;
                                    t.completion_tokens += tokens;
                                }
                                Err(e) => {
                                    t.failed += 1;
                                    t.first_error.get_or_insert(e);
                                }
                            }
                        }
                        t
                    })
                })
                .collect();
            let mut all = Tally { ok: 0, failed: 0, completion_tokens: 0, first_error: None };
            for task in tasks {
                let t = task.await.expect("a plain load task panicked");
                all.ok += t.ok;
                all.failed += t.failed;
                all.completion_tokens += t.completion_tokens;
                if all.first_error.is_none() {
                    all.first_error = t.first_error;
                }
            }
            all
        });
        drop(rt);
        let secs = start.elapsed().as_secs_f64();
        Ok(self.result(CLIENT_PLAIN, round, prompts.len(), secs, t))
    }
}

/// One plain POST: the completion tokens of an answer with content.
async fn plain_request(http: &reqwest::Client, url: &str, body: &Value) -> Result<u64, String> {
    let resp = http.post(url).json(body).send().await.map_err(|e| e.to_string())?;
    let resp = resp.error_for_status().map_err(|e| e.to_string())?;
    let v: Value = resp.json().await.map_err(|e| e.to_string())?;
    match v["choices"][0]["message"]["content"].as_str() {
        Some(_) => Ok(v["usage"]["completion_tokens"].as_u64().unwrap_or(0)),
        None => Err(format!("no choices[0].message.content in {v}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instant_server_answers_through_the_client() {
        let server = InstantServer::start().unwrap();
        let cfg = LlmConfig {
            base_url: server.base_url(),
            model: "instant".into(),
            concurrency: 2,
            max_retries: 0,
            ..LlmConfig::default()
        };
        let client = Client::new(&cfg).unwrap();
        for _ in 0..2 {
            // Twice: the second request reuses the kept-alive connection.
            let r = client.chat_blocking(&ChatRequest::user("hello")).unwrap();
            assert_eq!(r.content, "a short search query");
            assert!(!r.usage_estimated);
            assert_eq!((r.prompt_tokens, r.completion_tokens), (12, 4));
            assert_eq!(r.finish_reason.as_deref(), Some("stop"));
        }
        let items: Vec<(usize, ChatRequest)> = (0..50).map(|i| (i, ChatRequest::user(format!("q{i}")))).collect();
        let mut ok = 0;
        let summary = client
            .run_blocking(items, |_, r| {
                ok += usize::from(r.is_ok());
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!((ok, summary.delivered), (50, 50));
    }

    #[test]
    fn ratio_aggregates_rounds() {
        let row = |client: &str, requests, seconds: f64| LlmBenchResult {
            target: TARGET_LLAMA.into(),
            client: client.into(),
            round: 1,
            requests,
            failed: 0,
            concurrency: 2,
            seconds,
            requests_per_sec: requests as f64 / seconds,
            completion_tokens: None,
            completion_tokens_per_sec: None,
        };
        let rs = vec![row(CLIENT_PLAIN, 10, 1.0), row(CLIENT_TRIPLETGEN, 10, 2.0), row(CLIENT_PLAIN, 10, 3.0)];
        assert_eq!(aggregate_rps(&rs, TARGET_LLAMA, CLIENT_PLAIN), Some(5.0));
        assert_eq!(throughput_ratio(&rs, TARGET_LLAMA), Some(1.0));
        assert_eq!(throughput_ratio(&rs, TARGET_INSTANT), None);
        assert!(table(&rs).contains("ratio tripletgen/plain 1.000"));
    }
}
