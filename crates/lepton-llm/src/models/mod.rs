//! The networks: BERT-family encoders ([`bert`], pooled into sentence embeddings by [`embed`]) and
//! the one decoder ([`decoder`]) whose per-architecture parts cover the GGUF architectures we run;
//! `text_model` puts a decoder, its tokenizer and its chat template together.

pub mod bert;
pub mod decoder;
pub mod embed;
pub mod linear;
pub(crate) mod text_model;
