//! all-MiniLM-L6-v2 against sentence-transformers' published numbers (issue 5, acceptance 1).
//! Needs `scripts/fetch-assets.sh models` (run by `scripts/test.sh`); fails loudly without it.

use lepton_llm::{cosine, Embedder, Tokenizer};

use crate::model_dir;

#[test]
fn minilm_token_ids_match_the_reference() {
    let dir = model_dir("all-MiniLM-L6-v2");
    let tk = Tokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    assert_eq!(
        tk.encode("A man is eating food.", true).unwrap(),
        [101, 1037, 2158, 2003, 5983, 2833, 1012, 102]
    );
}

#[test]
fn minilm_cosines_match_sentence_transformers_docs() {
    let e = Embedder::load(&model_dir("all-MiniLM-L6-v2")).unwrap();
    assert_eq!(e.dim(), 384);
    assert_eq!(e.max_tokens, 256);
    let texts = [
        "The new movie is awesome",
        "The cat sits outside",
        "The new movie is so great",
        "The cat plays in the garden",
    ];
    let out = e.embed(&texts).unwrap();
    for v in &out.vectors {
        let n: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-5, "not L2-normalised: {n}");
    }
    let c1 = cosine(&out.vectors[0], &out.vectors[2]);
    let c2 = cosine(&out.vectors[1], &out.vectors[3]);
    assert!((c1 - 0.8939).abs() < 1e-3, "movie cosine {c1}");
    assert!((c2 - 0.6788).abs() < 1e-3, "cat cosine {c2}");
    assert_eq!(out.tokens, [7, 6, 8, 8]);

    // Batched (padded) and one-by-one embeddings agree: padding must not leak into the mean.
    let alone = e.embed(&texts[1..2]).unwrap();
    assert!(cosine(&alone.vectors[0], &out.vectors[1]) > 0.99999);
}

#[test]
fn minilm_over_long_inputs_truncate_or_fail_by_name() {
    let mut e = Embedder::load(&model_dir("all-MiniLM-L6-v2")).unwrap();
    let long = "word ".repeat(600);
    let out = e.embed(&["short", &long]).unwrap();
    assert_eq!(out.tokens[1], 256);
    e.truncate = false;
    let err = e.embed(&["short", &long]).unwrap_err().to_string();
    assert!(
        err.contains("input 1 has 602 tokens") && err.contains("at most 256"),
        "{err}"
    );
}

#[test]
fn minilm_truncation_keeps_the_trailing_separator() {
    let dir = model_dir("all-MiniLM-L6-v2");
    let tk = Tokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    let e = tk
        .encode_batch(&["A man is eating food."], Some(5))
        .unwrap()
        .remove(0);
    assert_eq!(e.ids, [101, 1037, 2158, 2003, 102]);
    assert_eq!(e.full_len, 8);
    assert!(e.truncated());
}

/// Our checked config as candle-transformers' BERT config (the reference implementation's).
fn candle_config(
    cfg: &lepton_llm::bert::BertConfig,
    path: &std::path::Path,
) -> candle_transformers::models::bert::Config {
    use candle_transformers::models::bert;
    cfg.check(path).unwrap();
    bert::Config {
        vocab_size: cfg.vocab_size,
        hidden_size: cfg.hidden_size,
        num_hidden_layers: cfg.num_hidden_layers,
        num_attention_heads: cfg.num_attention_heads,
        intermediate_size: cfg.intermediate_size,
        hidden_act: match cfg.hidden_act.as_str() {
            "gelu" => bert::HiddenAct::Gelu,
            "relu" => bert::HiddenAct::Relu,
            _ => bert::HiddenAct::GeluApproximate,
        },
        hidden_dropout_prob: 0.0,
        max_position_embeddings: cfg.max_position_embeddings,
        type_vocab_size: cfg.type_vocab_size,
        initializer_range: 0.02,
        layer_norm_eps: cfg.layer_norm_eps,
        pad_token_id: cfg.pad_token_id,
        position_embedding_type: bert::PositionEmbeddingType::Absolute,
        use_cache: false,
        classifier_dropout: None,
        model_type: Some("bert".into()),
    }
}

/// Lepton's fused BERT forward against candle-transformers' BERT (an independent implementation)
/// on a padded batch: hidden states of every real token agree.
#[test]
fn fused_bert_matches_candle_transformers_bert() {
    use candle_core::{DType, Device, Tensor};
    use candle_transformers::models::bert::BertModel;
    use lepton_llm::bert::{Bert, BertConfig};
    use lepton_llm::HfFolder;

    let folder = HfFolder::open(&model_dir("all-MiniLM-L6-v2")).unwrap();
    let ours = Bert::load(&folder).unwrap();
    let cfg: BertConfig = folder.typed_config().unwrap();
    let weights = folder.weights().unwrap();
    // SAFETY: the model file is only read.
    let vb = unsafe {
        candle_nn::VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &Device::Cpu)
    }
    .unwrap();
    let theirs = BertModel::load(vb, &candle_config(&cfg, &weights)).unwrap();

    let tk = Tokenizer::from_file(&folder.dir.join("tokenizer.json")).unwrap();
    let texts = [
        "A man is eating food.",
        "Two dogs run across a snowy field, chasing a red ball thrown by a child.",
        "ok",
    ];
    let encs: Vec<Vec<u32>> = texts.iter().map(|t| tk.encode(t, true).unwrap()).collect();
    let t = encs.iter().map(Vec::len).max().unwrap();
    let (mut ids, mut mask) = (vec![0u32; 3 * t], vec![0u32; 3 * t]);
    for (r, e) in encs.iter().enumerate() {
        ids[r * t..r * t + e.len()].copy_from_slice(e);
        mask[r * t..r * t + e.len()].fill(1);
    }
    let ids = Tensor::from_vec(ids, (3, t), &Device::Cpu).unwrap();
    let mask = Tensor::from_vec(mask, (3, t), &Device::Cpu).unwrap();
    let types = ids.zeros_like().unwrap();
    let a = ours.forward(&ids, &types, &mask).unwrap();
    let b = theirs.forward(&ids, &types, Some(&mask)).unwrap();
    let (a, b) = (a.to_vec3::<f32>().unwrap(), b.to_vec3::<f32>().unwrap());
    let mut worst = 0f32;
    for (r, e) in encs.iter().enumerate() {
        for p in 0..e.len() {
            for (x, y) in a[r][p].iter().zip(&b[r][p]) {
                worst = worst.max((x - y).abs());
            }
        }
    }
    assert!(worst < 1e-4, "hidden states differ by {worst}");
}
