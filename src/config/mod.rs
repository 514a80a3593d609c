//! Typed configuration, loaded once and validated once.
//!
//! A run is described by a TOML file (see `configs/`), by command-line flags, or both: flags override
//! the file. [`Config::load`] parses with unknown keys refused, then [`Config::validate`] checks every
//! value that could make a later stage fail (an HNSW `m` above the library limit, `range_min` above
//! `range_max`, a missing input file…) and names the key, the file and what would be valid. Everything
//! after this module can trust the values it is given.

pub mod judge;
pub mod llm;
mod validate;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Errors raised while loading or validating a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key, or a value of the wrong type.
    #[error("config file {path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// What toml/serde said, including the key and the line.
        message: String,
    },
    /// A value that parses but cannot work.
    #[error("{origin}: `{key}` {message}")]
    Invalid {
        /// The config file, or "command line".
        origin: String,
        /// The dotted key, e.g. `index.m`.
        key: String,
        /// What is wrong and what would be valid.
        message: String,
    },
}

/// The files a `model.dir` folder must hold (checked at load time).
pub const MODEL_FILES: [&str; 5] =
    ["model.onnx", "tokenizer.json", "config.json", "special_tokens_map.json", "tokenizer_config.json"];

/// The whole configuration of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the inputs come from.
    pub input: InputConfig,
    /// The embedding model and how to run it.
    pub model: ModelConfig,
    /// Embedding batching and prompts.
    pub embed: EmbedConfig,
    /// Nearest-neighbour index.
    pub index: IndexConfig,
    /// Query variants (lexical augmentation).
    pub generate: GenerateConfig,
    /// Quality control of generated variants.
    pub filter: FilterConfig,
    /// The OpenAI-compatible LLM server (needed by `generate.llm` strategies).
    pub llm: Option<llm::LlmConfig>,
    /// Hard-negative mining rules.
    pub mine: MineConfig,
    /// Judges for false negatives (`[judge]`, `[[judge.stages]]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judge: Option<judge::JudgeConfig>,
    /// Evaluation sets kept out of the training data (`[exclude_eval]`, `--exclude-eval DIR`).
    pub exclude_eval: ExcludeEvalConfig,
    /// What to write and where.
    pub output: OutputConfig,
    /// The work queue of a PostgreSQL workspace (`[queue]`).
    pub queue: QueueConfig,
    /// Where every stage keeps what it produced (embedding cache…): a folder (SQLite) or a
    /// `postgres://user@host/db` URL (password from `PGPASSWORD`). Default: `<output.dir>/workspace`.
    pub workspace: Option<crate::workspace::Location>,
}

/// What to do with a malformed input record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BadRecordPolicy {
    /// Stop at the first bad record with an error naming file, line and field.
    #[default]
    Stop,
    /// Skip bad records, count them and list them in the report.
    Skip,
}

/// Input files. Either `beir` (a BEIR folder) or explicit `corpus` + (`queries` + `qrels` | `pairs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    /// A BEIR-layout folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.
    pub beir: Option<PathBuf>,
    /// The qrels split to read from a BEIR folder.
    pub split: String,
    /// Corpus: a .jsonl, .csv, .tsv or .parquet file, or a folder of .txt/.md files.
    pub corpus: Option<PathBuf>,
    /// Queries: .jsonl, .csv, .tsv or .parquet.
    pub queries: Option<PathBuf>,
    /// Relevance judgements: .tsv (BEIR), .csv, .jsonl or .parquet.
    pub qrels: Option<PathBuf>,
    /// (query text, positive text) pairs: .jsonl, .csv, .tsv or .parquet.
    pub pairs: Option<PathBuf>,
    /// Stop at the first malformed record, or skip and report.
    pub on_bad_record: BadRecordPolicy,
    /// Prepend the title (when present) to the document text, separated by a space.
    pub include_title: bool,
    /// Field names of corpus records.
    pub corpus_fields: CorpusFields,
    /// Field names of query records.
    pub query_fields: QueryFields,
    /// Field names of qrels records.
    pub qrels_fields: QrelsFields,
    /// Field names of pair records.
    pub pair_fields: PairFields,
    /// A record longer than this many bytes is malformed (protects memory from a runaway line).
    pub max_record_bytes: usize,
}

