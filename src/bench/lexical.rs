//! `tripletgen bench lexical`: variants per second of each lexical strategy on generated queries.
//!
//! Queries are drawn deterministically from the fixture corpus vocabulary (3 to 12 words). The
//! embedding-neighbour table is built from seeded random word vectors over the same vocabulary (the
//! speed of a replacement does not depend on where the table came from; building it with the model is
//! an embedding cost, measured by `bench embed`). WordNet is the fetched copy.

use crate::config::{LexicalConfig, LexicalStrategy};
use crate::generate::lexical::{self, Lexicon, STOPWORDS};
use crate::generate::{neighbours, wordnet::WordNet};
use crate::vectors::{Vectors, normalize};
use anyhow::{Context, Result};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::HashSet;
use std::time::Instant;

/// One strategy's result.
#[derive(Debug, Clone, Serialize)]
pub struct LexicalResult {
    /// Strategy name.
    pub strategy: String,
    /// Queries processed.
    pub queries: usize,
    /// Variants produced (a strategy may not apply to a query).
    pub variants: usize,
    /// Seconds on one thread.
    pub seconds: f64,
    /// Variants per second on one thread.
    pub variants_per_sec: f64,
}

fn vocabulary() -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/quickstart/corpus.jsonl");
    let stop: HashSet<&str> = STOPWORDS.iter().copied().collect();
    let mut words: Vec<String> = std::fs::read_to_string(path)
        .unwrap_or_default()
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| w.len() > 2)
        .map(str::to_lowercase)
        .filter(|w| !stop.contains(w.as_str()))
        .collect();
    words.sort();
    words.dedup();
    if words.is_empty() {
        words = "planet star orbit recipe garden train camera market music history football climate"
            .split(' ')
            .map(String::from)
            .collect();
    }
    words
}

/// Generate `n` queries and time every strategy on them.
pub fn run(n: usize, wordnet_dir: &std::path::Path) -> Result<Vec<LexicalResult>> {
    let vocab = vocabulary();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let fillers = ["what", "is", "the", "how", "to", "of", "a", "in", "does", "why"];
    let queries: Vec<String> = (0..n)
        .map(|_| {
            let len = rng.random_range(3..=12);
            (0..len)
                .map(|_| {
                    if rng.random_bool(0.3) {
                        fillers[rng.random_range(0..fillers.len())].to_string()
                    } else {
                        vocab[rng.random_range(0..vocab.len())].clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let wn = WordNet::load(wordnet_dir).context("bench lexical needs WordNet (tripletgen fetch-models)")?;
    let dim = 64;
    let mut data = Vec::with_capacity(vocab.len() * dim);
    for _ in 0..vocab.len() {
        let mut v: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
        normalize(&mut v);
        data.extend(v);
    }
    let vecs = Vectors { dim, data };
    let table = neighbours(&vocab, &vecs, &vocab, &vecs, 10, -1.0);
    let lex = Lexicon {
        wordnet: Some(&wn),
        stopwords: STOPWORDS.iter().map(|s| s.to_string()).collect(),
        neighbours: table,
        contextual: Default::default(),
    };
    let cfg = LexicalConfig::default();
    let mut out = Vec::new();
    // contextual needs a masked language model: its cost is a forward pass per query, not measured here.
    for s in LexicalStrategy::ALL.into_iter().filter(|s| *s != LexicalStrategy::Contextual) {
        let t = Instant::now();
        let mut variants = 0;
        for (i, q) in queries.iter().enumerate() {
            let mut r = lexical::rng_for(cfg.seed, q, s, i % 3);
            variants += lexical::apply(q, s, &lex, &cfg, &mut r).is_some() as usize;
        }
        let seconds = t.elapsed().as_secs_f64();
        out.push(LexicalResult {
            strategy: s.name().into(),
            queries: n,
            variants,
            seconds,
            variants_per_sec: variants as f64 / seconds.max(1e-9),
        });
    }
    Ok(out)
}
