//! Benchmarks (`tripletgen bench`): numbers, not pass/fail.

use anyhow::Result;
use clap::Args;

/// Benchmark options.
#[derive(Debug, Args)]
pub struct BenchArgs {}

/// Run the benchmarks.
pub fn run(_args: BenchArgs, _show_progress: bool) -> Result<()> {
    anyhow::bail!("not yet")
}
