//! A scripted OpenAI-compatible server for pipeline-level tests that run the `tripletgen` binary:
//! it records every request (body and headers), answers deterministically from the prompt (or as a
//! script says: an error status, a late answer), and can go down (connections closed, port refused)
//! and come back on the same port.
//!
//! ```ignore
//! #[path = "common/fake_llm.rs"]
//! mod fake_llm;
//! let server = fake_llm::FakeLlm::start(fake_llm::echo);
//! ```
//!
//! Plain std threads and blocking sockets: one thread accepts, one thread per connection
//! (keep-alive). The server stops when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Request {
    /// The raw header block (request line included).
    pub head: String,
    /// The body (JSON).
    pub body: String,
}

impl Request {
    /// The last message's content (the prompt).
    pub fn prompt(&self) -> String {
        let v: serde_json::Value = serde_json::from_str(&self.body).unwrap_or_default();
        v["messages"].as_array().and_then(|m| m.last()).and_then(|m| m["content"].as_str()).unwrap_or("").to_string()
    }
}

/// What to answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: String,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Instead of answering, die: close every connection and refuse new ones for this long.
    pub die_for: Option<Duration>,
}

impl Reply {
    /// Answer after `d`.
    pub fn after(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
}

/// Die instead of answering, and come back on the same port after `d`.
pub fn die(d: Duration) -> Reply {
    Reply { status: 0, body: String::new(), delay: Duration::ZERO, die_for: Some(d) }
}

/// An error status with an OpenAI-style error body.
pub fn error(status: u16, message: &str) -> Reply {
    let body = serde_json::json!({"error": {"message": message, "type": "error"}});
    Reply { status, body: body.to_string(), delay: Duration::ZERO, die_for: None }
}

/// A 200 chat completion with `content`.
pub fn completion(content: &str) -> Reply {
    let body = serde_json::json!({
        "model": "fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 10}
    });
    Reply { status: 200, body: body.to_string(), delay: Duration::ZERO, die_for: None }
}

/// The text between `<<<NAME\n` and `\nNAME>>>` of a prompt.
pub fn slot<'a>(prompt: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<<<{name}\n");
    let close = format!("\n{name}>>>");
    let start = prompt.find(&open)? + open.len();
    let end = prompt.rfind(&close)?;
    (end >= start).then(|| &prompt[start..end])
}

/// A deterministic answer computed from the prompt alone: queries made of the document's words,
/// paraphrases that reverse the query's words, translations that return the text unchanged, judge
/// grades (0-3) from the passage's length.
pub fn echo_answer(prompt: &str) -> String {
    if let Some(passage) = slot(prompt, "PASSAGE") {
        (passage.len() % 4).to_string()
    } else if let Some(doc) = slot(prompt, "DOCUMENT") {
        let words: Vec<&str> = doc.split_whitespace().collect();
        // Every other word: not a verbatim copy of the document (which the filter rejects).
        let q = |from: usize| words.iter().skip(from).step_by(2).take(4).copied().collect::<Vec<_>>().join(" ");
        serde_json::json!({"queries": [q(0), q(9)]}).to_string()
    } else if let Some(query) = slot(prompt, "QUERY") {
        let mut words: Vec<&str> = query.split_whitespace().collect();
        words.reverse();
        serde_json::json!({"paraphrases": [words.join(" ")]}).to_string()
    } else if let Some(text) = slot(prompt, "TEXT") {
        text.to_string()
    } else {
        "no idea".to_string()
    }
}

/// Script: answer every request with [`echo_answer`].
pub fn echo(_n: usize, req: &Request) -> Reply {
    completion(&echo_answer(&req.prompt()))
}

type Script = dyn Fn(usize, &Request) -> Reply + Send + Sync;

struct State {
    script: Box<Script>,
    requests: Mutex<Vec<Request>>,
    up: AtomicBool,
    stop: AtomicBool,
    /// Bumped when the server goes down: connections of an older generation close.
    generation: AtomicU64,
}

/// A running fake server on 127.0.0.1.
pub struct FakeLlm {
    port: u16,
    state: Arc<State>,
}

