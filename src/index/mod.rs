//! Index: nearest-neighbour search over document vectors, exact or HNSW.
//!
//! Vectors are L2-normalised, so the score is the dot product (cosine). Exact search multiplies a
//! block of queries by the document matrix (cache-blocked GEMM) and keeps the top k of each row; HNSW
//! goes through hnsw_rs with [`ClampedDot`], a distance that cannot go negative and so cannot trip
//! the library's assertion on near-duplicate vectors. Either way the returned scores are recomputed
//! with [`dot`], so they do not depend on the index kind, and ties are broken by document number,
//! so results are deterministic.

pub(crate) mod bm25;
mod graph;
mod policy;

use crate::config::IndexConfig;
use crate::hash::ContentHash;
use crate::progress;
use crate::vectors::{Hit, Vectors, dot, sort_hits};
use graph::Graph;
use hnsw_rs::prelude::{Distance, Hnsw, Point};
use rand::SeedableRng;
use rayon::prelude::*;
use serde::Serialize;
use std::sync::Arc;

/// Errors of the index stage.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The BM25 index.
    #[error(transparent)]
    Bm25(#[from] bm25::Bm25Error),
    /// Nothing to index.
    #[error("cannot build an index over zero documents")]
    Empty,
    /// The temporary file that holds the vectors while hnsw_rs builds the graph.
    #[error("cannot write the index's temporary vector file (in {}): {source}", std::env::temp_dir().display())]
    Spill {
        /// The I/O error.
        source: std::io::Error,
    },
    /// Saving the HNSW graph to the workspace.
    #[error("cannot save the HNSW graph to {path}: {source}")]
    Save {
        /// The graph file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Vectors of different dimensions.
    #[error("query vectors have dimension {query}, documents {docs}")]
    Dimension {
        /// Query dimension.
        query: usize,
        /// Document dimension.
        docs: usize,
    },
}

/// `1 - dot`, clamped at 0: a distance for normalised vectors that never goes negative (rounding
/// makes near-duplicates' dot exceed 1) and maps NaN to 0 instead of panicking.
#[derive(Debug, Default, Clone, Copy)]
pub struct ClampedDot;

impl Distance<f32> for ClampedDot {
    fn eval(&self, va: &[f32], vb: &[f32]) -> f32 {
        (1.0 - dot(va, vb)).max(0.0)
    }
}

/// A built index.
// One per run, moved around rarely: boxing the larger variant would buy nothing but an indirection
// on every search.
#[allow(clippy::large_enum_variant)]
pub enum Index {
    /// Brute force.
    Exact(ExactIndex),
    /// HNSW graph.
    Hnsw(HnswIndex),
}

/// Brute-force search over the document matrix.
pub struct ExactIndex {
    docs: Vectors,
}

/// An HNSW graph: built by hnsw_rs (or loaded from the workspace and updated), kept as a
/// [`graph::Graph`] — u32 links and one contiguous vector array in graph order. Searching a flat
/// array with prefetched neighbours is several times faster than going through hnsw_rs's
/// `Arc<Point>`s, and holds one copy of the vectors.
pub struct HnswIndex {
    graph: Graph,
    /// Node of each document.
    node_of_doc: Vec<u32>,
    /// Document of each node ([`DEAD`] for nodes of deleted or changed documents).
    doc_of_node: Vec<u32>,
    /// `doc_of_node[i] != DEAD`.
    live: Vec<bool>,
    ef_search: usize,
}

/// `doc_of_node` value of a node whose document is gone.
const DEAD: u32 = u32::MAX;

/// An f32 that orders totally (for heaps).
#[derive(Clone, Copy, PartialEq, Debug)]
struct Ord32(f32);
impl Eq for Ord32 {}
impl PartialOrd for Ord32 {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Ord32 {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

/// Which search structure a built index is (`index.kind = "auto"` resolves to one of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchKind {
    /// Brute force.
    #[default]
    Exact,
    /// HNSW graph.
    Hnsw,
}

impl std::fmt::Display for SearchKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SearchKind::Exact => "exact",
            SearchKind::Hnsw => "hnsw",
        })
    }
}

