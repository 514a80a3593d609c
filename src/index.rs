//! Index: nearest-neighbour search over document vectors, exact or HNSW.
//!
//! Vectors are L2-normalised, so the score is the dot product (cosine). Exact search multiplies a
//! block of queries by the document matrix (cache-blocked GEMM) and keeps the top k of each row; HNSW
//! goes through hnsw_rs with [`ClampedDot`], a distance that cannot go negative and so cannot trip
//! the library's assertion on near-duplicate vectors. Either way the returned scores are recomputed
//! with [`dot`], so they do not depend on the index kind, and ties are broken by document number,
//! so results are deterministic.

use crate::config::{IndexConfig, IndexKind};
use crate::embed::Vectors;
use crate::progress;
use hnsw_rs::prelude::{Distance, Hnsw, Point};
use std::sync::Arc;
use rand::SeedableRng;
use rayon::prelude::*;
use serde::Serialize;

/// Errors of the index stage.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// Nothing to index.
    #[error("cannot build an index over zero documents")]
    Empty,
    /// Vectors of different dimensions.
    #[error("query vectors have dimension {query}, documents {docs}")]
    Dimension {
        /// Query dimension.
        query: usize,
        /// Document dimension.
        docs: usize,
    },
}

/// One search result.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Hit {
    /// Document number (row in the document vectors).
    pub doc: u32,
    /// Cosine similarity.
    pub score: f32,
}

/// Dot product, 8 lanes wide; compiled for AVX2 when the CPU has it. The lane order is fixed, so the
/// result is the same bits with or without AVX2.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { dot_avx2(a, b) };
        }
    }
    dot_lanes(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_lanes(a, b)
}

#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
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

/// An HNSW graph built by hnsw_rs. hnsw_rs keeps its own copy of every vector; we score from those
/// copies (`points[doc]`) instead of keeping a second one. Searches run on [`Links`], a compact copy
/// of the graph's links (u32 ids), not through hnsw_rs's search, whose per-query bookkeeping (an
/// allocated entry per visited candidate) costs several times the distance computations.
pub struct HnswIndex {
    _graph: Hnsw<'static, f32, ClampedDot>,
    points: Vec<Arc<Point<'static, f32>>>,
    links: Links,
    dim: usize,
    ef_search: usize,
}

/// The graph's links as plain ids: layer 0 in one flat array, upper layers per node.
struct Links {
    offsets: Vec<u32>,
    layer0: Vec<u32>,
    upper: std::collections::HashMap<u32, Vec<Vec<u32>>>,
    entry: u32,
    max_level: usize,
}

/// An f32 that orders totally (for heaps).
#[derive(Clone, Copy, PartialEq)]
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

thread_local! {
    /// Per-thread visited marks (generation-stamped, so no clearing between queries).
    static VISITED: std::cell::RefCell<(Vec<u32>, u32)> = const { std::cell::RefCell::new((Vec::new(), 0)) };
}