impl FakeLlm {
    /// Start serving; `script(n, request)` answers the n-th request (0-based, in arrival order).
    pub fn start(script: impl Fn(usize, &Request) -> Reply + Send + Sync + 'static) -> FakeLlm {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            script: Box::new(script),
            requests: Mutex::new(Vec::new()),
            up: AtomicBool::new(true),
            stop: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        });
        let st = state.clone();
        std::thread::spawn(move || accept_loop(listener, port, st));
        FakeLlm { port, state }
    }

    /// `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Number of requests received so far.
    pub fn count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    /// Go down: close every connection and refuse new ones until [`FakeLlm::up`].
    pub fn down(&self) {
        self.state.up.store(false, Ordering::SeqCst);
        self.state.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Come back on the same port.
    pub fn up(&self) {
        self.state.up.store(true, Ordering::SeqCst);
    }

    /// An `[llm]` TOML table for this server (no key, quick retries); `extra` lines (`key = value`)
    /// add keys or replace the defaults.
    pub fn toml(&self, extra: &str) -> String {
        let url = format!("\"{}\"", self.base_url());
        let defaults = [
            ("base_url", url.as_str()),
            ("model", "\"fake\""),
            ("concurrency", "2"),
            ("max_retries", "2"),
            ("initial_backoff_ms", "50"),
            ("max_backoff_ms", "200"),
            ("timeout_secs", "10.0"),
        ];
        let overridden: Vec<&str> = extra.lines().filter_map(|l| l.split_once('=')).map(|(k, _)| k.trim()).collect();
        let mut out = String::from("[llm]\n");
        for (k, v) in defaults.iter().filter(|(k, _)| !overridden.contains(k)) {
            out.push_str(&format!("{k} = {v}\n"));
        }
        out.push_str(extra);
        out.push('\n');
        out
    }

    /// A pipeline config in `dir/pipeline.toml`: `corpus` alone, synthetic queries (2 per document,
    /// first 6 documents) and one paraphrase per query through this server, lenient filters, small
    /// embedding batches, an HNSW index (whatever the size), five output formats in `dir/out`. `top` goes before the first table
    /// (e.g. `workspace = '...'`), `llm_extra` into `[llm]`.
    pub fn pipeline_config(&self, dir: &Path, corpus: &Path, top: &str, llm_extra: &str) -> PathBuf {
        let body = format!(
            "{top}\n[input]\ncorpus = '{}'\n\n[embed]\nbatch_size = 4\nthreads = 1\n\n[index]\nkind = \"hnsw\"\n\n\
             [generate.llm]\nstrategies = [\"synthetic\", \"paraphrase\"]\nqueries_per_document = 2\nmax_documents = 6\n\
             paraphrases_per_query = 1\n\n\
             [filter]\ndocument_fidelity_min = 0.0\nfidelity_min = 0.0\nround_trip_k = 0\n\n\
             [output]\ndir = '{}'\nformats = [\"triplet\", \"n-tuple\", \"labeled-pair\", \"labeled-list\", \"flag-jsonl\"]\n\n{}",
            corpus.display(),
            dir.join("out").display(),
            self.toml(llm_extra),
        );
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join("pipeline.toml");
        std::fs::write(&p, body).unwrap();
        p
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.down();
    }
}

fn accept_loop(first: TcpListener, port: u16, st: Arc<State>) {
    let mut listener = Some(first);
    while !st.stop.load(Ordering::SeqCst) {
        if !st.up.load(Ordering::SeqCst) {
            listener = None; // closed: connections are refused
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let l = match &listener {
            Some(l) => l,
            None => match TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => listener.insert(l),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            },
        };
        l.set_nonblocking(true).unwrap();
        match l.accept() {
            Ok((stream, _)) => {
                let st = st.clone();
                let generation = st.generation.load(Ordering::SeqCst);
                std::thread::spawn(move || connection(stream, &st, generation));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn connection(stream: TcpStream, st: &State, generation: u64) {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let alive = || st.generation.load(Ordering::SeqCst) == generation && !st.stop.load(Ordering::SeqCst);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        // Header block.
        let mut head = String::new();
        loop {
            if !alive() {
                return;
            }
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) => return,
                Ok(_) => {
                    head.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    head.push_str(&line);
                }
                Err(_) => return,
            }
        }
        let len = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0))
            })
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        let mut got = 0;
        while got < len {
            if !alive() {
                return;
            }
            match reader.read(&mut body[got..]) {
                Ok(0) => return,
                Ok(n) => got += n,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => return,
            }
        }
        let req = Request { head, body: String::from_utf8_lossy(&body).into_owned() };
        let n = {
            let mut r = st.requests.lock().unwrap();
            r.push(req.clone());
            r.len() - 1
        };
        let reply = (st.script)(n, &req);
        if let Some(d) = reply.die_for {
            st.up.store(false, Ordering::SeqCst);
            st.generation.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(d);
            if !st.stop.load(Ordering::SeqCst) {
                st.up.store(true, Ordering::SeqCst);
            }
            return;
        }
        let until = std::time::Instant::now() + reply.delay;
        while std::time::Instant::now() < until {
            if !alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let resp = format!(
            "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
            reply.status,
            reply.body.len(),
            reply.body
        );
        // A late answer to a client that gave up goes to a closed socket: ignore the error.
        if out.write_all(resp.as_bytes()).and_then(|_| out.flush()).is_err() {
            return;
        }
    }
}