/// How this run's HNSW graph came to be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GraphMode {
    /// No usable saved graph: built from scratch.
    #[default]
    Built,
    /// The saved graph, with the added and changed documents inserted.
    Updated,
    /// Too much changed (or another fingerprint): built from scratch again.
    Rebuilt,
}

impl std::fmt::Display for GraphMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GraphMode::Built => "built",
            GraphMode::Updated => "updated",
            GraphMode::Rebuilt => "rebuilt",
        })
    }
}

/// What was built and how it went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IndexStats {
    /// Exact or HNSW.
    pub kind: SearchKind,
    /// Documents indexed.
    pub documents: usize,
    /// Seconds to build.
    pub build_seconds: f64,
    /// How the HNSW graph came to be (built, or loaded from the workspace and updated).
    pub graph: Option<GraphUpdate>,
    /// HNSW recall@k against exact search on a sample, when measured.
    pub recall: Option<Recall>,
}

/// A recall measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Recall {
    /// k.
    pub k: usize,
    /// Queries sampled.
    pub queries: usize,
    /// Mean recall@k.
    pub recall: f64,
}

impl Index {
    /// Build the index that `cfg` asks for over `docs`. With `persist`, an HNSW graph is loaded from
    /// the workspace and updated when it can be (see [`GraphUpdate`]), and saved for the next run.
    pub fn build(
        docs: Vectors,
        cfg: &IndexConfig,
        persist: Option<Persist>,
        show_progress: bool,
    ) -> Result<(Index, IndexStats), IndexError> {
        if docs.is_empty() {
            return Err(IndexError::Empty);
        }
        let start = std::time::Instant::now();
        let n = docs.len();
        let (index, graph) = if cfg.uses_hnsw(n) {
            let (h, update) = HnswIndex::open(docs, cfg, persist, show_progress)?;
            (Index::Hnsw(h), update)
        } else {
            (Index::Exact(ExactIndex { docs }), None)
        };
        let stats = IndexStats {
            kind: index.kind(),
            documents: n,
            build_seconds: start.elapsed().as_secs_f64(),
            graph,
            recall: None,
        };
        Ok((index, stats))
    }

    /// Exact or HNSW.
    pub fn kind(&self) -> SearchKind {
        match self {
            Index::Exact(_) => SearchKind::Exact,
            Index::Hnsw(_) => SearchKind::Hnsw,
        }
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        match self {
            Index::Exact(e) => e.docs.len(),
            Index::Hnsw(h) => h.node_of_doc.len(),
        }
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        match self {
            Index::Exact(e) => e.docs.dim,
            Index::Hnsw(h) => h.graph.dim,
        }
    }

    /// The vector of document `doc`.
    pub fn vector(&self, doc: usize) -> &[f32] {
        match self {
            Index::Exact(e) => e.docs.row(doc),
            Index::Hnsw(h) => h.graph.vector(h.node_of_doc[doc]),
        }
    }

    /// The top `k` documents of every query, best first (parallel over queries; deterministic).
    pub fn search_batch(&self, queries: &Vectors, k: usize) -> Result<Vec<Vec<Hit>>, IndexError> {
        self.search_batch_ef(queries, k, None)
    }

    /// [`Index::search_batch`] with another HNSW `ef_search` than the configured one.
    pub fn search_batch_ef(&self, queries: &Vectors, k: usize, ef: Option<usize>) -> Result<Vec<Vec<Hit>>, IndexError> {
        if !queries.is_empty() && queries.dim != self.dim() {
            return Err(IndexError::Dimension { query: queries.dim, docs: self.dim() });
        }
        let k = k.min(self.len());
        Ok(match self {
            Index::Exact(e) => exact_search(&e.docs, queries, k),
            Index::Hnsw(h) => (0..queries.len())
                .into_par_iter()
                .map(|q| h.search(queries.row(q), k, ef.unwrap_or(h.ef_search)))
                .collect(),
        })
    }

