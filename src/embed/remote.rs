//! Remote embeddings: an OpenAI-compatible `POST {base_url}/embeddings` (OpenAI, vLLM, Infinity,
//! Ollama, llama.cpp `--embedding`, TEI's OpenAI route) or text-embeddings-inference's native
//! `POST {base_url}/embed`, through the LLM client: bounded concurrency, requests- and
//! tokens-per-minute limits, retries with backoff and `Retry-After`, one 429 pausing every worker,
//! the key from the environment only, errors naming the endpoint. Batches are sent concurrently and
//! handed back as each one arrives, so the caller can store them at once.

use super::EmbedError;
use crate::config::{ModelConfig, Provider};
use crate::llm::{Client, LlmConfig, LlmError};
use futures_util::StreamExt;
use serde_json::{Value, json};

/// A remote embedding endpoint.
pub(crate) struct RemoteEmbedder {
    provider: Provider,
    client: Client,
    http: LlmConfig,
    dimensions: Option<usize>,
    path: &'static str,
    /// Every server's URL, for messages.
    endpoint: String,
}

/// What one batch returned.
pub(crate) struct BatchOut {
    /// One vector per input, in input order (not normalised).
    pub vectors: Vec<Vec<f32>>,
    /// Input tokens, when the server reports them.
    pub tokens: Option<u64>,
    /// Which server answered (index in `model.endpoints`; 0 with one `base_url`).
    pub server: usize,
}

impl RemoteEmbedder {
    /// The client for `cfg` (a remote provider; validated at load).
    pub(crate) fn new(cfg: &ModelConfig) -> Result<Self, EmbedError> {
        let http = cfg.http().expect("a remote provider");
        let path = match cfg.provider {
            Provider::Tei => "embed",
            _ => "embeddings",
        };
        let fail = |source| EmbedError::Remote { endpoint: format!("{}/{path}", http.base_url), source };
        let client = Client::new(&http).map_err(fail)?;
        let endpoint = client.endpoint(path).map_err(fail)?;
        Ok(RemoteEmbedder { provider: cfg.provider, client, dimensions: cfg.dimensions, path, endpoint, http })
    }

    /// What each server did so far.
    pub(crate) fn server_stats(&self) -> Vec<crate::llm::ServerStats> {
        self.client.server_stats()
    }

    /// The cache id: provider, served model and dimensions (never the URL, so replicas share vectors).
    pub(crate) fn id(&self) -> String {
        let dims = self.dimensions.map_or_else(|| "-".to_string(), |d| d.to_string());
        format!("{}:{}:dim:{dims}", self.provider.name(), self.http.model)
    }

    /// The endpoint(s) requests go to.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Price of `tokens`, when `model.price_per_million_tokens` is set.
    pub(crate) fn cost(&self, tokens: u64) -> Option<f64> {
        self.http.cost(tokens, 0)
    }

    fn body(&self, texts: &[&str]) -> Value {
        match self.provider {
            Provider::Tei => json!({"inputs": texts, "normalize": true, "truncate": true}),
            _ => {
                let mut v = json!({"model": self.http.model, "input": texts, "encoding_format": "float"});
                if let Some(d) = self.dimensions {
                    v["dimensions"] = json!(d);
                }
                v
            }
        }
    }

    /// Embed `batches` with up to `concurrency` requests in flight; `sink(i, out)` gets batch `i` as
    /// soon as it arrives. Stops at the first batch that failed after its retries (or the first
    /// error of `sink`); batches already handed over stay with the caller.
    pub(crate) fn embed_batches(
        &self,
        batches: &[Vec<&str>],
        mut sink: impl FnMut(usize, BatchOut) -> Result<(), EmbedError>,
    ) -> Result<(), EmbedError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| EmbedError::Inference(format!("cannot start the async runtime: {e}")))?;
        rt.block_on(async {
            let mut results = futures_util::stream::iter(batches.iter().enumerate().map(|(i, texts)| async move {
                let body = serde_json::to_vec(&self.body(texts)).expect("a JSON value serialises");
                let charge: u64 = texts.iter().map(|t| t.len() as u64).sum::<u64>().div_ceil(4);
                let n = texts.len();
                let res = self.client.post_json(self.path, body, charge, |b| parse(self.provider, b, n)).await;
                (i, res.map(|p| BatchOut { server: p.server, ..p.value }))
            }))
            .buffer_unordered(self.client.concurrency());
            while let Some((i, res)) = results.next().await {
                let out = res.map_err(|e| EmbedError::Remote { endpoint: self.endpoint.clone(), source: e })?;
                sink(i, out)?;
            }
            Ok(())
        })
    }
}

