//! Dynamic batching of `/v1/embeddings`: requests that wait together go through the model in
//! one call, each gets exactly its own answer, a bad input fails only its own request, and a lone
//! request is not delayed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lepton_serve::llm::Embedded;
use lepton_serve::{AppState, InferError, LanguageModel, LlmInfo, LlmTask, ServeConfig, Tokens};
use serde_json::{json, Value};

use crate::openai::post;

/// Embeds text `t` as `[len(t), first byte]`, one token per character, taking `delay` per call;
/// records the texts of each call. A text containing "BAD" fails the call with the index of the
/// first such text, as a too-long input fails a real embedder.
struct SlowEmbedder {
    info: LlmInfo,
    delay: Duration,
    calls: Mutex<Vec<Vec<String>>>,
}

impl LanguageModel for SlowEmbedder {
    fn info(&self) -> &LlmInfo {
        &self.info
    }
    fn embed(&self, texts: &[String]) -> Result<Embedded, InferError> {
        self.calls.lock().unwrap().push(texts.to_vec());
        std::thread::sleep(self.delay);
        if let Some(i) = texts.iter().position(|t| t.contains("BAD")) {
            return Err(InferError::bad_request(
                "input",
                format!("input[{i}] is too long"),
            ));
        }
        Ok(Embedded {
            vectors: texts
                .iter()
                .map(|t| vec![t.len() as f32, t.as_bytes()[0] as f32])
                .collect(),
            tokens: texts.iter().map(|t| t.chars().count()).collect(),
        })
    }
}

fn state(delay: Duration, batch_texts: usize) -> (AppState, Arc<SlowEmbedder>) {
    let mut config = ServeConfig::default();
    config.llm.embedding_batch_texts = batch_texts;
    let state = AppState::new(config, Tokens::load(None, None).unwrap(), None);
    let model = Arc::new(SlowEmbedder {
        info: LlmInfo {
            task: LlmTask::Embeddings,
            context_length: 64,
            dimensions: 2,
            created: 1,
            max_prompt_bytes: usize::MAX,
            precision: "f32".into(),
        },
        delay,
        calls: Mutex::default(),
    });
    state.inner.llms.insert("emb", model.clone(), 64);
    (state, model)
}

fn vectors(v: &Value) -> Vec<Vec<f64>> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| serde_json::from_value(d["embedding"].clone()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_forward_calls_and_get_their_own_answers() {
    let (st, model) = state(Duration::from_millis(40), 64);
    let requests: Vec<Vec<String>> = (0..12)
        .map(|i| {
            (0..=(i % 3))
                .map(|j| format!("{}{}", "abcdefgh".repeat(j + 1), i))
                .collect()
        })
        .collect();
    let tasks: Vec<_> = requests
        .iter()
        .map(|texts| {
            let st = st.clone();
            let body = json!({"model": "emb", "input": texts});
            tokio::spawn(async move { post(&st, "/v1/embeddings", body).await })
        })
        .collect();
    for (texts, task) in requests.iter().zip(tasks) {
        let (s, v) = task.await.unwrap();
        assert_eq!(s, 200, "{v}");
        let want: Vec<Vec<f64>> = texts
            .iter()
            .map(|t| vec![t.len() as f64, t.as_bytes()[0] as f64])
            .collect();
        assert_eq!(vectors(&v), want, "request {texts:?}");
        let tokens: usize = texts.iter().map(|t| t.chars().count()).sum();
        assert_eq!(v["usage"]["prompt_tokens"], tokens);
        assert_eq!(
            v["data"].as_array().unwrap().last().unwrap()["index"],
            texts.len() - 1
        );
    }
    let calls = model.calls.lock().unwrap().clone();
    let texts: usize = calls.iter().map(Vec::len).sum();
    assert_eq!(texts, requests.iter().map(Vec::len).sum::<usize>());
    // The first request runs alone; the others queue behind it and are batched.
    assert!(
        calls.len() <= 4,
        "{} forward calls for 12 concurrent requests: {calls:?}",
        calls.len()
    );

    // The batch sizes are a metric.
    let (_, _, bytes) = crate::send(&st, crate::json_req("GET", "/metrics", "", None)).await;
    let m = String::from_utf8(bytes).unwrap();
    let want = format!(
        "lepton_llm_embedding_batch_texts_count{{model=\"emb\"}} {}",
        calls.len()
    );
    assert!(m.contains(&want), "missing {want} in\n{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_input_fails_only_its_own_request() {
    let (st, model) = state(Duration::from_millis(40), 64);
    // Occupy the worker so the next three requests are batched together.
    let first = {
        let st = st.clone();
        tokio::spawn(async move {
            post(&st, "/v1/embeddings", json!({"model": "emb", "input": "x"})).await
        })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    let bodies = [
        json!({"model": "emb", "input": ["good", "fine"]}),
        json!({"model": "emb", "input": ["ok", "BAD one"]}),
        json!({"model": "emb", "input": "also good"}),
    ];
    let tasks: Vec<_> = bodies
        .iter()
        .map(|b| {
            let (st, b) = (st.clone(), b.clone());
            tokio::spawn(async move { post(&st, "/v1/embeddings", b).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    assert_eq!(first.await.unwrap().0, 200);
    assert_eq!(out[0].0, 200, "{}", out[0].1);
    assert_eq!(vectors(&out[0].1), [[4.0, 103.0], [4.0, 102.0]]);
    assert_eq!(out[2].0, 200, "{}", out[2].1);
    // The failing request's error names its own input index (1), not the batch's.
    assert_eq!(out[1].0, 400, "{}", out[1].1);
    let msg = out[1].1["error"]["message"].as_str().unwrap();
    assert!(msg.contains("input[1] is too long"), "{msg}");
    let calls = model.calls.lock().unwrap().clone();
    assert!(
        calls.iter().any(|c| c.len() == 5),
        "the three requests were not batched: {calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_request_is_not_delayed_and_large_requests_are_not_split() {
    let (st, model) = state(Duration::ZERO, 3);
    let t = Instant::now();
    let (s, _) = post(
        &st,
        "/v1/embeddings",
        json!({"model": "emb", "input": "solo"}),
    )
    .await;
    assert_eq!(s, 200);
    assert!(t.elapsed() < Duration::from_secs(2));
    // 5 texts with a 3-text batch limit: one call of 5, never split.
    let (s, v) = post(
        &st,
        "/v1/embeddings",
        json!({"model": "emb", "input": ["a", "b", "c", "d", "e"]}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(vectors(&v).len(), 5);
    let calls = model.calls.lock().unwrap().clone();
    assert_eq!(calls.iter().map(Vec::len).collect::<Vec<_>>(), [1, 5]);
}
