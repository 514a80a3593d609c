//! `tripletgen bench embed`: tripletgen's embedding path against raw ONNX Runtime on the same
//! length-sorted batches of a synthetic corpus, and the gain from length-sorted batching.

use super::EmbedBenchArgs;
use super::machine::cpu_seconds;
use super::synth::{Vocabulary, generate_documents};
use crate::config::Config;
use crate::embed::{Embedder, ort_environment};
use crate::models::{self, ModelSource};
use crate::progress;
use crate::vectors::{Vectors, normalize};
use crate::workspace::Store;
use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Time and rates of one embedding run.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Texts per second.
    pub texts_per_s: f64,
    /// Tokens (after truncation, without padding) per second.
    pub tokens_per_s: f64,
    /// Fraction of the batch tensors' tokens that are real tokens (1 = no padding), when known.
    pub padding_efficiency: Option<f64>,
    /// CPU seconds this process used (all threads); cpu_seconds / seconds is the number of cores
    /// it kept busy (lower than the thread count when other processes compete for the cores).
    pub cpu_seconds: f64,
}

/// Result of the embedding benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct EmbedReport {
    /// Documents embedded.
    pub docs: usize,
    /// Texts per batch.
    pub batch_size: usize,
    /// Runs of (a) and (b); the fastest of each is reported.
    pub repeat: usize,
    /// Intra-op threads.
    pub threads: usize,
    /// Maximum tokens per text.
    pub max_length: usize,
    /// Where the words came from.
    pub vocabulary: String,
    /// Words per document: min, median, mean, 90th percentile, max.
    pub words: LengthSummary,
    /// Tokens of all documents after truncation (no padding).
    pub tokens: usize,
    /// Documents truncated to `max_length` tokens.
    pub truncated: usize,
    /// (a) tripletgen's path, length-sorted batches.
    pub tripletgen_sorted: Throughput,
    /// (b) raw ONNX Runtime on the same sorted batches.
    pub raw_onnxruntime: Throughput,
    /// (c) tripletgen's path, batches in input order.
    pub tripletgen_unsorted: Option<Throughput>,
    /// (a) time / (b) time − 1, in percent: how much slower tripletgen is than raw inference.
    pub overhead_pct: f64,
    /// (b) time / (a) time, in percent.
    pub raw_time_over_tripletgen_time_pct: f64,
    /// (c) time / (a) time: the speed-up of length-sorted batching.
    pub sort_speedup: Option<f64>,
    /// Agreement of (a) and (b) vectors.
    pub agreement: Agreement,
}

/// Word-count distribution of the synthetic documents.
#[derive(Debug, Clone, Serialize)]
pub struct LengthSummary {
    /// Shortest.
    pub min: usize,
    /// Median.
    pub median: usize,
    /// Mean.
    pub mean: f64,
    /// 90th percentile.
    pub p90: usize,
    /// Longest.
    pub max: usize,
}

/// Cosine similarity of tripletgen's and raw ONNX Runtime's vectors on a sample.
#[derive(Debug, Clone, Serialize)]
pub struct Agreement {
    /// Texts compared.
    pub sample: usize,
    /// Lowest cosine.
    pub min_cosine: f64,
    /// Mean cosine.
    pub mean_cosine: f64,
}
pub(super) fn validate_embed(a: &EmbedBenchArgs) -> Result<()> {
    if a.docs == 0 {
        bail!("--docs must be at least 1");
    }
    if a.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if a.max_length < 8 {
        bail!("--max-length must be at least 8");
    }
    if a.repeat == 0 {
        bail!("--repeat must be at least 1");
    }
    Ok(())
}

pub(super) fn summarize_lengths(docs: &[String]) -> LengthSummary {
    let mut w: Vec<usize> = docs.iter().map(|d| d.split_whitespace().count()).collect();
    w.sort_unstable();
    let at = |q: f64| w[((w.len() - 1) as f64 * q).round() as usize];
    LengthSummary {
        min: w[0],
        median: at(0.5),
        mean: w.iter().sum::<usize>() as f64 / w.len() as f64,
        p90: at(0.9),
        max: w[w.len() - 1],
    }
}

/// ONNX Runtime used directly: tokenizer.json + model.onnx, mean pooling, L2 normalisation.
struct RawOrt {
    session: ort::session::Session,
    tokenizer: tokenizers::Tokenizer,
    output: String,
    token_type_ids: bool,
}

/// One tokenized batch, row-major `[batch, len]`.
struct Encoded {
    ids: Vec<i64>,
    mask: Vec<i64>,
    types: Vec<i64>,
    batch: usize,
    len: usize,
}

