//! The OpenAI Batch API (`llm.mode = "batch"`): planned chat calls are written as JSONL, uploaded
//! (`POST /files`, purpose `batch`), submitted (`POST /batches`), polled (`GET /batches/{id}`), and
//! their output and error files downloaded (`GET /files/{id}/content`); each answer is handed to the
//! caller (who stores it) the moment its file is read.
//!
//! Nothing is sent twice: every uploaded file is recorded in a [`BatchJournal`] (the workspace)
//! before its job is created, and the job id as soon as it exists. A rerun first finishes the jobs
//! the journal knows, adopting a job whose creation was cut off (found by its input file in
//! `GET /batches`), and only submits the calls that are in no job yet. A request's `custom_id` is the
//! hash of its body, so the same call has the same id in every run.

use super::client::{Client, blocking_runtime, parse_response};
use super::{ChatRequest, ChatResponse, LlmError, RunSummary};
use crate::hash::ContentHash;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::time::Duration;

/// One uploaded batch file and its job, as the workspace keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// The uploaded file's id (the record's key).
    pub input_file: String,
    /// The server and model (`{base_url} {model}`); jobs of other servers are left alone.
    pub endpoint: String,
    /// The job's id, once created.
    pub batch_id: Option<String>,
    /// The `custom_id`s of the file's requests.
    pub custom_ids: Vec<String>,
    /// The job ended and its results were handed over.
    pub done: bool,
}

/// Where batch records are kept between runs (the workspace).
pub trait BatchJournal {
    /// Records of `endpoint` that are not done.
    fn open_batches(&mut self, endpoint: &str) -> Result<Vec<BatchRecord>, String>;
    /// Insert or update a record.
    fn save_batch(&mut self, record: &BatchRecord) -> Result<(), String>;
}

/// A job's state as `GET /batches/{id}` reports it.
#[derive(Debug, Clone, Deserialize)]
struct Job {
    id: String,
    status: String,
    #[serde(default)]
    input_file_id: Option<String>,
    #[serde(default)]
    output_file_id: Option<String>,
    #[serde(default)]
    error_file_id: Option<String>,
    #[serde(default)]
    errors: Option<Value>,
    #[serde(default)]
    request_counts: Option<Value>,
}

impl Job {
    fn ended(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "failed" | "expired" | "cancelled")
    }
}

fn invalid(message: String, body: &[u8]) -> LlmError {
    LlmError::InvalidResponse { message, body: String::from_utf8_lossy(body).chars().take(200).collect() }
}

fn parse_job(b: &[u8]) -> Result<Job, LlmError> {
    serde_json::from_slice(b).map_err(|e| invalid(format!("not a batch object ({e})"), b))
}

fn parse_file_id(b: &[u8]) -> Result<String, LlmError> {
    let v: Value = serde_json::from_slice(b).map_err(|e| invalid(format!("not a file object ({e})"), b))?;
    v["id"].as_str().map(str::to_string).ok_or_else(|| invalid("no file `id`".into(), b))
}

fn journal_error(message: String) -> LlmError {
    LlmError::Setup(format!("cannot record the batch job in the workspace: {message}"))
}

impl Client {
    /// Run `items` the way `llm.mode` says: [`Client::run_blocking`] online, or
    /// [`Client::run_batch_blocking`] with jobs recorded in the workspace at `workspace`.
    pub fn run_planned<K, F>(
        &self,
        items: Vec<(K, ChatRequest)>,
        workspace: &crate::workspace::Location,
        on_result: F,
    ) -> Result<RunSummary, LlmError>
    where
        F: FnMut(K, Result<ChatResponse, LlmError>) -> ControlFlow<()>,
    {
        if self.config().mode != super::LlmMode::Batch || items.is_empty() {
            return self.run_blocking(items, on_result);
        }
        // Its own connection: the caller's stores the answers meanwhile.
        let mut journal = crate::workspace::Store::connect(workspace)
            .map_err(|e| LlmError::Setup(format!("batch mode needs the workspace: {e}")))?;
        self.run_batch_blocking(items, &mut journal, on_result)
    }

