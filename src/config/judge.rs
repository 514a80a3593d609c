//! The `[judge]` section (`JudgeConfig`) and its stages (`[[judge.stages]]`), with their checks;
//! the judge stage itself is `crate::judge`, which re-exports these types.

use super::ConfigError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The kind of a judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum JudgeKind {
    /// An OpenAI-compatible chat model asked for a graded relevance label (`[llm]` connection).
    Llm,
    /// A cross-encoder: a local ONNX reranker folder (`dir`) or an HTTP rerank API (`url`).
    CrossEncoder,
    /// A second embedding model (ONNX folder) as teacher: cosine of query and passage.
    Embedding,
}

impl JudgeKind {
    /// The name in configs and reports.
    pub fn name(self) -> &'static str {
        match self {
            JudgeKind::Llm => "llm",
            JudgeKind::CrossEncoder => "cross-encoder",
            JudgeKind::Embedding => "embedding",
        }
    }
}

/// The HTTP rerank APIs a `cross-encoder` judge with a `url` can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RerankApi {
    /// Hugging Face text-embeddings-inference: `POST {url}/rerank` with `{query, texts}`.
    #[default]
    Tei,
    /// Cohere / Jina / vLLM style: `POST {url}/rerank` with `{model, query, documents}`
    /// (`url` usually ends in `/v1`).
    Cohere,
    /// vLLM's score API: `POST {url}/score` with `{model, text_1, text_2}`.
    VllmScore,
}

/// What happens to a candidate judged relevant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum JudgeAction {
    /// Never a negative of that query.
    #[default]
    Drop,
    /// Never a negative, and an extra positive of that query in the labeled-pair, labeled-list and
    /// FlagEmbedding outputs and in `qrels.judged.tsv`.
    Relabel,
}

/// One judge of the cascade (`[[judge.stages]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// The kind of judge.
    pub kind: JudgeKind,
    /// Relevant when the score (0-1; a probability for LLM and cross-encoder, the cosine for an
    /// embedding teacher) is at least this. Default: 0.5 (llm, cross-encoder), 0.75 (embedding).
    #[serde(default)]
    pub threshold: Option<f32>,
    /// llm: the threshold for items shown their query's answer (`answer_prompt`). Default 0.65: a
    /// small model shown an answer says yes more readily (BENCHMARKS.md, "Judge").
    #[serde(default)]
    pub answer_threshold: Option<f32>,
    /// For every stage but the last: a score below this clears the candidate here (it is a
    /// negative); at or above it goes to the next stage. Default: the stage's threshold.
    #[serde(default)]
    pub clear_below: Option<f32>,
    /// llm: model name overriding `llm.model` (e.g. a cheap screen and a strong final judge).
    #[serde(default)]
    pub model: Option<String>,
    /// llm: base URL overriding `llm.base_url`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// llm: the prompt template (default: the built-in copy of configs/prompts/judge.txt), with
    /// `{query}` and `{passage}`.
    #[serde(default)]
    pub prompt: Option<PathBuf>,
    /// llm: the prompt used when the query's answer is known (given, or read from its positive by
    /// `judge.derive_answers`), with `{query}`, `{answer}` and `{passage}` (default: the built-in
    /// copy of configs/prompts/judge_answer.txt).
    #[serde(default)]
    pub answer_prompt: Option<PathBuf>,
    /// cross-encoder / embedding: a local ONNX model folder (model.onnx, tokenizer.json,
    /// config.json, special_tokens_map.json, tokenizer_config.json).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// cross-encoder: an HTTP rerank endpoint instead of a folder (e.g. `http://127.0.0.1:8080` for
    /// TEI, `https://api.cohere.com/v2`, `http://127.0.0.1:8000/v1` for vLLM).
    #[serde(default)]
    pub url: Option<String>,
    /// cross-encoder with `url`: which API it speaks.
    #[serde(default)]
    pub api: Option<RerankApi>,
    /// cross-encoder with `url`: name of the environment variable holding the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Tokens per (query, passage) for local models (truncated beyond). Default 512.
    #[serde(default)]
    pub max_length: Option<usize>,
    /// Pairs per ONNX batch or HTTP request. Default 32.
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Passages are cut at this many characters before an LLM or HTTP judge sees them.
    /// Default 4000.
    #[serde(default)]
    pub max_passage_chars: Option<usize>,
}

