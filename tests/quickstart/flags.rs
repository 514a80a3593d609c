//! Command-line behaviour: stdout stays empty unless `--json`, `mine` obeys its flags, and the HNSW
//! index (`--index hnsw`) is deterministic, positive-aware and close to exact.

use super::*;

#[test]
fn quickstart_normal_run_prints_nothing_on_stdout() {
    let s = shared();
    assert_eq!(s.out.stdout, "", "stdout must stay empty (logs and summary go to stderr)");
    s.out.assert_no_panic();
    assert!(s.out.stderr.contains("310 documents"), "summary missing on stderr:\n{}", s.out.stderr);
}

/// report.json has the peak RSS after each stage, in run order and never falling; the summary
/// names the stage that reached the peak.
#[test]
fn report_has_the_peak_memory_per_stage() {
    let s = shared();
    let r = read_json(&s.dir.join("report.json"));
    let stages: Vec<(&str, u64)> = r["memory"]["peak_after"]
        .as_array()
        .unwrap_or_else(|| panic!("report.json memory: {}", r["memory"]))
        .iter()
        .map(|p| (p["stage"].as_str().unwrap(), p["peak_rss_bytes"].as_u64().unwrap()))
        .collect();
    let names: Vec<&str> = stages.iter().map(|p| p.0).collect();
    let want = ["ingest", "load_model", "embed_documents", "index", "embed_queries", "generate", "mine", "write"];
    assert_eq!(names, want);
    assert!(stages[0].1 > 1 << 20, "peak after ingest: {} bytes", stages[0].1);
    assert!(stages.windows(2).all(|w| w[0].1 <= w[1].1), "the peak fell: {stages:?}");
    let peak = r["memory"]["peak_rss_bytes"].as_u64().unwrap();
    assert_eq!(peak, stages.last().unwrap().1);
    // Loading ONNX Runtime and the model is well above reading 310 documents.
    assert!(stages[1].1 > stages[0].1 + (20 << 20), "{stages:?}");
    let stage = stages.iter().find(|p| p.1 >= peak).unwrap().0;
    let line = s.out.stderr.lines().find(|l| l.contains("memory   peak")).expect("no memory line in the summary");
    assert!(line.contains(&format!("reached in {stage}")) && line.contains("MiB"), "{line}");
}

#[test]
fn json_flag_prints_the_report_as_json_on_stdout() {
    let (_t, out) = out_with_cached_workspace();
    let o = run(tripletgen()
        .args(["run", "--json", "--config"])
        .arg(repo().join("configs/quickstart.toml"))
        .arg("--out")
        .arg(&out));
    o.assert_ok();
    let v: Value =
        serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", o.stdout));
    assert_eq!(num_at(&v, "/ingest/documents"), 310.0);
    assert_eq!(num_at(&v, "/ingest/pairs"), 99.0);
    let file = read_json(&out.join("report.json"));
    assert_eq!(v["mine"]["negatives"], file["mine"]["negatives"]);
    assert_eq!(v["ingest"], file["ingest"]);
}

