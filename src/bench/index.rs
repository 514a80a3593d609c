//! `tripletgen bench index`: HNSW build time, search speed against exact search, recall and peak
//! memory on clustered synthetic vectors.

use super::IndexBenchArgs;
use super::machine::{cpu_seconds, malloc_chunk, peak, reset_peak, rss};
use super::synth::ClusterModel;
use crate::config::{IndexConfig, IndexKind};
use crate::index::{self, Index};
use anyhow::{Result, bail};
use serde::Serialize;
use std::time::Instant;

/// Result of the index benchmark for one corpus size.
#[derive(Debug, Clone, Serialize)]
pub struct IndexReport {
    /// Documents.
    pub n: usize,
    /// Dimension.
    pub dim: usize,
    /// Queries.
    pub queries: usize,
    /// k.
    pub k: usize,
    /// HNSW links per node.
    pub m: usize,
    /// HNSW build candidate list.
    pub ef_construction: usize,
    /// HNSW search candidate list.
    pub ef_search: usize,
    /// Cluster centres of the synthetic vectors.
    pub clusters: usize,
    /// Seconds to synthesise documents and queries.
    pub generate_seconds: f64,
    /// `serial` (the pipeline's Index::build) or `parallel_insert` (benchmark only).
    pub build_mode: String,
    /// Seconds to build the HNSW graph.
    pub build_seconds: f64,
    /// CPU seconds of the build (all threads).
    pub build_cpu_seconds: f64,
    /// Inserts per second.
    pub build_inserts_per_s: f64,
    /// Seconds for all queries through HNSW.
    pub hnsw_seconds: f64,
    /// CPU seconds of the HNSW search (all threads).
    pub hnsw_cpu_seconds: f64,
    /// HNSW queries per second.
    pub hnsw_queries_per_s: f64,
    /// Seconds for all queries through exact search.
    pub exact_seconds: f64,
    /// CPU seconds of the exact search (all threads).
    pub exact_cpu_seconds: f64,
    /// Exact-search queries per second.
    pub exact_queries_per_s: f64,
    /// exact time / HNSW time (search only).
    pub speedup: f64,
    /// Queries after which HNSW (build + search) beats exact search, `None` when it never does.
    pub break_even_queries: Option<f64>,
    /// Mean recall@k of HNSW against exact search.
    pub recall: f64,
    /// Mean cosine of the k-th exact neighbour (how tight the synthetic neighbourhoods are).
    pub mean_kth_cosine: f64,
    /// Recall and speed at other ef_search values on the same graph (`--ef-sweep`).
    pub ef_sweep: Vec<EfPoint>,
    /// Memory.
    pub memory: MemoryReport,
}

/// HNSW search at one ef_search value.
#[derive(Debug, Clone, Serialize)]
pub struct EfPoint {
    /// ef_search (raised to k when smaller).
    pub ef_search: usize,
    /// Queries per second.
    pub queries_per_s: f64,
    /// Exact search time / this search time.
    pub speedup: f64,
    /// Recall@k against exact search.
    pub recall: f64,
}

/// Resident memory of the index benchmark, in bytes.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    /// Whether VmHWM could be reset between phases (/proc/self/clear_refs); if not, peaks are
    /// process-lifetime peaks.
    pub peak_reset_works: bool,
    /// RSS before the vectors were generated (binary, libraries, earlier benchmarks' leftovers).
    pub baseline_rss: u64,
    /// RSS after generating documents and queries.
    pub data_rss: u64,
    /// Peak RSS while building the graph.
    pub peak_build: u64,
    /// RSS after the build.
    pub rss_after_build: u64,
    /// Peak RSS while searching with HNSW.
    pub peak_hnsw_search: u64,
    /// RSS after the HNSW index was dropped (what the allocator kept).
    pub rss_after_drop: u64,
    /// Peak RSS while searching exactly (the documents generated again, the HNSW index dropped).
    pub peak_exact_search: u64,
    /// max(peak_build, peak_hnsw_search) − baseline_rss: what the HNSW path itself needed.
    pub peak_hnsw_path: u64,
    /// n · dim · 4: the vectors, once (the index hands its copy to hnsw_rs while building).
    pub vectors: u64,
    /// n · (2M + M/(M−1)) · 56 B: every layer-0 and expected upper-layer link at hnsw_rs's cost per
    /// link (an 8-byte `Arc` pointer plus a separately allocated 32-byte `PointWithOrder`, 48 B with
    /// glibc's malloc header and rounding).
    pub graph: u64,
    /// The same links as 4-byte ids: what a compact graph would need.
    pub graph_compact: u64,
    /// hnsw_rs's copy of every vector (each `Point` owns a `Vec<f32>`), malloc rounding included.
    pub hnsw_rs_vectors: u64,
    /// hnsw_rs's per-point fixed cost: `Arc<Point>`, `Arc<RwLock<..>>`, a 16-layer `Vec` of
    /// neighbour lists, the layer table slot and the index's table of points.
    pub hnsw_rs_point_overhead: u64,
    /// peak_hnsw_path / (vectors + graph).
    pub ratio: f64,
    /// peak_hnsw_path / (hnsw_rs_vectors + graph + hnsw_rs_point_overhead): how well the hnsw_rs
    /// memory model explains the measurement.
    pub ratio_to_model: f64,
}