impl Default for InputConfig {
    fn default() -> Self {
        Self {
            beir: None,
            split: "test".into(),
            corpus: None,
            queries: None,
            qrels: None,
            pairs: None,
            on_bad_record: BadRecordPolicy::Stop,
            include_title: true,
            corpus_fields: CorpusFields::default(),
            query_fields: QueryFields::default(),
            qrels_fields: QrelsFields::default(),
            pair_fields: PairFields::default(),
            max_record_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Field names of corpus records.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorpusFields {
    /// Document id.
    pub id: String,
    /// Title (optional in the data).
    pub title: String,
    /// Text.
    pub text: String,
}
impl Default for CorpusFields {
    fn default() -> Self {
        Self { id: "_id".into(), title: "title".into(), text: "text".into() }
    }
}

/// Field names of query records.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryFields {
    /// Query id.
    pub id: String,
    /// Query text.
    pub text: String,
    /// Gold answers (optional): a list of strings in JSON, or one string. Left out of manifest.json
    /// at its default, so a run records the same config as before the field existed.
    #[serde(skip_serializing_if = "is_answers")]
    pub answers: String,
}
fn is_answers(s: &str) -> bool {
    s == "answers"
}

impl Default for QueryFields {
    fn default() -> Self {
        Self { id: "_id".into(), text: "text".into(), answers: "answers".into() }
    }
}

/// Field names of qrels records.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QrelsFields {
    /// Query id.
    pub query_id: String,
    /// Document id.
    pub doc_id: String,
    /// Relevance grade; > 0 means relevant. Optional in the data (missing = 1).
    pub score: String,
}
impl Default for QrelsFields {
    fn default() -> Self {
        Self { query_id: "query-id".into(), doc_id: "corpus-id".into(), score: "score".into() }
    }
}

/// Field names of pair records.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PairFields {
    /// Query text.
    pub query: String,
    /// Positive document text.
    pub positive: String,
}
impl Default for PairFields {
    fn default() -> Self {
        Self { query: "query".into(), positive: "positive".into() }
    }
}

/// Which embedding model to use and where ONNX Runtime lives.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// `all-minilm-l6-v2` (the pinned local model fetched by `tripletgen fetch-models`), or a
    /// model name that fastembed downloads from the Hugging Face hub (needs internet), e.g.
    /// `BAAI/bge-small-en-v1.5`. Ignored when `dir` is set.
    pub name: String,
    /// A folder with `model.onnx` and tokenizer files (tokenizer.json, config.json,
    /// special_tokens_map.json, tokenizer_config.json): any local ONNX sentence embedding model.
    pub dir: Option<PathBuf>,
    /// Pooling for `dir` models: `mean` or `cls`.
    pub pooling: Pooling,
    /// Path to libonnxruntime (>= 1.24). Else `$ORT_DYLIB_PATH`, else the fetched copy in the cache.
    pub onnxruntime: Option<PathBuf>,
    /// Folder where fetched models and the runtime are cached. Else `$TRIPLETGEN_CACHE`, else the
    /// user cache dir (`~/.cache/tripletgen`).
    pub cache_dir: Option<PathBuf>,
    /// Maximum tokens per text; longer texts are truncated (counted in the report). Remote providers
    /// truncate on the server, to the served model's own limit.
    pub max_length: usize,
    /// Where vectors are computed: `local` (ONNX Runtime here), `openai` (`POST {base_url}/embeddings`:
    /// OpenAI, vLLM, Infinity, Ollama, llama.cpp `--embedding`, TEI's OpenAI route) or `tei`
    /// (text-embeddings-inference's native `POST {base_url}/embed`). Remote: `name` is the model name
    /// sent to the server.
    #[serde(skip_serializing_if = "Provider::is_local")]
    pub provider: Provider,
    /// Remote: the server's base URL, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8080`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Remote: several servers instead of `base_url` (`[[model.endpoints]]` with `base_url` and
    /// optional `concurrency`, `requests_per_minute`, `tokens_per_minute`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<llm::EndpointConfig>,
    /// Remote (`openai`): output dimensions, for models that can shorten their vectors
    /// (text-embedding-3-*). Part of the cache key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<usize>,
    /// Remote: the environment variable holding the API key (never the key itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Remote: requests in flight at once (default 4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// Remote: client-side limit on requests per minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    /// Remote: client-side limit on tokens per minute (estimated from text length).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u32>,
    /// Remote: retries of a failed request (429, 5xx, timeouts, garbled answers; default 6).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Remote: timeout of one request in seconds (default 120).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<f64>,
    /// Remote: price per million input tokens, for the cost in the report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price_per_million_tokens: Option<f64>,
}
impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            name: "all-minilm-l6-v2".into(),
            dir: None,
            pooling: Pooling::Mean,
            onnxruntime: None,
            cache_dir: None,
            max_length: 256,
            provider: Provider::Local,
            base_url: None,
            endpoints: Vec::new(),
            dimensions: None,
            api_key_env: None,
            concurrency: None,
            requests_per_minute: None,
            tokens_per_minute: None,
            max_retries: None,
            timeout_secs: None,
            price_per_million_tokens: None,
        }
    }
}

