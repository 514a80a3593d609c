//! LLM-free query variants: WordNet synonym and hypernym replacement, embedding-neighbour word
//! replacement, and EDA's random insertion, deletion and swap.
//!
//! With `meaning_guard` (the default), a replacement that is a WordNet antonym of the word it
//! replaces is kept but rejected (reason `antonym`), comparatives and superlatives are not replaced
//! (a synonym's base form drops the degree: "largest" -> "big"), and named entities are not
//! generalised to their class ("California" -> "American state").
//!
//! Words are whitespace tokens with their surrounding punctuation kept aside; only alphabetic words
//! that are not stop words are replaced or used as insertion sources. Capitalisation and a plural
//! `-s` are carried over to the replacement. Every candidate has its own random stream, derived from
//! the seed, the query text, the strategy and the candidate number, so results do not depend on the
//! order or number of other queries.

use super::RejectReason;
use super::wordnet::{Pos, WordNet};
use crate::config::{LexicalConfig, LexicalStrategy};
use crate::hash::ContentHash;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{HashMap, HashSet};

/// English function words that are never replaced, inserted or counted as content.
pub const STOPWORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "down",
    "during",
    "each",
    "few",
    "for",
    "from",
    "further",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "me",
    "more",
    "most",
    "my",
    "myself",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "same",
    "she",
    "should",
    "so",
    "some",
    "such",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "would",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
    "s",
    "t",
    "don",
    "also",
    "may",
    "might",
    "must",
    "shall",
    "get",
    "got",
    "make",
    "made",
    "many",
    "much",
    "use",
    "used",
    "using",
    "one",
    "two",
    "like",
    "well",
];

/// A word that lexical strategies may replace or mark: alphabetic, longer than one letter, and not a
/// stop word (`is_stop` gets it lowercased).
pub fn is_content_word(word: &str, is_stop: impl Fn(&str) -> bool) -> bool {
    word.chars().count() > 1 && word.chars().all(char::is_alphabetic) && !is_stop(&word.to_lowercase())
}

/// A whitespace token split into punctuation and word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Leading punctuation.
    pub pre: String,
    /// The word itself (may be empty for pure punctuation).
    pub word: String,
    /// Trailing punctuation.
    pub post: String,
}

/// Split text into tokens.
pub fn tokenize(text: &str) -> Vec<Token> {
    text.split_whitespace()
        .map(|t| {
            let start = t.find(|c: char| c.is_alphanumeric()).unwrap_or(t.len());
            let end = t
                .rfind(|c: char| c.is_alphanumeric())
                .map(|i| i + t[i..].chars().next().map_or(1, char::len_utf8))
                .unwrap_or(start);
            let end = end.max(start);
            Token { pre: t[..start].into(), word: t[start..end].into(), post: t[end..].into() }
        })
        .collect()
}

/// Join tokens back into text.
pub fn detokenize(tokens: &[Token]) -> String {
    tokens.iter().map(|t| format!("{}{}{}", t.pre, t.word, t.post)).collect::<Vec<_>>().join(" ")
}

/// Everything the strategies need, loaded once.
pub struct Lexicon<'a> {
    /// WordNet, when a WordNet strategy is on.
    pub wordnet: Option<&'a WordNet>,
    /// Stop words (lowercase).
    pub stopwords: HashSet<String>,
    /// For embedding-neighbour: lowercase word -> neighbours (word, cosine), best first.
    pub neighbours: HashMap<String, Vec<(String, f32)>>,
    /// For contextual: (query text hash, token position) -> the masked LM's replacements.
    pub contextual: HashMap<(ContentHash, usize), Vec<String>>,
}

