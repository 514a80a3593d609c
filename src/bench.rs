//! Benchmarks (`tripletgen bench`): numbers, not pass/fail.
//!
//! Two benchmarks, runnable separately (`bench embed`, `bench index`) or together (`bench all`, the
//! default):
//!
//! * **embed** generates a deterministic, mixed-length synthetic corpus (words drawn with their
//!   frequencies from the quickstart corpus, lengths log-normal between 8 and 300 words) and times
//!   (a) tripletgen's own path, [`Embedder::embed_cached`] into a fresh workspace (hashing, cache
//!   writes, length sorting and token counting included), (b) raw ONNX Runtime on exactly the same
//!   length-sorted batches (same tokenizer.json, truncation, model.onnx and intra-op threads; mean
//!   pooling and L2 normalisation done here), and (c) tripletgen with `sort_by_length = false`. It
//!   checks that (a) and (b) give the same vectors.
//! * **index** synthesises clustered unit vectors (power-law cluster sizes, varying spread, an
//!   anisotropic variance spectrum and a shared mean direction, like real sentence embeddings) and,
//!   for each corpus size, times the HNSW build ([`Index::build`], serial like the pipeline, or
//!   hnsw_rs `parallel_insert` with `--parallel-build`), HNSW and exact top-k search on the same
//!   queries, recall@k of HNSW against exact, and peak resident memory against the size of the
//!   vectors plus an estimate of hnsw_rs's graph.
//!
//! The result tables go to stdout (or one JSON object with `--json`, the tables then go to stderr);
//! progress and notes go to stderr through the logger.

use crate::config::{Config, IndexConfig, IndexKind};
use crate::embed::{Embedder, Vectors, normalize, ort_environment};
use crate::index::{self, Index};
use crate::models::{self, ModelSource};
use crate::progress;
use crate::workspace::Store;
use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Target: tripletgen's embedding path at most this much slower than raw ONNX Runtime (percent).
pub const TARGET_EMBED_OVERHEAD_PCT: f64 = 10.0;
/// Target: agreement of tripletgen's and raw ONNX Runtime vectors (minimum cosine).
pub const TARGET_AGREEMENT_COSINE: f64 = 0.999;
/// Target: HNSW recall@k against exact search.
pub const TARGET_RECALL: f64 = 0.98;
/// Target: HNSW search at least this many times faster than exact search (stated at 100k).
pub const TARGET_SPEEDUP: f64 = 5.0;
/// Target: peak resident memory at most this multiple of vectors + graph.
pub const TARGET_MEMORY_RATIO: f64 = 1.5;

/// Benchmark options.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which benchmark (default: all, with default settings).
    #[command(subcommand)]
    pub which: Option<BenchCommand>,
    /// Print every number as one JSON object on stdout (the tables then go to stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// Seed of the synthetic documents and vectors.
    #[arg(long, global = true, default_value_t = 42)]
    pub seed: u64,
}

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Embedding throughput: tripletgen vs raw ONNX Runtime, and length-sorted vs unsorted batches.
    Embed(EmbedBenchArgs),
    /// Index: HNSW build time, HNSW vs exact search speed, recall@k and peak memory.
    Index(IndexBenchArgs),
    /// Lexical variants per second, per strategy (`generate.lexical`).
    Lexical(LexicalBenchArgs),
    /// A refresh after a small corpus change against the full run before it (embedding and index
    /// stages, LLM requests).
    Refresh(crate::bench_refresh::RefreshBenchArgs),
    /// LLM client overhead: against an instant local server, and against the real llama.cpp server
    /// next to a plain load generator (needs `scripts/llama-server.sh build`).
    Llm(LlmBenchArgs),
    /// A judge cascade's accuracy on labelled cases (fixtures/judge/cases.jsonl).
    Judge(crate::bench_judge::JudgeBenchArgs),
    /// Both benchmarks.
    All {
        /// Embedding options.
        #[command(flatten)]
        embed: EmbedBenchArgs,
        /// Index options.
        #[command(flatten)]
        index: IndexBenchArgs,
    },
}

/// Options of the lexical benchmark.
#[derive(Debug, Args, Clone)]
pub struct LexicalBenchArgs {
    /// Generated queries.
    #[arg(long, default_value_t = 100_000)]
    pub queries: usize,
    /// WordNet folder (default: as the pipeline finds it).
    #[arg(long)]
    pub wordnet_dir: Option<std::path::PathBuf>,
}

/// Options of the LLM client benchmark.
#[derive(Debug, Args, Clone)]
pub struct LlmBenchArgs {
    /// Requests per round against llama.cpp.
    #[arg(long, default_value_t = 40)]
    pub requests: usize,
    /// Requests in flight against llama.cpp (its slot count).
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// Only the instant local server (no llama.cpp).
    #[arg(long)]
    pub instant_only: bool,
}

/// Options of the embedding benchmark.
#[derive(Debug, Args, Clone)]
pub struct EmbedBenchArgs {
    /// Synthetic documents to embed.
    #[arg(long, default_value_t = 10_000)]
    pub docs: usize,
    /// Texts per ONNX batch (both paths).
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// ONNX Runtime intra-op threads (both paths; 0 = all cores).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Maximum tokens per text (longer texts are truncated, as in the pipeline).
    #[arg(long, default_value_t = 256)]
    pub max_length: usize,
    /// JSONL corpus whose words (and their frequencies) make up the synthetic documents; a built-in
    /// word list is used when it cannot be read.
    #[arg(long)]
    pub vocab_corpus: Option<PathBuf>,
    /// Skip run (c), tripletgen with unsorted batches (the slowest run).
    #[arg(long)]
    pub skip_unsorted: bool,
    /// Texts whose vectors are compared between tripletgen and raw ONNX Runtime.
    #[arg(long, default_value_t = 256)]
    pub check_sample: usize,
    /// Run (a) and (b) this many times, alternating, and keep the fastest of each (less noise
    /// from other work on the machine).
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
}