impl ModelConfig {
    /// The HTTP client settings of a remote provider (`None` for `local`).
    pub fn http(&self) -> Option<llm::LlmConfig> {
        if self.provider.is_local() {
            return None;
        }
        let d = llm::LlmConfig::default();
        Some(llm::LlmConfig {
            base_url: self.base_url.clone().unwrap_or(d.base_url.clone()),
            endpoints: self.endpoints.clone(),
            model: self.name.clone(),
            api_key_env: self.api_key_env.clone(),
            concurrency: self.concurrency.unwrap_or(d.concurrency),
            requests_per_minute: self.requests_per_minute,
            tokens_per_minute: self.tokens_per_minute,
            max_retries: self.max_retries.unwrap_or(d.max_retries),
            timeout_secs: self.timeout_secs.unwrap_or(d.timeout_secs),
            price_per_million_input: self.price_per_million_tokens,
            ..d
        })
    }
}

/// Where embedding vectors are computed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    /// ONNX Runtime on this machine.
    #[default]
    Local,
    /// An OpenAI-compatible `/embeddings` endpoint.
    Openai,
    /// text-embeddings-inference's native `/embed`.
    Tei,
}

impl Provider {
    fn is_local(&self) -> bool {
        *self == Provider::Local
    }

    /// The spelling in configs and model ids.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Local => "local",
            Provider::Openai => "openai",
            Provider::Tei => "tei",
        }
    }
}

/// Pooling of token embeddings into one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// Mean over tokens (sentence-transformers MiniLM, e5).
    Mean,
    /// The [CLS] token (bge).
    Cls,
}

/// Embedding batching, threads and prompts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbedConfig {
    /// Texts per batch: per request to a remote server; for a local model, per stored batch (and per
    /// ONNX Runtime call when `batch_invariant` is off).
    pub batch_size: usize,
    /// Local model: run each text through ONNX Runtime on its own, so that its vector depends on the
    /// text alone. The default model quantises activations dynamically, with one scale per call: in a
    /// batch, a text's vector would shift slightly with its batch mates, and a refresh (which embeds
    /// only new texts) would not equal a full run. Measured: as fast as batches of 32 for passages,
    /// ~1.8x slower for short queries (BENCHMARKS.md).
    pub batch_invariant: bool,
    /// ONNX Runtime intra-op threads (0 = all cores).
    pub threads: usize,
    /// Prefix for queries (e.g. `"query: "` for e5).
    pub query_prefix: String,
    /// Prefix for documents (e.g. `"passage: "` for e5).
    pub document_prefix: String,
    /// Sort texts by length before batching (less padding; the output order is unchanged): by token
    /// count for a local model, by characters for a remote one.
    pub sort_by_length: bool,
}
impl Default for EmbedConfig {
    fn default() -> Self {
        Self {
            batch_size: 32,
            batch_invariant: true,
            threads: 2,
            query_prefix: String::new(),
            document_prefix: String::new(),
            sort_by_length: true,
        }
    }
}

/// Which search structure to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum IndexKind {
    /// Exact below `exact_below` documents, HNSW above.
    Auto,
    /// Brute-force search (exactly right).
    Exact,
    /// HNSW graph (approximate, fast on large corpora).
    Hnsw,
}

/// The work queue of a PostgreSQL workspace: `tripletgen run` queues the embedding of what the
/// workspace misses as units, and `tripletgen worker` processes on any machines work on them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Queue work on a PostgreSQL workspace (false: the run does everything itself, as on SQLite).
    pub enabled: bool,
    /// Texts per embedding unit.
    pub embed_unit: usize,
    /// LLM calls per unit (query generation).
    pub llm_unit: usize,
    /// (query, passage) pairs per judge unit.
    pub judge_unit: usize,
    /// Seconds a claimed unit stays with its worker unless renewed; a worker renews the lease of
    /// the unit it works on every third of this, so only a dead or cut-off worker loses it.
    pub lease_seconds: f64,
    /// Claims of one unit before it fails for good (and the run with it).
    pub max_attempts: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self { enabled: true, embed_unit: 256, llm_unit: 32, judge_unit: 64, lease_seconds: 60.0, max_attempts: 5 }
    }
}

/// Nearest-neighbour index settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexConfig {
    /// `auto`, `exact` or `hnsw`.
    pub kind: IndexKind,
    /// With `auto`, corpora smaller than this use exact search.
    pub exact_below: usize,
    /// HNSW: links per node (2..=256).
    pub m: usize,
    /// HNSW: candidate list size while building.
    pub ef_construction: usize,
    /// HNSW: candidate list size while searching (raised to k when k is larger); 0 = auto:
    /// 128 up to 100k documents, 128 × sqrt(n / 100k) above (recall falls with n at a fixed value).
    pub ef_search: usize,
    /// Measure HNSW recall against exact search on this many sampled queries (0 = off).
    pub recall_sample: usize,
    /// HNSW: build with hnsw_rs's parallel insertion (faster on several cores, but the graph, and
    /// so the mined negatives, may differ between runs).
    pub parallel_build: bool,
    /// HNSW: keep the graph in the workspace and update it on the next run (insert new documents,
    /// skip gone ones) instead of building it again.
    pub persist: bool,
    /// HNSW: rebuild instead of updating once (gone + inserted since the last build) / nodes would
    /// pass this share.
    pub rebuild_share: f64,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            kind: IndexKind::Auto,
            exact_below: 50_000,
            m: 16,
            ef_construction: 200,
            ef_search: 0,
            recall_sample: 0,
            parallel_build: false,
            persist: true,
            rebuild_share: 0.2,
        }
    }
}

