//! The new decoder architectures through the CLI and the server unchanged (issue 14): `lepton
//! inspect` reports each random-weight GGUF file of `bench/llm/archs/` as runnable, and `lepton run`
//! serves the Qwen2 one on the OpenAI routes (chat through its default ChatML template).

use std::time::Duration;

use crate::support::{lepton, repo, s, Server};

#[test]
fn inspect_reports_every_new_architecture_as_runnable() {
    for arch in ["qwen2", "qwen3", "phi3", "gemma2", "gemma3"] {
        let file = repo().join(format!("bench/llm/archs/{arch}.gguf"));
        let v = lepton(&["--json", "inspect", s(&file)]).success().json();
        assert_eq!(v["architecture"], arch, "{v}");
        assert_eq!(v["supported"], true, "{arch}: {v}");
    }
}

#[test]
fn a_qwen2_file_is_served_on_the_openai_routes() {
    let file = repo().join("bench/llm/archs/qwen2.gguf");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &["run", s(&file), "--name", "qwen"],
        Duration::from_secs(60),
    );
    let base = server.base.clone();
    let post = |route: &str, body: serde_json::Value| -> serde_json::Value {
        ureq::post(&format!("{base}{route}"))
            .header("content-type", "application/json")
            .send(body.to_string())
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap()
    };
    let chat = post(
        "/v1/chat/completions",
        serde_json::json!({"model": "qwen", "max_tokens": 5, "temperature": 0,
            "messages": [{"role": "user", "content": "the word"}]}),
    );
    assert!(
        chat["choices"][0]["message"]["content"].is_string(),
        "{chat}"
    );
    assert_eq!(
        chat["usage"]["completion_tokens"].as_u64().map(|n| n <= 5),
        Some(true),
        "{chat}"
    );
    let done = post(
        "/v1/completions",
        serde_json::json!({"model": "qwen", "prompt": "the hot", "max_tokens": 4, "temperature": 0}),
    );
    assert!(done["choices"][0]["text"].is_string(), "{done}");
}
