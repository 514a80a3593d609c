//! Embed: texts to L2-normalised vectors with fastembed on ONNX Runtime, or on a remote embedding
//! server ([`remote`]: OpenAI-compatible or TEI), cached by content hash.
//!
//! ONNX Runtime is loaded at run time from the library that [`crate::models::resolve`] found, through
//! an environment we create ourselves, so a missing or wrong library is an error, not a panic. Texts
//! are sorted by length before batching (less padding), each batch's vectors are committed to the
//! workspace as soon as they exist, and a text whose (model id, prefix + text) key is already stored is
//! never embedded again.

pub(crate) mod remote;

use crate::config::{Config, Pooling};
use crate::hash::{ContentHash, sha256_file};
use crate::models::{ModelSource, Resolved};
use crate::progress;
use crate::vectors::{Vectors, normalize};
use crate::workspace::queue::{Payload, Queue, UnitOutcome};
use crate::workspace::{Store, StoreError};
use fastembed::{InitOptionsUserDefined, TextEmbedding, TextInitOptions, TokenizerFiles, UserDefinedEmbeddingModel};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// Errors of the embedding stage.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// ONNX Runtime could not be loaded.
    #[error(
        "cannot load ONNX Runtime from {path}: {message}. Run `tripletgen fetch-models`, or point model.onnxruntime / $ORT_DYLIB_PATH at libonnxruntime >= 1.24"
    )]
    Runtime {
        /// The library.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A model file could not be read.
    #[error("cannot read model file {path}: {source}")]
    ModelFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The model could not be created (bad ONNX graph, tokenizer, download failure…).
    #[error("cannot load embedding model {model}: {message}")]
    Model {
        /// Model name or folder.
        model: String,
        /// What failed.
        message: String,
    },
    /// Inference failed.
    #[error("embedding failed: {0}")]
    Inference(String),
    /// A remote embedding server failed (after its retries) or answered something unusable.
    #[error("embedding server {endpoint}: {source}")]
    Remote {
        /// The endpoint.
        endpoint: String,
        /// What went wrong.
        source: crate::llm::LlmError,
    },
    /// The workspace store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A unit of a coordinated run failed on every worker that tried it.
    #[error("embedding through the work queue failed: {0}")]
    Queue(String),
}

static ORT_ENV: OnceLock<Mutex<Option<(PathBuf, ort::environment::Environment)>>> = OnceLock::new();

/// Load ONNX Runtime from `path` once per process and return its environment (ONNX Runtime allows
/// one per process; every session must be built from it).
pub fn ort_environment(path: &Path) -> Result<ort::environment::Environment, EmbedError> {
    let cell = ORT_ENV.get_or_init(|| Mutex::new(None));
    let mut guard = cell.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((loaded, env)) = guard.as_ref() {
        if loaded != path {
            log::warn!("ONNX Runtime is already loaded from {}; ignoring {}", loaded.display(), path.display());
        }
        return Ok(env.clone());
    }
    let rt = |message: String| EmbedError::Runtime { path: path.to_path_buf(), message };
    if !path.is_file() {
        return Err(rt("no such file".into()));
    }
    let env = ort::init_from(path)
        .map_err(|e| rt(e.to_string()))?
        .with_name("tripletgen")
        .build()
        .map_err(|e| rt(e.to_string()))?;
    *guard = Some((path.to_path_buf(), env.clone()));
    Ok(env)
}

/// Where vectors are computed.
enum Backend {
    Local(Box<TextEmbedding>),
    Remote(Box<remote::RemoteEmbedder>),
}

/// A loaded embedding model.
pub struct Embedder {
    model: Backend,
    /// Identifies the model and every setting that changes its vectors; part of every cache key.
    pub model_id: String,
    /// Human-readable model name.
    pub model_name: String,
    /// SHA-256 of the model files, for the manifest.
    pub checksums: BTreeMap<String, String>,
    /// Vector dimension.
    pub dim: usize,
    batch_size: usize,
    /// One text per ONNX Runtime call (`embed.batch_invariant`).
    batch_invariant: bool,
    sort_by_length: bool,
    max_length: usize,
}