/// How negatives are picked among the allowed candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Sampling {
    /// The highest-scoring allowed candidates.
    Top,
    /// A seeded random sample of the allowed candidates.
    Random,
}

/// Hard-negative mining rules (a superset of sentence-transformers' `mine_hard_negatives`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MineConfig {
    /// Negatives per (query, positive) pair.
    pub num_negatives: usize,
    /// Skip the first `range_min` candidates (ranked by score, positives removed).
    pub range_min: usize,
    /// Consider only the first `range_max` candidates.
    pub range_max: usize,
    /// `top` or `random`.
    pub sampling: Sampling,
    /// Seed for random sampling.
    pub seed: u64,
    /// Keep a negative only if `score <= positive_score - absolute_margin`.
    pub absolute_margin: Option<f32>,
    /// Keep a negative only if `score <= positive_score - |positive_score| * relative_margin`
    /// (NV-Retriever's TopK-PercPos; 0.05 = below 95 % of the positive). `false` turns it off.
    #[serde(deserialize_with = "number_or_off")]
    pub relative_margin: Option<f32>,
    /// Drop candidates scoring above this.
    pub max_score: Option<f32>,
    /// Drop candidates scoring below this.
    pub min_score: Option<f32>,
    /// Compare texts after trimming, folding whitespace and case when excluding candidates whose
    /// text equals a positive or the query.
    pub normalize_text_match: bool,
    /// Write `review.jsonl`: per pair, every candidate scoring above the positive (or within
    /// `review_margin` below it) with ids, texts, scores, ranks and the rule that removed it — the
    /// candidates most likely to be false negatives.
    pub review: bool,
    /// How far below the positive's score a candidate still counts as suspicious (0 = only those
    /// scoring above it).
    pub review_margin: f32,
    /// Where candidates come from: `dense` (the embedding index) and/or `bm25` (a tantivy index kept
    /// in the workspace). With both, their lists are fused (`fusion`); the rules always use the
    /// dense model's scores.
    pub retrievers: Vec<Retriever>,
    /// How two retrievers' candidate lists are merged.
    pub fusion: Fusion,
    /// Reciprocal rank fusion: a candidate scores the sum of 1 / (rrf_k + rank) over the lists.
    pub rrf_k: u32,
}

/// A candidate retriever for mining.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Retriever {
    /// The embedding index (exact or HNSW).
    Dense,
    /// BM25 over the corpus text.
    Bm25,
}

impl Retriever {
    /// The name in config, provenance and reports.
    pub fn name(self) -> &'static str {
        match self {
            Retriever::Dense => "dense",
            Retriever::Bm25 => "bm25",
        }
    }
}

/// How candidate lists of several retrievers are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fusion {
    /// Reciprocal rank fusion (Cormack et al. 2009), ties by document order.
    Rrf,
    /// Alternate the lists (first retriever first), skipping documents already taken.
    Interleave,
}
impl MineConfig {
    /// BM25 is among the retrievers (it needs its index, and provenance and reports say which
    /// retriever found each negative).
    pub fn uses_bm25(&self) -> bool {
        self.retrievers.contains(&Retriever::Bm25)
    }
}

impl Default for MineConfig {
    fn default() -> Self {
        Self {
            num_negatives: 5,
            range_min: 0,
            range_max: 50,
            sampling: Sampling::Top,
            seed: 42,
            absolute_margin: None,
            relative_margin: Some(0.05),
            max_score: None,
            min_score: None,
            normalize_text_match: true,
            review: false,
            review_margin: 0.0,
            retrievers: vec![Retriever::Dense],
            fusion: Fusion::Rrf,
            rrf_k: 60,
        }
    }
}

/// Query generation settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerateConfig {
    /// LLM-free variants of the given queries.
    pub lexical: LexicalConfig,
    /// LLM strategies (need an `[llm]` section).
    pub llm: LlmGenerateConfig,
}

/// An LLM generation strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LlmStrategy {
    /// GPL/InPars-style synthetic queries written from a document.
    Synthetic,
    /// Paraphrases of queries (given and accepted synthetic ones).
    Paraphrase,
    /// Translation to a pivot language and back (two calls).
    Backtranslation,
    /// Contextual word substitution: content words are marked and the model replaces them in
    /// context (the LLM form of the masked-language-model "BERT" augmentation).
    Contextual,
}

