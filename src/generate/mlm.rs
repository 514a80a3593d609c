//! Masked-language-model word substitution, the `contextual` lexical strategy (the "BERT" method of
//! text augmentation): each content word of a query is masked in turn and an ONNX masked LM
//! (BERT/DistilBERT/RoBERTa `*ForMaskedLM`, exported with `model.onnx` + `tokenizer.json`) proposes
//! the words that fit the gap. One forward pass per query: its masked copies go in one batch.
//!
//! Only whole-word vocabulary entries are proposed (WordPiece: not `##…`; byte-level BPE: `Ġ…`),
//! alphabetic, longer than one letter, never the masked word itself, an inflection of it, or a stop
//! word; the rest (antonyms, fidelity) is checked like every lexical candidate.

use super::GenerateError;
use crate::hash::ContentHash;
use std::collections::HashSet;
use std::path::Path;

/// A loaded masked language model.
pub struct MaskedLm {
    session: ort::session::Session,
    tokenizer: tokenizers::Tokenizer,
    mask: String,
    mask_id: u32,
    token_types: bool,
    /// Token id -> the whole word it spells (None: a piece, a special token, punctuation…).
    words: Vec<Option<String>>,
    /// Names the model and tokenizer (by content).
    pub id: String,
}

fn bad(dir: &Path, message: impl std::fmt::Display) -> GenerateError {
    GenerateError::MaskedLm { dir: dir.to_path_buf(), message: message.to_string() }
}

impl MaskedLm {
    /// Load `dir/model.onnx` (inputs `input_ids`, `attention_mask`, optionally `token_type_ids`;
    /// output `logits` [batch, sequence, vocabulary]) and `dir/tokenizer.json` on the ONNX Runtime
    /// library `runtime`.
    pub fn load(dir: &Path, runtime: &Path, threads: usize) -> Result<MaskedLm, GenerateError> {
        let read = |f: &str| std::fs::read(dir.join(f)).map_err(|e| bad(dir, format!("cannot read {f}: {e}")));
        let onnx = read("model.onnx")?;
        let tok_bytes = read("tokenizer.json")?;
        let mut tokenizer = tokenizers::Tokenizer::from_bytes(&tok_bytes).map_err(|e| bad(dir, e))?;
        tokenizer.with_padding(Some(tokenizers::PaddingParams::default()));
        tokenizer.with_truncation(None).map_err(|e| bad(dir, e))?;
        let (mask, mask_id) = ["[MASK]", "<mask>"]
            .iter()
            .find_map(|m| tokenizer.token_to_id(m).map(|id| (m.to_string(), id)))
            .ok_or_else(|| bad(dir, "tokenizer.json has no [MASK] or <mask> token: not a masked language model"))?;
        let vocab = tokenizer.get_vocab(true);
        let bpe = vocab.keys().filter(|t| t.starts_with('Ġ')).count() > vocab.len() / 10;
        let mut words = vec![None; vocab.values().map(|&i| i as usize + 1).max().unwrap_or(0)];
        for (t, &i) in &vocab {
            let w = if bpe { t.strip_prefix('Ġ') } else { (!t.starts_with("##")).then_some(t.as_str()) };
            if let Some(w) = w.filter(|w| w.chars().count() > 1 && w.chars().all(char::is_alphabetic)) {
                words[i as usize] = Some(w.to_lowercase());
            }
        }
        let env = crate::embed::ort_environment(runtime).map_err(|e| bad(dir, e))?;
        let mut builder = ort::session::Session::builder(&env).map_err(|e| bad(dir, e))?;
        if threads > 0 {
            builder = builder.with_intra_threads(threads).map_err(|e| bad(dir, e))?;
        }
        let session = builder.commit_from_memory(&onnx).map_err(|e| bad(dir, e))?;
        let token_types = session.inputs().iter().any(|i| i.name() == "token_type_ids");
        let id = format!(
            "mlm:{}:tok:{}",
            ContentHash::of_parts(&[&onnx]).short(),
            ContentHash::of_parts(&[&tok_bytes]).short()
        );
        Ok(MaskedLm { session, tokenizer, mask, mask_id, token_types, words, id })
    }

    /// The token that stands for the masked word in a text (`[MASK]` or `<mask>`).
    pub fn mask_token(&self) -> &str {
        &self.mask
    }

    /// For each text (each with one mask token), the `k` best whole words for the gap with their
    /// logits, best first (ties by token id). One forward pass for all texts.
    pub fn fill(&mut self, texts: &[String], k: usize) -> Result<Vec<Vec<(String, f32)>>, String> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let enc = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| e.to_string())?;
        let (rows, seq) = (enc.len(), enc[0].get_ids().len());
        let flat = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Vec<i64> {
            enc.iter().flat_map(|e| f(e).iter().map(|&x| x as i64)).collect()
        };
        let shape = vec![rows as i64, seq as i64];
        let tensor = |v: Vec<i64>| ort::value::Tensor::from_array((shape.clone(), v)).map_err(|e| e.to_string());
        let mut inputs = ort::inputs![
            "input_ids" => tensor(flat(&|e| e.get_ids()))?,
            "attention_mask" => tensor(flat(&|e| e.get_attention_mask()))?,
        ];
        if self.token_types {
            inputs.push(("token_type_ids".into(), tensor(flat(&|e| e.get_type_ids()))?.into()));
        }
        let out = self.session.run(inputs).map_err(|e| e.to_string())?;
        let logits = out.get("logits").ok_or("the model has no output named logits")?;
        let (dims, data) = logits.try_extract_tensor::<f32>().map_err(|e| e.to_string())?;
        let vocab = *dims.last().ok_or("logits without dimensions")? as usize;
        if dims.len() != 3 || dims[0] as usize != rows || dims[1] as usize != seq {
            return Err(format!("logits have shape {dims:?}, expected [{rows}, {seq}, vocabulary]"));
        }
        let mut result = Vec::with_capacity(rows);
        for (r, e) in enc.iter().enumerate() {
            let Some(pos) = e.get_ids().iter().position(|&t| t == self.mask_id) else {
                result.push(Vec::new());
                continue;
            };
            let row = &data[(r * seq + pos) * vocab..(r * seq + pos + 1) * vocab];
            let mut best: Vec<(f32, usize)> = row
                .iter()
                .enumerate()
                .filter(|(t, _)| self.words.get(*t).is_some_and(Option::is_some))
                .map(|(t, &l)| (l, t))
                .collect();
            best.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let mut seen: HashSet<&str> = HashSet::new();
            let top: Vec<(String, f32)> = best
                .into_iter()
                .filter_map(|(l, t)| {
                    let w = self.words[t].as_deref()?;
                    seen.insert(w).then(|| (w.to_string(), l))
                })
                .take(k)
                .collect();
            result.push(top);
        }
        Ok(result)
    }
}