    /// Measure recall@k of this index against exact search on `sample` seeded-random queries.
    pub fn measure_recall(&self, queries: &Vectors, k: usize, sample: usize, seed: u64) -> Option<Recall> {
        if queries.is_empty() || sample == 0 {
            return None;
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n = sample.min(queries.len());
        let mut picked = rand::seq::index::sample(&mut rng, queries.len(), n).into_vec();
        picked.sort_unstable();
        let mut sub = Vectors { dim: queries.dim, data: Vec::with_capacity(n * queries.dim) };
        for &i in &picked {
            sub.data.extend_from_slice(queries.row(i));
        }
        let got = self.search_batch(&sub, k).ok()?;
        let truth = self.brute_force(&sub, k.min(self.len()));
        let recall = recall_at_k(&got, &truth);
        Some(Recall { k, queries: n, recall })
    }
}

/// Mean fraction of each truth list found in the matching result list.
pub fn recall_at_k(got: &[Vec<Hit>], truth: &[Vec<Hit>]) -> f64 {
    if truth.is_empty() {
        return 1.0;
    }
    let total: f64 = got
        .iter()
        .zip(truth)
        .map(|(g, t)| {
            if t.is_empty() {
                return 1.0;
            }
            let set: std::collections::HashSet<u32> = g.iter().map(|h| h.doc).collect();
            t.iter().filter(|h| set.contains(&h.doc)).count() as f64 / t.len() as f64
        })
        .sum();
    total / truth.len() as f64
}

impl Index {
    /// Exact top-k by scoring every document (for recall checks; works on either kind).
    fn brute_force(&self, queries: &Vectors, k: usize) -> Vec<Vec<Hit>> {
        (0..queries.len())
            .into_par_iter()
            .map(|qi| {
                let q = queries.row(qi);
                let mut hits: Vec<Hit> =
                    (0..self.len()).map(|d| Hit { doc: d as u32, score: dot(q, self.vector(d)) }).collect();
                if k < hits.len() {
                    hits.select_nth_unstable_by(k - 1, |a, b| b.score.total_cmp(&a.score).then(a.doc.cmp(&b.doc)));
                    hits.truncate(k);
                }
                sort_hits(&mut hits);
                hits
            })
            .collect()
    }
}

impl HnswIndex {
    /// Build the graph with hnsw_rs — serially, last document first (deterministic), or with
    /// `parallel_insert` when configured — releasing our copy of the vectors as it goes (a temporary
    /// file keeps them for the final gather) so that memory never holds two copies of the corpus.
    /// Then keep only the links and the vectors in graph order, and drop hnsw_rs's structure.
    fn build(docs: Vectors, cfg: &IndexConfig, show_progress: bool) -> Result<HnswIndex, IndexError> {
        use std::io::Write;
        use std::os::unix::fs::FileExt;
        let n = docs.len();
        let dim = docs.dim;
        let io = |source| IndexError::Spill { source };
        let spill = tempfile::tempfile().map_err(io)?;
        {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, &spill);
            for x in &docs.data {
                w.write_all(&x.to_le_bytes()).map_err(io)?;
            }
            w.flush().map_err(io)?;
        }
        let hnsw = new_graph(n, cfg);
        let pb = progress::bar(n as u64, "index", "docs", show_progress);
        let mut data = docs.data;
        let chunk = if cfg.parallel_build { 16_384 } else { 8192 };
        let mut end = n;
        while end > 0 {
            let start = end.saturating_sub(chunk);
            if cfg.parallel_build {
                let items: Vec<(&[f32], usize)> = (start..end).map(|i| (&data[i * dim..(i + 1) * dim], i)).collect();
                hnsw.parallel_insert_slice(&items);
            } else {
                for i in (start..end).rev() {
                    hnsw.insert_slice((&data[i * dim..(i + 1) * dim], i));
                }
            }
            data.truncate(start * dim);
            data.shrink_to_fit();
            pb.inc((end - start) as u64);
            end = start;
        }
        pb.finish_and_clear();
        let raw = {
            let points = points_by_id(&hnsw);
            debug_assert!(points.iter().enumerate().all(|(i, p)| p.get_origin_id() == i), "one point per document");
            let raw: graph::RawLinks = points
                .iter()
                .map(|p| {
                    let hood = p.get_neighborhood_id();
                    let level = p.get_point_id().0 as usize;
                    (0..=level)
                        .map(|l| hood.get(l).map(|v| v.iter().map(|nb| nb.d_id as u32).collect()).unwrap_or_default())
                        .collect()
                })
                .collect();
            raw
        };
        // hnsw_rs enters at the first point inserted on the top level; inserting last to first,
        // that is the top-level point with the highest number (any top-level point would do).
        let top = raw.iter().map(Vec::len).max().unwrap_or(1);
        let entry = (0..n).rev().find(|&d| raw[d].len() == top).unwrap_or(0);
        drop(hnsw);
        release_free_memory();
        let mut bytes = vec![0u8; dim * 4];
        let (graph, node_of_doc) = Graph::from_raw(raw, entry, dim, cfg.m, |doc, out| {
            spill.read_exact_at(&mut bytes, (doc * dim * 4) as u64)?;
            for (x, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
            Ok(())
        })
        .map_err(io)?;
        let ef = cfg.ef_search_for(node_of_doc.len());
        Ok(HnswIndex::new(graph, node_of_doc, ef))
    }