impl Lexicon<'_> {
    fn eligible(&self, word: &str) -> bool {
        is_content_word(word, |w| self.stopwords.contains(w))
    }

    /// Replacement choices for `word` under a replacing strategy.
    fn choices(&self, word: &str, strategy: LexicalStrategy, cfg: &LexicalConfig) -> Vec<String> {
        let lower = word.to_lowercase();
        match strategy {
            LexicalStrategy::EmbeddingNeighbour => {
                self.neighbours.get(&lower).map(|v| v.iter().map(|(w, _)| w.clone()).collect()).unwrap_or_default()
            }
            LexicalStrategy::Synonym | LexicalStrategy::RandomInsert | LexicalStrategy::Hypernym => {
                let Some(wn) = self.wordnet else { return Vec::new() };
                let Some((pos, lemma)) = wn.dominant_pos(&lower) else { return Vec::new() };
                if cfg.meaning_guard && pos == Pos::Adj && lemma != lower {
                    return Vec::new(); // a comparative or superlative: its synonyms' base forms drop the degree
                }
                let mut out = if strategy == LexicalStrategy::Hypernym {
                    wn.hypernyms(&lemma, pos, cfg.senses, !cfg.meaning_guard)
                } else {
                    wn.synonyms(&lemma, pos, cfg.senses)
                };
                let plural = pos == Pos::Noun && lemma != lower && lower.ends_with('s');
                out.retain(|w| w != &lower);
                if plural {
                    out = out.into_iter().map(|w| if w.ends_with('s') { w } else { format!("{w}s") }).collect();
                }
                out
            }
            _ => Vec::new(),
        }
    }
}

fn match_case(template: &str, word: &str) -> String {
    let mut chars = template.chars();
    match chars.next() {
        Some(c) if c.is_uppercase() && chars.all(|c| c.is_uppercase()) && template.chars().count() > 1 => {
            word.to_uppercase()
        }
        Some(c) if c.is_uppercase() => {
            let mut w = word.chars();
            w.next().map(|f| f.to_uppercase().collect::<String>() + w.as_str()).unwrap_or_default()
        }
        _ => word.to_string(),
    }
}

/// One generated candidate (before filtering).
#[derive(Debug, Clone, PartialEq)]
pub struct LexicalVariant {
    /// The new text.
    pub text: String,
    /// What changed, e.g. `car -> automobile`.
    pub detail: String,
    /// Rejected at generation: a replacement that is an antonym of the word it replaced.
    pub rejected: Option<RejectReason>,
}

/// The random stream of candidate `n` of `strategy` for `text`.
pub fn rng_for(seed: u64, text: &str, strategy: LexicalStrategy, n: usize) -> ChaCha8Rng {
    let h = ContentHash::of_parts(&[text.as_bytes(), strategy.name().as_bytes(), &(n as u64).to_le_bytes()]);
    ChaCha8Rng::seed_from_u64(seed ^ h.as_u64())
}