impl LlmStrategy {
    /// The name used in config, ids and reports.
    pub fn name(self) -> &'static str {
        match self {
            LlmStrategy::Synthetic => "synthetic",
            LlmStrategy::Paraphrase => "paraphrase",
            LlmStrategy::Contextual => "contextual",
            LlmStrategy::Backtranslation => "backtranslation",
        }
    }
}

/// Which documents get synthetic queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DocumentSelection {
    /// Every document.
    All,
    /// Only documents that are a positive of some given query.
    Positives,
}

/// LLM query generation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmGenerateConfig {
    /// Strategies to run; empty turns LLM generation off.
    pub strategies: Vec<LlmStrategy>,
    /// synthetic: queries asked for per call (one call per document and style).
    pub queries_per_document: usize,
    /// synthetic: query styles, one call each: `question`, `keywords`, `claim` (or your own word,
    /// used as is in the prompt).
    pub styles: Vec<String>,
    /// synthetic: aim for this many queries per document, counting its given queries (0 = off: every
    /// selected document gets `queries_per_document` per style). Documents with enough given
    /// queries get no call.
    pub target_queries_per_document: usize,
    /// synthetic: `all` documents or only `positives` of given queries.
    pub documents: DocumentSelection,
    /// synthetic: at most this many documents (the first ones, in input order).
    pub max_documents: Option<usize>,
    /// synthetic: few-shot examples, JSONL `{"document": "...", "query": "..."}`.
    pub few_shot: Option<PathBuf>,
    /// synthetic: how many few-shot examples go into each prompt.
    pub few_shot_count: usize,
    /// Documents longer than this many characters are cut (at a word boundary) in prompts.
    pub max_document_chars: usize,
    /// paraphrase: paraphrases asked for per query.
    pub paraphrases_per_query: usize,
    /// contextual: versions asked for per query.
    pub contextual_per_query: usize,
    /// contextual: share of a query's content words marked for in-context replacement (at least one).
    pub contextual_rate: f32,
    /// backtranslation: pivot languages (two calls each per query).
    pub pivot_languages: Vec<String>,
    /// backtranslation: the language of the queries.
    pub source_language: String,
    /// Folder with `synthetic.txt`, `paraphrase.txt`, `translate.txt` prompt templates, and
    /// optionally `contextual.txt` (default: the templates of configs/prompts/ built into the
    /// binary). The template's hash is part of every cache key.
    pub prompts_dir: Option<PathBuf>,
}

impl Default for LlmGenerateConfig {
    fn default() -> Self {
        Self {
            strategies: Vec::new(),
            queries_per_document: 3,
            styles: vec!["question".into()],
            target_queries_per_document: 0,
            documents: DocumentSelection::All,
            max_documents: None,
            few_shot: None,
            few_shot_count: 3,
            max_document_chars: 2000,
            paraphrases_per_query: 2,
            contextual_per_query: 2,
            contextual_rate: 0.3,
            pivot_languages: vec!["French".into()],
            source_language: "English".into(),
            prompts_dir: None,
        }
    }
}

/// A lexical augmentation strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LexicalStrategy {
    /// Replace words by WordNet synonyms.
    Synonym,
    /// Replace words by WordNet hypernyms (more general terms).
    Hypernym,
    /// Replace words by their nearest neighbours in an embedding space.
    EmbeddingNeighbour,
    /// Insert synonyms of words at random positions (EDA).
    RandomInsert,
    /// Delete random words (EDA).
    RandomDelete,
    /// Swap random pairs of words (EDA).
    RandomSwap,
    /// Replace words by what a masked language model predicts in their place (`mlm_dir`).
    Contextual,
}

impl LexicalStrategy {
    /// Every strategy, in a stable order.
    pub const ALL: [LexicalStrategy; 7] = [
        LexicalStrategy::Synonym,
        LexicalStrategy::Hypernym,
        LexicalStrategy::EmbeddingNeighbour,
        LexicalStrategy::RandomInsert,
        LexicalStrategy::RandomDelete,
        LexicalStrategy::RandomSwap,
        LexicalStrategy::Contextual,
    ];

    /// The name used in config, ids and reports.
    pub fn name(self) -> &'static str {
        match self {
            LexicalStrategy::Synonym => "synonym",
            LexicalStrategy::Hypernym => "hypernym",
            LexicalStrategy::EmbeddingNeighbour => "embedding-neighbour",
            LexicalStrategy::RandomInsert => "random-insert",
            LexicalStrategy::RandomDelete => "random-delete",
            LexicalStrategy::RandomSwap => "random-swap",
            LexicalStrategy::Contextual => "contextual",
        }
    }

    /// True for the strategies that need WordNet: to draw words from, or, with the meaning guard,
    /// to check the words another source proposes for antonyms.
    pub fn needs_wordnet(self, meaning_guard: bool) -> bool {
        match self {
            LexicalStrategy::Synonym | LexicalStrategy::Hypernym | LexicalStrategy::RandomInsert => true,
            LexicalStrategy::EmbeddingNeighbour | LexicalStrategy::Contextual => meaning_guard,
            LexicalStrategy::RandomDelete | LexicalStrategy::RandomSwap => false,
        }
    }
}

