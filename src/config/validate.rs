//! [`Config::validate`]: every value checked once, each error naming the key, the file (or "command
//! line") and what would be valid. Nothing after validation re-checks a config value.

use super::*;

impl Config {
    /// What `tripletgen worker` needs checked: the workspace (a database) and `[queue]`; the inputs
    /// need not exist on a worker's machine.
    pub fn validate_worker(&self, origin: &str) -> Result<(), ConfigError> {
        let check = Checker { origin };
        self.validate_queue(&check)?;
        match self.workspace_location() {
            crate::workspace::Location::Postgres(_) => Ok(()),
            crate::workspace::Location::Dir(_) => Err(check.bad(
                "workspace",
                "is a folder; workers share a PostgreSQL workspace (workspace = \"postgres://user@host/db\" or --workspace)".into(),
            )),
        }
    }

    /// The workspace location and the `[queue]` values.
    fn validate_queue(&self, check: &Checker) -> Result<(), ConfigError> {
        if let Some(ws) = &self.workspace
            && let Err(why) = ws.check()
        {
            return Err(check.bad("workspace", why));
        }
        let q = &self.queue;
        for (key, n) in
            [("queue.embed_unit", q.embed_unit), ("queue.llm_unit", q.llm_unit), ("queue.judge_unit", q.judge_unit)]
        {
            if n == 0 {
                return Err(check.bad(key, "is 0; it must be at least 1".into()));
            }
        }
        if !(q.lease_seconds.is_finite() && q.lease_seconds >= 1.0) {
            return Err(check.bad("queue.lease_seconds", format!("is {}; it must be at least 1", q.lease_seconds)));
        }
        if q.max_attempts == 0 {
            return Err(check.bad("queue.max_attempts", "is 0; it must be at least 1".into()));
        }
        Ok(())
    }

