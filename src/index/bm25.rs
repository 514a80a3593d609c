//! BM25 candidates (tantivy): a lexical retriever beside the dense index, for `mine.retrievers`.
//!
//! The index lives in the workspace (`index/bm25/`) and is refreshed like the HNSW graph: documents
//! are keyed by the 64-bit prefix of their content hash (a fast, indexed field; the text itself is
//! indexed, not stored), so a rerun deletes what left the corpus, adds what is new, and merges
//! everything into one segment, which gives the same BM25 statistics as a fresh build. Texts and
//! queries go through tantivy's English analyzer (`en_stem`: split on non-alphanumerics,
//! lowercase, drop tokens over 40 bytes, Snowball stemming); a query is the disjunction of its
//! distinct terms, scored by BM25 (k1 = 1.2, b = 0.75). The collection statistics are ours
//! ([`Stats`]): live documents, and the average length from the stored (quantised) field norms,
//! because tantivy counts tokens exactly in a fresh segment but estimates them in a merged one, and
//! a refreshed index must score like a rebuilt one. Hits are ordered by score, then document index,
//! so the order does not depend on the segment layout.

use crate::hash::ContentHash;
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use tantivy::collector::TopDocs;
use tantivy::query::{Bm25StatisticsProvider, BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{FAST, Field, INDEXED, IndexRecordOption, Schema, TextFieldIndexing, TextOptions};
use tantivy::{Index, IndexReader, Searcher, TantivyDocument, Term};

/// Errors of the BM25 index.
#[derive(Debug, thiserror::Error)]
pub enum Bm25Error {
    /// tantivy failed on the index folder.
    #[error("BM25 index {path}: {message}")]
    Tantivy {
        /// The index folder.
        path: PathBuf,
        /// tantivy's message.
        message: String,
    },
}

/// The analyzer, in the index's schema; changing it changes [`LAYOUT`] (and rebuilds the index).
const TOKENIZER: &str = "en_stem";
/// Written beside the index; an index with another layout is rebuilt.
const LAYOUT: &str = "tripletgen-bm25 v1: key u64 fast+indexed, text en_stem with freqs";
/// Memory budget of the index writer.
const WRITER_BYTES: usize = 64 << 20;

/// What a refresh did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Bm25Stats {
    /// Distinct texts in the index.
    pub documents: usize,
    /// Texts added in this run.
    pub added: usize,
    /// Texts deleted in this run (gone from the corpus).
    pub deleted: usize,
    /// Seconds spent building or refreshing.
    pub build_seconds: f64,
    /// Seconds spent searching.
    pub search_seconds: f64,
}

/// An open BM25 index over a corpus.
pub struct Bm25 {
    path: PathBuf,
    index: Index,
    reader: IndexReader,
    text: Field,
    /// Content-hash prefix -> the first document with that text.
    doc_of: HashMap<u64, u32>,
    /// Live documents and their tokens, for [`Stats`] (fixed once the refresh is done).
    totals: (u64, u64),
    /// What opening it did.
    pub stats: Bm25Stats,
}

/// BM25 statistics that do not depend on how the index was built: live documents, and tokens summed
/// from the field norms of live documents; document frequencies come from the (merged) index.
struct Stats<'a> {
    searcher: &'a Searcher,
    docs: u64,
    tokens: u64,
}

/// Live documents and the tokens of their field norms.
fn totals(searcher: &Searcher, text: Field) -> tantivy::Result<(u64, u64)> {
    let mut tokens = 0u64;
    for seg in searcher.segment_readers() {
        let norms = seg.get_fieldnorms_reader(text)?;
        tokens += seg.doc_ids_alive().map(|d| u64::from(norms.fieldnorm(d))).sum::<u64>();
    }
    Ok((searcher.num_docs(), tokens))
}

impl Bm25StatisticsProvider for Stats<'_> {
    fn total_num_tokens(&self, _field: Field) -> tantivy::Result<u64> {
        Ok(self.tokens)
    }
    fn total_num_docs(&self) -> tantivy::Result<u64> {
        Ok(self.docs)
    }
    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        self.searcher.doc_freq(term)
    }
}

fn key(h: &ContentHash) -> u64 {
    h.as_u64()
}

