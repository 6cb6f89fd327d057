//! `lepton predict MODEL INPUT...`: labels and probabilities for image files, CSV rows or texts, with
//! the preprocessing stored in the package; or through a running server with `--url`.

use anyhow::Context;
use lepton_photon::{Photon, Prediction};
use serde_json::json;

use crate::cli::PredictArgs;
use crate::output::{print_json, Mode};

pub fn run(args: PredictArgs, mode: Mode) -> anyhow::Result<()> {
    if let Some(url) = &args.url {
        return remote(url, &args, mode);
    }
    let model_path = args
        .model
        .as_ref()
        .expect("clap requires MODEL without --url");
    let photon = Photon::open(&super::eval::photon_path(model_path)?)?;
    let model = photon.model()?;
    let (names, preds): (Vec<String>, Vec<Prediction>) = if !args.text.is_empty() {
        anyhow::ensure!(
            args.inputs.is_empty(),
            "give either --text or input files, not both"
        );
        let preds = model
            .predict_texts(&args.text, args.top_k)
            .with_context(|| format!("predicting with {}", model_path.display()))?;
        (
            (0..args.text.len()).map(|i| format!("text[{i}]")).collect(),
            preds,
        )
    } else if let Some(csv_path) = &args.csv {
        let mut rdr = csv::Reader::from_path(csv_path)
            .with_context(|| format!("reading {}", csv_path.display()))?;
        let header: Vec<String> = rdr
            .headers()
            .with_context(|| format!("{}: header", csv_path.display()))?
            .iter()
            .map(str::to_string)
            .collect();
        let mut rows = Vec::new();
        for (i, rec) in rdr.records().enumerate() {
            let rec = rec.with_context(|| format!("{}: line {}", csv_path.display(), i + 2))?;
            // Columns the model does not take (a label column, ids) are skipped.
            let row: Vec<(String, String)> = header
                .iter()
                .zip(rec.iter())
                .filter(|(h, _)| schema_has(&photon, h))
                .map(|(h, v)| (h.clone(), v.to_string()))
                .collect();
            rows.push(row);
        }
        let preds = model
            .predict_rows(&rows, args.top_k)
            .with_context(|| format!("predicting {}", csv_path.display()))?;
        (
            (1..=rows.len())
                .map(|i| format!("{}:{}", csv_path.display(), i + 1))
                .collect(),
            preds,
        )
    } else {
        anyhow::ensure!(
            !args.inputs.is_empty(),
            "give image files, --csv FILE or --text TEXT"
        );
        let images = args
            .inputs
            .iter()
            .map(|p| lepton_data::open_image(p).map_err(anyhow::Error::from))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let preds = model.predict_images(&images, args.top_k)?;
        (
            args.inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            preds,
        )
    };
    for (name, p) in names.iter().zip(&preds) {
        match mode {
            Mode::Json => print_json(&json!({"input": name, "prediction": p}))?,
            Mode::Quiet => {}
            Mode::Human => match p {
                Prediction::Classes { top, .. } => {
                    let rest: Vec<String> =
                        top.iter().map(|(l, p)| format!("{l} {p:.4}")).collect();
                    println!("{name}: {}  ({})", top[0].0, rest.join(", "));
                }
                Prediction::Value { value } => println!("{name}: {value:.4}"),
            },
        }
    }
    Ok(())
}

fn schema_has(photon: &Photon, column: &str) -> bool {
    match photon.manifest().preprocessor.input_schema() {
        lepton_data::InputSchema::Tabular { columns } => columns.iter().any(|c| c.name == column),
        lepton_data::InputSchema::Image { .. } | lepton_data::InputSchema::Text { .. } => false,
    }
}

fn remote(url: &str, args: &PredictArgs, mode: Mode) -> anyhow::Result<()> {
    let model = args
        .model_name
        .as_deref()
        .expect("clap requires --model with --url");
    let endpoint = format!(
        "{}/v1/models/{model}/predict?top_k={}",
        url.trim_end_matches('/'),
        args.top_k
    );
    if !args.text.is_empty() {
        anyhow::ensure!(
            args.model.is_none() && args.inputs.is_empty(),
            "give either --text or image files, not both"
        );
        let body = json!({ "inputs": args.text }).to_string();
        let answer = post(&endpoint, args, "application/json", body.as_bytes())?;
        for (i, text) in args.text.iter().enumerate() {
            let p = &answer["predictions"][i];
            show(&format!("text[{i}]"), json!(text), p, mode)?;
        }
        return Ok(());
    }
    // With --url there is no model file: a first positional argument is an input too.
    let inputs: Vec<&std::path::PathBuf> = args.model.iter().chain(&args.inputs).collect();
    anyhow::ensure!(
        !inputs.is_empty(),
        "give image files or --text TEXT to send"
    );
    for path in inputs {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let ctype = if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("png"))
        {
            "image/png"
        } else {
            "image/jpeg"
        };
        let answer = post(&endpoint, args, ctype, &bytes)?;
        let name = path.display().to_string();
        match mode {
            Mode::Json => print_json(&json!({"input": path, "response": answer}))?,
            _ => show(&name, json!(path), &answer["predictions"][0], mode)?,
        }
    }
    Ok(())
}

/// POST `bytes` to `endpoint`; the answer's JSON, or an error with the server's message.
fn post(
    endpoint: &str,
    args: &PredictArgs,
    ctype: &str,
    bytes: &[u8],
) -> anyhow::Result<serde_json::Value> {
    let mut req = ureq::post(endpoint).header("content-type", ctype);
    if let Some(t) = &args.token {
        req = req.header("authorization", &format!("Bearer {t}"));
    }
    let mut resp = req
        .config()
        .http_status_as_error(false)
        .build()
        .send(bytes)
        .with_context(|| format!("POST {endpoint}"))?;
    let status = resp.status();
    let body: serde_json::Value = resp
        .body_mut()
        .read_json()
        .with_context(|| format!("reading the answer of {endpoint}"))?;
    anyhow::ensure!(
        status.is_success(),
        "{endpoint}: {status}: {}",
        body["error"].as_str().unwrap_or("error")
    );
    Ok(body)
}

/// Print one prediction of a server's answer.
fn show(
    name: &str,
    input: serde_json::Value,
    p: &serde_json::Value,
    mode: Mode,
) -> anyhow::Result<()> {
    match mode {
        Mode::Json => print_json(&json!({"input": input, "prediction": p}))?,
        Mode::Quiet => {}
        Mode::Human => {
            let rest: Vec<String> = p["top_k"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    format!(
                        "{} {:.4}",
                        s["label"].as_str().unwrap_or(""),
                        s["probability"].as_f64().unwrap_or(0.0)
                    )
                })
                .collect();
            println!(
                "{name}: {}  ({})",
                p["label"].as_str().unwrap_or("?"),
                rest.join(", ")
            );
        }
    }
    Ok(())
}
