//! Generate: candidate query variants, to be checked by [`crate::filter`] before they are mined.
//!
//! Today: LLM-free lexical variants of the given queries ([`lexical`], with [`wordnet`]). A variant
//! inherits every positive of its source query. Generation is cheap and deterministic, so it is
//! recomputed on every run; the variants' embeddings are cached like any other text.

pub mod lexical;
pub mod llm;
pub mod mlm;
pub mod wordnet;

use crate::config::{LexicalConfig, LexicalStrategy, Strategy};
use crate::hash::ContentHash;
use crate::index::exact_search;
use crate::ingest::{Answers, Dataset};
use crate::vectors::Vectors;
use lexical::{Lexicon, STOPWORDS};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use wordnet::{WordNet, WordNetError};

/// Errors of the generate stage.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// WordNet could not be loaded.
    #[error(transparent)]
    WordNet(#[from] WordNetError),
    /// A stop-word or word-vector file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The masked language model of the contextual strategy.
    #[error("masked language model {dir}: {message}")]
    MaskedLm {
        /// Its folder.
        dir: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A word-vector line does not parse.
    #[error("{path}:{line}: {message}")]
    WordVectors {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// What a candidate was generated from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Source {
    /// A query (index into `Dataset::queries`): a variant inherits its positives.
    Query(usize),
    /// A document (index into `Dataset::docs`): a synthetic query whose positive is the document.
    Document(usize),
}

impl Source {
    /// The source's id.
    pub fn id(self, ds: &Dataset) -> &str {
        match self {
            Source::Query(q) => &ds.queries[q].id,
            Source::Document(d) => &ds.docs[d].id,
        }
    }
    /// The source's text.
    pub fn text(self, ds: &Dataset) -> &str {
        match self {
            Source::Query(q) => &ds.queries[q].text,
            Source::Document(d) => &ds.docs[d].text,
        }
    }
    /// The positives a query generated from this source gets.
    pub fn positives(self, ds: &Dataset) -> Vec<usize> {
        match self {
            Source::Query(q) => ds.positives[q].clone(),
            Source::Document(d) => vec![d],
        }
    }
    /// `query` or `document`.
    pub fn kind(self) -> &'static str {
        match self {
            Source::Query(_) => "query",
            Source::Document(_) => "document",
        }
    }
}

/// How an LLM candidate was made.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LlmProvenance {
    /// The model that answered.
    pub model: String,
    /// BLAKE3 of the prompt template (part of the cache key).
    pub template_hash: String,
    /// Backtranslation: the pivot language.
    pub pivot_language: Option<String>,
    /// Backtranslation: the text in the pivot language.
    pub pivot_text: Option<String>,
    /// The raw answer, kept when it could not be parsed.
    pub raw: Option<String>,
    /// Synthetic queries: the answer span the model gave with the query (InPars/GPL-style), used as a
    /// gold answer by the judge when the source document contains it.
    pub answer: Option<String>,
}

/// Why a generated query was rejected: at generation (an LLM answer that could not be used) or by
/// a filter check ([`crate::filter`]). Serialised in kebab-case (`fidelity-below-min`), the spelling
/// of variants.parquet, report.json and report.html.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RejectReason {
    /// The LLM call failed for good.
    LlmError,
    /// The LLM answered nothing.
    EmptyAnswer,
    /// The answer could not be parsed.
    UnparseableAnswer,
    /// Backtranslation: the translation into the pivot language failed.
    FailedForwardTranslation,
    /// The last item of an answer cut at `max_tokens` (possibly incomplete).
    TruncatedAnswer,
    /// An item that repeats the prompt's markers.
    PromptEcho,
    /// An item that is a piece of JSON rather than a query.
    JsonFragment,
    /// A lexical replacement that is a WordNet antonym of the word it replaced ("high" -> "low").
    Antonym,
    /// Fewer words than `filter.min_words`.
    TooShort,
    /// More words than `filter.max_words`.
    TooLong,
    /// Same text as the source or an accepted sibling.
    DuplicateText,
    /// A synthetic query copied from its document.
    CopiedFromDocument,
    /// Fidelity below the floor (meaning drifted).
    FidelityBelowMin,
    /// Fidelity above the ceiling (adds nothing).
    FidelityAboveMax,
    /// Near-duplicate of an accepted sibling.
    NearDuplicate,
    /// None of its positives in its top `round_trip_k`.
    RoundTripMiss,
}

