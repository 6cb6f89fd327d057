//! SentencePiece-style tokenizers as GGUF stores them (`tokenizer.ggml.model = llama`: Gemma,
//! Llama 2, Mistral): pieces with scores, `▁` for spaces, byte fallback (`<0x41>`).
//!
//! llama.cpp tokenizes such a vocabulary by repeatedly merging the adjacent pair of symbols whose
//! concatenation is a piece with the highest score, then spells what is left unknown as byte
//! pieces. That is BPE with one merge `(a, b)` for every piece `a + b` whose halves are pieces,
//! ranked by the merged piece's score (Hugging Face's `SentencePieceExtractor` builds the same list),
//! so the `tokenizers` crate runs it: BPE with those merges and `byte_fallback`, a normaliser that
//! turns spaces into `▁` (and prepends one when `add_space_prefix`), and a decoder that undoes it.

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::{DecoderWrapper, NormalizerWrapper};

/// GGUF token types: normal pieces merge; control, user-defined, unknown and byte pieces do not.
const NORMAL: i32 = 1;

/// A `tokenizers` tokenizer for the pieces `tokens` with their `scores` and GGUF `types`.
pub fn build(
    tokens: &[String],
    scores: &[f32],
    types: &[i32],
    add_space_prefix: bool,
) -> tokenizers::Result<tokenizers::Tokenizer> {
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let mut merges: Vec<(f32, u32, u32, u32)> = Vec::new();
    for (id, piece) in tokens.iter().enumerate() {
        if types.get(id).copied().unwrap_or(NORMAL) != NORMAL || piece.chars().nth(1).is_none() {
            continue;
        }
        for (at, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(at);
            if let (Some(&a), Some(&b)) = (vocab.get(l), vocab.get(r)) {
                merges.push((scores[id], a, b, id as u32));
            }
        }
    }
    // Highest score first; ties in the order of the halves' ids (HF's order).
    merges.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    let merges: Vec<(String, String)> = merges
        .into_iter()
        .map(|(_, a, b, _)| (tokens[a as usize].clone(), tokens[b as usize].clone()))
        .collect();
    let unk = types
        .iter()
        .position(|&t| t == 2)
        .map(|i| tokens[i].clone());
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(unk);
    }
    let mut tok = tokenizers::Tokenizer::new(builder.build()?);
    let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
    if add_space_prefix {
        normalizers.push(Prepend::new("▁".into()).into());
    }
    normalizers.push(Replace::new(" ", "▁")?.into());
    tok.with_normalizer(Some(NormalizerSequence::new(normalizers)))?;
    let mut decoders: Vec<DecoderWrapper> = vec![
        Replace::new("▁", " ")?.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if add_space_prefix {
        decoders.push(tokenizers::decoders::strip::Strip::new(' ', 1, 0).into());
    }
    tok.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(tok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> tokenizers::Tokenizer {
        toy_with(false)
    }

    fn toy_with(add_space_prefix: bool) -> tokenizers::Tokenizer {
        // ids: 0 <unk>, 1..=3 bytes, then pieces with scores.
        let pieces = [
            ("<unk>", 0.0, 2),
            ("<0x0A>", 0.0, 6),
            ("<0xC3>", 0.0, 6),
            ("<0xA9>", 0.0, 6),
            ("▁", -1.0, 1),
            ("a", -2.0, 1),
            ("b", -2.0, 1),
            ("ab", -3.0, 1),
            ("▁a", -0.5, 1),
            ("▁ab", -4.0, 1),
        ];
        let tokens: Vec<String> = pieces.iter().map(|p| p.0.to_string()).collect();
        let scores: Vec<f32> = pieces.iter().map(|p| p.1).collect();
        let types: Vec<i32> = pieces.iter().map(|p| p.2).collect();
        build(&tokens, &scores, &types, add_space_prefix).unwrap()
    }

    /// Llama-2-style files (`add_space_prefix`, Gemma's is false): a `▁` is prepended before
    /// merging and stripped again when decoding.
    #[test]
    fn space_prefix_is_added_and_stripped() {
        let tok = toy_with(true);
        let ids = tok.encode("ab", false).unwrap().get_ids().to_vec();
        assert_eq!(ids, [9]);
        assert_eq!(tok.decode(&ids, false).unwrap(), "ab");
    }

    #[test]
    fn merges_by_score_and_falls_back_to_bytes() {
        let tok = toy();
        // "▁a" (score −0.5) merges before "ab" (−3.0): "▁a" "b", not "▁" "ab"; then "▁ab" (−4.0).
        let ids = tok.encode(" ab", false).unwrap().get_ids().to_vec();
        assert_eq!(ids, [9]);
        let ids = tok.encode("ba", false).unwrap().get_ids().to_vec();
        assert_eq!(ids, [6, 5]);
        // "é" is not a piece: its UTF-8 bytes; "\n" likewise.
        let ids = tok.encode("é\n", false).unwrap().get_ids().to_vec();
        assert_eq!(ids, [2, 3, 1]);
        assert_eq!(tok.decode(&[8, 6, 2, 3, 1], false).unwrap(), " abé\n");
    }
}
