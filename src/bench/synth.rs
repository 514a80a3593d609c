//! Synthetic, seeded inputs for the benchmarks: documents with realistic mixed lengths (words drawn
//! with their frequencies from the quickstart corpus) and clustered unit vectors that look like
//! sentence embeddings.

use crate::vectors::{Vectors, normalize};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::path::Path;

/// Words and their sampling weights (corpus frequencies).
#[derive(Debug, Clone)]
pub struct Vocabulary {
    words: Vec<String>,
    cumulative: Vec<f64>,
    /// Where the words came from.
    pub source: String,
}

const FALLBACK_WORDS: &str = "the of and to in a is that for it as was with be by on not he this are or his from at \
which but have an they you were her she there been one all we their has would when if so what out up more \
about into than them can only other new some could time these two may first then do any like my now over \
such our man me even most made after also did many before must through back years where much your way well \
down should because each just those people how too little state good very make world still own see men work \
long get here between both life being under never day same another know while last might us great old year \
off come since against go came right used take three system energy water light model data network protein \
cell planet orbit river climate market language history music theory method result process structure power \
field change rate level study group research surface temperature pressure species population economy city";

impl Vocabulary {
    /// Words of the `title` and `text` fields of a JSONL corpus, weighted by frequency; the built-in
    /// list when the file cannot be read or has fewer than 100 distinct words.
    pub fn from_corpus(path: &Path) -> Vocabulary {
        let mut counts: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
        if let Ok(text) = std::fs::read_to_string(path) {
            for line in text.lines() {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
                for field in ["title", "text"] {
                    if let Some(s) = v.get(field).and_then(|x| x.as_str()) {
                        for w in s.split_whitespace() {
                            let w = w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase();
                            if !w.is_empty() {
                                *counts.entry(w).or_default() += 1;
                            }
                        }
                    }
                }
            }
        }
        if counts.len() < 100 {
            log::warn!("cannot use {} as a vocabulary; using the built-in word list", path.display());
            return Vocabulary::fallback();
        }
        let (words, weights): (Vec<String>, Vec<f64>) = counts.into_iter().map(|(w, c)| (w, c as f64)).unzip();
        Vocabulary::new(words, &weights, format!("{} ({} distinct words)", path.display(), weights.len()))
    }

    /// The built-in word list with Zipf weights.
    pub fn fallback() -> Vocabulary {
        let words: Vec<String> = FALLBACK_WORDS.split_whitespace().map(str::to_string).collect();
        let weights: Vec<f64> = (0..words.len()).map(|i| 1.0 / (i as f64 + 1.0)).collect();
        let n = words.len();
        Vocabulary::new(words, &weights, format!("built-in list ({n} words)"))
    }

    fn new(words: Vec<String>, weights: &[f64], source: String) -> Vocabulary {
        Vocabulary { words, cumulative: cumulative(weights), source }
    }

    fn sample<R: Rng>(&self, rng: &mut R) -> &str {
        &self.words[pick(&self.cumulative, rng)]
    }
}

fn cumulative(weights: &[f64]) -> Vec<f64> {
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    weights
        .iter()
        .map(|w| {
            acc += w / total;
            acc
        })
        .collect()
}

fn pick<R: Rng>(cumulative: &[f64], rng: &mut R) -> usize {
    let u: f64 = rng.random();
    cumulative.partition_point(|&c| c < u).min(cumulative.len() - 1)
}

/// Shortest and longest synthetic document, in words.
pub const DOC_WORDS: (usize, usize) = (8, 300);

/// A document length in words: log-normal (median 40, σ 0.9), redrawn until inside [`DOC_WORDS`].
/// Right-skewed: most documents are short, a long tail reaches 300 words.
fn doc_words<R: Rng>(rng: &mut R) -> usize {
    loop {
        let w = (40f64.ln() + 0.9 * gauss(rng)).exp().round() as usize;
        if (DOC_WORDS.0..=DOC_WORDS.1).contains(&w) {
            return w;
        }
    }
}

