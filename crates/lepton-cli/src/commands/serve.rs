//! `lepton serve FILE... [--config serve.toml] [--listen ADDR] [--insecure]`.

use anyhow::Context;
use lepton_serve::photon::PhotonBackend;
use lepton_serve::{AppState, ServeConfig, Tokens};

use crate::cli::ServeArgs;

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(p) => ServeConfig::from_file(p).map_err(anyhow::Error::msg)?,
        None => ServeConfig::default(),
    };
    if let Some(l) = &args.listen {
        config.listen = l
            .parse()
            .with_context(|| format!("--listen {l}: expected HOST:PORT, e.g. 127.0.0.1:8080"))?;
    }
    config.insecure |= args.insecure;
    anyhow::ensure!(
        !args.models.is_empty() || config.models_dir.is_some(),
        "give at least one .photon file (or models-dir in the config for admin loads)"
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
        let state = AppState::new(config, tokens, Some(PhotonBackend::loader()));
        for path in &args.models {
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
