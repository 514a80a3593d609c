//! Cross-encoder judges: a local ONNX reranker folder (fastembed's reranking on ONNX Runtime; the
//! BERT layout of ms-marco-MiniLM cross-encoders with `token_type_ids`, and the XLM-R layout of
//! bge-reranker without them; output `logits`), or an HTTP rerank API: text-embeddings-inference
//! `POST /rerank`, the Cohere/Jina/vLLM `POST /rerank` shape, and vLLM's `POST /score`.
//!
//! Scores are probabilities: the sigmoid of a local model's logit; HTTP APIs are asked for
//! normalised scores (TEI `raw_scores: false`; Cohere-style `relevance_score` is in [0, 1]; vLLM
//! applies the model's own activation). HTTP calls go through [`crate::llm::Client::post_json`], so
//! they have the chat client's guarantees (rate limits, retries, Retry-After, one 429 pausing every
//! request, the key from the environment and never in errors).

use super::{Ended, Item, Judge, JudgeError, RerankApi, Scored, StageConfig};
use crate::config::Config;
use crate::generate::llm::cut;
use crate::llm::{Client, LlmConfig, LlmError};
use fastembed::{RerankInitOptionsUserDefined, TextRerank, TokenizerFiles, UserDefinedRerankingModel};
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::ops::ControlFlow;

/// Build the cross-encoder judge a stage describes (`dir` xor `url`).
pub(crate) fn build(st: &StageConfig, cfg: &Config, name: &str) -> Result<Box<dyn Judge>, JudgeError> {
    let setup = |message: String| JudgeError::Setup { judge: name.to_string(), message };
    match (&st.dir, &st.url) {
        (Some(_), None) => Ok(Box::new(OnnxCrossEncoder::new(st, cfg, name)?)),
        (None, Some(_)) => Ok(Box::new(HttpReranker::new(st, cfg, name)?)),
        _ => {
            Err(setup("set exactly one of `dir` (a local ONNX reranker folder) and `url` (an HTTP rerank API)".into()))
        }
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Items grouped by query text (one reranker call scores one query against many passages), in
/// first-seen order: (query, [item index]).
fn by_query<'a>(items: &[Item<'a>]) -> Vec<(&'a str, Vec<usize>)> {
    let mut order: Vec<(&'a str, Vec<usize>)> = Vec::new();
    let mut at: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, it) in items.iter().enumerate() {
        let slot = *at.entry(it.query).or_insert_with(|| {
            order.push((it.query, Vec::new()));
            order.len() - 1
        });
        order[slot].1.push(i);
    }
    order
}

/// A local ONNX cross-encoder.
pub struct OnnxCrossEncoder {
    id: String,
    name: String,
    model: TextRerank,
    batch_size: usize,
}

impl OnnxCrossEncoder {
    fn new(st: &StageConfig, cfg: &Config, name: &str) -> Result<Self, JudgeError> {
        let runtime = crate::models::resolve_runtime(&cfg.model)
            .map_err(|e| JudgeError::Setup { judge: name.to_string(), message: e.to_string() })?;
        let dir = st.dir.as_ref().expect("build checked dir");
        Self::load(dir, st.max_length.unwrap_or(512), st.batch_size(), cfg.embed.threads, &runtime, name)
    }

