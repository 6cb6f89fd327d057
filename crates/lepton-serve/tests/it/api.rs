use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use lepton_serve::ServeConfig;
use serde_json::Value;

use crate::{json_req, send, state_with, Fake};

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::GrayImage::from_pixel(w, h, image::Luma([200]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[tokio::test]
async fn predict_json_image_and_multipart() {
    let state = state_with(
        ServeConfig::default(),
        None,
        Arc::new(Fake::new(Duration::ZERO)),
    );
    let (s, _, body) = send(
        &state,
        json_req(
            "POST",
            "/v1/models/fake/predict?top_k=2",
            r#"{"inputs": [[0, 0, 0, 0], [[255, 255], [255, 255]]]}"#,
            None,
        ),
    )
    .await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["predictions"][0]["probability"].as_f64().unwrap(), 0.5);
    assert_eq!(v["predictions"][1]["label"], "pos");
    assert_eq!(v["predictions"][1]["top_k"].as_array().unwrap().len(), 2);

    let req = Request::post("/v1/models/fake/predict")
        .header("content-type", "image/png")
        .body(Body::from(png(4, 4)))
        .unwrap();
    let (s, _, body) = send(&state, req).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));

    let boundary = "XyZ";
    let mut mp = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n").into_bytes();
    mp.extend(png(3, 3));
    mp.extend(format!("\r\n--{boundary}--\r\n").into_bytes());
    let req = Request::post("/v1/models/fake/predict")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(mp))
        .unwrap();
    let (s, _, body) = send(&state, req).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
}