    /// [`Client::run_all`] through the Batch API: the same delivery (each result to `on_result` as
    /// soon as its job's files are read; equal requests share one answer), with jobs recorded in
    /// `journal`. Calls of a job that failed, expired or was cancelled without an answer are
    /// delivered as errors (a rerun submits them again). Blocks the calling thread while polling.
    pub fn run_batch_blocking<K, F>(
        &self,
        items: Vec<(K, ChatRequest)>,
        journal: &mut dyn BatchJournal,
        mut on_result: F,
    ) -> Result<RunSummary, LlmError>
    where
        F: FnMut(K, Result<ChatResponse, LlmError>) -> ControlFlow<()>,
    {
        let rt = blocking_runtime()?;
        // Requests by custom_id (equal requests once), each with the keys waiting for it.
        let mut wanted: BTreeMap<String, (Vec<u8>, u64, Vec<K>)> = BTreeMap::new();
        for (key, req) in items {
            let body = self.chat_body(&req)?;
            let id = ContentHash::of_parts(&[&body]).hex();
            wanted.entry(id).or_insert_with(|| (body, req.prompt_tokens_estimate(), Vec::new())).2.push(key);
        }
        let mut summary = RunSummary::default();
        let endpoint = format!("{} {}", self.config().base_url.trim_end_matches('/'), self.config().model);
        rt.block_on(async {
            // Jobs already in the journal first: they hold calls that are paid for.
            // (Jobs of another round, with none of these calls, stay open for the round that wants them.)
            let mut open: Vec<BatchRecord> = journal
                .open_batches(&endpoint)
                .map_err(journal_error)?
                .into_iter()
                .filter(|r| r.custom_ids.iter().any(|id| wanted.contains_key(id)))
                .collect();
            for r in open.iter_mut().filter(|r| r.batch_id.is_none()) {
                r.batch_id = Some(self.adopt_or_create(&r.input_file).await?);
                journal.save_batch(r).map_err(journal_error)?;
            }
            let in_jobs: std::collections::HashSet<&String> = open.iter().flat_map(|r| &r.custom_ids).collect();
            let fresh: Vec<String> = wanted.keys().filter(|id| !in_jobs.contains(id)).cloned().collect();
            if !open.is_empty() {
                log::info!("llm batch: {} job(s) from an earlier run still open; finishing them first", open.len());
            }
            for chunk in fresh.chunks(self.config().batch_max_requests) {
                let mut jsonl = Vec::new();
                for id in chunk {
                    let line = json!({
                        "custom_id": id,
                        "method": "POST",
                        "url": "/v1/chat/completions",
                        "body": serde_json::from_slice::<Value>(&wanted[id].0).expect("our own JSON"),
                    });
                    serde_json::to_writer(&mut jsonl, &line).expect("a JSON value serialises");
                    jsonl.push(b'\n');
                }
                let file = self.upload(&jsonl).await?;
                let mut record = BatchRecord {
                    input_file: file.clone(),
                    endpoint: endpoint.clone(),
                    batch_id: None,
                    custom_ids: chunk.to_vec(),
                    done: false,
                };
                journal.save_batch(&record).map_err(journal_error)?;
                crate::killpoint::hit("batch-uploaded");
                record.batch_id = Some(self.adopt_or_create(&file).await?);
                journal.save_batch(&record).map_err(journal_error)?;
                crate::killpoint::hit("batch-created");
                log::info!(
                    "llm batch: submitted {} requests as job {}",
                    chunk.len(),
                    record.batch_id.as_deref().unwrap_or("?")
                );
                open.push(record);
            }
            // Poll every open job until it ends; hand over its results; mark it done.
            let poll = Duration::from_secs_f64(self.config().batch_poll_secs);
            let mut last_status: HashMap<String, String> = HashMap::new();
            while !open.is_empty() {
                let mut still_open = Vec::new();
                for mut r in open {
                    let id = r.batch_id.clone().expect("created above");
                    let job =
                        self.send(Method::GET, &format!("batches/{id}"), Vec::new(), "", 0, parse_job).await?.value;
                    if last_status.get(&id) != Some(&job.status) {
                        log::info!(
                            "llm batch: job {id} is {} ({})",
                            job.status,
                            job.request_counts.clone().unwrap_or_default()
                        );
                        last_status.insert(id.clone(), job.status.clone());
                    }
                    if !job.ended() {
                        still_open.push(r);
                        continue;
                    }
                    let mut answered = std::collections::HashSet::new();
                    for file in [&job.output_file_id, &job.error_file_id].into_iter().flatten() {
                        let bytes = self.download(file).await?;
                        for (n, line) in bytes.split(|b| *b == b'\n').enumerate().filter(|(_, l)| !l.is_empty()) {
                            let Some((cid, res)) = self.result_line(line, &wanted) else {
                                log::warn!("llm batch: line {} of file {file} is not a result; skipped", n + 1);
                                continue;
                            };
                            if !answered.insert(cid.clone()) {
                                continue;
                            }
                            {
                                let mut s = self.stats();
                                s.calls += 1;
                                match &res {
                                    Ok(a) => {
                                        s.prompt_tokens += a.prompt_tokens;
                                        s.completion_tokens += a.completion_tokens;
                                    }
                                    Err(_) => s.failed += 1,
                                }
                            }
                            if let Some((_, _, keys)) = wanted.remove(&cid) {
                                deliver(&mut summary, keys, res, &mut on_result);
                            }
                        }
                    }
                    // Requests of this job without a result: the job failed, expired or was cancelled.
                    let why = match job.status.as_str() {
                        "failed" => format!("batch job {id} failed: {}", job.errors.clone().unwrap_or_default()),
                        s => format!("batch job {id} ended {s} without an answer for this request"),
                    };
                    for cid in r.custom_ids.iter().filter(|c| !answered.contains(*c)) {
                        if let Some((_, _, keys)) = wanted.remove(cid) {
                            let e = LlmError::Batch { message: why.clone() };
                            deliver(&mut summary, keys, Err(e), &mut on_result);
                        }
                    }
                    if job.status != "completed" {
                        log::warn!("llm batch: {why}");
                    }
                    r.done = true;
                    journal.save_batch(&r).map_err(journal_error)?;
                }
                open = still_open;
                if !open.is_empty() {
                    tokio::time::sleep(poll).await;
                }
            }
            Ok::<(), LlmError>(())
        })?;
        Ok(summary)
    }

