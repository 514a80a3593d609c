//! `tripletgen bench remote-embed`: the remote-embedding client against in-process servers that
//! answer at once (the client alone: vectors/s next to a plain load generator sending the same
//! requests), and against servers that are the bottleneck (one request at a time, a fixed service
//! time each: one endpoint against two).

use super::servers::InstantServer;
use crate::config::llm::EndpointConfig;
use crate::config::{ModelConfig, Provider};
use crate::embed::remote::RemoteEmbedder;
use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Options of the remote-embedding benchmark.
#[derive(Debug, Args, Clone)]
pub struct RemoteBenchArgs {
    /// Requests per round.
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
    /// Texts per request.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Vector dimension of the answers.
    #[arg(long, default_value_t = 384)]
    pub dim: usize,
    /// Requests in flight (per endpoint).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Rounds (alternating the clients).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Service time of one request on a bottleneck server, in milliseconds.
    #[arg(long, default_value_t = 10)]
    pub service_ms: u64,
    /// Requests per round against the bottleneck servers.
    #[arg(long, default_value_t = 200)]
    pub bottleneck_requests: usize,
}

/// What the benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteBenchReport {
    /// Vectors per second of the plain load generator, per round.
    pub plain_vectors_per_sec: Vec<f64>,
    /// Vectors per second of tripletgen's client, per round.
    pub tripletgen_vectors_per_sec: Vec<f64>,
    /// tripletgen's overhead: median plain rate / median tripletgen rate - 1.
    pub overhead: f64,
    /// Bottleneck servers: vectors per second with one endpoint, per round.
    pub one_endpoint_vectors_per_sec: Vec<f64>,
    /// Bottleneck servers: vectors per second with two endpoints, per round.
    pub two_endpoints_vectors_per_sec: Vec<f64>,
    /// Median two / median one.
    pub two_over_one: f64,
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// An OpenAI embeddings answer with `n` vectors of `dim` numbers.
fn answer(n: usize, dim: usize) -> String {
    let data: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let v: Vec<f32> = (0..dim).map(|j| ((i * 31 + j * 7) % 97) as f32 / 97.0 - 0.5).collect();
            serde_json::json!({"object": "embedding", "index": i, "embedding": v})
        })
        .collect();
    serde_json::json!({"object": "list", "data": data, "model": "bench", "usage": {"prompt_tokens": n * 12}})
        .to_string()
}

fn texts(requests: usize, batch: usize) -> Vec<Vec<String>> {
    (0..requests)
        .map(|r| (0..batch).map(|i| format!("benchmark text {r} {i} about retrieval and negatives")).collect())
        .collect()
}

/// tripletgen's client over `urls`: vectors per second.
fn tripletgen(urls: &[String], concurrency: usize, batches: &[Vec<String>]) -> Result<f64> {
    let mut cfg = ModelConfig {
        provider: Provider::Openai,
        name: "bench".into(),
        concurrency: Some(concurrency),
        max_retries: Some(0),
        ..ModelConfig::default()
    };
    if urls.len() == 1 {
        cfg.base_url = Some(urls[0].clone());
    } else {
        cfg.endpoints = urls
            .iter()
            .map(|u| EndpointConfig {
                base_url: u.clone(),
                concurrency: None,
                requests_per_minute: None,
                tokens_per_minute: None,
            })
            .collect();
    }
    let r = RemoteEmbedder::new(&cfg)?;
    let refs: Vec<Vec<&str>> = batches.iter().map(|b| b.iter().map(String::as_str).collect()).collect();
    let mut vectors = 0usize;
    let t = Instant::now();
    r.embed_batches(&refs, |_, out| {
        vectors += out.vectors.len();
        Ok(())
    })?;
    Ok(vectors as f64 / t.elapsed().as_secs_f64())
}

/// A plain load generator: the same requests with reqwest, `concurrency` in flight, each answer
/// parsed into vectors of f32 (as tripletgen does) but nothing checked, limited or retried.
fn plain(url: &str, concurrency: usize, batches: &[Vec<String>]) -> Result<f64> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;
    let url = format!("{url}/embeddings");
    let t = Instant::now();
    let vectors = rt.block_on(async {
        use futures_util::StreamExt;
        let mut s = futures_util::stream::iter(batches.iter().map(|b| {
            let http = &http;
            let url = &url;
            async move {
                let body =
                    serde_json::to_vec(&serde_json::json!({"model": "bench", "input": b, "encoding_format": "float"}))
                        .expect("JSON");
                let bytes =
                    http.post(url).header("content-type", "application/json").body(body).send().await?.bytes().await?;
                #[derive(serde::Deserialize)]
                struct Item {
                    embedding: Vec<f32>,
                }
                #[derive(serde::Deserialize)]
                struct Answer {
                    data: Vec<Item>,
                }
                let v: Answer = serde_json::from_slice(&bytes).unwrap_or(Answer { data: Vec::new() });
                Ok::<usize, reqwest::Error>(v.data.iter().filter(|d| !d.embedding.is_empty()).count())
            }
        }))
        .buffer_unordered(concurrency);
        let mut n = 0usize;
        while let Some(r) = s.next().await {
            n += r?;
        }
        Ok::<usize, reqwest::Error>(n)
    })?;
    Ok(vectors as f64 / t.elapsed().as_secs_f64())
}

