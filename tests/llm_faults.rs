//! Fault injection for the LLM client against a scripted fake OpenAI-compatible server on
//! 127.0.0.1: rate limiting (429 with and without Retry-After, a 429 storm, RPM spacing), 5xx,
//! timeouts, connection resets, garbled bodies, empty choices, truncation, content filter, auth
//! errors, results delivered as they arrive, and an API key that must never leak.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tripletgen::llm::{ChatRequest, Client, LlmConfig, LlmError};

/// What the fake server does with one request.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    delay: Duration,
    /// Close the socket (with a TCP reset) instead of answering.
    reset: bool,
}

fn reply(status: u16, body: impl Into<String>) -> Reply {
    Reply { status, headers: vec![], body: body.into(), delay: Duration::ZERO, reset: false }
}

fn ok(content: &str) -> Reply {
    answer(content, "stop")
}

fn answer(content: &str, finish_reason: &str) -> Reply {
    let body = serde_json::json!({
        "model": "fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5}
    });
    reply(200, body.to_string())
}

fn reset() -> Reply {
    Reply { reset: true, ..reply(200, "") }
}

impl Reply {
    fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    fn after(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

/// One request the server received.
struct Seen {
    at: Instant,
    text: String,
}

struct Server {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
    fn arrivals(&self) -> Vec<Instant> {
        self.seen.lock().unwrap().iter().map(|s| s.at).collect()
    }
}

type Script = dyn Fn(usize, &str) -> Reply + Send + Sync;

/// Start a server on its own thread and runtime; `script(n, request)` answers the n-th request.
fn serve(script: impl Fn(usize, &str) -> Reply + Send + Sync + 'static) -> Server {
    let script: Arc<Script> = Arc::new(script);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let counter = Arc::new(AtomicUsize::new(0));
            loop {
                let Ok((sock, _)) = listener.accept().await else { continue };
                let (script, seen, counter) = (script.clone(), seen2.clone(), counter.clone());
                tokio::spawn(async move {
                    let _ = connection(sock, &*script, &seen, &counter).await;
                });
            }
        });
    });
    let addr = rx.recv().unwrap();
    Server { url: format!("http://{addr}/v1"), seen }
}

/// Keep-alive HTTP/1.1: read a request (headers + Content-Length body), answer, repeat.
async fn connection(
    mut sock: tokio::net::TcpStream,
    script: &Script,
    seen: &Mutex<Vec<Seen>>,
    counter: &AtomicUsize,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let len: usize = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 4096];
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&buf[..head_end + len]).to_string();
        buf.drain(..head_end + len);
        let n = counter.fetch_add(1, Ordering::SeqCst);
        seen.lock().unwrap().push(Seen { at: Instant::now(), text: text.clone() });
        let r = script(n, &text);
        if r.reset {
            sock.set_zero_linger()?;
            return Ok(());
        }
        tokio::time::sleep(r.delay).await;
        let mut out = format!(
            "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            r.status,
            r.body.len()
        );
        for (k, v) in &r.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(&r.body);
        sock.write_all(out.as_bytes()).await?;
    }
}

/// Fast retries for tests.
fn cfg(server: &Server) -> LlmConfig {
    LlmConfig {
        base_url: server.url.clone(),
        model: "fake-model".into(),
        initial_backoff_ms: 20,
        max_backoff_ms: 100,
        max_retries: 3,
        timeout_secs: 5.0,
        ..LlmConfig::default()
    }
}

fn req(prompt: &str) -> ChatRequest {
    ChatRequest::user(prompt)
}

#[tokio::test]
async fn retry_after_429_is_honoured() {
    let s = serve(|n, _| if n == 0 { reply(429, "{}").header("Retry-After", "1") } else { ok("fine") });
    let c = Client::new(&cfg(&s)).unwrap();
    let t = Instant::now();
    let r = c.chat(&req("q")).await.unwrap();
    assert_eq!(r.content, "fine");
    assert_eq!(r.attempts, 2);
    assert!(t.elapsed() >= Duration::from_millis(950), "{:?}", t.elapsed());
    assert_eq!(s.count(), 2);
    let a = s.arrivals();
    assert!(a[1] - a[0] >= Duration::from_millis(950));
    let u = c.usage();
    assert_eq!((u.requests_sent, u.retries, u.pauses, u.succeeded), (2, 1, 1, 1));
    assert_eq!(u.retries_by_cause.get("http_429"), Some(&1));
}

