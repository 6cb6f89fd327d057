//! The dashboard in a real browser (issue 17, acceptance 3): headless Chromium, driven through
//! chromedriver's W3C WebDriver protocol, loads the page over a runs directory made by two short
//! trainings, checks the table and the plotted values, filters and sorts, follows a live update,
//! and saves a screenshot. Skips with a printed reason when `chromium`/`chromedriver` are absent
//! (Debian: `apt-get install -y chromium chromium-driver`).
//!
//! WebDriver is plain JSON over HTTP; the handful of calls below go through `ureq`, already in
//! the tree, rather than a WebDriver crate with its own HTTP and TLS stack to build in CI.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{epoch_values, two_runs};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn which(name: &str, env: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// chromedriver, killed on drop.
struct Driver {
    child: Child,
    base: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    fn start(path: &Path) -> Driver {
        let port = free_port();
        let child = Command::new(path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut r) = ureq::get(&format!("{}/status", driver.base)).call() {
                let v: Value = r.body_mut().read_json().unwrap();
                if v["value"]["ready"] == true {
                    return driver;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver not ready in 20 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// One WebDriver session.
struct Session<'a> {
    driver: &'a Driver,
    id: String,
}

impl Session<'_> {
    fn new<'a>(driver: &'a Driver, chromium: &Path) -> Session<'a> {
        let profile = tempfile::tempdir().unwrap().keep();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                // The flags that work on machines without network access or a display.
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                         format!("--user-data-dir={}", profile.display()),
                         "--window-size=1400,2200"],
            }
        }}});
        let v = post(&format!("{}/session", driver.base), &caps);
        Session {
            driver,
            id: v["sessionId"].as_str().expect("session id").to_owned(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.driver.base, self.id)
    }

    fn go(&self, url: &str) {
        post(&self.url("/url"), &json!({ "url": url }));
    }

    fn js(&self, script: &str) -> Value {
        post(
            &self.url("/execute/sync"),
            &json!({"script": script, "args": []}),
        )
    }

    fn element(&self, css: &str) -> String {
        let v = post(
            &self.url("/element"),
            &json!({"using": "css selector", "value": css}),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    fn click(&self, css: &str) {
        let e = self.element(css);
        post(&self.url(&format!("/element/{e}/click")), &json!({}));
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css);
        post(&self.url(&format!("/element/{e}/clear")), &json!({}));
        post(
            &self.url(&format!("/element/{e}/value")),
            &json!({ "text": text }),
        );
    }

    /// Poll `script` until it returns `true` (at most `secs` seconds).
    fn wait(&self, script: &str, secs: u64, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.js(script) != Value::Bool(true) {
            assert!(
                Instant::now() < deadline,
                "timed out after {secs} s waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&self, path: &Path) {
        let mut r = ureq::get(&self.url("/screenshot")).call().unwrap();
        let v: Value = r.body_mut().read_json().unwrap();
        std::fs::write(path, base64_decode(v["value"].as_str().unwrap())).unwrap();
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = ureq::delete(&format!("{}/session/{}", self.driver.base, self.id)).call();
    }
}

fn post(url: &str, body: &Value) -> Value {
    let mut r = ureq::post(url)
        .config()
        .http_status_as_error(false)
        .build()
        .send_json(body)
        .unwrap();
    let status = r.status();
    let v: Value = r.body_mut().read_json().unwrap();
    assert!(status.is_success(), "WebDriver {url}: {status} {v}");
    v["value"].clone()
}

/// Standard base64 (the screenshot), test-only.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("bad base64 byte {c}"),
    };
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|&c| c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk
            .iter()
            .fold(0u32, |acc, &c| (acc << 6) | val(c) as u32)
            << (6 * (4 - chunk.len()));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// The dashboard on a loopback port in a background runtime, until the sender drops.
fn serve(root: &Path) -> (String, tokio::sync::oneshot::Sender<()>) {
    let runs = lepton_track::RunsDir::open(root).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = lepton_track::server::bind("127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let shutdown = async {
                let _ = rx.await;
            };
            lepton_track::server::serve_on(runs, listener, shutdown)
                .await
                .unwrap();
        });
    });
    let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    (format!("http://{addr}/"), tx)
}