/// The strategy a generated query came from: one of the lexical or LLM strategies. Serialised as
/// its name, and ordered by name (so per-strategy tables read alphabetically, as they always have).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// An LLM-free strategy.
    Lexical(LexicalStrategy),
    /// An LLM strategy.
    Llm(LlmStrategy),
}

impl Strategy {
    /// The name used in config, ids, outputs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Lexical(s) => s.name(),
            Strategy::Llm(s) => s.name(),
        }
    }
}

impl Ord for Strategy {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name().cmp(other.name())
    }
}

impl PartialOrd for Strategy {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Strategy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// LLM-free query variants.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LexicalConfig {
    /// Strategies to run; empty turns lexical generation off.
    pub strategies: Vec<LexicalStrategy>,
    /// Candidates per query and strategy.
    pub variants_per_query: usize,
    /// Seed (each candidate gets its own stream from the seed, the query text, strategy and number).
    pub seed: u64,
    /// Folder with the WordNet 3.0 database (index.noun, data.noun, …). Else `$WORDNET_DIR`, else
    /// the fetched copy in the cache, else /usr/share/wordnet.
    pub wordnet_dir: Option<PathBuf>,
    /// A file of stop words, one per line (replaces the built-in English list).
    pub stopwords: Option<PathBuf>,
    /// Share of eligible words replaced by synonym/hypernym/neighbour strategies (at least one).
    pub replace_rate: f32,
    /// How many of a word's most frequent WordNet senses to draw synonyms and hypernyms from.
    pub senses: usize,
    /// random-insert: insertions per word (at least one).
    pub insert_rate: f32,
    /// random-delete: probability of deleting each word (at least one is deleted, one kept).
    pub delete_rate: f32,
    /// random-swap: swaps per word (at least one).
    pub swap_rate: f32,
    /// embedding-neighbour: neighbours considered per word.
    pub neighbour_k: usize,
    /// embedding-neighbour: minimum cosine similarity of a replacement word.
    pub neighbour_min_similarity: f32,
    /// embedding-neighbour: word vectors in GloVe/word2vec text format ("word v1 v2 …"). Without it,
    /// the embedding model embeds the corpus vocabulary (cached like any embedding).
    pub word_vectors: Option<PathBuf>,
    /// embedding-neighbour: vocabulary size (most frequent corpus and query words).
    pub vocabulary_size: usize,
    /// Reject replacements that are WordNet antonyms (reason `antonym`), leave comparatives and
    /// superlatives alone, and never generalise a named entity to its class. Needs WordNet for
    /// embedding-neighbour and contextual too.
    pub meaning_guard: bool,
    /// contextual: an ONNX masked language model folder (`model.onnx` with a `logits` output,
    /// `tokenizer.json`), e.g. a BERT, DistilBERT or RoBERTa `*ForMaskedLM` export.
    pub mlm_dir: Option<PathBuf>,
    /// contextual: the model's best whole words considered per masked word.
    pub contextual_k: usize,
}

impl LexicalConfig {
    /// True when a configured strategy needs WordNet.
    pub fn needs_wordnet(&self) -> bool {
        self.strategies.iter().any(|s| s.needs_wordnet(self.meaning_guard))
    }
}

impl Default for LexicalConfig {
    fn default() -> Self {
        Self {
            strategies: Vec::new(),
            variants_per_query: 1,
            seed: 42,
            wordnet_dir: None,
            stopwords: None,
            replace_rate: 0.3,
            senses: 2,
            insert_rate: 0.1,
            delete_rate: 0.1,
            swap_rate: 0.1,
            neighbour_k: 10,
            neighbour_min_similarity: 0.7,
            word_vectors: None,
            vocabulary_size: 20_000,
            meaning_guard: true,
            mlm_dir: None,
            contextual_k: 5,
        }
    }
}

