//! What the benchmarks know about the machine and this process: CPU, cores, memory, load (from
//! /proc), CPU seconds used, resident and peak memory, and glibc's allocation overhead.

use serde::Serialize;

/// The machine the numbers come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPU model from /proc/cpuinfo.
    pub cpu: String,
    /// Cores available to this process.
    pub cores: usize,
    /// Total memory in GiB.
    pub memory_gib: f64,
    /// Kernel release.
    pub kernel: String,
    /// `release` or `debug` (debug numbers are meaningless).
    pub build: String,
    /// 1, 5 and 15-minute load averages when the benchmark started (other work on the machine).
    pub load_average: String,
}

/// Memory of this process from /proc/self/status (bytes), `None` where unavailable.
pub(crate) fn proc_status(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_kb(&status, field).map(|kb| kb * 1024)
}

pub(crate) fn parse_status_kb(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// CPU seconds (user + system, all threads) this process has used, from /proc/self/stat.
pub(crate) fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

pub(crate) fn rss() -> u64 {
    proc_status("VmRSS").unwrap_or(0)
}

pub(crate) fn peak() -> u64 {
    proc_status("VmHWM").unwrap_or(0)
}

/// Reset VmHWM to the current RSS; false when the kernel does not allow it.
pub(crate) fn reset_peak() -> bool {
    let before = rss();
    if std::fs::write("/proc/self/clear_refs", "5").is_err() {
        return false;
    }
    // After a reset the peak equals the current RSS (give or take pages touched in between).
    peak() <= before + (8 << 20)
}

/// glibc malloc's chunk for a request of `n` bytes: 8-byte header, 16-byte alignment, 32 minimum.
pub(crate) fn malloc_chunk(n: u64) -> u64 {
    ((n + 8).div_ceil(16) * 16).max(32)
}

pub(crate) fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_gib = parse_status_kb(&meminfo, "MemTotal").map_or(0.0, |kb| kb as f64 / (1024.0 * 1024.0));
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_gib,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".into(), |s| s.trim().into()),
        build: if cfg!(debug_assertions) { "debug" } else { "release" }.into(),
        load_average: std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
    }
}

/// Now, as an HTTP date (`Tue, 01 Dec 2026 09:30:40 GMT`).
pub(crate) fn utc_now() -> String {
    httpdate::fmt_http_date(std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status() {
        let status = "Name:\ttripletgen\nVmHWM:\t  123456 kB\nVmRSS:\t    2048 kB\n";
        assert_eq!(parse_status_kb(status, "VmHWM"), Some(123_456));
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(2048));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
        assert_eq!(malloc_chunk(32), 48);
        assert_eq!(malloc_chunk(1), 32);
    }
}