    /// Check every value; `origin` names the file (or "command line") in errors. Also fills
    /// `input.corpus/queries/qrels` from `input.beir`.
    pub fn validate(&mut self, origin: &str) -> Result<(), ConfigError> {
        let check = Checker { origin };
        let bad = |key: &str, message: String| check.bad(key, message);
        if let Some(beir) = self.input.beir.clone() {
            if !beir.is_dir() {
                return Err(bad("input.beir", format!("is {}, which is not a folder", beir.display())));
            }
            self.input.corpus.get_or_insert_with(|| beir.join("corpus.jsonl"));
            self.input.queries.get_or_insert_with(|| beir.join("queries.jsonl"));
            let qrels = beir.join("qrels").join(format!("{}.tsv", self.input.split));
            if self.input.qrels.is_none() && self.input.pairs.is_none() {
                if !qrels.is_file() {
                    let splits = list_splits(&beir.join("qrels"));
                    return Err(bad(
                        "input.split",
                        format!(
                            "is {:?}, but {} does not exist (splits found: {})",
                            self.input.split,
                            qrels.display(),
                            if splits.is_empty() { "none".into() } else { splits.join(", ") }
                        ),
                    ));
                }
                self.input.qrels = Some(qrels);
            }
        }
        let Some(corpus) = &self.input.corpus else {
            return Err(bad("input.corpus", "is missing: set input.corpus or input.beir".into()));
        };
        if !corpus.exists() {
            return Err(bad("input.corpus", format!("is {}, which does not exist", corpus.display())));
        }
        let synthetic = self.generate.llm.strategies.contains(&LlmStrategy::Synthetic);
        match (&self.input.queries, &self.input.qrels, &self.input.pairs) {
            (_, _, Some(_)) => {}
            (Some(_), Some(_), None) => {}
            (None, None, None) if synthetic => {}
            _ => {
                return Err(bad(
                    "input",
                    "needs either `queries` and `qrels` (or `beir`), or `pairs`, or generate.llm.strategies with \"synthetic\" (corpus only)".into(),
                ));
            }
        }
        check.file("input.queries", &self.input.queries, "")?;
        check.file("input.qrels", &self.input.qrels, "")?;
        check.file("input.pairs", &self.input.pairs, "")?;
        self.validate_queue(&check)?;
        if self.input.max_record_bytes < 1024 {
            return Err(bad("input.max_record_bytes", "must be at least 1024".into()));
        }
        if let Some(dir) = &self.model.dir {
            let missing: Vec<&str> = MODEL_FILES.iter().copied().filter(|f| !dir.join(f).is_file()).collect();
            if !missing.is_empty() {
                return Err(bad(
                    "model.dir",
                    format!(
                        "is {}, which has no {}; a model folder needs {}",
                        dir.display(),
                        missing.join(", "),
                        MODEL_FILES.join(", ")
                    ),
                ));
            }
        }
        check.file("model.onnxruntime", &self.model.onnxruntime, " (run `tripletgen fetch-models`)")?;
        if let Some(http) = self.model.http() {
            let provider = self.model.provider.name();
            match (&self.model.base_url, self.model.endpoints.is_empty()) {
                (None, true) => {
                    return Err(bad(
                        "model.base_url",
                        format!(
                            "is not set: provider \"{provider}\" needs the server's URL, e.g. http://127.0.0.1:8080/v1 \
                             (or several in [[model.endpoints]])"
                        ),
                    ));
                }
                (Some(_), false) => {
                    return Err(bad(
                        "model.endpoints",
                        "and model.base_url are both set: list every server in model.endpoints".into(),
                    ));
                }
                _ => {}
            }
            if self.model.dir.is_some() {
                return Err(bad(
                    "model.dir",
                    format!("is set, but provider \"{provider}\" computes vectors on a server"),
                ));
            }
            if let Some(d) = self.model.dimensions {
                check.range("model.dimensions", d, 1, 65_536)?;
            }
            http.validate_as(origin, "model")?;
        } else if let Some(key) = [
            ("base_url", self.model.base_url.is_some()),
            ("endpoints", !self.model.endpoints.is_empty()),
            ("dimensions", self.model.dimensions.is_some()),
            ("api_key_env", self.model.api_key_env.is_some()),
        ]
        .iter()
        .find_map(|(k, set)| set.then_some(k))
        {
            return Err(bad(
                &format!("model.{key}"),
                "is for a remote embedding server: set model.provider = \"openai\" or \"tei\"".into(),
            ));
        }
        check.range("model.max_length", self.model.max_length, 8, 8192)?;
        check.range("embed.batch_size", self.embed.batch_size, 1, 4096)?;
        if self.embed.threads > 256 {
            return Err(bad("embed.threads", format!("is {}; valid: 0 (all cores) to 256", self.embed.threads)));
        }
        let ix = &self.index;
        if !(2..=256).contains(&ix.m) {
            return Err(bad("index.m", format!("is {}; HNSW allows 2 to 256", ix.m)));
        }
        check.range("index.ef_construction", ix.ef_construction, 1, 100_000)?;
        if ix.ef_search > 100_000 {
            return Err(bad("index.ef_search", format!("is {}; valid: 0 (auto) to 100000", ix.ef_search)));
        }
        if !(0.0..=1.0).contains(&ix.rebuild_share) {
            return Err(bad("index.rebuild_share", format!("is {}; valid: 0 (always rebuild) to 1", ix.rebuild_share)));
        }
        let mn = &self.mine;
        if mn.num_negatives == 0 {
            return Err(bad("mine.num_negatives", "is 0; it must be at least 1".into()));
        }
        if mn.range_max == 0 {
            return Err(bad("mine.range_max", "is 0; it must be at least 1".into()));
        }
        if mn.range_min >= mn.range_max {
            return Err(bad(
                "mine.range_min",
                format!("is {} but must be below mine.range_max ({})", mn.range_min, mn.range_max),
            ));
        }
        check.range("mine.range_max", mn.range_max, 1, 10_000)?;
        if mn.retrievers.is_empty() {
            return Err(bad("mine.retrievers", "is empty: name \"dense\", \"bm25\" or both".into()));
        }
        check.no_duplicates("mine.retrievers", &mn.retrievers, Retriever::name)?;
        for (key, v) in [
            ("mine.absolute_margin", mn.absolute_margin),
            ("mine.relative_margin", mn.relative_margin),
            ("mine.max_score", mn.max_score),
            ("mine.min_score", mn.min_score),
        ] {
            if let Some(v) = v
                && !v.is_finite()
            {
                return Err(bad(key, "must be a finite number".into()));
            }
        }
        if !(0.0..=2.0).contains(&mn.review_margin) {
            return Err(bad(
                "mine.review_margin",
                format!("is {}; valid: 0 to 2 (a cosine difference)", mn.review_margin),
            ));
        }
        if let Some(r) = mn.relative_margin
            && !(0.0..1.0).contains(&r)
        {
            return Err(bad("mine.relative_margin", format!("is {r}; valid: 0 <= x < 1")));
        }
        if let Some(a) = mn.absolute_margin
            && a < 0.0
        {
            return Err(bad("mine.absolute_margin", format!("is {a}; it must be >= 0")));
        }
        if let (Some(lo), Some(hi)) = (mn.min_score, mn.max_score)
            && lo > hi
        {
            return Err(bad(
                "mine.min_score",
                format!("is {lo} but mine.max_score is {hi}; min_score must not exceed max_score"),
            ));
        }
        let lx = &self.generate.lexical;
        check.no_duplicates("generate.lexical.strategies", &lx.strategies, |s| s.name())?;
        if !lx.strategies.is_empty() {
            check.range("generate.lexical.variants_per_query", lx.variants_per_query, 1, 100)?;
        }
        check.range("generate.lexical.replace_rate", lx.replace_rate, 0.0, 1.0)?;
        check.range("generate.lexical.insert_rate", lx.insert_rate, 0.0, 1.0)?;
        check.range("generate.lexical.delete_rate", lx.delete_rate, 0.0, 1.0)?;
        check.range("generate.lexical.swap_rate", lx.swap_rate, 0.0, 1.0)?;
        check.range("generate.lexical.neighbour_min_similarity", lx.neighbour_min_similarity, -1.0, 1.0)?;
        if lx.senses == 0 || lx.neighbour_k == 0 || lx.vocabulary_size == 0 {
            return Err(bad("generate.lexical", "senses, neighbour_k and vocabulary_size must be at least 1".into()));
        }
        check.exists("generate.lexical.wordnet_dir", &lx.wordnet_dir)?;
        check.exists("generate.lexical.stopwords", &lx.stopwords)?;
        check.exists("generate.lexical.word_vectors", &lx.word_vectors)?;
        if lx.strategies.contains(&LexicalStrategy::Contextual) {
            let Some(dir) = &lx.mlm_dir else {
                return Err(bad(
                    "generate.lexical.mlm_dir",
                    "is missing: the contextual strategy needs an ONNX masked language model folder (model.onnx, \
                     tokenizer.json; e.g. `optimum-cli export onnx --model distilbert-base-uncased --task fill-mask DIR`), \
                     or use the LLM form: generate.llm.strategies = [\"contextual\"]"
                        .into(),
                ));
            };
            for f in ["model.onnx", "tokenizer.json"] {
                if !dir.join(f).is_file() {
                    return Err(bad("generate.lexical.mlm_dir", format!("is {}, which has no {f}", dir.display())));
                }
            }
            if lx.contextual_k == 0 {
                return Err(bad("generate.lexical.contextual_k", "must be at least 1".into()));
            }
            if self.generate.llm.strategies.contains(&LlmStrategy::Contextual) {
                return Err(bad(
                    "generate.lexical.strategies",
                    "and generate.llm.strategies both name contextual: pick the masked LM or the LLM".into(),
                ));
            }
        }
        let g = &self.generate.llm;
        if !g.strategies.is_empty() {
            check.no_duplicates("generate.llm.strategies", &g.strategies, |s| s.name())?;
            match &self.llm {
                None => {
                    return Err(bad(
                        "generate.llm.strategies",
                        "needs an [llm] section (base_url, model, api_key_env…)".into(),
                    ));
                }
                Some(l) => l.validate(origin)?,
            }
            if !(1..=50).contains(&g.contextual_per_query) {
                return Err(bad("generate.llm.contextual_per_query", "must be between 1 and 50".into()));
            }
            if !(g.contextual_rate > 0.0 && g.contextual_rate <= 1.0) {
                return Err(bad(
                    "generate.llm.contextual_rate",
                    format!("is {}: valid is 0 < rate <= 1", g.contextual_rate),
                ));
            }
            if !(1..=50).contains(&g.queries_per_document) || !(1..=50).contains(&g.paraphrases_per_query) {
                return Err(bad(
                    "generate.llm.queries_per_document",
                    "and paraphrases_per_query must be between 1 and 50".into(),
                ));
            }
            if g.styles.is_empty() || g.styles.iter().any(|s| s.trim().is_empty()) {
                return Err(bad("generate.llm.styles", "must name at least one non-empty style".into()));
            }
            if g.strategies.contains(&LlmStrategy::Backtranslation)
                && (g.pivot_languages.is_empty() || g.pivot_languages.iter().any(|l| l.trim().is_empty()))
            {
                return Err(bad("generate.llm.pivot_languages", "must name at least one language".into()));
            }
            if g.max_document_chars < 100 {
                return Err(bad("generate.llm.max_document_chars", "must be at least 100".into()));
            }
            check.exists("generate.llm.few_shot", &g.few_shot)?;
            check.exists("generate.llm.prompts_dir", &g.prompts_dir)?;
        }
        let ex = &self.exclude_eval;
        for dir in &ex.dirs {
            for f in ["corpus.jsonl", "queries.jsonl", &format!("qrels/{}.tsv", ex.split)] {
                if !dir.join(f).is_file() {
                    let what = format!(
                        "names {}, which has no {f} (a BEIR folder with split {:?} is expected)",
                        dir.display(),
                        ex.split
                    );
                    return Err(bad("exclude_eval.dirs", what));
                }
            }
        }
        if !(ex.max_cosine > 0.0 && ex.max_cosine <= 1.0) {
            return Err(bad("exclude_eval.max_cosine", format!("is {}: valid is 0 < max_cosine <= 1", ex.max_cosine)));
        }
        let fl = &self.filter;
        if !(-1.0..=1.0).contains(&fl.fidelity_min)
            || !(-1.0..=1.0).contains(&fl.fidelity_max)
            || fl.fidelity_min > fl.fidelity_max
        {
            return Err(bad(
                "filter.fidelity_min",
                format!(
                    "{} / filter.fidelity_max {}: valid is -1 <= min <= max <= 1",
                    fl.fidelity_min, fl.fidelity_max
                ),
            ));
        }
        if !(-1.0..=1.0).contains(&fl.document_fidelity_min)
            || !(-1.0..=1.0).contains(&fl.document_fidelity_max)
            || fl.document_fidelity_min > fl.document_fidelity_max
        {
            return Err(bad(
                "filter.document_fidelity_min",
                format!(
                    "{} / filter.document_fidelity_max {}: valid is -1 <= min <= max <= 1",
                    fl.document_fidelity_min, fl.document_fidelity_max
                ),
            ));
        }
        check.range("filter.dedup_cosine", fl.dedup_cosine, -1.0, 1.0)?;
        if fl.min_words > fl.max_words {
            return Err(bad(
                "filter.min_words",
                format!("is {} but filter.max_words is {}", fl.min_words, fl.max_words),
            ));
        }
        if self.output.formats.is_empty() {
            return Err(bad("output.formats", "is empty; name at least one format".into()));
        }
        check.no_duplicates("output.formats", &self.output.formats, |f| f.name())?;
        if self.output.row_group_size == 0 {
            return Err(bad("output.row_group_size", "must be at least 1".into()));
        }
        match &self.judge {
            Some(j) => j.validate(origin, self.llm.is_some())?,
            None if self.output.scores == ScoreSource::Judge => {
                return Err(bad("output.scores", "is \"judge\" but no judge is configured ([judge] stages)".into()));
            }
            None => {}
        }
        if let Some(j) = &self.judge
            && self.output.scores == ScoreSource::Judge
            && j.stages.is_empty()
        {
            return Err(bad("output.scores", "is \"judge\" but judge.stages is empty".into()));
        }
        Ok(())
    }
}

