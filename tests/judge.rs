//! The judge stage: the ONNX cross-encoder against a torch reference of the same weights, the HTTP
//! rerank APIs and the LLM judge against servers speaking their exact shapes (with faults), the
//! gold-answer rule, relabelling, teacher scores, persistence (a rerun asks nothing) and the labelled
//! case fixture.

mod common;
#[path = "common/fake_llm.rs"]
mod fake_llm;

use common::*;
use fake_llm::{FakeLlm, Reply, Request};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

/// The quickstart corpus by text, for looking up what a written negative is.
fn quickstart_queries() -> HashMap<String, String> {
    read_queries(&fixture("quickstart/queries.jsonl"))
}

/// The fake reranker's rule: a passage is relevant when it contains the query's longest word.
fn key_word(query: &str) -> String {
    let mut words: Vec<String> =
        query.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect();
    words.sort_by_key(|w| std::cmp::Reverse(w.len()));
    words.first().cloned().unwrap_or_default()
}

fn relevant(query: &str, passage: &str) -> bool {
    passage.to_lowercase().contains(&key_word(query))
}

fn rule_score(query: &str, passage: &str) -> f64 {
    if relevant(query, passage) { 0.9 } else { 0.1 }
}

/// (query, passages) of a rerank request in `api`'s shape; panics on anything else.
fn parse_rerank(api: &str, req: &Request) -> (String, Vec<String>) {
    let v: Value = serde_json::from_str(&req.body).expect("JSON body");
    let path = req.head.lines().next().unwrap_or("").to_string();
    let list = |k: &str| -> Vec<String> {
        v[k].as_array()
            .unwrap_or_else(|| panic!("no {k} in {v}"))
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    };
    match api {
        "tei" => {
            assert!(path.contains("/rerank "), "{path}");
            assert_eq!(v["raw_scores"], json!(false));
            (v["query"].as_str().unwrap().into(), list("texts"))
        }
        "cohere" => {
            assert!(path.contains("/rerank "), "{path}");
            assert_eq!(v["model"], json!("rr"));
            assert_eq!(v["return_documents"], json!(false));
            assert_eq!(v["top_n"].as_u64().unwrap() as usize, v["documents"].as_array().unwrap().len());
            (v["query"].as_str().unwrap().into(), list("documents"))
        }
        "vllm-score" => {
            assert!(path.contains("/score "), "{path}");
            assert_eq!(v["model"], json!("rr"));
            (v["text_1"].as_str().unwrap().into(), list("text_2"))
        }
        _ => unreachable!(),
    }
}

/// The answer of `api` to (query, passages), scored by [`rule_score`] (TEI sorts by score).
fn answer(api: &str, query: &str, passages: &[String]) -> String {
    let mut scored: Vec<(usize, f64)> = passages.iter().enumerate().map(|(i, p)| (i, rule_score(query, p))).collect();
    match api {
        "tei" => {
            scored.sort_by(|a, b| b.1.total_cmp(&a.1));
            json!(scored.iter().map(|(i, s)| json!({"index": i, "score": s})).collect::<Vec<_>>()).to_string()
        }
        "cohere" => {
            scored.sort_by(|a, b| b.1.total_cmp(&a.1));
            json!({"id": "r", "results": scored.iter().map(|(i, s)| json!({"index": i, "relevance_score": s})).collect::<Vec<_>>(), "meta": {}}).to_string()
        }
        _ => json!({"id": "s", "object": "list", "data": scored.iter().map(|(i, s)| json!({"index": i, "object": "score", "score": s})).collect::<Vec<_>>()}).to_string(),
    }
}

fn ok(body: String) -> Reply {
    Reply { status: 200, body, delay: Duration::ZERO, die_for: None }
}

fn reranker(api: &'static str) -> FakeLlm {
    FakeLlm::start(move |_, req| {
        let (q, ps) = parse_rerank(api, req);
        ok(answer(api, &q, &ps))
    })
}

