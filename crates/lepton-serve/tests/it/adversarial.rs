//! Issue 12's adversarial cases (server side), each named after what broke. Connection-level
//! behaviour runs on real sockets on 127.0.0.1 through [`lepton_serve::server::serve_on`]; the
//! rest through the router. Every loop is bounded in count and time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use lepton_serve::llm::{GenerationEvent, LanguageModel, LlmInfo, LlmTask, SamplingParams};
use lepton_serve::{AppState, ServeConfig, Tokens};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::{json_req, send, state_with, Fake};

const WAIT: Duration = Duration::from_secs(5);

struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

async fn start(state: AppState) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(lepton_serve::server::serve_on(listener, state, async {
        let _ = rx.await;
    }));
    Server {
        addr,
        stop: Some(tx),
        done,
    }
}

/// Read a response head from `s` (within [`WAIT`]); its status, or 0 if the server closed first.
async fn read_status(s: &mut TcpStream) -> u16 {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let fut = async {
        loop {
            let n = s.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return 0;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]);
                return head[9..12].parse().unwrap();
            }
        }
    };
    tokio::time::timeout(WAIT, fut)
        .await
        .expect("no response in time")
}

/// Does the server close `s` within `within`? (Reads and drops anything it sends first.)
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut chunk = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

async fn get(addr: SocketAddr, path: &str) -> u16 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    read_status(&mut s).await
}

const BODY_ROUTES: [(&str, &str, &str); 6] = [
    ("POST", "/v1/models/fake/predict", "application/json"),
    ("POST", "/v2/models/fake/infer", "application/json"),
    ("POST", "/v1/admin/models", "application/json"),
    ("POST", "/v1/embeddings", "application/json"),
    ("POST", "/v1/completions", "application/json"),
    ("POST", "/v1/chat/completions", "application/json"),
];

/// Send a request head declaring `length` bytes and only `sent` of them, then wait.
async fn stalled_upload(
    addr: SocketAddr,
    (method, path, ctype): (&str, &str, &str),
    token: Option<&str>,
    length: u64,
    sent: usize,
) -> (u16, TcpStream) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n{auth}Content-Length: {length}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&vec![b' '; sent]).await.unwrap();
    let status = read_status(&mut s).await;
    (status, s)
}

/// Finding 1: the body routes read up to 8 MiB before checking the token, and a 2e9
/// Content-Length was held 10 s and answered 504.
#[tokio::test]
async fn bodies_are_refused_before_they_are_read_on_every_route() {
    let state = state_with(
        ServeConfig::default(),
        Some("predict-token-0001:predict"),
        Arc::new(Fake::new(Duration::ZERO)),
    );
    let srv = start(state).await;
    for route in BODY_ROUTES {
        // No token: 401 while the client is still 8 MiB short of its declared body.
        let (status, _s) = stalled_upload(srv.addr, route, None, 8 << 20, 1024).await;
        assert_eq!(status, 401, "{route:?}");
        // A token but an absurd length: 413 at once (never 504).
        let started = Instant::now();
        let admin = route.1.contains("admin");
        let token = if admin {
            None
        } else {
            Some("predict-token-0001")
        };
        let (status, _s) = stalled_upload(srv.addr, route, token, 2_000_000_000, 2).await;
        if admin {
            assert_eq!(status, 401, "{route:?}");
        } else {
            assert_eq!(status, 413, "{route:?}");
            assert!(started.elapsed() < WAIT, "{route:?}");
        }
    }
    // A token, a sane length, a text/plain body on a JSON route: 415 before the body.
    let (status, _s) = stalled_upload(
        srv.addr,
        ("POST", "/v1/completions", "text/plain"),
        Some("predict-token-0001"),
        1000,
        0,
    )
    .await;
    assert_eq!(status, 415);
}

/// Finding 1's class: a body that never arrives was answered 504 (a 5xx feeding the error-rate
/// alert) after the request timeout; it is the client's fault: 408.
#[tokio::test]
async fn a_body_that_never_arrives_gets_408_not_504() {
    let mut cfg = ServeConfig::default();
    cfg.limits.request_timeout_ms = 300;
    let srv = start(state_with(cfg, None, Arc::new(Fake::new(Duration::ZERO)))).await;
    let route = ("POST", "/v1/models/fake/predict", "application/json");
    let (status, _s) = stalled_upload(srv.addr, route, None, 100, 10).await;
    assert_eq!(status, 408);
}

