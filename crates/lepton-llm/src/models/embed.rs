//! Sentence embeddings from a BERT encoder, as sentence-transformers computes them: tokenize,
//! encode, pool the token states (mean over real tokens by default, from `1_Pooling/config.json`),
//! then L2-normalise when `modules.json` lists a `Normalize` module.
//!
//! Inputs are sorted by length and cut into batches of `batch_size`, each padded only to its own
//! longest input, so short texts do not pay for long ones.

use std::path::Path;

use candle_core::{DType, Tensor};
use rayon::prelude::*;
use serde::Deserialize;

use crate::bert::Bert;
use crate::error::{Error, Result};
use crate::hf::HfFolder;
use crate::tokenizer::Tokenizer;

/// How token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over the real (unpadded) tokens.
    Mean,
    /// The first token (`[CLS]`).
    Cls,
    /// Element-wise maximum over the real tokens.
    Max,
}

/// `1_Pooling/config.json` of a sentence-transformers folder.
#[derive(Debug, Deserialize)]
struct PoolingFile {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
}

#[derive(Debug, Deserialize)]
struct Module {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, Deserialize)]
struct SentenceBertFile {
    max_seq_length: Option<usize>,
}

/// Embeddings of a batch of texts.
#[derive(Debug, Clone)]
pub struct Embeddings {
    /// One vector per input, in input order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens of each input (after truncation, with special tokens).
    pub tokens: Vec<usize>,
}

/// A sentence embedding model.
pub struct Embedder {
    pub tokenizer: Tokenizer,
    pub model: Bert,
    pub pooling: Pooling,
    pub normalize: bool,
    /// Longest input in tokens (special tokens included).
    pub max_tokens: usize,
    /// Inputs per forward pass. Default 32.
    pub batch_size: usize,
    /// Cut over-long inputs to `max_tokens` (true, sentence-transformers' behaviour) or refuse
    /// them with [`Error::InputTooLong`] (false). Default true.
    pub truncate: bool,
}

impl Embedder {
    /// Load a sentence-transformers (or plain BERT) folder. Pooling comes from
    /// `1_Pooling/config.json` (default mean), normalisation from `modules.json` (default on),
    /// the input limit from `sentence_bert_config.json`'s `max_seq_length` (default the model's
    /// position count).
    pub fn load(dir: &Path) -> Result<Self> {
        let folder = HfFolder::open(dir)?;
        let model = Bert::load(&folder)?;
        let tokenizer = Tokenizer::from_file(&folder.file("tokenizer.json")?)?;
        let pooling = match folder.optional_file("1_Pooling/config.json") {
            None => Pooling::Mean,
            Some(p) => {
                let f: PoolingFile = crate::hf::parse_json_file(&p)?;
                match (f.pooling_mode_mean_tokens, f.pooling_mode_cls_token, f.pooling_mode_max_tokens) {
                    (true, false, false) => Pooling::Mean,
                    (false, true, false) => Pooling::Cls,
                    (false, false, true) => Pooling::Max,
                    _ => {
                        return Err(Error::Config {
                            path: p,
                            message: "exactly one of pooling_mode_mean_tokens, pooling_mode_cls_token, pooling_mode_max_tokens must be true".into(),
                        })
                    }
                }
            }
        };
        let normalize = match folder.optional_file("modules.json") {
            None => true,
            Some(p) => {
                let m: Vec<Module> = crate::hf::parse_json_file(&p)?;
                m.iter().any(|m| m.kind.ends_with("Normalize"))
            }
        };
        let positions = model.config.max_position_embeddings;
        let max_tokens = match folder.optional_file("sentence_bert_config.json") {
            None => positions,
            Some(p) => {
                let s: SentenceBertFile = crate::hf::parse_json_file(&p)?;
                s.max_seq_length.unwrap_or(positions).min(positions)
            }
        };
        Ok(Embedder {
            tokenizer,
            model,
            pooling,
            normalize,
            max_tokens,
            batch_size: 32,
            truncate: true,
        })
    }

