//! A reader for the WordNet 3.0 database files (`index.*`, `data.*`, `*.exc`), as shipped by the
//! Debian package `wordnet-base` (`/usr/share/wordnet`) and fetched by `tripletgen fetch-models`.
//!
//! Only what lexical augmentation needs: a word's dominant part of speech (by tagged sense counts),
//! the lemmas of its most frequent senses (synonyms), their hypernyms, and antonyms (direct `!`
//! pointers, and through an adjective satellite's head `&`) for the meaning guard. Inflected forms are
//! mapped to lemmas through the exception lists and WordNet's detachment rules.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Errors while loading WordNet.
#[derive(Debug, thiserror::Error)]
pub enum WordNetError {
    /// The folder or a file is missing.
    #[error(
        "WordNet database not found: {path} is missing. Run `tripletgen fetch-models` (fetches the Debian package \
         wordnet-base), install it with `apt-get install wordnet-base` (files in /usr/share/wordnet), or set \
         generate.lexical.wordnet_dir"
    )]
    Missing {
        /// The missing file.
        path: PathBuf,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line does not parse.
    #[error("{path}:{line}: malformed WordNet line")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
    },
}

/// WordNet's parts of speech.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pos {
    /// Noun.
    Noun,
    /// Verb.
    Verb,
    /// Adjective (including satellites).
    Adj,
    /// Adverb.
    Adv,
}

impl Pos {
    const ALL: [Pos; 4] = [Pos::Noun, Pos::Verb, Pos::Adj, Pos::Adv];
    fn from_symbol(c: &str) -> Option<Pos> {
        match c {
            "n" => Some(Pos::Noun),
            "v" => Some(Pos::Verb),
            "a" | "s" => Some(Pos::Adj),
            "r" => Some(Pos::Adv),
            _ => None,
        }
    }
    fn file(self) -> &'static str {
        match self {
            Pos::Noun => "noun",
            Pos::Verb => "verb",
            Pos::Adj => "adj",
            Pos::Adv => "adv",
        }
    }
}

#[derive(Debug, Clone)]
struct IndexEntry {
    tagged: u32,
    synsets: Vec<u32>,
}

#[derive(Debug, Clone, Default)]
struct Synset {
    words: Vec<String>,
    hypernyms: Vec<u32>,
    /// Instance hypernyms (`@i`): a named entity's class ("California" -> "American state").
    instance_of: Vec<u32>,
    /// Antonym pointers: (source word number, target synset, target word number), 1-based words.
    antonyms: Vec<(usize, Pos, u32, usize)>,
    /// Similar-to pointers (`&`) between an adjective head and its satellites.
    similar: Vec<u32>,
}

/// The loaded database.
pub struct WordNet {
    index: HashMap<(Pos, String), IndexEntry>,
    synsets: HashMap<(Pos, u32), Synset>,
    exceptions: HashMap<(Pos, String), String>,
}

