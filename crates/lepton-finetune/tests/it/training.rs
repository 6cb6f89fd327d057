//! The training loop on a tiny random decoder: the loss falls, validation is logged, a resumed
//! run ends bit-identical to an uninterrupted one, PEFT save/load round-trips, merging is exact.

use candle_core::{Device, Tensor};
use lepton_finetune::data::{split_tail, Splits};
use lepton_finetune::merge::merged;
use lepton_finetune::peft::Adapter;
use lepton_finetune::train::{attach, train};
use lepton_finetune::Decoder;

use crate::support::{max_abs_diff, randomize_b, tiny_config, tiny_file, windows};

fn splits() -> Splits {
    split_tail(windows(20, 8, 37), 0.2)
}

#[test]
fn training_lowers_the_validation_loss_and_logs_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut d = Decoder::random(tiny_config(), 1)?;
    let mut file = tiny_file(30);
    file.optimizer = lepton_train::OptimizerSpec::AdamW(lepton_train::AdamConfig {
        lr: 5e-2,
        ..Default::default()
    });
    attach(&mut d, &file)?;
    let r = train(&mut d, &splits(), &file, dir.path(), "tiny", false)?;
    assert!(r.val_loss_after < r.val_loss_before - 0.1, "{r:?}");
    // 2 layers × (q: 2·(16+16), v: 2·(16+8)) = 2 × (64 + 48).
    assert_eq!(r.trainable_params, 224);
    let metrics = std::fs::read_to_string(dir.path().join("metrics.jsonl"))?;
    let lines: Vec<serde_json::Value> = metrics
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.iter().filter(|l| l.get("loss").is_some()).count(), 30);
    let last_val = lines
        .iter()
        .rev()
        .find(|l| l.get("val_loss").is_some())
        .unwrap();
    assert_eq!(last_val["step"], 30);
    let ppl = last_val["val_perplexity"].as_f64().unwrap();
    assert!((ppl - r.val_loss_after.exp()).abs() < 1e-9 * ppl);
    assert!(dir
        .path()
        .join("adapter/adapter_model.safetensors")
        .exists());
    Ok(())
}

#[test]
fn resumed_run_ends_bit_identical_to_an_uninterrupted_one() -> anyhow::Result<()> {
    let (full, part) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let mut file = tiny_file(6);
    file.finetune.lora_dropout = 0.1;
    let mut a = Decoder::random(tiny_config(), 2)?;
    attach(&mut a, &file)?;
    train(&mut a, &splits(), &file, full.path(), "tiny", false)?;

    // Interrupted: the first 3 steps (the schedule is constant, so a 3-step run is the 6-step
    // run's first half), a checkpoint, then a fresh decoder resumes the 6-step run from it.
    let mut half = file.clone();
    half.finetune.checkpoint_every = Some(3);
    let mut b = Decoder::random(tiny_config(), 2)?;
    attach(&mut b, &half)?;
    let mut three = half.clone();
    three.finetune.steps = Some(3);
    train(&mut b, &splits(), &three, part.path(), "tiny", false)?;
    // Resume in a fresh process-like state: a new decoder with fresh adapters.
    let mut c = Decoder::random(tiny_config(), 2)?;
    attach(&mut c, &half)?;
    train(&mut c, &splits(), &half, part.path(), "tiny", true)?;
    for ((_, _, x), (_, _, y)) in a.adapters().iter().zip(c.adapters().iter()) {
        assert_eq!(max_abs_diff(x.a.as_tensor(), y.a.as_tensor())?, 0.0);
        assert_eq!(max_abs_diff(x.b.as_tensor(), y.b.as_tensor())?, 0.0);
    }
    Ok(())
}

#[test]
fn peft_save_load_round_trips_and_merge_equals_unmerged() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut d = Decoder::random(tiny_config(), 5)?;
    attach(&mut d, &tiny_file(1))?;
    randomize_b(&d)?;
    lepton_finetune::peft::save(dir.path(), &d, 4.0, 0.0, "tiny-base")?;
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        dir.path().join("adapter_config.json"),
    )?)?;
    assert_eq!(cfg["r"], 2);
    assert_eq!(cfg["lora_alpha"], 4.0);
    assert_eq!(
        cfg["target_modules"],
        serde_json::json!(["q_proj", "v_proj"])
    );
    assert_eq!(cfg["peft_type"], "LORA");
    let st = std::fs::read(dir.path().join("adapter_model.safetensors"))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&st)?;
    assert_eq!(
        meta.metadata()
            .as_ref()
            .and_then(|m| m.get("format"))
            .map(String::as_str),
        Some("pt")
    );
    let names: Vec<String> = meta.tensors().keys().cloned().collect();
    assert!(
        names.contains(
            &"base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight".to_string()
        ),
        "{names:?}"
    );

    let mut e = Decoder::random(tiny_config(), 5)?;
    Adapter::load(dir.path())?.apply(&mut e)?;
    let ids = Tensor::from_vec(vec![3u32, 1, 4, 1, 5, 9, 2, 6], (2, 4), &Device::Cpu)?;
    let want = d.logits(&ids, None)?;
    assert_eq!(max_abs_diff(&want, &e.logits(&ids, None)?)?, 0.0);
    let base_only = Decoder::random(tiny_config(), 5)?.logits(&ids, None)?;
    assert!(
        max_abs_diff(&want, &base_only)? > 1e-3,
        "the adapter changes nothing"
    );
    let m = merged(&d)?;
    assert!(m.adapters().is_empty());
    let diff = max_abs_diff(&want, &m.logits(&ids, None)?)?;
    assert!(diff < 1e-4, "merged differs by {diff}");
    Ok(())
}

#[test]
fn resuming_a_finished_run_reports_the_loaded_adapters_validation_loss() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = tiny_file(4);
    let mut a = Decoder::random(tiny_config(), 9)?;
    attach(&mut a, &file)?;
    let first = train(&mut a, &splits(), &file, dir.path(), "tiny", false)?;
    let mut b = Decoder::random(tiny_config(), 9)?;
    attach(&mut b, &file)?;
    let again = train(&mut b, &splits(), &file, dir.path(), "tiny", true)?;
    assert_eq!(again.val_loss_after, first.val_loss_after);
    assert_eq!(again.val_loss_before, first.val_loss_before);
    assert_ne!(again.val_loss_after, again.val_loss_before);
    Ok(())
}