/// Counts of one embedding call.
#[derive(Debug, Default, Clone, Serialize)]
pub struct EmbedStats {
    /// Texts asked for.
    pub texts: usize,
    /// Texts found in the cache.
    pub cached: usize,
    /// Texts embedded now (after removing duplicates).
    pub embedded: usize,
    /// Tokens of the embedded texts (after truncation).
    pub tokens: usize,
    /// Distinct texts (embedded now or found in the cache) longer than `model.max_length` tokens:
    /// only their first `max_length` tokens (special tokens included) are embedded.
    pub truncated: usize,
    /// Seconds spent.
    pub seconds: f64,
    /// Vectors came from a remote server: it truncates long texts itself (not counted here), and
    /// `tokens` are the counts it reported.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub remote: bool,
    /// Remote: the price of `tokens` (`model.price_per_million_tokens`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// Remote with several servers (`model.endpoints`): what each one did, in the config's order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<ServerUse>,
}

/// What one embedding server did in a call (or, added up, in a run).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerUse {
    /// The server's base URL.
    pub base_url: String,
    /// HTTP requests sent to it (retries included).
    pub requests: u64,
    /// Vectors it returned.
    pub vectors: u64,
    /// Requests that failed (and were retried, there or elsewhere).
    pub errors: u64,
    /// Times it was taken out after a failure.
    pub taken_out: u64,
}

impl EmbedStats {
    /// Add another call's counts.
    pub fn add(&mut self, o: &EmbedStats) {
        self.texts += o.texts;
        self.cached += o.cached;
        self.embedded += o.embedded;
        self.tokens += o.tokens;
        self.truncated += o.truncated;
        self.seconds += o.seconds;
        self.remote |= o.remote;
        self.cost = match (self.cost, o.cost) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        };
        if self.servers.is_empty() {
            self.servers = o.servers.clone();
        } else {
            for (a, b) in self.servers.iter_mut().zip(&o.servers) {
                a.requests += b.requests;
                a.vectors += b.vectors;
                a.errors += b.errors;
                a.taken_out += b.taken_out;
            }
        }
    }
}

impl Embedder {
    /// Load the model that `resolved` names with the settings of `cfg`.
    pub fn load(resolved: &Resolved, cfg: &Config) -> Result<Embedder, EmbedError> {
        if matches!(resolved.model, ModelSource::Remote) {
            return Self::remote(cfg);
        }
        let env = ort_environment(&resolved.runtime)?;
        let threads = cfg.embed.threads;
        let max_length = cfg.model.max_length;
        let mut checksums = BTreeMap::new();
        let (model, model_name, id_base) = match &resolved.model {
            ModelSource::Local { dir, pooling } => {
                let read = |name: &str| {
                    let p = dir.join(name);
                    std::fs::read(&p).map_err(|source| EmbedError::ModelFile { path: p, source })
                };
                let onnx = read("model.onnx")?;
                let tokenizer_files = TokenizerFiles {
                    tokenizer_file: read("tokenizer.json")?,
                    config_file: read("config.json")?,
                    special_tokens_map_file: read("special_tokens_map.json")?,
                    tokenizer_config_file: read("tokenizer_config.json")?,
                };
                for name in ["model.onnx", "tokenizer.json"] {
                    let p = dir.join(name);
                    let sum = sha256_file(&p).map_err(|source| EmbedError::ModelFile { path: p, source })?;
                    checksums.insert(name.to_string(), sum);
                }
                let fe_pooling = match pooling {
                    Pooling::Mean => fastembed::Pooling::Mean,
                    Pooling::Cls => fastembed::Pooling::Cls,
                };
                let user = UserDefinedEmbeddingModel::new(onnx, tokenizer_files).with_pooling(fe_pooling);
                let mut opts = InitOptionsUserDefined::new().with_environment(env).with_max_length(max_length);
                if threads > 0 {
                    opts = opts.with_intra_threads(threads);
                }
                let model = TextEmbedding::try_new_from_user_defined(user, opts)
                    .map_err(|e| EmbedError::Model { model: dir.display().to_string(), message: e.to_string() })?;
                let id = format!(
                    "onnx:{}:tok:{}:pool:{:?}",
                    &checksums["model.onnx"][..16],
                    &checksums["tokenizer.json"][..16],
                    pooling
                );
                (model, dir.display().to_string(), id)
            }
            ModelSource::Remote => unreachable!("handled above"),
            ModelSource::Hub { name, cache_dir } => {
                let which = hub_model(name).map_err(|message| EmbedError::Model { model: name.clone(), message })?;
                let mut opts = TextInitOptions::new(which)
                    .with_cache_dir(cache_dir.clone())
                    .with_environment(env)
                    .with_max_length(max_length)
                    .with_show_download_progress(false);
                if threads > 0 {
                    opts = opts.with_intra_threads(threads);
                }
                let model = TextEmbedding::try_new(opts).map_err(|e| EmbedError::Model {
                    model: name.clone(),
                    message: format!(
                        "{e}. Downloading from the Hugging Face hub needs internet access; offline, run \
                         `tripletgen fetch-models` and use model.name = \"all-minilm-l6-v2\", or set model.dir"
                    ),
                })?;
                checksums.insert("hub".into(), name.clone());
                (model, name.clone(), format!("hub:{name}"))
            }
        };
        let e = Embedder {
            model: Backend::Local(Box::new(model)),
            model_id: format!("{id_base}:max:{max_length}"),
            model_name,
            checksums,
            dim: 0,
            batch_size: cfg.embed.batch_size,
            batch_invariant: cfg.embed.batch_invariant,
            sort_by_length: cfg.embed.sort_by_length,
            max_length,
        };
        Self::probe(e)
    }

