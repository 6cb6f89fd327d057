//! `lepton compress MODEL -o OUT.photon [--prune R [--structured] [--finetune-epochs N]]
//! [--quantize int8|dynamic-int8 [--calibration-samples N]] [--max-drop P] [--force]`: prune and/or
//! quantize a trained model, gated by re-evaluation on the run's held-out data (see
//! `lepton-compress`). MODEL is a run directory or a `.photon`; the data come from the run (its
//! seeded training/validation split), or from `--data` (used for both the gate and the
//! calibration) for a package with no run directory beside it.
//!
//! Reports: `RUN/compress/<OUT stem>.json|md` for a run directory, else `<OUT stem>.compress.json|md`
//! beside OUT. A refused compression writes its report and no package, and exits non-zero.
//!
//! `lepton compress MODEL_DIR -o OUT_DIR --quantize dynamic-int8 [--min-cosine C] [--data
//! SENTENCES.txt] [--force]` for a Hugging Face encoder folder: see `encoder_run`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use lepton_compress::{compress, CompressConfig, CompressData, Net};
use lepton_photon::{Photon, PhotonContents};

use crate::cli::CompressArgs;
use crate::output::{print_json, Mode};

/// The run directory MODEL belongs to, if any.
fn run_dir(model: &Path) -> Option<PathBuf> {
    let dir = if model.is_dir() {
        model.to_path_buf()
    } else {
        model.parent()?.to_path_buf()
    };
    dir.join("spec.toml").exists().then_some(dir)
}

pub fn run(args: CompressArgs, mode: Mode) -> anyhow::Result<()> {
    crate::tuning::for_compute();
    let cfg = CompressConfig {
        prune: args.prune,
        structured: args.structured,
        finetune_epochs: args.finetune_epochs,
        quantize: args.quantize.map(|q| match q {
            crate::cli::QuantizeArg::Int8 => lepton_compress::Quantize::Int8,
            crate::cli::QuantizeArg::DynamicInt8 => lepton_compress::Quantize::DynamicInt8,
        }),
        calibration_samples: args.calibration_samples,
        calibration: match args.calibration {
            crate::cli::CalibrationArg::Mse => lepton_compress::Calibration::Mse,
            crate::cli::CalibrationArg::Minmax => lepton_compress::Calibration::Minmax,
            crate::cli::CalibrationArg::PerLayer => lepton_compress::Calibration::PerLayer,
        },
        bias_correction: !args.no_bias_correction,
        max_drop: args.max_drop,
        min_cosine: args.min_cosine,
        force: args.force,
        ..Default::default()
    };
    if lepton_compress::is_hf_folder(&args.model) {
        return encoder_run(&args, &cfg, mode);
    }
    // Cheap checks first: the settings, then the package, then the data.
    cfg.validate()?;
    let path = super::eval::photon_path(&args.model)?;
    let photon = Photon::open(&path)?;
    let m = photon.manifest();
    anyhow::ensure!(
        m.model.precision() == "f32",
        "{}: the package is already {} (compress the f32 model it came from)",
        path.display(),
        m.model.precision()
    );
    let run = run_dir(&args.model);
    let (held_out, train) = match (&args.data, &run) {
        (Some(d), _) => {
            let spec = lepton_data::spec_for_path(d)?;
            let data = lepton_data::load_for_eval(&spec, Path::new(""), &m.preprocessor)
                .with_context(|| format!("loading --data {}", d.display()))?;
            (data.clone(), data)
        }
        (None, Some(dir)) => {
            let spec = lepton_train::Spec::from_file(&dir.join("spec.toml"))?;
            let p = lepton_data::prepare(&spec.data, &spec.preprocess, &spec.base_dir, spec.seed)
                .with_context(|| format!("loading the data of the run {}", dir.display()))?;
            anyhow::ensure!(
                !p.validation.is_empty(),
                "the run {} has no held-out (validation) split for the gate: give --data",
                dir.display()
            );
            (p.validation, p.train)
        }
        (None, None) => anyhow::bail!(
            "{} has no run directory beside it to take the held-out data from: give --data",
            path.display()
        ),
    };
    let net = Net::new(m.model.clone(), m.input_shape.clone(), photon.tensors()?);
    let data = CompressData {
        held_out: &held_out,
        train: Some(&train),
        loss: &m.loss,
    };
    let out = compress(&m.name, net, &cfg, data)?;
    let stem = args
        .output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let (json, md) = match (&run, args.model.is_dir()) {
        (Some(dir), true) => out.report.write(&dir.join("compress"), &stem)?,
        _ => {
            let dir = args
                .output
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            out.report.write(&dir, &format!("{stem}.compress"))?
        }
    };
    if out.report.written {
        let mut metrics = m.metrics.clone();
        if let serde_json::Value::Object(map) = &mut metrics {
            map.insert("compression".into(), serde_json::to_value(&out.report)?);
        } else {
            metrics = serde_json::json!({"compression": out.report});
        }
        let contents = PhotonContents {
            name: m.name.clone(),
            model: out.net.spec.clone(),
            input_shape: out.net.input.clone(),
            loss: m.loss.clone(),
            preprocessor: m.preprocessor.clone(),
            metrics,
        };
        Photon::write(&args.output, &contents, &out.net.tensors)?;
    }
    let r = &out.report;
    match mode {
        Mode::Json => print_json(&serde_json::json!({
            "photon": r.written.then_some(&args.output),
            "report": json,
            "markdown": md,
            "accepted": r.accepted,
            "before": r.before,
            "after": r.after,
            "steps": r.steps,
        }))?,
        Mode::Human => {
            print!("{}", r.to_markdown());
            match r.written {
                true => println!(
                    "\nwrote {} (report {})",
                    args.output.display(),
                    md.display()
                ),
                false => println!("\nnothing written (report {})", md.display()),
            }
        }
        Mode::Quiet => {}
    }
    if let Some(why) = &r.refusal {
        if !r.written {
            anyhow::bail!(
                "the gate refused the compression, {} not written: {why}",
                args.output.display()
            );
        }
    }
    Ok(())
}

