//! Outputs: everything a run leaves in its output folder, and the readers of that folder.
//!
//! [`write`] writes the training files (Parquet formats with row-aligned provenance, FlagEmbedding
//! JSONL, variants, review) through [`crate::fsx`]; [`schema`] names the files and columns, shared by
//! the writer and by [`inspect`], which reads them back; [`report`] is report.json and the terminal
//! summary; [`manifest`] is manifest.json; [`html`] is report.html.

pub mod html;
pub mod inspect;
pub mod manifest;
pub mod report;
pub mod schema;
pub mod write;