impl RejectReason {
    /// The name written to outputs.
    pub fn name(self) -> &'static str {
        match self {
            RejectReason::LlmError => "llm-error",
            RejectReason::EmptyAnswer => "empty-answer",
            RejectReason::UnparseableAnswer => "unparseable-answer",
            RejectReason::FailedForwardTranslation => "failed-forward-translation",
            RejectReason::TruncatedAnswer => "truncated-answer",
            RejectReason::PromptEcho => "prompt-echo",
            RejectReason::JsonFragment => "json-fragment",
            RejectReason::Antonym => "antonym",
            RejectReason::TooShort => "too-short",
            RejectReason::TooLong => "too-long",
            RejectReason::DuplicateText => "duplicate-text",
            RejectReason::CopiedFromDocument => "copied-from-document",
            RejectReason::FidelityBelowMin => "fidelity-below-min",
            RejectReason::FidelityAboveMax => "fidelity-above-max",
            RejectReason::NearDuplicate => "near-duplicate",
            RejectReason::RoundTripMiss => "round-trip-miss",
        }
    }
}

/// A generated query, before filtering.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// `<source id>#<strategy>-<n>`.
    pub id: String,
    /// What it was generated from.
    pub source: Source,
    /// The strategy that made it.
    pub strategy: Strategy,
    /// The generated text.
    pub text: String,
    /// What changed (lexical) or how it was asked (LLM).
    pub detail: String,
    /// LLM provenance (None for lexical strategies).
    pub llm: Option<LlmProvenance>,
    /// Rejected before filtering (an answer that could not be parsed, a failed call…).
    pub rejected: Option<RejectReason>,
}

impl Candidate {
    /// A synthetic query's answer span when its document contains it (SQuAD normalisation): then it
    /// is the query's gold answer. `None` for any other candidate.
    pub fn document_answer(&self, ds: &Dataset) -> Option<&str> {
        let Source::Document(d) = self.source else { return None };
        let a = self.llm.as_ref()?.answer.as_deref()?;
        Answers::new(&[a]).found_in(&ds.docs[d].text).map(|_| a)
    }
}

/// Per-strategy generation counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StrategyCounts {
    /// Candidates produced.
    pub produced: usize,
    /// Attempts that could not change the query (no eligible word, too short…).
    pub inapplicable: usize,
}

/// Where to find WordNet: config, `$WORDNET_DIR`, the fetched copy, /usr/share/wordnet.
pub fn wordnet_dir(cfg: &LexicalConfig, cache_root: &Path) -> PathBuf {
    if let Some(d) = &cfg.wordnet_dir {
        return d.clone();
    }
    if let Some(d) = std::env::var_os("WORDNET_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    let cached = crate::models::wordnet_cache_dir(cache_root);
    if cached.join("index.noun").is_file() {
        return cached;
    }
    let system = PathBuf::from("/usr/share/wordnet");
    if system.join("index.noun").is_file() { system } else { cached }
}

/// The stop-word list: the configured file, or the built-in English list.
pub fn stopwords(cfg: &LexicalConfig) -> Result<HashSet<String>, GenerateError> {
    match &cfg.stopwords {
        None => Ok(STOPWORDS.iter().map(|s| s.to_string()).collect()),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| GenerateError::Io { path: p.clone(), source })?;
            Ok(text.lines().map(|l| l.trim().to_lowercase()).filter(|l| !l.is_empty() && !l.starts_with('#')).collect())
        }
    }
}