#[tokio::test]
async fn tokens_scopes_and_status_codes() {
    let state = state_with(
        ServeConfig::default(),
        Some("pt:predict;at:admin"),
        Arc::new(Fake::new(Duration::ZERO)),
    );
    let body = r#"{"inputs": [[1, 2, 3, 4]]}"#;
    let (s, resp, _) = send(
        &state,
        json_req("POST", "/v1/models/fake/predict", body, None),
    )
    .await;
    assert_eq!(s, 401);
    assert!(resp.headers().get("www-authenticate").is_some());
    assert_eq!(
        send(
            &state,
            json_req("POST", "/v1/models/fake/predict", body, Some("wrong"))
        )
        .await
        .0,
        401
    );
    assert_eq!(
        send(
            &state,
            json_req("POST", "/v1/models/fake/predict", body, Some("pt"))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        send(
            &state,
            json_req(
                "POST",
                "/v1/admin/models",
                r#"{"name":"x","path":"y"}"#,
                Some("pt")
            )
        )
        .await
        .0,
        403
    );
    assert_eq!(
        send(
            &state,
            json_req("DELETE", "/v1/admin/models/nope", "", Some("at"))
        )
        .await
        .0,
        404
    );
    // Probes need no token.
    assert_eq!(
        send(&state, json_req("GET", "/healthz", "", None)).await.0,
        200
    );
    assert_eq!(
        send(&state, json_req("GET", "/v2/health/ready", "", None))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn bad_inputs_get_4xx_with_the_part_named() {
    let mut cfg = ServeConfig::default();
    cfg.limits.max_body_bytes = 4096;
    cfg.limits.max_image_side = 64;
    let state = state_with(cfg, None, Arc::new(Fake::new(Duration::ZERO)));
    let cases: Vec<(Request<Body>, u16, &str)> = vec![
        (
            json_req(
                "POST",
                "/v1/models/nope/predict",
                r#"{"inputs": [[1,2,3,4]]}"#,
                None,
            ),
            404,
            "nope",
        ),
        (
            json_req(
                "POST",
                "/v1/models/fake/predict",
                r#"{"inputs": [[1,2,3]]}"#,
                None,
            ),
            422,
            "inputs[0]",
        ),
        (
            json_req(
                "POST",
                "/v1/models/fake/predict",
                r#"{"inputs": [["a",2,3,4]]}"#,
                None,
            ),
            422,
            "inputs[0][0]",
        ),
        (
            json_req("POST", "/v1/models/fake/predict", r#"{"inputs": "#, None),
            400,
            "JSON",
        ),
        (
            json_req("POST", "/v1/models/fake/predict", r#"{"other": 1}"#, None),
            422,
            "inputs",
        ),
        (
            json_req(
                "POST",
                "/v1/models/fake/predict",
                &format!("{}1{}", "[".repeat(100), "]".repeat(100)),
                None,
            ),
            400,
            "depth",
        ),
        (
            json_req(
                "POST",
                "/v1/models/fake/predict",
                &format!(r#"{{"inputs": [[{}]]}}"#, vec!["1"; 3000].join(",")),
                None,
            ),
            413,
            "",
        ),
        (
            Request::post("/v1/models/fake/predict")
                .header("content-type", "image/png")
                .body(Body::from(png(100, 10)))
                .unwrap(),
            413,
            "100x10",
        ),
        (
            Request::post("/v1/models/fake/predict")
                .header("content-type", "image/png")
                .body(Body::from(png(8, 8)[..40].to_vec()))
                .unwrap(),
            400,
            "request body",
        ),
        (
            Request::post("/v1/models/fake/predict")
                .header("content-type", "text/plain")
                .body(Body::from("hi"))
                .unwrap(),
            415,
            "text/plain",
        ),
    ];
    for (req, want, needle) in cases {
        let uri = req.uri().clone();
        let (s, _, body) = send(&state, req).await;
        let text = String::from_utf8_lossy(&body);
        assert_eq!(s, want, "{uri}: {text}");
        assert!(
            text.contains(needle),
            "{uri}: {text} should mention {needle}"
        );
        let v: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| panic!("{uri}: body is not JSON: {text}"));
        assert!(v["error"].is_string() && v["type"].is_string());
    }
}

#[tokio::test]
async fn decompression_bomb_is_refused_from_the_header() {
    // A valid PNG header declaring 100000 x 100000 pixels with almost no data.
    let mut cfg = ServeConfig::default();
    cfg.limits.max_image_side = 4096;
    let state = state_with(cfg, None, Arc::new(Fake::new(Duration::ZERO)));
    let mut bomb = png(1, 1);
    bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let req = Request::post("/v1/models/fake/predict")
        .header("content-type", "image/png")
        .body(Body::from(bomb))
        .unwrap();
    let started = Instant::now();
    let (s, _, body) = send(&state, req).await;
    assert!(
        s == 413 || s == 400,
        "{s}: {}",
        String::from_utf8_lossy(&body)
    );
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn v2_infer_json_and_binary() {
    let state = state_with(
        ServeConfig::default(),
        None,
        Arc::new(Fake::new(Duration::ZERO)),
    );
    let req = r#"{"id": "7", "inputs": [{"name": "input", "shape": [1, 1, 2, 2], "datatype": "FP32", "data": [0, 0, 0, 0]}]}"#;
    let (s, _, body) = send(&state, json_req("POST", "/v2/models/fake/infer", req, None)).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["id"], "7");
    assert_eq!(v["outputs"][0]["shape"], serde_json::json!([1, 2]));
    assert_eq!(v["outputs"][0]["data"], serde_json::json!([0.5, 0.5]));
    // Binary input and output, as tritonclient sends them.
    let header = r#"{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "UINT8", "parameters": {"binary_data_size": 4}}], "outputs": [{"name": "output", "parameters": {"binary_data": true}}]}"#;
    let mut body = header.as_bytes().to_vec();
    body.extend([0u8, 0, 0, 0]);
    let req = Request::post("/v2/models/fake/infer")
        .header("inference-header-content-length", header.len())
        .body(Body::from(body))
        .unwrap();
    let (s, resp, body) = send(&state, req).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    let hlen: usize = resp.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let v: Value = serde_json::from_slice(&body[..hlen]).unwrap();
    assert_eq!(v["outputs"][0]["parameters"]["binary_data_size"], 8);
    assert_eq!(
        f32::from_le_bytes(body[hlen..hlen + 4].try_into().unwrap()),
        0.5
    );
    // Wrong shape and dtype.
    let bad = r#"{"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [0, 0, 0]}]}"#;
    assert_eq!(
        send(&state, json_req("POST", "/v2/models/fake/infer", bad, None))
            .await
            .0,
        422
    );
    let bad = r#"{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "BYTES", "data": [0, 0, 0, 0]}]}"#;
    assert_eq!(
        send(&state, json_req("POST", "/v2/models/fake/infer", bad, None))
            .await
            .0,
        422
    );
    let (s, _, body) = send(&state, json_req("GET", "/v2/models/fake", "", None)).await;
    assert_eq!(s, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["inputs"][0]["shape"],
        serde_json::json!([-1, 1, 2, 2])
    );
}

#[tokio::test]
async fn admin_refuses_path_traversal() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ServeConfig {
        models_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let state = state_with(cfg, Some("at:admin"), Arc::new(Fake::new(Duration::ZERO)));
    for path in ["../etc/passwd", "/etc/passwd", "a/../../x"] {
        let (s, _, body) = send(
            &state,
            json_req(
                "POST",
                "/v1/admin/models",
                &format!(r#"{{"name": "m", "path": "{path}"}}"#),
                Some("at"),
            ),
        )
        .await;
        assert_eq!(s, 400, "{path}: {}", String::from_utf8_lossy(&body));
    }
    std::os::unix::fs::symlink("/etc/hostname", dir.path().join("link.photon")).unwrap();
    let (s, _, _) = send(
        &state,
        json_req(
            "POST",
            "/v1/admin/models",
            r#"{"name": "m", "path": "link.photon"}"#,
            Some("at"),
        ),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        send(
            &state,
            json_req(
                "POST",
                "/v1/admin/models",
                r#"{"name": "../m", "path": "x"}"#,
                Some("at")
            )
        )
        .await
        .0,
        400
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_are_batched() {
    let mut cfg = ServeConfig::default();
    cfg.batching.max_wait_us = 50_000;
    cfg.batching.max_workers = 1;
    let fake = Arc::new(Fake::new(Duration::from_millis(5)));
    let state = state_with(cfg, None, fake.clone());
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let st = state.clone();
        tasks.push(tokio::spawn(async move {
            send(
                &st,
                json_req(
                    "POST",
                    "/v1/models/fake/predict",
                    r#"{"inputs": [[1,2,3,4]]}"#,
                    None,
                ),
            )
            .await
            .0
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let batches = fake.batches.lock().unwrap().clone();
    assert_eq!(batches.iter().sum::<usize>(), 8);
    assert!(
        batches.iter().any(|&b| b > 1),
        "no batch merged requests: {batches:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_sheds_load_fast_and_recovers() {
    let mut cfg = ServeConfig::default();
    cfg.batching.queue_capacity = 2;
    cfg.batching.max_batch_size = 1;
    cfg.batching.max_workers = 1;
    let state = state_with(cfg, None, Arc::new(Fake::new(Duration::from_millis(200))));
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let st = state.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let s = send(
                &st,
                json_req(
                    "POST",
                    "/v1/models/fake/predict",
                    r#"{"inputs": [[1,2,3,4]]}"#,
                    None,
                ),
            )
            .await
            .0;
            (s, t.elapsed())
        }));
    }
    let mut shed = 0;
    for t in tasks {
        let (s, took) = t.await.unwrap();
        if s == 503 {
            shed += 1;
            assert!(took < Duration::from_millis(100), "shedding took {took:?}");
        } else {
            assert_eq!(s, 200);
        }
    }
    assert!(shed >= 5, "only {shed} of 10 shed");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        send(
            &state,
            json_req(
                "POST",
                "/v1/models/fake/predict",
                r#"{"inputs": [[1,2,3,4]]}"#,
                None
            )
        )
        .await
        .0,
        200
    );
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let mut cfg = ServeConfig::default();
    cfg.limits.rate_limit_per_sec = 1.0;
    cfg.limits.rate_limit_burst = 2.0;
    let state = state_with(cfg, Some("pt:predict"), Arc::new(Fake::new(Duration::ZERO)));
    let mut codes = Vec::new();
    for _ in 0..4 {
        let (s, resp, _) = send(
            &state,
            json_req(
                "POST",
                "/v1/models/fake/predict",
                r#"{"inputs": [[1,2,3,4]]}"#,
                Some("pt"),
            ),
        )
        .await;
        if s == 429 {
            assert!(resp.headers().get("retry-after").is_some());
        }
        codes.push(s);
    }
    assert_eq!(codes, vec![200, 200, 429, 429]);
}

#[tokio::test]
async fn openapi_lists_every_route_and_metrics_count_requests() {
    let state = state_with(
        ServeConfig::default(),
        None,
        Arc::new(Fake::new(Duration::ZERO)),
    );
    let (s, _, body) = send(&state, json_req("GET", "/openapi.json", "", None)).await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    for p in [
        "/v1/models/{name}/predict",
        "/v2/models/{name}/infer",
        "/v1/admin/models",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(
            v["paths"].get(p).is_some(),
            "{p} missing from the OpenAPI document"
        );
    }
    send(
        &state,
        json_req(
            "POST",
            "/v1/models/fake/predict",
            r#"{"inputs": [[1,2,3,4]]}"#,
            None,
        ),
    )
    .await;
    let (_, _, body) = send(&state, json_req("GET", "/metrics", "", None)).await;
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("lepton_requests_total{model=\"fake\",route=\"/v1/models/{name}/predict\",status=\"200\"} 1"), "{text}");
    assert!(text.contains("lepton_workers{model=\"fake\"}"));
    assert!(text.contains("lepton_process_resident_memory_bytes"));
}
