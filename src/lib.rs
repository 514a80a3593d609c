//! tripletgen: turn a document corpus into hard-negative training data for embedding and reranker
//! fine-tuning.
//!
//! The pipeline, one module per stage: ingest → generate → embed (cached in the [`workspace`]) →
//! index → filter → mine → [`output`], wired by [`pipeline`] from a validated [`config`]. See
//! ARCHITECTURE.md for the tour (its map is the folder tree).
//!
//! # The library's API
//!
//! - Entry points: [`cli::main`] (the binary), [`pipeline::run`] / [`pipeline::run_with`] (a whole
//!   run from a [`config::Config`], validated with [`config::Config::validate`]) and
//!   [`pipeline::dry_run`].
//! - What a run reads and leaves: [`config`] (the TOML schema), [`ingest`] (the record readers and
//!   [`ingest::Dataset`]), [`output`] (the report types and [`output::schema`], the file and column
//!   names of an output folder), [`workspace::Store`] (the cache a run keeps).
//! - The LLM client ([`llm::Client`]) and the servers the benchmarks and tests run it against
//!   ([`bench::servers`]).
//! - The judge stage ([`judge`]): its config, the labelled-case evaluation, the ONNX cross-encoder;
//!   [`hash::ContentHash`], the key of everything the workspace stores.
//!
//! Everything else (the stages' internals, vectors, atomic files, hashing, models, killpoints,
//! progress bars) is `pub(crate)`: the types a report exposes are public, the modules are not.
#![warn(missing_docs)]

pub mod bench;
pub mod cli;
pub mod config;
pub(crate) mod contamination;
pub(crate) mod embed;
pub(crate) mod eval;
pub(crate) mod filter;
pub(crate) mod fsx;
pub(crate) mod generate;
pub mod hash;
pub(crate) mod index;
pub mod ingest;
pub mod judge;
pub(crate) mod killpoint;
pub mod llm;
pub(crate) mod mine;
pub(crate) mod models;
pub mod output;
pub mod pipeline;
pub(crate) mod progress;
pub(crate) mod vectors;
pub mod worker;
pub mod workspace;
