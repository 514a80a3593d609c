//! manifest.json: what was run, with what (tool version, the full resolved config, model and runtime
//! checksums), on what (input files with SHA-256) and producing what (the run report).

use crate::config::Config;
use crate::models;
use crate::output::report::RunReport;
use crate::output::write::WriteError;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// What was run, with what, on what, producing what (written as `manifest.json`).
#[derive(Debug, Serialize)]
pub struct Manifest<'a> {
    /// Tool name.
    pub tool: &'static str,
    /// Tool version.
    pub version: &'static str,
    /// The full, resolved configuration.
    pub config: &'a Config,
    /// The embedding model.
    pub model: ModelInfo,
    /// Input files and their checksums.
    pub inputs: Vec<InputFile>,
    /// Counts and timings (the full report is in report.json).
    pub report: &'a RunReport,
}

/// The model used.
#[derive(Debug, Serialize)]
pub struct ModelInfo {
    /// Folder or hub name.
    pub source: String,
    /// ONNX Runtime library.
    pub onnxruntime: String,
    /// SHA-256 of the model files (and of the runtime library).
    pub checksums: BTreeMap<String, String>,
}

/// An input file.
#[derive(Debug, Serialize)]
pub struct InputFile {
    /// Which input.
    pub role: &'static str,
    /// Path.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 (absent for folders).
    pub sha256: Option<String>,
}

impl<'a> Manifest<'a> {
    /// The manifest of a run; `model_checksums` are the SHA-256 sums the embedder computed when it
    /// loaded the model (so the model files are hashed once per run).
    pub(crate) fn new(
        cfg: &'a Config,
        resolved: &models::Resolved,
        model_checksums: &BTreeMap<String, String>,
        report: &'a RunReport,
    ) -> Result<Manifest<'a>, WriteError> {
        let source = match &resolved.model {
            models::ModelSource::Local { dir, .. } => dir.display().to_string(),
            models::ModelSource::Hub { name, .. } => name.clone(),
            models::ModelSource::Remote => {
                let m = &cfg.model;
                format!("{}:{}@{}", m.provider.name(), m.name, m.base_url.as_deref().unwrap_or_default())
            }
        };
        let mut checksums = model_checksums.clone();
        if !resolved.runtime.as_os_str().is_empty() {
            checksums.insert("onnxruntime".into(), sha(&resolved.runtime)?);
        }
        let mut inputs = Vec::new();
        for (role, p) in [
            ("corpus", &cfg.input.corpus),
            ("queries", &cfg.input.queries),
            ("qrels", &cfg.input.qrels),
            ("pairs", &cfg.input.pairs),
        ] {
            let Some(p) = p else { continue };
            if role == "queries" && cfg.input.pairs.is_some() {
                continue;
            }
            let meta = std::fs::metadata(p).map_err(|source| WriteError::Io { path: p.clone(), source })?;
            inputs.push(InputFile {
                role,
                path: p.display().to_string(),
                bytes: meta.len(),
                sha256: if meta.is_file() { Some(sha(p)?) } else { None },
            });
        }
        Ok(Manifest {
            tool: "tripletgen",
            version: env!("CARGO_PKG_VERSION"),
            config: cfg,
            model: ModelInfo { source, onnxruntime: resolved.runtime.display().to_string(), checksums },
            inputs,
            report,
        })
    }
}

fn sha(p: &Path) -> Result<String, WriteError> {
    crate::hash::sha256_file(p).map_err(|source| WriteError::Io { path: p.to_path_buf(), source })
}
