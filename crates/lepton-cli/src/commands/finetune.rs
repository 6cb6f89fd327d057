//! `lepton finetune BASE --data DATA ... --out RUN`: LoRA fine-tuning (lepton-finetune), the
//! options over a `--spec` file over the defaults; the resolved spec is saved as
//! `RUN/finetune.toml` so `--resume` needs only `--out`.

use anyhow::Context;
use lepton_finetune::config::{default_optimizer, FinetuneFile, FinetuneSpec};
use lepton_finetune::BasePrecision;
use lepton_train::OptimizerSpec;

use crate::cli::{BasePrecisionArg, FinetuneArgs};
use crate::output::{print_json, Mode};

/// The spec from `--spec` (or the defaults) with every given option applied.
fn resolve(a: &FinetuneArgs) -> anyhow::Result<FinetuneFile> {
    let mut file = match &a.spec {
        Some(p) => {
            let text = fs_err::read_to_string(p)?;
            let mut raw: toml::Table =
                toml::from_str(&text).with_context(|| format!("reading {}", p.display()))?;
            // BASE and --data stand in for a spec that does not name them (absolute: relative
            // paths in the spec resolve against its folder, the options against the shell's).
            if let Some(ft) = raw.get_mut("finetune").and_then(|v| v.as_table_mut()) {
                for (key, given) in [("base", &a.base), ("data", &a.data)] {
                    if let (false, Some(v)) = (ft.contains_key(key), given) {
                        let v = std::path::absolute(v)?;
                        ft.insert(key.into(), v.display().to_string().into());
                    }
                }
            }
            FinetuneFile::from_str_in(&toml::to_string(&raw)?, p)?
        }
        None => {
            let base = a
                .base
                .clone()
                .context("give BASE (a GGUF file or Llama folder) or --spec")?;
            let data = a
                .data
                .clone()
                .context("give --data (text or chat JSONL) or --spec")?;
            FinetuneFile {
                finetune: FinetuneSpec::new(base, data),
                optimizer: default_optimizer(),
                schedule: Default::default(),
            }
        }
    };
    let f = &mut file.finetune;
    if let Some(b) = &a.base {
        f.base = b.clone();
    }
    if let Some(d) = &a.data {
        f.data = d.clone();
    }
    if a.val_data.is_some() {
        f.val_data = a.val_data.clone();
    }
    macro_rules! over {
        ($($field:ident),*) => { $( if let Some(v) = a.$field.clone() { f.$field = v; } )* };
    }
    over!(
        lora_r,
        lora_alpha,
        lora_dropout,
        targets,
        seq_len,
        batch_size,
        seed
    );
    if a.steps.is_some() {
        f.steps = a.steps;
        f.epochs = None;
    }
    if a.epochs.is_some() {
        f.epochs = a.epochs;
        f.steps = None;
    }
    if a.no_shuffle {
        f.shuffle = false;
    }
    if a.max_val_windows.is_some() {
        f.max_val_windows = a.max_val_windows;
    }
    if let Some(p) = a.base_precision {
        f.base_precision = match p {
            BasePrecisionArg::F32 => BasePrecision::F32,
            BasePrecisionArg::Quantized => BasePrecision::Quantized,
        };
    }
    if let Some(lr) = a.lr {
        match &mut file.optimizer {
            OptimizerSpec::Sgd(c) => c.lr = lr,
            OptimizerSpec::Adam(c) | OptimizerSpec::AdamW(c) => c.lr = lr,
        }
    }
    file.validate()?;
    Ok(file)
}

pub fn run(a: FinetuneArgs, mode: Mode) -> anyhow::Result<()> {
    // candle's element-wise pool off (it spun beside rayon: 37 % of a step) and freed blocks
    // kept by glibc (page faults were 10 % of a quantized step): see `tuning`.
    crate::tuning::for_compute();
    let saved = a.out.join("finetune.toml");
    let file = if a.resume {
        FinetuneFile::from_file(&saved).with_context(|| {
            format!(
                "--resume needs the run's spec {} (written by the first run)",
                saved.display()
            )
        })?
    } else {
        let file = resolve(&a)?;
        fs_err::create_dir_all(&a.out)?;
        let mut abs = file.clone();
        for p in [
            Some(&mut abs.finetune.base),
            Some(&mut abs.finetune.data),
            abs.finetune.val_data.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            *p = std::path::absolute(&*p)?;
        }
        fs_err::write(&saved, toml::to_string(&abs)?)?;
        file
    };
    if mode == Mode::Human {
        let f = &file.finetune;
        eprintln!(
            "fine-tuning {} ({:?} base) on {} (r={}, alpha={}, targets {})",
            f.base.display(),
            f.base_precision,
            f.data.display(),
            f.lora_r,
            f.lora_alpha,
            f.targets.join(",")
        );
    }
    let report = lepton_finetune::train::finetune(&file, &a.out, a.resume)?;
    match mode {
        Mode::Json => print_json(&report),
        Mode::Human => {
            println!(
                "trainable params {} of {} ({:.2} %)",
                report.trainable_params,
                report.total_params,
                100.0 * report.trainable_params as f64 / report.total_params as f64
            );
            println!(
                "validation loss {:.4} -> {:.4} (perplexity {:.2}), {} steps at {:.1} tokens/s",
                report.val_loss_before,
                report.val_loss_after,
                report.val_perplexity_after,
                report.steps,
                report.tokens_per_s
            );
            println!("adapter: {}", a.out.join("adapter").display());
            Ok(())
        }
        Mode::Quiet => Ok(()),
    }
}