    /// A remote embedder (`model.provider` is `openai` or `tei`).
    fn remote(cfg: &Config) -> Result<Embedder, EmbedError> {
        let r = remote::RemoteEmbedder::new(&cfg.model)?;
        log::info!("embeddings from {} (model {:?})", r.endpoint(), cfg.model.name);
        let e = Embedder {
            model_id: r.id(),
            model_name: format!("{} ({})", cfg.model.name, r.endpoint()),
            model: Backend::Remote(Box::new(r)),
            checksums: BTreeMap::new(),
            dim: 0,
            batch_size: cfg.embed.batch_size,
            batch_invariant: cfg.embed.batch_invariant,
            sort_by_length: cfg.embed.sort_by_length,
            max_length: cfg.model.max_length,
        };
        Self::probe(e)
    }

    /// Learn the vector dimension from one text.
    fn probe(mut e: Embedder) -> Result<Embedder, EmbedError> {
        e.dim = e.embed_batch(&["dimension probe"])?.first().map(Vec::len).unwrap_or(0);
        if e.dim == 0 {
            return Err(EmbedError::Model {
                model: e.model_name,
                message: "the model returned an empty vector".into(),
            });
        }
        Ok(e)
    }

    /// Embed one batch as it is (no sorting, no cache), L2-normalised.
    pub fn embed_batch<S: AsRef<str> + Send + Sync>(&mut self, texts: &[S]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = match &mut self.model {
            Backend::Local(m) => {
                let per_call = if self.batch_invariant { 1 } else { texts.len().max(1) };
                m.embed(texts, Some(per_call)).map_err(|e| EmbedError::Inference(e.to_string()))?
            }
            Backend::Remote(r) => {
                let batch: Vec<&str> = texts.iter().map(AsRef::as_ref).collect();
                let mut out = Vec::new();
                r.embed_batches(&[batch], |_, b| {
                    out = b.vectors;
                    Ok(())
                })?;
                out
            }
        };
        for v in &mut out {
            normalize(v);
        }
        Ok(out)
    }

    /// Token count (after truncation) and whether `text` was truncated.
    /// Remote models have no tokenizer here: (0, false).
    pub fn token_count(&self, text: &str) -> (usize, bool) {
        let Backend::Local(m) = &self.model else { return (0, false) };
        match m.tokenizer.encode(text, true) {
            Ok(enc) => (enc.len(), !enc.get_overflowing().is_empty() || enc.len() > self.max_length),
            Err(_) => (0, false),
        }
    }