impl StageConfig {
    /// A stage of `kind` with every setting at its default.
    pub fn of(kind: JudgeKind) -> Self {
        StageConfig {
            kind,
            threshold: None,
            answer_threshold: None,
            clear_below: None,
            model: None,
            base_url: None,
            prompt: None,
            answer_prompt: None,
            dir: None,
            url: None,
            api: None,
            api_key_env: None,
            max_length: None,
            batch_size: None,
            max_passage_chars: None,
        }
    }
    /// True when this stage's calls cost money or a remote server's time (an LLM, an HTTP API).
    pub fn paid(&self) -> bool {
        self.kind == JudgeKind::Llm || self.url.is_some()
    }
    /// The threshold in force.
    pub fn threshold(&self) -> f32 {
        self.threshold.unwrap_or(match self.kind {
            JudgeKind::Embedding => 0.75,
            _ => 0.5,
        })
    }
    /// The threshold in force for items shown their query's answer.
    pub fn answer_threshold(&self) -> f32 {
        self.answer_threshold.unwrap_or(0.65)
    }
    /// The screening bound in force.
    pub fn clear_below(&self) -> f32 {
        self.clear_below.unwrap_or_else(|| self.threshold())
    }
    pub(crate) fn batch_size(&self) -> usize {
        self.batch_size.unwrap_or(32)
    }
    pub(crate) fn max_passage_chars(&self) -> usize {
        self.max_passage_chars.unwrap_or(4000)
    }
}

/// The `[judge]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JudgeConfig {
    /// The cascade, cheapest first. Empty: only the gold-answer rule applies.
    pub stages: Vec<StageConfig>,
    /// What happens to a candidate judged relevant.
    pub action: JudgeAction,
    /// Drop every pair of a query for which more than this many candidates were judged relevant
    /// (an ambiguous or too general query; RLHN uses 8). 0: never.
    pub drop_query_above: usize,
    /// Candidates judged per pair on the first pass beyond `num_negatives` (a margin for the ones
    /// that will be judged relevant, so fewer passes are needed).
    pub window: usize,
    /// Most calls to paid judges (LLM, HTTP) in one run; 0: no limit. Cached verdicts are free.
    pub max_calls: u64,
    /// Apply the gold-answer rule when queries carry `answers`.
    pub gold_answers: bool,
    /// For queries without answers: ask the LLM (`[llm]`, or the model of the last `llm` stage) for
    /// the answer span in each of the query's positives, once per (query, positive), stored in the
    /// workspace. A span found verbatim in its positive is used like a gold answer: candidates
    /// containing it skip the screens, and the LLM judge is shown it.
    pub derive_answers: bool,
    /// The prompt that asks for the answer span, with `{query}` and `{passage}` (default: the
    /// built-in copy of configs/prompts/answer.txt).
    pub derive_prompt: Option<PathBuf>,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        JudgeConfig {
            stages: Vec::new(),
            action: JudgeAction::Drop,
            drop_query_above: 0,
            window: 0,
            max_calls: 0,
            gold_answers: true,
            derive_answers: false,
            derive_prompt: None,
        }
    }
}