impl Default for EmbedBenchArgs {
    fn default() -> Self {
        EmbedBenchArgs {
            docs: 10_000,
            batch_size: 32,
            threads: 2,
            max_length: 256,
            vocab_corpus: None,
            skip_unsorted: false,
            check_sample: 256,
            repeat: 1,
        }
    }
}

/// Options of the index benchmark.
#[derive(Debug, Args, Clone)]
pub struct IndexBenchArgs {
    /// Corpus sizes: repeat the flag or give a comma list (`--n 100000,1000000`).
    #[arg(long = "n", value_delimiter = ',', default_value = "100000")]
    pub n: Vec<usize>,
    /// Vector dimension.
    #[arg(long, default_value_t = 384)]
    pub dim: usize,
    /// Queries searched by both HNSW and exact search.
    #[arg(long, default_value_t = 2000)]
    pub queries: usize,
    /// Neighbours per query (recall@k is measured at this k).
    #[arg(long, default_value_t = 50)]
    pub k: usize,
    /// HNSW links per node (2..=256).
    #[arg(long, default_value_t = 16)]
    pub m: usize,
    /// HNSW candidate list size while building.
    #[arg(long, default_value_t = 200)]
    pub ef_construction: usize,
    /// HNSW candidate list size while searching (raised to k when k is larger); 0 = auto, as in
    /// the pipeline (`index.ef_search = 0`).
    #[arg(long, default_value_t = 0)]
    pub ef_search: usize,
    /// Cluster centres of the synthetic vectors (default: n / 30, between 50 and 4000).
    #[arg(long)]
    pub clusters: Option<usize>,
    /// Build with hnsw_rs `parallel_insert` on all cores (`index.parallel_build = true`) instead of
    /// serial inserts (faster on large n; not deterministic).
    #[arg(long)]
    pub parallel_build: bool,
    /// Also search the same graph with these ef_search values (comma list) and report recall and
    /// speed for each.
    #[arg(long, value_delimiter = ',')]
    pub ef_sweep: Vec<usize>,
}

impl Default for IndexBenchArgs {
    fn default() -> Self {
        IndexBenchArgs {
            n: vec![100_000],
            dim: 384,
            queries: 2000,
            k: 50,
            m: 16,
            ef_construction: 200,
            ef_search: 0,
            clusters: None,
            parallel_build: false,
            ef_sweep: Vec::new(),
        }
    }
}

/// Everything one `tripletgen bench` invocation measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// tripletgen version.
    pub tripletgen_version: String,
    /// When the benchmark ran (UTC).
    pub date_utc: String,
    /// The machine.
    pub machine: Machine,
    /// The embedding benchmark, when run.
    pub embed: Option<EmbedReport>,
    /// The index benchmark, one entry per corpus size.
    pub index: Vec<IndexReport>,
}

/// The machine the numbers come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPU model from /proc/cpuinfo.
    pub cpu: String,
    /// Cores available to this process.
    pub cores: usize,
    /// Total memory in GiB.
    pub memory_gib: f64,
    /// Kernel release.
    pub kernel: String,
    /// `release` or `debug` (debug numbers are meaningless).
    pub build: String,
    /// 1, 5 and 15-minute load averages when the benchmark started (other work on the machine).
    pub load_average: String,
}

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

/// Result of the index benchmark for one corpus size.
#[derive(Debug, Clone, Serialize)]
pub struct IndexReport {
    /// Documents.
    pub n: usize,
    /// Dimension.
    pub dim: usize,
    /// Queries.
    pub queries: usize,
    /// k.
    pub k: usize,
    /// HNSW links per node.
    pub m: usize,
    /// HNSW build candidate list.
    pub ef_construction: usize,
    /// HNSW search candidate list.
    pub ef_search: usize,
    /// Cluster centres of the synthetic vectors.
    pub clusters: usize,
    /// Seconds to synthesise documents and queries.
    pub generate_seconds: f64,
    /// `serial` (the pipeline's Index::build) or `parallel_insert` (benchmark only).
    pub build_mode: String,
    /// Seconds to build the HNSW graph.
    pub build_seconds: f64,
    /// CPU seconds of the build (all threads).
    pub build_cpu_seconds: f64,
    /// Inserts per second.
    pub build_inserts_per_s: f64,
    /// Seconds for all queries through HNSW.
    pub hnsw_seconds: f64,
    /// CPU seconds of the HNSW search (all threads).
    pub hnsw_cpu_seconds: f64,
    /// HNSW queries per second.
    pub hnsw_queries_per_s: f64,
    /// Seconds for all queries through exact search.
    pub exact_seconds: f64,
    /// CPU seconds of the exact search (all threads).
    pub exact_cpu_seconds: f64,
    /// Exact-search queries per second.
    pub exact_queries_per_s: f64,
    /// exact time / HNSW time (search only).
    pub speedup: f64,
    /// Queries after which HNSW (build + search) beats exact search, `None` when it never does.
    pub break_even_queries: Option<f64>,
    /// Mean recall@k of HNSW against exact search.
    pub recall: f64,
    /// Mean cosine of the k-th exact neighbour (how tight the synthetic neighbourhoods are).
    pub mean_kth_cosine: f64,
    /// Recall and speed at other ef_search values on the same graph (`--ef-sweep`).
    pub ef_sweep: Vec<EfPoint>,
    /// Memory.
    pub memory: MemoryReport,
}

/// HNSW search at one ef_search value.
#[derive(Debug, Clone, Serialize)]
pub struct EfPoint {
    /// ef_search (raised to k when smaller).
    pub ef_search: usize,
    /// Queries per second.
    pub queries_per_s: f64,
    /// Exact search time / this search time.
    pub speedup: f64,
    /// Recall@k against exact search.
    pub recall: f64,
}

