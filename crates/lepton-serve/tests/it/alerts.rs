//! The alert webhook: state changes are POSTed as JSON to a local receiver, failed deliveries are
//! retried, and neither a slow nor a dead receiver delays rule evaluation (hence requests).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use lepton_serve::alerts::Alerts;
use lepton_serve::ServeConfig;
use serde_json::Value;

use crate::{json_req, send, state_with, Fake};

#[derive(Default)]
struct Received {
    attempts: usize,
    accepted: Vec<Value>,
}

/// A webhook receiver on a free local port that answers 500 to its first `fail` requests.
async fn receiver(fail: usize) -> (String, Arc<Mutex<Received>>) {
    let got = Arc::new(Mutex::new(Received::default()));
    let g = Arc::clone(&got);
    let app = Router::new().route(
        "/hook",
        post(move |Json(v): Json<Value>| {
            let g = Arc::clone(&g);
            async move {
                let mut r = g.lock().unwrap();
                r.attempts += 1;
                if r.attempts <= fail {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                r.accepted.push(v);
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), got)
}

fn config(webhook: &str) -> ServeConfig {
    let mut cfg = ServeConfig::default();
    cfg.alerts.webhook = Some(webhook.to_string());
    cfg.alerts.latency_p99_ms = 0.0; // every request breaks the latency objective
    cfg.alerts.webhook_retries = 2;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_changes_are_posted_to_the_webhook_with_retries() {
    let (url, got) = receiver(1).await;
    let cfg = config(&url);
    let state = state_with(cfg.clone(), None, Arc::new(Fake::new(Duration::ZERO)));
    let mut alerts = Alerts::new(cfg.alerts.clone());

    let body = r#"{"inputs": [[1, 2, 3, 4]]}"#;
    let (status, _, _) = send(
        &state,
        json_req("POST", "/v1/models/fake/predict", body, None),
    )
    .await;
    assert_eq!(status, 200);
    let started = Instant::now();
    let fired = alerts.tick(&state);
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "evaluation must not wait for the webhook"
    );
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(
        (fired[0].rule, fired[0].state),
        ("LeptonLatencySLO", "firing")
    );
    assert!(fired[0].value > 0.0);
    assert!(alerts.tick(&state).iter().all(|e| e.state == "resolved"));

    // firing: 500 then 200 after a 250 ms back-off; resolved: 200.
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.lock().unwrap().accepted.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "webhook deliveries did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = got.lock().unwrap();
    assert_eq!(r.attempts, 3, "one retry after the 500");
    assert_eq!(r.accepted[0]["rule"], "LeptonLatencySLO");
    assert_eq!(r.accepted[0]["state"], "firing");
    assert_eq!(r.accepted[0]["threshold"], 0.0);
    assert!(r.accepted[0]["value"].as_f64().unwrap() > 0.0);
    assert!(r.accepted[0]["at"].as_u64().unwrap() > 0);
    assert_eq!(r.accepted[1]["state"], "resolved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_webhook_blocks_nothing() {
    // A port with nothing listening: every delivery attempt is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = config(&format!("http://127.0.0.1:{port}/hook"));
    let state = state_with(cfg.clone(), None, Arc::new(Fake::new(Duration::ZERO)));
    let mut alerts = Alerts::new(cfg.alerts.clone());
    for _ in 0..20 {
        let body = r#"{"inputs": [[1, 2, 3, 4]]}"#;
        let (status, _, _) = send(
            &state,
            json_req("POST", "/v1/models/fake/predict", body, None),
        )
        .await;
        assert_eq!(status, 200);
        let started = Instant::now();
        assert_eq!(alerts.tick(&state).len(), 1);
        alerts.tick(&state);
        assert!(started.elapsed() < Duration::from_millis(100));
    }
}

#[test]
fn webhook_must_be_plain_http() {
    let mut cfg = ServeConfig::default();
    cfg.alerts.webhook = Some("https://alerts.example/hook".into());
    assert!(cfg
        .validate()
        .unwrap_err()
        .to_string()
        .contains("alerts.webhook"));
    let cfg: ServeConfig =
        toml::from_str("[alerts]\nwebhook = \"http://127.0.0.1:9/x\"\nwebhook-retries = 1\n")
            .unwrap();
    cfg.validate().unwrap();
    assert_eq!(
        (cfg.alerts.webhook_retries, cfg.alerts.webhook_timeout_ms),
        (1, 2000)
    );
}
