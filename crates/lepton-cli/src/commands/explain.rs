//! `lepton explain MODEL INPUT --method M`: an attribution for an image (JSON + heatmap PNG over
//! the input), for each row of a CSV (kernel SHAP against a background sample, or the gradient
//! methods), permutation importance of a labelled CSV, or a layer's feature maps (`--layer`).
//!
//! Files go to `--out` (default `RUN/explain/` for a run directory, else `./explain/`):
//! `<input-stem>.<method>.json` (+ `.png` for images), `<input-stem>.<row>.<method>.json` per
//! CSV row, `<input-stem>.layer-<NAME>.png` + `.json` for feature maps.

use std::path::{Path, PathBuf};

use anyhow::Context;
use candle_core::{Device, Tensor};
use lepton_data::Preprocessor;
use lepton_explain::heatmap::{write_grid, write_overlay, Scale};
use lepton_explain::{
    feature_maps, integrated_gradients, permutation_importance, resolve_layer, Attribution,
    Baseline, BaselineKind, ExplainRequest, IgConfig, Method, PermutationConfig,
};
use lepton_photon::Photon;
use serde_json::json;

use crate::cli::ExplainArgs;
use crate::output::{print_json, Mode};

/// Background rows taken from the input CSV when `--background` is not given.
const DEFAULT_BACKGROUND_ROWS: usize = 100;

pub fn run(args: ExplainArgs, mode: Mode) -> anyhow::Result<()> {
    crate::tuning::for_compute();
    let path = super::eval::photon_path(&args.model)?;
    let photon = Photon::open(&path)?;
    let out = args.out.clone().unwrap_or_else(|| {
        if args.model.is_dir() {
            args.model.join("explain")
        } else {
            PathBuf::from("explain")
        }
    });
    fs_err::create_dir_all(&out)?;
    let stem = args
        .input
        .file_stem()
        .map_or_else(|| "input".to_string(), |s| s.to_string_lossy().into_owned());
    let pre = photon.manifest().preprocessor.clone();
    if let Some(layer) = &args.layer {
        return layers(&photon, &pre, &args, layer, &out, &stem, mode);
    }
    let method: Method = args.method.parse()?;
    let loaded = photon.model()?;
    let model = loaded.model();
    // The loaded model with its piecewise net, compiled once for every row of a CSV.
    let scorer = loaded.explainer();
    let mut written = Vec::new();
    match &pre {
        Preprocessor::Image { .. } => {
            let x = image_tensor(&pre, &args.input)?;
            let a = explain_one(scorer, &x, None, &args, method)?;
            let base = out.join(format!("{stem}.{method}"));
            let scale = match method {
                Method::Saliency => Scale::Magnitude,
                _ => Scale::Signed,
            };
            let pixels = x.flatten_all()?.to_vec1::<f32>()?;
            write_overlay(
                &base.with_extension("png"),
                &pixels,
                &a.attributions,
                &a.shape,
                scale,
                0.6,
            )?;
            write_json(&base.with_extension("json"), &a, &path, &args.input, None)?;
            written.push((base.with_extension("json"), a));
        }
        Preprocessor::Tabular { .. } => {
            let (header, rows) = read_csv(&args.input)?;
            if method == Method::Permutation {
                let a = permutation(&photon, &pre, model, &header, &rows, &args)?;
                let p = out.join(format!("{stem}.permutation.json"));
                write_json(&p, &a, &path, &args.input, None)?;
                written.push((p, a));
            } else {
                let feats = features(&photon, &pre, &header, &rows, &args.input)?;
                let bg = match &args.background {
                    Some(b) => {
                        let (h, r) = read_csv(b)?;
                        features(&photon, &pre, &h, &r, b)?
                    }
                    None => feats
                        .iter()
                        .take(DEFAULT_BACKGROUND_ROWS)
                        .cloned()
                        .collect(),
                };
                let f = pre.sample_shape().iter().product::<usize>();
                let bg = Tensor::from_vec(bg.concat(), (bg.len(), f), &Device::Cpu)?;
                for (i, row) in feats.iter().enumerate() {
                    let x = Tensor::from_slice(row, f, &Device::Cpu)?;
                    let a = explain_one(scorer, &x, Some(&bg), &args, method)
                        .with_context(|| format!("{}: row {}", args.input.display(), i + 1))?;
                    let p = out.join(format!("{stem}.{}.{method}.json", i + 1));
                    write_json(&p, &a, &path, &args.input, Some(i + 1))?;
                    written.push((p, a));
                }
            }
        }
        Preprocessor::Text { .. } => anyhow::bail!(
            "{}: explanations need an image or tabular model (token ids are not differentiable)",
            path.display()
        ),
    }
    for (p, a) in &written {
        match mode {
            Mode::Json => print_json(
                &json!({ "file": p, "method": a.method, "target": a.target, "checks": a.checks }),
            )?,
            Mode::Quiet => {}
            Mode::Human => println!("{} (target {}): {}", a.method, a.target, p.display()),
        }
    }
    Ok(())
}

