//! Gold answers: the DPR rule. A passage that contains a normalised gold answer of its query is
//! probably not a negative of that query.
//!
//! Normalisation is SQuAD's (`normalize_answer` of the official evaluation script): lower case,
//! punctuation removed, the articles "a", "an", "the" removed, whitespace collapsed. A match must
//! start and end on word boundaries of the normalised passage, so "1990" does not match "19901".

/// SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces.
pub fn normalize(text: &str) -> String {
    let lower: String = text
        .chars()
        .map(|c| if c.is_alphanumeric() || c.is_whitespace() { c } else { ' ' })
        .collect::<String>()
        .to_lowercase();
    lower.split_whitespace().filter(|w| !matches!(*w, "a" | "an" | "the")).collect::<Vec<_>>().join(" ")
}

/// Normalised gold answers of one query, ready for matching (empty answers dropped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answers(Vec<String>);

impl Answers {
    /// Normalise `answers`, dropping those that normalise to nothing.
    pub fn new<S: AsRef<str>>(answers: &[S]) -> Self {
        let mut v: Vec<String> = answers.iter().map(|a| normalize(a.as_ref())).filter(|a| !a.is_empty()).collect();
        v.sort();
        v.dedup();
        Answers(v)
    }

    /// No usable answer.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first answer found in `passage` (normalised, on word boundaries).
    pub fn found_in(&self, passage: &str) -> Option<&str> {
        if self.0.is_empty() {
            return None;
        }
        let hay = format!(" {} ", normalize(passage));
        self.0.iter().find(|a| hay.contains(&format!(" {a} "))).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_is_squads() {
        assert_eq!(normalize("The  Eiffel Tower!"), "eiffel tower");
        assert_eq!(normalize("an apple, a day"), "apple day");
        assert_eq!(normalize("U.S."), "u s");
    }

    #[test]
    fn answers_match_on_word_boundaries_only() {
        let a = Answers::new(&["1990", "the Beatles", "  "]);
        assert_eq!(a.found_in("In 1990, the band split."), Some("1990"));
        assert_eq!(a.found_in("Founded in 19901."), None);
        assert_eq!(a.found_in("A tribute to THE BEATLES."), Some("beatles"));
        assert_eq!(a.found_in("Beatlesque music"), None);
        assert!(Answers::new(&["", "the"]).is_empty());
    }
}
