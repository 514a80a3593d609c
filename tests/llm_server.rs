//! End-to-end tests of the LLM client against a REAL OpenAI-compatible server: llama.cpp's
//! `llama-server` with SmolLM2-135M-Instruct (see `tests/common/llama.rs` and
//! `scripts/llama-server.sh`). They test the plumbing (HTTP, JSON, usage, finish reasons, json_mode,
//! concurrency), not the quality of the answers: a 135M model's answers are poor, so the assertions
//! accept any answer the client can represent and check that nothing is lost or mislabelled.
//!
//! One server is shared by the tests of this file (two slots); each request is kept short (at most
//! 64 tokens at ~50 tokens/s with one thread). `TRIPLETGEN_SKIP_LLAMA=1` skips them (developers
//! only; CI must not set it).

#[path = "common/llama.rs"]
mod llama;

use llama::LlamaServer;
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;
use tripletgen::llm::{ChatRequest, ChatResponse, Client, Message, parse_list, parse_single};

/// The shared server, or `None` (after printing "skipped") when the developer opted out.
fn server(test: &str) -> Option<&'static LlamaServer> {
    let s = LlamaServer::shared();
    if s.is_none() {
        llama::skipped(test);
    }
    s
}

fn client(server: &LlamaServer) -> Client {
    Client::new(&server.config()).expect("client for the llama-server")
}

/// One blocking call that must succeed; on failure shows the error and the end of the server's log.
fn chat(server: &LlamaServer, client: &Client, req: &ChatRequest) -> ChatResponse {
    let t = Instant::now();
    match client.chat_blocking(req) {
        Ok(r) => {
            eprintln!(
                "answer in {:.1} s: {} prompt + {} completion tokens, finish_reason {:?}: {:?}",
                t.elapsed().as_secs_f64(),
                r.prompt_tokens,
                r.completion_tokens,
                r.finish_reason,
                r.content
            );
            r
        }
        Err(e) => {
            let log = server.log();
            let start = log.len().saturating_sub(4000);
            let start = (start..=log.len()).find(|&i| log.is_char_boundary(i)).unwrap_or(0);
            panic!("request to the real llama-server failed: {e}\n--- server log (end)\n{}", &log[start..]);
        }
    }
}

#[test]
fn chat_returns_content_and_counted_usage() {
    let Some(server) = server("chat_returns_content_and_counted_usage") else { return };
    let client = client(server);
    let req = ChatRequest {
        max_tokens: Some(32),
        ..ChatRequest::new(vec![
            Message::system("You are a helpful assistant. Answer in one short sentence."),
            Message::user("What is the capital of France?"),
        ])
    };
    let r = chat(server, &client, &req);
    assert!(!r.content.trim().is_empty(), "empty content: {r:?}");
    assert!(r.prompt_tokens > 0, "prompt tokens not counted: {r:?}");
    assert!(r.completion_tokens > 0 && r.completion_tokens <= 32, "completion tokens: {r:?}");
    assert!(!r.usage_estimated, "llama-server sends `usage`; the counts must be the server's: {r:?}");
    assert_eq!(r.attempts, 1, "no retry expected against a healthy local server: {r:?}");
    match r.finish_reason.as_deref() {
        Some("stop") => assert!(!r.truncated, "{r:?}"),
        Some("length") => assert!(r.truncated, "{r:?}"),
        other => panic!("unexpected finish_reason {other:?}: {r:?}"),
    }
    let usage = client.usage();
    assert_eq!((usage.calls, usage.succeeded, usage.failed), (1, 1, 0), "{usage:?}");
    assert_eq!(usage.prompt_tokens, r.prompt_tokens);
    assert_eq!(usage.completion_tokens, r.completion_tokens);
    assert_eq!(usage.usage_estimated, 0);
}