/// One timed raw ONNX Runtime pass over the corpus.
struct RawRun {
    /// Vectors in input order.
    vectors: Vec<Vec<f32>>,
    /// Real tokens.
    tokens: usize,
    /// Tokens in the batch tensors, padding included.
    padded: usize,
    seconds: f64,
    cpu_seconds: f64,
}

fn ort_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("ONNX Runtime: {e}")
}

impl RawOrt {
    fn load(env: &ort::environment::Environment, dir: &Path, threads: usize, max_length: usize) -> Result<RawOrt> {
        use ort::session::builder::GraphOptimizationLevel;
        use tokenizers::{PaddingParams, PaddingStrategy, TruncationParams};
        let threads = if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { threads };
        let session = ort::session::Session::builder(env)
            .map_err(ort_err)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(ort_err)?
            .with_intra_threads(threads)
            .map_err(ort_err)?
            .commit_from_file(dir.join("model.onnx"))
            .map_err(ort_err)?;
        let output = session.outputs().first().map(|o| o.name().to_string()).context("model.onnx has no outputs")?;
        let token_type_ids = session.inputs().iter().any(|i| i.name() == "token_type_ids");

        // The same settings fastembed applies: padding to the batch's longest text, truncation to
        // min(max_length, model_max_length).
        let read_json = |name: &str| -> serde_json::Value {
            std::fs::read(dir.join(name)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
        };
        let tok_cfg = read_json("tokenizer_config.json");
        let model_max = tok_cfg["model_max_length"].as_f64().map_or(usize::MAX, |v| v as usize);
        let pad_token = tok_cfg["pad_token"]
            .as_str()
            .or_else(|| tok_cfg["pad_token"]["content"].as_str())
            .unwrap_or("[PAD]")
            .to_string();
        let mut tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| anyhow!("cannot load {}: {e}", dir.join("tokenizer.json").display()))?;
        let pad_id = read_json("config.json")["pad_token_id"]
            .as_u64()
            .map(|v| v as u32)
            .or_else(|| tokenizer.token_to_id(&pad_token))
            .unwrap_or(0);
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_id,
            pad_token,
            ..Default::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: max_length.min(model_max), ..Default::default() }))
            .map_err(|e| anyhow!("tokenizer truncation: {e}"))?;
        Ok(RawOrt { session, tokenizer, output, token_type_ids })
    }

    /// Tokenize one batch into padded `[batch, len]` tensors.
    fn encode(&self, texts: &[&str]) -> Result<Encoded> {
        let enc = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| anyhow!("tokenize: {e}"))?;
        let b = enc.len();
        let l = enc.first().map_or(0, |e| e.len());
        let (mut ids, mut mask, mut types) =
            (Vec::with_capacity(b * l), Vec::with_capacity(b * l), Vec::with_capacity(b * l));
        for e in &enc {
            ids.extend(e.get_ids().iter().map(|&x| x as i64));
            mask.extend(e.get_attention_mask().iter().map(|&x| x as i64));
            types.extend(e.get_type_ids().iter().map(|&x| x as i64));
        }
        Ok(Encoded { ids, mask, types, batch: b, len: l })
    }

    /// Embed one batch; also returns (real tokens, padded tokens).
    fn embed(&mut self, texts: &[&str]) -> Result<(Vec<Vec<f32>>, usize, usize)> {
        use ort::value::Tensor;
        let Encoded { ids, mask, types, batch: b, len: l } = self.encode(texts)?;
        let shape = vec![b as i64, l as i64];
        let mut inputs = ort::inputs![
            "input_ids" => Tensor::from_array((shape.clone(), ids)).map_err(ort_err)?,
            "attention_mask" => Tensor::from_array((shape.clone(), mask.clone())).map_err(ort_err)?,
        ];
        if self.token_type_ids {
            inputs.push(("token_type_ids".into(), Tensor::from_array((shape, types)).map_err(ort_err)?.into()));
        }
        let outputs = self.session.run(inputs).map_err(ort_err)?;
        let value = outputs.get(&self.output).with_context(|| format!("no output {}", self.output))?;
        let (oshape, data) = value.try_extract_tensor::<f32>().map_err(ort_err)?;
        if oshape.len() != 3 || oshape[0] as usize != b || oshape[1] as usize != l {
            bail!("unexpected output shape {:?} for a batch of {b} x {l}", &oshape[..]);
        }
        let d = oshape[2] as usize;
        let mut out = Vec::with_capacity(b);
        for i in 0..b {
            let mut v = vec![0f32; d];
            let mut count = 0f32;
            for t in 0..l {
                if mask[i * l + t] != 0 {
                    let row = &data[(i * l + t) * d..(i * l + t + 1) * d];
                    v.iter_mut().zip(row).for_each(|(a, x)| *a += x);
                    count += 1.0;
                }
            }
            let count = count.max(1e-9);
            v.iter_mut().for_each(|a| *a /= count);
            normalize(&mut v);
            out.push(v);
        }
        let real = mask.iter().filter(|&&m| m != 0).count();
        Ok((out, real, b * l))
    }
}

