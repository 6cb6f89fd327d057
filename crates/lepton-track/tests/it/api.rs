//! The dashboard's HTTP API, through the router without a socket.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use lepton_track::server::app;
use lepton_track::RunsDir;
use tower::ServiceExt;

use crate::support::{epoch_values, two_runs};

async fn get(runs: &RunsDir, uri: &str) -> (StatusCode, Vec<u8>, axum::http::HeaderMap) {
    let res = app(runs.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = axum::body::to_bytes(res.into_body(), 1 << 26)
        .await
        .unwrap();
    (status, body.to_vec(), headers)
}

async fn get_json(runs: &RunsDir, uri: &str) -> (StatusCode, serde_json::Value) {
    let (s, b, _) = get(runs, uri).await;
    (
        s,
        serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn runs_list_and_metrics_match_the_run_files() {
    let dir = two_runs();
    let runs = RunsDir::open(dir.path()).unwrap();
    let (status, list) = get_json(&runs, "/api/runs").await;
    assert_eq!(status, StatusCode::OK);
    let mut names: Vec<&str> = list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["iris-fast", "iris-slow"]);
    for r in list["runs"].as_array().unwrap() {
        assert_eq!(r["status"], "done");
        assert_eq!(r["epochs"], 6);
        assert_eq!(r["kind"], "mlp");
        assert!(
            r["photon_bytes"].is_null(),
            "lepton_train alone writes no photon"
        );
    }

    let (status, m) = get_json(&runs, "/api/runs/iris-fast/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let got: Vec<(u64, f64)> = m["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["epoch"].as_u64().unwrap(),
                e["values"]["val_loss"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, epoch_values(&dir.path().join("iris-fast"), "val_loss"));

    let (status, d) = get_json(&runs, "/api/runs/iris-slow").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(d["report_full"]["confusion"].as_array().unwrap().len(), 3);
    assert!(d["artifacts"]["plots"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == "confusion-matrix.png"));
    let (status, png, headers) = get(&runs, "/api/runs/iris-slow/files/confusion-matrix.png").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(&png[..4], b"\x89PNG");
}

#[tokio::test]
async fn metrics_tail_returns_only_new_lines() {
    let dir = two_runs();
    let runs = RunsDir::open(dir.path()).unwrap();
    let (_, first) = get_json(&runs, "/api/runs/iris-fast/metrics").await;
    let offset = first["offset"].as_u64().unwrap();
    let line = first["next_line"].as_u64().unwrap();
    // The trainer appends an epoch, the second half of it not yet flushed.
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("iris-fast/metrics.jsonl"))
        .unwrap();
    let appended = concat!(
        r#"{"kind":"epoch","epoch":6,"step":60,"val_loss":0.125}"#,
        "\n",
        r#"{"kind":"epo"#
    );
    f.write_all(appended.as_bytes()).unwrap();
    let (_, next) = get_json(
        &runs,
        &format!("/api/runs/iris-fast/metrics?since={offset}&line={line}"),
    )
    .await;
    assert_eq!(next["epochs"].as_array().unwrap().len(), 1, "{next}");
    assert_eq!(next["epochs"][0]["values"]["val_loss"], 0.125);
    assert!(next["steps"].as_array().unwrap().is_empty());
    assert_eq!(next["reset"], false);
    assert!(next["warnings"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn path_traversal_is_refused() {
    let dir = two_runs();
    std::fs::write(dir.path().join("secret.json"), "{\"token\": 1}").unwrap();
    let runs = RunsDir::open(&dir.path().join("iris-fast")).unwrap();
    // The runs directory is one run here ("."), its parent holds the secret.
    for uri in [
        "/api/runs/..",
        "/api/runs/..%2Firis-slow",
        "/api/runs/%2E%2E%2Firis-slow/metrics",
        "/api/runs/%2Fetc/metrics",
        "/api/runs/.%2F..%2Firis-slow",
    ] {
        let (status, body) = get_json(&runs, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(body["type"], "invalid_run_id", "{uri}");
    }
    for uri in [
        "/api/runs/./files/..%2Fsecret.json",
        "/api/runs/./files/../secret.json",
        "/api/runs/./files/%2E%2E/secret.json",
        "/api/runs/./files/best.safetensors",
        "/api/runs/./files/%2Fetc%2Fpasswd",
    ] {
        let (status, body, _) = get(&runs, uri).await;
        let text = String::from_utf8_lossy(&body);
        assert!(status.is_client_error(), "{uri}: {status} {text}");
        assert!(!text.contains("token"), "{uri} leaked the file");
    }
    let (status, _) = get_json(&runs, "/api/runs/./files/report.json").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn page_is_self_contained() {
    let dir = tempfile::tempdir().unwrap();
    let runs = RunsDir::open(dir.path()).unwrap();
    let (status, html, headers) = get(&runs, "/").await;
    assert_eq!(status, StatusCode::OK);
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("script-src 'self'"));
    let html = String::from_utf8(html).unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "external reference"
    );
    for asset in ["app.js", "style.css", "uPlot.iife.min.js", "uPlot.min.css"] {
        assert!(html.contains(&format!("/assets/{asset}")));
        let (status, body, _) = get(&runs, &format!("/assets/{asset}")).await;
        assert_eq!(status, StatusCode::OK, "{asset}");
        let text = String::from_utf8(body).unwrap();
        assert!(
            !text.contains("//cdn") && !text.contains("googleapis"),
            "{asset}"
        );
    }
    let (status, _, _) = get(&runs, "/assets/../Cargo.toml").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, list) = get_json(&runs, "/api/runs").await;
    assert_eq!(
        (status, list["runs"].as_array().unwrap().len()),
        (StatusCode::OK, 0)
    );
}

#[tokio::test]
async fn dns_rebinding_host_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let runs = RunsDir::open(dir.path()).unwrap();
    let call = |host: &'static str| {
        let runs = runs.clone();
        async move {
            app(runs)
                .oneshot(
                    Request::get("/api/runs")
                        .header("host", host)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(call("attacker.example:6006").await, StatusCode::FORBIDDEN);
    assert_eq!(call("127.0.0.1:6006").await, StatusCode::OK);
    assert_eq!(call("localhost:6006").await, StatusCode::OK);
}