/// Distinct lowercase content words of the queries (the words that may be replaced).
pub fn query_words(ds: &Dataset, stop: &HashSet<String>) -> Vec<String> {
    let mut set = std::collections::BTreeSet::new();
    for q in &ds.queries {
        for t in lexical::tokenize(&q.text) {
            if lexical::is_content_word(&t.word, |w| stop.contains(w)) {
                set.insert(t.word.to_lowercase());
            }
        }
    }
    set.into_iter().collect()
}

/// The `size` most frequent content words of documents and queries (ties alphabetical).
pub fn vocabulary(ds: &Dataset, stop: &HashSet<String>, size: usize) -> Vec<String> {
    let mut freq: HashMap<String, usize> = HashMap::new();
    let texts = ds.docs.iter().map(|d| d.text.as_str()).chain(ds.queries.iter().map(|q| q.text.as_str()));
    for text in texts {
        for t in lexical::tokenize(text) {
            let w = t.word.to_lowercase();
            if w.chars().count() > 2 && w.chars().all(char::is_alphabetic) && !stop.contains(&w) {
                *freq.entry(w).or_default() += 1;
            }
        }
    }
    let mut v: Vec<(String, usize)> = freq.into_iter().collect();
    v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(size);
    v.into_iter().map(|(w, _)| w).collect()
}

/// Nearest vocabulary words of each query word (cosine, normalised vectors), excluding itself.
pub fn neighbours(
    words: &[String],
    word_vecs: &Vectors,
    vocab: &[String],
    vocab_vecs: &Vectors,
    k: usize,
    min_similarity: f32,
) -> HashMap<String, Vec<(String, f32)>> {
    let hits = exact_search(vocab_vecs, word_vecs, k + 1);
    words
        .iter()
        .zip(hits)
        .map(|(w, hs)| {
            let list: Vec<(String, f32)> = hs
                .into_iter()
                .map(|h| (vocab[h.doc as usize].clone(), h.score))
                .filter(|(v, s)| v != w && *s >= min_similarity && !is_inflection(w, v))
                .take(k)
                .collect();
            (w.clone(), list)
        })
        .filter(|(_, l)| !l.is_empty())
        .collect()
}

/// The contextual strategy's replacements: per (query text, token position), the masked LM's best
/// whole words for that gap (the word itself, its inflections and stop words left out).
pub fn contextual_table(
    ds: &Dataset,
    lx: &LexicalConfig,
    stop: &HashSet<String>,
    mlm: &mut mlm::MaskedLm,
    show: bool,
) -> Result<HashMap<(ContentHash, usize), Vec<String>>, GenerateError> {
    let dir = lx.mlm_dir.clone().unwrap_or_default();
    let mut table = HashMap::new();
    let mut done = HashSet::new();
    let pb = crate::progress::bar(ds.queries.len() as u64, "contextual", "queries", show);
    for q in &ds.queries {
        pb.inc(1);
        let key = ContentHash::of(&q.text);
        if !done.insert(key) {
            continue;
        }
        let tokens = lexical::tokenize(&q.text);
        let positions: Vec<usize> =
            (0..tokens.len()).filter(|&i| lexical::is_content_word(&tokens[i].word, |w| stop.contains(w))).collect();
        let masked: Vec<String> = positions
            .iter()
            .map(|&i| {
                let mut t = tokens.clone();
                t[i].word = mlm.mask_token().to_string();
                lexical::detokenize(&t)
            })
            .collect();
        let fills = mlm
            .fill(&masked, lx.contextual_k + 8)
            .map_err(|message| GenerateError::MaskedLm { dir: dir.clone(), message })?;
        for (&i, fill) in positions.iter().zip(fills) {
            let word = tokens[i].word.to_lowercase();
            let choices: Vec<String> = fill
                .into_iter()
                .map(|(w, _)| w)
                .filter(|w| *w != word && !stop.contains(w) && !is_inflection(&word, w))
                .take(lx.contextual_k)
                .collect();
            if !choices.is_empty() {
                table.insert((key, i), choices);
            }
        }
    }
    pb.finish_and_clear();
    log::info!("contextual: replacements for {} words of {} queries ({})", table.len(), done.len(), mlm.id);
    Ok(table)
}

