//! `mine --review`: review.jsonl lists the candidates close to or above the positive.

use super::*;

#[test]
fn review_file_lists_candidates_close_to_the_positive() {
    let (_t, out) = out_with_cached_workspace();
    let margin = 0.03;
    let o = run(tripletgen().arg("mine").arg(quickstart()).arg("--out").arg(&out).args([
        "--review",
        "--review-margin",
        &margin.to_string(),
        "--format",
        "flag-jsonl",
    ]));
    o.assert_ok();
    let fx = load_fixture(&quickstart(), &out);
    let lines = read_jsonl(&out.join("review.jsonl"));
    assert!(!lines.is_empty(), "no pair has a candidate within {margin} of its positive on the quickstart?");
    let flag: HashMap<(String, String), Vec<String>> = read_jsonl(&out.join("flag.jsonl"))
        .iter()
        .map(|l| ((l["query_id"].as_str().unwrap().to_string(), strs(&l["pos_ids"])[0].clone()), strs(&l["neg_ids"])))
        .collect();
    let outcomes =
        ["range_min", "max_score", "min_score", "absolute_margin", "relative_margin", "not_sampled", "chosen"];
    let (mut total, mut above_pairs, mut relative) = (0, 0, 0);
    for (i, l) in lines.iter().enumerate() {
        let qid = l["query_id"].as_str().unwrap();
        let pid = l["positive_id"].as_str().unwrap();
        assert!(fx.positives(qid).contains(pid), "line {}: {pid} is not a positive of {qid}", i + 1);
        assert_eq!(l["query"].as_str(), Some(fx.query_text(qid)));
        assert_eq!(l["positive"].as_str(), Some(fx.corpus[pid].full().as_str()));
        let pos = l["positive_score"].as_f64().unwrap();
        let cands = l["candidates"].as_array().unwrap();
        assert!(!cands.is_empty());
        let mut above = 0;
        let mut last_rank = None;
        for c in cands {
            let (id, score, rank) =
                (c["doc_id"].as_str().unwrap(), c["score"].as_f64().unwrap(), c["rank"].as_u64().unwrap());
            assert!(!fx.positives(qid).contains(id), "line {}: known positive {id} listed as a candidate", i + 1);
            assert_eq!(c["text"].as_str(), Some(fx.corpus[id].full().as_str()));
            assert!(
                score > pos - margin - 1e-6,
                "line {}: {id} scores {score}, positive {pos}, margin {margin}",
                i + 1
            );
            assert!((c["margin"].as_f64().unwrap() - (score - pos)).abs() < 1e-5);
            assert!(last_rank.is_none_or(|r| rank > r), "line {}: ranks not increasing", i + 1);
            last_rank = Some(rank);
            let outcome = c["outcome"].as_str().unwrap();
            assert!(outcomes.contains(&outcome), "unknown outcome {outcome}");
            let chosen = flag[&(qid.to_string(), pid.to_string())].contains(&id.to_string());
            assert_eq!(
                outcome == "chosen",
                chosen,
                "line {}: {id} outcome {outcome} but chosen in flag.jsonl = {chosen}",
                i + 1
            );
            // With relative_margin 0.05 on, nothing scoring above the positive can be chosen.
            if score > pos {
                above += 1;
                assert_ne!(outcome, "chosen", "line {}: {id} beats the positive and was chosen", i + 1);
            }
            relative += (outcome == "relative_margin") as usize;
        }
        assert_eq!(l["candidates_above_positive"].as_u64(), Some(above), "line {}", i + 1);
        above_pairs += (above > 0) as usize;
        total += cands.len();
    }
    assert!(relative > 0, "the relative margin removed nothing that was listed");
    let report = read_json(&out.join("report.json"));
    assert_eq!(num_at(&report, "/mine/review_candidates") as usize, total);
    assert_eq!(num_at(&report, "/mine/pairs_with_candidates_above_positive") as usize, above_pairs);
    let files = report["write"]["files"].as_array().unwrap();
    let review = files.iter().find(|f| f["file"] == "review.jsonl").expect("review.jsonl in write.files");
    assert_eq!(review["rows"].as_u64(), Some(lines.len() as u64));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains(&format!("({total} in all)")), "report.html does not mention the review file's size");
}