    /// Load and update the saved graph, or build (and save) a new one.
    fn open(
        docs: Vectors,
        cfg: &IndexConfig,
        persist: Option<Persist>,
        show_progress: bool,
    ) -> Result<(HnswIndex, Option<GraphUpdate>), IndexError> {
        let Some(p) = persist else {
            return Ok((HnswIndex::build(docs, cfg, show_progress)?, None));
        };
        let save_err = |source| IndexError::Save { path: p.path.clone(), source };
        let mut mode = GraphMode::Built;
        if p.path.exists() {
            mode = GraphMode::Rebuilt;
            match Graph::load(&p.path) {
                Ok(saved) if saved.fingerprint == p.fingerprint && saved.graph.dim == docs.dim => {
                    if let Some((h, keys, inserted, update)) =
                        HnswIndex::update(saved, &docs, p.keys, cfg, show_progress)
                    {
                        if update.inserted > 0 {
                            h.graph.save(&p.path, &keys, &p.fingerprint, inserted).map_err(save_err)?;
                        }
                        log::info!(
                            "index: reused the saved graph: {} documents kept, {} inserted, {} gone",
                            update.reused,
                            update.inserted,
                            update.dead
                        );
                        return Ok((h, Some(update)));
                    }
                }
                Ok(_) => log::info!(
                    "index: the saved graph was built with another model, prefix or HNSW setting: rebuilding"
                ),
                Err(e) => log::warn!("index: cannot use the saved graph ({e}): rebuilding"),
            }
        }
        let n = docs.len();
        let h = HnswIndex::build(docs, cfg, show_progress)?;
        let keys: Vec<ContentHash> = h.doc_of_node.iter().map(|&d| p.keys[d as usize]).collect();
        h.graph.save(&p.path, &keys, &p.fingerprint, 0).map_err(save_err)?;
        Ok((h, Some(GraphUpdate { mode, reused: 0, inserted: n, dead: 0, share_changed: 1.0 })))
    }

    fn new(graph: Graph, node_of_doc: Vec<u32>, ef_search: usize) -> HnswIndex {
        let mut doc_of_node = vec![DEAD; graph.len()];
        for (doc, &node) in node_of_doc.iter().enumerate() {
            doc_of_node[node as usize] = doc as u32;
        }
        let live = doc_of_node.iter().map(|&d| d != DEAD).collect();
        HnswIndex { graph, node_of_doc, doc_of_node, live, ef_search }
    }