#[test]
fn json_mode_answers_parse_or_keep_the_raw_text() {
    let Some(server) = server("json_mode_answers_parse_or_keep_the_raw_text") else { return };
    let client = client(server);

    // A list, as the query generator asks for it.
    let req = ChatRequest {
        json_mode: Some(true),
        max_tokens: Some(64),
        ..ChatRequest::new(vec![
            Message::system(
                "You write search queries. Answer only with a JSON object of the form \
                 {\"queries\": [\"...\", \"...\"]}.",
            ),
            Message::user("Write 2 short search queries about growing tomatoes."),
        ])
    };
    let r = chat(server, &client, &req);
    assert!(!r.content.is_empty(), "{r:?}");
    let parsed = catch_unwind(AssertUnwindSafe(|| parse_list(&r.content, Some("queries"))))
        .unwrap_or_else(|_| panic!("parse_list panicked on a real answer: {:?}", r.content));
    match parsed {
        Ok(items) => {
            eprintln!("parse_list: {items:?}");
            assert!(!items.is_empty(), "Ok with no items from {:?}", r.content);
            assert!(items.iter().all(|i| !i.trim().is_empty()), "empty item in {items:?} from {:?}", r.content);
        }
        Err(f) => {
            eprintln!("parse_list failure (recorded): {}", f.reason);
            assert_eq!(f.raw, r.content, "a ParseFailure must keep the whole raw answer");
            assert!(!f.reason.is_empty());
        }
    }

    // A single string, as paraphrases and translations are asked for.
    let req = ChatRequest {
        json_mode: Some(true),
        max_tokens: Some(48),
        ..ChatRequest::new(vec![
            Message::system("Answer only with a JSON object of the form {\"text\": \"...\"}."),
            Message::user("Paraphrase: how do I water tomato plants?"),
        ])
    };
    let r = chat(server, &client, &req);
    let parsed = catch_unwind(AssertUnwindSafe(|| parse_single(&r.content)))
        .unwrap_or_else(|_| panic!("parse_single panicked on a real answer: {:?}", r.content));
    match parsed {
        Ok(text) => {
            eprintln!("parse_single: {text:?}");
            assert!(!text.trim().is_empty(), "Ok with an empty string from {:?}", r.content);
        }
        Err(f) => {
            eprintln!("parse_single failure (recorded): {}", f.reason);
            assert_eq!(f.raw, r.content, "a ParseFailure must keep the whole raw answer");
        }
    }
    // json_mode constrains llama-server's sampling to JSON: an answer that was not cut short must
    // start as a JSON object (the client really sent response_format).
    if !r.truncated {
        assert!(r.content.trim_start().starts_with('{'), "json_mode answer is not a JSON object: {:?}", r.content);
    }
}

#[test]
fn two_concurrent_requests_both_complete() {
    let Some(server) = server("two_concurrent_requests_both_complete") else { return };
    let client = client(server);
    assert_eq!(client.config().concurrency, 2);
    let items: Vec<(usize, ChatRequest)> = ["Name a fruit.", "Name a colour."]
        .iter()
        .enumerate()
        .map(|(i, p)| (i, ChatRequest { max_tokens: Some(16), ..ChatRequest::user(*p) }))
        .collect();
    let t = Instant::now();
    let mut results = BTreeMap::new();
    let summary = client
        .run_blocking(items, |key, result| {
            results.insert(key, result);
            ControlFlow::Continue(())
        })
        .expect("run_blocking outside a runtime");
    eprintln!("2 requests in {:.1} s: {summary:?}", t.elapsed().as_secs_f64());
    assert_eq!(summary.delivered, 2, "{summary:?}");
    assert_eq!(summary.not_started, 0, "{summary:?}");
    assert_eq!(summary.stopped_by, None, "{summary:?}");
    assert_eq!(results.keys().copied().collect::<Vec<_>>(), vec![0, 1]);
    for (key, result) in &results {
        match result {
            Ok(r) => {
                assert!(!r.content.trim().is_empty(), "request {key}: empty content {r:?}");
                assert!(r.prompt_tokens > 0 && !r.usage_estimated, "request {key}: {r:?}");
            }
            Err(e) => panic!("request {key} failed: {e}\n--- server log\n{}", server.log()),
        }
    }
    let usage = client.usage();
    assert_eq!((usage.calls, usage.succeeded, usage.failed), (2, 2, 0), "{usage:?}");
}

#[test]
fn max_tokens_5_is_cut_and_marked_truncated() {
    let Some(server) = server("max_tokens_5_is_cut_and_marked_truncated") else { return };
    let client = client(server);
    let req = ChatRequest {
        max_tokens: Some(5),
        ..ChatRequest::user("Write a long story about a dragon who learns to bake bread.")
    };
    let r = chat(server, &client, &req);
    assert_eq!(r.finish_reason.as_deref(), Some("length"), "{r:?}");
    assert!(r.truncated, "finish_reason length must be marked truncated: {r:?}");
    assert!(r.completion_tokens > 0 && r.completion_tokens <= 5, "{r:?}");
    assert!(!r.content.is_empty(), "{r:?}");
    assert_eq!(client.usage().truncated, 1);
}