#[test]
fn dashboard_renders_runs_and_curves_in_chromium() {
    let (Some(chromium), Some(chromedriver)) = (
        which("chromium", "LEPTON_CHROMIUM"),
        which("chromedriver", "LEPTON_CHROMEDRIVER"),
    ) else {
        eprintln!(
            "SKIP dashboard_renders_runs_and_curves_in_chromium: chromium or chromedriver not on \
             PATH (apt-get install -y chromium chromium-driver)"
        );
        return;
    };
    let dir = two_runs();
    let (url, _stop) = serve(dir.path());
    let driver = Driver::start(&chromedriver);
    let s = Session::new(&driver, &chromium);
    s.go(&url);

    // The table: both runs, with their names and status.
    s.wait(
        "return document.querySelectorAll('#runs tbody tr').length === 2",
        20,
        "two rows",
    );
    let names = s.js("return [...document.querySelectorAll('#runs tbody tr td.name')].map(td => td.firstChild.nextSibling.textContent)");
    let mut names: Vec<String> = serde_json::from_value(names).unwrap();
    names.sort();
    assert_eq!(names, ["iris-fast", "iris-slow"]);
    let statuses = s
        .js("return [...document.querySelectorAll('#runs tbody .status')].map(e => e.textContent)");
    assert_eq!(statuses, json!(["done", "done"]));

    // The curves: the val_loss chart plots exactly each run's epoch values from metrics.jsonl.
    s.wait("return !!(window.leptonCharts && window.leptonCharts.val_loss && window.leptonCharts.val_loss.data[0].length === 6)", 20, "the val_loss chart");
    let chart = s.js("const u = window.leptonCharts.val_loss; return {x: u.data[0], series: u.series.slice(1).map((s, i) => ({label: s.label, y: u.data[i + 1]}))}");
    assert_eq!(chart["x"], json!([0, 1, 2, 3, 4, 5]));
    for series in chart["series"].as_array().unwrap() {
        let name = series["label"].as_str().unwrap();
        let want: Vec<f64> = epoch_values(&dir.path().join(name), "val_loss")
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        let got: Vec<f64> = serde_json::from_value(series["y"].clone()).unwrap();
        assert_eq!(got, want, "val_loss of {name}");
    }
    // ... and drew them: pixels of the first series' colour on the canvas.
    let drawn = s.js(r#"
        const c = document.querySelector('.chart[data-metric="val_loss"] canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4)
          if (Math.abs(d[i] - 0x6e) < 24 && Math.abs(d[i + 1] - 0xa8) < 24 && Math.abs(d[i + 2] - 0xfe) < 24) n++;
        return n;"#);
    assert!(
        drawn.as_u64().unwrap() > 100,
        "the series was not drawn ({drawn} pixels)"
    );
    let last = s.js("return [...document.querySelectorAll('#last-values tr[data-metric=val_accuracy]')].map(r => [r.children[0].textContent, Number(r.dataset.value)])");
    for pair in last.as_array().unwrap() {
        let name = pair[0].as_str().unwrap();
        let want = epoch_values(&dir.path().join(name), "val_accuracy")
            .last()
            .unwrap()
            .1;
        assert_eq!(
            pair[1].as_f64().unwrap(),
            want,
            "last val_accuracy of {name}"
        );
    }
    assert_eq!(last.as_array().unwrap().len(), 2);

    // The focused run's confusion matrix.
    s.wait(
        "return document.querySelectorAll('#confusion table.cm tbody tr').length === 3",
        10,
        "the confusion matrix",
    );

    // Filter, then sort by name both ways.
    s.type_into("#filter", "slow");
    s.wait(
        "return document.querySelectorAll('#runs tbody tr').length === 1",
        5,
        "the filter",
    );
    assert_eq!(
        s.js("return document.querySelector('#runs tbody tr').dataset.id"),
        json!("iris-slow")
    );
    s.type_into("#filter", "");
    s.wait(
        "return document.querySelectorAll('#runs tbody tr').length === 2",
        5,
        "the cleared filter",
    );
    let order = "return [...document.querySelectorAll('#runs tbody tr')].map(r => r.dataset.id)";
    s.click("#runs th[data-key=name]");
    assert_eq!(s.js(order), json!(["iris-fast", "iris-slow"]));
    s.click("#runs th[data-key=name]");
    assert_eq!(s.js(order), json!(["iris-slow", "iris-fast"]));

    // Live: an epoch appended to metrics.jsonl shows up in the chart without a reload.
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("iris-fast/metrics.jsonl"))
        .unwrap();
    writeln!(f, r#"{{"kind":"epoch","epoch":6,"step":48,"best":false,"val_loss":0.0625,"val_accuracy":0.5}}"#).unwrap();
    s.wait("return window.leptonCharts.val_loss.data[0].length === 7 && window.leptonCharts.val_loss.data.slice(1).some(y => y[6] === 0.0625)", 15, "the live update");

    // A run that failed says why: the table's status carries the error as its tooltip, and the
    // run's detail shows it in full (the trainer's status.json, rewritten here as a crash would).
    let error = "reading data/tabular/iris.csv: line 7: expected 5 fields, found 3";
    std::fs::write(
        dir.path().join("iris-slow/status.json"),
        json!({"state": "failed", "pid": 1, "updated": 0, "error": error}).to_string(),
    )
    .unwrap();
    s.wait(
        "return [...document.querySelectorAll('#runs tbody .status')].some(e => e.textContent === 'failed')",
        15,
        "the failed status",
    );
    assert_eq!(
        s.js("return document.querySelector('#runs tbody tr[data-id=iris-slow] .status').title"),
        json!(error)
    );
    s.click("#runs tbody tr[data-id=iris-slow] td.name");
    s.wait(
        "const e = document.querySelector('#detail-error'); return !!e && !e.hidden && e.textContent.includes('expected 5 fields')",
        10,
        "the failed run's error in its detail",
    );
    s.click("#runs tbody tr[data-id=iris-fast] td.name");
    s.wait(
        "return document.querySelector('#detail-error').hidden",
        10,
        "no error shown for a run that did not fail",
    );

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lepton-track-dashboard.png");
    s.screenshot(&shot);
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");
    eprintln!("dashboard screenshot: {}", shot.display());
}