    /// Load the reranker in `dir` (model.onnx with output `logits`, and the tokenizer files) on the
    /// ONNX Runtime library `runtime`; pairs are truncated to `max_length` tokens, `threads` 0 lets
    /// ONNX Runtime choose.
    pub fn load(
        dir: &std::path::Path,
        max_length: usize,
        batch_size: usize,
        threads: usize,
        runtime: &std::path::Path,
        name: &str,
    ) -> Result<Self, JudgeError> {
        let setup = |message: String| JudgeError::Setup { judge: name.to_string(), message };
        let read = |file: &str| {
            let p = dir.join(file);
            std::fs::read(&p).map_err(|e| setup(format!("cannot read {}: {e}", p.display())))
        };
        let onnx = read("model.onnx")?;
        let files = TokenizerFiles {
            tokenizer_file: read("tokenizer.json")?,
            config_file: read("config.json")?,
            special_tokens_map_file: read("special_tokens_map.json")?,
            tokenizer_config_file: read("tokenizer_config.json")?,
        };
        let sum = |bytes: &[u8]| crate::hash::ContentHash::of_parts(&[bytes]).short();
        let id = format!("cross-encoder:onnx:{}:tok:{}:max:{max_length}", sum(&onnx), sum(&files.tokenizer_file));
        let env = crate::embed::ort_environment(runtime).map_err(|e| setup(e.to_string()))?;
        let mut opts = RerankInitOptionsUserDefined::new().with_environment(env).with_max_length(max_length);
        if threads > 0 {
            opts = opts.with_intra_threads(threads);
        }
        let model = TextRerank::try_new_from_user_defined(UserDefinedRerankingModel::new(onnx, files), opts)
            .map_err(|e| setup(format!("cannot load the reranker in {}: {e}", dir.display())))?;
        Ok(OnnxCrossEncoder { id, name: name.to_string(), model, batch_size: batch_size.max(1) })
    }

    /// Raw logits of `passages` against `query`, in input order.
    pub fn logits(&mut self, query: &str, passages: &[&str]) -> Result<Vec<f32>, JudgeError> {
        let mut out = vec![0.0; passages.len()];
        let ranked = self
            .model
            .rerank(query, passages, false, Some(self.batch_size))
            .map_err(|e| JudgeError::Inference { judge: self.name.clone(), message: e.to_string() })?;
        for r in ranked {
            out[r.index] = r.score;
        }
        Ok(out)
    }
}

impl Judge for OnnxCrossEncoder {
    fn id(&self) -> &str {
        &self.id
    }
    fn paid(&self) -> bool {
        false
    }
    fn score(
        &mut self,
        items: &[Item<'_>],
        sink: &mut dyn FnMut(usize, Result<Scored, String>) -> ControlFlow<()>,
    ) -> Result<Ended, JudgeError> {
        let groups = by_query(items);
        let mut left = items.len();
        for (query, idx) in groups {
            for chunk in idx.chunks(self.batch_size) {
                let passages: Vec<&str> = chunk.iter().map(|&i| items[i].passage).collect();
                let logits = self.logits(query, &passages)?;
                for (&i, l) in chunk.iter().zip(logits) {
                    left -= 1;
                    let s = Scored { score: sigmoid(l), label: None, detail: None };
                    if sink(i, Ok(s)).is_break() {
                        return Ok(Ended {
                            stopped_by: Some("stopped by the caller".into()),
                            not_sent: left,
                            ..Default::default()
                        });
                    }
                }
            }
        }
        Ok(Ended::default())
    }
}

/// An HTTP rerank API.
pub(crate) struct HttpReranker {
    id: String,
    api: RerankApi,
    client: Client,
    model: Option<String>,
    batch_size: usize,
    max_chars: usize,
    concurrency: usize,
}

impl HttpReranker {
    fn new(st: &StageConfig, cfg: &Config, name: &str) -> Result<Self, JudgeError> {
        let setup = |message: String| JudgeError::Setup { judge: name.to_string(), message };
        let api = st.api.unwrap_or_default();
        let base = cfg.llm.clone().unwrap_or_default();
        let llm = LlmConfig {
            base_url: st.url.clone().expect("build checked url"),
            model: st.model.clone().unwrap_or_else(|| "rerank".into()),
            api_key_env: st.api_key_env.clone(),
            api_key_header: None,
            headers: Default::default(),
            price_per_million_input: None,
            price_per_million_output: None,
            // The stage's `url` is its one server, whatever `[llm]` lists.
            endpoints: Vec::new(),
            ..base
        };
        let client = Client::new(&llm).map_err(|e| setup(e.to_string()))?;
        let id = format!(
            "cross-encoder:{}:{}:{}:chars:{}",
            match api {
                RerankApi::Tei => "tei",
                RerankApi::Cohere => "cohere",
                RerankApi::VllmScore => "vllm-score",
            },
            llm.base_url.trim_end_matches('/'),
            st.model.as_deref().unwrap_or("-"),
            st.max_passage_chars()
        );
        Ok(HttpReranker {
            id,
            api,
            concurrency: client.concurrency(),
            client,
            model: st.model.clone(),
            batch_size: st.batch_size(),
            max_chars: st.max_passage_chars(),
        })
    }

