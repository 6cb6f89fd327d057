//! Write the training and validation sets a spec trains on, after its split and preprocessing,
//! so a reference implementation (bench/tune/optuna_mnist.py) searches on exactly the same
//! samples, the same validation split and the same normalisation:
//!
//! ```text
//! cargo run --release -p lepton-tune --example export_split -- SPEC OUT_DIR
//! ```
//!
//! `OUT_DIR/split.json` gives the shapes; `{train,validation}-x.f32` hold the features
//! (little-endian f32, row-major `[n, ...sample_shape]`), `{train,validation}-y.u32` the class
//! indices (little-endian u32).

use std::path::PathBuf;

use anyhow::{bail, Context};
use lepton_data::{Dataset, Targets};

fn write(dir: &std::path::Path, name: &str, d: &Dataset) -> anyhow::Result<serde_json::Value> {
    let Targets::Classes { labels, .. } = &d.targets else {
        bail!("{name}: only classification specs can be exported");
    };
    let x: Vec<u8> = d.features.iter().flat_map(|v| v.to_le_bytes()).collect();
    let y: Vec<u8> = labels.iter().flat_map(|v| v.to_le_bytes()).collect();
    fs_err::write(dir.join(format!("{name}-x.f32")), x)?;
    fs_err::write(dir.join(format!("{name}-y.u32")), y)?;
    Ok(serde_json::json!({ "n": labels.len(), "sample-shape": d.sample_shape }))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [spec, out] = args.as_slice() else {
        bail!("usage: export_split SPEC OUT_DIR");
    };
    let spec = lepton_train::Spec::from_file(spec)
        .with_context(|| format!("reading {}", spec.display()))?;
    let data = lepton_data::prepare(&spec.data, &spec.preprocess, &spec.base_dir, spec.seed)
        .context("preparing the data")?;
    fs_err::create_dir_all(out)?;
    let summary = serde_json::json!({
        "train": write(out, "train", &data.train)?,
        "validation": write(out, "validation", &data.validation)?,
    });
    fs_err::write(out.join("split.json"), summary.to_string())?;
    println!("{summary}");
    Ok(())
}
