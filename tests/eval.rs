//! `tripletgen eval` on the quickstart fixture with real ONNX inference: metrics equal pytrec_eval's
//! (trec_eval's C code, from PyPI) per query and on average, on graded qrels; several models side by
//! side; run files; flag errors.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A copy of the quickstart fixture with graded qrels: grades 1-3, a judged-non-relevant (0) document
/// for every query, one query whose judgements are all 0 (it must be skipped and counted), and one
/// query of another split (in queries.jsonl, not in the qrels: read, not evaluated).
fn graded_fixture(dir: &Path) -> PathBuf {
    let src = fixture("quickstart");
    let beir = dir.join("graded");
    std::fs::create_dir_all(beir.join("qrels")).unwrap();
    std::fs::copy(src.join("corpus.jsonl"), beir.join("corpus.jsonl")).unwrap();
    let queries = std::fs::read_to_string(src.join("queries.jsonl")).unwrap();
    std::fs::write(
        beir.join("queries.jsonl"),
        queries + "{\"_id\": \"train-1\", \"text\": \"a query of another split\"}\n",
    )
    .unwrap();
    let qrels = std::fs::read_to_string(src.join("qrels/test.tsv")).unwrap();
    let mut lines: Vec<(String, String, u32)> = qrels
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_string(), f[1].to_string(), 1 + (i % 3) as u32)
        })
        .collect();
    let last = lines.last().unwrap().0.clone();
    for l in lines.iter_mut().filter(|l| l.0 == last) {
        l.2 = 0;
    }
    let queries: Vec<String> =
        lines.iter().map(|l| l.0.clone()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    for q in queries {
        lines.push((q, "astro-025".into(), 0));
    }
    let mut out = String::from("query-id\tcorpus-id\tscore\n");
    for (q, d, g) in &lines {
        out.push_str(&format!("{q}\t{d}\t{g}\n"));
    }
    std::fs::write(beir.join("qrels/test.tsv"), out).unwrap();
    beir
}

fn python() -> String {
    let python =
        std::env::var("TRIPLETGEN_TEST_PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".into());
    let probe = std::process::Command::new(&python).args(["-c", "import pytrec_eval"]).output();
    match probe {
        Ok(o) if o.status.success() => python,
        Ok(o) => panic!(
            "{python} cannot import pytrec_eval ({}). Run ./scripts/test.sh: it creates the pinned test venv and sets \
             TRIPLETGEN_TEST_PYTHON.",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("cannot run {python}: {e}. Run ./scripts/test.sh (it sets TRIPLETGEN_TEST_PYTHON)."),
    }
}

#[test]
fn eval_matches_pytrec_eval_per_query_on_graded_qrels() {
    require_models();
    let python = python();
    let t = tmpdir();
    let beir = graded_fixture(t.path());
    let run_file = t.path().join("run.trec");
    let o = run(tripletgen()
        .arg("eval")
        .arg(&beir)
        .args(["--json", "--k", "1,3,5,10,100", "--run-out"])
        .arg(&run_file)
        .arg("--workspace")
        .arg(t.path().join("ws")));
    o.assert_ok();
    let report: Value =
        serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", o.stdout));
    assert!(o.stderr.contains("ndcg@10"), "the table goes to stderr with --json:\n{}", o.stderr);
    assert_eq!(num_at(&report, "/documents"), 310.0);
    assert_eq!(num_at(&report, "/queries_read"), 83.0);
    assert_eq!(num_at(&report, "/queries_evaluated"), 81.0);
    assert_eq!(num_at(&report, "/queries_skipped"), 1.0);
    assert_eq!(num_at(&report, "/depth"), 100.0);
    let model = &report["models"][0];
    assert_eq!(model["index"], "exact");
    assert_eq!(model["per_query"].as_object().unwrap().len(), 81);
    let mean = model["mean"].as_object().unwrap();
    for (name, v) in mean {
        let v = v.as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{name} = {v}");
    }
    // A sane model on an easy fixture: far better than chance (1 relevant in 310 documents).
    assert!(mean["ndcg@10"].as_f64().unwrap() > 0.5, "{mean:?}");
    assert!(mean["recall@100"].as_f64().unwrap() >= mean["recall@10"].as_f64().unwrap());

    let report_path = t.path().join("eval.json");
    std::fs::write(&report_path, &o.stdout).unwrap();
    let c = std::process::Command::new(&python)
        .arg(repo().join("tests/python/check_eval.py"))
        .arg("--report")
        .arg(&report_path)
        .arg("--run")
        .arg(&run_file)
        .arg("--qrels")
        .arg(beir.join("qrels/test.tsv"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&c.stdout);
    assert!(c.status.success(), "check_eval.py failed:\n{stdout}\n{}", String::from_utf8_lossy(&c.stderr));
    assert!(stdout.contains("all checks passed"), "{stdout}");
    eprintln!("{stdout}");
}

#[test]
fn eval_compares_models_side_by_side_and_refuses_bad_flags() {
    require_models();
    let t = tmpdir();
    let model = models_cache().join("all-minilm-l6-v2");
    let (a, b) = (t.path().join("a.trec"), t.path().join("b.trec"));
    let o = run(tripletgen()
        .arg("eval")
        .arg(fixture("quickstart"))
        .arg("--model")
        .arg(&model)
        .arg("--model")
        .arg(&model)
        .args(["--k", "5", "--run-out"])
        .arg(&a)
        .arg("--run-out")
        .arg(&b)
        .arg("--workspace")
        .arg(t.path().join("ws")));
    o.assert_ok();
    // The table is the output: on stdout, one column per model and the difference to the first.
    assert!(
        o.stdout.contains("[2]-[1]") && o.stdout.contains("recall@5") && o.stdout.contains("ndcg@10"),
        "{}",
        o.stdout
    );
    let row = o.stdout.lines().find(|l| l.starts_with("ndcg@10")).unwrap();
    assert!(row.trim_end().ends_with("+0.0000"), "same model twice must differ by 0: {row}");
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "same model, same run file");
    assert_eq!(std::fs::read_to_string(&a).unwrap().lines().count(), 82 * 10, "depth 10 (at least 10 for ndcg@10)");

    // The same metrics through the HNSW index: close to exact search on 310 documents.
    let ndcg = |index: &str| {
        let o = run(tripletgen()
            .arg("eval")
            .arg(fixture("quickstart"))
            .args(["--json", "--index", index, "--workspace"])
            .arg(t.path().join("ws")));
        o.assert_ok();
        let v: Value = serde_json::from_str(&o.stdout).unwrap();
        assert_eq!(v["models"][0]["index"], index);
        assert_eq!(num_at(&v, "/models/0/embedded"), 0.0, "the workspace serves every embedding");
        num_at(&v, "/models/0/mean/ndcg@10")
    };
    let (exact, hnsw) = (ndcg("exact"), ndcg("hnsw"));
    assert!((exact - hnsw).abs() < 0.02, "exact {exact} vs hnsw {hnsw}");

    let bad = |args: &[&str], needle: &str| {
        let o = run(tripletgen().arg("eval").arg(fixture("quickstart")).args(args));
        o.assert_code(2).assert_stderr_has(&[needle]);
    };
    bad(&["--k", "0"], "--k");
    bad(&["--model", "x", "--model", "y", "--run-out", "one.trec"], "--run-out");
    bad(&["--pooling", "max"], "--pooling");
    bad(&["--index", "lsh"], "--index");
    bad(&["--split", "nosuch"], "input.split");
    bad(&["--model", "./no-such-model"], "model.dir");
}
