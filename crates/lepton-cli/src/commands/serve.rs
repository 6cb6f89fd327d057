//! `lepton serve FILE... [--config serve.toml] [--listen ADDR] [--insecure]`: `.photon` packages,
//! and language models (Hugging Face encoder or Llama folders, GGUF decoders) on the
//! OpenAI-compatible routes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use lepton_photon::serving::PhotonBackend;
use lepton_serve::{AppState, ServeConfig, Tokens};

use crate::cli::ServeArgs;

/// A model's API name: its file or folder name without the extension.
pub fn model_name(path: &Path) -> anyhow::Result<String> {
    Ok(path
        .file_stem()
        .and_then(|s| s.to_str())
        .with_context(|| format!("{}: no file name", path.display()))?
        .to_string())
}

fn is_photon(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "photon")
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let llms = args
        .models
        .iter()
        .filter(|p| !is_photon(p))
        .map(|p| Ok((model_name(p)?, p.clone())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    run_with(
        args,
        llms,
        lepton_llm::EngineConfig::default(),
        None,
        Vec::new(),
    )
}

/// Serve `args.models` (photons) and the language models `llms` (name, path); without a config
/// file, `timeout_ms` replaces the default per-request timeout.
pub fn run_with(
    args: ServeArgs,
    llms: Vec<(String, PathBuf)>,
    engine: lepton_llm::EngineConfig,
    timeout_ms: Option<u64>,
    adapters: Vec<(String, PathBuf)>,
) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(p) => ServeConfig::from_file(p).map_err(anyhow::Error::msg)?,
        None => ServeConfig::default(),
    };
    if let (None, Some(t)) = (&args.config, timeout_ms) {
        config.limits.request_timeout_ms = t;
    }
    if let Some(l) = &args.listen {
        config.listen = l
            .parse()
            .with_context(|| format!("--listen {l}: expected HOST:PORT, e.g. 127.0.0.1:8080"))?;
    }
    config.insecure |= args.insecure;
    anyhow::ensure!(
        !args.models.is_empty() || !llms.is_empty() || config.models_dir.is_some(),
        "give at least one .photon file or language model (or models-dir in the config for admin loads)"
    );
    let tokens = Tokens::load(
        config.auth.tokens_file.as_deref(),
        std::env::var("LEPTON_TOKENS").ok().as_deref(),
    )
    .map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let photons = lepton_serve::loader(|path, name| {
            PhotonBackend::open(path, name).map(|b| Arc::new(b) as Arc<dyn lepton_serve::Backend>)
        });
        let state = AppState::new(config, tokens, Some(photons));
        for (name, path) in llms {
            let (st, p, e) = (state.clone(), path.clone(), engine.clone());
            let queue = e.queue_capacity + e.max_batch;
            let model = tokio::task::spawn_blocking(move || lepton_llm::load_language_model(&p, e))
                .await?
                .with_context(|| format!("loading {}", path.display()))?;
            for (adapter, dir) in &adapters {
                let (m, a, d) = (model.clone(), adapter.clone(), dir.clone());
                tokio::task::spawn_blocking(move || m.load_adapter(&a, &d))
                    .await?
                    .map_err(|e| anyhow::anyhow!(e.chain()))
                    .with_context(|| format!("--lora {adapter}={}", dir.display()))?;
                tracing::info!(model = %name, adapter = %adapter, path = %dir.display(), "adapter loaded");
            }
            let task = model.info().task.as_str();
            st.inner.llms.insert(&name, model, queue);
            tracing::info!(model = %name, path = %path.display(), task, "language model loaded");
        }
        for path in args.models.iter().filter(|p| is_photon(p)) {
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .with_context(|| format!("{}: no file name", path.display()))?
                .to_string();
            let st = state.clone();
            let p = path.clone();
            let n = name.clone();
            tokio::task::spawn_blocking(move || st.load(&n, &p))
                .await?
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("loading {}", path.display()))?;
            tracing::info!(model = %name, path = %path.display(), "model loaded");
        }
        lepton_serve::serve(state).await.map_err(anyhow::Error::msg)
    })
}