/// The request from the flags; a `--baseline FILE` image goes to integrated gradients directly.
fn explain_one(
    model: &dyn lepton_explain::Scorer,
    x: &Tensor,
    background: Option<&Tensor>,
    args: &ExplainArgs,
    method: Method,
) -> anyhow::Result<Attribution> {
    let mut req = ExplainRequest::new(method);
    req.target = args.target;
    req.steps = args.steps;
    req.rule = args.rule;
    req.sigma = args.sigma;
    req.window = args.window;
    req.stride = args.stride;
    req.samples = args.samples;
    req.seed = args.seed;
    let file_baseline = match args.baseline.as_deref() {
        None | Some("zeros") => None,
        Some("mean") => {
            req.baseline = Some(BaselineKind::Mean);
            None
        }
        Some("blur") => {
            req.baseline = Some(BaselineKind::Blur);
            None
        }
        Some(file) => Some(PathBuf::from(file)),
    };
    // The command line is local: only the validity checks apply, not the server's limits.
    let limits = lepton_explain::Limits {
        max_steps: usize::MAX,
        max_positions: usize::MAX,
        max_shap_rows: usize::MAX,
        max_background: usize::MAX,
    };
    let rows = background.map_or(0, |b| b.dims()[0]);
    req.check(x.dims(), rows, &limits)?;
    match (file_baseline, method) {
        (Some(file), Method::IntegratedGradients) => {
            anyhow::ensure!(
                file.exists(),
                "--baseline: '{}' is not zeros, mean, blur or an existing image file",
                file.display()
            );
            let b = Baseline::Given(image_tensor_like(x, &file)?);
            let target = match args.target {
                Some(t) => t,
                None => lepton_explain::predicted(model, x)?,
            };
            let cfg = IgConfig {
                steps: args.steps.unwrap_or(IgConfig::default().steps),
                rule: args.rule.unwrap_or_default(),
                ..IgConfig::default()
            };
            Ok(integrated_gradients(model, x, &b, target, &cfg)?)
        }
        (Some(_), _) => anyhow::bail!("--baseline applies to integrated-gradients only"),
        (None, _) => Ok(req.run(model, x, background)?),
    }
}

/// A baseline image file as a tensor of `x`'s shape: grey levels scaled to `x`'s value range
/// (the input's preprocessing is not at hand here, so the file's pixels map min-to-max).
fn image_tensor_like(x: &Tensor, file: &Path) -> anyhow::Result<Tensor> {
    let img = lepton_data::open_image(file)?;
    let dims = x.dims();
    let (c, h, w) = match *dims {
        [c, h, w] => (c, h, w),
        _ => anyhow::bail!("--baseline: an image baseline needs an image model"),
    };
    let img = img.resize_exact(w as u32, h as u32, image::imageops::FilterType::Triangle);
    let xs = x.flatten_all()?.to_vec1::<f32>()?;
    let (lo, hi) = xs
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let px: Vec<f32> = match c {
        1 => img
            .to_luma8()
            .into_raw()
            .iter()
            .map(|&p| f32::from(p))
            .collect(),
        3 => {
            let rgb = img.to_rgb8();
            (0..3)
                .flat_map(|ch| {
                    rgb.pixels()
                        .map(move |p| f32::from(p.0[ch]))
                        .collect::<Vec<_>>()
                })
                .collect()
        }
        _ => anyhow::bail!("--baseline: {c}-channel images are not supported"),
    };
    let v: Vec<f32> = px.iter().map(|p| lo + p / 255.0 * (hi - lo)).collect();
    Ok(Tensor::from_vec(v, (c, h, w), &Device::Cpu)?)
}

fn image_tensor(pre: &Preprocessor, path: &Path) -> anyhow::Result<Tensor> {
    let img = lepton_data::open_image(path)?;
    let f = pre
        .image_features(&img)
        .with_context(|| format!("preprocessing {}", path.display()))?;
    Ok(Tensor::from_vec(f, pre.sample_shape(), &Device::Cpu)?)
}

fn read_csv(path: &Path) -> anyhow::Result<(Vec<String>, Vec<Vec<String>>)> {
    let mut rdr =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let header: Vec<String> = rdr
        .headers()
        .with_context(|| format!("{}: header", path.display()))?
        .iter()
        .map(str::to_string)
        .collect();
    let mut rows = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.with_context(|| format!("{}: line {}", path.display(), i + 2))?;
        rows.push(rec.iter().map(str::to_string).collect());
    }
    anyhow::ensure!(!rows.is_empty(), "{}: no rows", path.display());
    Ok((header, rows))
}