fn mine_with(out: &Path, workspace: &Path, extra: &[&str]) -> Out {
    run(tripletgen()
        .args(["mine", "--index", "exact", "--format", "flag-jsonl,labeled-list", "--out"])
        .arg(out)
        .arg("--workspace")
        .arg(workspace)
        .arg(fixture("quickstart"))
        .args(extra))
}

/// (query text, negative text) of every flag.jsonl line.
fn flag_negatives(out: &Path) -> Vec<(String, String)> {
    read_jsonl(&out.join("flag.jsonl"))
        .iter()
        .flat_map(|l| {
            let q = l["query"].as_str().unwrap().to_string();
            strs(&l["neg"]).into_iter().map(move |n| (q.clone(), n))
        })
        .collect()
}

#[test]
fn onnx_cross_encoders_match_the_torch_reference_single_and_batched() {
    require_models();
    let refs: Vec<Value> = read_jsonl(&fixture("cross-encoder/reference.jsonl"))
        .into_iter()
        .filter(|v| v.get("_meta").is_none())
        .collect();
    assert!(refs.len() >= 40);
    for model in ["bert-tiny", "xlmr-tiny"] {
        let dir = fixture(&format!("cross-encoder/{model}"));
        let mut ce = tripletgen::judge::OnnxCrossEncoder::load(&dir, 128, 8, 1, &ort_lib(), model).unwrap();
        let mut worst = 0f64;
        // One pair at a time (no padding).
        for r in &refs {
            let got = ce.logits(r["query"].as_str().unwrap(), &[r["passage"].as_str().unwrap()]).unwrap()[0];
            worst = worst.max((f64::from(got) - r[model]["logit"].as_f64().unwrap()).abs());
        }
        // Batched by query: passages of different lengths padded together.
        let mut by_query: HashMap<&str, Vec<&Value>> = HashMap::new();
        for r in &refs {
            by_query.entry(r["query"].as_str().unwrap()).or_default().push(r);
        }
        let mut batched = 0;
        for (q, rs) in by_query {
            let passages: Vec<&str> = rs.iter().map(|r| r["passage"].as_str().unwrap()).collect();
            let got = ce.logits(q, &passages).unwrap();
            for (g, r) in got.iter().zip(&rs) {
                worst = worst.max((f64::from(*g) - r[model]["logit"].as_f64().unwrap()).abs());
            }
            batched += (rs.len() > 1) as usize;
        }
        assert!(batched > 0, "the fixture has queries with several passages");
        assert!(worst < 1e-4, "{model}: max |onnx - torch| = {worst}");
        eprintln!("{model}: max |onnx - torch| logit difference {worst:.2e} over {} pairs", refs.len());
    }
}

#[test]
fn every_rerank_api_drops_what_it_judges_relevant_and_a_rerun_asks_nothing() {
    require_models();
    let queries = quickstart_queries();
    let texts: HashSet<&String> = queries.values().collect();
    let mut baseline: Option<Vec<(String, String)>> = None;
    for api in ["tei", "cohere", "vllm-score"] {
        let d = tmpdir();
        let server = reranker(api);
        let (out, ws) = (d.path().join("out"), d.path().join("ws"));
        let url = format!("cross-encoder={}", server.base_url());
        let args = ["--judge", url.as_str(), "--judge-api", api, "--judge-model", "rr"];
        mine_with(&out, &ws, &args).assert_ok().assert_stderr_has(&["judge"]);
        let first = server.count();
        assert!(first > 0);
        let negs = flag_negatives(&out);
        assert!(negs.len() > 300, "{}", negs.len());
        for (q, n) in &negs {
            assert!(texts.contains(q));
            assert!(!relevant(q, n), "{api}: a negative the judge called relevant was written: {q:?} / {n:?}");
        }
        let report = read_json(&out.join("report.json"));
        let judged_relevant = num_at(&report, "/mine/removed/judged_relevant");
        assert!(judged_relevant > 0.0, "{api}: the rule flags some candidates");
        assert_eq!(num_at(&report, "/judge/failed"), 0.0);
        // Same verdicts whatever the API: the same negatives.
        match &baseline {
            None => baseline = Some(negs.clone()),
            Some(b) => assert_eq!(b, &negs, "{api} gave other negatives than tei"),
        }
        // A rerun answers everything from the workspace: nothing sent, same bytes.
        let before = std::fs::read(out.join("flag.jsonl")).unwrap();
        mine_with(&out, &ws, &args).assert_ok();
        assert_eq!(server.count(), first, "{api}: the rerun sent requests");
        assert_eq!(std::fs::read(out.join("flag.jsonl")).unwrap(), before);
        let report = read_json(&out.join("report.json"));
        assert_eq!(num_at(&report, "/judge/stages/0/sent"), 0.0);
        assert!(num_at(&report, "/judge/stages/0/cached") > 0.0);
    }
}

