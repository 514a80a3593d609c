//! `tripletgen bench judge`: a judge cascade's accuracy on labelled (query, passage, relevant) cases
//! (fixtures/judge/cases.jsonl), with and without the gold-answer rule, and its rate.

use crate::config::Config;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

/// Options of the judge benchmark.
#[derive(Debug, Args, Clone)]
pub struct JudgeBenchArgs {
    /// Labelled cases (JSON lines: id, query, answers, passage, relevant, category).
    #[arg(long, default_value = "fixtures/judge/cases.jsonl")]
    pub cases: PathBuf,
    /// A config whose `[judge]` (and `[llm]`) sections describe the cascade to measure.
    #[arg(long)]
    pub config: PathBuf,
    /// Workspace for the verdicts (a rerun asks nothing again). Default: a temporary folder.
    #[arg(long)]
    pub workspace: Option<PathBuf>,
    /// Give the judge the cases' gold answers (the gold-answer rule); default: hidden.
    #[arg(long)]
    pub with_answers: bool,
}

/// Run the benchmark and print its table (or JSON).
pub fn run(a: &JudgeBenchArgs, json: bool) -> Result<()> {
    let cases = crate::judge::read_cases(&a.cases).map_err(anyhow::Error::msg)?;
    let cfg = Config::load(&a.config)?;
    // Only the sections a judge reads: the cases are the input, so no `[input]` is needed.
    let origin = a.config.display().to_string();
    if let Some(l) = &cfg.llm {
        l.validate(&origin)?;
    }
    if let Some(j) = &cfg.judge {
        j.validate(&origin, cfg.llm.is_some())?;
    }
    let tmp;
    let ws = match &a.workspace {
        Some(w) => w.clone(),
        None => {
            tmp = tempfile::tempdir().context("temporary workspace")?;
            tmp.path().to_path_buf()
        }
    };
    let mut store = crate::workspace::Store::open(&ws)?;
    let r = crate::judge::evaluate_cases(&cfg, &cases, a.with_answers, &mut store)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let stages: Vec<String> = cfg
        .judge
        .iter()
        .flat_map(|j| &j.stages)
        .map(|s| match (&s.model, s.kind) {
            (Some(m), k) => format!("{} ({m})", k.name()),
            (None, k) => k.name().to_string(),
        })
        .collect();
    let cascade = if stages.is_empty() { "gold-answer rule only".to_string() } else { stages.join(" -> ") };
    println!(
        "judge: {cascade}; {} cases from {} ({})",
        r.cases,
        a.cases.display(),
        if a.with_answers { "gold answers given" } else { "no gold answers" }
    );
    println!(
        "  accuracy {:.3}  precision {:.3}  recall {:.3}  (tp {} fp {} fn {} tn {}, {} failed)",
        r.accuracy(),
        r.precision(),
        r.recall(),
        r.true_positive,
        r.false_positive,
        r.false_negative,
        r.true_negative,
        r.failed
    );
    for (cat, (ok, n)) in &r.by_category {
        println!("  {cat:<28} {ok:>4}/{n:<4} {:.3}", *ok as f64 / (*n).max(1) as f64);
    }
    let rate = if r.seconds > 0.0 { r.sent as f64 / r.seconds } else { 0.0 };
    println!("  {} judgements sent in {:.1}s ({rate:.2}/s), the rest from the workspace", r.sent, r.seconds);
    Ok(())
}