/// Finding 2: idle and slowloris connections were never closed.
#[tokio::test]
async fn idle_and_slowloris_connections_are_closed_by_the_timeouts() {
    let mut cfg = ServeConfig::default();
    cfg.connections.idle_timeout_ms = 300;
    cfg.connections.header_read_timeout_ms = 500;
    let srv = start(state_with(cfg, None, Arc::new(Fake::new(Duration::ZERO)))).await;
    let mut idle = TcpStream::connect(srv.addr).await.unwrap();
    // A keep-alive connection that served one request, then idles.
    let mut reused = TcpStream::connect(srv.addr).await.unwrap();
    reused
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_status(&mut reused).await, 200);
    // Slowloris: one header byte every 100 ms, forever (bounded here to 5 s).
    let mut slow = TcpStream::connect(srv.addr).await.unwrap();
    let trickle = tokio::spawn(async move {
        let head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let started = Instant::now();
        for b in head.iter().cycle().take(50) {
            if slow.write_all(&[*b]).await.is_err() {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        started.elapsed()
    });
    assert!(
        closed_within(&mut idle, Duration::from_secs(3)).await,
        "idle connection kept open"
    );
    assert!(
        closed_within(&mut reused, Duration::from_secs(3)).await,
        "keep-alive connection kept open"
    );
    let lasted = trickle.await.unwrap();
    assert!(
        lasted < Duration::from_secs(3),
        "the slowloris connection lasted {lasted:?} (header timeout 500 ms)"
    );
    assert_eq!(get(srv.addr, "/healthz").await, 200);
}

/// Finding 2: `/healthz` must keep answering with many idle and slowloris connections open.
#[tokio::test]
async fn healthz_answers_under_idle_and_slowloris_connections() {
    let srv = start(state_with(
        ServeConfig::default(),
        None,
        Arc::new(Fake::new(Duration::ZERO)),
    ))
    .await;
    let mut held = Vec::new();
    for i in 0..300 {
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        if i % 4 == 0 {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 12")
                .await
                .unwrap();
        }
        held.push(s);
    }
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(get(srv.addr, "/healthz").await, 200);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    drop(held);
}

/// Finding 2: at the cap new clients must still get in; connections without a request in
/// progress make room.
#[tokio::test]
async fn at_the_connection_cap_idle_connections_make_room() {
    let mut cfg = ServeConfig::default();
    cfg.connections.max_connections = 8;
    let srv = start(state_with(cfg, None, Arc::new(Fake::new(Duration::ZERO)))).await;
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(srv.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(get(srv.addr, "/healthz").await, 200);
    let mut closed = 0;
    for s in &mut idle {
        if closed_within(s, Duration::from_millis(200)).await {
            closed += 1;
        }
    }
    assert!(closed >= 1, "no idle connection made room");
}

/// Finding 2: SIGTERM with half-sent requests did not exit within 40 s.
#[tokio::test]
async fn drain_closes_idle_and_half_sent_connections_and_finishes_requests() {
    let mut cfg = ServeConfig::default();
    cfg.connections.drain_timeout_ms = 1000;
    let state = state_with(cfg, None, Arc::new(Fake::new(Duration::from_millis(300))));
    let mut srv = start(state).await;
    let mut idle = TcpStream::connect(srv.addr).await.unwrap();
    let mut half = TcpStream::connect(srv.addr).await.unwrap();
    half.write_all(
        b"POST /v1/models/fake/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n",
    )
    .await
    .unwrap();
    let mut busy = TcpStream::connect(srv.addr).await.unwrap();
    let body = r#"{"inputs": [[1,2,3,4]]}"#;
    busy.write_all(format!("POST /v1/models/fake/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    srv.stop.take().unwrap().send(()).unwrap();
    assert!(closed_within(&mut idle, Duration::from_millis(500)).await);
    assert!(closed_within(&mut half, Duration::from_millis(500)).await);
    // The request in progress finishes.
    assert_eq!(read_status(&mut busy).await, 200);
    tokio::time::timeout(Duration::from_secs(2), &mut srv.done)
        .await
        .expect("serve_on did not return within the drain deadline + 1 s")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    // No longer accepting.
    assert!(TcpStream::connect(srv.addr).await.is_err());
}

/// The drain deadline closes what does not finish (a request slower than the deadline).
#[tokio::test]
async fn the_drain_deadline_closes_slow_requests() {
    let mut cfg = ServeConfig::default();
    cfg.connections.drain_timeout_ms = 300;
    let state = state_with(cfg, None, Arc::new(Fake::new(Duration::from_secs(3))));
    let mut srv = start(state).await;
    let mut busy = TcpStream::connect(srv.addr).await.unwrap();
    let body = r#"{"inputs": [[1,2,3,4]]}"#;
    busy.write_all(format!("POST /v1/models/fake/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    srv.stop.take().unwrap().send(()).unwrap();
    tokio::time::timeout(Duration::from_millis(1300), &mut srv.done)
        .await
        .expect("serve_on did not return within the drain deadline + 1 s")
        .unwrap();
    assert!(closed_within(&mut busy, Duration::from_millis(500)).await);
}

/// Finding 11: without tokens, rate limits were one global bucket.
#[tokio::test]
async fn rate_limits_are_per_client_address() {
    let mut cfg = ServeConfig::default();
    cfg.limits.rate_limit_per_sec = 0.5;
    cfg.limits.rate_limit_burst = 1.0;
    let srv = start(state_with(cfg, None, Arc::new(Fake::new(Duration::ZERO)))).await;
    let body = r#"{"inputs": [[1,2,3,4]]}"#;
    let predict = |from: &'static str| async move {
        let sock = TcpSocket::new_v4().unwrap();
        sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
        let mut s = sock.connect(srv.addr).await.unwrap();
        s.write_all(format!("POST /v1/models/fake/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes())
            .await
            .unwrap();
        read_status(&mut s).await
    };
    assert_eq!(predict("127.0.0.1").await, 200);
    assert_eq!(predict("127.0.0.1").await, 429);
    // Another address has its own bucket.
    assert_eq!(predict("127.0.0.2").await, 200);
}

#[tokio::test]
async fn forwarded_for_names_the_client_only_behind_a_trusted_proxy() {
    let mut cfg = ServeConfig::default();
    cfg.limits.rate_limit_per_sec = 0.5;
    cfg.limits.rate_limit_burst = 1.0;
    cfg.security.trusted_proxies = vec!["10.0.0.0/8".into()];
    cfg.validate().unwrap();
    let state = state_with(cfg, None, Arc::new(Fake::new(Duration::ZERO)));
    let req = |peer: &str, xff: &str| {
        let mut r = json_req(
            "POST",
            "/v1/models/fake/predict",
            r#"{"inputs": [[1,2,3,4]]}"#,
            None,
        );
        r.headers_mut()
            .insert("x-forwarded-for", xff.parse().unwrap());
        r.extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        r
    };
    // Two clients behind the proxy: separate buckets.
    assert_eq!(send(&state, req("10.0.0.1:5000", "1.1.1.1")).await.0, 200);
    assert_eq!(send(&state, req("10.0.0.1:5000", "2.2.2.2")).await.0, 200);
    assert_eq!(send(&state, req("10.0.0.1:5000", "1.1.1.1")).await.0, 429);
    // An untrusted peer cannot pick a fresh bucket by forging the header.
    assert_eq!(send(&state, req("5.5.5.5:5000", "3.3.3.3")).await.0, 200);
    assert_eq!(send(&state, req("5.5.5.5:5000", "4.4.4.4")).await.0, 429);
    let mut bad = ServeConfig::default();
    bad.security.trusted_proxies = vec!["proxy.internal".into()];
    assert!(bad
        .validate()
        .unwrap_err()
        .to_string()
        .contains("security.trusted-proxies[0]"));
}

/// Finding 6: without tokens, admin load accepted a text/plain POST from
/// `Origin: http://evil.example`, and any Host was accepted (DNS rebinding).
#[tokio::test]
async fn cross_origin_and_rebinding_requests_are_refused() {
    let state = state_with(
        ServeConfig::default(),
        None,
        Arc::new(Fake::new(Duration::ZERO)),
    );
    let admin = |origin: Option<&str>, host: &str, ctype: &str| {
        let mut b = Request::post("/v1/admin/models")
            .header("host", host)
            .header("content-type", ctype);
        if let Some(o) = origin {
            b = b.header("origin", o);
        }
        b.body(Body::from(r#"{"name": "x", "path": "m.photon"}"#))
            .unwrap()
    };
    let (s, _, body) = send(
        &state,
        admin(Some("http://evil.example"), "127.0.0.1:8080", "text/plain"),
    )
    .await;
    assert_eq!(s, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("Origin 'http://evil.example'"));
    // Same origin but a simple-request content type: 415 (and nothing loaded).
    let (s, _, _) = send(
        &state,
        admin(
            Some("http://localhost:8080"),
            "localhost:8080",
            "text/plain",
        ),
    )
    .await;
    assert_eq!(s, 415);
    let mut r = admin(None, "127.0.0.1:8080", "application/json");
    r.headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().unwrap());
    assert_eq!(send(&state, r).await.0, 403);
    // DNS rebinding: the attacker's name on a loopback server without tokens.
    let get = |host: &str| {
        Request::get("/v1/models")
            .header("host", host)
            .body(Body::empty())
            .unwrap()
    };
    let (s, _, body) = send(&state, get("evil.example:8080")).await;
    assert_eq!(s, 403);
    assert!(String::from_utf8_lossy(&body).contains("security.allowed-hosts"));
    assert_eq!(send(&state, get("localhost:8080")).await.0, 200);
    assert_eq!(send(&state, get("[::1]:8080")).await.0, 200);
    // Configured names and origins are accepted; with tokens the Host is not restricted.
    let mut cfg = ServeConfig::default();
    cfg.security.allowed_hosts = vec!["model.internal".into()];
    cfg.security.allowed_origins = vec!["https://ui.example".into()];
    let state = state_with(cfg, None, Arc::new(Fake::new(Duration::ZERO)));
    assert_eq!(send(&state, get("model.internal")).await.0, 200);
    let (s, _, _) = send(
        &state,
        admin(
            Some("https://ui.example"),
            "model.internal",
            "application/json",
        ),
    )
    .await;
    assert_eq!(
        s, 403,
        "admin without models-dir is still forbidden, but not for its origin"
    );
    let state = state_with(
        ServeConfig::default(),
        Some("tok-123456789012345:predict"),
        Arc::new(Fake::new(Duration::ZERO)),
    );
    let mut r = get("anything.example");
    r.headers_mut().insert(
        "authorization",
        "Bearer tok-123456789012345".parse().unwrap(),
    );
    assert_eq!(send(&state, r).await.0, 200);
}

async fn infer(state: &AppState, body: Vec<u8>, header_len: Option<usize>) -> (u16, String) {
    let mut b = Request::post("/v2/models/fake/infer");
    if let Some(n) = header_len {
        b = b.header("inference-header-content-length", n);
    }
    let (s, _, bytes) = send(state, b.body(Body::from(body)).unwrap()).await;
    (s, String::from_utf8_lossy(&bytes).into_owned())
}

/// Finding 10: v2 took INT8 = 1000.5 and BOOL = 255, ignored trailing binary data, and gave a
/// confusing message for `shape: []`.
#[tokio::test]
async fn v2_refuses_out_of_range_values_and_trailing_data() {
    let state = state_with(
        ServeConfig::default(),
        None,
        Arc::new(Fake::new(Duration::ZERO)),
    );
    let json_body = |dtype: &str, shape: Value, data: Value| {
        json!({"inputs": [{"name": "input", "shape": shape, "datatype": dtype, "data": data}]})
            .to_string()
            .into_bytes()
    };
    let (s, m) = infer(
        &state,
        json_body("INT8", json!([1, 4]), json!([1, 2, 3, 1000.5])),
        None,
    )
    .await;
    assert_eq!(s, 422, "{m}");
    assert!(m.contains("value 3 (1000.5) is not an integer"), "{m}");
    let (s, m) = infer(
        &state,
        json_body("INT8", json!([1, 4]), json!([1, 2, 3, 1000])),
        None,
    )
    .await;
    assert_eq!(s, 422);
    assert!(m.contains("INT8 range"), "{m}");
    let (s, m) = infer(
        &state,
        json_body("BOOL", json!([1, 4]), json!([1, 0, 255, 0])),
        None,
    )
    .await;
    assert_eq!(s, 422);
    assert!(m.contains("true/false"), "{m}");
    let (s, m) = infer(&state, json_body("FP32", json!([]), json!([1])), None).await;
    assert_eq!(s, 422);
    assert!(m.contains("shape [] is a scalar"), "{m}");
    // Binary BOOL 255, and 1 MiB after the declared tensor.
    let header = r#"{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "BOOL", "parameters": {"binary_data_size": 4}}]}"#;
    let mut body = header.as_bytes().to_vec();
    body.extend([1, 0, 255, 0]);
    let (s, m) = infer(&state, body, Some(header.len())).await;
    assert_eq!(s, 422);
    assert!(m.contains("byte 255"), "{m}");
    let mut body = header.as_bytes().to_vec();
    body.extend([1, 0, 1, 0]);
    body.extend(vec![0u8; 1 << 20]);
    let (s, m) = infer(&state, body, Some(header.len())).await;
    assert_eq!(s, 400);
    assert!(
        m.contains("1048576 bytes of binary data after the declared tensors"),
        "{m}"
    );
    // The binary size must match the shape (checked before decoding).
    let header = r#"{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP16", "parameters": {"binary_data_size": 6}}]}"#;
    let mut body = header.as_bytes().to_vec();
    body.extend([0u8; 6]);
    let (s, m) = infer(&state, body, Some(header.len())).await;
    assert_eq!(s, 422);
    assert!(m.contains("needs 8 bytes"), "{m}");
    // BF16 binary decodes.
    let header = r#"{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "BF16", "parameters": {"binary_data_size": 8}}]}"#;
    let mut body = header.as_bytes().to_vec();
    for _ in 0..4 {
        body.extend([0x80, 0x3f]);
    }
    let (s, m) = infer(&state, body, Some(header.len())).await;
    assert_eq!(s, 200, "{m}");
}

/// Finding 3: a 452-byte JPEG claiming 4000x4000 was decoded and answered 200.
#[tokio::test]
async fn a_tiny_jpeg_claiming_16_megapixels_gets_400() {
    let state = state_with(
        ServeConfig::default(),
        None,
        Arc::new(Fake::new(Duration::ZERO)),
    );
    let mut small = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageLuma8(image::ImageBuffer::new(8, 8))
        .write_to(&mut small, image::ImageFormat::Jpeg)
        .unwrap();
    let mut b = small.into_inner();
    let sof = b.windows(2).position(|m| m == [0xFF, 0xC0]).unwrap();
    b[sof + 5..sof + 7].copy_from_slice(&4000u16.to_be_bytes());
    b[sof + 7..sof + 9].copy_from_slice(&4000u16.to_be_bytes());
    let req = Request::post("/v1/models/fake/predict")
        .header("content-type", "image/jpeg")
        .body(Body::from(b))
        .unwrap();
    let (s, _, body) = send(&state, req).await;
    assert_eq!(s, 400, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("cannot hold"));
}

/// A generation model that records what it is asked and never answers (a queued request).
struct Recorder {
    info: LlmInfo,
    tokenized: AtomicUsize,
    params: Mutex<Vec<SamplingParams>>,
    held: Mutex<Vec<flume::Sender<GenerationEvent>>>,
}

impl Recorder {
    fn new(context_length: usize, max_prompt_bytes: usize) -> Arc<Self> {
        Arc::new(Recorder {
            info: LlmInfo {
                task: LlmTask::Generation,
                context_length,
                dimensions: 0,
                created: 1,
                max_prompt_bytes,
                precision: "f32".into(),
            },
            tokenized: AtomicUsize::new(0),
            params: Mutex::new(Vec::new()),
            held: Mutex::new(Vec::new()),
        })
    }
}

impl LanguageModel for Recorder {
    fn info(&self) -> &LlmInfo {
        &self.info
    }
    fn chat_prompt(
        &self,
        m: &[lepton_serve::llm::ChatMessage],
    ) -> Result<String, lepton_serve::InferError> {
        Ok(m.iter()
            .map(|m| m.content.clone())
            .collect::<Vec<_>>()
            .join("\n"))
    }
    fn count_tokens(&self, text: &str) -> Result<usize, lepton_serve::InferError> {
        self.tokenized.fetch_add(1, Ordering::SeqCst);
        Ok(text.split_whitespace().count())
    }
    fn generate(
        &self,
        _prompt: String,
        params: SamplingParams,
    ) -> Result<flume::Receiver<GenerationEvent>, lepton_serve::InferError> {
        self.tokenized.fetch_add(1, Ordering::SeqCst);
        self.params.lock().unwrap().push(params);
        let (tx, rx) = flume::unbounded();
        self.held.lock().unwrap().push(tx);
        Ok(rx)
    }
    fn stats(&self) -> Option<lepton_serve::llm::EngineStats> {
        // An engine that does not count what it holds back.
        Some(Default::default())
    }
}

fn llm_state(cfg: ServeConfig, model: Arc<Recorder>) -> AppState {
    let state = AppState::new(cfg, Tokens::load(None, None).unwrap(), None);
    state.inner.llms.insert("gen", model, 16);
    state
}

/// Finding 3: 7.6 MiB prompts were tokenized in full (17 s) before the context check.
#[tokio::test]
async fn long_prompts_are_refused_by_bytes_before_tokenization() {
    let model = Recorder::new(8192, 8192 * 64);
    let state = llm_state(ServeConfig::default(), model.clone());
    let prompt = "a ".repeat(3 << 20);
    for (uri, body) in [
        ("/v1/completions", json!({"model": "gen", "prompt": prompt})),
        (
            "/v1/chat/completions",
            json!({"model": "gen", "messages": [{"role": "user", "content": prompt}]}),
        ),
    ] {
        let started = Instant::now();
        let (s, v) = crate::openai::post(&state, uri, body).await;
        assert_eq!(s, 400, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("6291456 bytes of text, the limit is 524288"),
            "{v}"
        );
        assert!(started.elapsed() < WAIT);
    }
    assert_eq!(
        model.tokenized.load(Ordering::SeqCst),
        0,
        "tokenized before the byte check"
    );
}

/// Finding 4 (serve side): chat without max_tokens defaulted to the rest of the context.
#[tokio::test]
async fn chat_without_max_tokens_gets_the_engine_default_not_the_context() {
    let mut cfg = ServeConfig::default();
    // The recorder never answers: the request ends at the generation timeout.
    cfg.llm.stream_timeout_ms = 200;
    let model = Recorder::new(32768, usize::MAX);
    let state = llm_state(cfg, model.clone());
    let body = json!({"model": "gen", "messages": [{"role": "user", "content": "hi"}]});
    let (s, v) = crate::openai::post(&state, "/v1/chat/completions", body).await;
    assert_eq!(s, 504, "{v}");
    let p = model.params.lock().unwrap();
    assert_eq!(p[0].max_tokens, SamplingParams::default().max_tokens);
}

/// Finding 4 (serve side): queued streams got no SSE keep-alive, had no timeout, and the queue
/// metric showed 0 while a request waited.
#[tokio::test]
async fn queued_streams_get_keep_alives_time_out_and_count_in_the_queue() {
    use http_body_util::BodyExt;
    let mut cfg = ServeConfig::default();
    cfg.llm.keep_alive_ms = 50;
    cfg.llm.stream_timeout_ms = 400;
    let model = Recorder::new(4096, usize::MAX);
    let state = llm_state(cfg, model.clone());
    let body = json!({"model": "gen", "stream": true, "max_tokens": 8, "prompt": "hello"});
    let resp = tower::ServiceExt::oneshot(
        lepton_serve::app(state.clone()),
        json_req("POST", "/v1/completions", &body.to_string(), None),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let (_s, _, metrics) = send(&state, json_req("GET", "/metrics", "", None)).await;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("lepton_llm_queue_depth{model=\"gen\"} 1"),
        "{metrics}"
    );
    let text = tokio::time::timeout(WAIT, resp.into_body().collect())
        .await
        .expect("the stream did not end at its timeout")
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains(": keep-alive"), "{text}");
    assert!(text.contains("timed out after 400 ms"), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
}