#[test]
fn rerank_faults_are_retried_and_garbage_fails_only_its_batch() {
    require_models();
    let d = tmpdir();
    // Requests 0-2: 429, 503, a body that is not JSON: all retried. The body of the 5th request
    // always gets a wrong number of scores: that batch fails after its retries, the run goes on.
    let broken: std::sync::Arc<std::sync::Mutex<Option<String>>> = Default::default();
    let b = broken.clone();
    let server = FakeLlm::start(move |n, req| {
        let (q, ps) = parse_rerank("tei", req);
        let mut broken = b.lock().unwrap();
        if n == 4 && broken.is_none() {
            *broken = Some(req.body.clone());
        }
        match n {
            0 => Reply { status: 429, body: "{\"error\":\"Overloaded\"}".into(), delay: Duration::ZERO, die_for: None },
            1 => Reply { status: 503, body: "{\"error\":\"Unhealthy\"}".into(), delay: Duration::ZERO, die_for: None },
            2 => ok("<html>".into()),
            _ if broken.as_deref() == Some(req.body.as_str()) => ok(json!([{"index": 0, "score": 0.1}]).to_string()),
            _ => ok(answer("tei", &q, &ps)),
        }
    });
    let (out, ws) = (d.path().join("out"), d.path().join("ws"));
    // Quick retries: 1 + 2 attempts per request.
    let cfg = write(
        d.path(),
        "c.toml",
        "[llm]\nmax_retries = 2\ninitial_backoff_ms = 20\nmax_backoff_ms = 100\nconcurrency = 2\n",
    );
    let url = format!("cross-encoder={}", server.base_url());
    let args = ["--judge", url.as_str(), "--config", cfg.to_str().unwrap()];
    mine_with(&out, &ws, &args).assert_ok();
    let broken_batch = broken.lock().unwrap().clone().expect("a 5th request");
    let attempts = server.requests().iter().filter(|r| r.body == broken_batch).count();
    assert_eq!(attempts, 3, "the broken batch was tried 1 + max_retries times");
    let report = read_json(&out.join("report.json"));
    let failed = num_at(&report, "/judge/failed");
    let v: Value = serde_json::from_str(&broken_batch).unwrap();
    assert_eq!(
        failed as usize,
        v["texts"].as_array().unwrap().len(),
        "exactly the broken batch's items failed: {report}"
    );
    // Candidates judged relevant are never written; those whose judgement failed neither (the
    // pairs took the next candidates instead).
    let failed_texts: HashSet<String> = strs(&v["texts"]).into_iter().collect();
    let query = v["query"].as_str().unwrap().to_string();
    for (q, n) in flag_negatives(&out) {
        assert!(!relevant(&q, &n));
        assert!(!(q == query && failed_texts.contains(&n)), "a candidate whose judgement failed was written");
    }
    // The next run asks again only what failed (and that batch fails again).
    let before = server.count();
    mine_with(&out, &ws, &args).assert_ok();
    assert_eq!(server.count() - before, 3, "only the failed batch is re-sent (with its retries)");
}