impl Bm25 {
    /// Open (or build) the index in `dir` and bring it up to date with `docs` (text, content hash),
    /// in document order.
    pub fn refresh(dir: &Path, docs: &[(&str, ContentHash)]) -> Result<Bm25, Bm25Error> {
        let start = std::time::Instant::now();
        let err = |e: &dyn std::fmt::Display| Bm25Error::Tantivy { path: dir.to_path_buf(), message: e.to_string() };
        let mut schema = Schema::builder();
        let key_field = schema.add_u64_field("key", FAST | INDEXED);
        let indexing =
            TextFieldIndexing::default().set_tokenizer(TOKENIZER).set_index_option(IndexRecordOption::WithFreqs);
        let text = schema.add_text_field("text", TextOptions::default().set_indexing_options(indexing));
        let schema = schema.build();
        let layout = dir.join("LAYOUT");
        if dir.exists() && std::fs::read_to_string(&layout).ok().as_deref() != Some(LAYOUT) {
            std::fs::remove_dir_all(dir).map_err(|e| err(&e))?;
        }
        std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
        let directory = tantivy::directory::MmapDirectory::open(dir).map_err(|e| err(&e))?;
        let index = Index::open_or_create(directory, schema).map_err(|e| err(&e))?;
        std::fs::write(&layout, LAYOUT).map_err(|e| err(&e))?;

        let mut doc_of: HashMap<u64, u32> = HashMap::with_capacity(docs.len());
        for (i, (_, h)) in docs.iter().enumerate() {
            doc_of.entry(key(h)).or_insert(i as u32);
        }
        let reader = index.reader().map_err(|e| err(&e))?;
        let mut present: HashSet<u64> = HashSet::new();
        for seg in reader.searcher().segment_readers() {
            let col = seg.fast_fields().u64("key").map_err(|e| err(&e))?;
            present.extend(seg.doc_ids_alive().filter_map(|d| col.first(d)));
        }
        let gone: Vec<u64> = present.iter().copied().filter(|k| !doc_of.contains_key(k)).collect();
        let mut added = 0;
        let mut writer = index.writer_with_num_threads::<TantivyDocument>(1, WRITER_BYTES).map_err(|e| err(&e))?;
        for k in &gone {
            writer.delete_term(Term::from_field_u64(key_field, *k));
        }
        let mut seen = HashSet::new();
        for (t, h) in docs {
            let k = key(h);
            if present.contains(&k) || !seen.insert(k) {
                continue;
            }
            let mut d = TantivyDocument::new();
            d.add_u64(key_field, k);
            d.add_text(text, *t);
            writer.add_document(d).map_err(|e| err(&e))?;
            added += 1;
        }
        if added > 0 || !gone.is_empty() {
            writer.commit().map_err(|e| err(&e))?;
            crate::killpoint::hit("bm25-commit");
            let segments = index.searchable_segment_ids().map_err(|e| err(&e))?;
            // One segment without deletions: the statistics of a fresh build.
            if segments.len() > 1 || !gone.is_empty() {
                writer.merge(&segments).wait().map_err(|e| err(&e))?;
            }
        }
        writer.wait_merging_threads().map_err(|e| err(&e))?;
        reader.reload().map_err(|e| err(&e))?;
        let totals = totals(&reader.searcher(), text).map_err(|e| err(&e))?;
        let stats = Bm25Stats {
            documents: totals.0 as usize,
            added,
            deleted: gone.len(),
            build_seconds: start.elapsed().as_secs_f64(),
            search_seconds: 0.0,
        };
        Ok(Bm25 { path: dir.to_path_buf(), index, reader, text, doc_of, totals, stats })
    }

