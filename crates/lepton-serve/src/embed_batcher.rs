//! Dynamic batching of `/v1/embeddings`: the texts of requests that wait at the same time go
//! through the model in one call.
//!
//! One worker per embeddings model (started with its first request, ended when the model is
//! removed: the queue's sender lives in [`ServedLlm`](crate::llm::ServedLlm)). The worker takes
//! the first waiting request, adds every request already queued behind it up to
//! `llm.embedding-batch-texts` texts, and embeds them all on a blocking thread; it does not wait for
//! more, so a lone request pays no delay, and requests that arrive while a batch runs form the
//! next one. Each request gets its own vectors and token counts. When a batched call fails (one
//! request's text is too long, say), each request of the batch runs alone, so the error reaches the
//! request it belongs to, with its own input index, and the others are answered. A request whose
//! client went away before its batch started is skipped.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use lepton_infer::{Embedded, InferError, LanguageModel};

/// One request's texts and where its answer goes.
pub(crate) struct EmbedJob {
    pub texts: Vec<String>,
    pub reply: oneshot::Sender<Result<Embedded, InferError>>,
}

/// Start the worker of one model; `capacity` bounds the queue (the model's request slots, which
/// the route takes before queueing, so a send never waits long).
pub(crate) fn start(
    model: Arc<dyn LanguageModel>,
    max_texts: usize,
    capacity: usize,
    on_batch: impl Fn(usize) + Send + 'static,
) -> mpsc::Sender<EmbedJob> {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    tokio::spawn(worker(model, rx, max_texts.max(1), on_batch));
    tx
}

async fn worker(
    model: Arc<dyn LanguageModel>,
    mut rx: mpsc::Receiver<EmbedJob>,
    max_texts: usize,
    on_batch: impl Fn(usize) + Send + 'static,
) {
    let mut next: Option<EmbedJob> = None;
    loop {
        let first = match next.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => return, // the model was removed
            },
        };
        let mut texts = first.texts.len();
        let mut jobs = vec![first];
        while texts < max_texts {
            match rx.try_recv() {
                Ok(job) if texts + job.texts.len() <= max_texts => {
                    texts += job.texts.len();
                    jobs.push(job);
                }
                Ok(job) => {
                    next = Some(job); // heads the next batch
                    break;
                }
                Err(_) => break,
            }
        }
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        on_batch(jobs.iter().map(|j| j.texts.len()).sum());
        let model = Arc::clone(&model);
        // The batch's replies are sent from the blocking thread; the worker waits for it, so one
        // batch runs at a time per model (it already uses every core).
        let _ = tokio::task::spawn_blocking(move || run(model.as_ref(), jobs)).await;
    }
}

/// Embed the jobs' texts in one call and answer each; on failure, answer each alone.
fn run(model: &dyn LanguageModel, jobs: Vec<EmbedJob>) {
    if jobs.len() == 1 {
        let job = jobs.into_iter().next().expect("one job");
        let out = model.embed(&job.texts);
        let _ = job.reply.send(out);
        return;
    }
    let all: Vec<String> = jobs.iter().flat_map(|j| j.texts.iter().cloned()).collect();
    match model.embed(&all) {
        Ok(out) if out.vectors.len() == all.len() && out.tokens.len() == all.len() => {
            let mut vectors = out.vectors.into_iter();
            let mut tokens = out.tokens.into_iter();
            for job in jobs {
                let n = job.texts.len();
                let _ = job.reply.send(Ok(Embedded {
                    vectors: vectors.by_ref().take(n).collect(),
                    tokens: tokens.by_ref().take(n).collect(),
                }));
            }
        }
        _ => {
            for job in jobs {
                let out = model.embed(&job.texts);
                let _ = job.reply.send(out);
            }
        }
    }
}