impl Links {
    fn from_points(points: &[Arc<Point<'static, f32>>]) -> Links {
        let n = points.len();
        let mut offsets = Vec::with_capacity(n + 1);
        let mut layer0 = Vec::new();
        let mut upper = std::collections::HashMap::new();
        let (mut entry, mut max_level) = (0u32, 0usize);
        offsets.push(0u32);
        for (i, p) in points.iter().enumerate() {
            let hood = p.get_neighborhood_id();
            let level = p.get_point_id().0 as usize;
            if let Some(l0) = hood.first() {
                layer0.extend(l0.iter().map(|nb| nb.d_id as u32));
            }
            offsets.push(layer0.len() as u32);
            if level > 0 {
                let ups: Vec<Vec<u32>> =
                    (1..=level).map(|l| hood.get(l).map(|v| v.iter().map(|nb| nb.d_id as u32).collect()).unwrap_or_default()).collect();
                upper.insert(i as u32, ups);
            }
            if level > max_level || i == 0 {
                max_level = max_level.max(level);
                if level >= max_level {
                    entry = i as u32;
                }
            }
        }
        Links { offsets, layer0, upper, entry, max_level }
    }

    fn neighbours0(&self, node: u32) -> &[u32] {
        &self.layer0[self.offsets[node as usize] as usize..self.offsets[node as usize + 1] as usize]
    }

    /// Greedy descent through the upper layers, then a beam of width `ef` on layer 0. Distances are
    /// negated dot products; ties go to the lower id.
    fn search<'v>(&self, q: &[f32], k: usize, ef: usize, vector: impl Fn(u32) -> &'v [f32]) -> Vec<Hit> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let dist = |id: u32| Ord32(-dot(q, vector(id)));
        let n = self.offsets.len() - 1;
        let mut ep = self.entry;
        let mut ep_d = dist(ep);
        for l in (1..=self.max_level).rev() {
            loop {
                let mut moved = false;
                for &nb in self.upper.get(&ep).and_then(|v| v.get(l - 1)).map(Vec::as_slice).unwrap_or_default() {
                    let d = dist(nb);
                    if (d, nb) < (ep_d, ep) {
                        ep = nb;
                        ep_d = d;
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
        }
        VISITED.with(|cell| {
            let mut guard = cell.borrow_mut();
            let (marks, generation) = &mut *guard;
            if marks.len() < n {
                marks.clear();
                marks.resize(n, 0);
                *generation = 0;
            }
            *generation = generation.wrapping_add(1);
            if *generation == 0 {
                marks.iter_mut().for_each(|m| *m = 0);
                *generation = 1;
            }
            let generation = *generation;
            let mut candidates = BinaryHeap::with_capacity(ef * 4);
            let mut results: BinaryHeap<(Ord32, u32)> = BinaryHeap::with_capacity(ef + 1);
            marks[ep as usize] = generation;
            candidates.push(Reverse((ep_d, ep)));
            results.push((ep_d, ep));
            while let Some(Reverse((d, c))) = candidates.pop() {
                if results.len() >= ef && results.peek().is_some_and(|&worst| (d, c) > worst) {
                    break;
                }
                for &nb in self.neighbours0(c) {
                    let slot = &mut marks[nb as usize];
                    if *slot == generation {
                        continue;
                    }
                    *slot = generation;
                    let dn = dist(nb);
                    if results.len() < ef || results.peek().is_some_and(|&worst| (dn, nb) < worst) {
                        candidates.push(Reverse((dn, nb)));
                        results.push((dn, nb));
                        if results.len() > ef {
                            results.pop();
                        }
                    }
                }
            }
            let mut hits: Vec<Hit> = results.into_iter().map(|(d, id)| Hit { doc: id, score: -d.0 }).collect();
            sort_hits(&mut hits);
            hits.truncate(k);
            hits
        })
    }
}

/// What was built and how it went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IndexStats {
    /// `exact` or `hnsw`.
    pub kind: String,
    /// Documents indexed.
    pub documents: usize,
    /// Seconds to build.
    pub build_seconds: f64,
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
    /// Build the index that `cfg` asks for over `docs`.
    pub fn build(docs: Vectors, cfg: &IndexConfig, show_progress: bool) -> Result<(Index, IndexStats), IndexError> {
        if docs.is_empty() {
            return Err(IndexError::Empty);
        }
        let start = std::time::Instant::now();
        let n = docs.len();
        let use_hnsw = match cfg.kind {
            IndexKind::Exact => false,
            IndexKind::Hnsw => true,
            IndexKind::Auto => n >= cfg.exact_below,
        };
        let index = if use_hnsw {
            Index::Hnsw(HnswIndex::build(docs, cfg, show_progress))
        } else {
            Index::Exact(ExactIndex { docs })
        };
        let stats = IndexStats {
            kind: index.kind().into(),
            documents: n,
            build_seconds: start.elapsed().as_secs_f64(),
            recall: None,
        };
        Ok((index, stats))
    }

    /// `exact` or `hnsw`.
    pub fn kind(&self) -> &'static str {
        match self {
            Index::Exact(_) => "exact",
            Index::Hnsw(_) => "hnsw",
        }
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        match self {
            Index::Exact(e) => e.docs.len(),
            Index::Hnsw(h) => h.points.len(),
        }
    }

