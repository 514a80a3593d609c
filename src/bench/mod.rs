//! Benchmarks (`tripletgen bench`): numbers, not pass/fail. Nothing in the pipeline imports from
//! here; each benchmark is one file:
//!
//! * [`embed`] (`bench embed`): tripletgen's embedding path against raw ONNX Runtime on the same
//!   length-sorted batches of a synthetic corpus, and the gain from length-sorted batching;
//! * [`index`] (`bench index`): HNSW build, search speed against exact search, recall and peak memory
//!   on clustered synthetic vectors;
//! * [`lexical`] (`bench lexical`): lexical variants per second per strategy;
//! * [`bm25`] (`bench bm25`): the BM25 retriever's build, refresh and query rate against exact dense
//!   search;
//! * [`llm`] (`bench llm`): the LLM client's overhead against a plain load generator;
//! * [`refresh`] (`bench refresh`): a refresh after a small corpus change against the full run.
//! * [`remote`] (`bench remote-embed`): the remote-embedding client against instant and bottleneck servers.
//! * [`workspace`] (`bench workspace`): the store's cost per unit of work, SQLite next to PostgreSQL.
//!
//! Support: [`synth`] (seeded synthetic documents and vectors), [`machine`] (/proc readings: CPU,
//! memory, load, CPU seconds), [`render`] (the tables of `embed` and `index`), [`servers`] (the
//! instant LLM server and the llama.cpp launcher, shared with the integration tests). `bench all` (the
//! default) runs `embed` and `index`.
//!
//! The result tables go to stdout (or one JSON object with `--json`, the tables then go to stderr);
//! progress and notes go to stderr through the logger.

pub mod bm25;
pub mod embed;
pub mod index;
pub mod judge;
pub mod lexical;
pub mod llm;
pub mod machine;
pub mod queue;
pub mod refresh;
pub mod remote;
pub mod render;
pub mod servers;
pub mod synth;
pub mod workspace;

use crate::progress;
use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use embed::EmbedReport;
use index::IndexReport;
use machine::{Machine, machine, utc_now};
use render::render;
use serde::Serialize;
use std::path::PathBuf;

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
    /// The BM25 retriever (`mine.retrievers`): index build, refresh and query rate, next to exact
    /// dense search.
    Bm25(bm25::Bm25BenchArgs),
    /// A refresh after a small corpus change against the full run before it (embedding and index
    /// stages, LLM requests).
    Refresh(refresh::RefreshBenchArgs),
    /// LLM client overhead: against an instant local server, and against the real llama.cpp server
    /// next to a plain load generator (needs `scripts/llama-server.sh build`).
    Llm(LlmBenchArgs),
    /// A judge cascade's accuracy on labelled cases (fixtures/judge/cases.jsonl).
    Judge(judge::JudgeBenchArgs),
    /// The remote-embedding client: vectors/s against an instant server next to a plain load
    /// generator, and one endpoint against two when the servers are the bottleneck.
    RemoteEmbed(remote::RemoteBenchArgs),
    /// The workspace store's cost per unit of work (embedding batch, LLM answer, verdicts): SQLite,
    /// and PostgreSQL with `--workspace postgres://…` (scripts/bench/workspace.sh starts one).
    Workspace(workspace::WorkspaceBenchArgs),
    /// The work queue of a PostgreSQL workspace (`--workspace postgres://…`): overhead per unit,
    /// and LLM units/s with 0, 1, 2, 4 workers against an instant server, next to SQLite.
    Queue(queue::QueueBenchArgs),
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

/// Run the benchmarks.
pub fn run(args: BenchArgs, show_progress: bool) -> Result<()> {
    let (embed_args, index_args) = match args.which {
        Some(BenchCommand::Lexical(l)) => return run_lexical(&l, args.json),
        Some(BenchCommand::Bm25(b)) => return bm25::run(&b, args.seed, args.json).map(drop),
        Some(BenchCommand::Judge(j)) => return judge::run(&j, args.json),
        Some(BenchCommand::RemoteEmbed(r)) => return remote::run(&r, args.json).map(drop),
        Some(BenchCommand::Workspace(w)) => return workspace::run(&w, args.json).map(drop),
        Some(BenchCommand::Queue(q)) => return queue::run(&q, args.json).map(drop),
        Some(BenchCommand::Refresh(r)) => return refresh::run(&r, args.seed, show_progress, args.json).map(drop),
        Some(BenchCommand::Llm(l)) => {
            if l.requests == 0 || l.concurrency == 0 {
                bail!("--requests and --concurrency must be at least 1");
            }
            let results = llm::run(l.requests, l.concurrency, !l.instant_only, args.json)?;
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
        embed::validate_embed(e)?;
    }
    if let Some(i) = &index_args {
        index::validate_index(i)?;
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
        report.embed = Some(embed::run_embed(e, args.seed, show_progress)?);
    }
    if let Some(i) = &index_args {
        for &n in &i.n {
            report.index.push(index::run_index(i, n, args.seed, show_progress)?);
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
    let results = lexical::run(a.queries, &dir)?;
    let m = machine();
    let mut text = format!(
        "lexical variants on {} generated queries, one thread ({} build, {} cores, load {})\n{:<22} {:>10} {:>9} {:>14}\n",
        a.queries, m.build, m.cores, m.load_average, "strategy", "variants", "seconds", "variants/s"
    );
    for r in &results {
        text.push_str(&format!(
            "{:<22} {:>10} {:>9.3} {:>14.0}\n",
            r.strategy, r.variants, r.seconds, r.variants_per_sec
        ));
    }
    if json {
        eprint!("{text}");
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print!("{text}");
    }
    Ok(())
}
