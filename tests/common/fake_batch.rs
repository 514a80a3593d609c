//! A fake OpenAI Batch API on top of [`FakeLlm`]: `POST /v1/files` (multipart, purpose `batch`),
//! `POST /v1/batches`, `GET /v1/batches` (newest first), `GET /v1/batches/{id}` (each look moves a job
//! one step: validating, in_progress, then its end) and `GET /v1/files/{id}/content`. Answers are
//! [`fake_llm::echo_answer`]s of each request's prompt, so a batch run can be compared with an online
//! run against [`fake_llm::echo`]. How a job ends is set with [`FakeBatch::end_with`].
#![allow(dead_code)]

use super::fake_llm::{self, FakeLlm, Reply, Request};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the next jobs end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum End {
    /// Every request answered.
    Completed,
    /// The whole job fails (validation): no output file.
    Failed,
    /// Only the first `n` requests answered, the job expired.
    Expired(usize),
    /// Only the first `n` requests answered, the job was cancelled.
    Cancelled(usize),
    /// Completed, but request `i` failed inside the job (error file).
    OneError(usize),
}

#[derive(Default)]
struct St {
    files: HashMap<String, String>,
    jobs: Vec<Value>,
    looks: HashMap<String, usize>,
    /// Request lines received in uploaded files.
    lines: usize,
    uploads: usize,
    created: usize,
    end: Option<End>,
}

/// The fake server and its counters.
pub struct FakeBatch {
    pub server: FakeLlm,
    st: Arc<Mutex<St>>,
}

fn reply(v: Value) -> Reply {
    Reply { status: 200, body: v.to_string(), delay: Duration::ZERO, die_for: None }
}

/// The JSONL file inside a multipart body (the part named `file`).
fn file_part(body: &str) -> String {
    let start = body.find("name=\"file\"").expect("a file part");
    let content = &body[start..];
    let content = &content[content.find("\r\n\r\n").expect("part headers end") + 4..];
    let end = content.rfind("\r\n--").expect("closing boundary");
    content[..end].to_string()
}

impl FakeBatch {
    pub fn start() -> FakeBatch {
        let st = Arc::new(Mutex::new(St::default()));
        let s2 = st.clone();
        let server = FakeLlm::start(move |_, req: &Request| {
            let line = req.head.lines().next().unwrap_or("").to_string();
            let mut parts = line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let mut s = s2.lock().unwrap();
            match (method, path) {
                ("POST", "/v1/files") => {
                    assert!(req.body.contains("name=\"purpose\"\r\n\r\nbatch"), "purpose batch");
                    let file = file_part(&req.body);
                    s.uploads += 1;
                    s.lines += file.lines().count();
                    let id = format!("file-in-{}", s.files.len());
                    s.files.insert(id.clone(), file);
                    reply(json!({"id": id, "object": "file", "purpose": "batch"}))
                }
                ("POST", "/v1/batches") => {
                    let v: Value = serde_json::from_str(&req.body).unwrap();
                    assert_eq!(v["endpoint"], "/v1/chat/completions");
                    let input = v["input_file_id"].as_str().unwrap().to_string();
                    assert!(s.files.contains_key(&input), "unknown file {input}");
                    s.created += 1;
                    let job = json!({"id": format!("batch_{}", s.jobs.len()), "object": "batch",
                        "status": "validating", "input_file_id": input, "output_file_id": null,
                        "error_file_id": null, "request_counts": {"total": 0, "completed": 0, "failed": 0}});
                    s.jobs.push(job.clone());
                    reply(job)
                }
                ("GET", p) if p.starts_with("/v1/batches?") => {
                    let data: Vec<Value> = s.jobs.iter().rev().cloned().collect();
                    reply(json!({"object": "list", "data": data, "has_more": false}))
                }
                ("GET", p) if p.starts_with("/v1/batches/") => {
                    let id = p.trim_start_matches("/v1/batches/").to_string();
                    let looks = {
                        let n = s.looks.entry(id.clone()).or_default();
                        *n += 1;
                        *n
                    };
                    let i = s.jobs.iter().position(|j| j["id"] == json!(id)).expect("known job");
                    if looks == 1 {
                        s.jobs[i]["status"] = json!("in_progress");
                    } else if looks == 2 && s.jobs[i]["status"] == "in_progress" {
                        let end = s.end.unwrap_or(End::Completed);
                        let input = s.files[s.jobs[i]["input_file_id"].as_str().unwrap()].clone();
                        let (mut out, mut err) = (String::new(), String::new());
                        for (n, l) in input.lines().enumerate() {
                            let r: Value = serde_json::from_str(l).unwrap();
                            let cid = r["custom_id"].clone();
                            let answered = match end {
                                End::Completed | End::OneError(_) => true,
                                End::Failed => false,
                                End::Expired(k) | End::Cancelled(k) => n < k,
                            };
                            if end == End::OneError(n) {
                                let e = json!({"custom_id": cid, "response": {"status_code": 400,
                                    "body": {"error": {"message": "bad request in line", "type": "invalid_request_error"}}}, "error": null});
                                err.push_str(&format!("{e}\n"));
                            } else if answered {
                                let prompt = r["body"]["messages"].as_array().unwrap().last().unwrap()["content"]
                                    .as_str()
                                    .unwrap()
                                    .to_string();
                                let body: Value =
                                    serde_json::from_str(&fake_llm::completion(&fake_llm::echo_answer(&prompt)).body)
                                        .unwrap();
                                let o = json!({"id": format!("req_{n}"), "custom_id": cid,
                                    "response": {"status_code": 200, "body": body}, "error": null});
                                out.push_str(&format!("{o}\n"));
                            }
                        }
                        let job = &mut s.jobs[i];
                        job["status"] = json!(match end {
                            End::Completed | End::OneError(_) => "completed",
                            End::Failed => "failed",
                            End::Expired(_) => "expired",
                            End::Cancelled(_) => "cancelled",
                        });
                        if end == End::Failed {
                            job["errors"] =
                                json!({"data": [{"code": "invalid_json_line", "message": "line 1 is invalid"}]});
                        }
                        let id = job["id"].as_str().unwrap().to_string();
                        if !out.is_empty() {
                            s.files.insert(format!("file-out-{id}"), out);
                            s.jobs[i]["output_file_id"] = json!(format!("file-out-{id}"));
                        }
                        if !err.is_empty() {
                            s.files.insert(format!("file-err-{id}"), err);
                            s.jobs[i]["error_file_id"] = json!(format!("file-err-{id}"));
                        }
                    }
                    reply(s.jobs[i].clone())
                }
                ("GET", p) if p.starts_with("/v1/files/") && p.ends_with("/content") => {
                    let id = p.trim_start_matches("/v1/files/").trim_end_matches("/content");
                    Reply { status: 200, body: s.files[id].clone(), delay: Duration::ZERO, die_for: None }
                }
                _ => fake_llm::error(404, &format!("no route {method} {path}")),
            }
        });
        FakeBatch { server, st }
    }

    /// How the jobs created from now on end.
    pub fn end_with(&self, end: End) {
        self.st.lock().unwrap().end = Some(end);
    }

    /// (files uploaded, request lines in them, jobs created).
    pub fn counts(&self) -> (usize, usize, usize) {
        let s = self.st.lock().unwrap();
        (s.uploads, s.lines, s.created)
    }
}
