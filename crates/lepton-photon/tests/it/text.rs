//! Text photons: a small random-weight character language model (embedding + lstm + linear)
//! and a text classifier, written, reopened and generated from.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{ModuleT, VarBuilder, VarMap};
use lepton_data::{Preprocessor, Vocab};
use lepton_nn::{LossSpec, Model, ModelSpec};
use lepton_photon::{Finish, GenerateConfig, Generator, Photon, PhotonContents, Prediction};

const TEXT: &str = "to be or not to be, that is the question\n";
const MAX_LEN: usize = 12;

fn spec(out: usize) -> ModelSpec {
    toml::from_str(&format!(
        r#"layers = [
            {{ type = "embedding", num-embeddings = {v}, embedding-dim = 8 }},
            {{ type = "lstm", hidden-size = 16 }},
            {{ type = "linear", out-features = {out} }},
        ]"#,
        v = Vocab::chars_of(TEXT).unwrap().len()
    ))
    .unwrap()
}

fn weights(spec: &ModelSpec, input: &[usize], seed: u64) -> HashMap<String, Tensor> {
    let varmap = VarMap::new();
    Model::new(
        spec,
        input,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    lepton_nn::init_seeded(&varmap, seed).unwrap();
    let data = varmap.data().lock().unwrap();
    data.iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect()
}

/// Write a character language model photon with random weights.
pub fn write_char_lm(path: &Path) {
    let vocab = Vocab::chars_of(TEXT).unwrap();
    let spec = spec(vocab.len());
    let w = weights(&spec, &[MAX_LEN], 3);
    let contents = PhotonContents {
        name: "char-lm".into(),
        model: spec,
        input_shape: vec![MAX_LEN],
        loss: LossSpec::default(),
        preprocessor: Preprocessor::Text {
            vocab,
            max_len: MAX_LEN,
            class_names: vec![],
        },
        metrics: serde_json::json!({}),
    };
    Photon::write(path, &contents, &w).unwrap();
}

fn generate(model: &lepton_photon::LoadedModel, prompt: &str, cfg: &GenerateConfig) -> String {
    let g = Generator::new(model).unwrap();
    let mut streamed = String::new();
    let out = g
        .generate(prompt, cfg, |piece| {
            streamed.push_str(piece);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(out.text, streamed, "the callback sees every piece");
    out.text
}

#[test]
fn greedy_decoding_equals_the_argmax_of_a_full_forward_at_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lm.photon");
    write_char_lm(&path);
    let model = Photon::open(&path).unwrap().model().unwrap();
    let g = Generator::new(&model).unwrap();
    let prompt = "to be";
    // 7 new tokens: prompt + output = 12 = max_len, so one forward sees the whole sequence.
    let out = g
        .generate(prompt, &GenerateConfig::new(7), |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(out.finish, Finish::Length);
    assert_eq!(out.ids.len(), 7);
    assert_eq!(out.text.chars().count(), 7);
    let mut all = g.vocab().encode(prompt).unwrap();
    all.extend(&out.ids);
    let x: Vec<f32> = all.iter().map(|&i| i as f32).collect();
    let t = x.len();
    let y = model
        .model()
        .forward_t(&Tensor::from_vec(x, (1, t), &Device::Cpu).unwrap(), false)
        .unwrap()
        .get(0)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    for (step, &id) in out.ids.iter().enumerate() {
        let pos = prompt.len() - 1 + step;
        let row = &y[pos];
        let argmax = (0..row.len())
            .reduce(|a, b| if row[b] > row[a] { b } else { a })
            .unwrap();
        assert_eq!(id as usize, argmax, "step {step}");
    }
}

#[test]
fn longer_generations_crop_to_the_last_max_len_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lm.photon");
    write_char_lm(&path);
    let model = Photon::open(&path).unwrap().model().unwrap();
    let g = Generator::new(&model).unwrap();
    let long_prompt = "to be or not to be, that is";
    assert!(long_prompt.len() > MAX_LEN);
    let out = g
        .generate(long_prompt, &GenerateConfig::new(3), |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
    // The first token depends only on the last MAX_LEN prompt characters.
    let tail = &long_prompt[long_prompt.len() - MAX_LEN..];
    let first = g
        .generate(tail, &GenerateConfig::new(1), |_| ControlFlow::Continue(()))
        .unwrap();
    assert_eq!(out.ids[0], first.ids[0]);
    assert_eq!(out.prompt_tokens, long_prompt.len());
}

#[test]
fn same_seed_same_text_different_seeds_differ() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lm.photon");
    write_char_lm(&path);
    let model = Photon::open(&path).unwrap().model().unwrap();
    let cfg = |seed| {
        GenerateConfig::new(40)
            .with_temperature(1.5)
            .with_top_k(10)
            .with_seed(seed)
    };
    let a = generate(&model, "to", &cfg(1));
    let b = generate(&model, "to", &cfg(1));
    assert_eq!(a, b);
    assert_eq!(a.chars().count(), 40);
    let others: Vec<String> = (2..6).map(|s| generate(&model, "to", &cfg(s))).collect();
    assert!(others.iter().all(|o| *o != a), "{a:?} vs {others:?}");
}

#[test]
fn stop_strings_end_generation_before_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lm.photon");
    write_char_lm(&path);
    let model = Photon::open(&path).unwrap().model().unwrap();
    let free = generate(&model, "to", &GenerateConfig::new(30).with_temperature(2.0));
    // Stop at the third character of the free text: the same prefix, then stop.
    let stop: String = free.chars().skip(2).take(1).collect();
    let g = Generator::new(&model).unwrap();
    let cfg = GenerateConfig::new(30)
        .with_temperature(2.0)
        .with_stop(vec![stop.clone()]);
    let out = g
        .generate("to", &cfg, |_| ControlFlow::Continue(()))
        .unwrap();
    assert_eq!(out.finish, Finish::Stop);
    let cut = free.find(&stop).unwrap();
    assert_eq!(out.text, free[..cut]);
    // Cancelling from the callback stops at once.
    let mut calls = 0;
    let out = g
        .generate("to", &GenerateConfig::new(30), |_| {
            calls += 1;
            ControlFlow::Break(())
        })
        .unwrap();
    assert_eq!(
        (out.finish, calls, out.ids.len()),
        (Finish::Cancelled, 1, 1)
    );
}

#[test]
fn bad_prompts_and_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lm.photon");
    write_char_lm(&path);
    let model = Photon::open(&path).unwrap().model().unwrap();
    let g = Generator::new(&model).unwrap();
    let run = |prompt: &str, cfg: GenerateConfig| {
        g.generate(prompt, &cfg, |_| ControlFlow::Continue(()))
            .unwrap_err()
            .to_string()
    };
    let e = run("to bez", GenerateConfig::new(5));
    assert!(
        e.contains("prompt") && e.contains("'z'") && e.contains("position 5"),
        "{e}"
    );
    let e = run("", GenerateConfig::new(5));
    assert!(e.contains("prompt") && e.contains("empty"), "{e}");
    let e = run("to", GenerateConfig::new(lepton_photon::MAX_NEW_TOKENS + 1));
    assert!(e.contains("max-tokens"), "{e}");
}