    /// Update a saved graph for the current documents: documents whose content hash matches a
    /// node keep it; the others are inserted; nodes left unclaimed (deleted or changed documents)
    /// stay in the graph for routing but are never returned. `None` when the share of changed
    /// nodes would pass `cfg.rebuild_share` (the caller rebuilds).
    fn update(
        saved: graph::Saved,
        docs: &Vectors,
        keys: &[ContentHash],
        cfg: &IndexConfig,
        show_progress: bool,
    ) -> Option<(HnswIndex, Vec<ContentHash>, u64, GraphUpdate)> {
        let graph::Saved { mut graph, keys: mut node_keys, inserted_since_build, .. } = saved;
        let mut by_key: std::collections::HashMap<ContentHash, Vec<u32>> = std::collections::HashMap::new();
        for node in (0..node_keys.len() as u32).rev() {
            by_key.entry(node_keys[node as usize]).or_default().push(node);
        }
        let mut node_of_doc: Vec<u32> =
            keys.iter().map(|k| by_key.get_mut(k).and_then(Vec::pop).unwrap_or(DEAD)).collect();
        let new: Vec<usize> = (0..keys.len()).filter(|&d| node_of_doc[d] == DEAD).collect();
        let reused = keys.len() - new.len();
        let dead = graph.len() - reused;
        let total = graph.len() + new.len();
        let share = (dead as u64 + inserted_since_build + new.len() as u64) as f64 / total.max(1) as f64;
        if share > cfg.rebuild_share {
            log::info!(
                "index: {} new and {dead} gone documents ({:.1}% of the graph with earlier inserts) pass index.rebuild_share = {}: rebuilding",
                new.len(),
                share * 100.0,
                cfg.rebuild_share
            );
            return None;
        }
        let pb = progress::bar(new.len() as u64, "index", "docs", show_progress && !new.is_empty());
        for &d in &new {
            node_of_doc[d] = graph.insert(docs.row(d), cfg.ef_construction, INSERT_SEED);
            node_keys.push(keys[d]);
            pb.inc(1);
        }
        pb.finish_and_clear();
        let update = GraphUpdate { mode: GraphMode::Updated, reused, inserted: new.len(), dead, share_changed: share };
        let ef = cfg.ef_search_for(node_of_doc.len());
        Some((HnswIndex::new(graph, node_of_doc, ef), node_keys, inserted_since_build + new.len() as u64, update))
    }

    fn search(&self, q: &[f32], k: usize, ef: usize) -> Vec<Hit> {
        let live = (self.live.len() != self.node_of_doc.len()).then_some(self.live.as_slice());
        let mut hits: Vec<Hit> = self
            .graph
            .search(q, ef.max(k), live)
            .into_iter()
            .map(|(node, score)| Hit { doc: self.doc_of_node[node as usize], score })
            .collect();
        sort_hits(&mut hits);
        hits.truncate(k);
        hits
    }
}

/// Seed of the level draws of nodes inserted into a saved graph.
const INSERT_SEED: u64 = 0x7472_6970_6c65_7467;

/// Where the HNSW graph is kept between runs and what it must match.
pub struct Persist<'a> {
    /// The graph file (in the workspace).
    pub path: std::path::PathBuf,
    /// What the vectors and links depend on (model, document prefix, M, ef_construction); a saved
    /// graph with another fingerprint is rebuilt.
    pub fingerprint: String,
    /// Content hash of each document, in document order.
    pub keys: &'a [ContentHash],
}

/// How the HNSW graph of this run came to be.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GraphUpdate {
    /// Built, updated or rebuilt.
    pub mode: GraphMode,
    /// Documents whose node was reused.
    pub reused: usize,
    /// Documents inserted into the saved graph.
    pub inserted: usize,
    /// Nodes of deleted or changed documents, kept for routing and never returned.
    pub dead: usize,
    /// (dead + all inserts since the last full build) / nodes: compared with `index.rebuild_share`.
    pub share_changed: f64,
}