    /// Embed `texts` (each prefixed with `prefix`), reusing and filling the cache in `store`.
    /// Returns one vector per text, in input order.
    pub fn embed_cached(
        &mut self,
        store: &mut Store,
        texts: &[&str],
        prefix: &str,
        label: &str,
        show_progress: bool,
    ) -> Result<(Vectors, EmbedStats), EmbedError> {
        let start = std::time::Instant::now();
        let keys: Vec<ContentHash> =
            texts.iter().map(|t| ContentHash::of_parts(&[prefix.as_bytes(), t.as_bytes()])).collect();
        let mut found: HashMap<ContentHash, Vec<f32>> = HashMap::new();
        let stored = store.get_embeddings(&self.model_id, &keys, self.dim)?;
        for (k, v) in keys.iter().zip(stored) {
            if let Some(v) = v {
                found.insert(*k, v);
            }
        }
        let mut stats = EmbedStats { texts: texts.len(), ..Default::default() };
        stats.cached = keys.iter().filter(|k| found.contains_key(k)).count();
        // Cached texts were truncated too when they were embedded: count them again, so the report
        // says the same on every run. A text of fewer bytes than max_length - 2 cannot have more
        // tokens (each token covers at least one character), so only long texts are tokenized.
        let mut counted = std::collections::HashSet::new();
        for (k, t) in keys.iter().zip(texts) {
            if found.contains_key(k)
                && matches!(self.model, Backend::Local(_))
                && prefix.len() + t.len() + 2 > self.max_length
                && counted.insert(*k)
            {
                stats.truncated += self.token_count(&format!("{prefix}{t}")).1 as usize;
            }
        }

        // Distinct texts still to embed.
        let mut todo: Vec<(ContentHash, String)> = Vec::new();
        let mut queued = std::collections::HashSet::new();
        for (k, t) in keys.iter().zip(texts) {
            if !found.contains_key(k) && queued.insert(*k) {
                todo.push((*k, format!("{prefix}{t}")));
            }
        }
        // Local: tokenize once here (the counts go to the stats) and sort by tokens, which is what
        // padding costs (13-18% fewer padded tokens than sorting by characters on NQ passages).
        let mut counts: HashMap<ContentHash, (usize, bool)> = HashMap::new();
        if matches!(self.model, Backend::Local(_)) {
            for (k, t) in &todo {
                counts.insert(*k, self.token_count(t));
            }
        }
        if self.sort_by_length {
            match self.model {
                Backend::Local(_) => todo.sort_by_key(|(k, _)| std::cmp::Reverse(counts[k].0)),
                Backend::Remote(_) => todo.sort_by_key(|(_, t)| std::cmp::Reverse(t.len())),
            }
        }
        stats.embedded = todo.len();
        if let Some(mut queue) = store.take_queue() {
            let done = self.embed_queued(&mut queue, store, &todo, prefix, label, show_progress);
            store.attach_queue(queue);
            done?;
            let todo_keys: Vec<ContentHash> = todo.iter().map(|(k, _)| *k).collect();
            for (k, v) in todo_keys.iter().zip(store.get_embeddings(&self.model_id, &todo_keys, self.dim)?) {
                let v =
                    v.ok_or_else(|| EmbedError::Queue("a unit was marked done but its vectors are not stored".into()))?;
                found.insert(*k, v);
            }
            for (n, cut) in todo.iter().filter_map(|(k, _)| counts.get(k)) {
                stats.tokens += n;
                stats.truncated += *cut as usize;
            }
            return Ok(self.gather(&keys, &found, stats, start));
        }
        let pb = progress::bar(todo.len() as u64, label, "texts", show_progress && !todo.is_empty());
        if let Backend::Remote(r) = &self.model {
            stats.remote = true;
            let batches: Vec<&[(ContentHash, String)]> = todo.chunks(self.batch_size).collect();
            let texts: Vec<Vec<&str>> = batches.iter().map(|b| b.iter().map(|(_, t)| t.as_str()).collect()).collect();
            let model_id = &self.model_id;
            let mut tokens = 0u64;
            let before = r.server_stats();
            let mut vectors = vec![0u64; before.len()];
            let res = r.embed_batches(&texts, |i, out| {
                tokens += out.tokens.unwrap_or(0);
                vectors[out.server] += out.vectors.len() as u64;
                let mut vecs = out.vectors;
                vecs.iter_mut().for_each(|v| normalize(v));
                commit(store, model_id, batches[i], vecs, &mut found)?;
                pb.inc(batches[i].len() as u64);
                Ok(())
            });
            if before.len() > 1 {
                stats.servers = (r.server_stats().into_iter().zip(before).zip(vectors))
                    .map(|((now, was), vectors)| ServerUse {
                        requests: now.requests - was.requests,
                        vectors,
                        errors: now.errors - was.errors,
                        taken_out: now.taken_out - was.taken_out,
                        base_url: now.base_url,
                    })
                    .collect();
                for u in &stats.servers {
                    log::info!(
                        "embed: {}: {} requests, {} vectors, {} errors, taken out {}x",
                        u.base_url,
                        u.requests,
                        u.vectors,
                        u.errors,
                        u.taken_out
                    );
                }
            }
            res?;
            stats.tokens = tokens as usize;
            stats.cost = r.cost(tokens);
        } else {
            for batch in todo.chunks(self.batch_size) {
                for (k, _) in batch {
                    let (n, cut) = counts[k];
                    stats.tokens += n;
                    stats.truncated += cut as usize;
                }
                let strs: Vec<&str> = batch.iter().map(|(_, t)| t.as_str()).collect();
                let vecs = self.embed_batch(&strs)?;
                commit(store, &self.model_id, batch, vecs, &mut found)?;
                pb.inc(batch.len() as u64);
            }
        }
        pb.finish_and_clear();
        Ok(self.gather(&keys, &found, stats, start))
    }