/// `n` distinct documents of sentences (5 to 18 words, capitalised, with full stops and the odd
/// comma or number) drawn from `vocab`; the same `seed` gives the same documents.
pub fn generate_documents(vocab: &Vocabulary, n: usize, seed: u64) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut seen = std::collections::HashSet::with_capacity(n);
    let mut docs = Vec::with_capacity(n);
    while docs.len() < n {
        let words = doc_words(&mut rng);
        let mut doc = String::with_capacity(words * 8);
        let mut left = words;
        while left > 0 {
            let len = rng.random_range(5..=18usize).min(left);
            left -= len;
            for i in 0..len {
                if !doc.is_empty() {
                    doc.push(' ');
                }
                let w: String = if rng.random_bool(0.03) {
                    rng.random_range(2..2030u32).to_string()
                } else {
                    vocab.sample(&mut rng).to_string()
                };
                if i == 0 {
                    let mut c = w.chars();
                    if let Some(f) = c.next() {
                        doc.extend(f.to_uppercase());
                        doc.push_str(c.as_str());
                    }
                } else {
                    doc.push_str(&w);
                }
                if i + 1 < len && rng.random_bool(0.06) {
                    doc.push(',');
                }
            }
            doc.push('.');
        }
        if seen.insert(doc.clone()) {
            docs.push(doc);
        }
    }
    docs
}

/// A standard normal sample (Box–Muller).
fn gauss<R: Rng>(rng: &mut R) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Fill `out` with standard normal samples, two per Box–Muller draw.
fn fill_gauss<R: Rng>(rng: &mut R, out: &mut [f32]) {
    for pair in out.chunks_mut(2) {
        let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = rng.random();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        pair[0] = (r * c) as f32;
        if pair.len() > 1 {
            pair[1] = (r * s) as f32;
        }
    }
}

/// A generator of clustered unit vectors that look like sentence embeddings: a shared mean
/// direction, topics, cluster centres near their topic, power-law cluster sizes (Zipf exponent 0.8),
/// a different spread per cluster, and a power-law variance spectrum over dimensions (variance of
/// dimension j ∝ 1/(j+1): an effective dimension of a few dozen, not `dim`).
#[derive(Debug, Clone)]
pub struct ClusterModel {
    dim: usize,
    scale: Vec<f32>,
    centres: Vec<f32>,
    spread: Vec<f32>,
    cumulative: Vec<f64>,
}

impl ClusterModel {
    /// Draw `clusters` centres in `dim` dimensions from `seed`.
    pub fn new(dim: usize, clusters: usize, seed: u64) -> ClusterModel {
        let clusters = clusters.max(1);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut scale: Vec<f32> = (0..dim).map(|j| (1.0 / (j as f32 + 1.0)).sqrt()).collect();
        let total = scale.iter().map(|s| s * s).sum::<f32>().sqrt();
        scale.iter_mut().for_each(|s| *s /= total);
        let direction = |rng: &mut ChaCha8Rng| {
            let mut v = vec![0f32; dim];
            fill_gauss(rng, &mut v);
            v.iter_mut().zip(&scale).for_each(|(x, s)| *x *= s);
            normalize(&mut v);
            v
        };
        let mean = direction(&mut rng);
        let topics: Vec<Vec<f32>> = (0..(clusters / 50).max(1)).map(|_| direction(&mut rng)).collect();
        let mut centres = Vec::with_capacity(clusters * dim);
        let mut spread = Vec::with_capacity(clusters);
        for _ in 0..clusters {
            let topic = &topics[rng.random_range(0..topics.len())];
            let own = direction(&mut rng);
            let mut c: Vec<f32> = (0..dim).map(|j| 0.5 * mean[j] + 0.8 * topic[j] + 0.6 * own[j]).collect();
            normalize(&mut c);
            centres.extend(c);
            spread.push(rng.random_range(0.35..0.9f32));
        }
        let weights: Vec<f64> = (0..clusters).map(|i| (i as f64 + 1.0).powf(-0.8)).collect();
        ClusterModel { dim, scale, centres, spread, cumulative: cumulative(&weights) }
    }

