//! tripletgen: turn a document corpus into hard-negative training data for embedding and reranker
//! fine-tuning.
//!
//! The pipeline, one module per stage: [`ingest`] → [`generate`] → [`embed`] (cached in the [`workspace`]) →
//! [`index`] → [`filter`] → [`mine`] → [`write`], wired by [`pipeline`] from a validated [`config`]. See
//! ARCHITECTURE.md for the tour.
#![warn(missing_docs)]

pub mod bench;
pub mod bench_judge;
pub mod bench_lexical;
pub mod bench_llm;
pub mod bench_refresh;
pub mod cli;
pub mod config;
pub mod embed;
pub mod eval;
pub mod filter;
pub mod generate;
pub mod hash;
pub mod html_report;
pub mod index;
pub mod ingest;
pub mod judge;
pub mod inspect;
pub mod killpoint;
pub mod llm;
pub mod mine;
pub mod models;
pub mod pipeline;
pub mod progress;
pub mod report;
pub mod workspace;
pub mod write;