pub(super) fn validate_index(a: &IndexBenchArgs) -> Result<()> {
    if a.n.is_empty() || a.n.contains(&0) {
        bail!("--n needs corpus sizes of at least 1");
    }
    if a.dim < 2 {
        bail!("--dim must be at least 2");
    }
    if a.queries == 0 || a.k == 0 {
        bail!("--queries and --k must be at least 1");
    }
    if let Some(&n) = a.n.iter().find(|&&n| n < a.k) {
        bail!("--k {} is larger than the corpus size {n}", a.k);
    }
    // hnsw_rs calls process::exit when M > 256.
    if !(2..=256).contains(&a.m) {
        bail!("--m must be between 2 and 256");
    }
    if a.ef_construction == 0 {
        bail!("--ef-construction must be at least 1");
    }
    if a.ef_sweep.contains(&0) {
        bail!("--ef-sweep values must be at least 1");
    }
    if a.clusters == Some(0) {
        bail!("--clusters must be at least 1");
    }
    Ok(())
}

fn default_clusters(n: usize) -> usize {
    (n / 30).clamp(50, 4000).min(n)
}

pub(super) fn run_index(a: &IndexBenchArgs, n: usize, seed: u64, show_progress: bool) -> Result<IndexReport> {
    let clusters = a.clusters.unwrap_or_else(|| default_clusters(n));
    index::release_free_memory();
    let reset_ok = reset_peak();
    if !reset_ok {
        log::warn!("cannot reset VmHWM through /proc/self/clear_refs: peaks below are process-lifetime peaks");
    }
    let baseline_rss = rss();
    log::info!("index n={n}: generating {n} + {} clustered vectors ({clusters} clusters, dim {})", a.queries, a.dim);
    let start = Instant::now();
    let model = ClusterModel::new(a.dim, clusters, seed);
    let docs = model.sample(n, seed.wrapping_add(1));
    let queries = model.sample(a.queries, seed.wrapping_add(2));
    let generate_seconds = start.elapsed().as_secs_f64();
    let data_rss = rss();

    let cfg = IndexConfig {
        kind: IndexKind::Hnsw,
        m: a.m,
        ef_construction: a.ef_construction,
        ef_search: a.ef_search,
        parallel_build: a.parallel_build,
        ..IndexConfig::default()
    };
    let build_mode = if a.parallel_build { "parallel_insert" } else { "serial" };
    log::info!("index n={n}: building HNSW ({build_mode}, m={}, ef_construction={})", a.m, a.ef_construction);
    reset_peak();
    let (start, cpu) = (Instant::now(), cpu_seconds());
    let built = Index::build(docs, &cfg, None, show_progress)?.0;
    let build_seconds = start.elapsed().as_secs_f64();
    let build_cpu_seconds = cpu_seconds() - cpu;
    let peak_build = peak();
    let rss_after_build = rss();
    log::info!("index n={n}: built in {build_seconds:.1} s");

    reset_peak();
    let (start, cpu) = (Instant::now(), cpu_seconds());
    let got = built.search_batch(&queries, a.k)?;
    let hnsw_seconds = start.elapsed().as_secs_f64();
    let hnsw_cpu_seconds = cpu_seconds() - cpu;
    let peak_hnsw_search = peak();
    log::info!("index n={n}: HNSW search {hnsw_seconds:.2} s");
    let mut sweep_results = Vec::new();
    for &ef in &a.ef_sweep {
        let start = Instant::now();
        let hits = built.search_batch_ef(&queries, a.k, Some(ef))?;
        sweep_results.push((ef, start.elapsed().as_secs_f64(), hits));
        log::info!("index n={n}: HNSW search with ef_search={ef}: {:.2} s", sweep_results.last().map_or(0.0, |r| r.1));
    }
    drop(built);
    index::release_free_memory();
    let rss_after_drop = rss();

    // Exact search on the same documents: the index gave its copy to hnsw_rs, so generate them
    // again (deterministic) with the graph gone; this phase's peak is the exact path's own.
    let docs = model.sample(n, seed.wrapping_add(1));
    reset_peak();
    let (start, cpu) = (Instant::now(), cpu_seconds());
    let truth = index::exact_search(&docs, &queries, a.k);
    let exact_seconds = start.elapsed().as_secs_f64();
    let exact_cpu_seconds = cpu_seconds() - cpu;
    let peak_exact_search = peak();
    drop(docs);
    log::info!("index n={n}: exact search {exact_seconds:.2} s");

    let recall = index::recall_at_k(&got, &truth);
    let ef_sweep: Vec<EfPoint> = sweep_results
        .into_iter()
        .map(|(ef, secs, hits)| EfPoint {
            ef_search: ef,
            queries_per_s: a.queries as f64 / secs.max(1e-9),
            speedup: exact_seconds / secs.max(1e-9),
            recall: index::recall_at_k(&hits, &truth),
        })
        .collect();
    let mean_kth_cosine =
        truth.iter().filter_map(|h| h.last()).map(|h| h.score as f64).sum::<f64>() / truth.len().max(1) as f64;

    // Memory model (see MemoryReport's fields for what each term counts).
    let (nu, d, m) = (n as u64, a.dim as u64, a.m as f64);
    let links_per_point = 2.0 * m + m / (m - 1.0);
    let vectors = nu * d * 4;
    let per_link = 8 + malloc_chunk(32);
    let graph = (nu as f64 * links_per_point * per_link as f64) as u64;
    let graph_compact = (nu as f64 * links_per_point * 4.0) as u64;
    let hnsw_rs_vectors = nu * malloc_chunk(d * 4);
    // Arc<Point> (16 + 48), Arc<RwLock<Vec<Vec<..>>>> (16 + 8 + 24), Vec of 16 layer lists (16 × 24),
    // the layer-0 list's malloc header, the layer table's and the index's point table's Arc pointers.
    let hnsw_rs_point_overhead = nu * (malloc_chunk(64) + malloc_chunk(48) + malloc_chunk(16 * 24) + 8 + 8 + 8);
    let peak_hnsw_path = peak_build.max(peak_hnsw_search).saturating_sub(baseline_rss);
    let memory = MemoryReport {
        peak_reset_works: reset_ok,
        baseline_rss,
        data_rss,
        peak_build,
        rss_after_build,
        peak_hnsw_search,
        rss_after_drop,
        peak_exact_search,
        peak_hnsw_path,
        vectors,
        graph,
        graph_compact,
        hnsw_rs_vectors,
        hnsw_rs_point_overhead,
        ratio: peak_hnsw_path as f64 / (vectors + graph) as f64,
        ratio_to_model: peak_hnsw_path as f64 / (hnsw_rs_vectors + graph + hnsw_rs_point_overhead) as f64,
    };
    let per_query_exact = exact_seconds / a.queries as f64;
    let per_query_hnsw = hnsw_seconds / a.queries as f64;
    let break_even_queries =
        (per_query_exact > per_query_hnsw).then(|| build_seconds / (per_query_exact - per_query_hnsw));
    Ok(IndexReport {
        n,
        dim: a.dim,
        queries: a.queries,
        k: a.k,
        m: a.m,
        ef_construction: a.ef_construction,
        ef_search: cfg.ef_search_for(n),
        clusters: model.clusters(),
        generate_seconds,
        build_mode: build_mode.to_string(),
        build_seconds,
        build_cpu_seconds,
        build_inserts_per_s: n as f64 / build_seconds.max(1e-9),
        hnsw_seconds,
        hnsw_cpu_seconds,
        hnsw_queries_per_s: a.queries as f64 / hnsw_seconds.max(1e-9),
        exact_seconds,
        exact_cpu_seconds,
        exact_queries_per_s: a.queries as f64 / exact_seconds.max(1e-9),
        speedup: exact_seconds / hnsw_seconds.max(1e-9),
        break_even_queries,
        recall,
        mean_kth_cosine,
        ef_sweep,
        memory,
    })
}
