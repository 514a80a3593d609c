//! LLM servers shared by the benchmarks and the integration tests: an in-process instant server
//! (every request answered at once with a fixed completion, to measure the client alone) and the
//! launcher of the real llama.cpp server (`scripts/llama-server.sh`). The scripted fault-injecting
//! server of the tests stays in tests/common/fake_llm.rs: it exists only to test.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// --- the instant server ----------------------------------------------------------------------------

/// The body every request gets.
const INSTANT_BODY: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":0,"model":"instant","choices":[{"index":0,"message":{"role":"assistant","content":"a short search query"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":4,"total_tokens":16}}"#;

/// Longest request head accepted (a client sending more is disconnected).
const MAX_HEAD: usize = 64 * 1024;

/// An HTTP/1.1 keep-alive server on 127.0.0.1 answering every request at once with
/// [`INSTANT_BODY`], on its own thread and current-thread tokio runtime. Stopped when dropped.
pub struct InstantServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InstantServer {
    /// Bind 127.0.0.1 on a free port and start answering with the chat completion.
    pub fn start() -> std::io::Result<InstantServer> {
        Self::start_with(INSTANT_BODY, None)
    }

    /// Answer every request with `body`; with `service`, requests are served one at a time, each
    /// taking that long (a server that is the bottleneck, like one GPU).
    pub fn start_with(body: &str, service: Option<Duration>) -> std::io::Result<InstantServer> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let listener = {
            let _guard = rt.enter();
            tokio::net::TcpListener::from_std(std_listener)?
        };
        let response: Arc<[u8]> = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
        .into();
        let service = service.map(|t| (Arc::new(tokio::sync::Mutex::new(())), t));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("bench-llm-instant".into()).spawn(move || {
            rt.block_on(async move {
                let accept = async {
                    loop {
                        match listener.accept().await {
                            Ok((stream, _)) => {
                                tokio::spawn(serve_connection(stream, response.clone(), service.clone()));
                            }
                            Err(e) => {
                                log::debug!("bench llm: instant server: accept failed: {e}");
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        }
                    }
                };
                tokio::select! {
                    _ = stopped => {}
                    _ = accept => {}
                }
            });
            // Dropping the runtime here cancels every connection task.
        })?;
        Ok(InstantServer { addr, stop: Some(stop), thread: Some(thread) })
    }

    /// The `llm.base_url` of this server.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

impl Drop for InstantServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answer every complete request on one connection until the client closes it (or sends something
/// this server does not understand).
async fn serve_connection(
    mut stream: tokio::net::TcpStream,
    response: Arc<[u8]>,
    service: Option<(Arc<tokio::sync::Mutex<()>>, Duration)>,
) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut out: Vec<u8> = Vec::with_capacity(response.len());
    loop {
        // Every complete request in the buffer (pipelining allowed), answered in order.
        let mut consumed = 0;
        loop {
            match request_len(&buf[consumed..]) {
                Ok(Some(n)) => {
                    consumed += n;
                    if let Some((one_at_a_time, t)) = &service {
                        let _serving = one_at_a_time.lock().await;
                        tokio::time::sleep(*t).await;
                    }
                    out.extend_from_slice(&response);
                }
                Ok(None) => break,
                Err(()) => return,
            }
        }
        buf.drain(..consumed);
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Length of the first complete request (head + `Content-Length` body) at the start of `buf`:
/// `Ok(None)` while incomplete, `Err` for a request this server does not handle (chunked body,
/// unparsable length, oversized head).
fn request_len(buf: &[u8]) -> Result<Option<usize>, ()> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD { Err(()) } else { Ok(None) };
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| ())?;
    let mut content_length = 0usize;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else { continue };
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = value.trim().parse().map_err(|_| ())?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(());
        }
    }
    let total = head_end + 4 + content_length;
    Ok((buf.len() >= total).then_some(total))
}

// --- the real llama.cpp server ---------------------------------------------------------------------

/// `scripts/llama-server.sh` of this checkout.
pub fn llama_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts").join("llama-server.sh")
}

/// Why `scripts/llama-server.sh start` did not give a server.
#[derive(Debug)]
pub struct StartFailure {
    /// What went wrong.
    pub why: String,
    /// The script's exit status.
    pub status: Option<std::process::ExitStatus>,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr (empty when it went to this process's stderr).
    pub stderr: String,
}

impl std::fmt::Display for StartFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} start: {}", llama_script().display(), self.why)?;
        if let Some(s) = self.status {
            write!(f, " ({s})")?;
        }
        Ok(())
    }
}

impl std::error::Error for StartFailure {}

/// A `llama-server` (llama.cpp) started by `scripts/llama-server.sh`, which builds it on first use
/// and starts a watchdog that stops it when this process dies; stopped when dropped. The benchmark
/// and the integration tests (tests/common/llama.rs) both start it through here.
#[derive(Debug)]
pub struct LlamaServer {
    pid: u32,
    port: u16,
}

impl LlamaServer {
    /// Start a server on a free port. With `show_script_output` the script's stderr (build progress)
    /// goes to this process's stderr; otherwise it is captured into the [`StartFailure`].
    pub fn start(show_script_output: bool) -> Result<LlamaServer, StartFailure> {
        Self::start_with(&[], show_script_output)
    }

    /// [`LlamaServer::start`] with extra arguments for the script's `start`, e.g.
    /// `["--model", "qwen2.5-coder-1.5b", "--threads", "2"]` (another model, fetched on first use).
    pub fn start_with(args: &[&str], show_script_output: bool) -> Result<LlamaServer, StartFailure> {
        let script = llama_script();
        let fail = |why: String| StartFailure { why, status: None, stdout: String::new(), stderr: String::new() };
        if !script.is_file() {
            return Err(fail(format!("{} not found (run from a checkout of tripletgen)", script.display())));
        }
        // No --port: the server binds a free port itself (no race between picking and binding); the
        // script reads it back from the server's log and prints it.
        let out = Command::new("bash")
            .arg(&script)
            .args(["start", "--owner-pid", &std::process::id().to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stderr(if show_script_output { Stdio::inherit() } else { Stdio::piped() })
            .output()
            .map_err(|e| fail(format!("cannot run bash {}: {e}", script.display())))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let failure = |why: &str| StartFailure {
            why: why.into(),
            status: Some(out.status),
            stdout: stdout.clone(),
            stderr: stderr.clone(),
        };
        if !out.status.success() {
            return Err(failure("the script failed"));
        }
        let line = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
        let mut it = line.split_whitespace();
        match (it.next().map(str::parse::<u32>), it.next().map(str::parse::<u16>), it.next()) {
            (Some(Ok(pid)), Some(Ok(port)), None) => Ok(LlamaServer { pid, port }),
            _ => Err(failure("expected one line `PID PORT` on stdout")),
        }
    }

    /// `http://127.0.0.1:PORT/v1`, the `llm.base_url` to use.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(llama_script())
            .args(["stop", &self.pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_framing() {
        let req = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(request_len(req), Ok(Some(req.len())));
        assert_eq!(request_len(&req[..req.len() - 1]), Ok(None), "body incomplete");
        assert_eq!(request_len(&req[..20]), Ok(None), "head incomplete");
        let mut two = req.to_vec();
        two.extend_from_slice(req);
        assert_eq!(request_len(&two), Ok(Some(req.len())), "pipelined: the first one");
        let get = b"GET /health HTTP/1.1\r\ncontent-length:0\r\n\r\n";
        assert_eq!(request_len(get), Ok(Some(get.len())));
        assert_eq!(request_len(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), Err(()));
        assert_eq!(request_len(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"), Err(()));
    }
}