/// "planet"/"planets", "run"/"running": an inflection is not a useful replacement.
fn is_inflection(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    long.starts_with(short) && long.len() - short.len() <= 3
}

/// The embedding-neighbour table for the query words: from `lx.word_vectors` when set, else from
/// vectors that `embed(texts, label)` computes for the query words and the corpus vocabulary.
pub fn neighbour_table<E: From<GenerateError>>(
    ds: &Dataset,
    lx: &LexicalConfig,
    stop: &HashSet<String>,
    mut embed: impl FnMut(&[&str], &str) -> Result<Vectors, E>,
) -> Result<HashMap<String, Vec<(String, f32)>>, E> {
    let mut words = query_words(ds, stop);
    let mut vocab = vocabulary(ds, stop, lx.vocabulary_size);
    let (word_vecs, vocab_vecs) = match &lx.word_vectors {
        Some(path) => {
            let wanted: HashSet<String> = words.iter().chain(&vocab).cloned().collect();
            let table = read_word_vectors(path, &wanted)?;
            words.retain(|w| table.contains_key(w));
            vocab.retain(|w| table.contains_key(w));
            let dim = table.values().next().map_or(0, Vec::len);
            let pick =
                |ws: &[String]| Vectors { dim, data: ws.iter().flat_map(|w| table[w].iter().copied()).collect() };
            (pick(&words), pick(&vocab))
        }
        None => {
            let w: Vec<&str> = words.iter().map(String::as_str).collect();
            let v: Vec<&str> = vocab.iter().map(String::as_str).collect();
            (embed(&w, "words")?, embed(&v, "vocab")?)
        }
    };
    let table = neighbours(&words, &word_vecs, &vocab, &vocab_vecs, lx.neighbour_k, lx.neighbour_min_similarity);
    log::info!(
        "embedding-neighbour: {} of {} query words have neighbours in a vocabulary of {}",
        table.len(),
        words.len(),
        vocab.len()
    );
    Ok(table)
}

/// Read word vectors (GloVe/word2vec text format) for the given words only, normalised.
pub fn read_word_vectors(path: &Path, wanted: &HashSet<String>) -> Result<HashMap<String, Vec<f32>>, GenerateError> {
    use std::io::BufRead;
    let f = std::fs::File::open(path).map_err(|source| GenerateError::Io { path: path.into(), source })?;
    let mut out = HashMap::new();
    let mut dim = None;
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|source| GenerateError::Io { path: path.into(), source })?;
        let mut it = line.split_whitespace();
        let Some(word) = it.next() else { continue };
        let rest: Vec<&str> = it.collect();
        if i == 0 && rest.len() == 1 {
            continue; // word2vec header "count dim"
        }
        if !wanted.contains(&word.to_lowercase()) {
            continue;
        }
        let bad = |message: String| GenerateError::WordVectors { path: path.into(), line: i + 1, message };
        let mut v: Vec<f32> = rest
            .iter()
            .map(|x| x.parse::<f32>().map_err(|_| bad(format!("{x:?} is not a number"))))
            .collect::<Result<_, _>>()?;
        match dim {
            None => dim = Some(v.len()),
            Some(d) if d != v.len() => return Err(bad(format!("has {} values, earlier lines {d}", v.len()))),
            _ => {}
        }
        crate::vectors::normalize(&mut v);
        out.entry(word.to_lowercase()).or_insert(v);
    }
    Ok(out)
}

