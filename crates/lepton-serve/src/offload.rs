//! CPU-heavy request work (parsing large JSON bodies, decoding images, tokenizing prompts) off
//! the async runtime: on tokio's blocking threads, at most `limits.cpu-concurrency` jobs at
//! once, so health checks and cheap requests keep being answered while big ones are worked on.

use crate::error::ApiError;
use crate::state::AppState;

/// Run `f` on a blocking thread once a CPU permit is free; `what` names the work in errors.
/// A request that times out while its job runs leaves the job to finish (it holds its permit
/// until then, so the bound holds).
pub async fn run<T, F>(state: &AppState, what: &str, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let permit = state
        .inner
        .cpu
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::Overloaded("the server is shutting down".into()))?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        f()
    })
    .await
    .map_err(|e| ApiError::Internal(format!("{what}: {e}")))
}