/// The checks every section repeats, each with the message it has always had.
struct Checker<'a> {
    origin: &'a str,
}

impl Checker<'_> {
    fn bad(&self, key: &str, message: String) -> ConfigError {
        ConfigError::Invalid { origin: self.origin.to_string(), key: key.to_string(), message }
    }

    /// `lo <= v <= hi`, else "is v; valid: lo to hi".
    fn range<T: PartialOrd + std::fmt::Display>(&self, key: &str, v: T, lo: T, hi: T) -> Result<(), ConfigError> {
        if lo <= v && v <= hi { Ok(()) } else { Err(self.bad(key, format!("is {v}; valid: {lo} to {hi}"))) }
    }

    /// No item listed twice.
    fn no_duplicates<T: Copy + Eq + std::hash::Hash>(
        &self,
        key: &str,
        items: &[T],
        name: impl Fn(T) -> &'static str,
    ) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        match items.iter().find(|&&x| !seen.insert(x)) {
            Some(&x) => Err(self.bad(key, format!("lists {} twice", name(x)))),
            None => Ok(()),
        }
    }

    /// A path, when given, names a file (`hint` is appended to the message).
    fn file(&self, key: &str, p: &Option<PathBuf>, hint: &str) -> Result<(), ConfigError> {
        match p {
            Some(p) if !p.is_file() => Err(self.bad(key, format!("is {}, which is not a file{hint}", p.display()))),
            _ => Ok(()),
        }
    }

    /// A path, when given, exists.
    fn exists(&self, key: &str, p: &Option<PathBuf>) -> Result<(), ConfigError> {
        match p {
            Some(p) if !p.exists() => Err(self.bad(key, format!("is {}, which does not exist", p.display()))),
            _ => Ok(()),
        }
    }
}

fn list_splits(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".tsv").map(String::from)))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