/// Quality control of generated variants: every rejected candidate is kept with its reason.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// Reject a variant whose cosine similarity to its source is below this (meaning drifted).
    pub fidelity_min: f32,
    /// Reject a variant whose cosine similarity to its source is above this (adds nothing).
    pub fidelity_max: f32,
    /// Queries generated from a document: reject below this cosine similarity to the document.
    pub document_fidelity_min: f32,
    /// Queries generated from a document: reject above this cosine similarity to the document.
    pub document_fidelity_max: f32,
    /// Reject a variant this similar (cosine) to an already accepted variant of the same source.
    pub dedup_cosine: f32,
    /// Reject variants with fewer words.
    pub min_words: usize,
    /// Reject variants with more words.
    pub max_words: usize,
    /// Round-trip consistency: keep a variant only if one of its positives is among its top k
    /// documents (0 = off).
    pub round_trip_k: usize,
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self {
            fidelity_min: 0.75,
            fidelity_max: 0.995,
            document_fidelity_min: 0.3,
            document_fidelity_max: 0.98,
            dedup_cosine: 0.98,
            min_words: 1,
            max_words: 64,
            round_trip_k: 20,
        }
    }
}

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Parquet (anchor, positive, negative): one row per negative.
    Triplet,
    /// Parquet (anchor, positive, negative_1..negative_n): one row per pair with n negatives.
    NTuple,
    /// Parquet (anchor, text, label): the positive with label 1, each negative with 0.
    LabeledPair,
    /// Parquet (anchor, texts, labels): one row per pair, lists.
    LabeledList,
    /// FlagEmbedding JSONL {"query", "pos", "neg", "pos_scores", "neg_scores"}.
    FlagJsonl,
    /// Tevatron JSONL {"query_id", "query", "positive_passages", "negative_passages"}.
    Tevatron,
    /// A BEIR folder `beir/` (corpus.jsonl, queries.jsonl with generated queries, qrels/train.tsv).
    Beir,
}

impl Format {
    /// Every format, in a stable order.
    pub const ALL: [Format; 7] = [
        Format::Triplet,
        Format::NTuple,
        Format::LabeledPair,
        Format::LabeledList,
        Format::FlagJsonl,
        Format::Tevatron,
        Format::Beir,
    ];

    /// The name used in config and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::Triplet => "triplet",
            Format::NTuple => "n-tuple",
            Format::LabeledPair => "labeled-pair",
            Format::LabeledList => "labeled-list",
            Format::FlagJsonl => "flag-jsonl",
            Format::Tevatron => "tevatron",
            Format::Beir => "beir",
        }
    }

    /// Parse a command-line name.
    pub fn parse(s: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == s)
    }
}

/// The contamination guard: evaluation sets (BEIR folders) kept out of the training data.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExcludeEvalConfig {
    /// BEIR folders of evaluation sets (`--exclude-eval DIR` adds one). Empty: the guard is off.
    pub dirs: Vec<PathBuf>,
    /// The qrels split of the evaluation sets whose queries and documents are kept out.
    pub split: String,
    /// Remove a training query whose cosine to an evaluation query is at least this (queries with
    /// the same normalised text always go).
    pub max_cosine: f32,
    /// Also keep the evaluation queries' relevant documents out of positives and negatives.
    pub documents: bool,
    /// Removed queries listed in the report.
    pub examples: usize,
}

impl Default for ExcludeEvalConfig {
    fn default() -> Self {
        Self { dirs: Vec::new(), split: "test".into(), max_cosine: 0.9, documents: true, examples: 10 }
    }
}

/// Where and what to write.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Output folder.
    pub dir: PathBuf,
    /// One or more formats.
    pub formats: Vec<Format>,
    /// Rows per Parquet row group.
    pub row_group_size: usize,
    /// Scores written as `pos_scores`/`neg_scores` (FlagEmbedding) and in the score columns:
    /// `retriever` (the embedding model's cosine) or `judge` (the last judge of the cascade scores
    /// every positive and negative: teacher scores for MarginMSE-style distillation).
    #[serde(skip_serializing_if = "ScoreSource::is_retriever")]
    pub scores: ScoreSource,
}
impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("out"),
            formats: vec![Format::Triplet],
            row_group_size: 65_536,
            scores: ScoreSource::Retriever,
        }
    }
}

impl ScoreSource {
    /// The default (left out of manifest.json, so runs without a judge record the same config).
    pub fn is_retriever(&self) -> bool {
        *self == ScoreSource::Retriever
    }
}

/// Where written scores come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ScoreSource {
    /// The embedding model's cosine similarity.
    #[default]
    Retriever,
    /// The last judge of the cascade.
    Judge,
}

