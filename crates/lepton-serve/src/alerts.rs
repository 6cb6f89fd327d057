//! In-process alerting: the three rules of `deploy/prometheus-rules.yml` (latency SLO, error
//! rate, queue saturation), evaluated every `[alerts] interval-s` over the requests since the last
//! evaluation. Every change of a rule's state (firing, resolved) is logged and, when
//! `[alerts] webhook` is set, POSTed as JSON to it:
//!
//! ```json
//! {"rule": "LeptonLatencySLO", "state": "firing", "value": 312.5, "threshold": 250.0,
//!  "model": null, "summary": "p99 latency 312.5 ms > 250 ms", "at": 1764000000}
//! ```
//!
//! Deliveries run on one background thread fed by a bounded queue: request handling never waits
//! for the webhook. A delivery is retried `webhook-retries` times with doubling back-off after a
//! network error or a non-2xx answer; when the queue is full the event is dropped and logged.

use std::collections::BTreeMap;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::AlertConfig;
use crate::state::AppState;

/// Events waiting for the webhook thread beyond this are dropped.
const QUEUE: usize = 256;

/// One change of a rule's state, as POSTed to the webhook.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEvent {
    /// `LeptonLatencySLO`, `LeptonErrorRate` or `LeptonQueueSaturation`.
    pub rule: &'static str,
    /// `firing` or `resolved`.
    pub state: &'static str,
    /// The measured value: p99 ms, 5xx fraction, or queue fill fraction.
    pub value: f64,
    pub threshold: f64,
    /// The model, for per-model rules.
    pub model: Option<String>,
    pub summary: String,
    /// Seconds since the Unix epoch.
    pub at: u64,
}

/// One evaluation of one rule.
#[derive(Debug, Clone)]
struct Reading {
    rule: &'static str,
    model: Option<String>,
    value: f64,
    threshold: f64,
    firing: bool,
    summary: String,
}

/// The rules' current states and the webhook sender.
pub struct Alerts {
    cfg: AlertConfig,
    /// (rule, model) -> last state was firing.
    states: BTreeMap<(&'static str, Option<String>), bool>,
    webhook: Option<SyncSender<AlertEvent>>,
}

impl Alerts {
    /// Start the webhook thread when a webhook is configured.
    pub fn new(cfg: AlertConfig) -> Self {
        let webhook = cfg.webhook.clone().map(|url| {
            let (tx, rx) = sync_channel::<AlertEvent>(QUEUE);
            let (retries, timeout) = (cfg.webhook_retries, cfg.webhook_timeout_ms);
            std::thread::Builder::new()
                .name("lepton-alert-webhook".into())
                .spawn(move || {
                    for event in rx {
                        deliver(&url, &event, retries, timeout);
                    }
                })
                .expect("spawning the alert webhook thread");
            tx
        });
        Self {
            cfg,
            states: BTreeMap::new(),
            webhook,
        }
    }

    fn readings(&self, state: &AppState) -> Vec<Reading> {
        let cfg = &self.cfg;
        let (p99, errors, n) = state.inner.metrics.drain_window();
        let p99_ms = p99 * 1e3;
        let mut out = vec![
            Reading {
                rule: "LeptonLatencySLO",
                model: None,
                value: p99_ms,
                threshold: cfg.latency_p99_ms,
                firing: n > 0 && p99_ms > cfg.latency_p99_ms,
                summary: format!("p99 latency {p99_ms:.1} ms > {} ms", cfg.latency_p99_ms),
            },
            Reading {
                rule: "LeptonErrorRate",
                model: None,
                value: errors,
                threshold: cfg.error_rate,
                firing: n > 0 && errors > cfg.error_rate,
                summary: format!(
                    "{:.2}% of {n} responses were 5xx > {:.2}%",
                    errors * 100.0,
                    cfg.error_rate * 100.0
                ),
            },
        ];
        for (name, m) in state.inner.models.read().expect("models lock").iter() {
            let fill = m.batcher.queued() as f64 / m.batcher.capacity().max(1) as f64;
            out.push(Reading {
                rule: "LeptonQueueSaturation",
                model: Some(name.clone()),
                value: fill,
                threshold: cfg.queue_saturation,
                firing: fill > cfg.queue_saturation,
                summary: format!("queue of model {name} is {:.0}% full", fill * 100.0),
            });
        }
        out
    }

    /// Evaluate the rules once; log and send every state change. Returns the changes.
    pub fn tick(&mut self, state: &AppState) -> Vec<AlertEvent> {
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut events = Vec::new();
        for r in self.readings(state) {
            let was = self
                .states
                .insert((r.rule, r.model.clone()), r.firing)
                .unwrap_or(false);
            if was == r.firing {
                continue;
            }
            let event = AlertEvent {
                rule: r.rule,
                state: if r.firing { "firing" } else { "resolved" },
                value: r.value,
                threshold: r.threshold,
                model: r.model,
                summary: r.summary,
                at,
            };
            tracing::warn!(target: "alert", rule = event.rule, state = event.state, value = event.value,
                model = event.model.as_deref().unwrap_or(""), summary = %event.summary, "alert");
            if let Some(tx) = &self.webhook {
                match tx.try_send(event.clone()) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        tracing::error!(
                            rule = event.rule,
                            "alert webhook queue full: event dropped"
                        )
                    }
                    Err(TrySendError::Disconnected(_)) => {
                        tracing::error!(
                            rule = event.rule,
                            "alert webhook thread gone: event dropped"
                        )
                    }
                }
            }
            events.push(event);
        }
        events
    }
}

/// POST one event, retrying with doubling back-off (250 ms, 500 ms, ...).
fn deliver(url: &str, event: &AlertEvent, retries: u32, timeout_ms: u64) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_millis(timeout_ms)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut backoff = Duration::from_millis(250);
    for attempt in 0..=retries {
        let outcome = agent
            .post(url)
            .send_json(event)
            .map_err(|e| e.to_string())
            .and_then(|r| match r.status().as_u16() {
                200..=299 => Ok(()),
                s => Err(format!("answered {s}")),
            });
        match outcome {
            Ok(()) => {
                tracing::info!(
                    rule = event.rule,
                    state = event.state,
                    attempt,
                    "alert delivered to the webhook"
                );
                return;
            }
            Err(e) if attempt < retries => {
                tracing::warn!(rule = event.rule, error = %e, attempt, "alert webhook failed; retrying");
                std::thread::sleep(backoff);
                backoff *= 2;
            }
            Err(e) => {
                tracing::error!(rule = event.rule, error = %e, "alert webhook failed; giving up")
            }
        }
    }
}

/// Evaluate the rules every `interval-s` for the life of the server.
pub async fn run(state: AppState) {
    let cfg = state.inner.config.alerts.clone();
    let mut alerts = Alerts::new(cfg.clone());
    loop {
        tokio::time::sleep(Duration::from_secs(cfg.interval_s.max(1))).await;
        alerts.tick(&state);
    }
}