fn padding_efficiency(raw: &RawOrt, texts: &[&str], order: &[usize], batch: usize) -> Result<f64> {
    let (mut real, mut padded) = (0usize, 0usize);
    for chunk in order.chunks(batch) {
        let strs: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
        let enc = raw.encode(&strs)?;
        real += enc.mask.iter().filter(|&&m| m != 0).count();
        padded += enc.batch * enc.len;
    }
    Ok(real as f64 / padded.max(1) as f64)
}

fn throughput(seconds: f64, cpu_seconds: f64, texts: usize, tokens: usize, padding: Option<f64>) -> Throughput {
    let s = seconds.max(1e-9);
    Throughput {
        seconds,
        cpu_seconds,
        texts_per_s: texts as f64 / s,
        tokens_per_s: tokens as f64 / s,
        padding_efficiency: padding,
    }
}

/// Time tripletgen's cached path over `texts` into a fresh temporary workspace.
fn time_tripletgen(
    cfg: &Config,
    resolved: &models::Resolved,
    texts: &[&str],
    label: &str,
    show_progress: bool,
) -> Result<(Vectors, crate::embed::EmbedStats, f64, f64)> {
    let mut embedder = Embedder::load(resolved, cfg)?;
    let warm = &texts[..texts.len().min(cfg.embed.batch_size)];
    embedder.embed_batch(warm)?;
    let dir = tempfile::tempdir().context("cannot create a temporary workspace")?;
    let mut store = Store::open(dir.path())?;
    let (start, cpu) = (Instant::now(), cpu_seconds());
    let (vectors, stats) = embedder.embed_cached(&mut store, texts, "", label, show_progress)?;
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    if stats.embedded != texts.len() {
        bail!("expected {} texts embedded, got {} (cache hits in a fresh workspace?)", texts.len(), stats.embedded);
    }
    Ok((vectors, stats, seconds, cpu))
}