/// Give freed heap back to the kernel (glibc keeps it otherwise), so that memory freed by one phase
/// (hnsw_rs's graph) is not still resident when the next allocates.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim only returns unused memory of glibc's arenas to the kernel.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// An empty hnsw_rs graph for `n` points with the configured M and ef_construction. `cfg` must be
/// validated: `m <= 256`, so `Hnsw::new` cannot call `process::exit`.
fn new_graph(n: usize, cfg: &IndexConfig) -> Hnsw<'static, f32, ClampedDot> {
    let max_layer = 16.min((n as f64).ln().ceil().max(1.0) as usize);
    Hnsw::new(cfg.m, n, max_layer, cfg.ef_construction, ClampedDot)
}

/// Every point of a built graph, indexed by its document number (its origin id).
fn points_by_id(graph: &Hnsw<'static, f32, ClampedDot>) -> Vec<Arc<Point<'static, f32>>> {
    let mut points: Vec<Arc<Point<'static, f32>>> = graph.get_point_indexation().into_iter().collect();
    points.sort_unstable_by_key(|p| p.get_origin_id());
    points
}

/// Exact top-k by blocked matrix product, parallel over query blocks.
pub fn exact_search(docs: &Vectors, queries: &Vectors, k: usize) -> Vec<Vec<Hit>> {
    use ndarray::ArrayView2;
    let n = docs.len();
    if n == 0 || queries.is_empty() || k == 0 {
        return vec![Vec::new(); queries.len()];
    }
    let d = docs.dim;
    let dm = ArrayView2::from_shape((n, d), &docs.data).expect("shape matches data");
    // Keep each block's score matrix around 16M floats (64 MB).
    let block = (16_000_000 / n).clamp(1, 256);
    let starts: Vec<usize> = (0..queries.len()).step_by(block).collect();
    starts
        .into_par_iter()
        .flat_map_iter(|s| {
            let e = (s + block).min(queries.len());
            let qm = ArrayView2::from_shape((e - s, d), &queries.data[s * d..e * d]).expect("shape");
            let scores = qm.dot(&dm.t());
            (0..e - s)
                .map(|r| {
                    let row = scores.row(r);
                    let row = row.as_slice().expect("standard layout");
                    let mut idx: Vec<u32> = (0..n as u32).collect();
                    let by = |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]).then(a.cmp(b));
                    if k < n {
                        idx.select_nth_unstable_by(k - 1, by);
                        idx.truncate(k);
                    }
                    let q = queries.row(s + r);
                    let mut hits: Vec<Hit> =
                        idx.into_iter().map(|i| Hit { doc: i, score: dot(q, docs.row(i as usize)) }).collect();
                    sort_hits(&mut hits);
                    hits
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rand::Rng;

    pub(crate) fn random_unit(n: usize, d: usize, seed: u64) -> Vectors {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut data = Vec::with_capacity(n * d);
        for _ in 0..n {
            let mut v: Vec<f32> = (0..d).map(|_| rng.random_range(-1.0..1.0)).collect();
            crate::vectors::normalize(&mut v);
            data.extend(v);
        }
        Vectors { dim: d, data }
    }

    #[test]
    fn clamped_distance_never_negative_on_duplicates() {
        let v = random_unit(1, 384, 1);
        let mut w = v.data.clone();
        w.iter_mut().for_each(|x| *x *= 1.0000001);
        assert!(ClampedDot.eval(&v.data, &w) >= 0.0);
        assert_eq!(ClampedDot.eval(&[f32::NAN], &[1.0]), 0.0);
    }

    #[test]
    fn exact_search_is_sorted_and_correct() {
        let docs = random_unit(300, 16, 2);
        let qs = random_unit(5, 16, 3);
        let res = exact_search(&docs, &qs, 10);
        for (qi, hits) in res.iter().enumerate() {
            assert_eq!(hits.len(), 10);
            let mut all: Vec<Hit> =
                (0..300).map(|i| Hit { doc: i as u32, score: dot(qs.row(qi), docs.row(i)) }).collect();
            sort_hits(&mut all);
            assert_eq!(hits, &all[..10].to_vec());
        }
    }

    #[test]
    fn a_saved_graph_is_updated_rebuilt_or_refused_as_it_should() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index/hnsw.bin");
        let cfg = IndexConfig { kind: crate::config::IndexKind::Hnsw, rebuild_share: 0.2, ..IndexConfig::default() };
        let all = random_unit(1200, 16, 21);
        let keys: Vec<ContentHash> = (0..all.len()).map(|i| ContentHash::of(&format!("doc {i}"))).collect();
        let pick = |rows: &[usize]| {
            let mut v = Vectors { dim: 16, data: Vec::new() };
            rows.iter().for_each(|&r| v.data.extend_from_slice(all.row(r)));
            (v, rows.iter().map(|&r| keys[r]).collect::<Vec<_>>())
        };
        let open = |rows: &[usize], fp: &str| {
            let (v, k) = pick(rows);
            let persist = Persist { path: path.clone(), fingerprint: fp.into(), keys: &k };
            Index::build(v, &cfg, Some(persist), false).unwrap()
        };
        let first: Vec<usize> = (0..1000).collect();
        let (_, s) = open(&first, "fp");
        assert_eq!(s.graph.unwrap().mode, GraphMode::Built);

        // 50 gone (every 20th), 95 new (1000..1100 but every 20th): updated; no gone document is returned.
        let second: Vec<usize> = (0..1100).filter(|i| i % 20 != 0).collect();
        let (index, s) = open(&second, "fp");
        let g = s.graph.unwrap();
        assert_eq!((g.mode, g.inserted, g.dead, g.reused), (GraphMode::Updated, 95, 50, 950));
        let qs = random_unit(40, 16, 22);
        let hits = index.search_batch(&qs, 10).unwrap();
        assert!(hits.iter().flatten().all(|h| (h.doc as usize) < second.len()));
        let (exact, _) = Index::build(
            pick(&second).0,
            &IndexConfig { kind: crate::config::IndexKind::Exact, ..cfg.clone() },
            None,
            false,
        )
        .unwrap();
        let truth = exact.search_batch(&qs, 10).unwrap();
        assert!(recall_at_k(&hits, &truth) > 0.95, "recall after the update {}", recall_at_k(&hits, &truth));
        assert!(
            index.vector(0) == all.row(1) && index.vector(second.len() - 1) == all.row(1099),
            "vectors follow the documents"
        );

        // Past rebuild_share (earlier inserts count too), another fingerprint, a damaged file: rebuilt.
        let third: Vec<usize> = (100..1200).collect();
        assert_eq!(open(&third, "fp").1.graph.unwrap().mode, GraphMode::Rebuilt);
        assert_eq!(open(&third, "other model").1.graph.unwrap().mode, GraphMode::Rebuilt);
        std::fs::write(&path, b"TGHNSW01 garbage").unwrap();
        assert_eq!(open(&third, "other model").1.graph.unwrap().mode, GraphMode::Rebuilt);
        assert_eq!(open(&third, "other model").1.graph.unwrap().mode, GraphMode::Updated);
    }

    #[test]
    fn hnsw_with_duplicates_has_high_recall() {
        let mut docs = random_unit(2000, 32, 4);
        let first: Vec<f32> = docs.row(0).to_vec();
        for _ in 0..20 {
            docs.data.extend_from_slice(&first); // exact duplicates must not panic
        }
        let cfg = IndexConfig { kind: crate::config::IndexKind::Hnsw, ..IndexConfig::default() };
        let (index, stats) = Index::build(docs, &cfg, None, false).unwrap();
        assert_eq!(stats.kind, SearchKind::Hnsw);
        let qs = random_unit(100, 32, 5);
        let r = index.measure_recall(&qs, 10, 100, 7).unwrap();
        assert!(r.recall > 0.9, "recall {}", r.recall);
    }
}