/// A fake chat server answering the judge prompt: grade 3 when the passage contains the query's
/// longest word, else 0, with logprobs for the first token.
fn llm_judge_server() -> FakeLlm {
    FakeLlm::start(|_, req| {
        let p = req.prompt();
        let slot = |open: &str, close: &str| -> String {
            let a = p.find(open).map(|i| i + open.len()).unwrap_or(0);
            let b = p.find(close).unwrap_or(p.len());
            p[a..b].trim().to_string()
        };
        let (q, passage) = (slot("<<<QUERY", "QUERY>>>"), slot("<<<PASSAGE", "PASSAGE>>>"));
        let v: Value = serde_json::from_str(&req.body).unwrap();
        assert_eq!(v["logprobs"], json!(true), "the judge asks for logprobs");
        let (grade, p3) = if relevant(&q, &passage) { ("3", 0.9f64) } else { ("0", 0.05f64) };
        let body = json!({
            "model": "fake",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": grade}, "finish_reason": "stop",
                "logprobs": {"content": [{"token": grade, "logprob": if grade == "3" { p3.ln() } else { 0.9f64.ln() },
                    "top_logprobs": [{"token": "3", "logprob": p3.ln()}, {"token": "0", "logprob": (1.0 - p3).ln()}]}]}}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 1}
        });
        ok(body.to_string())
    })
}

#[test]
fn the_llm_judge_uses_logprobs_relabels_and_writes_teacher_scores() {
    require_models();
    let d = tmpdir();
    let server = llm_judge_server();
    let (out, ws) = (d.path().join("out"), d.path().join("ws"));
    let url = server.base_url();
    let args = [
        "--judge",
        "llm",
        "--llm-url",
        url.as_str(),
        "--llm-model",
        "fake",
        "--judge-action",
        "relabel",
        "--scores",
        "judge",
    ];
    mine_with(&out, &ws, &args).assert_ok();
    // Prompts carry the data between markers.
    let reqs = server.requests();
    assert!(!reqs.is_empty());
    assert!(reqs.iter().all(|r| r.prompt().contains("<<<QUERY") && r.prompt().contains("<<<PASSAGE")));
    let report = read_json(&out.join("report.json"));
    let relabelled = num_at(&report, "/judge/relabelled");
    assert!(relabelled > 0.0);
    // Relabelled candidates are extra positives (label 1) in labeled-list and flag.jsonl, and in
    // qrels.judged.tsv.
    let lines = read_jsonl(&out.join("flag.jsonl"));
    let extra: usize = lines.iter().map(|l| strs(&l["pos"]).len() - 1).sum();
    assert!(extra > 0);
    for l in &lines {
        let q = l["query"].as_str().unwrap();
        for (i, p) in strs(&l["pos"]).iter().enumerate().skip(1) {
            assert!(relevant(q, p), "a relabelled positive the judge did not call relevant");
            // Teacher scores: the judge's expected grade (0.9 * 3 / 3 = 0.9).
            assert!((l["pos_scores"][i].as_f64().unwrap() - 0.9).abs() < 1e-4, "{l}");
        }
        for (i, n) in strs(&l["neg"]).iter().enumerate() {
            assert!(!relevant(q, n));
            assert!((l["neg_scores"][i].as_f64().unwrap() - 0.05).abs() < 1e-4, "teacher score of a negative: {l}");
        }
    }
    let qrels = std::fs::read_to_string(out.join("qrels.judged.tsv")).unwrap();
    assert!(qrels.lines().count() > 1 + 82);
    let cols = parquet_column_names(&out.join("labeled-list.provenance.parquet"));
    assert!(cols.contains(&"negative_judge_scores".to_string()), "{cols:?}");
    // Tokens and calls are reported.
    assert!(num_at(&report, "/judge/stages/0/prompt_tokens") > 0.0);
}