    /// The `k` best documents of every query (document indices, best first; ties by index).
    pub fn search_batch(&mut self, queries: &[&str], k: usize) -> Result<Vec<Vec<u32>>, Bm25Error> {
        let start = std::time::Instant::now();
        let err = |e: &dyn std::fmt::Display| Bm25Error::Tantivy { path: self.path.clone(), message: e.to_string() };
        let analyzer = self.index.tokenizer_for_field(self.text).map_err(|e| err(&e))?;
        let searcher = self.reader.searcher();
        let stats = Stats { searcher: &searcher, docs: self.totals.0, tokens: self.totals.1 };
        let keys: Vec<tantivy::columnar::Column<u64>> = searcher
            .segment_readers()
            .iter()
            .map(|s| s.fast_fields().u64("key"))
            .collect::<Result<_, _>>()
            .map_err(|e| err(&e))?;
        let (text, doc_of) = (self.text, &self.doc_of);
        let out: Result<Vec<Vec<u32>>, String> = queries
            .par_iter()
            .map_with(analyzer, |analyzer, q| {
                let mut terms: Vec<Term> = Vec::new();
                let mut stream = analyzer.token_stream(q);
                while let Some(tok) = stream.next() {
                    let t = Term::from_field_text(text, &tok.text);
                    if !terms.contains(&t) {
                        terms.push(t);
                    }
                }
                if terms.is_empty() || k == 0 {
                    return Ok(Vec::new());
                }
                let clauses: Vec<(Occur, Box<dyn Query>)> = terms
                    .into_iter()
                    .map(|t| {
                        (Occur::Should, Box::new(TermQuery::new(t, IndexRecordOption::WithFreqs)) as Box<dyn Query>)
                    })
                    .collect();
                // A few more than k, so that ties at the cut are decided by document index.
                let top = searcher
                    .search_with_statistics_provider(
                        &BooleanQuery::new(clauses),
                        &TopDocs::with_limit(k + 16).order_by_score(),
                        &stats,
                    )
                    .map_err(|e| e.to_string())?;
                let mut hits: Vec<(f32, u32)> = top
                    .into_iter()
                    .filter_map(|(score, addr)| {
                        let k = keys[addr.segment_ord as usize].first(addr.doc_id)?;
                        Some((score, *doc_of.get(&k)?))
                    })
                    .collect();
                hits.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                hits.truncate(k);
                Ok(hits.into_iter().map(|(_, d)| d).collect())
            })
            .collect();
        self.stats.search_seconds += start.elapsed().as_secs_f64();
        out.map_err(|m| err(&m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(texts: &[&'static str]) -> Vec<(&'static str, ContentHash)> {
        texts.iter().map(|t| (*t, ContentHash::of(t))).collect()
    }

    #[test]
    fn ranks_by_bm25_and_refreshes_incrementally_to_the_same_result() {
        let d = tempfile::tempdir().unwrap();
        let corpus = docs(&[
            "Mars is red because of iron oxide dust",
            "Jupiter has a great red spot, a storm",
            "Volcanoes on Mars: Olympus Mons is the tallest",
            "Bees make honey from nectar",
        ]);
        let mut bm = Bm25::refresh(&d.path().join("a"), &corpus).unwrap();
        assert_eq!((bm.stats.documents, bm.stats.added), (4, 4));
        let q = ["why is mars red", "tallest volcanoes", "zzz", "the of"];
        let hits = bm.search_batch(&q, 2).unwrap();
        assert_eq!(hits[0], vec![0, 2], "both mention mars; the first also 'red'");
        assert_eq!(hits[1], vec![2], "stemming: volcanoes = volcano, tallest");
        assert!(hits[2].is_empty());
        drop(bm);

        // Reopen: nothing to do. Then change the corpus: one gone, one new.
        let bm = Bm25::refresh(&d.path().join("a"), &corpus).unwrap();
        assert_eq!((bm.stats.added, bm.stats.deleted), (0, 0));
        drop(bm);
        let changed = docs(&[
            "Mars is red because of iron oxide dust",
            "Volcanoes on Mars: Olympus Mons is the tallest",
            "Bees make honey from nectar",
            "Red dwarfs are the most common stars",
        ]);
        let mut updated = Bm25::refresh(&d.path().join("a"), &changed).unwrap();
        assert_eq!((updated.stats.added, updated.stats.deleted, updated.stats.documents), (1, 1, 4));
        let mut fresh = Bm25::refresh(&d.path().join("b"), &changed).unwrap();
        let q = ["red mars", "red stars", "honey bees", "olympus"];
        assert_eq!(updated.search_batch(&q, 3).unwrap(), fresh.search_batch(&q, 3).unwrap());
        assert_eq!(fresh.search_batch(&q, 3).unwrap()[1], vec![3, 0]);
    }
}
