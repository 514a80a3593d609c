//! End-to-end runs on the quickstart fixture (310 documents, 82 queries, 99 qrels pairs).
//!
//! One full `tripletgen run --config configs/quickstart.toml` is shared by the tests of this file
//! (it embeds the corpus, the slow part); tests that need another run copy its workspace so they
//! reuse the cached embeddings, except the determinism test, which makes a second fresh run. The
//! run's report.html is checked as text and rendered in headless Chromium; `inspect` reads its files.
//!
//! One test binary, one module per concern: [`files`] (outputs and their invariants), [`flags`]
//! (command-line behaviour, HNSW), [`cache`] (determinism, the embedding cache, concurrent runs),
//! [`resume`] (a killed run), [`report_html`] (report.html as text and in Chromium), [`review`]
//! (review.jsonl), [`inspect`].

#[path = "../common/mod.rs"]
mod common;

mod cache;
mod files;
mod flags;
mod inspect;
mod report_html;
mod resume;
mod review;

use common::*;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const PARQUET_FORMATS: [&str; 4] = ["triplet", "n-tuple", "labeled-pair", "labeled-list"];

struct Shared {
    dir: PathBuf,
    out: Out,
}

static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();

/// The shared quickstart run (made once per test process).
fn shared() -> &'static Shared {
    let r = SHARED.get_or_init(|| {
        require_models();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("quickstart-shared");
        let _ = std::fs::remove_dir_all(&dir);
        let config = repo().join("configs/quickstart.toml");
        let out = run(tripletgen().arg("run").arg("--config").arg(&config).arg("--out").arg(&dir));
        if out.code != Some(0) {
            return Err(format!("quickstart run failed ({:?}):\n{}", out.code, out.stderr));
        }
        Ok(Shared { dir, out })
    });
    match r {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

fn quickstart() -> PathBuf {
    fixture("quickstart")
}

/// The fixture, plus the query variants a run generated (from its `variants.parquet`, if any).
struct Fixture {
    corpus: HashMap<String, Doc>,
    queries: HashMap<String, String>,
    qrels: HashMap<String, HashSet<String>>,
    variants: HashMap<String, Variant>,
    /// Known positives of every fixture query and every accepted variant.
    positives: HashMap<String, HashSet<String>>,
}

impl Fixture {
    /// Known positives of a query or accepted variant (panics for anything else).
    fn positives(&self, qid: &str) -> &HashSet<String> {
        if let Some(v) = self.variants.get(qid) {
            assert!(v.accepted, "query {qid:?} was mined but variants.parquet says it was rejected");
        }
        self.positives.get(qid).unwrap_or_else(|| panic!("query id {qid:?} is neither a fixture query nor a variant"))
    }
    /// The text of a query or variant.
    fn query_text(&self, qid: &str) -> &str {
        match self.queries.get(qid) {
            Some(t) => t,
            None => &self.variants[qid].text,
        }
    }
}

fn load_fixture(dir: &Path, out: &Path) -> Fixture {
    let qrels = read_qrels(&dir.join("qrels/test.tsv"));
    let variants = read_variants(out);
    let mut positives = qrels.clone();
    for (id, v) in variants.iter().filter(|(_, v)| v.accepted) {
        let p = match v.source_kind.as_str() {
            "query" => qrels.get(&v.source_id).cloned().unwrap_or_default(),
            "document" => HashSet::from([v.source_id.clone()]),
            other => panic!("variant {id}: unknown source_kind {other:?}"),
        };
        positives.insert(id.clone(), p);
    }
    Fixture {
        corpus: read_corpus(&dir.join("corpus.jsonl")),
        queries: read_queries(&dir.join("queries.jsonl")),
        qrels,
        variants,
        positives,
    }
}

/// A new output folder whose `workspace/` is a copy of the shared run's (all embeddings cached).
fn out_with_cached_workspace() -> (tempfile::TempDir, PathBuf) {
    let s = shared();
    let t = tmpdir();
    let out = t.path().join("out");
    copy_dir(&s.dir.join("workspace"), &out.join("workspace"));
    (t, out)
}
