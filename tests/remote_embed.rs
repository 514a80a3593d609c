//! Remote embeddings (`model.provider = "openai" | "tei"`): a real llama.cpp server started with
//! `--embedding` end to end (plumbing, the cache, order and normalisation), and fake servers for
//! TEI's native shape and for faults (429, 5xx, garbage, a wrong vector count) and the key.
//! (Retry-After and the shared pause on 429 are the LLM client's, tested in llm_faults.rs.)

mod common;
#[path = "common/fake_llm.rs"]
mod fake_llm;
#[path = "common/llama.rs"]
mod llama;

use common::*;
use fake_llm::{FakeLlm, Reply, Request};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use tripletgen::hash::ContentHash;
use tripletgen::workspace::Store;

fn remote_toml(dir: &Path, provider: &str, url: &str, name: &str, batch: usize, extra: &str) -> std::path::PathBuf {
    let p = dir.join("remote.toml");
    std::fs::write(
        &p,
        format!(
            "[model]\nprovider = \"{provider}\"\nname = \"{name}\"\nbase_url = \"{url}\"\nconcurrency = 2\n\
             {extra}\n\n[embed]\nbatch_size = {batch}\n"
        ),
    )
    .unwrap();
    p
}

fn mine(cfg: &Path, out: &Path, ws: &Path, beir: &Path) -> Out {
    run(tripletgen()
        .args(["mine", "--index", "exact", "--format", "flag-jsonl", "--config"])
        .arg(cfg)
        .arg("--out")
        .arg(out)
        .arg("--workspace")
        .arg(ws)
        .arg(beir))
}

/// The first `n` quickstart documents with the queries whose positives are all among them.
fn small_quickstart(dir: &Path, n: usize) -> std::path::PathBuf {
    let beir = dir.join("small");
    std::fs::create_dir_all(beir.join("qrels")).unwrap();
    let corpus = std::fs::read_to_string(fixture("quickstart/corpus.jsonl")).unwrap();
    let lines: Vec<&str> = corpus.lines().take(n).collect();
    let ids: std::collections::HashSet<String> =
        lines.iter().map(|l| serde_json::from_str::<Value>(l).unwrap()["_id"].as_str().unwrap().to_string()).collect();
    std::fs::write(beir.join("corpus.jsonl"), lines.join("\n") + "\n").unwrap();
    let qrels = std::fs::read_to_string(fixture("quickstart/qrels/test.tsv")).unwrap();
    let rows: Vec<Vec<&str>> = qrels.lines().skip(1).map(|l| l.split('\t').collect()).collect();
    let keep: std::collections::HashSet<&str> =
        rows.iter().map(|r| r[0]).filter(|q| rows.iter().filter(|r| r[0] == *q).all(|r| ids.contains(r[1]))).collect();
    let kept: Vec<String> = rows.iter().filter(|r| keep.contains(r[0])).map(|r| r.join("\t")).collect();
    std::fs::write(beir.join("qrels/test.tsv"), format!("query-id\tcorpus-id\tscore\n{}\n", kept.join("\n"))).unwrap();
    let queries = std::fs::read_to_string(fixture("quickstart/queries.jsonl")).unwrap();
    let q: Vec<&str> = queries
        .lines()
        .filter(|l| keep.contains(serde_json::from_str::<Value>(l).unwrap()["_id"].as_str().unwrap()))
        .collect();
    assert!(q.len() >= 10, "{} queries", q.len());
    std::fs::write(beir.join("queries.jsonl"), q.join("\n") + "\n").unwrap();
    beir
}