/// Resident memory of the index benchmark, in bytes.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    /// Whether VmHWM could be reset between phases (/proc/self/clear_refs); if not, peaks are
    /// process-lifetime peaks.
    pub peak_reset_works: bool,
    /// RSS before the vectors were generated (binary, libraries, earlier benchmarks' leftovers).
    pub baseline_rss: u64,
    /// RSS after generating documents and queries.
    pub data_rss: u64,
    /// Peak RSS while building the graph.
    pub peak_build: u64,
    /// RSS after the build.
    pub rss_after_build: u64,
    /// Peak RSS while searching with HNSW.
    pub peak_hnsw_search: u64,
    /// RSS after the HNSW index was dropped (what the allocator kept).
    pub rss_after_drop: u64,
    /// Peak RSS while searching exactly (the documents generated again, the HNSW index dropped).
    pub peak_exact_search: u64,
    /// max(peak_build, peak_hnsw_search) − baseline_rss: what the HNSW path itself needed.
    pub peak_hnsw_path: u64,
    /// n · dim · 4: the vectors, once (the index hands its copy to hnsw_rs while building).
    pub vectors: u64,
    /// n · (2M + M/(M−1)) · 56 B: every layer-0 and expected upper-layer link at hnsw_rs's cost per
    /// link (an 8-byte `Arc` pointer plus a separately allocated 32-byte `PointWithOrder`, 48 B with
    /// glibc's malloc header and rounding).
    pub graph: u64,
    /// The same links as 4-byte ids: what a compact graph would need.
    pub graph_compact: u64,
    /// hnsw_rs's copy of every vector (each `Point` owns a `Vec<f32>`), malloc rounding included.
    pub hnsw_rs_vectors: u64,
    /// hnsw_rs's per-point fixed cost: `Arc<Point>`, `Arc<RwLock<..>>`, a 16-layer `Vec` of
    /// neighbour lists, the layer table slot and the index's table of points.
    pub hnsw_rs_point_overhead: u64,
    /// peak_hnsw_path / (vectors + graph).
    pub ratio: f64,
    /// peak_hnsw_path / (hnsw_rs_vectors + graph + hnsw_rs_point_overhead): how well the hnsw_rs
    /// memory model explains the measurement.
    pub ratio_to_model: f64,
}

/// Run the benchmarks.
pub fn run(args: BenchArgs, show_progress: bool) -> Result<()> {
    let (embed_args, index_args) = match args.which {
        Some(BenchCommand::Lexical(l)) => return run_lexical(&l, args.json),
        Some(BenchCommand::Judge(j)) => return crate::bench_judge::run(&j, args.json),
        Some(BenchCommand::Refresh(r)) => return crate::bench_refresh::run(&r, args.seed, show_progress, args.json).map(drop),
        Some(BenchCommand::Llm(l)) => {
            if l.requests == 0 || l.concurrency == 0 {
                bail!("--requests and --concurrency must be at least 1");
            }
            let results = crate::bench_llm::run(l.requests, l.concurrency, !l.instant_only, args.json)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&results)?);
            }
            return Ok(());
        }
        Some(BenchCommand::Embed(e)) => (Some(e), None),
        Some(BenchCommand::Index(i)) => (None, Some(i)),
        Some(BenchCommand::All { embed, index }) => (Some(embed), Some(index)),
        None => (Some(EmbedBenchArgs::default()), Some(IndexBenchArgs::default())),
    };
    if let Some(e) = &embed_args {
        validate_embed(e)?;
    }
    if let Some(i) = &index_args {
        validate_index(i)?;
    }
    let machine = machine();
    if machine.build == "debug" {
        log::warn!("this is a debug build: benchmark numbers are meaningless; use `cargo run --release`");
    }
    let mut report = BenchReport {
        tripletgen_version: env!("CARGO_PKG_VERSION").to_string(),
        date_utc: utc_now(),
        machine,
        embed: None,
        index: Vec::new(),
    };
    if let Some(e) = &embed_args {
        report.embed = Some(run_embed(e, args.seed, show_progress)?);
    }
    if let Some(i) = &index_args {
        for &n in &i.n {
            report.index.push(run_index(i, n, args.seed, show_progress)?);
        }
    }
    progress::MULTI.clear().ok();
    let text = render(&report);
    if args.json {
        eprint!("{text}");
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{text}");
    }
    Ok(())
}

fn run_lexical(a: &LexicalBenchArgs, json: bool) -> Result<()> {
    if a.queries == 0 {
        bail!("--queries must be at least 1");
    }
    let dir = match &a.wordnet_dir {
        Some(d) => d.clone(),
        None => {
            let root = crate::models::cache_root(&crate::config::ModelConfig::default());
            crate::generate::wordnet_dir(&crate::config::LexicalConfig::default(), &root)
        }
    };
    let results = crate::bench_lexical::run(a.queries, &dir)?;
    let m = machine();
    let mut text = format!(
        "lexical variants on {} generated queries, one thread ({} build, {} cores, load {})\n{:<22} {:>10} {:>9} {:>14}\n",
        a.queries, m.build, m.cores, m.load_average, "strategy", "variants", "seconds", "variants/s"
    );
    for r in &results {
        text.push_str(&format!("{:<22} {:>10} {:>9.3} {:>14.0}\n", r.strategy, r.variants, r.seconds, r.variants_per_sec));
    }
    if json {
        eprint!("{text}");
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print!("{text}");
    }
    Ok(())
}