#[tokio::test]
async fn retry_after_http_date_in_the_past_retries_at_once() {
    let s = serve(|n, _| {
        if n == 0 { reply(429, "{}").header("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT") } else { ok("fine") }
    });
    let c = Client::new(&cfg(&s)).unwrap();
    let t = Instant::now();
    assert_eq!(c.chat(&req("q")).await.unwrap().attempts, 2);
    assert!(t.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn rate_limited_without_retry_after_backs_off_then_succeeds() {
    let s = serve(|n, _| if n < 2 { reply(429, r#"{"error":{"message":"slow down"}}"#) } else { ok("fine") });
    let c = Client::new(&cfg(&s)).unwrap();
    let r = c.chat(&req("q")).await.unwrap();
    assert_eq!((r.attempts, s.count()), (3, 3));
    assert_eq!(c.usage().pauses, 2, "each 429 pauses every worker for its backoff");
}

#[tokio::test]
async fn server_errors_are_retried() {
    let s = serve(|n, _| match n {
        0 => reply(500, "boom"),
        1 => reply(503, "busy"),
        _ => ok("fine"),
    });
    let c = Client::new(&cfg(&s)).unwrap();
    let r = c.chat(&req("q")).await.unwrap();
    assert_eq!((r.content.as_str(), r.attempts, s.count()), ("fine", 3, 3));
    let u = c.usage();
    assert_eq!(u.retries_by_cause.get("http_500"), Some(&1));
    assert_eq!(u.retries_by_cause.get("http_503"), Some(&1));
}

#[tokio::test]
async fn slow_answer_times_out_and_is_retried() {
    let s = serve(|n, _| if n == 0 { ok("late").after(Duration::from_secs(3)) } else { ok("fine") });
    let c = Client::new(&LlmConfig { timeout_secs: 0.3, ..cfg(&s) }).unwrap();
    let t = Instant::now();
    let r = c.chat(&req("q")).await.unwrap();
    assert_eq!((r.content.as_str(), r.attempts, s.count()), ("fine", 2, 2));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(c.usage().retries_by_cause.get("timeout"), Some(&1));
}

#[tokio::test]
async fn every_answer_slow_gives_a_final_timeout_with_the_attempt_count() {
    let s = serve(|_, _| ok("late").after(Duration::from_secs(3)));
    let c = Client::new(&LlmConfig { timeout_secs: 0.2, max_retries: 2, ..cfg(&s) }).unwrap();
    let e = c.chat(&req("q")).await.unwrap_err();
    assert!(
        matches!(&e, LlmError::RetriesExhausted { attempts: 3, last } if matches!(**last, LlmError::Timeout { .. })),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("3 attempts") && msg.contains("no answer within 0.2 s"), "{msg}");
    assert_eq!(s.count(), 3);
    assert_eq!(c.usage().failures_by_kind.get("timeout"), Some(&1));
}

#[tokio::test]
async fn connection_reset_is_retried() {
    let s = serve(|n, _| if n == 0 { reset() } else { ok("fine") });
    let c = Client::new(&cfg(&s)).unwrap();
    let r = c.chat(&req("q")).await.unwrap();
    assert_eq!((r.attempts, s.count()), (2, 2));
    assert_eq!(c.usage().retries_by_cause.get("connection"), Some(&1));
}

#[tokio::test]
async fn nothing_listening_is_a_final_connection_error() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap(); // closed at once
    let cfg = LlmConfig { base_url: format!("http://{addr}/v1"), max_retries: 1, ..LlmConfig::default() };
    let c = Client::new(&LlmConfig { initial_backoff_ms: 10, max_backoff_ms: 20, ..cfg }).unwrap();
    let e = c.chat(&req("q")).await.unwrap_err();
    assert!(matches!(&e, LlmError::RetriesExhausted { attempts: 2, .. }), "{e}");
    assert_eq!(e.kind(), "connection");
}

#[tokio::test]
async fn invalid_json_is_retried_then_final() {
    let s = serve(|n, _| if n == 0 { reply(200, "{\"choices\": [ garbage") } else { ok("fine") });
    let c = Client::new(&cfg(&s)).unwrap();
    assert_eq!(c.chat(&req("q")).await.unwrap().attempts, 2);

    let s = serve(|_, _| reply(200, "<html>502 Bad Gateway</html>"));
    let c = Client::new(&cfg(&s)).unwrap();
    let e = c.chat(&req("q")).await.unwrap_err();
    assert!(matches!(e.last_cause(), LlmError::InvalidResponse { .. }), "{e}");
    assert!(e.to_string().contains("4 attempts") && e.to_string().contains("<html>"), "{e}");
    assert_eq!(s.count(), 4);
}

#[tokio::test]
async fn empty_choices_are_retried_then_final() {
    let s = serve(|_, _| reply(200, r#"{"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 0}}"#));
    let c = Client::new(&LlmConfig { max_retries: 2, ..cfg(&s) }).unwrap();
    let e = c.chat(&req("q")).await.unwrap_err();
    assert!(
        matches!(&e, LlmError::RetriesExhausted { attempts: 3, last } if matches!(**last, LlmError::EmptyChoices)),
        "{e}"
    );
    assert_eq!(s.count(), 3);
}

#[tokio::test]
async fn length_is_returned_truncated_without_retry() {
    let s = serve(|_, _| answer("1. what is", "length"));
    let c = Client::new(&cfg(&s)).unwrap();
    let r = c.chat(&req("q")).await.unwrap();
    assert!(r.truncated);
    assert_eq!((r.content.as_str(), r.finish_reason.as_deref(), s.count()), ("1. what is", Some("length"), 1));
    assert_eq!(c.usage().truncated, 1);
}

#[tokio::test]
async fn content_filter_is_final() {
    let s = serve(|_, _| answer("", "content_filter"));
    let c = Client::new(&cfg(&s)).unwrap();
    assert!(matches!(c.chat(&req("q")).await, Err(LlmError::ContentFilter)));
    assert_eq!(s.count(), 1);
}

#[tokio::test]
async fn client_errors_are_final() {
    let s = serve(|_, _| reply(401, r#"{"error":{"message":"Incorrect API key provided"}}"#));
    let c = Client::new(&cfg(&s)).unwrap();
    let e = c.chat(&req("q")).await.unwrap_err();
    assert!(matches!(e, LlmError::Status { status: 401, .. }));
    let msg = e.to_string();
    assert!(msg.contains("401") && msg.contains("Incorrect API key provided"), "{msg}");
    assert!(e.stops_run());
    assert_eq!(s.count(), 1);

    for status in [400, 403, 404] {
        let s = serve(move |_, _| reply(status, "nope"));
        let c = Client::new(&cfg(&s)).unwrap();
        let e = c.chat(&req("q")).await.unwrap_err();
        assert!(matches!(e, LlmError::Status { status: st, .. } if st == status), "{e}");
        assert_eq!(s.count(), 1);
    }

    let s = serve(|_, _| {
        reply(429, r#"{"error":{"code":"insufficient_quota","message":"You exceeded your current quota"}}"#)
    });
    let c = Client::new(&cfg(&s)).unwrap();
    assert!(matches!(c.chat(&req("q")).await, Err(LlmError::QuotaExhausted { .. })));
    assert_eq!(s.count(), 1);
}

#[tokio::test]
async fn a_429_pauses_every_worker() {
    // The first request gets 429 + Retry-After: 1; the other three in flight answer after 200 ms.
    // Their workers must not send the next items until the pause ends.
    let s = serve(|n, _| {
        if n == 0 { reply(429, "{}").header("Retry-After", "1") } else { ok("fine").after(Duration::from_millis(200)) }
    });
    let c = Client::new(&LlmConfig { concurrency: 4, ..cfg(&s) }).unwrap();
    let items: Vec<(usize, ChatRequest)> = (0..8).map(|i| (i, req("q"))).collect();
    let mut ok_count = 0;
    let summary = c
        .run_all(items, |_, r| {
            ok_count += usize::from(r.is_ok());
            ControlFlow::Continue(())
        })
        .await;
    assert_eq!((ok_count, summary.delivered, summary.not_started), (8, 8, 0));
    let a = s.arrivals();
    assert_eq!(a.len(), 9);
    let t429 = a[0];
    let during_pause =
        a.iter().filter(|&&t| t > t429 + Duration::from_millis(50) && t < t429 + Duration::from_millis(950)).count();
    assert_eq!(
        during_pause,
        0,
        "requests sent during the pause: {:?}",
        a.iter().map(|t| *t - t429).collect::<Vec<_>>()
    );
    assert!(a[4..].iter().all(|&t| t >= t429 + Duration::from_millis(950)));
}

#[tokio::test]
async fn requests_per_minute_spaces_requests() {
    let s = serve(|_, _| ok("fine"));
    let c = Client::new(&LlmConfig { requests_per_minute: Some(600), concurrency: 4, ..cfg(&s) }).unwrap();
    let items: Vec<(usize, ChatRequest)> = (0..20).map(|i| (i, req("q"))).collect();
    let t = Instant::now();
    let summary = c
        .run_all(items, |_, r| {
            assert!(r.is_ok());
            ControlFlow::Continue(())
        })
        .await;
    assert_eq!(summary.delivered, 20);
    assert!(t.elapsed() >= Duration::from_millis(1850), "{:?}", t.elapsed());
    let a = s.arrivals();
    assert!(a[19] - a[0] >= Duration::from_millis(1850));
}

/// An answer with this usage.
fn ok_usage(prompt: u64, completion: u64) -> Reply {
    let body = serde_json::json!({
        "choices": [{"message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion}
    });
    reply(200, body.to_string())
}

#[tokio::test]
async fn tokens_per_minute_is_charged_up_front_and_corrected_with_usage() {
    // 6000 tokens/min = 100/s. Each call is charged 7 (prompt estimate) + 290 (max_tokens) up front.
    let cfg = |s: &Server| LlmConfig { tokens_per_minute: Some(6000), max_tokens: 290, concurrency: 1, ..cfg(s) };
    // Real usage of 15 tokens gives 282 back each time: 40 calls (11,880 charged) do not wait.
    let s = serve(|_, _| ok_usage(10, 5));
    let c = Client::new(&cfg(&s)).unwrap();
    let t = Instant::now();
    for _ in 0..40 {
        c.chat(&req("q")).await.unwrap();
    }
    assert!(t.elapsed() < Duration::from_millis(800), "{:?}", t.elapsed());
    // Real usage far above the charge puts the bucket in debt: 6000 - 297 - (5810 - 297) = 190 left,
    // so the next call (297) waits about 1.07 s.
    let s = serve(|_, _| ok_usage(10, 5800));
    let c = Client::new(&cfg(&s)).unwrap();
    c.chat(&req("q")).await.unwrap();
    let t = Instant::now();
    c.chat(&req("q")).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(950), "{:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[tokio::test]
async fn results_are_delivered_as_they_arrive() {
    let s = serve(|_, text| if text.contains("slow") { ok("s").after(Duration::from_millis(1500)) } else { ok("f") });
    let c = Client::new(&LlmConfig { concurrency: 4, ..cfg(&s) }).unwrap();
    let items = vec![("slow", req("slow")), ("a", req("fast a")), ("b", req("fast b"))];
    let t = Instant::now();
    let mut got = Vec::new();
    c.run_all(items, |k, r| {
        assert!(r.is_ok());
        got.push((k, t.elapsed()));
        ControlFlow::Continue(())
    })
    .await;
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].0, "slow");
    assert!(got[0].1 < Duration::from_millis(700), "first result only at {:?}", got[0].1);
    assert!(got[2].1 >= Duration::from_millis(1400));
}

#[tokio::test]
async fn a_fatal_error_or_the_callback_stops_the_run_without_losing_in_flight_results() {
    let s = serve(|_, _| reply(401, "bad key"));
    let c = Client::new(&LlmConfig { concurrency: 2, ..cfg(&s) }).unwrap();
    let items: Vec<(usize, ChatRequest)> = (0..50).map(|i| (i, req("q"))).collect();
    let summary = c.run_all(items, |_, _| ControlFlow::Continue(())).await;
    assert!(summary.stopped_by.as_deref().unwrap_or("").contains("401"), "{summary:?}");
    assert_eq!(summary.delivered + summary.not_started, 50);
    assert!(summary.delivered <= 2, "{summary:?}");
    assert_eq!(s.count(), summary.delivered);

    let s = serve(|_, _| ok("fine"));
    let c = Client::new(&LlmConfig { concurrency: 3, ..cfg(&s) }).unwrap();
    let items: Vec<(usize, ChatRequest)> = (0..50).map(|i| (i, req("q"))).collect();
    let summary = c.run_all(items, |_, _| ControlFlow::Break(())).await;
    assert_eq!(summary.delivered, 3, "the calls in flight are still delivered");
    assert_eq!(summary.not_started, 47);
}

#[tokio::test]
async fn a_server_that_stays_down_stops_the_run() {
    let s = serve(|_, _| reply(502, "bad gateway"));
    let c = Client::new(&LlmConfig { concurrency: 2, max_retries: 0, ..cfg(&s) }).unwrap();
    let items: Vec<(usize, ChatRequest)> = (0..50).map(|i| (i, req("q"))).collect();
    let mut delivered = 0;
    let summary = c
        .run_all(items, |_, r| {
            assert!(matches!(r, Err(LlmError::RetriesExhausted { attempts: 1, .. })));
            delivered += 1;
            ControlFlow::Continue(())
        })
        .await;
    assert!(summary.stopped_by.as_deref().unwrap_or("").contains("8 calls in a row"), "{summary:?}");
    assert!((8..=9).contains(&delivered), "{delivered}");
    assert_eq!(summary.not_started, 50 - delivered);
}

#[test]
fn run_blocking_from_sync_code_reuses_the_client() {
    let s = serve(|_, _| ok("fine"));
    let c = Client::new(&cfg(&s)).unwrap();
    for _ in 0..2 {
        let items: Vec<(usize, ChatRequest)> = (0..5).map(|i| (i, req("q"))).collect();
        let mut n = 0;
        let summary = c
            .run_blocking(items, |_, r| {
                assert_eq!(r.unwrap().attempts, 1, "no spurious retry on a pooled connection");
                n += 1;
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!((n, summary.delivered), (5, 5));
    }
    assert_eq!(c.chat_blocking(&req("q")).unwrap().content, "fine");
    assert_eq!(c.usage().requests_sent, 11);
    // Inside a runtime it is an error, not a panic.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let e = rt.block_on(async { c.run_blocking(vec![(0, req("q"))], |_, _| ControlFlow::Continue(())) });
    assert!(matches!(e, Err(LlmError::Setup(_))));
}

/// Captures every log record of this test binary.
struct Capture(Mutex<Vec<String>>);
impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        self.0.lock().unwrap().push(format!("{} {}", r.target(), r.args()));
    }
    fn flush(&self) {}
}

fn capture_logs() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let c: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        log::set_logger(c).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Trace);
        c
    })
}

#[tokio::test]
async fn the_api_key_never_leaks() {
    const VAR: &str = "TRIPLETGEN_LLM_FAULTS_CANARY_KEY";
    const CANARY: &str = "sk-canary-7f3a9c1e5b2d4f6a8c0e";
    // SAFETY: this variable is read and written by this test only.
    unsafe { std::env::set_var(VAR, CANARY) };
    let logs = capture_logs();
    // The server echoes the Authorization header back in every body, as some proxies do.
    let s = serve(|n, text| {
        let auth =
            text.lines().find(|l| l.to_ascii_lowercase().starts_with("authorization:")).unwrap_or("").to_string();
        let echo = serde_json::json!({"error": {"message": format!("key rejected: {auth}")}}).to_string();
        match n {
            0 => ok("fine"),
            1 => reply(401, echo),
            2..=4 => reply(500, echo),
            5 => reply(429, format!("insufficient_quota {auth}")),
            6..=8 => reply(200, format!("not json {auth}")),
            9..=11 => reply(200, echo),
            12 => answer(&auth, "content_filter"),
            13..=15 => reply(200, r#"{"choices": []}"#),
            16..=18 => ok("late").after(Duration::from_secs(3)),
            19..=21 => reset(),
            _ => reply(418, echo),
        }
    });
    let mut headers = std::collections::BTreeMap::new();
    headers.insert("X-Extra".to_string(), "yes".to_string());
    let cfg = LlmConfig {
        api_key_env: Some(VAR.into()),
        headers,
        max_retries: 2,
        timeout_secs: 0.3,
        json_mode: true,
        seed: Some(7),
        ..cfg(&s)
    };
    let c = Client::new(&cfg).unwrap();

    // The key is sent, as a bearer token, with the extra header and the request options.
    c.chat(&req("q")).await.unwrap();
    let first = s.seen.lock().unwrap()[0].text.clone();
    assert!(first.contains(&format!("Bearer {CANARY}")), "{first}");
    assert!(first.to_ascii_lowercase().contains("x-extra: yes"));
    assert!(first.contains(r#""response_format":{"type":"json_object"}"#) && first.contains(r#""seed":7"#), "{first}");
    assert!(first.contains(r#""model":"fake-model""#));

    let mut errors: Vec<LlmError> = Vec::new();
    for _ in 0..7 {
        errors.push(c.chat(&req("q")).await.unwrap_err());
    }
    let kinds: Vec<String> = errors.iter().map(|e| e.kind()).collect();
    assert_eq!(
        kinds,
        [
            "http_401",
            "http_500",
            "quota_exhausted",
            "invalid_response",
            "invalid_response",
            "content_filter",
            "empty_choices"
        ]
    );
    errors.push(c.chat(&req("q")).await.unwrap_err()); // timeouts
    errors.push(c.chat(&req("q")).await.unwrap_err()); // resets
    errors.push(c.chat(&req("q")).await.unwrap_err()); // 418
    assert_eq!(errors[7].kind(), "timeout");
    assert_eq!(errors[8].kind(), "connection");
    // Config and setup errors.
    let mut missing = cfg.clone();
    missing.api_key_env = Some("TRIPLETGEN_LLM_FAULTS_SURELY_UNSET".into());
    errors.push(Client::new(&missing).unwrap_err());
    errors.push(Client::new(&LlmConfig { concurrency: 0, ..cfg.clone() }).unwrap_err());

    let mut texts: Vec<String> = Vec::new();
    for e in &errors {
        texts.push(e.to_string());
        texts.push(format!("{e:?}"));
        texts.push(format!("{e:#?}"));
    }
    texts.push(format!("{c:?}"));
    texts.push(format!("{c:#?}"));
    texts.push(toml::to_string(&cfg).unwrap());
    texts.push(serde_json::to_string(&cfg).unwrap());
    texts.push(format!("{cfg:?}"));
    texts.push(serde_json::to_string(&c.usage()).unwrap());
    texts.push(format!("{:?}", c.usage()));
    texts.extend(logs.0.lock().unwrap().iter().cloned());
    for t in &texts {
        assert!(!t.contains(CANARY), "the key leaked into: {t}");
        assert!(!t.contains("7f3a9c1e5b2d"), "part of the key leaked into: {t}");
    }
    let all = texts.join("\n");
    assert!(all.contains("[redacted]"), "the echoed key was redacted, not absent");
    assert!(all.contains(VAR), "errors name the variable");
    assert!(logs.0.lock().unwrap().iter().any(|l| l.contains("retrying")), "retries were logged");
}
