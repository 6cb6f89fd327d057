//! Language-model metrics from the mean next-token loss `L` (nats per token):
//! perplexity `exp(L)` and bits per token `L / ln 2`. Bits per character divide the bits per
//! token by the characters per token of the evaluated text (1 for a character vocabulary, so
//! there bits per token is bits per character, `bpc`).

use serde::{Deserialize, Serialize};

/// The evaluation of a language model on one part of a text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LanguageModelReport {
    /// Predicted positions (windows x block-size).
    pub tokens: usize,
    /// Windows evaluated.
    pub windows: usize,
    /// Mean cross-entropy per token, in nats.
    pub loss: f64,
    /// `exp(loss)`.
    pub perplexity: f64,
    /// `loss / ln 2`.
    pub bits_per_token: f64,
    /// `bits-per-token / characters-per-token` (equal to bits per token for a character
    /// vocabulary); absent when the characters are not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bits_per_char: Option<f64>,
}

impl LanguageModelReport {
    /// The metrics of a mean loss `loss` (nats per token) over `tokens` positions in `windows`
    /// windows; `bits_per_char` is left unset (see [`Self::with_chars_per_token`]).
    pub fn new(loss: f64, tokens: usize, windows: usize) -> Self {
        Self {
            tokens,
            windows,
            loss,
            perplexity: loss.exp(),
            bits_per_token: loss / std::f64::consts::LN_2,
            bits_per_char: None,
        }
    }

    /// Bits per character from the text's characters per token (1 for a character
    /// vocabulary); a non-positive or non-finite ratio leaves it unset.
    pub fn with_chars_per_token(mut self, chars_per_token: f64) -> Self {
        self.bits_per_char = (chars_per_token.is_finite() && chars_per_token > 0.0)
            .then(|| self.bits_per_token / chars_per_token);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perplexity_and_bits_follow_the_loss() {
        // A uniform guess over 4 tokens: loss ln 4, perplexity 4, 2 bits.
        let r = LanguageModelReport::new(4f64.ln(), 640, 10).with_chars_per_token(1.0);
        assert!((r.perplexity - 4.0).abs() < 1e-12);
        assert!((r.bits_per_token - 2.0).abs() < 1e-12);
        assert_eq!(r.bits_per_char, Some(r.bits_per_token));
        // Four characters per token: 2 bits per token are half a bit per character.
        let r = LanguageModelReport::new(4f64.ln(), 640, 10).with_chars_per_token(4.0);
        assert!((r.bits_per_char.unwrap() - 0.5).abs() < 1e-12);
        assert_eq!(
            LanguageModelReport::new(1.0, 1, 1)
                .with_chars_per_token(0.0)
                .bits_per_char,
            None
        );
    }
}