#[test]
fn text_classifier_predicts_texts_and_names_bad_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cls.photon");
    let vocab = Vocab::chars_of(TEXT).unwrap();
    let spec: ModelSpec = toml::from_str(&format!(
        r#"layers = [
            {{ type = "embedding", num-embeddings = {}, embedding-dim = 8 }},
            {{ type = "lstm", hidden-size = 16, return-sequences = false }},
            {{ type = "linear", out-features = 2 }},
        ]"#,
        vocab.len()
    ))
    .unwrap();
    let w = weights(&spec, &[MAX_LEN], 5);
    let contents = PhotonContents {
        name: "cls".into(),
        model: spec,
        input_shape: vec![MAX_LEN],
        loss: LossSpec::default(),
        preprocessor: Preprocessor::Text {
            vocab,
            max_len: MAX_LEN,
            class_names: vec!["no".into(), "yes".into()],
        },
        metrics: serde_json::json!({}),
    };
    Photon::write(&path, &contents, &w).unwrap();
    let photon = Photon::open(&path).unwrap();
    assert!(photon.inspect().unwrap().to_text().contains(&format!(
        r#"schema      {{"kind":"text","vocab-size":{},"max-len":{MAX_LEN}}}"#,
        Vocab::chars_of(TEXT).unwrap().len()
    )));
    assert!(photon
        .inspect()
        .unwrap()
        .to_text()
        .contains("text        text classifier, chars vocabulary of 15 tokens, max-len 12\n"));
    let model = photon.model().unwrap();
    let p = model
        .predict_texts(&["to be".into(), "question".into()], 1)
        .unwrap();
    assert_eq!(p.len(), 2);
    let Prediction::Classes { probabilities, top } = &p[0] else {
        panic!("{p:?}")
    };
    assert!((probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    assert_eq!(top.len(), 1);
    // As lepton-data pads the training texts: on the left, with id 0 (no NUL in this vocabulary).
    let ids = Vocab::chars_of(TEXT).unwrap().encode("to be").unwrap();
    let mut row = vec![0f32; MAX_LEN - ids.len()];
    row.extend(ids.iter().map(|&i| i as f32));
    let want = model
        .predict(&Tensor::from_vec(row, (1, MAX_LEN), &Device::Cpu).unwrap())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(probabilities, &want);
    let e = model
        .predict_texts(&["to be".into(), "to bez".into()], 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("inputs[1]") && e.contains("'z'"), "{e}");
    let e = model
        .predict_texts(&["to be or not to be".into()], 1)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("inputs[0]") && e.contains("1 to 12 tokens"),
        "{e}"
    );
    let e = model
        .predict_tokens(&[vec![0, 99]], 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("token id 99"), "{e}");
    assert!(
        Generator::new(&model).is_err(),
        "a classifier does not generate"
    );
}

