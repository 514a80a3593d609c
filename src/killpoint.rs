//! Test hook: die by SIGKILL at a named checkpoint, to prove that a kill at any point loses nothing.
//!
//! The pipeline calls [`hit`] at named points of every stage (after ingest, after each committed
//! embedding batch, after each stored LLM answer, after the index and the filter, during and after
//! mining, after each batch of a Parquet file (mid-file), between an output file's synced temporary
//! write and its rename, after each rename, before the report and the manifest). Two environment variables, read once per process, drive it:
//!
//! - `TRIPLETGEN_KILL_AT=<checkpoint>:<n>`: at the n-th hit (1-based) of `<checkpoint>` the process
//!   sends itself SIGKILL — no destructor, no flush, like `kill -9` or a power cut for the process.
//! - `TRIPLETGEN_KILL_LIST=<file>`: append each checkpoint's name to `<file>` as it is hit (one line
//!   per hit), so a test can list the points an uninterrupted run passes through.
//!
//! When neither is set (every real run) [`hit`] is one check of an initialised `OnceLock`. This is a
//! test hook only: it is not a feature and is not configured anywhere else.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Mutex, OnceLock};

/// Environment variable naming the checkpoint and hit number to die at.
pub const KILL_AT_ENV: &str = "TRIPLETGEN_KILL_AT";
/// Environment variable naming a file that records every checkpoint hit.
pub const KILL_LIST_ENV: &str = "TRIPLETGEN_KILL_LIST";

struct Hook {
    kill_at: Option<(String, u64)>,
    list: Option<std::fs::File>,
    counts: HashMap<String, u64>,
}

fn hook() -> Option<&'static Mutex<Hook>> {
    static HOOK: OnceLock<Option<Mutex<Hook>>> = OnceLock::new();
    HOOK.get_or_init(|| {
        let kill_at = std::env::var(KILL_AT_ENV).ok().and_then(|v| {
            let (name, n) = v.rsplit_once(':')?;
            Some((name.to_string(), n.parse().ok()?))
        });
        let list = std::env::var_os(KILL_LIST_ENV)
            .and_then(|p| std::fs::OpenOptions::new().create(true).append(true).open(p).ok());
        (kill_at.is_some() || list.is_some()).then(|| Mutex::new(Hook { kill_at, list, counts: HashMap::new() }))
    })
    .as_ref()
}

/// Pass the checkpoint `name`: record it, and die by SIGKILL if this is the hit asked for.
pub fn hit(name: &str) {
    let Some(hook) = hook() else { return };
    let mut h = hook.lock().unwrap_or_else(|e| e.into_inner());
    let n = {
        let c = h.counts.entry(name.to_string()).or_insert(0);
        *c += 1;
        *c
    };
    if let Some(f) = h.list.as_mut() {
        let _ = writeln!(f, "{name}");
    }
    if h.kill_at.as_ref().is_some_and(|(k, at)| k == name && *at == n) {
        // SAFETY: raise has no preconditions; SIGKILL cannot be caught, so it does not return.
        unsafe {
            libc::raise(libc::SIGKILL);
        }
    }
}