#[test]
fn synthetic_queries_bring_answer_spans_that_act_as_gold_answers() {
    require_models();
    let d = tmpdir();
    // Document frequency of each word of the corpus: the answer span given with the first query of
    // a document is its word shared with the most other documents, so that the rule has work to do.
    let corpus = fixture("quickstart/corpus.jsonl");
    let words = |t: &str| -> HashSet<String> {
        t.split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() >= 5).map(str::to_lowercase).collect()
    };
    let mut df: HashMap<String, usize> = HashMap::new();
    for doc in read_jsonl(&corpus) {
        for w in words(doc["text"].as_str().unwrap()) {
            *df.entry(w).or_default() += 1;
        }
    }
    let server = FakeLlm::start(move |_, req| {
        let p = req.prompt();
        let Some(doc) = fake_llm::slot(&p, "DOCUMENT") else {
            return fake_llm::echo(0, req);
        };
        let mut shared: Vec<String> = words(doc).into_iter().collect();
        shared.sort_by_key(|w| (std::cmp::Reverse(df[w]), w.clone()));
        let w: Vec<&str> = doc.split_whitespace().collect();
        let q = |from: usize| w.iter().skip(from).step_by(2).take(4).copied().collect::<Vec<_>>().join(" ");
        fake_llm::completion(
            &json!({"queries": [{"query": q(0), "answer": shared[0]}, {"query": q(9), "answer": "zebra quantum violin"}]})
                .to_string(),
        )
    });
    let cfg = server.pipeline_config(d.path(), &corpus, "", "");
    run_config(&cfg, &[]).assert_ok();
    let out = d.path().join("out");
    let report = read_json(&out.join("report.json"));
    // 6 documents, 2 queries each: every query came with a span; only the first one's is in its document.
    assert_eq!(num_at(&report, "/llm/answers_given"), 12.0, "{}", report["llm"]);
    assert_eq!(num_at(&report, "/llm/answers_in_document"), 6.0, "{}", report["llm"]);
    let variants = read_variants(&out);
    let synthetic: Vec<&Variant> = variants.values().filter(|v| v.strategy == "synthetic").collect();
    assert_eq!(synthetic.len(), 12);
    assert!(synthetic.iter().all(|v| v.answer.is_some()), "variants.parquet keeps every span");
    // The rule flagged candidates, and no negative of a synthetic query holds its (found) span.
    assert!(num_at(&report, "/judge/gold_flagged") > 0.0, "{}", report["judge"]);
    let span: HashMap<&str, &str> = synthetic
        .iter()
        .filter(|v| v.answer.as_deref() != Some("zebra quantum violin"))
        .map(|v| (v.text.as_str(), v.answer.as_deref().unwrap()))
        .collect();
    let mut checked = 0;
    for (q, n) in flag_negatives(&out) {
        if let Some(a) = span.get(q.as_str()) {
            checked += 1;
            assert!(!words(&n).contains(*a), "a negative of {q:?} contains its answer span {a:?}");
        }
    }
    assert!(checked > 0, "no negative of a synthetic query with a span was written");
    // Without gold answers, the same spans are mined as negatives.
    let mut body = std::fs::read_to_string(&cfg).unwrap();
    body.push_str("\n[judge]\ngold_answers = false\n");
    std::fs::write(&cfg, body).unwrap();
    run_config(&cfg, &[]).assert_ok();
    let hits = flag_negatives(&out)
        .iter()
        .filter(|(q, n)| span.get(q.as_str()).is_some_and(|a| words(n).contains(*a)))
        .count();
    assert!(hits > 0, "the spans would have been negatives without the rule");
}