/// Run the benchmark; prints a table (to stderr with `json`, which prints the report on stdout).
pub fn run(a: &RemoteBenchArgs, json: bool) -> Result<RemoteBenchReport> {
    if a.requests == 0 || a.batch_size == 0 || a.dim == 0 || a.concurrency == 0 || a.rounds == 0 {
        bail!("bench remote-embed: every count must be at least 1");
    }
    let body = answer(a.batch_size, a.dim);
    let batches = texts(a.requests, a.batch_size);
    let instant = InstantServer::start_with(&body, None).context("cannot start the instant server")?;
    let url = instant.base_url();
    // Warm-up: connections, allocator.
    let warm = &batches[..batches.len().min(100)];
    plain(&url, a.concurrency, warm)?;
    tripletgen(std::slice::from_ref(&url), a.concurrency, warm)?;
    let (mut p, mut t) = (Vec::new(), Vec::new());
    for _ in 0..a.rounds {
        p.push(plain(&url, a.concurrency, &batches)?);
        t.push(tripletgen(std::slice::from_ref(&url), a.concurrency, &batches)?);
    }
    drop(instant);

    let service = Some(Duration::from_millis(a.service_ms));
    let s1 = InstantServer::start_with(&body, service)?;
    let s2 = InstantServer::start_with(&body, service)?;
    let few = texts(a.bottleneck_requests, a.batch_size);
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for _ in 0..a.rounds {
        one.push(tripletgen(&[s1.base_url()], a.concurrency, &few)?);
        two.push(tripletgen(&[s1.base_url(), s2.base_url()], a.concurrency, &few)?);
    }
    let report = RemoteBenchReport {
        overhead: median(&p) / median(&t) - 1.0,
        two_over_one: median(&two) / median(&one),
        plain_vectors_per_sec: p,
        tripletgen_vectors_per_sec: t,
        one_endpoint_vectors_per_sec: one,
        two_endpoints_vectors_per_sec: two,
    };
    let fmt = |xs: &[f64]| xs.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", ");
    let text = format!(
        "remote embedding client ({} requests x {} texts, {}-d, {} in flight per endpoint, {} rounds)\n\
         \x20 instant server    plain load generator  {:>9.0} vectors/s (rounds: {})\n\
         \x20                   tripletgen            {:>9.0} vectors/s (rounds: {})\n\
         \x20                   overhead              {:>+8.1}%   (target: within 5%)\n\
         \x20 bottleneck ({} ms per request, one at a time, {} requests)\n\
         \x20                   one endpoint          {:>9.0} vectors/s (rounds: {})\n\
         \x20                   two endpoints         {:>9.0} vectors/s (rounds: {})\n\
         \x20                   two / one             {:>9.2}x  (target: near 2x)\n",
        a.requests,
        a.batch_size,
        a.dim,
        a.concurrency,
        a.rounds,
        median(&report.plain_vectors_per_sec),
        fmt(&report.plain_vectors_per_sec),
        median(&report.tripletgen_vectors_per_sec),
        fmt(&report.tripletgen_vectors_per_sec),
        100.0 * report.overhead,
        a.service_ms,
        a.bottleneck_requests,
        median(&report.one_endpoint_vectors_per_sec),
        fmt(&report.one_endpoint_vectors_per_sec),
        median(&report.two_endpoints_vectors_per_sec),
        fmt(&report.two_endpoints_vectors_per_sec),
        report.two_over_one,
    );
    if json {
        eprint!("{text}");
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{text}");
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_clients_count_every_vector() {
        let a = RemoteBenchArgs {
            requests: 20,
            batch_size: 4,
            dim: 8,
            concurrency: 2,
            rounds: 1,
            service_ms: 20,
            bottleneck_requests: 10,
        };
        let r = run(&a, true).unwrap();
        assert!(r.plain_vectors_per_sec[0] > 0.0 && r.tripletgen_vectors_per_sec[0] > 0.0, "{r:?}");
        assert!(r.one_endpoint_vectors_per_sec[0] > 0.0 && r.two_endpoints_vectors_per_sec[0] > 0.0, "{r:?}");
    }
}
