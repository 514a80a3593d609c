//! `tripletgen bench bm25`: the BM25 retriever's index build, refresh and query rate on generated
//! documents, next to exact dense search of the same number of queries over as many 384-d vectors
//! (the baseline measured in the same run).

use super::synth::{ClusterModel, Vocabulary, generate_documents};
use crate::hash::ContentHash;
use crate::index::bm25::Bm25;
use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// Options of the BM25 benchmark.
#[derive(Debug, Args, Clone)]
pub struct Bm25BenchArgs {
    /// Generated documents.
    #[arg(long, default_value_t = 100_000)]
    pub n: usize,
    /// Queries (the first 4 to 10 words of other generated documents).
    #[arg(long, default_value_t = 10_000)]
    pub queries: usize,
    /// Candidates per query.
    #[arg(long, default_value_t = 50)]
    pub k: usize,
    /// Share of documents replaced before the refresh.
    #[arg(long, default_value_t = 0.01)]
    pub change: f64,
}

/// The results.
#[derive(Debug, Clone, Serialize)]
pub struct Bm25Report {
    /// Documents indexed.
    pub documents: usize,
    /// Queries searched.
    pub queries: usize,
    /// Candidates per query.
    pub k: usize,
    /// Seconds to build the index from nothing.
    pub build_seconds: f64,
    /// Seconds to refresh it after `change` of the documents were replaced.
    pub refresh_seconds: f64,
    /// Documents added and deleted by the refresh.
    pub refresh_added: usize,
    /// Documents deleted by the refresh.
    pub refresh_deleted: usize,
    /// Size of the index folder in bytes.
    pub index_bytes: u64,
    /// BM25 queries per second (all cores).
    pub bm25_queries_per_sec: f64,
    /// Exact dense search queries per second over as many 384-d vectors (all cores).
    pub dense_queries_per_sec: f64,
}

fn folder_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |it| it.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
}

/// Run the benchmark.
pub fn run(a: &Bm25BenchArgs, seed: u64, json: bool) -> Result<Bm25Report> {
    if a.n == 0 || a.queries == 0 || a.k == 0 || !(0.0..=1.0).contains(&a.change) {
        bail!("--n, --queries and --k must be at least 1, --change within 0..1");
    }
    let vocab =
        Vocabulary::from_corpus(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/quickstart/corpus.jsonl"));
    let mut docs = generate_documents(&vocab, a.n + a.queries, seed);
    let queries: Vec<String> = docs
        .split_off(a.n)
        .into_iter()
        .enumerate()
        .map(|(i, d)| d.split_whitespace().take(4 + i % 7).collect::<Vec<_>>().join(" "))
        .collect();
    let tmp = tempfile::tempdir().context("temporary folder")?;
    let dir = tmp.path().join("bm25");
    let keyed = |docs: &[String]| -> Vec<(String, ContentHash)> {
        docs.iter().map(|d| (d.clone(), ContentHash::of(d))).collect()
    };
    let owned = keyed(&docs);
    let refs: Vec<(&str, ContentHash)> = owned.iter().map(|(t, h)| (t.as_str(), *h)).collect();
    let t = Instant::now();
    let mut bm = Bm25::refresh(&dir, &refs)?;
    let build_seconds = t.elapsed().as_secs_f64();
    let q: Vec<&str> = queries.iter().map(String::as_str).collect();
    let t = Instant::now();
    let hits = bm.search_batch(&q, a.k)?;
    let bm25_seconds = t.elapsed().as_secs_f64();
    if hits.iter().all(Vec::is_empty) {
        bail!("BM25 found nothing: the generated queries share no word with the documents");
    }
    drop(bm);

    let changed = ((a.n as f64 * a.change).round() as usize).min(a.n);
    let fresh = generate_documents(&vocab, changed, seed ^ 0x5eed);
    docs.splice(0..changed, fresh);
    let owned = keyed(&docs);
    let refs: Vec<(&str, ContentHash)> = owned.iter().map(|(t, h)| (t.as_str(), *h)).collect();
    let t = Instant::now();
    let bm = Bm25::refresh(&dir, &refs)?;
    let refresh_seconds = t.elapsed().as_secs_f64();

    let model = ClusterModel::new(384, 100, seed);
    let (dv, qv) = (model.sample(a.n, seed.wrapping_add(1)), model.sample(a.queries, seed.wrapping_add(2)));
    let t = Instant::now();
    let dense = crate::index::exact_search(&dv, &qv, a.k);
    let dense_seconds = t.elapsed().as_secs_f64();
    std::hint::black_box(dense);

    let r = Bm25Report {
        documents: a.n,
        queries: a.queries,
        k: a.k,
        build_seconds,
        refresh_seconds,
        refresh_added: bm.stats.added,
        refresh_deleted: bm.stats.deleted,
        index_bytes: folder_bytes(&dir),
        bm25_queries_per_sec: a.queries as f64 / bm25_seconds,
        dense_queries_per_sec: a.queries as f64 / dense_seconds,
    };
    let m = super::machine::machine();
    let text = format!(
        "bm25 over {} generated documents ({} build, {} cores, load {})\n  build     {:.2}s ({:.0} documents/s), index {:.1} MB\n  refresh   {:.2}s after replacing {:.1}% ({} added, {} deleted): {:.3}x the build\n  search    {} queries, k = {}: {:.0} queries/s; exact dense search over 384-d vectors {:.0} queries/s (BM25 = {:.2}x dense)\n",
        a.n,
        m.build,
        m.cores,
        m.load_average,
        r.build_seconds,
        a.n as f64 / r.build_seconds,
        r.index_bytes as f64 / 1e6,
        r.refresh_seconds,
        a.change * 100.0,
        r.refresh_added,
        r.refresh_deleted,
        r.refresh_seconds / r.build_seconds,
        a.queries,
        a.k,
        r.bm25_queries_per_sec,
        r.dense_queries_per_sec,
        r.bm25_queries_per_sec / r.dense_queries_per_sec
    );
    if json {
        eprint!("{text}");
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{text}");
    }
    Ok(r)
}
