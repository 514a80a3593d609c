//! The embedding teacher: a second (usually stronger) embedding model, an ONNX folder like
//! `model.dir`, scores a candidate by the cosine of query and passage. Cheap, so it is the usual
//! first screen of a cascade. Its embeddings are cached in the workspace under its own model id,
//! like the main model's: a rerun embeds nothing twice.

use super::{Ended, Item, Judge, JudgeError, Scored, StageConfig};
use crate::config::Config;
use crate::embed::Embedder;
use crate::hash::ContentHash;
use crate::workspace::Store;
use std::collections::HashMap;
use std::ops::ControlFlow;

/// See the module doc.
pub(crate) struct Teacher {
    id: String,
    name: String,
    embedder: Embedder,
    vectors: HashMap<ContentHash, Vec<f32>>,
}

impl Teacher {
    pub(crate) fn new(st: &StageConfig, cfg: &Config, name: &str) -> Result<Self, JudgeError> {
        let setup = |message: String| JudgeError::Setup { judge: name.to_string(), message };
        let dir = st.dir.clone().ok_or_else(|| setup("needs `dir`, an ONNX embedding model folder".into()))?;
        let mut tcfg = cfg.clone();
        tcfg.model.dir = Some(dir);
        tcfg.model.provider = crate::config::Provider::Local; // a teacher is a local folder
        if let Some(m) = st.max_length {
            tcfg.model.max_length = m;
        }
        let resolved = crate::models::resolve(&tcfg.model).map_err(|e| setup(e.to_string()))?;
        let embedder = Embedder::load(&resolved, &tcfg).map_err(|e| setup(e.to_string()))?;
        let id = format!("embedding:{}", embedder.model_id);
        Ok(Teacher { id, name: name.to_string(), embedder, vectors: HashMap::new() })
    }
}

impl Judge for Teacher {
    fn id(&self) -> &str {
        &self.id
    }
    fn paid(&self) -> bool {
        false
    }
    fn prepare(&mut self, items: &[Item<'_>], store: &mut Store) -> Result<(), JudgeError> {
        let mut texts: Vec<&str> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for it in items {
            for t in [it.query, it.passage] {
                let k = ContentHash::of(t);
                if !self.vectors.contains_key(&k) && seen.insert(k) {
                    texts.push(t);
                }
            }
        }
        let (vecs, _) = self
            .embedder
            .embed_cached(store, &texts, "", "teacher", true)
            .map_err(|e| JudgeError::Inference { judge: self.name.clone(), message: e.to_string() })?;
        for (i, t) in texts.iter().enumerate() {
            self.vectors.insert(ContentHash::of(t), vecs.row(i).to_vec());
        }
        Ok(())
    }
    fn score(
        &mut self,
        items: &[Item<'_>],
        sink: &mut dyn FnMut(usize, Result<Scored, String>) -> ControlFlow<()>,
    ) -> Result<Ended, JudgeError> {
        for (i, it) in items.iter().enumerate() {
            let (q, p) = (&self.vectors[&ContentHash::of(it.query)], &self.vectors[&ContentHash::of(it.passage)]);
            let s = Scored { score: crate::vectors::dot(q, p), label: None, detail: None };
            if sink(i, Ok(s)).is_break() {
                return Ok(Ended {
                    stopped_by: Some("stopped by the caller".into()),
                    not_sent: items.len() - i - 1,
                    ..Default::default()
                });
            }
        }
        Ok(Ended::default())
    }
}