    /// One line of an output or error file: its `custom_id` and the answer or error.
    fn result_line(
        &self,
        line: &[u8],
        wanted: &BTreeMap<String, (Vec<u8>, u64, Vec<impl Sized>)>,
    ) -> Option<(String, Result<ChatResponse, LlmError>)> {
        let v: Value = serde_json::from_slice(line).ok()?;
        let cid = v["custom_id"].as_str()?.to_string();
        let prompt_est = wanted.get(&cid).map_or(0, |w| w.1);
        let status = v.pointer("/response/status_code").and_then(Value::as_u64).unwrap_or(0);
        let body = v.pointer("/response/body");
        let res = match (status, body) {
            (200, Some(b)) => {
                let bytes = serde_json::to_vec(b).expect("a JSON value serialises");
                parse_response(&bytes, prompt_est)
            }
            _ => Err(LlmError::Batch {
                message: format!(
                    "the request failed in the batch (status {status}): {}",
                    v.get("error").filter(|e| !e.is_null()).or(body).cloned().unwrap_or_default()
                ),
            }),
        };
        Some((cid, res))
    }

    /// Upload a JSONL batch file; its id.
    async fn upload(&self, jsonl: &[u8]) -> Result<String, LlmError> {
        let boundary = format!("tripletgen-{}", &ContentHash::of_parts(&[jsonl]).hex()[..24]);
        let mut body = Vec::with_capacity(jsonl.len() + 400);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--{boundary}\r\n\
                 Content-Disposition: form-data; name=\"file\"; filename=\"tripletgen-batch.jsonl\"\r\n\
                 Content-Type: application/jsonl\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(jsonl);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let content_type = format!("multipart/form-data; boundary={boundary}");
        Ok(self.send(Method::POST, "files", body, &content_type, 0, parse_file_id).await?.value)
    }

    /// The job of `input_file`: an existing one (a creation cut off by a kill, or a retried create
    /// that had in fact succeeded), else a new one.
    async fn adopt_or_create(&self, input_file: &str) -> Result<String, LlmError> {
        let mut after: Option<String> = None;
        for _ in 0..20 {
            let path = match &after {
                Some(a) => format!("batches?limit=100&after={a}"),
                None => "batches?limit=100".to_string(),
            };
            let page: Value = self
                .send(Method::GET, &path, Vec::new(), "", 0, |b| {
                    serde_json::from_slice::<Value>(b).map_err(|e| invalid(format!("not a batch list ({e})"), b))
                })
                .await?
                .value;
            let jobs = page["data"].as_array().cloned().unwrap_or_default();
            if let Some(j) = jobs.iter().find(|j| j["input_file_id"].as_str() == Some(input_file)) {
                let id = j["id"].as_str().unwrap_or_default().to_string();
                log::info!("llm batch: job {id} of file {input_file} already exists; adopted");
                return Ok(id);
            }
            match (page["has_more"].as_bool(), jobs.last().and_then(|j| j["id"].as_str())) {
                (Some(true), Some(last)) => after = Some(last.to_string()),
                _ => break,
            }
        }
        let body = json!({
            "input_file_id": input_file,
            "endpoint": "/v1/chat/completions",
            "completion_window": self.config().batch_completion_window,
        });
        let body = serde_json::to_vec(&body).expect("a JSON value serialises");
        let job = self.post_json("batches", body, 0, parse_job).await?.value;
        crate::killpoint::hit("batch-create-answered");
        debug_assert!(job.input_file_id.as_deref().is_none_or(|f| f == input_file));
        Ok(job.id)
    }

    /// A file's content.
    async fn download(&self, file: &str) -> Result<Vec<u8>, LlmError> {
        Ok(self.send(Method::GET, &format!("files/{file}/content"), Vec::new(), "", 0, |b| Ok(b.to_vec())).await?.value)
    }
}

/// Hand one result to every key waiting for it.
fn deliver<K, F>(summary: &mut RunSummary, keys: Vec<K>, res: Result<ChatResponse, LlmError>, on_result: &mut F)
where
    F: FnMut(K, Result<ChatResponse, LlmError>) -> ControlFlow<()>,
{
    for key in keys {
        let r = match &res {
            Ok(v) => Ok(v.clone()),
            Err(LlmError::Batch { message }) => Err(LlmError::Batch { message: message.clone() }),
            Err(e) => Err(LlmError::Batch { message: e.to_string().trim_start_matches("llm: ").to_string() }),
        };
        summary.delivered += 1;
        if on_result(key, r).is_break() && summary.stopped_by.is_none() {
            summary.stopped_by = Some("stopped by the caller".into());
        }
    }
}
