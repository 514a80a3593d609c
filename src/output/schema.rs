//! Names shared by the writers and the readers of an output folder: file names and the columns of
//! the provenance and variants files. `write` writes them, `inspect` reads them back, the report
//! names them: a rename happens here, once.

use crate::config::Format;

/// `report.json`: counts, per-rule removals, distributions, timings.
pub const REPORT_JSON: &str = "report.json";
/// `manifest.json`: version, config, checksums, inputs, report.
pub const MANIFEST_JSON: &str = "manifest.json";
/// `report.html`: the run report for people.
pub const REPORT_HTML: &str = "report.html";
/// `variants.parquet`: every generated candidate with its verdict.
pub const VARIANTS: &str = "variants.parquet";
/// `review.jsonl`: candidates close to or above their positive.
pub const REVIEW: &str = "review.jsonl";
/// `flag.jsonl`: the FlagEmbedding format.
pub const FLAG_JSONL: &str = "flag.jsonl";
/// `tevatron.jsonl`: the Tevatron training format.
pub const TEVATRON_JSONL: &str = "tevatron.jsonl";
/// `beir/`: the queries (given and generated) as a BEIR folder.
pub const BEIR_DIR: &str = "beir";
/// The qrels split written into [`BEIR_DIR`].
pub const BEIR_SPLIT: &str = "train";
/// The qrels with the judge's relabelled positives (`judge.action = "relabel"`).
pub const JUDGED_QRELS: &str = "qrels.judged.tsv";
/// The teacher-score column of triplet and n-tuple files (`output.scores = "judge"`).
pub const SCORES: &str = "scores";

/// `<format>.parquet` (the Parquet formats).
pub fn data_file(format: Format) -> String {
    format!("{}.parquet", format.name())
}

/// `<format>.provenance.parquet`, row-aligned with [`data_file`].
pub fn provenance_file(format: Format) -> String {
    format!("{}.provenance.parquet", format.name())
}

/// Columns of a provenance file.
pub mod provenance {
    /// The query's id.
    pub const QUERY_ID: &str = "query_id";
    /// `given` or the generating strategy.
    pub const QUERY_STRATEGY: &str = "query_strategy";
    /// The positive's document id.
    pub const POSITIVE_ID: &str = "positive_id";
    /// The positive's score.
    pub const POSITIVE_SCORE: &str = "positive_score";
    /// The negatives' document ids.
    pub const NEGATIVE_IDS: &str = "negative_ids";
    /// The negatives' scores.
    pub const NEGATIVE_SCORES: &str = "negative_scores";
    /// The negatives' candidate ranks.
    pub const NEGATIVE_RANKS: &str = "negative_ranks";
    /// With a judge: each negative's deciding judge score (null where no judge scored it).
    pub const NEGATIVE_JUDGE_SCORES: &str = "negative_judge_scores";
    /// With a judge: the row's positive is a candidate the judge relabelled.
    pub const RELABELLED: &str = "relabelled";
    /// With BM25 among `mine.retrievers`: `dense`, `bm25` or `dense+bm25` per negative.
    pub const NEGATIVE_RETRIEVERS: &str = "negative_retrievers";
    /// With BM25 among `mine.retrievers`: each negative's rank in the dense results (null: not found).
    pub const NEGATIVE_DENSE_RANKS: &str = "negative_dense_ranks";
    /// With BM25 among `mine.retrievers`: each negative's rank in BM25's results (null: not found).
    pub const NEGATIVE_BM25_RANKS: &str = "negative_bm25_ranks";
}

/// Columns of variants.parquet.
pub mod variants {
    /// The candidate's id (the query id of an accepted one).
    pub const VARIANT_ID: &str = "variant_id";
    /// `query` or `document`.
    pub const SOURCE_KIND: &str = "source_kind";
    /// The source's id.
    pub const SOURCE_ID: &str = "source_id";
    /// The strategy.
    pub const STRATEGY: &str = "strategy";
    /// The generated text.
    pub const TEXT: &str = "text";
    /// The source's text.
    pub const SOURCE_TEXT: &str = "source_text";
    /// What changed or how it was asked.
    pub const DETAIL: &str = "detail";
    /// LLM: the model.
    pub const MODEL: &str = "model";
    /// LLM: the template hash.
    pub const TEMPLATE_HASH: &str = "template_hash";
    /// Backtranslation: the pivot language.
    pub const PIVOT_LANGUAGE: &str = "pivot_language";
    /// Backtranslation: the pivot text.
    pub const PIVOT_TEXT: &str = "pivot_text";
    /// Synthetic queries: the answer span the LLM gave with the query.
    pub const ANSWER: &str = "answer";
    /// LLM: the raw answer when it could not be used.
    pub const RAW_ANSWER: &str = "raw_answer";
    /// The rejection reason.
    pub const REASON: &str = "reason";
    /// Cosine to the source.
    pub const FIDELITY: &str = "fidelity";
    /// Round-trip rank of the first positive.
    pub const ROUND_TRIP_RANK: &str = "round_trip_rank";
    /// Kept for mining.
    pub const ACCEPTED: &str = "accepted";
}