impl JudgeConfig {
    /// Check every stage; errors name the key (`judge.stages[i].…`) and `origin`.
    pub fn validate(&self, origin: &str, has_llm: bool) -> Result<(), ConfigError> {
        let bad = |key: String, message: String| ConfigError::Invalid { origin: origin.to_string(), key, message };
        if self.derive_answers && !has_llm {
            return Err(bad(
                "judge.derive_answers".into(),
                "is true but there is no [llm] section naming the server that reads the answers".into(),
            ));
        }
        if let Some(p) = &self.derive_prompt
            && !p.is_file()
        {
            return Err(bad("judge.derive_prompt".into(), format!("is {}, which is not a file", p.display())));
        }
        for (i, st) in self.stages.iter().enumerate() {
            let key = |k: &str| format!("judge.stages[{i}].{k}");
            let (lo, hi) = if st.kind == JudgeKind::Embedding { (-1.0, 1.0) } else { (0.0, 1.0) };
            for (k, v) in [
                ("threshold", st.threshold),
                ("clear_below", st.clear_below),
                ("answer_threshold", st.answer_threshold),
            ] {
                if let Some(v) = v
                    && !(v.is_finite() && (lo..=hi).contains(&v))
                {
                    return Err(bad(key(k), format!("is {v}; valid: {lo} to {hi}")));
                }
            }
            if st.clear_below() > st.threshold() && i + 1 < self.stages.len() {
                return Err(bad(
                    key("clear_below"),
                    format!(
                        "is {} above the threshold {}: a candidate this stage flags would be cleared",
                        st.clear_below(),
                        st.threshold()
                    ),
                ));
            }
            let (needs_dir, allows_url) = match st.kind {
                JudgeKind::Llm => {
                    if !has_llm {
                        return Err(bad(
                            key("kind"),
                            "is \"llm\" but there is no [llm] section naming the server".into(),
                        ));
                    }
                    (false, false)
                }
                JudgeKind::CrossEncoder => {
                    if st.dir.is_some() == st.url.is_some() {
                        return Err(bad(
                            key("dir"),
                            "a cross-encoder needs exactly one of `dir` (ONNX reranker folder) and `url` (HTTP rerank API)".into(),
                        ));
                    }
                    (false, true)
                }
                JudgeKind::Embedding => (true, false),
            };
            if needs_dir && st.dir.is_none() {
                return Err(bad(key("dir"), "is missing: name an ONNX embedding model folder".into()));
            }
            if let Some(d) = &st.dir {
                if st.kind == JudgeKind::Llm {
                    return Err(bad(key("dir"), "is for cross-encoder and embedding judges".into()));
                }
                for f in super::MODEL_FILES {
                    if !d.join(f).is_file() {
                        return Err(bad(key("dir"), format!("is {}, which has no {f}", d.display())));
                    }
                }
            }
            if st.url.is_some() && !allows_url {
                return Err(bad(key("url"), "is only for cross-encoder judges (HTTP rerank APIs)".into()));
            }
            if let Some(u) = &st.url {
                match reqwest::Url::parse(u) {
                    Ok(p) if !p.username().is_empty() || p.password().is_some() => {
                        return Err(bad(
                            key("url"),
                            "contains a user name or password: put the key in the variable api_key_env names".into(),
                        ));
                    }
                    Ok(p) if matches!(p.scheme(), "http" | "https") => {}
                    _ => return Err(bad(key("url"), format!("is {u:?}, not an http(s) URL"))),
                }
            }
            for (k, p) in [("prompt", &st.prompt), ("answer_prompt", &st.answer_prompt)] {
                if let Some(p) = p
                    && !p.is_file()
                {
                    return Err(bad(key(k), format!("is {}, which is not a file", p.display())));
                }
            }
            if st.batch_size == Some(0) || st.max_length == Some(0) || st.max_passage_chars == Some(0) {
                return Err(bad(
                    key("batch_size"),
                    "batch_size, max_length and max_passage_chars must be at least 1".into(),
                ));
            }
            if let Some(v) = &st.api_key_env
                && std::env::var(v).is_err()
            {
                return Err(bad(key("api_key_env"), format!("names ${v}, which is not set")));
            }
        }
        Ok(())
    }
}