/// Most bytes of a `--data` sentences file for an encoder folder.
const MAX_SENTENCES_BYTES: u64 = 16 << 20;

/// An encoder folder: dynamic int8 written to the new folder OUT (`report.json|md` inside it),
/// gated on the mean cosine of int8 to f32 embeddings of the `--data` sentences (non-empty
/// lines) or the built-in ones. A refusal prints the report, writes nothing and exits non-zero.
fn encoder_run(args: &CompressArgs, cfg: &CompressConfig, mode: Mode) -> anyhow::Result<()> {
    cfg.validate()?;
    let sentences: Vec<String> = match &args.data {
        Some(p) => {
            let f = fs_err::File::open(p)?;
            let len = f.metadata()?.len();
            anyhow::ensure!(
                len <= MAX_SENTENCES_BYTES,
                "--data {}: {len} bytes is over the {MAX_SENTENCES_BYTES}-byte limit for gate sentences",
                p.display()
            );
            fs_err::read_to_string(p)?
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string)
                .collect()
        }
        None => lepton_compress::DEFAULT_SENTENCES
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let r = lepton_compress::compress_encoder(&args.model, &args.output, cfg, &sentences)?;
    if r.written {
        let json = args.output.join("compress_report.json");
        fs_err::write(&json, serde_json::to_string_pretty(&r)? + "\n")?;
        fs_err::write(args.output.join("compress_report.md"), r.to_markdown())?;
    }
    match mode {
        Mode::Json => print_json(&serde_json::to_value(&r)?)?,
        Mode::Human => {
            print!("{}", r.to_markdown());
            match r.written {
                true => println!("\nwrote {}", args.output.display()),
                false => println!("\nnothing written"),
            }
        }
        Mode::Quiet => {}
    }
    if let (Some(why), false) = (&r.refusal, r.written) {
        anyhow::bail!(
            "the gate refused the compression, {} not written: {why}",
            args.output.display()
        );
    }
    Ok(())
}