/// Apply `strategy` to `text`; `None` when it cannot change anything (no eligible word, too short…).
pub fn apply(
    text: &str,
    strategy: LexicalStrategy,
    lex: &Lexicon<'_>,
    cfg: &LexicalConfig,
    rng: &mut ChaCha8Rng,
) -> Option<LexicalVariant> {
    let mut tokens = tokenize(text);
    let words = tokens.iter().filter(|t| !t.word.is_empty()).count();
    let count = |rate: f32, of: usize| ((rate * of as f32).round() as usize).max(1);
    let mut changes: Vec<String> = Vec::new();
    let mut rejected = None;
    match strategy {
        LexicalStrategy::Synonym
        | LexicalStrategy::Hypernym
        | LexicalStrategy::EmbeddingNeighbour
        | LexicalStrategy::Contextual => {
            let key = (strategy == LexicalStrategy::Contextual).then(|| ContentHash::of(text));
            let mut candidates: Vec<(usize, Vec<String>)> = tokens
                .iter()
                .enumerate()
                .filter(|(_, t)| lex.eligible(&t.word))
                .filter_map(|(i, t)| {
                    let c = match key {
                        Some(k) => lex.contextual.get(&(k, i)).cloned().unwrap_or_default(),
                        None => lex.choices(&t.word, strategy, cfg),
                    };
                    (!c.is_empty()).then_some((i, c))
                })
                .collect();
            if candidates.is_empty() {
                return None;
            }
            candidates.shuffle(rng);
            let eligible = tokens.iter().filter(|t| lex.eligible(&t.word)).count();
            let n = count(cfg.replace_rate, eligible).min(candidates.len());
            for (i, choices) in candidates.into_iter().take(n) {
                let pick = choices.choose(rng).expect("non-empty");
                let new = match_case(&tokens[i].word, pick);
                let flipped = cfg.meaning_guard && lex.wordnet.is_some_and(|wn| wn.antonyms(&tokens[i].word, pick));
                if flipped {
                    rejected = Some(RejectReason::Antonym);
                }
                changes.push(format!("{} -> {}{}", tokens[i].word, new, if flipped { " (antonym)" } else { "" }));
                tokens[i].word = new;
            }
        }
        LexicalStrategy::RandomInsert => {
            let sources: Vec<Vec<String>> = tokens
                .iter()
                .filter(|t| lex.eligible(&t.word))
                .map(|t| lex.choices(&t.word, strategy, cfg))
                .filter(|c| !c.is_empty())
                .collect();
            if sources.is_empty() {
                return None;
            }
            for _ in 0..count(cfg.insert_rate, words) {
                let syn = sources.choose(rng).and_then(|c| c.choose(rng)).expect("non-empty").clone();
                let at = rng.random_range(0..=tokens.len());
                changes.push(format!("+{syn}@{at}"));
                tokens.insert(at, Token { pre: String::new(), word: syn, post: String::new() });
            }
        }
        LexicalStrategy::RandomDelete => {
            if tokens.len() < 2 {
                return None;
            }
            let mut keep: Vec<bool> = tokens.iter().map(|_| !rng.random_bool(cfg.delete_rate as f64)).collect();
            if keep.iter().all(|k| *k) {
                let i = rng.random_range(0..tokens.len());
                keep[i] = false;
            }
            if keep.iter().all(|k| !*k) {
                let i = rng.random_range(0..tokens.len());
                keep[i] = true;
            }
            let mut kept = Vec::new();
            for (t, k) in tokens.into_iter().zip(keep) {
                if k {
                    kept.push(t);
                } else {
                    changes.push(format!("-{}", t.word));
                }
            }
            tokens = kept;
        }
        LexicalStrategy::RandomSwap => {
            if tokens.len() < 2 {
                return None;
            }
            for _ in 0..count(cfg.swap_rate, words) {
                let a = rng.random_range(0..tokens.len());
                let mut b = rng.random_range(0..tokens.len() - 1);
                if b >= a {
                    b += 1;
                }
                // Swap the words, keep punctuation in place.
                let wa = std::mem::take(&mut tokens[a].word);
                let wb = std::mem::replace(&mut tokens[b].word, wa);
                tokens[a].word = wb;
                changes.push(format!("{a}<->{b}"));
            }
        }
    }
    let out = detokenize(&tokens);
    (out != text).then(|| LexicalVariant { text: out, detail: changes.join("; "), rejected })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex_with_neighbours() -> Lexicon<'static> {
        let mut neighbours = HashMap::new();
        neighbours.insert("planet".to_string(), vec![("world".to_string(), 0.8)]);
        Lexicon {
            wordnet: None,
            stopwords: STOPWORDS.iter().map(|s| s.to_string()).collect(),
            neighbours,
            contextual: HashMap::new(),
        }
    }

    #[test]
    fn tokenize_roundtrip_keeps_punctuation() {
        let t = "What is \"Mars\" made of? (really)";
        assert_eq!(detokenize(&tokenize(t)), t);
        assert_eq!(tokenize("(Mars)")[0], Token { pre: "(".into(), word: "Mars".into(), post: ")".into() });
    }

    #[test]
    fn neighbour_replacement_keeps_case_and_is_seeded() {
        let lex = lex_with_neighbours();
        let cfg = LexicalConfig::default();
        let mut r1 = rng_for(1, "Which Planet is red?", LexicalStrategy::EmbeddingNeighbour, 0);
        let v = apply("Which Planet is red?", LexicalStrategy::EmbeddingNeighbour, &lex, &cfg, &mut r1).unwrap();
        assert_eq!(v.text, "Which World is red?");
        assert!(apply("the of and", LexicalStrategy::EmbeddingNeighbour, &lex, &cfg, &mut r1).is_none());
    }

    #[test]
    fn eda_operations_change_text_deterministically() {
        let lex = lex_with_neighbours();
        let cfg = LexicalConfig::default();
        let text = "how do rust lifetimes prevent dangling references in practice";
        for s in [LexicalStrategy::RandomDelete, LexicalStrategy::RandomSwap] {
            let a = apply(text, s, &lex, &cfg, &mut rng_for(3, text, s, 0)).unwrap();
            let b = apply(text, s, &lex, &cfg, &mut rng_for(3, text, s, 0)).unwrap();
            assert_eq!(a, b);
            assert_ne!(a.text, text);
            let mut x: Vec<&str> = a.text.split(' ').collect();
            let mut y: Vec<&str> = text.split(' ').collect();
            if s == LexicalStrategy::RandomSwap {
                x.sort();
                y.sort();
                assert_eq!(x, y, "swap keeps the same words");
            } else {
                assert!(x.len() < y.len() && !x.is_empty());
            }
        }
        assert!(
            apply(
                "single",
                LexicalStrategy::RandomSwap,
                &lex,
                &cfg,
                &mut rng_for(3, "single", LexicalStrategy::RandomSwap, 0)
            )
            .is_none()
        );
    }

    #[test]
    fn wordnet_strategies_use_the_database() {
        let d = tempfile::tempdir().unwrap();
        super::super::wordnet::tests_support::tiny(d.path());
        let wn = WordNet::load(d.path()).unwrap();
        let lex = Lexicon {
            wordnet: Some(&wn),
            stopwords: STOPWORDS.iter().map(|s| s.to_string()).collect(),
            neighbours: HashMap::new(),
            contextual: HashMap::new(),
        };
        let cfg = LexicalConfig { replace_rate: 1.0, ..LexicalConfig::default() };
        let text = "Cars for the fast planet";
        let syn = apply(text, LexicalStrategy::Synonym, &lex, &cfg, &mut rng_for(0, text, LexicalStrategy::Synonym, 0))
            .unwrap();
        assert_eq!(syn.text, "Automobiles for the quick planet");
        let hyp =
            apply(text, LexicalStrategy::Hypernym, &lex, &cfg, &mut rng_for(0, text, LexicalStrategy::Hypernym, 0))
                .unwrap();
        assert_eq!(hyp.text, "Motor vehicles for the fast planet");
        let big = "the largest planet";
        assert!(
            apply(big, LexicalStrategy::Synonym, &lex, &cfg, &mut rng_for(0, big, LexicalStrategy::Synonym, 0))
                .is_none(),
            "a superlative keeps its degree"
        );
        let off = LexicalConfig { meaning_guard: false, ..cfg.clone() };
        let v = apply(big, LexicalStrategy::Synonym, &lex, &off, &mut rng_for(0, big, LexicalStrategy::Synonym, 0));
        assert_eq!(v.unwrap().text, "the big planet");
        let ca = "roads of California";
        let hyp = |c: &LexicalConfig| {
            apply(ca, LexicalStrategy::Hypernym, &lex, c, &mut rng_for(0, ca, LexicalStrategy::Hypernym, 0))
        };
        assert!(hyp(&cfg).is_none(), "a named entity is not generalised");
        assert_eq!(hyp(&off).unwrap().text, "roads of American state");

        let mut with_neighbours = lex;
        with_neighbours.neighbours.insert("high".into(), vec![("low".into(), 0.9)]);
        let court = "the high court";
        let s = LexicalStrategy::EmbeddingNeighbour;
        let v = apply(court, s, &with_neighbours, &cfg, &mut rng_for(0, court, s, 0)).unwrap();
        assert_eq!((v.text.as_str(), v.rejected), ("the low court", Some(RejectReason::Antonym)));
        assert!(v.detail.contains("(antonym)"), "{}", v.detail);
        let v = apply(court, s, &with_neighbours, &off, &mut rng_for(0, court, s, 0)).unwrap();
        assert_eq!(v.rejected, None, "the guard off");
        let lex = with_neighbours;
        let ins = apply(
            text,
            LexicalStrategy::RandomInsert,
            &lex,
            &cfg,
            &mut rng_for(0, text, LexicalStrategy::RandomInsert, 0),
        )
        .unwrap();
        assert_eq!(ins.text.split(' ').count(), 6);
    }
}
