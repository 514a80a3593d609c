//! The LLM judge end to end against a real llama.cpp server serving Qwen2.5-Coder-1.5B-Instruct
//! (fetched from PyPI by scripts/llama-server.sh): a handful of labelled cases of
//! fixtures/judge/cases.jsonl go through `tripletgen bench judge`; the verdicts are stored, a rerun
//! asks nothing, and the judge tells answers from off-topic passages.

mod common;
#[path = "common/llama.rs"]
mod llama;

use common::*;

#[test]
fn qwen_judges_labelled_cases_with_logprob_scores_and_a_rerun_asks_nothing() {
    require_models();
    let Some(server) = llama::LlamaServer::start_with(&["--model", llama::QWEN, "--threads", "2"], llama::QWEN_ALIAS)
    else {
        return llama::skipped("qwen_judges_labelled_cases_with_logprob_scores_and_a_rerun_asks_nothing");
    };
    let d = tmpdir();
    // Six easy relevant and six easy irrelevant cases (the hard ones are for the benchmark).
    let all = tripletgen::judge::read_cases(&fixture("judge/cases.jsonl")).unwrap();
    let pick = |cat: &str| all.iter().filter(|c| c.category == cat).take(6).cloned().collect::<Vec<_>>();
    let cases: Vec<_> = pick("answers").into_iter().chain(pick("off-topic")).collect();
    assert_eq!(cases.len(), 12);
    let lines: Vec<String> = cases
        .iter()
        .map(|c| {
            serde_json::json!({"id": c.id, "query": c.query, "answers": c.answers, "passage": c.passage, "relevant": c.relevant, "category": c.category})
                .to_string()
        })
        .collect();
    let cases_file = write(d.path(), "cases.jsonl", &(lines.join("\n") + "\n"));
    let cfg = write(
        d.path(),
        "judge.toml",
        &format!(
            "[llm]\nbase_url = \"{}\"\nmodel = \"{}\"\nconcurrency = 2\ntimeout_secs = 300.0\nmax_retries = 1\n\n[judge]\n[[judge.stages]]\nkind = \"llm\"\n",
            server.base_url(),
            server.model()
        ),
    );
    let ws = d.path().join("ws");
    let bench = |json: bool| {
        let mut c = tripletgen();
        c.args(["bench", "judge", "--cases"]).arg(&cases_file).arg("--config").arg(&cfg).arg("--workspace").arg(&ws);
        if json {
            c.arg("--json");
        }
        run(&mut c)
    };
    let o = bench(true);
    o.assert_ok();
    let r: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(r["failed"], 0, "every answer had a grade: {r}\n{}", server.log());
    assert_eq!(r["sent"], 12);
    let right = r["true_positive"].as_u64().unwrap() + r["true_negative"].as_u64().unwrap();
    assert!(right >= 10, "Qwen judged {right} of 12 easy cases right: {r}");
    // Verdicts are stored with logprob scores: at least one is not a plain grade / 3.
    let store = tripletgen::workspace::Store::open(&ws).unwrap();
    let id = format!(
        "llm:{}:prompt:{}:chars:4000",
        server.model(),
        tripletgen::hash::ContentHash::of(&std::fs::read_to_string(repo().join("configs/prompts/judge.txt")).unwrap())
            .short()
    );
    assert_eq!(store.count_judgements(&id).unwrap(), 12);
    let keys: Vec<_> = cases
        .iter()
        .map(|c| tripletgen::hash::ContentHash::of_parts(&[c.query.as_bytes(), c.passage.as_bytes()]))
        .collect();
    let scores: Vec<f32> = store.get_judgements(&id, &keys).unwrap().into_iter().map(|s| s.unwrap().score).collect();
    assert!(scores.iter().any(|s| (s * 3.0 - (s * 3.0).round()).abs() > 1e-3), "no logprob-based score: {scores:?}");
    drop(store);
    // A rerun answers from the workspace.
    let o = bench(true);
    o.assert_ok();
    let r2: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(r2["sent"], 0);
    assert_eq!(r2["true_positive"], r["true_positive"]);
}