/// Time raw ONNX Runtime over `texts` in `order`, `batch` at a time.
fn time_raw(raw: &mut RawOrt, texts: &[&str], order: &[usize], batch: usize, show_progress: bool) -> Result<RawRun> {
    let pb = progress::bar(texts.len() as u64, "bench (b)", "texts", show_progress);
    let mut vectors: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
    let (mut real, mut padded) = (0usize, 0usize);
    let (start, cpu) = (Instant::now(), cpu_seconds());
    for chunk in order.chunks(batch) {
        let strs: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
        let (vs, r, p) = raw.embed(&strs)?;
        real += r;
        padded += p;
        for (&i, v) in chunk.iter().zip(vs) {
            vectors[i] = v;
        }
        pb.inc(chunk.len() as u64);
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    pb.finish_and_clear();
    Ok(RawRun { vectors, tokens: real, padded, seconds, cpu_seconds: cpu })
}

pub(super) fn run_embed(a: &EmbedBenchArgs, seed: u64, show_progress: bool) -> Result<EmbedReport> {
    let vocab_path = a
        .vocab_corpus
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/quickstart/corpus.jsonl"));
    let vocab = Vocabulary::from_corpus(&vocab_path);
    let docs = generate_documents(&vocab, a.docs, seed);
    let texts: Vec<&str> = docs.iter().map(String::as_str).collect();
    let words = summarize_lengths(&docs);
    log::info!(
        "embed: {} documents, {}-{} words (median {}, mean {:.0}, p90 {}), from {}",
        a.docs,
        words.min,
        words.max,
        words.median,
        words.mean,
        words.p90,
        vocab.source
    );

    let mut cfg = Config::default();
    cfg.embed.batch_size = a.batch_size;
    cfg.embed.batch_invariant = false; // like for like with the raw ONNX Runtime batches below
    cfg.embed.threads = a.threads;
    cfg.embed.sort_by_length = true;
    cfg.model.max_length = a.max_length;
    let resolved = models::resolve(&cfg.model)?;
    let ModelSource::Local { dir, .. } = &resolved.model else {
        bail!("the embedding benchmark compares against raw ONNX Runtime and needs a local model folder");
    };

    // (b)'s batches: embed_cached sorts by byte length, longest first, with a stable sort; the
    // documents are distinct, so nothing is deduplicated away.
    let env = ort_environment(&resolved.runtime)?;
    let mut raw = RawOrt::load(&env, dir, a.threads, a.max_length)?;
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(texts[i].len()));
    let first: Vec<&str> = order.iter().take(a.batch_size).map(|&i| texts[i]).collect();
    raw.embed(&first)?;

    // (a) and (b) alternate `repeat` times; the fastest run of each counts.
    let mut best_a: Option<(Vectors, crate::embed::EmbedStats, f64, f64)> = None;
    let mut best_b: Option<RawRun> = None;
    for rep in 1..=a.repeat {
        log::info!(
            "embed (a) {rep}/{}: tripletgen embed_cached, sorted by length, batch {}, {} threads",
            a.repeat,
            a.batch_size,
            a.threads
        );
        let run_a = time_tripletgen(&cfg, &resolved, &texts, "bench (a)", show_progress)?;
        log::info!("embed (a): {:.1} s", run_a.2);
        if best_a.as_ref().is_none_or(|b| run_a.2 < b.2) {
            best_a = Some(run_a);
        }
        log::info!("embed (b) {rep}/{}: raw ONNX Runtime on the same sorted batches", a.repeat);
        let run_b = time_raw(&mut raw, &texts, &order, a.batch_size, show_progress)?;
        log::info!("embed (b): {:.1} s", run_b.seconds);
        if best_b.as_ref().is_none_or(|b| run_b.seconds < b.seconds) {
            best_b = Some(run_b);
        }
    }
    let (Some((vec_a, stats_a, secs_a, cpu_a)), Some(run_b)) = (best_a, best_b) else {
        bail!("--repeat must be at least 1");
    };
    let RawRun { vectors: vec_b, tokens: tokens_b, padded: padded_b, seconds: secs_b, cpu_seconds: cpu_b } = run_b;
    if tokens_b != stats_a.tokens {
        log::warn!("token counts differ: tripletgen {} vs raw {}", stats_a.tokens, tokens_b);
    }

    // Agreement on an evenly spread sample.
    let sample = a.check_sample.clamp(1, texts.len());
    let cosines: Vec<f64> = (0..sample)
        .map(|s| {
            let i = s * texts.len() / sample;
            crate::vectors::dot(vec_a.row(i), &vec_b[i]) as f64
        })
        .collect();
    let agreement = Agreement {
        sample,
        min_cosine: cosines.iter().copied().fold(f64::INFINITY, f64::min),
        mean_cosine: cosines.iter().sum::<f64>() / sample as f64,
    };
    drop(vec_a);
    drop(vec_b);

    let unsorted_order: Vec<usize> = (0..texts.len()).collect();
    let pad_unsorted = padding_efficiency(&raw, &texts, &unsorted_order, a.batch_size)?;
    let pad_sorted = padded_b.max(1);
    let pad_sorted = tokens_b as f64 / pad_sorted as f64;
    drop(raw);

    // (c) tripletgen, input order.
    let unsorted = if a.skip_unsorted {
        None
    } else {
        log::info!("embed (c): tripletgen embed_cached, batches in input order");
        let mut cfg_c = cfg.clone();
        cfg_c.embed.sort_by_length = false;
        let (_, stats_c, secs_c, cpu_c) = time_tripletgen(&cfg_c, &resolved, &texts, "bench (c)", show_progress)?;
        log::info!("embed (c): {secs_c:.1} s");
        Some(throughput(secs_c, cpu_c, texts.len(), stats_c.tokens, Some(pad_unsorted)))
    };

    let n = texts.len();
    Ok(EmbedReport {
        docs: n,
        batch_size: a.batch_size,
        repeat: a.repeat,
        threads: a.threads,
        max_length: a.max_length,
        vocabulary: vocab.source.clone(),
        words,
        tokens: stats_a.tokens,
        truncated: stats_a.truncated,
        overhead_pct: (secs_a / secs_b.max(1e-9) - 1.0) * 100.0,
        raw_time_over_tripletgen_time_pct: secs_b / secs_a.max(1e-9) * 100.0,
        sort_speedup: unsorted.as_ref().map(|u| u.seconds / secs_a.max(1e-9)),
        tripletgen_sorted: throughput(secs_a, cpu_a, n, stats_a.tokens, Some(pad_sorted)),
        raw_onnxruntime: throughput(secs_b, cpu_b, n, tokens_b, Some(pad_sorted)),
        tripletgen_unsorted: unsorted,
        agreement,
    })
}