fn validate_embed(a: &EmbedBenchArgs) -> Result<()> {
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

fn validate_index(a: &IndexBenchArgs) -> Result<()> {
    if a.n.is_empty() || a.n.contains(&0) {
        bail!("--n needs corpus sizes of at least 1");
    }
    if a.dim < 2 {
        bail!("--dim must be at least 2");
    }
    if a.queries == 0 || a.k == 0 {
        bail!("--queries and --k must be at least 1");
    }
    if let Some(&n) = a.n.iter().find(|&&n| n < a.k) {
        bail!("--k {} is larger than the corpus size {n}", a.k);
    }
    // hnsw_rs calls process::exit when M > 256.
    if !(2..=256).contains(&a.m) {
        bail!("--m must be between 2 and 256");
    }
    if a.ef_construction == 0 {
        bail!("--ef-construction must be at least 1");
    }
    if a.ef_sweep.contains(&0) {
        bail!("--ef-sweep values must be at least 1");
    }
    if a.clusters == Some(0) {
        bail!("--clusters must be at least 1");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Synthetic documents
// ---------------------------------------------------------------------------------------------

/// Words and their sampling weights (corpus frequencies).
#[derive(Debug, Clone)]
pub struct Vocabulary {
    words: Vec<String>,
    cumulative: Vec<f64>,
    /// Where the words came from.
    pub source: String,
}

const FALLBACK_WORDS: &str = "the of and to in a is that for it as was with be by on not he this are or his from at \
which but have an they you were her she there been one all we their has would when if so what out up more \
about into than them can only other new some could time these two may first then do any like my now over \
such our man me even most made after also did many before must through back years where much your way well \
down should because each just those people how too little state good very make world still own see men work \
long get here between both life being under never day same another know while last might us great old year \
off come since against go came right used take three system energy water light model data network protein \
cell planet orbit river climate market language history music theory method result process structure power \
field change rate level study group research surface temperature pressure species population economy city";

impl Vocabulary {
    /// Words of the `title` and `text` fields of a JSONL corpus, weighted by frequency; the built-in
    /// list when the file cannot be read or has fewer than 100 distinct words.
    pub fn from_corpus(path: &Path) -> Vocabulary {
        let mut counts: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
        if let Ok(text) = std::fs::read_to_string(path) {
            for line in text.lines() {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
                for field in ["title", "text"] {
                    if let Some(s) = v.get(field).and_then(|x| x.as_str()) {
                        for w in s.split_whitespace() {
                            let w = w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase();
                            if !w.is_empty() {
                                *counts.entry(w).or_default() += 1;
                            }
                        }
                    }
                }
            }
        }
        if counts.len() < 100 {
            log::warn!("cannot use {} as a vocabulary; using the built-in word list", path.display());
            return Vocabulary::fallback();
        }
        let (words, weights): (Vec<String>, Vec<f64>) = counts.into_iter().map(|(w, c)| (w, c as f64)).unzip();
        Vocabulary::new(words, &weights, format!("{} ({} distinct words)", path.display(), weights.len()))
    }

    /// The built-in word list with Zipf weights.
    pub fn fallback() -> Vocabulary {
        let words: Vec<String> = FALLBACK_WORDS.split_whitespace().map(str::to_string).collect();
        let weights: Vec<f64> = (0..words.len()).map(|i| 1.0 / (i as f64 + 1.0)).collect();
        let n = words.len();
        Vocabulary::new(words, &weights, format!("built-in list ({n} words)"))
    }

    fn new(words: Vec<String>, weights: &[f64], source: String) -> Vocabulary {
        Vocabulary { words, cumulative: cumulative(weights), source }
    }

    fn sample<R: Rng>(&self, rng: &mut R) -> &str {
        &self.words[pick(&self.cumulative, rng)]
    }
}

fn cumulative(weights: &[f64]) -> Vec<f64> {
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    weights
        .iter()
        .map(|w| {
            acc += w / total;
            acc
        })
        .collect()
}

fn pick<R: Rng>(cumulative: &[f64], rng: &mut R) -> usize {
    let u: f64 = rng.random();
    cumulative.partition_point(|&c| c < u).min(cumulative.len() - 1)
}

/// Shortest and longest synthetic document, in words.
pub const DOC_WORDS: (usize, usize) = (8, 300);

/// A document length in words: log-normal (median 40, σ 0.9), redrawn until inside [`DOC_WORDS`].
/// Right-skewed: most documents are short, a long tail reaches 300 words.
fn doc_words<R: Rng>(rng: &mut R) -> usize {
    loop {
        let w = (40f64.ln() + 0.9 * gauss(rng)).exp().round() as usize;
        if (DOC_WORDS.0..=DOC_WORDS.1).contains(&w) {
            return w;
        }
    }
}

/// `n` distinct documents of sentences (5 to 18 words, capitalised, with full stops and the odd
/// comma or number) drawn from `vocab`; the same `seed` gives the same documents.
pub fn generate_documents(vocab: &Vocabulary, n: usize, seed: u64) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut seen = std::collections::HashSet::with_capacity(n);
    let mut docs = Vec::with_capacity(n);
    while docs.len() < n {
        let words = doc_words(&mut rng);
        let mut doc = String::with_capacity(words * 8);
        let mut left = words;
        while left > 0 {
            let len = rng.random_range(5..=18usize).min(left);
            left -= len;
            for i in 0..len {
                if !doc.is_empty() {
                    doc.push(' ');
                }
                let w: String = if rng.random_bool(0.03) {
                    rng.random_range(2..2030u32).to_string()
                } else {
                    vocab.sample(&mut rng).to_string()
                };
                if i == 0 {
                    let mut c = w.chars();
                    if let Some(f) = c.next() {
                        doc.extend(f.to_uppercase());
                        doc.push_str(c.as_str());
                    }
                } else {
                    doc.push_str(&w);
                }
                if i + 1 < len && rng.random_bool(0.06) {
                    doc.push(',');
                }
            }
            doc.push('.');
        }
        if seen.insert(doc.clone()) {
            docs.push(doc);
        }
    }
    docs
}

fn summarize_lengths(docs: &[String]) -> LengthSummary {
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

// ---------------------------------------------------------------------------------------------
// Embedding benchmark
// ---------------------------------------------------------------------------------------------

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

fn run_embed(a: &EmbedBenchArgs, seed: u64, show_progress: bool) -> Result<EmbedReport> {
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
            index::dot(vec_a.row(i), &vec_b[i]) as f64
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

// ---------------------------------------------------------------------------------------------
// Synthetic vectors
// ---------------------------------------------------------------------------------------------

/// A standard normal sample (Box–Muller).
fn gauss<R: Rng>(rng: &mut R) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Fill `out` with standard normal samples, two per Box–Muller draw.
fn fill_gauss<R: Rng>(rng: &mut R, out: &mut [f32]) {
    for pair in out.chunks_mut(2) {
        let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = rng.random();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        pair[0] = (r * c) as f32;
        if pair.len() > 1 {
            pair[1] = (r * s) as f32;
        }
    }
}

/// A generator of clustered unit vectors that look like sentence embeddings: a shared mean
/// direction, topics, cluster centres near their topic, power-law cluster sizes (Zipf exponent 0.8),
/// a different spread per cluster, and a power-law variance spectrum over dimensions (variance of
/// dimension j ∝ 1/(j+1): an effective dimension of a few dozen, not `dim`).
#[derive(Debug, Clone)]
pub struct ClusterModel {
    dim: usize,
    scale: Vec<f32>,
    centres: Vec<f32>,
    spread: Vec<f32>,
    cumulative: Vec<f64>,
}

impl ClusterModel {
    /// Draw `clusters` centres in `dim` dimensions from `seed`.
    pub fn new(dim: usize, clusters: usize, seed: u64) -> ClusterModel {
        let clusters = clusters.max(1);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut scale: Vec<f32> = (0..dim).map(|j| (1.0 / (j as f32 + 1.0)).sqrt()).collect();
        let total = scale.iter().map(|s| s * s).sum::<f32>().sqrt();
        scale.iter_mut().for_each(|s| *s /= total);
        let direction = |rng: &mut ChaCha8Rng| {
            let mut v = vec![0f32; dim];
            fill_gauss(rng, &mut v);
            v.iter_mut().zip(&scale).for_each(|(x, s)| *x *= s);
            normalize(&mut v);
            v
        };
        let mean = direction(&mut rng);
        let topics: Vec<Vec<f32>> = (0..(clusters / 50).max(1)).map(|_| direction(&mut rng)).collect();
        let mut centres = Vec::with_capacity(clusters * dim);
        let mut spread = Vec::with_capacity(clusters);
        for _ in 0..clusters {
            let topic = &topics[rng.random_range(0..topics.len())];
            let own = direction(&mut rng);
            let mut c: Vec<f32> = (0..dim).map(|j| 0.5 * mean[j] + 0.8 * topic[j] + 0.6 * own[j]).collect();
            normalize(&mut c);
            centres.extend(c);
            spread.push(rng.random_range(0.35..0.9f32));
        }
        let weights: Vec<f64> = (0..clusters).map(|i| (i as f64 + 1.0).powf(-0.8)).collect();
        ClusterModel { dim, scale, centres, spread, cumulative: cumulative(&weights) }
    }

    /// Number of cluster centres.
    pub fn clusters(&self) -> usize {
        self.spread.len()
    }

    /// `n` unit vectors: a centre picked by cluster size plus anisotropic Gaussian noise of the
    /// cluster's spread, normalised. Deterministic in `seed` (independent of the thread count).
    pub fn sample(&self, n: usize, seed: u64) -> Vectors {
        const CHUNK: usize = 1024;
        let d = self.dim;
        let mut data = vec![0f32; n * d];
        data.par_chunks_mut(CHUNK * d).enumerate().for_each(|(chunk, block)| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(chunk as u64);
            let mut noise = vec![0f32; d];
            for v in block.chunks_mut(d) {
                let c = pick(&self.cumulative, &mut rng);
                fill_gauss(&mut rng, &mut noise);
                let centre = &self.centres[c * d..(c + 1) * d];
                let s = self.spread[c];
                for j in 0..d {
                    v[j] = centre[j] + s * self.scale[j] * noise[j];
                }
                normalize(v);
            }
        });
        Vectors { dim: d, data }
    }
}

// ---------------------------------------------------------------------------------------------
// Index benchmark
// ---------------------------------------------------------------------------------------------

/// Memory of this process from /proc/self/status (bytes), `None` where unavailable.
fn proc_status(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_kb(&status, field).map(|kb| kb * 1024)
}

fn parse_status_kb(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// CPU seconds (user + system, all threads) this process has used, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn rss() -> u64 {
    proc_status("VmRSS").unwrap_or(0)
}

fn peak() -> u64 {
    proc_status("VmHWM").unwrap_or(0)
}

/// Reset VmHWM to the current RSS; false when the kernel does not allow it.
fn reset_peak() -> bool {
    let before = rss();
    if std::fs::write("/proc/self/clear_refs", "5").is_err() {
        return false;
    }
    // After a reset the peak equals the current RSS (give or take pages touched in between).
    peak() <= before + (8 << 20)
}

/// glibc malloc's chunk for a request of `n` bytes: 8-byte header, 16-byte alignment, 32 minimum.
fn malloc_chunk(n: u64) -> u64 {
    ((n + 8).div_ceil(16) * 16).max(32)
}

fn default_clusters(n: usize) -> usize {
    (n / 30).clamp(50, 4000).min(n)
}

fn run_index(a: &IndexBenchArgs, n: usize, seed: u64, show_progress: bool) -> Result<IndexReport> {
    let clusters = a.clusters.unwrap_or_else(|| default_clusters(n));
    index::release_free_memory();
    let reset_ok = reset_peak();
    if !reset_ok {
        log::warn!("cannot reset VmHWM through /proc/self/clear_refs: peaks below are process-lifetime peaks");
    }
    let baseline_rss = rss();
    log::info!("index n={n}: generating {n} + {} clustered vectors ({clusters} clusters, dim {})", a.queries, a.dim);
    let start = Instant::now();
    let model = ClusterModel::new(a.dim, clusters, seed);
    let docs = model.sample(n, seed.wrapping_add(1));
    let queries = model.sample(a.queries, seed.wrapping_add(2));
    let generate_seconds = start.elapsed().as_secs_f64();
    let data_rss = rss();

    let cfg = IndexConfig {
        kind: IndexKind::Hnsw,
        m: a.m,
        ef_construction: a.ef_construction,
        ef_search: a.ef_search,
        parallel_build: a.parallel_build,
        ..IndexConfig::default()
    };
    let build_mode = if a.parallel_build { "parallel_insert" } else { "serial" };
    log::info!(
        "index n={n}: building HNSW ({build_mode}, m={}, ef_construction={})",
        a.m,
        a.ef_construction
    );
    reset_peak();
    let (start, cpu) = (Instant::now(), cpu_seconds());
    let built = Index::build(docs, &cfg, None, show_progress)?.0;
    let build_seconds = start.elapsed().as_secs_f64();
    let build_cpu_seconds = cpu_seconds() - cpu;
    let peak_build = peak();
    let rss_after_build = rss();
    log::info!("index n={n}: built in {build_seconds:.1} s");

    reset_peak();
    let (start, cpu) = (Instant::now(), cpu_seconds());
    let got = built.search_batch(&queries, a.k)?;
    let hnsw_seconds = start.elapsed().as_secs_f64();
    let hnsw_cpu_seconds = cpu_seconds() - cpu;
    let peak_hnsw_search = peak();
    log::info!("index n={n}: HNSW search {hnsw_seconds:.2} s");
    let mut sweep_results = Vec::new();
    for &ef in &a.ef_sweep {
        let start = Instant::now();
        let hits = built.search_batch_ef(&queries, a.k, Some(ef))?;
        sweep_results.push((ef, start.elapsed().as_secs_f64(), hits));
        log::info!("index n={n}: HNSW search with ef_search={ef}: {:.2} s", sweep_results.last().map_or(0.0, |r| r.1));
    }
    drop(built);
    index::release_free_memory();
    let rss_after_drop = rss();

    // Exact search on the same documents: the index gave its copy to hnsw_rs, so generate them
    // again (deterministic) with the graph gone; this phase's peak is the exact path's own.
    let docs = model.sample(n, seed.wrapping_add(1));
    reset_peak();
    let (start, cpu) = (Instant::now(), cpu_seconds());
    let truth = index::exact_search(&docs, &queries, a.k);
    let exact_seconds = start.elapsed().as_secs_f64();
    let exact_cpu_seconds = cpu_seconds() - cpu;
    let peak_exact_search = peak();
    drop(docs);
    log::info!("index n={n}: exact search {exact_seconds:.2} s");

    let recall = index::recall_at_k(&got, &truth);
    let ef_sweep: Vec<EfPoint> = sweep_results
        .into_iter()
        .map(|(ef, secs, hits)| EfPoint {
            ef_search: ef,
            queries_per_s: a.queries as f64 / secs.max(1e-9),
            speedup: exact_seconds / secs.max(1e-9),
            recall: index::recall_at_k(&hits, &truth),
        })
        .collect();
    let mean_kth_cosine =
        truth.iter().filter_map(|h| h.last()).map(|h| h.score as f64).sum::<f64>() / truth.len().max(1) as f64;

    // Memory model (see MemoryReport's fields for what each term counts).
    let (nu, d, m) = (n as u64, a.dim as u64, a.m as f64);
    let links_per_point = 2.0 * m + m / (m - 1.0);
    let vectors = nu * d * 4;
    let per_link = 8 + malloc_chunk(32);
    let graph = (nu as f64 * links_per_point * per_link as f64) as u64;
    let graph_compact = (nu as f64 * links_per_point * 4.0) as u64;
    let hnsw_rs_vectors = nu * malloc_chunk(d * 4);
    // Arc<Point> (16 + 48), Arc<RwLock<Vec<Vec<..>>>> (16 + 8 + 24), Vec of 16 layer lists (16 × 24),
    // the layer-0 list's malloc header, the layer table's and the index's point table's Arc pointers.
    let hnsw_rs_point_overhead = nu * (malloc_chunk(64) + malloc_chunk(48) + malloc_chunk(16 * 24) + 8 + 8 + 8);
    let peak_hnsw_path = peak_build.max(peak_hnsw_search).saturating_sub(baseline_rss);
    let memory = MemoryReport {
        peak_reset_works: reset_ok,
        baseline_rss,
        data_rss,
        peak_build,
        rss_after_build,
        peak_hnsw_search,
        rss_after_drop,
        peak_exact_search,
        peak_hnsw_path,
        vectors,
        graph,
        graph_compact,
        hnsw_rs_vectors,
        hnsw_rs_point_overhead,
        ratio: peak_hnsw_path as f64 / (vectors + graph) as f64,
        ratio_to_model: peak_hnsw_path as f64 / (hnsw_rs_vectors + graph + hnsw_rs_point_overhead) as f64,
    };
    let per_query_exact = exact_seconds / a.queries as f64;
    let per_query_hnsw = hnsw_seconds / a.queries as f64;
    let break_even_queries =
        (per_query_exact > per_query_hnsw).then(|| build_seconds / (per_query_exact - per_query_hnsw));
    Ok(IndexReport {
        n,
        dim: a.dim,
        queries: a.queries,
        k: a.k,
        m: a.m,
        ef_construction: a.ef_construction,
        ef_search: cfg.ef_search_for(n),
        clusters: model.clusters(),
        generate_seconds,
        build_mode: build_mode.to_string(),
        build_seconds,
        build_cpu_seconds,
        build_inserts_per_s: n as f64 / build_seconds.max(1e-9),
        hnsw_seconds,
        hnsw_cpu_seconds,
        hnsw_queries_per_s: a.queries as f64 / hnsw_seconds.max(1e-9),
        exact_seconds,
        exact_cpu_seconds,
        exact_queries_per_s: a.queries as f64 / exact_seconds.max(1e-9),
        speedup: exact_seconds / hnsw_seconds.max(1e-9),
        break_even_queries,
        recall,
        mean_kth_cosine,
        ef_sweep,
        memory,
    })
}

// ---------------------------------------------------------------------------------------------
// Machine and output
// ---------------------------------------------------------------------------------------------

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_gib = parse_status_kb(&meminfo, "MemTotal").map_or(0.0, |kb| kb as f64 / (1024.0 * 1024.0));
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_gib,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(|_| "unknown".into(), |s| s.trim().into()),
        build: if cfg!(debug_assertions) { "debug" } else { "release" }.into(),
        load_average: std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
    }
}

fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn mib(b: u64) -> String {
    format!("{:.0} MiB", b as f64 / (1024.0 * 1024.0))
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn grouped(x: f64) -> String {
    let s = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 && c.is_ascii_digit() {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The human-readable tables of `r`.
pub fn render(r: &BenchReport) -> String {
    let mut s = String::new();
    let m = &r.machine;
    let _ = writeln!(s, "tripletgen {} bench, {}", r.tripletgen_version, r.date_utc);
    let _ = writeln!(
        s,
        "machine: {}, {} cores, {:.1} GiB RAM, Linux {}, {} build; load average at start {}\n",
        m.cpu, m.cores, m.memory_gib, m.kernel, m.build, m.load_average
    );
    if let Some(e) = &r.embed {
        let _ = writeln!(
            s,
            "Embedding: {} synthetic documents, {}-{} words (median {}, mean {:.0}, p90 {}), {} tokens, {} truncated at {}",
            e.docs,
            e.words.min,
            e.words.max,
            e.words.median,
            e.words.mean,
            e.words.p90,
            grouped(e.tokens as f64),
            e.truncated,
            e.max_length
        );
        let _ = writeln!(
            s,
            "  all-MiniLM-L6-v2 int8, batch {}, {} intra-op threads; (a) and (b): fastest of {} alternating runs",
            e.batch_size, e.threads, e.repeat
        );
        let _ = writeln!(
            s,
            "  {:<44} {:>8} {:>8} {:>9} {:>9} {:>10}",
            "path", "seconds", "texts/s", "tokens/s", "padding", "cores busy"
        );
        let mut row = |name: &str, t: &Throughput| {
            let pad = t.padding_efficiency.map_or("-".into(), |p| format!("{:.0}% real", p * 100.0));
            let _ = writeln!(
                s,
                "  {:<44} {:>8.1} {:>8.1} {:>9} {:>9} {:>10.2}",
                name,
                t.seconds,
                t.texts_per_s,
                grouped(t.tokens_per_s),
                pad,
                t.cpu_seconds / t.seconds.max(1e-9)
            );
        };
        row("(a) tripletgen embed_cached, length-sorted", &e.tripletgen_sorted);
        row("(b) raw ONNX Runtime, same sorted batches", &e.raw_onnxruntime);
        if let Some(u) = &e.tripletgen_unsorted {
            row("(c) tripletgen embed_cached, input order", u);
        }
        let _ = writeln!(
            s,
            "  overhead of tripletgen vs raw: {:+.1}% (raw time / tripletgen time = {:.1}%); target <= {:.0}%: {}",
            e.overhead_pct,
            e.raw_time_over_tripletgen_time_pct,
            TARGET_EMBED_OVERHEAD_PCT,
            verdict(e.overhead_pct <= TARGET_EMBED_OVERHEAD_PCT)
        );
        if let Some(sp) = e.sort_speedup {
            let _ = writeln!(s, "  speed-up of length-sorted batching: {sp:.2}x");
        }
        let _ = writeln!(
            s,
            "  agreement (a) vs (b): min cosine {:.6}, mean {:.6} over {} texts; target > {}: {}\n",
            e.agreement.min_cosine,
            e.agreement.mean_cosine,
            e.agreement.sample,
            TARGET_AGREEMENT_COSINE,
            verdict(e.agreement.min_cosine > TARGET_AGREEMENT_COSINE)
        );
    }
    for x in &r.index {
        let mm = &x.memory;
        let _ = writeln!(
            s,
            "Index: n = {}, dim {}, {} queries, k = {}, {} clusters; HNSW m = {}, ef_construction = {}, ef_search = {}",
            grouped(x.n as f64),
            x.dim,
            x.queries,
            x.k,
            x.clusters,
            x.m,
            x.ef_construction,
            x.ef_search
        );
        let build = if x.build_mode == "serial" {
            "serial inserts (the pipeline's Index::build)".to_string()
        } else {
            "hnsw_rs parallel_insert on all cores (benchmark only; the pipeline inserts serially)".to_string()
        };
        let _ = writeln!(s, "  build: {build}");
        let _ = writeln!(s, "  {:<36} {:>28}   target", "metric", "value");
        let mut row = |k: &str, v: String, t: String| {
            let _ = writeln!(s, "  {:<36} {:>28}   {}", k, v, t);
        };
        let busy = |cpu: f64, wall: f64| format!("{:.2} cores busy", cpu / wall.max(1e-9));
        row(
            "HNSW build",
            format!("{:.1} s ({:.0} inserts/s)", x.build_seconds, x.build_inserts_per_s),
            busy(x.build_cpu_seconds, x.build_seconds),
        );
        row(
            "HNSW search",
            format!("{:.0} queries/s", x.hnsw_queries_per_s),
            busy(x.hnsw_cpu_seconds, x.hnsw_seconds),
        );
        row(
            "exact search",
            format!("{:.0} queries/s", x.exact_queries_per_s),
            busy(x.exact_cpu_seconds, x.exact_seconds),
        );
        row(
            "search speed-up HNSW vs exact",
            format!("{:.1}x", x.speedup),
            format!(">= {TARGET_SPEEDUP:.0}x (at 100k): {}", verdict(x.speedup >= TARGET_SPEEDUP)),
        );
        row(
            "break-even incl. build",
            x.break_even_queries.map_or("never".into(), |q| format!("{} queries", grouped(q))),
            String::new(),
        );
        row(
            &format!("recall@{} HNSW vs exact", x.k),
            format!("{:.4}", x.recall),
            format!(">= {TARGET_RECALL}: {}", verdict(x.recall >= TARGET_RECALL)),
        );
        row(&format!("mean cosine of {}th neighbour", x.k), format!("{:.3}", x.mean_kth_cosine), String::new());
        for p in &x.ef_sweep {
            row(
                &format!("  same graph, ef_search = {}", p.ef_search.max(x.k)),
                format!("{:.0} q/s, {:.1}x, recall {:.4}", p.queries_per_s, p.speedup, p.recall),
                String::new(),
            );
        }
        row(
            "peak RSS, HNSW build + search",
            mib(mm.peak_hnsw_path),
            format!("above the {} baseline before the vectors existed", mib(mm.baseline_rss)),
        );
        row(
            "vectors + graph",
            mib(mm.vectors + mm.graph),
            format!(
                "vectors {} + graph {} at 56 B/link (as 4-byte ids: {})",
                mib(mm.vectors),
                mib(mm.graph),
                mib(mm.graph_compact)
            ),
        );
        row(
            "peak / (vectors + graph)",
            format!("{:.2}", mm.ratio),
            format!("<= {TARGET_MEMORY_RATIO}: {}", verdict(mm.ratio <= TARGET_MEMORY_RATIO)),
        );
        row(
            "peak / hnsw_rs memory model",
            format!("{:.2}", mm.ratio_to_model),
            format!(
                "model: vectors {} + graph + per-point {}",
                mib(mm.hnsw_rs_vectors),
                mib(mm.hnsw_rs_point_overhead)
            ),
        );
        row(
            "peak RSS, exact search phase",
            mib(mm.peak_exact_search.saturating_sub(mm.baseline_rss)),
            format!("vectors + score blocks; {} still held after dropping HNSW", mib(mm.rss_after_drop.saturating_sub(mm.baseline_rss))),
        );
        if !mm.peak_reset_works {
            let _ = writeln!(s, "  note: VmHWM could not be reset; peaks are process-lifetime peaks");
        }
        let _ = writeln!(s);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_model_is_deterministic_normalised_and_clustered() {
        let model = ClusterModel::new(64, 40, 7);
        let a = model.sample(3000, 1);
        let b = ClusterModel::new(64, 40, 7).sample(3000, 1);
        assert_eq!(a.data, b.data, "same seed, same vectors");
        assert_ne!(a.data, model.sample(3000, 2).data, "another seed, other vectors");
        for i in 0..a.len() {
            let norm = a.row(i).iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "row {i} has norm {norm}");
        }
        // Clustered: the nearest neighbour is far closer than a random pair.
        let sample = Vectors { dim: 64, data: a.data[..200 * 64].to_vec() };
        let nn = index::exact_search(&a, &sample, 2);
        let nearest: f32 = nn.iter().map(|h| h[1].score).sum::<f32>() / 200.0;
        let random: f32 = (0..200).map(|i| index::dot(a.row(i), a.row(2999 - i))).sum::<f32>() / 200.0;
        assert!(nearest > 0.8 && nearest > random + 0.2, "nearest {nearest}, random {random}");
    }

    #[test]
    fn cluster_sizes_follow_a_power_law() {
        let model = ClusterModel::new(8, 100, 3);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut counts = vec![0usize; 100];
        for _ in 0..20_000 {
            counts[pick(&model.cumulative, &mut rng)] += 1;
        }
        assert!(counts[0] > 5 * counts[99], "largest {} vs smallest {}", counts[0], counts[99]);
    }

    #[test]
    fn documents_are_deterministic_distinct_and_of_mixed_length() {
        let vocab = Vocabulary::fallback();
        let docs = generate_documents(&vocab, 2000, 5);
        assert_eq!(docs, generate_documents(&vocab, 2000, 5));
        assert_eq!(docs.iter().collect::<std::collections::HashSet<_>>().len(), docs.len());
        let words: Vec<usize> = docs.iter().map(|d| d.split_whitespace().count()).collect();
        assert!(words.iter().all(|&w| (DOC_WORDS.0..=DOC_WORDS.1).contains(&w)));
        let short = words.iter().filter(|&&w| w <= 25).count() as f64 / 2000.0;
        let long = words.iter().filter(|&&w| w >= 120).count() as f64 / 2000.0;
        assert!(short > 0.15, "short fraction {short}");
        assert!(long > 0.05, "long fraction {long}");
        let s = summarize_lengths(&docs);
        assert!(s.mean > s.median as f64, "right-skewed: mean {} median {}", s.mean, s.median);
    }

    #[test]
    fn vocabulary_falls_back_when_the_corpus_is_missing() {
        let v = Vocabulary::from_corpus(Path::new("/nonexistent/corpus.jsonl"));
        assert!(v.source.starts_with("built-in"));
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert!(!v.sample(&mut rng).is_empty());
    }

    #[test]
    fn parses_proc_status_and_dates() {
        let status = "Name:\ttripletgen\nVmHWM:\t  123456 kB\nVmRSS:\t    2048 kB\n";
        assert_eq!(parse_status_kb(status, "VmHWM"), Some(123_456));
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(2048));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(malloc_chunk(32), 48);
        assert_eq!(malloc_chunk(1), 32);
        assert_eq!(grouped(1234567.0), "1,234,567");
    }
}