#[test]
fn gold_answers_drop_candidates_without_a_judge_and_skip_the_screens_with_one() {
    require_models();
    let d = tmpdir();
    // The quickstart folder with every query's longest word as its gold answer.
    let beir = d.path().join("beir");
    copy_dir(&fixture("quickstart"), &beir);
    let lines: Vec<String> = read_jsonl(&fixture("quickstart/queries.jsonl"))
        .into_iter()
        .map(|mut v| {
            let kw = key_word(v["text"].as_str().unwrap());
            v["answers"] = json!([kw]);
            v.to_string()
        })
        .collect();
    std::fs::write(beir.join("queries.jsonl"), lines.join("\n") + "\n").unwrap();
    let out = d.path().join("out");
    run(tripletgen().args(["mine", "--index", "exact", "--format", "flag-jsonl", "--out"]).arg(&out).arg(&beir))
        .assert_ok();
    let report = read_json(&out.join("report.json"));
    assert!(num_at(&report, "/judge/gold_flagged") > 0.0);
    for (q, n) in flag_negatives(&out) {
        // Word-boundary match after SQuAD normalisation (the rule), approximated here by words.
        let kw = key_word(&q);
        let words: HashSet<String> = n.split(|c: char| !c.is_alphanumeric()).map(str::to_lowercase).collect();
        assert!(!words.contains(&kw), "a negative contains the gold answer {kw:?}");
    }
}