    /// Length of the vectors.
    pub fn dim(&self) -> usize {
        self.model.config.hidden_size
    }

    /// Embed `texts`.
    pub fn embed(&self, texts: &[&str]) -> Result<Embeddings> {
        let encs = self.tokenizer.encode_batch(texts, Some(self.max_tokens))?;
        if !self.truncate {
            if let Some((index, e)) = encs.iter().enumerate().find(|(_, e)| e.truncated()) {
                return Err(Error::InputTooLong {
                    index,
                    tokens: e.full_len,
                    max: self.max_tokens,
                });
            }
        }
        let mut order: Vec<usize> = (0..encs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encs[i].ids.len()));
        // Batches run concurrently, one per thread, each with the kernels' own parallelism left
        // to rayon's work stealing: per-op thread hand-offs on small matrices cost more than they
        // gain (measured in bench/RESULTS.md, issue 5).
        let chunks: Vec<&[usize]> = order.chunks(self.batch_size.max(1)).collect();
        let pooled: Vec<Vec<Vec<f32>>> = chunks
            .par_iter()
            .map(|chunk| {
                let batch: Vec<&crate::tokenizer::Encoded> =
                    chunk.iter().map(|&i| &encs[i]).collect();
                self.forward_batch(&batch)
            })
            .collect::<Result<_>>()?;
        let mut vectors = vec![Vec::new(); encs.len()];
        for (chunk, pooled) in chunks.iter().zip(pooled) {
            for (&i, v) in chunk.iter().zip(pooled) {
                vectors[i] = v;
            }
        }
        Ok(Embeddings {
            vectors,
            tokens: encs.iter().map(|e| e.ids.len()).collect(),
        })
    }

    fn forward_batch(&self, batch: &[&crate::tokenizer::Encoded]) -> Result<Vec<Vec<f32>>> {
        let b = batch.len();
        let t = batch.iter().map(|e| e.ids.len()).max().unwrap_or(0).max(1);
        let pad = self.model.config.pad_token_id as u32;
        let (mut ids, mut types, mut mask) =
            (vec![pad; b * t], vec![0u32; b * t], vec![0u32; b * t]);
        for (r, e) in batch.iter().enumerate() {
            let n = e.ids.len();
            ids[r * t..r * t + n].copy_from_slice(&e.ids);
            types[r * t..r * t + n].copy_from_slice(&e.type_ids);
            mask[r * t..r * t + n].fill(1);
        }
        let dev = self.model.device();
        let c = |op: &str| Error::candle(format!("embedding: {op}"));
        let ids = Tensor::from_vec(ids, (b, t), dev).map_err(c("ids"))?;
        let types = Tensor::from_vec(types, (b, t), dev).map_err(c("type ids"))?;
        let mask = Tensor::from_vec(mask, (b, t), dev).map_err(c("mask"))?;
        let hidden = self.model.forward(&ids, &types, &mask)?;
        let pooled = self.pool(&hidden, &mask).map_err(c("pooling"))?;
        let pooled = if self.normalize {
            let norm = pooled
                .sqr()
                .and_then(|x| x.sum_keepdim(1))
                .and_then(|x| x.sqrt())
                .and_then(|x| x.clamp(1e-12, f64::INFINITY))
                .map_err(c("norm"))?;
            pooled.broadcast_div(&norm).map_err(c("normalise"))?
        } else {
            pooled
        };
        pooled.to_vec2::<f32>().map_err(c("copy out"))
    }

    fn pool(&self, hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        match self.pooling {
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1),
            Pooling::Mean => {
                let sum = hidden.broadcast_mul(&m)?.sum(1)?;
                let count = m.sum(1)?.clamp(1e-9, f64::INFINITY)?;
                sum.broadcast_div(&count)
            }
            Pooling::Max => {
                let neg = ((m - 1.0)? * 1e9)?;
                hidden.broadcast_add(&neg)?.max(1)
            }
        }
    }
}

/// Cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(f32::MIN_POSITIVE)
}