    /// True when the index holds no documents (never, once built).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        match self {
            Index::Exact(e) => e.docs.dim,
            Index::Hnsw(h) => h.dim,
        }
    }

    /// The vector of document `doc`.
    pub fn vector(&self, doc: usize) -> &[f32] {
        match self {
            Index::Exact(e) => e.docs.row(doc),
            Index::Hnsw(h) => h.points[doc].get_v(),
        }
    }

    /// The top `k` documents of every query, best first (parallel over queries; deterministic).
    pub fn search_batch(&self, queries: &Vectors, k: usize) -> Result<Vec<Vec<Hit>>, IndexError> {
        if !queries.is_empty() && queries.dim != self.dim() {
            return Err(IndexError::Dimension { query: queries.dim, docs: self.dim() });
        }
        let k = k.min(self.len());
        Ok(match self {
            Index::Exact(e) => exact_search(&e.docs, queries, k),
            Index::Hnsw(h) => (0..queries.len())
                .into_par_iter()
                .map(|q| h.search(queries.row(q), k))
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
    /// Insert every vector serially (deterministic), last to first, releasing our copy as we go so
    /// that memory never holds two copies of the corpus.
    fn build(docs: Vectors, cfg: &IndexConfig, show_progress: bool) -> HnswIndex {
        let n = docs.len();
        let dim = docs.dim;
        let graph = new_graph(n, cfg);
        let pb = progress::bar(n as u64, "index", "docs", show_progress);
        let mut data = docs.data;
        const RELEASE_EVERY: usize = 8192;
        for i in (0..n).rev() {
            graph.insert_slice((&data[i * dim..(i + 1) * dim], i));
            if i % RELEASE_EVERY == 0 {
                data.truncate(i * dim);
                data.shrink_to_fit();
                pb.set_position((n - i) as u64);
            }
        }
        pb.finish_and_clear();
        let mut graph = graph;
        graph.set_searching_mode(true);
        let points = points_by_id(&graph);
        debug_assert!(points.iter().enumerate().all(|(i, p)| p.get_origin_id() == i), "one point per document");
        let links = Links::from_points(&points);
        HnswIndex { _graph: graph, points, links, dim, ef_search: cfg.ef_search }
    }

    fn search(&self, q: &[f32], k: usize) -> Vec<Hit> {
        let ef = self.ef_search.max(k);
        self.links.search(q, k, ef, |id| self.points[id as usize].get_v())
    }
}

/// An empty hnsw_rs graph for `n` points with the configured M and ef_construction. `cfg` must be
/// validated: `m <= 256`, so `Hnsw::new` cannot call `process::exit`.
pub fn new_graph(n: usize, cfg: &IndexConfig) -> Hnsw<'static, f32, ClampedDot> {
    let max_layer = 16.min((n as f64).ln().ceil().max(1.0) as usize);
    Hnsw::new(cfg.m, n, max_layer, cfg.ef_construction, ClampedDot)
}

/// Every point of a built graph, indexed by its document number (its origin id).
pub fn points_by_id(graph: &Hnsw<'static, f32, ClampedDot>) -> Vec<Arc<Point<'static, f32>>> {
    let mut points: Vec<Arc<Point<'static, f32>>> = graph.get_point_indexation().into_iter().collect();
    points.sort_unstable_by_key(|p| p.get_origin_id());
    points
}

/// Best first; equal scores by document number.
pub fn sort_hits(hits: &mut [Hit]) {
    hits.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.doc.cmp(&b.doc)));
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
mod tests {
    use super::*;
    use rand::Rng;

    fn random_unit(n: usize, d: usize, seed: u64) -> Vectors {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut data = Vec::with_capacity(n * d);
        for _ in 0..n {
            let mut v: Vec<f32> = (0..d).map(|_| rng.random_range(-1.0..1.0)).collect();
            crate::embed::normalize(&mut v);
            data.extend(v);
        }
        Vectors { dim: d, data }
    }

    #[test]
    fn dot_matches_naive() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.1).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.05).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-4);
        assert_eq!(dot_lanes(&a, &b), dot(&a, &b));
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
    fn hnsw_with_duplicates_has_high_recall() {
        let mut docs = random_unit(2000, 32, 4);
        let first: Vec<f32> = docs.row(0).to_vec();
        for _ in 0..20 {
            docs.data.extend_from_slice(&first); // exact duplicates must not panic
        }
        let cfg = IndexConfig { kind: IndexKind::Hnsw, ..IndexConfig::default() };
        let (index, stats) = Index::build(docs, &cfg, false).unwrap();
        assert_eq!(stats.kind, "hnsw");
        let qs = random_unit(100, 32, 5);
        let r = index.measure_recall(&qs, 10, 100, 7).unwrap();
        assert!(r.recall > 0.9, "recall {}", r.recall);
    }
}