/// Model features of CSV rows; columns the model does not take are skipped.
fn features(
    photon: &Photon,
    pre: &Preprocessor,
    header: &[String],
    rows: &[Vec<String>],
    path: &Path,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let schema = match pre.input_schema() {
        lepton_data::InputSchema::Tabular { columns } => columns,
        _ => anyhow::bail!("{}: not a tabular model", photon.path().display()),
    };
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            let row: Vec<(&str, &str)> = header
                .iter()
                .zip(r)
                .filter(|(h, _)| schema.iter().any(|c| &c.name == *h))
                .map(|(h, v)| (h.as_str(), v.as_str()))
                .collect();
            pre.row_features(&row)
                .with_context(|| format!("{}: line {}", path.display(), i + 2))
        })
        .collect()
}

/// Permutation importance of the model's features on the labelled CSV (`--label COLUMN`).
fn permutation(
    photon: &Photon,
    pre: &Preprocessor,
    model: &lepton_nn::Model,
    header: &[String],
    rows: &[Vec<String>],
    args: &ExplainArgs,
) -> anyhow::Result<Attribution> {
    let label = args
        .label
        .as_deref()
        .context("--label COLUMN: permutation importance needs the label column of the CSV")?;
    let col = header
        .iter()
        .position(|h| h == label)
        .with_context(|| format!("--label: no column '{label}' in {}", args.input.display()))?;
    let labels = rows
        .iter()
        .enumerate()
        .map(|(i, r)| -> anyhow::Result<f32> {
            let v = &r[col];
            let at = || format!("{}: line {}, column '{label}'", args.input.display(), i + 2);
            let Preprocessor::Tabular {
                class_names,
                target_mean,
                target_std,
                ..
            } = pre
            else {
                unreachable!("a tabular model")
            };
            if class_names.is_empty() {
                let y: f32 = v
                    .trim()
                    .parse()
                    .with_context(|| format!("{}: '{v}' is not a number", at()))?;
                Ok((y - target_mean) / target_std)
            } else {
                class_names
                    .iter()
                    .position(|c| c == v.trim())
                    .map(|k| k as f32)
                    .with_context(|| format!("{}: '{v}' is not one of {class_names:?}", at()))
            }
        })
        .collect::<anyhow::Result<Vec<f32>>>()?;
    let feats = features(photon, pre, header, rows, &args.input)?;
    let f = pre.sample_shape().iter().product::<usize>();
    let x = Tensor::from_vec(feats.concat(), (feats.len(), f), &Device::Cpu)?;
    let cfg = PermutationConfig {
        repeats: args.repeats,
        seed: args.seed.unwrap_or(0),
    };
    Ok(permutation_importance(model, &x, &labels, &cfg)?)
}

fn write_json(
    path: &Path,
    a: &Attribution,
    model: &Path,
    input: &Path,
    row: Option<usize>,
) -> anyhow::Result<()> {
    let mut v = serde_json::to_value(a)?;
    v["model"] = json!(model);
    v["input"] = json!(input);
    if let Some(r) = row {
        v["row"] = json!(r);
    }
    fs_err::write(path, serde_json::to_string_pretty(&v)? + "\n")?;
    Ok(())
}

/// `--layer NAME`: the layer's feature maps as a PNG grid and a JSON of shape and ranges.
fn layers(
    photon: &Photon,
    pre: &Preprocessor,
    args: &ExplainArgs,
    layer: &str,
    out: &Path,
    stem: &str,
    mode: Mode,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        matches!(pre, Preprocessor::Image { .. }),
        "--layer: feature maps are drawn for image models"
    );
    let m = photon.manifest();
    let idx = resolve_layer(&m.model, layer)?;
    let x = image_tensor(pre, &args.input)?;
    let maps = feature_maps(&m.model, &m.input_shape, &photon.tensors()?, idx, &x)?;
    let png = out.join(format!("{stem}.layer-{layer}.png"));
    write_grid(&png, &maps.values, &maps.shape)?;
    let json_path = png.with_extension("json");
    let mut v = serde_json::to_value(&maps)?;
    v["model"] = json!(photon.path());
    v["input"] = json!(args.input);
    fs_err::write(&json_path, serde_json::to_string_pretty(&v)? + "\n")?;
    match mode {
        Mode::Json => print_json(
            &json!({ "file": png, "layer": maps.layer, "kind": maps.kind, "shape": maps.shape }),
        )?,
        Mode::Quiet => {}
        Mode::Human => println!(
            "layer {} ({}) {:?}: {}",
            maps.layer,
            maps.kind,
            maps.shape,
            png.display()
        ),
    }
    Ok(())
}