    /// The path and body of one request: `query` against `passages`.
    fn request(&self, query: &str, passages: &[&str]) -> (&'static str, Value) {
        let model = self.model.as_deref();
        match self.api {
            RerankApi::Tei => {
                ("rerank", json!({"query": query, "texts": passages, "raw_scores": false, "truncate": true}))
            }
            RerankApi::Cohere => {
                let mut v =
                    json!({"query": query, "documents": passages, "top_n": passages.len(), "return_documents": false});
                if let Some(m) = model {
                    v["model"] = json!(m);
                }
                ("rerank", v)
            }
            RerankApi::VllmScore => {
                let mut v = json!({"text_1": query, "text_2": passages});
                if let Some(m) = model {
                    v["model"] = json!(m);
                }
                ("score", v)
            }
        }
    }
}

/// Parse a rerank answer into one score per passage (`n` of them), by each result's `index`.
pub(crate) fn parse_scores(api: RerankApi, bytes: &[u8], n: usize) -> Result<Vec<f32>, LlmError> {
    let text = String::from_utf8_lossy(bytes);
    let invalid = |message: String| LlmError::InvalidResponse { message, body: text.chars().take(200).collect() };
    let v: Value = serde_json::from_slice(bytes).map_err(|e| invalid(format!("the body is not JSON ({e})")))?;
    let (list, field) = match api {
        RerankApi::Tei => (v.as_array(), "score"),
        RerankApi::Cohere => (v.get("results").and_then(Value::as_array), "relevance_score"),
        RerankApi::VllmScore => (v.get("data").and_then(Value::as_array), "score"),
    };
    let list = list.ok_or_else(|| invalid("not the rerank API's result list".into()))?;
    let mut out: Vec<Option<f32>> = vec![None; n];
    for r in list {
        let i =
            r.get("index").and_then(Value::as_u64).ok_or_else(|| invalid("a result without `index`".into()))? as usize;
        let s = r
            .get(field)
            .and_then(Value::as_f64)
            .ok_or_else(|| invalid(format!("a result without a numeric `{field}`")))?;
        if i >= n || out[i].is_some() {
            return Err(invalid(format!("index {i} is out of range or repeated ({n} passages sent)")));
        }
        if !s.is_finite() {
            return Err(invalid(format!("score {s} of index {i} is not a number")));
        }
        out[i] = Some(s as f32);
    }
    out.into_iter()
        .enumerate()
        .map(|(i, s)| s.ok_or_else(|| invalid(format!("no score for passage {i} ({n} sent, {} returned)", list.len()))))
        .collect()
}

impl Judge for HttpReranker {
    fn id(&self) -> &str {
        &self.id
    }
    fn paid(&self) -> bool {
        true
    }
    fn score(
        &mut self,
        items: &[Item<'_>],
        sink: &mut dyn FnMut(usize, Result<Scored, String>) -> ControlFlow<()>,
    ) -> Result<Ended, JudgeError> {
        let mut batches: Vec<(&str, Vec<usize>)> = Vec::new();
        for (q, idx) in by_query(items) {
            for chunk in idx.chunks(self.batch_size) {
                batches.push((q, chunk.to_vec()));
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| JudgeError::Setup {
            judge: self.id.clone(),
            message: format!("cannot start the async runtime: {e}"),
        })?;
        let this = &*self;
        let mut stopped_by = None;
        let mut not_sent = 0usize;
        rt.block_on(async {
            let total = batches.len();
            let mut results = futures_util::stream::iter(batches.into_iter().map(|(q, idx)| async move {
                let passages: Vec<&str> = idx.iter().map(|&i| cut(items[i].passage, this.max_chars)).collect();
                let (path, body) = this.request(q, &passages);
                let body = serde_json::to_vec(&body).expect("a JSON value serialises");
                let charge = (body.len() as u64).div_ceil(4);
                let n = passages.len();
                let res =
                    this.client.post_json(path, body, charge, |b| parse_scores(this.api, b, n)).await.map(|p| p.value);
                (idx, res)
            }))
            .buffer_unordered(this.concurrency.max(1));
            let mut done = 0usize;
            while let Some((idx, res)) = results.next().await {
                done += 1;
                match res {
                    Ok(scores) => {
                        for (&i, s) in idx.iter().zip(scores) {
                            if sink(i, Ok(Scored { score: s, label: None, detail: None })).is_break() {
                                stopped_by = Some("stopped by the caller".to_string());
                            }
                        }
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        for &i in &idx {
                            let _ = sink(i, Err(msg.clone()));
                        }
                        if e.stops_run() && stopped_by.is_none() {
                            stopped_by = Some(msg);
                        }
                    }
                }
                if stopped_by.is_some() {
                    not_sent = total - done;
                    break;
                }
            }
        });
        // Items of batches never sent.
        let not_sent_items = if not_sent > 0 { not_sent * self.batch_size.min(items.len()) } else { 0 };
        Ok(Ended { stopped_by, not_sent: not_sent_items.min(items.len()), tokens: (0, 0) })
    }
}

/// Rerank API results seen by tests: `{index: score}`.
#[cfg(test)]
fn scores_of(api: RerankApi, body: &str, n: usize) -> Result<std::collections::BTreeMap<usize, f32>, String> {
    parse_scores(api, body.as_bytes(), n).map(|v| v.into_iter().enumerate().collect()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn each_api_shape_parses_by_index() {
        let tei = r#"[{"index":1,"score":0.9},{"index":0,"score":0.1}]"#;
        assert_eq!(scores_of(RerankApi::Tei, tei, 2).unwrap(), BTreeMap::from([(0, 0.1), (1, 0.9)]));
        let cohere =
            r#"{"id":"x","results":[{"index":0,"relevance_score":0.25},{"index":1,"relevance_score":0.5}],"meta":{}}"#;
        assert_eq!(scores_of(RerankApi::Cohere, cohere, 2).unwrap(), BTreeMap::from([(0, 0.25), (1, 0.5)]));
        let vllm = r#"{"id":"s","object":"list","data":[{"index":0,"object":"score","score":0.75}],"usage":{}}"#;
        assert_eq!(scores_of(RerankApi::VllmScore, vllm, 1).unwrap(), BTreeMap::from([(0, 0.75)]));
    }

    #[test]
    fn wrong_counts_and_garbage_are_errors() {
        assert!(
            scores_of(RerankApi::Tei, r#"[{"index":0,"score":0.1}]"#, 2)
                .unwrap_err()
                .contains("no score for passage 1")
        );
        assert!(
            scores_of(RerankApi::Tei, r#"[{"index":0,"score":0.1},{"index":0,"score":0.2}]"#, 2)
                .unwrap_err()
                .contains("repeated")
        );
        assert!(scores_of(RerankApi::Tei, r#"[{"index":5,"score":0.1}]"#, 1).unwrap_err().contains("out of range"));
        assert!(scores_of(RerankApi::Cohere, r#"{"error":"x"}"#, 1).is_err());
        assert!(scores_of(RerankApi::Tei, "<html>", 1).unwrap_err().contains("not JSON"));
        assert!(scores_of(RerankApi::VllmScore, r#"{"data":[{"index":0,"score":"high"}]}"#, 1).is_err());
    }

    #[test]
    fn items_group_by_query_in_first_seen_order() {
        let it = |q, p| Item { query: q, passage: p, answer: None };
        let items = [it("a", "1"), it("b", "2"), it("a", "3")];
        let g = by_query(&items);
        assert_eq!(g, vec![("a", vec![0, 2]), ("b", vec![1])]);
    }
}