#[test]
fn a_language_model_whose_output_is_not_the_vocabulary_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.photon");
    let vocab = Vocab::chars_of(TEXT).unwrap();
    let spec = spec(vocab.len() + 1);
    let w = weights(&spec, &[MAX_LEN], 3);
    let contents = PhotonContents {
        name: "bad".into(),
        model: spec,
        input_shape: vec![MAX_LEN],
        loss: LossSpec::default(),
        preprocessor: Preprocessor::Text {
            vocab,
            max_len: MAX_LEN,
            class_names: vec![],
        },
        metrics: serde_json::json!({}),
    };
    let e = Photon::write(&path, &contents, &w).unwrap_err().to_string();
    assert!(
        e.contains("model") && e.contains("[max_len, vocab size]"),
        "{e}"
    );
}

#[test]
fn an_embedding_smaller_than_the_vocabulary_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let vocab = Vocab::chars_of(TEXT).unwrap();
    let spec: ModelSpec = toml::from_str(&format!(
        r#"layers = [
            {{ type = "embedding", num-embeddings = {}, embedding-dim = 8 }},
            {{ type = "lstm", hidden-size = 16 }},
            {{ type = "linear", out-features = {} }},
        ]"#,
        vocab.len() - 1,
        vocab.len()
    ))
    .unwrap();
    let w = weights(&spec, &[MAX_LEN], 3);
    let contents = PhotonContents {
        name: "bad".into(),
        model: spec,
        input_shape: vec![MAX_LEN],
        loss: LossSpec::default(),
        preprocessor: Preprocessor::Text {
            vocab,
            max_len: MAX_LEN,
            class_names: vec![],
        },
        metrics: serde_json::json!({}),
    };
    let e = Photon::write(&dir.path().join("bad.photon"), &contents, &w)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model.layers[0].num-embeddings: is 14 but the vocabulary has 15 tokens"),
        "{e}"
    );
}