/// Parse an embeddings answer for `n` inputs: OpenAI's `{"data": [{"index", "embedding"}], "usage"}`
/// or TEI's `[[...], ...]`. Every vector must be there once, finite, non-zero and of one length.
pub(crate) fn parse(provider: Provider, bytes: &[u8], n: usize) -> Result<BatchOut, LlmError> {
    #[derive(serde::Deserialize)]
    struct Item {
        index: Option<usize>,
        embedding: Vec<f32>,
    }
    #[derive(serde::Deserialize)]
    struct Usage {
        prompt_tokens: Option<u64>,
    }
    #[derive(serde::Deserialize)]
    struct OpenAi {
        data: Vec<Item>,
        usage: Option<Usage>,
    }
    let text = || String::from_utf8_lossy(bytes).chars().take(200).collect::<String>();
    let invalid = |message: String| LlmError::InvalidResponse { message, body: text() };
    let mut out: Vec<Option<Vec<f32>>> = vec![None; n];
    let mut tokens = None;
    match provider {
        Provider::Tei => {
            // Typed: numbers straight into f32, no intermediate JSON tree.
            let list: Vec<Vec<f32>> =
                serde_json::from_slice(bytes).map_err(|e| invalid(format!("not a list of lists of numbers ({e})")))?;
            if list.len() != n {
                return Err(invalid(format!("{} vectors for {n} inputs", list.len())));
            }
            out = list.into_iter().map(Some).collect();
        }
        _ => {
            let v: OpenAi = serde_json::from_slice(bytes).map_err(|e| {
                invalid(format!("not an embeddings answer with a `data` list of numeric `embedding`s ({e})"))
            })?;
            for (pos, d) in v.data.into_iter().enumerate() {
                // Some servers leave `index` out; then the order is the input order.
                let i = d.index.unwrap_or(pos);
                if i >= n || out[i].is_some() {
                    return Err(invalid(format!("index {i} is out of range or repeated ({n} inputs sent)")));
                }
                out[i] = Some(d.embedding);
            }
            tokens = v.usage.and_then(|u| u.prompt_tokens);
        }
    }
    let mut dim = None;
    let mut vectors = Vec::with_capacity(n);
    for (i, x) in out.into_iter().enumerate() {
        let x = x.ok_or_else(|| invalid(format!("no vector for input {i} ({n} sent)")))?;
        if x.is_empty() || *dim.get_or_insert(x.len()) != x.len() {
            return Err(invalid(format!("vector {i} has {} numbers, not {}", x.len(), dim.unwrap_or(0))));
        }
        if x.iter().any(|f| !f.is_finite()) || x.iter().all(|f| *f == 0.0) {
            return Err(invalid(format!("vector {i} is zero or not finite")));
        }
        vectors.push(x);
    }
    Ok(BatchOut { vectors, tokens, server: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_shapes_and_refuses_what_is_wrong() {
        let o = parse(
            Provider::Openai,
            br#"{"data":[{"index":1,"embedding":[0,1]},{"index":0,"embedding":[1,0]}],"usage":{"prompt_tokens":7}}"#,
            2,
        )
        .unwrap();
        assert_eq!(o.vectors, vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
        assert_eq!(o.tokens, Some(7));
        let o = parse(Provider::Tei, b"[[1,2],[3,4]]", 2).unwrap();
        assert_eq!(o.vectors[1], vec![3.0, 4.0]);
        assert_eq!(o.tokens, None);
        for (p, body) in [
            (Provider::Openai, &br#"{"data":[{"index":0,"embedding":[1,0]}]}"#[..]),
            (Provider::Openai, br#"{"data":[{"index":0,"embedding":[1,0]},{"index":0,"embedding":[1,0]}]}"#),
            (Provider::Openai, br#"{"data":[{"index":0,"embedding":[1,0]},{"index":1,"embedding":[1]}]}"#),
            (Provider::Openai, br#"{"data":[{"index":0,"embedding":[0,0]},{"index":1,"embedding":[1,0]}]}"#),
            (Provider::Openai, br#"{"error":"x"}"#),
            (Provider::Tei, b"[[1,2]]"),
            (Provider::Tei, b"<html>"),
        ] {
            assert!(
                matches!(parse(p, body, 2), Err(LlmError::InvalidResponse { .. })),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