    /// Number of cluster centres.
    pub fn clusters(&self) -> usize {
        self.spread.len()
    }

    /// `n` unit vectors: a centre picked by cluster size plus anisotropic Gaussian noise of the
    /// cluster's spread, normalised. Deterministic in `seed` (independent of the thread count).
    pub fn sample(&self, n: usize, seed: u64) -> Vectors {
        const CHUNK: usize = 1024;
        let d = self.dim;
        let mut data = vec![0f32; n * d];
        data.par_chunks_mut(CHUNK * d).enumerate().for_each(|(chunk, block)| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(chunk as u64);
            let mut noise = vec![0f32; d];
            for v in block.chunks_mut(d) {
                let c = pick(&self.cumulative, &mut rng);
                fill_gauss(&mut rng, &mut noise);
                let centre = &self.centres[c * d..(c + 1) * d];
                let s = self.spread[c];
                for j in 0..d {
                    v[j] = centre[j] + s * self.scale[j] * noise[j];
                }
                normalize(v);
            }
        });
        Vectors { dim: d, data }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::embed::summarize_lengths;
    use crate::index;

    #[test]
    fn cluster_model_is_deterministic_normalised_and_clustered() {
        let model = ClusterModel::new(64, 40, 7);
        let a = model.sample(3000, 1);
        let b = ClusterModel::new(64, 40, 7).sample(3000, 1);
        assert_eq!(a.data, b.data, "same seed, same vectors");
        assert_ne!(a.data, model.sample(3000, 2).data, "another seed, other vectors");
        for i in 0..a.len() {
            let norm = a.row(i).iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "row {i} has norm {norm}");
        }
        // Clustered: the nearest neighbour is far closer than a random pair.
        let sample = Vectors { dim: 64, data: a.data[..200 * 64].to_vec() };
        let nn = index::exact_search(&a, &sample, 2);
        let nearest: f32 = nn.iter().map(|h| h[1].score).sum::<f32>() / 200.0;
        let random: f32 = (0..200).map(|i| crate::vectors::dot(a.row(i), a.row(2999 - i))).sum::<f32>() / 200.0;
        assert!(nearest > 0.8 && nearest > random + 0.2, "nearest {nearest}, random {random}");
    }

    #[test]
    fn cluster_sizes_follow_a_power_law() {
        let model = ClusterModel::new(8, 100, 3);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut counts = vec![0usize; 100];
        for _ in 0..20_000 {
            counts[pick(&model.cumulative, &mut rng)] += 1;
        }
        assert!(counts[0] > 5 * counts[99], "largest {} vs smallest {}", counts[0], counts[99]);
    }

    #[test]
    fn documents_are_deterministic_distinct_and_of_mixed_length() {
        let vocab = Vocabulary::fallback();
        let docs = generate_documents(&vocab, 2000, 5);
        assert_eq!(docs, generate_documents(&vocab, 2000, 5));
        assert_eq!(docs.iter().collect::<std::collections::HashSet<_>>().len(), docs.len());
        let words: Vec<usize> = docs.iter().map(|d| d.split_whitespace().count()).collect();
        assert!(words.iter().all(|&w| (DOC_WORDS.0..=DOC_WORDS.1).contains(&w)));
        let short = words.iter().filter(|&&w| w <= 25).count() as f64 / 2000.0;
        let long = words.iter().filter(|&&w| w >= 120).count() as f64 / 2000.0;
        assert!(short > 0.15, "short fraction {short}");
        assert!(long > 0.05, "long fraction {long}");
        let s = summarize_lengths(&docs);
        assert!(s.mean > s.median as f64, "right-skewed: mean {} median {}", s.mean, s.median);
    }

    #[test]
    fn vocabulary_falls_back_when_the_corpus_is_missing() {
        let v = Vocabulary::from_corpus(Path::new("/nonexistent/corpus.jsonl"));
        assert!(v.source.starts_with("built-in"));
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert!(!v.sample(&mut rng).is_empty());
    }
}
