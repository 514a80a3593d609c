//! `tripletgen inspect` on the shared run's files.

use super::*;

#[test]
fn inspect_shows_rows_with_their_provenance() {
    let s = shared();
    let fx = load_fixture(&quickstart(), &s.dir);
    let prov = read_provenance(&s.dir.join("triplet.provenance.parquet"));
    let anchors = string_column(&s.dir.join("triplet.parquet"), "anchor");
    // JSON: filtered by strategy, the rows are the file's rows with the provenance of the same row.
    let o = run(tripletgen().arg("inspect").arg(&s.dir).args([
        "--strategy",
        "synonym",
        "-n",
        "4",
        "--offset",
        "2",
        "--json",
    ]));
    o.assert_ok();
    let rows: Vec<Value> = o.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 4, "{}", o.stdout);
    let synonym_rows: Vec<usize> = prov
        .iter()
        .enumerate()
        .filter(|(_, r)| fx.variants.get(&r.query_id).is_some_and(|v| v.strategy == "synonym"))
        .map(|(i, _)| i)
        .collect();
    for (r, want) in rows.iter().zip(&synonym_rows[2..6]) {
        let i = r["row"].as_u64().unwrap() as usize;
        assert_eq!(i, *want, "offset 2 of the synonym rows");
        assert_eq!(r["query_strategy"], "synonym");
        assert_eq!(r["query_id"].as_str(), Some(prov[i].query_id.as_str()));
        assert_eq!(strs(&r["negative_ids"]), prov[i].negative_ids);
        assert_eq!(r["data"]["anchor"].as_str(), Some(anchors[i].as_str()));
        assert_eq!(r["data"]["anchor"].as_str(), Some(fx.query_text(&prov[i].query_id)));
        assert_eq!(r["data"]["negative"].as_str(), Some(fx.corpus[&prov[i].negative_ids[0]].full().as_str()));
        // Generated queries carry where they came from (variants.parquet).
        let v = &fx.variants[&prov[i].query_id];
        assert_eq!(r["variant"]["source_id"].as_str(), Some(v.source_id.as_str()), "{r}");
        assert_eq!(r["variant"]["source_text"].as_str(), Some(fx.queries[&v.source_id].as_str()), "{r}");
    }
    // Text: one query's labeled-list rows, one per positive.
    let o = run(tripletgen().arg("inspect").arg(&s.dir).args([
        "--format",
        "labeled-list",
        "--query-id",
        "q002",
        "-n",
        "50",
    ]));
    o.assert_ok();
    let n = fx.qrels["q002"].len();
    assert!(
        o.stdout.starts_with(&format!(
            "labeled-list.parquet: {} rows, {n} match, showing {n}",
            read_provenance(&s.dir.join("labeled-list.provenance.parquet")).len()
        )),
        "{}",
        o.stdout
    );
    assert_eq!(o.stdout.matches("── row ").count(), n);
    assert!(o.stdout.contains(&fx.queries["q002"]) && o.stdout.contains("labels"), "{}", o.stdout);
    assert!(!o.stdout.contains("generated from"), "q002 is an input query:\n{}", o.stdout);
    // Seeded samples repeat; different seeds differ.
    let sample = |seed: &str| {
        run(tripletgen().arg("inspect").arg(&s.dir).args(["-n", "5", "--seed", seed])).assert_ok().stdout.clone()
    };
    assert_eq!(sample("1"), sample("1"));
    assert_ne!(sample("1"), sample("2"));
    // Errors: not an output folder (exit 1, the file named), a bad format (exit 2).
    let t = tmpdir();
    run(tripletgen().arg("inspect").arg(t.path()))
        .assert_code(1)
        .assert_stderr_has(&["not a tripletgen output folder", "triplet.parquet"]);
    run(tripletgen().arg("inspect").arg(&s.dir).args(["--format", "csv"]))
        .assert_code(2)
        .assert_stderr_has(&["--format"]);
}
