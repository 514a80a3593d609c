//! The index policy: which corpora get an HNSW graph and how wide its search beam is. The values
//! come from `[index]` ([`IndexConfig`]); the rules that turn them into a decision live here, with
//! the index.

use crate::config::{IndexConfig, IndexKind};

impl IndexConfig {
    /// The HNSW search beam for `n` documents: `ef_search`, or when it is 0, 128 up to 100k
    /// documents and 128 × sqrt(n / 100k) above (recall@50 ≥ 0.98 needed ~200 at 300k and ~400 at
    /// 1M on the benchmark's clustered vectors).
    pub fn ef_search_for(&self, n: usize) -> usize {
        match self.ef_search {
            0 => (128.0 * (n as f64 / 100_000.0).sqrt().max(1.0)).round() as usize,
            ef => ef,
        }
    }

    /// Whether `n` documents get an HNSW graph (else exact search).
    pub fn uses_hnsw(&self, n: usize) -> bool {
        match self.kind {
            IndexKind::Exact => false,
            IndexKind::Hnsw => true,
            IndexKind::Auto => n >= self.exact_below,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_ef_search_grows_with_the_corpus_and_a_set_value_wins() {
        let auto = IndexConfig::default();
        assert_eq!(auto.ef_search, 0);
        assert_eq!((auto.ef_search_for(10), auto.ef_search_for(100_000)), (128, 128));
        assert_eq!((auto.ef_search_for(400_000), auto.ef_search_for(1_000_000)), (256, 405));
        let fixed = IndexConfig { ef_search: 64, ..IndexConfig::default() };
        assert_eq!(fixed.ef_search_for(1_000_000), 64);
    }
}