/// The text a corpus line is embedded as: title and text joined (ingest's `include_title`).
fn doc_text(doc: &Value) -> String {
    let text = doc["text"].as_str().unwrap().trim();
    match doc["title"].as_str().map(str::trim) {
        Some(t) if !t.is_empty() => format!("{t} {text}"),
        _ => text.to_string(),
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (n(a) * n(b))
}

#[test]
fn a_real_embedding_server_fills_the_cache_in_order_and_normalised() {
    let Some(server) = llama::LlamaServer::start_with(&["--embedding"], llama::MODEL) else {
        return llama::skipped("a_real_embedding_server_fills_the_cache_in_order_and_normalised");
    };
    let d = tmpdir();
    let url = server.base_url();
    // One text per request: llama.cpp's vectors from a decoder LLM depend on what shares the batch
    // (cosine ~0.93 measured), so only single-text requests can be compared with a reference.
    // Requests still run two at a time and arrive in any order.
    let cfg = remote_toml(d.path(), "openai", &url, llama::MODEL, 1, "");
    let (out, ws) = (d.path().join("out"), d.path().join("ws"));
    let beir = small_quickstart(d.path(), 80);
    mine(&cfg, &out, &ws, &beir).assert_ok();
    let r = read_json(&out.join("report.json"));
    assert_eq!(num_at(&r, "/embed_documents/embedded"), 80.0, "{}", r["embed_documents"]);
    assert_eq!(r["embed_documents"]["remote"], json!(true));
    assert!(num_at(&r, "/embed_documents/tokens") > 80.0, "the server's token counts are reported");
    let manifest = read_json(&out.join("manifest.json"));
    assert!(manifest["model"]["source"].as_str().unwrap().starts_with("openai:"), "{}", manifest["model"]);

    // A rerun embeds nothing.
    mine(&cfg, &out, &ws, &beir).assert_ok();
    let r2 = read_json(&out.join("report.json"));
    assert_eq!(num_at(&r2, "/embed_documents/embedded"), 0.0);
    assert_eq!(num_at(&r2, "/embed_queries/embedded"), 0.0);

    // Each stored vector is the normalised vector of its own text (asked for alone): batches were
    // sent concurrently and came back in any order.
    let docs = read_jsonl(&beir.join("corpus.jsonl"));
    let texts: Vec<String> = docs.iter().step_by(9).map(doc_text).collect();
    let keys: Vec<ContentHash> = texts.iter().map(|t| ContentHash::of_parts(&[b"", t.as_bytes()])).collect();
    let store = Store::open(&ws).unwrap();
    let id = format!("openai:{}:dim:-", llama::MODEL);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let alone: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| {
            rt.block_on(async {
                let v: Value = reqwest::Client::new()
                    .post(format!("{url}/embeddings"))
                    .json(&json!({"model": llama::MODEL, "input": [t]}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                v["data"][0]["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
            })
        })
        .collect();
    let dim = alone[0].len();
    let stored = store.get_embeddings(&id, &keys, dim).unwrap();
    for (i, (s, a)) in stored.iter().zip(&alone).enumerate() {
        let s = s.as_ref().unwrap_or_else(|| panic!("text {i} is not stored under {id}"));
        let norm = s.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "stored vector {i} has norm {norm}");
        let c = cosine(s, a);
        assert!(c > 0.999, "stored vector {i} is not its text's vector (cosine {c})");
    }
    // Different texts have different vectors (not one vector for all).
    let c01 = cosine(stored[0].as_ref().unwrap(), stored[1].as_ref().unwrap());
    assert!(c01 < 0.999, "two texts, one vector: {c01}");
}

fn ok(body: String) -> Reply {
    Reply { status: 200, body, delay: Duration::ZERO, die_for: None }
}

/// A deterministic 4-d vector of a text: its length, its vowels, its spaces, 1.
fn vec_of(t: &str) -> Vec<f32> {
    let count = |f: fn(&char) -> bool| t.chars().filter(f).count() as f32;
    vec![t.len() as f32, count(|c| "aeiou".contains(*c)), count(|c| *c == ' '), 1.0]
}

fn inputs(req: &Request, key: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(&req.body).unwrap();
    v[key].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()
}

#[test]
fn tei_shape_faults_and_the_key() {
    let d = tmpdir();
    const KEY: &str = "sk-canary-5d1e0c";
    // Requests 2, 3, 4 and 5 fail in four ways; every one is retried. Every request must carry the key.
    let server = FakeLlm::start(|n, req| {
        assert!(req.head.contains(&format!("Bearer {KEY}")), "no key in {}", req.head);
        assert!(req.head.lines().next().unwrap().contains("/embed "), "{}", req.head);
        let texts = inputs(req, "inputs");
        let v: Value = serde_json::from_str(&req.body).unwrap();
        assert_eq!(v["truncate"], json!(true));
        match n {
            2 => fake_llm::error(429, "slow down"),
            3 => fake_llm::error(503, "busy"),
            4 => ok("<html>not json</html>".into()),
            5 => ok(json!(texts.iter().skip(1).map(|t| vec_of(t)).collect::<Vec<_>>()).to_string()),
            _ => ok(json!(texts.iter().map(|t| vec_of(t)).collect::<Vec<_>>()).to_string()),
        }
    });
    let cfg =
        remote_toml(d.path(), "tei", &server.base_url(), "bge", 16, "api_key_env = \"EMBED_KEY\"\nmax_retries = 4");
    let (out, ws) = (d.path().join("out"), d.path().join("ws"));
    let o = run(tripletgen()
        .env("EMBED_KEY", KEY)
        .args(["-v", "mine", "--index", "exact", "--format", "flag-jsonl", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .arg("--workspace")
        .arg(&ws)
        .arg(fixture("quickstart")));
    o.assert_ok();
    let r = read_json(&out.join("report.json"));
    assert_eq!(num_at(&r, "/embed_documents/embedded"), 310.0);
    // The stored vectors are the server's, normalised, each under its own text.
    let store = Store::open(&ws).unwrap();
    let docs = read_jsonl(&fixture("quickstart/corpus.jsonl"));
    for doc in docs.iter().step_by(50) {
        let t = doc_text(doc);
        let key = ContentHash::of_parts(&[b"", t.as_bytes()]);
        let v = store.get_embeddings("tei:bge:dim:-", &[key], 4).unwrap().remove(0).expect("stored");
        assert!((cosine(&v, &vec_of(&t)) - 1.0).abs() < 1e-5);
    }
    // The key is nowhere but in the requests.
    for text in [o.stdout.as_str(), o.stderr.as_str()] {
        assert!(!text.contains(KEY));
    }
    for f in std::fs::read_dir(&out).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(KEY));
    }

    // A server that only fails: a clear error naming the endpoint, nothing half-written, and the
    // batches stored before the failure are kept for the next run.
    let broken = FakeLlm::start(|_, _| fake_llm::error(500, "model crashed"));
    let cfg = remote_toml(d.path(), "openai", &broken.base_url(), "m", 16, "max_retries = 1");
    let out2 = d.path().join("out2");
    let o = mine(&cfg, &out2, &d.path().join("ws2"), &fixture("quickstart"));
    assert_ne!(o.code, Some(0));
    assert!(o.stderr.contains(&format!("{}/embeddings", broken.base_url())), "{}", o.stderr);
    assert!(o.stderr.contains("HTTP 500"), "{}", o.stderr);
    assert!(!out2.join("flag.jsonl").exists());
}

#[test]
fn remote_settings_are_checked_at_load() {
    let d = tmpdir();
    for (toml, key) in [
        ("[model]\nprovider = \"openai\"\n", "model.base_url"),
        ("[model]\nprovider = \"tei\"\nbase_url = \"localhost:80\"\n", "model.base_url"),
        ("[model]\nbase_url = \"http://127.0.0.1:1/v1\"\n", "model.base_url"),
        ("[model]\nprovider = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\ndimensions = 0\n", "model.dimensions"),
        (
            "[model]\nprovider = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\napi_key_env = \"NO_SUCH_VAR_X\"\n",
            "model.api_key_env",
        ),
        (
            "[model]\nprovider = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\n[[model.endpoints]]\nbase_url = \"http://127.0.0.1:2/v1\"\n",
            "model.endpoints",
        ),
        (
            "[model]\nprovider = \"openai\"\n[[model.endpoints]]\nbase_url = \"ftp://x\"\n",
            "model.endpoints[0].base_url",
        ),
        (
            "[model]\nprovider = \"openai\"\n[[model.endpoints]]\nbase_url = \"http://127.0.0.1:2/v1\"\nconcurrency = 0\n",
            "model.endpoints[0].concurrency",
        ),
        ("[model]\n[[model.endpoints]]\nbase_url = \"http://127.0.0.1:2/v1\"\n", "model.endpoints"),
    ] {
        let p = d.path().join("c.toml");
        std::fs::write(&p, toml).unwrap();
        let o = run(tripletgen()
            .args(["mine", "--config"])
            .arg(&p)
            .arg("--out")
            .arg(d.path().join("o"))
            .arg(fixture("quickstart")));
        assert_ne!(o.code, Some(0));
        assert!(o.stderr.contains(key), "{toml}: {}", o.stderr);
    }
}

/// An OpenAI-shaped embeddings answer for a request (`vec_of` each input).
fn openai_answer(req: &Request) -> Reply {
    let data: Vec<Value> =
        inputs(req, "input").iter().enumerate().map(|(i, t)| json!({"index": i, "embedding": vec_of(t)})).collect();
    ok(json!({"data": data, "usage": {"prompt_tokens": 3}}).to_string())
}

#[test]
fn several_endpoints_share_the_work_and_one_dying_loses_nothing() {
    let d = tmpdir();
    let beir = small_quickstart(d.path(), 120);
    // Reference: one server.
    let single = FakeLlm::start(|_, r| openai_answer(r));
    let cfg = remote_toml(d.path(), "openai", &single.base_url(), "m", 4, "");
    let (out1, ws1) = (d.path().join("out1"), d.path().join("ws1"));
    mine(&cfg, &out1, &ws1, &beir).assert_ok();

    // Three servers: `a` answers slowly, `b` stops answering (connections refused) after its fifth
    // request and never comes back, `c` answers at once.
    let a = FakeLlm::start(|_, r| openai_answer(r).after(Duration::from_millis(30)));
    let b = FakeLlm::start(|n, r| if n >= 5 { fake_llm::die(Duration::from_secs(600)) } else { openai_answer(r) });
    let c = FakeLlm::start(|_, r| openai_answer(r));
    let p = d.path().join("several.toml");
    std::fs::write(
        &p,
        format!(
            "[model]\nprovider = \"openai\"\nname = \"m\"\nmax_retries = 4\ntimeout_secs = 2\n\n\
             [[model.endpoints]]\nbase_url = \"{}\"\nconcurrency = 1\n\n\
             [[model.endpoints]]\nbase_url = \"{}\"\n\n\
             [[model.endpoints]]\nbase_url = \"{}\"\nconcurrency = 3\n\n[embed]\nbatch_size = 4\n",
            a.base_url(),
            b.base_url(),
            c.base_url()
        ),
    )
    .unwrap();
    let (out2, ws2) = (d.path().join("out2"), d.path().join("ws2"));
    let o = mine(&p, &out2, &ws2, &beir);
    o.assert_ok();
    // Same vectors, same model id (the URL is not part of it), so the same triplets.
    assert_eq!(
        std::fs::read(out1.join("flag.jsonl")).unwrap(),
        std::fs::read(out2.join("flag.jsonl")).unwrap(),
        "several endpoints changed the output"
    );
    let r = read_json(&out2.join("report.json"));
    let servers = r["embed_documents"]["servers"].as_array().expect("per-server counts").clone();
    assert_eq!(servers.len(), 3);
    let n = |s: &Value, k: &str| s[k].as_u64().unwrap();
    let vectors: u64 = servers.iter().map(|s| n(s, "vectors")).sum();
    assert_eq!(vectors, num_at(&r, "/embed_documents/embedded") as u64);
    for (s, server) in servers.iter().zip([&a, &b, &c]) {
        assert_eq!(s["base_url"], json!(server.base_url()));
        assert!(n(s, "vectors") > 0, "{s}");
    }
    // Requests to the live servers are counted as they saw them (the probe and the queries' calls are
    // extra); `b` refused connections, which it never saw.
    for (s, server) in [(&servers[0], &a), (&servers[2], &c)] {
        assert!(n(s, "requests") as usize <= server.count(), "{s}");
    }
    // `b` failed, was taken out, and its batches were done by the others.
    assert!(n(&servers[1], "errors") >= 1 && n(&servers[1], "taken_out") >= 1, "{}", servers[1]);
    assert_eq!(n(&servers[0], "errors") + n(&servers[2], "errors"), 0);
    assert!(n(&servers[2], "vectors") > n(&servers[0], "vectors"), "the fast server did more: {servers:?}");
    assert!(o.stderr.contains(&format!("{}: ", c.base_url())), "no per-server line in the summary: {}", o.stderr);
}

#[test]
fn killed_during_remote_embedding_the_rerun_sends_only_what_is_missing() {
    let d = tmpdir();
    let beir = small_quickstart(d.path(), 120);
    let inputs_seen = |s: &FakeLlm| s.requests().iter().map(|r| inputs(r, "input").len()).sum::<usize>();
    // Uninterrupted.
    let reference = FakeLlm::start(|_, r| openai_answer(r));
    let cfg = remote_toml(d.path(), "openai", &reference.base_url(), "m", 4, "");
    let (out1, ws1) = (d.path().join("out1"), d.path().join("ws1"));
    mine(&cfg, &out1, &ws1, &beir).assert_ok();
    let all = inputs_seen(&reference);

    // Killed after the third stored batch, then rerun.
    let server = FakeLlm::start(|_, r| openai_answer(r));
    let cfg = remote_toml(d.path(), "openai", &server.base_url(), "m", 4, "");
    let (out2, ws2) = (d.path().join("out2"), d.path().join("ws2"));
    let o = run(tripletgen()
        .env("TRIPLETGEN_KILL_AT", "embed-batch:3")
        .args(["mine", "--index", "exact", "--format", "flag-jsonl", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out2)
        .arg("--workspace")
        .arg(&ws2)
        .arg(&beir));
    assert_eq!(o.code, None, "killed by a signal: {}", o.stderr);
    let before = inputs_seen(&server);
    mine(&cfg, &out2, &ws2, &beir).assert_ok();
    let rerun = inputs_seen(&server) - before;
    assert!(rerun <= all - 3 * 4, "the rerun sent {rerun} texts of {all}: stored batches were sent again");
    assert_eq!(std::fs::read(out1.join("flag.jsonl")).unwrap(), std::fs::read(out2.join("flag.jsonl")).unwrap());
}
