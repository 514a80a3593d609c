//! The human-readable tables of `tripletgen bench embed|index`.

use super::embed::Throughput;
use super::{
    BenchReport, TARGET_AGREEMENT_COSINE, TARGET_EMBED_OVERHEAD_PCT, TARGET_MEMORY_RATIO, TARGET_RECALL, TARGET_SPEEDUP,
};
use std::fmt::Write as _;

fn mib(b: u64) -> String {
    format!("{:.0} MiB", b as f64 / (1024.0 * 1024.0))
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn grouped(x: f64) -> String {
    let s = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 && c.is_ascii_digit() {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The human-readable tables of `r`.
pub fn render(r: &BenchReport) -> String {
    let mut s = String::new();
    let m = &r.machine;
    let _ = writeln!(s, "tripletgen {} bench, {}", r.tripletgen_version, r.date_utc);
    let _ = writeln!(
        s,
        "machine: {}, {} cores, {:.1} GiB RAM, Linux {}, {} build; load average at start {}\n",
        m.cpu, m.cores, m.memory_gib, m.kernel, m.build, m.load_average
    );
    if let Some(e) = &r.embed {
        let _ = writeln!(
            s,
            "Embedding: {} synthetic documents, {}-{} words (median {}, mean {:.0}, p90 {}), {} tokens, {} truncated at {}",
            e.docs,
            e.words.min,
            e.words.max,
            e.words.median,
            e.words.mean,
            e.words.p90,
            grouped(e.tokens as f64),
            e.truncated,
            e.max_length
        );
        let _ = writeln!(
            s,
            "  all-MiniLM-L6-v2 int8, batch {}, {} intra-op threads; (a) and (b): fastest of {} alternating runs",
            e.batch_size, e.threads, e.repeat
        );
        let _ = writeln!(
            s,
            "  {:<44} {:>8} {:>8} {:>9} {:>9} {:>10}",
            "path", "seconds", "texts/s", "tokens/s", "padding", "cores busy"
        );
        let mut row = |name: &str, t: &Throughput| {
            let pad = t.padding_efficiency.map_or("-".into(), |p| format!("{:.0}% real", p * 100.0));
            let _ = writeln!(
                s,
                "  {:<44} {:>8.1} {:>8.1} {:>9} {:>9} {:>10.2}",
                name,
                t.seconds,
                t.texts_per_s,
                grouped(t.tokens_per_s),
                pad,
                t.cpu_seconds / t.seconds.max(1e-9)
            );
        };
        row("(a) tripletgen embed_cached, length-sorted", &e.tripletgen_sorted);
        row("(b) raw ONNX Runtime, same sorted batches", &e.raw_onnxruntime);
        if let Some(u) = &e.tripletgen_unsorted {
            row("(c) tripletgen embed_cached, input order", u);
        }
        let _ = writeln!(
            s,
            "  overhead of tripletgen vs raw: {:+.1}% (raw time / tripletgen time = {:.1}%); target <= {:.0}%: {}",
            e.overhead_pct,
            e.raw_time_over_tripletgen_time_pct,
            TARGET_EMBED_OVERHEAD_PCT,
            verdict(e.overhead_pct <= TARGET_EMBED_OVERHEAD_PCT)
        );
        if let Some(sp) = e.sort_speedup {
            let _ = writeln!(s, "  speed-up of length-sorted batching: {sp:.2}x");
        }
        let _ = writeln!(
            s,
            "  agreement (a) vs (b): min cosine {:.6}, mean {:.6} over {} texts; target > {}: {}\n",
            e.agreement.min_cosine,
            e.agreement.mean_cosine,
            e.agreement.sample,
            TARGET_AGREEMENT_COSINE,
            verdict(e.agreement.min_cosine > TARGET_AGREEMENT_COSINE)
        );
    }
    for x in &r.index {
        let mm = &x.memory;
        let _ = writeln!(
            s,
            "Index: n = {}, dim {}, {} queries, k = {}, {} clusters; HNSW m = {}, ef_construction = {}, ef_search = {}",
            grouped(x.n as f64),
            x.dim,
            x.queries,
            x.k,
            x.clusters,
            x.m,
            x.ef_construction,
            x.ef_search
        );
        let build = if x.build_mode == "serial" {
            "serial inserts (the pipeline's Index::build)".to_string()
        } else {
            "hnsw_rs parallel_insert on all cores (benchmark only; the pipeline inserts serially)".to_string()
        };
        let _ = writeln!(s, "  build: {build}");
        let _ = writeln!(s, "  {:<36} {:>28}   target", "metric", "value");
        let mut row = |k: &str, v: String, t: String| {
            let _ = writeln!(s, "  {:<36} {:>28}   {}", k, v, t);
        };
        let busy = |cpu: f64, wall: f64| format!("{:.2} cores busy", cpu / wall.max(1e-9));
        row(
            "HNSW build",
            format!("{:.1} s ({:.0} inserts/s)", x.build_seconds, x.build_inserts_per_s),
            busy(x.build_cpu_seconds, x.build_seconds),
        );
        row("HNSW search", format!("{:.0} queries/s", x.hnsw_queries_per_s), busy(x.hnsw_cpu_seconds, x.hnsw_seconds));
        row(
            "exact search",
            format!("{:.0} queries/s", x.exact_queries_per_s),
            busy(x.exact_cpu_seconds, x.exact_seconds),
        );
        row(
            "search speed-up HNSW vs exact",
            format!("{:.1}x", x.speedup),
            format!(">= {TARGET_SPEEDUP:.0}x (at 100k): {}", verdict(x.speedup >= TARGET_SPEEDUP)),
        );
        row(
            "break-even incl. build",
            x.break_even_queries.map_or("never".into(), |q| format!("{} queries", grouped(q))),
            String::new(),
        );
        row(
            &format!("recall@{} HNSW vs exact", x.k),
            format!("{:.4}", x.recall),
            format!(">= {TARGET_RECALL}: {}", verdict(x.recall >= TARGET_RECALL)),
        );
        row(&format!("mean cosine of {}th neighbour", x.k), format!("{:.3}", x.mean_kth_cosine), String::new());
        for p in &x.ef_sweep {
            row(
                &format!("  same graph, ef_search = {}", p.ef_search.max(x.k)),
                format!("{:.0} q/s, {:.1}x, recall {:.4}", p.queries_per_s, p.speedup, p.recall),
                String::new(),
            );
        }
        row(
            "peak RSS, HNSW build + search",
            mib(mm.peak_hnsw_path),
            format!("above the {} baseline before the vectors existed", mib(mm.baseline_rss)),
        );
        row(
            "vectors + graph",
            mib(mm.vectors + mm.graph),
            format!(
                "vectors {} + graph {} at 56 B/link (as 4-byte ids: {})",
                mib(mm.vectors),
                mib(mm.graph),
                mib(mm.graph_compact)
            ),
        );
        row(
            "peak / (vectors + graph)",
            format!("{:.2}", mm.ratio),
            format!("<= {TARGET_MEMORY_RATIO}: {}", verdict(mm.ratio <= TARGET_MEMORY_RATIO)),
        );
        row(
            "peak / hnsw_rs memory model",
            format!("{:.2}", mm.ratio_to_model),
            format!(
                "model: vectors {} + graph + per-point {}",
                mib(mm.hnsw_rs_vectors),
                mib(mm.hnsw_rs_point_overhead)
            ),
        );
        row(
            "peak RSS, exact search phase",
            mib(mm.peak_exact_search.saturating_sub(mm.baseline_rss)),
            format!(
                "vectors + score blocks; {} still held after dropping HNSW",
                mib(mm.rss_after_drop.saturating_sub(mm.baseline_rss))
            ),
        );
        if !mm.peak_reset_works {
            let _ = writeln!(s, "  note: VmHWM could not be reset; peaks are process-lifetime peaks");
        }
        let _ = writeln!(s);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(grouped(1234567.0), "1,234,567");
    }
}