#[test]
fn the_embedding_teacher_screens_and_only_what_it_passes_on_reaches_the_llm() {
    require_models();
    let d = tmpdir();
    let server = llm_judge_server();
    let (out, ws) = (d.path().join("out"), d.path().join("ws"));
    let model = models_cache().join("all-minilm-l6-v2");
    let url = server.base_url();
    let cfg = write(
        d.path(),
        "j.toml",
        &format!(
            "[llm]\nbase_url = \"{url}\"\nmodel = \"fake\"\n\n[judge]\n\n[[judge.stages]]\nkind = \"embedding\"\ndir = {}\nclear_below = 0.5\nthreshold = 0.6\n\n[[judge.stages]]\nkind = \"llm\"\n",
            tp(&model)
        ),
    );
    run(tripletgen()
        .args(["mine", "--index", "exact", "--format", "flag-jsonl", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .arg("--workspace")
        .arg(&ws)
        .arg(fixture("quickstart")))
    .assert_ok();
    let report = read_json(&out.join("report.json"));
    let (judged0, escalated0, cleared0) = (
        num_at(&report, "/judge/stages/0/judged"),
        num_at(&report, "/judge/stages/0/escalated"),
        num_at(&report, "/judge/stages/0/cleared"),
    );
    let judged1 = num_at(&report, "/judge/stages/1/judged");
    assert!(judged0 > 0.0 && cleared0 > 0.0 && escalated0 > 0.0, "{report}");
    assert_eq!(judged1, escalated0, "only what the teacher passed on reaches the LLM");
    assert_eq!(server.count() as f64, escalated0);
    let agreement = &report["judge"]["agreement"][0];
    let total: f64 =
        ["both_relevant", "only_first", "only_second", "neither"].iter().map(|k| agreement[k].as_f64().unwrap()).sum();
    assert_eq!(total, escalated0);
}

#[test]
fn the_labelled_fixture_is_well_formed_and_the_gold_rule_is_measured_on_it() {
    let cases = tripletgen::judge::read_cases(&fixture("judge/cases.jsonl")).unwrap();
    assert!(cases.len() >= 120, "{}", cases.len());
    let relevant = cases.iter().filter(|c| c.relevant).count();
    assert!(relevant > 30 && cases.len() - relevant > 30);
    let cats: HashSet<&str> = cases.iter().map(|c| c.category.as_str()).collect();
    for c in [
        "answers",
        "answers-paraphrased",
        "same-topic-no-answer",
        "answer-string-other-sense",
        "near-miss",
        "off-topic",
    ] {
        assert!(cats.contains(c), "category {c} is missing");
    }
    // The gold-answer rule alone: it finds every verbatim answer and is fooled by the other sense.
    require_models();
    let d = tmpdir();
    let mut store = tripletgen::workspace::Store::open(d.path()).unwrap();
    let mut cfg = tripletgen::config::Config::default();
    cfg.validate("test").ok();
    let r = tripletgen::judge::evaluate_cases(&cfg, &cases, true, &mut store).unwrap();
    assert_eq!(r.cases, cases.len());
    let (ok, n) = r.by_category["answers"];
    assert_eq!(ok, n, "every verbatim answer is found");
    let (ok, _) = r.by_category["answer-string-other-sense"];
    assert_eq!(ok, 0, "the rule cannot tell another sense of the answer string");
    let (ok, _) = r.by_category["answers-paraphrased"];
    assert_eq!(ok, 0, "the rule cannot see an answer in other words");
    eprintln!(
        "gold-answer rule on the fixture: accuracy {:.3}, recall {:.3}, precision {:.3}",
        r.accuracy(),
        r.recall(),
        r.precision()
    );
}

#[test]
fn a_refresh_after_the_corpus_changed_asks_nothing_already_judged() {
    require_models();
    let d = tmpdir();
    let beir = d.path().join("beir");
    copy_dir(&fixture("quickstart"), &beir);
    let server = reranker("tei");
    let (out, ws) = (d.path().join("out"), d.path().join("ws"));
    let url = format!("cross-encoder={}", server.base_url());
    let mine = || {
        run(tripletgen()
            .args(["mine", "--index", "exact", "--format", "flag-jsonl", "--judge", url.as_str(), "--out"])
            .arg(&out)
            .arg("--workspace")
            .arg(&ws)
            .arg(&beir))
        .assert_ok();
    };
    let pairs_sent = |reqs: &[Request]| -> HashSet<(String, String)> {
        reqs.iter()
            .flat_map(|r| {
                let (q, ps) = parse_rerank("tei", r);
                ps.into_iter().map(move |p| (q.clone(), p))
            })
            .collect()
    };
    mine();
    let first = pairs_sent(&server.requests());
    let n1 = server.count();
    // Edit every tenth document (a word appended) and rerun on the same workspace.
    let corpus = beir.join("corpus.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&corpus)
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            if i % 10 == 0 {
                v["text"] = json!(format!("{} Revised.", v["text"].as_str().unwrap()));
            }
            v.to_string()
        })
        .collect();
    std::fs::write(&corpus, lines.join("\n") + "\n").unwrap();
    mine();
    let second = pairs_sent(&server.requests()[n1..]);
    assert!(!second.is_empty(), "the edited documents are new candidates to judge");
    let again: Vec<_> = second.intersection(&first).collect();
    assert!(again.is_empty(), "the refresh asked again about {} (query, passage) pairs judged before", again.len());
    let report = read_json(&out.join("report.json"));
    assert!(num_at(&report, "/judge/stages/0/cached") > 0.0, "the unchanged verdicts came from the workspace");
}

/// The words of `text`, lower case (how the fakes below tell whether a passage holds a span).
fn word_set(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// Said by the fake answer reader when a positive has no answer: a span in no passage.
const MADE_UP: &str = "zebra quantum violin";

/// The fake answer reader: when the positive holds the query's key word, its longest word that is
/// not in the query (the "answer"); else [`MADE_UP`] (which must not be used).
fn fake_answer(query: &str, passage: &str) -> String {
    let words = word_set(passage);
    let q = word_set(query);
    let mut w: Vec<&String> = words.iter().filter(|w| !q.contains(*w) && w.chars().all(char::is_alphabetic)).collect();
    w.sort_by_key(|w| (std::cmp::Reverse(w.len()), w.to_string()));
    match w.first() {
        Some(a) if words.contains(&key_word(query)) => a.to_string(),
        _ => MADE_UP.into(),
    }
}

#[test]
fn answers_read_from_positives_act_as_gold_answers_and_are_shown_to_the_judge() {
    require_models();
    let d = tmpdir();
    // The judge says yes when the passage holds an answer it is shown, and no when shown none.
    let server = FakeLlm::start(|_, req| {
        let p = req.prompt();
        let passage = fake_llm::slot(&p, "PASSAGE").expect("a passage").to_string();
        if let Some(q) = fake_llm::slot(&p, "QUESTION") {
            return fake_llm::completion(&format!("\"{}\".", fake_answer(q, &passage)));
        }
        let shown = fake_llm::slot(&p, "ANSWER").map(str::to_lowercase);
        let yes = shown.is_some_and(|a| a.split(" / ").any(|a| word_set(&passage).contains(a)));
        fake_llm::completion(if yes { "yes" } else { "no" })
    });
    let (out, ws) = (d.path().join("out"), d.path().join("ws"));
    let url = server.base_url();
    let args = ["--judge", "llm", "--derive-answers", "--llm-url", url.as_str(), "--llm-model", "fake"];
    // A dry run plans the reads and sends nothing.
    let dry = mine_with(&out, &ws, &[&args[..], &["--dry-run"]].concat());
    dry.assert_ok();
    assert_eq!(server.count(), 0, "a dry run sent requests");
    assert!(dry.stderr.contains("answers read from positives"), "{}", dry.stderr);

    mine_with(&out, &ws, &args).assert_ok();
    let reqs = server.requests();
    // One read per (query, positive) of the qrels; the answers each query should have got.
    let queries = quickstart_queries();
    let qrels: Vec<(String, String)> = read_qrels(&fixture("quickstart/qrels/test.tsv"))
        .into_iter()
        .flat_map(|(q, docs)| docs.into_iter().map(move |d| (q.clone(), d)))
        .collect();
    let docs = read_corpus(&fixture("quickstart/corpus.jsonl"));
    let reads = reqs.iter().filter(|r| r.prompt().contains("<<<QUESTION")).count();
    assert_eq!(reads, qrels.len(), "one read per (query, positive)");
    let mut answer_of: HashMap<String, HashSet<String>> = HashMap::new();
    for (q, doc) in &qrels {
        let text = &queries[q];
        let a = fake_answer(text, &docs[doc].full());
        if a != MADE_UP {
            answer_of.entry(text.clone()).or_default().insert(a);
        }
    }
    let report = read_json(&out.join("report.json"));
    let asked: HashSet<&String> = qrels.iter().map(|(q, _)| q).collect();
    assert_eq!(num_at(&report, "/judge/derived/queries"), asked.len() as f64, "{}", report["judge"]);
    assert_eq!(num_at(&report, "/judge/derived/answered"), answer_of.len() as f64, "{}", report["judge"]);
    assert!(!answer_of.is_empty() && answer_of.len() < asked.len(), "the fixture tests both outcomes");
    // The judge is shown the answers read for its query, and only those.
    let mut shown = 0;
    for r in reqs.iter().filter(|r| !r.prompt().contains("<<<QUESTION")) {
        let p = r.prompt();
        let q = fake_llm::slot(&p, "QUERY").unwrap();
        let got: Option<HashSet<String>> =
            fake_llm::slot(&p, "ANSWER").map(|a| a.split(" / ").map(str::to_lowercase).collect());
        assert_eq!(got.as_ref(), answer_of.get(q), "{p}");
        shown += got.is_some() as usize;
    }
    assert!(shown > 0);
    // No negative of an answered query holds its answer.
    let mut checked = 0;
    for (q, n) in flag_negatives(&out) {
        if let Some(a) = answer_of.get(&q) {
            checked += 1;
            assert!(word_set(&n).is_disjoint(a), "a negative of {q:?} holds its answer {a:?}");
        }
    }
    assert!(checked > 0);
    assert!(num_at(&report, "/judge/gold_flagged") > 0.0, "candidates holding a read answer are flagged");
    // A rerun reads and judges nothing again.
    let n = server.count();
    mine_with(&out, &ws, &args).assert_ok();
    assert_eq!(server.count(), n, "the rerun sent requests");
    let report = read_json(&out.join("report.json"));
    assert_eq!(num_at(&report, "/judge/derived/reader/cached"), qrels.len() as f64);
}
