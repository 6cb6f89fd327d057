//! The shipped deployment files agree with the server: Kubernetes probes hit real routes, the
//! ConfigMap's serve.toml parses, ports match, limits and the token Secret are set, and every
//! metric an alert rule reads is one the server exports.

use std::sync::Arc;
use std::time::Duration;

use lepton_serve::ServeConfig;
use serde::Deserialize;
use serde_norway::Value;

use crate::{json_req, send, state_with, Fake};

fn repo(path: &str) -> String {
    std::fs::read_to_string(format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn docs() -> Vec<Value> {
    serde_norway::Deserializer::from_str(&repo("deploy/k8s/lepton.yaml"))
        .map(|d| Value::deserialize(d).unwrap())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} in deploy/k8s/lepton.yaml"))
}

#[tokio::test]
async fn kubernetes_manifests_match_the_server() {
    let docs = docs();
    let config_text = find(&docs, "ConfigMap")["data"]["serve.toml"]
        .as_str()
        .unwrap()
        .to_string();
    let config: ServeConfig =
        toml::from_str(&config_text).expect("the ConfigMap's serve.toml must parse");
    config.validate().unwrap();
    let deploy = find(&docs, "Deployment");
    let c = &deploy["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["ports"][0]["containerPort"].as_u64().unwrap(),
        config.listen.port() as u64
    );
    assert!(
        !config.listen.ip().is_loopback(),
        "pods must listen on all interfaces"
    );
    assert!(
        c["resources"]["limits"]["cpu"].is_string()
            && c["resources"]["limits"]["memory"].is_string()
    );
    assert!(c["resources"]["requests"]["cpu"].is_string());
    let secret = find(&docs, "Secret")["metadata"]["name"].as_str().unwrap();
    assert_eq!(c["envFrom"][0]["secretRef"]["name"].as_str(), Some(secret));
    assert!(find(&docs, "Secret")["stringData"]["LEPTON_TOKENS"].is_string());
    assert_eq!(
        find(&docs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"],
        deploy["metadata"]["name"]
    );
    assert_eq!(
        find(&docs, "Service")["spec"]["selector"],
        deploy["spec"]["selector"]["matchLabels"]
    );

    let state = state_with(config, None, Arc::new(Fake::new(Duration::ZERO)));
    for probe in ["readinessProbe", "livenessProbe"] {
        let path = c[probe]["httpGet"]["path"].as_str().unwrap();
        assert_eq!(
            send(&state, json_req("GET", path, "", None)).await.0,
            200,
            "{probe} {path}"
        );
    }
    let scrape = deploy["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"]
        .as_str()
        .unwrap();
    assert_eq!(send(&state, json_req("GET", scrape, "", None)).await.0, 200);
}

#[tokio::test]
async fn alert_rules_read_exported_metrics() {
    let rules: Value = serde_norway::from_str(&repo("deploy/prometheus-rules.yml")).unwrap();
    let state = state_with(
        ServeConfig::default(),
        None,
        Arc::new(Fake::new(Duration::ZERO)),
    );
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
    let exported = String::from_utf8(body).unwrap();
    let rules = rules["groups"][0]["rules"].as_sequence().unwrap();
    assert_eq!(rules.len(), 3);
    for rule in rules {
        let expr = rule["expr"].as_str().unwrap();
        for word in expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("lepton_"))
        {
            assert!(
                exported.contains(word),
                "rule {} reads {word}, which /metrics does not export",
                rule["alert"].as_str().unwrap()
            );
        }
    }
}