#[test]
fn mine_subcommand_obeys_its_flags() {
    let (_t, out) = out_with_cached_workspace();
    let o = run(tripletgen()
        .arg("mine")
        .arg(quickstart())
        .arg("--out")
        .arg(&out)
        .args(["--num-negatives", "3", "--format", "triplet,n-tuple", "--sampling", "random", "--seed", "7"])
        .args(["--range-min", "2", "--range-max", "30"]));
    o.assert_ok();
    assert_eq!(o.stdout, "");
    for name in [
        "triplet.parquet",
        "triplet.provenance.parquet",
        "n-tuple.parquet",
        "n-tuple.provenance.parquet",
        "report.json",
    ] {
        assert!(out.join(name).is_file(), "{name} missing");
    }
    for name in ["labeled-pair.parquet", "labeled-list.parquet", "flag.jsonl"] {
        assert!(!out.join(name).exists(), "{name} was written but not asked for");
    }
    assert_eq!(
        parquet_column_names(&out.join("n-tuple.parquet")),
        ["anchor", "positive", "negative_1", "negative_2", "negative_3"]
    );
    assert_eq!(parquet_column_names(&out.join("triplet.parquet")), ["anchor", "positive", "negative"]);

    let fx = load_fixture(&quickstart(), &out);
    let trip = read_provenance(&out.join("triplet.provenance.parquet"));
    let ntup = read_provenance(&out.join("n-tuple.provenance.parquet"));
    assert!(!trip.is_empty() && !ntup.is_empty());
    let mut ranks = Vec::new();
    for r in trip.iter().chain(&ntup) {
        for (&rank, (id, &score)) in r.negative_ranks.iter().zip(r.negative_ids.iter().zip(&r.negative_scores)) {
            assert!((2..30).contains(&rank), "rank {rank} outside [2, 30): {r:?}");
            assert!(!fx.positives(&r.query_id).contains(id), "negative {id} is a positive: {r:?}");
            assert!(obeys_relative_margin(r.positive_score as f64, score as f64, 0.05), "{r:?}");
            ranks.push(rank);
        }
    }
    for r in &ntup {
        assert_eq!(r.negative_ids.len(), 3, "n-tuple rows carry exactly 3 negatives: {r:?}");
    }
    // Per pair: 3 triplet rows at most.
    let per_pair = histogram(trip.iter().map(|r| (r.query_id.clone(), r.positive_id.clone())));
    assert!(per_pair.values().all(|&n| n <= 3), "{per_pair:?}");
    // Random sampling: not simply the 3 best candidates after range_min every time.
    let top3 = ntup
        .iter()
        .filter(|r| r.negative_ranks.iter().copied().collect::<HashSet<_>>() == HashSet::from([2, 3, 4]))
        .count();
    assert!(top3 < ntup.len() / 2, "{top3} of {} n-tuples are ranks 2,3,4: sampling looks like `top`", ntup.len());
    assert!(
        ranks.iter().any(|&r| r >= 10),
        "no rank >= 10 with random sampling over [2, 30): {:?}",
        histogram(ranks.clone())
    );

    let report = read_json(&out.join("report.json"));
    assert_eq!(num_at(&report, "/ingest/pairs"), 99.0);
    assert_eq!(
        num_at(&report, "/embed_documents/embedded"),
        0.0,
        "the copied workspace should have served every document"
    );
    let manifest = read_json(&out.join("manifest.json"));
    let m = &manifest["config"]["mine"];
    assert_eq!(m["num_negatives"], 3, "{m}");
    assert_eq!(m["seed"], 7, "{m}");
    assert_eq!(m["sampling"], "random", "{m}");
}

/// HNSW search on the fixture: deterministic (serial insertion), positive-aware, and close to exact.
#[test]
fn hnsw_index_is_deterministic_positive_aware_and_close_to_exact() {
    let mut outs = Vec::new();
    let mut keep = Vec::new();
    for index in ["hnsw", "hnsw", "exact"] {
        let (t, out) = out_with_cached_workspace();
        let o = run(tripletgen().arg("mine").arg(quickstart()).arg("--out").arg(&out).args([
            "--index",
            index,
            "--format",
            "triplet,flag-jsonl",
        ]));
        o.assert_ok();
        assert_eq!(o.stdout, "", "stdout must stay empty with --index {index}");
        let r = read_json(&out.join("report.json"));
        assert_eq!(r["index"]["kind"], index, "{}", r["index"]);
        outs.push(out);
        keep.push(t);
    }
    let diff = differing_files(&outs[0], &outs[1], &["triplet.parquet", "triplet.provenance.parquet", "flag.jsonl"]);
    assert!(diff.is_empty(), "two HNSW runs differ in {diff:?}");

    let fx = load_fixture(&quickstart(), &outs[0]);
    let hnsw = read_jsonl(&outs[0].join("flag.jsonl"));
    let exact = read_jsonl(&outs[2].join("flag.jsonl"));
    assert_eq!(hnsw.len(), exact.len());
    let (mut same, mut total) = (0, 0);
    for (h, e) in hnsw.iter().zip(&exact) {
        assert_eq!(h["query_id"], e["query_id"]);
        let qid = h["query_id"].as_str().unwrap();
        let hn = strs(&h["neg_ids"]);
        for n in &hn {
            assert!(!fx.positives(qid).contains(n), "HNSW negative {n} is a positive of {qid}");
        }
        let en: HashSet<String> = strs(&e["neg_ids"]).into_iter().collect();
        same += hn.iter().filter(|n| en.contains(*n)).count();
        total += en.len();
    }
    assert!(total > 0);
    assert!(same as f64 >= 0.9 * total as f64, "HNSW found only {same} of the {total} exact negatives");
}