fn read(path: &Path) -> Result<String, WordNetError> {
    if !path.is_file() {
        return Err(WordNetError::Missing { path: path.to_path_buf() });
    }
    let bytes = std::fs::read(path).map_err(|source| WordNetError::Io { path: path.to_path_buf(), source })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

impl WordNet {
    /// Load the database in `dir`.
    pub fn load(dir: &Path) -> Result<WordNet, WordNetError> {
        let mut wn = WordNet { index: HashMap::new(), synsets: HashMap::new(), exceptions: HashMap::new() };
        for pos in Pos::ALL {
            let ipath = dir.join(format!("index.{}", pos.file()));
            for (i, line) in read(&ipath)?.lines().enumerate() {
                if line.starts_with(' ') || line.is_empty() {
                    continue;
                }
                let bad = || WordNetError::Malformed { path: ipath.clone(), line: i + 1 };
                let f: Vec<&str> = line.split(' ').filter(|s| !s.is_empty()).collect();
                if f.len() < 6 {
                    return Err(bad());
                }
                let synset_cnt: usize = f[2].parse().map_err(|_| bad())?;
                let p_cnt: usize = f[3].parse().map_err(|_| bad())?;
                let tag_at = 4 + p_cnt + 1;
                let tagged: u32 = f.get(tag_at).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
                let synsets: Vec<u32> = f
                    .get(tag_at + 1..tag_at + 1 + synset_cnt)
                    .ok_or_else(bad)?
                    .iter()
                    .map(|s| s.parse().map_err(|_| bad()))
                    .collect::<Result<_, _>>()?;
                wn.index.insert((pos, f[0].to_string()), IndexEntry { tagged, synsets });
            }
            let dpath = dir.join(format!("data.{}", pos.file()));
            for (i, line) in read(&dpath)?.lines().enumerate() {
                if line.starts_with(' ') || line.is_empty() {
                    continue;
                }
                let bad = || WordNetError::Malformed { path: dpath.clone(), line: i + 1 };
                let head = line.split('|').next().unwrap_or("");
                let f: Vec<&str> = head.split(' ').filter(|s| !s.is_empty()).collect();
                if f.len() < 4 {
                    return Err(bad());
                }
                let offset: u32 = f[0].parse().map_err(|_| bad())?;
                let w_cnt = usize::from_str_radix(f[3], 16).map_err(|_| bad())?;
                let mut words = Vec::with_capacity(w_cnt);
                for w in 0..w_cnt {
                    let raw = f.get(4 + 2 * w).ok_or_else(bad)?;
                    let word = raw.split('(').next().unwrap_or(raw).replace('_', " ");
                    words.push(word.to_lowercase());
                }
                let p_at = 4 + 2 * w_cnt;
                let p_cnt: usize = f.get(p_at).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
                let mut syn = Synset { words, ..Synset::default() };
                for p in 0..p_cnt {
                    let base = p_at + 1 + 4 * p;
                    let field = |k: usize| f.get(base + k).copied().ok_or_else(bad);
                    let (sym, target) = (field(0)?, field(1)?);
                    let target: u32 = target.parse().map_err(|_| bad())?;
                    match sym {
                        "@" => syn.hypernyms.push(target),
                        "@i" => syn.instance_of.push(target),
                        "&" => syn.similar.push(target),
                        "!" => {
                            let to = Pos::from_symbol(field(2)?).ok_or_else(bad)?;
                            let st = field(3)?;
                            let num = |h: &str| usize::from_str_radix(h, 16).map_err(|_| bad());
                            let (src, tgt) = (num(st.get(..2).unwrap_or(""))?, num(st.get(2..).unwrap_or(""))?);
                            syn.antonyms.push((src, to, target, tgt));
                        }
                        _ => {}
                    }
                }
                wn.synsets.insert((pos, offset), syn);
            }
            let epath = dir.join(format!("{}.exc", pos.file()));
            if epath.is_file() {
                for line in read(&epath)?.lines() {
                    let mut it = line.split(' ');
                    if let (Some(form), Some(lemma)) = (it.next(), it.next()) {
                        wn.exceptions.insert((pos, form.to_string()), lemma.to_string());
                    }
                }
            }
        }
        Ok(wn)
    }

    /// The lemma of `word` in `pos`, if WordNet knows it (exceptions, then detachment rules).
    pub fn lemma(&self, word: &str, pos: Pos) -> Option<String> {
        let w = word.to_lowercase();
        if self.index.contains_key(&(pos, w.clone())) {
            return Some(w);
        }
        if let Some(l) = self.exceptions.get(&(pos, w.clone()))
            && self.index.contains_key(&(pos, l.clone()))
        {
            return Some(l.clone());
        }
        let rules: &[(&str, &str)] = match pos {
            Pos::Noun => &[
                ("ses", "s"),
                ("xes", "x"),
                ("zes", "z"),
                ("ches", "ch"),
                ("shes", "sh"),
                ("men", "man"),
                ("ies", "y"),
                ("s", ""),
            ],
            Pos::Verb => {
                &[("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", ""), ("s", "")]
            }
            Pos::Adj => &[("er", ""), ("est", ""), ("er", "e"), ("est", "e")],
            Pos::Adv => &[],
        };
        for (suffix, repl) in rules {
            if let Some(stem) = w.strip_suffix(suffix) {
                let cand = format!("{stem}{repl}");
                if !stem.is_empty() && self.index.contains_key(&(pos, cand.clone())) {
                    return Some(cand);
                }
            }
        }
        None
    }

    /// The word's most likely part of speech (most tagged senses; nouns win ties) and its lemma.
    pub fn dominant_pos(&self, word: &str) -> Option<(Pos, String)> {
        let mut best: Option<(u32, Pos, String)> = None;
        for pos in Pos::ALL {
            if let Some(lemma) = self.lemma(word, pos) {
                let tagged = self.index.get(&(pos, lemma.clone())).map_or(0, |e| e.tagged);
                if best.as_ref().is_none_or(|(t, _, _)| tagged > *t) {
                    best = Some((tagged, pos, lemma));
                }
            }
        }
        best.map(|(_, p, l)| (p, l))
    }

    /// Lemmas sharing one of the first `senses` senses of `lemma` in `pos` (the word itself excluded).
    pub fn synonyms(&self, lemma: &str, pos: Pos, senses: usize) -> Vec<String> {
        let mut out = Vec::new();
        for off in self.senses(lemma, pos, senses) {
            for w in self.synsets.get(&(pos, off)).map(|s| s.words.as_slice()).unwrap_or_default() {
                if w != lemma && !out.contains(w) {
                    out.push(w.clone());
                }
            }
        }
        out
    }

    /// Lemmas of the hypernyms of the first `senses` senses of `lemma` in `pos`. With
    /// `instances`, a named entity's class counts as a hypernym ("California" -> "American state").
    pub fn hypernyms(&self, lemma: &str, pos: Pos, senses: usize, instances: bool) -> Vec<String> {
        let mut out = Vec::new();
        for off in self.senses(lemma, pos, senses) {
            let Some(s) = self.synsets.get(&(pos, off)) else { continue };
            let instance_of = if instances { s.instance_of.as_slice() } else { &[] };
            for h in s.hypernyms.iter().chain(instance_of) {
                for w in self.synsets.get(&(pos, *h)).map(|s| s.words.as_slice()).unwrap_or_default() {
                    if w != lemma && !out.contains(w) {
                        out.push(w.clone());
                    }
                }
            }
        }
        out
    }

    /// Whether `a` and `b` are antonyms in some sense of either (any part of speech): `b` is a lemma
    /// of a synset that a sense of `a` (or, for an adjective satellite, its head) points to with `!`,
    /// or of that synset's satellites; or the same from `b` to `a`.
    pub fn antonyms(&self, a: &str, b: &str) -> bool {
        let side = |x: &str, y: &str| {
            let y = y.replace(' ', "_");
            let ys: Vec<String> =
                Pos::ALL.iter().filter_map(|p| self.lemma(&y, *p)).map(|l| l.replace('_', " ")).collect();
            !ys.is_empty() && self.opposites(x).iter().any(|w| ys.contains(w))
        };
        side(a, b) || side(b, a)
    }

    /// The lemmas opposite `word` in any of its senses, with their clusters' satellites.
    fn opposites(&self, word: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut add = |s: &Synset| {
            for w in &s.words {
                if !out.contains(w) {
                    out.push(w.clone());
                }
            }
        };
        for pos in Pos::ALL {
            let Some(lemma) = self.lemma(word, pos) else { continue };
            for off in self.senses(&lemma, pos, usize::MAX) {
                let Some(s) = self.synsets.get(&(pos, off)) else { continue };
                let at = s.words.iter().position(|w| *w == lemma).map(|i| i + 1);
                // Direct antonyms of this word (or of the whole synset), then of the heads it is similar to.
                let direct = s.antonyms.iter().filter(|(src, ..)| *src == 0 || Some(*src) == at);
                let heads = s.similar.iter().filter_map(|h| self.synsets.get(&(pos, *h)));
                let indirect = heads.flat_map(|h| h.antonyms.iter());
                for (_, to, target, _) in direct.chain(indirect) {
                    let Some(opposite) = self.synsets.get(&(*to, *target)) else { continue };
                    add(opposite);
                    for sat in opposite.similar.iter().filter_map(|o| self.synsets.get(&(*to, *o))) {
                        add(sat);
                    }
                }
            }
        }
        out
    }

    fn senses(&self, lemma: &str, pos: Pos, senses: usize) -> Vec<u32> {
        self.index
            .get(&(pos, lemma.to_string()))
            .map(|e| e.synsets.iter().take(senses).copied().filter(|o| self.synsets.contains_key(&(pos, *o))).collect())
            .unwrap_or_default()
    }

    /// Number of lemmas indexed (all parts of speech).
    pub fn len(&self) -> usize {
        self.index.len()
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use std::path::Path;

    /// A tiny database in WordNet's own format.
    pub(crate) fn tiny(dir: &Path) {
        let w = |name: &str, body: &str| std::fs::write(dir.join(name), body).unwrap();
        w(
            "index.noun",
            "  1 license header\ncar n 1 2 @ ~ 1 1 02958343  \nautomobile n 1 2 @ ~ 1 0 02958343  \nmotor_vehicle n 1 1 @ 1 0 03791235  \nplanet n 1 1 @ 1 1 09394007  \ncalifornia n 1 1 @i 1 1 09000001  \namerican_state n 1 0 1 0 09000002  \n",
        );
        w(
            "data.noun",
            "  1 license header\n02958343 06 n 02 car 0 automobile 0 001 @ 03791235 n 0000 | a motor vehicle\n03791235 06 n 01 motor_vehicle 0 000 | a self-propelled vehicle\n09394007 17 n 01 planet 0 000 | a celestial body\n09000001 15 n 01 California 0 001 @i 09000002 n 0000 | a state\n09000002 15 n 01 American_state 0 000 | one of the states\n",
        );
        w("index.verb", "drive v 1 0 1 1 01930374  \n");
        w("data.verb", "01930374 38 v 01 drive 0 000 | operate a vehicle\n");
        w(
            "index.adj",
            "fast a 1 0 1 1 00976508  \nquick a 1 0 1 0 00976508  \nhigh a 1 2 ! & 1 1 01210854  \nlofty a 1 1 & 1 0 01211296  \nlow a 1 1 ! 1 1 01212469  \nlarge a 1 0 1 1 01382086  \nbig a 1 0 1 0 01382086  \n",
        );
        w(
            "data.adj",
            "00976508 00 a 02 fast 0 quick 0 000 | acting with speed\n01210854 00 a 01 high 0 002 ! 01212469 a 0101 & 01211296 a 0000 | greater than normal\n01211296 00 s 01 lofty 0 001 & 01210854 a 0000 | of high moral\n01212469 00 a 01 low 0 001 ! 01210854 a 0101 | less than normal\n01382086 00 a 02 large 0 big 0 000 | above average in size\n",
        );
        w("index.adv", "");
        w("data.adv", "");
        w("noun.exc", "geese goose\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synonyms_hypernyms_and_lemmas() {
        let d = tempfile::tempdir().unwrap();
        tests_support::tiny(d.path());
        let wn = WordNet::load(d.path()).unwrap();
        assert_eq!(wn.dominant_pos("cars"), Some((Pos::Noun, "car".into())));
        assert_eq!(wn.synonyms("car", Pos::Noun, 2), vec!["automobile".to_string()]);
        assert_eq!(wn.hypernyms("car", Pos::Noun, 2, false), vec!["motor vehicle".to_string()]);
        assert!(wn.hypernyms("california", Pos::Noun, 1, false).is_empty(), "no class for a named entity");
        assert_eq!(wn.hypernyms("california", Pos::Noun, 1, true), vec!["american state".to_string()]);
        assert_eq!(wn.synonyms("fast", Pos::Adj, 1), vec!["quick".to_string()]);
        assert_eq!(wn.lemma("driving", Pos::Verb), Some("drive".into()));
        assert!(wn.synonyms("planet", Pos::Noun, 1).is_empty());
    }

    #[test]
    fn antonyms_direct_through_satellites_and_both_ways() {
        let d = tempfile::tempdir().unwrap();
        tests_support::tiny(d.path());
        let wn = WordNet::load(d.path()).unwrap();
        assert!(wn.antonyms("high", "low") && wn.antonyms("Low", "high"));
        assert!(wn.antonyms("lofty", "low"), "a satellite's head's antonym");
        assert!(wn.antonyms("low", "lofty"), "the opposite cluster's satellite");
        assert!(!wn.antonyms("fast", "quick") && !wn.antonyms("high", "planet") && !wn.antonyms("high", "zzz"));
    }

    #[test]
    fn missing_folder_says_how_to_get_it() {
        let e = WordNet::load(Path::new("/nonexistent/wn")).err().unwrap().to_string();
        assert!(e.contains("fetch-models") && e.contains("wordnet-base"), "{e}");
    }
}