impl Config {
    /// Read and parse a TOML file (unknown keys and wrong types are refused). Relative paths in the
    /// file are resolved against the file's folder. Call [`Config::validate`] after applying
    /// command-line overrides.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let mut cfg: Config = toml::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.resolve_paths(base);
        Ok(cfg)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut Option<PathBuf>| {
            if let Some(x) = p.as_mut()
                && x.is_relative()
            {
                *x = clean_path(&base.join(&*x));
            }
        };
        fix(&mut self.input.beir);
        fix(&mut self.input.corpus);
        fix(&mut self.input.queries);
        fix(&mut self.input.qrels);
        fix(&mut self.input.pairs);
        fix(&mut self.model.dir);
        fix(&mut self.model.onnxruntime);
        fix(&mut self.model.cache_dir);
        if let Some(crate::workspace::Location::Dir(d)) = self.workspace.as_mut()
            && d.is_relative()
        {
            *d = clean_path(&base.join(&*d));
        }
        fix(&mut self.generate.lexical.wordnet_dir);
        fix(&mut self.generate.lexical.stopwords);
        fix(&mut self.generate.lexical.word_vectors);
        fix(&mut self.generate.lexical.mlm_dir);
        fix(&mut self.generate.llm.few_shot);
        fix(&mut self.generate.llm.prompts_dir);
        for d in &mut self.exclude_eval.dirs {
            if d.is_relative() {
                *d = clean_path(&base.join(&*d));
            }
        }
        if let Some(j) = self.judge.as_mut() {
            for st in &mut j.stages {
                fix(&mut st.dir);
                fix(&mut st.prompt);
            }
        }
        if self.output.dir.is_relative() {
            self.output.dir = clean_path(&base.join(&self.output.dir));
        }
    }

    /// Where the workspace is.
    pub fn workspace_location(&self) -> crate::workspace::Location {
        self.workspace.clone().unwrap_or_else(|| crate::workspace::Location::Dir(self.output.dir.join("workspace")))
    }
}

/// Remove `.` and resolve `..` lexically, so paths read well in messages (`configs/../x` -> `x`).
fn clean_path(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() { PathBuf::from(".") } else { out }
}

/// A number, or `"off"` (TOML has no null; `false`, the spelling of earlier versions, is read too).
fn number_or_off<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrOff {
        Number(f32),
        Off(bool),
        Word(String),
    }
    match NumberOrOff::deserialize(d)? {
        NumberOrOff::Number(x) => Ok(Some(x)),
        NumberOrOff::Off(false) => Ok(None),
        NumberOrOff::Word(w) if w == OFF => Ok(None),
        _ => Err(serde::de::Error::custom("expected a number, or \"off\" to turn it off")),
    }
}

/// The one spelling of "turned off" for optional thresholds: in the config (`relative_margin =
/// "off"`), on the command line (`--relative-margin off`) and in report.html.
pub const OFF: &str = "off";

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, String> {
        toml::from_str::<Config>(s).map_err(|e| e.to_string())
    }

    #[test]
    fn unknown_key_is_refused_with_its_name() {
        let e = parse("[index]\nmm = 3\n").unwrap_err();
        assert!(e.contains("mm"), "{e}");
    }

    #[test]
    fn relative_margin_can_be_turned_off() {
        assert_eq!(parse("[mine]\nrelative_margin = false\n").unwrap().mine.relative_margin, None);
        assert_eq!(parse("[mine]\nrelative_margin = \"off\"\n").unwrap().mine.relative_margin, None);
        assert!(parse("[mine]\nrelative_margin = \"none\"\n").is_err());
        assert_eq!(parse("[mine]\nrelative_margin = 0.1\n").unwrap().mine.relative_margin, Some(0.1));
        assert_eq!(parse("").unwrap().mine.relative_margin, Some(0.05));
        assert!(parse("[mine]\nrelative_margin = true\n").is_err());
    }

    #[test]
    fn wrong_type_is_refused_with_key() {
        let e = parse("[index]\nm = \"sixteen\"\n").unwrap_err();
        assert!(e.contains("index") || e.contains('m'), "{e}");
        assert!(e.contains("line 2"), "{e}");
    }

    fn valid_base() -> Config {
        let dir = env!("CARGO_MANIFEST_DIR");
        let mut c = Config::default();
        c.input.beir = Some(PathBuf::from(dir).join("fixtures/quickstart"));
        c
    }

    #[test]
    fn impossible_values_name_the_key() {
        let mut c = valid_base();
        c.index.m = 300;
        let e = c.validate("x.toml").unwrap_err().to_string();
        assert!(e.contains("index.m") && e.contains("x.toml") && e.contains("256"), "{e}");

        let mut c = valid_base();
        c.mine.range_min = 60;
        c.mine.range_max = 50;
        let e = c.validate("x.toml").unwrap_err().to_string();
        assert!(e.contains("mine.range_min") && e.contains("50"), "{e}");

        let mut c = valid_base();
        c.model.onnxruntime = Some("/nonexistent/libonnxruntime.so".into());
        let e = c.validate("x.toml").unwrap_err().to_string();
        assert!(e.contains("model.onnxruntime"), "{e}");

        let mut c = valid_base();
        c.mine.review_margin = -0.1;
        let e = c.validate("x.toml").unwrap_err().to_string();
        assert!(e.contains("mine.review_margin") && e.contains("0 to 2"), "{e}");

        let mut c = valid_base();
        c.input.split = "nosuch".into();
        let e = c.validate("x.toml").unwrap_err().to_string();
        assert!(e.contains("input.split") && e.contains("test"), "{e}");
    }

    #[test]
    fn defaults_validate_on_the_fixture() {
        let mut c = valid_base();
        c.validate("x.toml").unwrap();
        assert!(c.input.qrels.unwrap().ends_with("qrels/test.tsv"));
    }
}