    /// The vectors of `keys`, in order, with the stage's time.
    fn gather(
        &self,
        keys: &[ContentHash],
        found: &HashMap<ContentHash, Vec<f32>>,
        mut stats: EmbedStats,
        start: std::time::Instant,
    ) -> (Vectors, EmbedStats) {
        let mut data = Vec::with_capacity(keys.len() * self.dim);
        for k in keys {
            data.extend_from_slice(&found[k]);
        }
        stats.seconds = start.elapsed().as_secs_f64();
        (Vectors { dim: self.dim, data }, stats)
    }

    /// Hand `todo` to the work queue in units and work on them here too until every unit is done
    /// (by this process or by workers). The vectors land in the workspace.
    fn embed_queued(
        &mut self,
        queue: &mut Queue,
        store: &mut Store,
        todo: &[(ContentHash, String)],
        prefix: &str,
        label: &str,
        show_progress: bool,
    ) -> Result<(), EmbedError> {
        let payloads: Vec<Payload> = todo
            .chunks(queue.unit_size.embed_unit.max(1))
            .map(|c| Payload::Embed {
                prefix: prefix.to_string(),
                texts: c.iter().map(|(_, t)| t[prefix.len()..].to_string()).collect(),
            })
            .collect();
        let model_id = self.model_id.clone();
        queue.run_units(&model_id, &payloads, label, show_progress, |unit| self.embed_unit(store, unit, label))?;
        Ok(())
    }

    /// Do an embedding unit: its texts' vectors end up stored.
    pub fn embed_unit(&mut self, store: &mut Store, unit: &crate::workspace::queue::Unit, label: &str) -> UnitOutcome {
        let Payload::Embed { prefix, texts } = &unit.payload else {
            return Err(format!("unit {} is not an embedding unit", unit.id));
        };
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        self.embed_cached(store, &texts, prefix, label, false).map(|_| None).map_err(|e| e.to_string())
    }
}

/// Commit one batch's (normalised) vectors to the workspace in one transaction, then keep them in
/// `found`: a batch is stored the moment it exists, so an interrupted run keeps it.
fn commit(
    store: &mut Store,
    model_id: &str,
    batch: &[(ContentHash, String)],
    vecs: Vec<Vec<f32>>,
    found: &mut HashMap<ContentHash, Vec<f32>>,
) -> Result<(), EmbedError> {
    let items: Vec<(ContentHash, &[f32])> = batch.iter().zip(&vecs).map(|((k, _), v)| (*k, v.as_slice())).collect();
    store.put_embeddings(model_id, &items)?;
    crate::killpoint::hit("embed-batch");
    for ((k, _), v) in batch.iter().zip(vecs) {
        found.insert(*k, v);
    }
    Ok(())
}

/// A fastembed model by its hub name (`Xenova/bge-small-en-v1.5`), the name after the slash
/// (`BAAI/bge-small-en-v1.5` finds the same model), or fastembed's enum name (`BGESmallENV15`).
fn hub_model(name: &str) -> Result<fastembed::EmbeddingModel, String> {
    let models = TextEmbedding::list_supported_models();
    let tail = |s: &str| s.rsplit('/').next().unwrap_or(s).to_ascii_lowercase();
    models
        .iter()
        .find(|m| m.model_code.eq_ignore_ascii_case(name))
        .or_else(|| models.iter().find(|m| format!("{:?}", m.model).eq_ignore_ascii_case(name)))
        .or_else(|| models.iter().find(|m| tail(&m.model_code) == tail(name)))
        .map(|m| m.model.clone())
        .ok_or_else(|| {
            let known: Vec<&str> = models.iter().map(|m| m.model_code.as_str()).take(12).collect();
            format!(
                "not a model fastembed can download from the Hugging Face hub (known: {}, …); use `all-minilm-l6-v2` \
                 (local, from `tripletgen fetch-models`) or set model.dir to an ONNX model folder",
                known.join(", ")
            )
        })
}
