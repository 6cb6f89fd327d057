//! `embedding`: a lookup table from token ids to vectors, `y[..., :] = W[x[...], :]`.
//!
//! # Shapes
//! `[...]` of token ids (integers stored in any dtype) -> `[..., embedding-dim]`;
//! `weight: [num-embeddings, embedding-dim]` (PyTorch's `nn.Embedding`). The gradient flows to
//! `weight` (candle's `index_select` backward); ids have none. An id that is not an integer in
//! `[0, num-embeddings)` is an error naming it, never a wrapped index.
//!
//! A top-level embedding's weight can be shared by a later `linear` with `tie = <its index>`
//! (the output layer of a language model, as nanoGPT ties `wte` and `lm_head`).

use candle_core::{DType, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use super::{BuildCtx, Ctx, Layer, LayerConfig, ShapeCtx, Values};

/// The `embedding` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EmbeddingConfig {
    /// The number of token ids (the vocabulary size, at least 1; ids are `0..num-embeddings`).
    pub num_embeddings: usize,
    /// The size of each vector (at least 1).
    pub embedding_dim: usize,
    /// The initial vectors are drawn from N(0, init-std²). Default 1 (PyTorch's `nn.Embedding`);
    /// nanoGPT uses 0.02 (a table tied to the output layer wants small logits at the start).
    #[serde(default = "unit", skip_serializing_if = "is_unit")]
    pub init_std: f64,
}

fn unit() -> f64 {
    1.0
}

fn is_unit(x: &f64) -> bool {
    *x == 1.0
}

impl LayerConfig for EmbeddingConfig {
    fn kind(&self) -> &'static str {
        "embedding"
    }

    fn output_shape(&self, x: &[usize], ctx: &mut ShapeCtx) -> crate::Result<Vec<usize>> {
        if self.num_embeddings == 0 || self.embedding_dim == 0 {
            return Err(ctx.error("num-embeddings and embedding-dim must be at least 1"));
        }
        if !(self.init_std.is_finite() && self.init_std > 0.0) {
            return Err(ctx.error(format!(
                "init-std = {} must be a finite number > 0",
                self.init_std
            )));
        }
        if u32::try_from(self.num_embeddings).is_err() {
            return Err(ctx.size_error(
                "num-embeddings",
                format!("{} ids do not fit u32 indices", self.num_embeddings),
            ));
        }
        let mut y = x.to_vec();
        y.push(self.embedding_dim);
        Ok(y)
    }

    fn values(&self, _: &[usize], ctx: &ShapeCtx) -> crate::Result<Values> {
        Ok(Values {
            trainable: ctx.count("num-embeddings", &[self.num_embeddings, self.embedding_dim])?,
            buffers: 0,
        })
    }

    fn size_field(&self) -> Option<&'static str> {
        Some(if self.embedding_dim > self.num_embeddings {
            "embedding-dim"
        } else {
            "num-embeddings"
        })
    }

    fn shared_table(&self, _: &[usize]) -> Option<[usize; 2]> {
        Some([self.num_embeddings, self.embedding_dim])
    }

    fn build(&self, _: &[usize], vb: VarBuilder, ctx: &mut BuildCtx) -> Result<Box<dyn Layer>> {
        let weight = vb.get_with_hints(
            (self.num_embeddings, self.embedding_dim),
            "weight",
            Init::Randn {
                mean: 0.0,
                stdev: self.init_std,
            },
        )?;
        ctx.share(&weight);
        Ok(Box::new(Embedding { weight }))
    }
}

/// A built `embedding`.
#[derive(Debug, Clone)]
pub struct Embedding {
    weight: Tensor,
}

impl Layer for Embedding {
    fn forward(&self, x: &Tensor, _: &Ctx) -> Result<Tensor> {
        let dim = self.weight.dim(1)?;
        let ids = token_ids(x, self.weight.dim(0)?)?;
        let mut dims = x.dims().to_vec();
        dims.push(dim);
        self.weight.index_select(&ids, 0)?.reshape(dims)
    }

    fn lookup_table(&self) -> Option<&Tensor> {
        Some(&self.weight)
    }
}

/// The ids in `x` (any shape, any dtype) as flat `u32`s, each checked to be an integer in
/// `[0, vocab)`: the error names the first that is not.
pub(crate) fn token_ids(x: &Tensor, vocab: usize) -> Result<Tensor> {
    let ids = x.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let ids = ids
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if v.fract() == 0.0 && (0.0..vocab as f64).contains(&v) {
                Ok(v as u32)
            } else {
                candle_core::bail!(
                    "embedding: token id {v} at flat position {i} of input {:?} is not an integer in [0, num-embeddings = {vocab})",
                    x.dims()
                )
            }
        })
        .collect::<Result<Vec<u32>>>()?;
    let n = ids.len();
    Tensor::from_vec(ids, n, x.device())
}

#[cfg(test)]
mod tests {
    use candle_core::Device;
    use candle_nn::VarMap;

    use super::*;

    fn layer() -> Box<dyn Layer> {
        let mut varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let config = EmbeddingConfig {
            num_embeddings: 3,
            embedding_dim: 2,
            init_std: 1.0,
        };
        let layer = config.build(&[4], vb, &mut BuildCtx::default()).unwrap();
        varmap
            .set_one(
                "weight",
                Tensor::new(&[[0f32, 1.0], [10.0, 11.0], [20.0, 21.0]], &Device::Cpu).unwrap(),
            )
            .unwrap();
        layer
    }

    #[test]
    fn looks_up_rows_by_id() {
        let x = Tensor::new(&[[2f32, 0.0, 1.0, 2.0]], &Device::Cpu).unwrap();
        let y = layer().forward(&x, &Ctx::EVAL).unwrap();
        assert_eq!(y.dims(), [1, 4, 2]);
        assert_eq!(
            y.to_vec3::<f32>().unwrap(),
            [[[20.0, 21.0], [0.0, 1.0], [10.0, 11.0], [20.0, 21.0]]]
        );
    }

    #[test]
    fn out_of_range_and_fractional_ids_are_errors() {
        for bad in [3f32, -1.0, 0.5, f32::NAN] {
            let x = Tensor::new(&[[0f32, bad]], &Device::Cpu).unwrap();
            let e = layer().forward(&x, &Ctx::EVAL).unwrap_err().to_string();
            assert!(
                e.contains("token id") && e.contains("num-embeddings = 3"),
                "{e}"
            );
        }
    }
}