/// Generate `variants_per_query` candidates per query and strategy (deterministic, parallel).
pub fn lexical_candidates(
    ds: &Dataset,
    cfg: &LexicalConfig,
    lex: &Lexicon<'_>,
) -> (Vec<Candidate>, BTreeMap<String, StrategyCounts>) {
    // Per query: its candidates, and per attempt the strategy and whether it could change the query.
    type PerQuery = (Vec<Candidate>, Vec<(LexicalStrategy, bool)>);
    let per_query: Vec<PerQuery> = (0..ds.queries.len())
        .into_par_iter()
        .map(|q| {
            let query = &ds.queries[q];
            let mut out = Vec::new();
            let mut tally = Vec::new();
            for &s in &cfg.strategies {
                for n in 0..cfg.variants_per_query {
                    let mut rng = lexical::rng_for(cfg.seed, &query.text, s, n);
                    match lexical::apply(&query.text, s, lex, cfg, &mut rng) {
                        Some(v) => {
                            tally.push((s, true));
                            out.push(Candidate {
                                id: format!("{}#{}-{}", query.id, s.name(), n),
                                source: Source::Query(q),
                                strategy: Strategy::Lexical(s),
                                text: v.text,
                                detail: v.detail,
                                llm: None,
                                rejected: v.rejected,
                            });
                        }
                        None => tally.push((s, false)),
                    }
                }
            }
            (out, tally)
        })
        .collect();
    let mut counts: BTreeMap<String, StrategyCounts> =
        cfg.strategies.iter().map(|s| (s.name().to_string(), StrategyCounts::default())).collect();
    let mut all = Vec::new();
    for (cands, tally) in per_query {
        all.extend(cands);
        for (s, ok) in tally {
            let c = counts.get_mut(s.name()).expect("strategy listed");
            if ok {
                c.produced += 1;
            } else {
                c.inapplicable += 1;
            }
        }
    }
    (all, counts)
}

/// Load WordNet if any configured strategy needs it.
pub fn load_wordnet_if_needed(cfg: &LexicalConfig, cache_root: &Path) -> Result<Option<WordNet>, GenerateError> {
    if !cfg.needs_wordnet() {
        return Ok(None);
    }
    let dir = wordnet_dir(cfg, cache_root);
    let wn = WordNet::load(&dir)?;
    log::info!("WordNet: {} lemmas from {}", wn.len(), dir.display());
    Ok(Some(wn))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::ContentHash;
    use crate::ingest::{Document, Query};

    #[test]
    fn word_vector_file_gives_neighbours_and_skips_inflections() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vec.txt");
        std::fs::write(&p, "4 2\nplanet 1 0\nplanets 1 0.01\nworld 0.9 0.2\nbanana 0 1\n").unwrap();
        let q = |t: &str| Query {
            id: t.into(),
            text: t.into(),
            hash: ContentHash::of(t),
            origin: None,
            answers: Vec::new(),
        };
        let d = |t: &str| Document { id: t.into(), text: t.into(), hash: ContentHash::of(t) };
        let ds = Dataset {
            docs: vec![d("planets world banana"), d("world")],
            queries: vec![q("red planet")],
            positives: vec![vec![0]],
            ..Default::default()
        };
        let lx = LexicalConfig { word_vectors: Some(p), neighbour_min_similarity: 0.5, ..Default::default() };
        let stop = stopwords(&lx).unwrap();
        let table = neighbour_table(&ds, &lx, &stop, |_, _| -> Result<Vectors, GenerateError> {
            panic!("the model is not used when word vectors are given")
        })
        .unwrap();
        let n: Vec<&str> = table["planet"].iter().map(|(w, _)| w.as_str()).collect();
        assert_eq!(n, vec!["world"], "planets is an inflection, banana too far");
        assert!(!table.contains_key("red"), "red has no vector");

        std::fs::write(dir.path().join("bad.txt"), "planet 1 x\n").unwrap();
        let e = read_word_vectors(&dir.path().join("bad.txt"), &HashSet::from(["planet".to_string()])).unwrap_err();
        assert!(e.to_string().contains("bad.txt:1"), "{e}");
    }
}
