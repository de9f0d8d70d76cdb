//! Webhook notifications (`[[notify]]`): drift detected, repaired, repair failing for N
//! passes, guard refusals. Each webhook has its own bounded queue and delivery task, so a
//! dead or hanging receiver never slows the loop or another webhook: when a queue is full
//! the notice is dropped and counted. Each attempt has a timeout; failures that may pass
//! (connection errors, timeouts, 429, 5xx) are retried with exponential backoff.
//!
//! URLs are secrets (Slack's carry a token): logs name a webhook by its number and kind.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use futures_util::future::join_all;
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::audit::Event;
use crate::config::{NotifyConfig, NotifyKind};
use crate::metrics::{Metrics, ResultLabel};

/// Notices waiting per webhook; more are dropped.
pub const QUEUE_CAPACITY: usize = 64;
/// Retries after the first attempt.
const RETRIES: usize = 3;
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(500);

impl From<&crate::forecast::Forecast> for Notice {
    fn from(f: &crate::forecast::Forecast) -> Notice {
        Notice::ScheduledEvent {
            source: f.source.clone(),
            instance: f.instance.clone(),
            name: f.name.clone(),
            code: f.code.clone(),
            not_before: f.not_before,
            records: f.records.clone(),
            servers: f.servers.clone(),
        }
    }
}

/// Something worth telling a person.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Notice {
    DriftDetected {
        target: String,
        objects: Vec<String>,
    },
    Repaired {
        target: String,
        drift_seconds: f64,
    },
    RepairFailing {
        target: String,
        passes: u32,
        reason: String,
    },
    GuardRefused {
        guard: String,
        target: String,
        object: String,
        reason: String,
    },
    /// Announced maintenance that will change an instance's addresses (sent once per event).
    ScheduledEvent {
        source: String,
        instance: String,
        name: String,
        code: String,
        /// Unix seconds.
        not_before: u64,
        records: Vec<String>,
        servers: Vec<String>,
    },
}

impl Notice {
    /// The audit events that are also notices: drift detected, converged (repaired) and a
    /// new guard refusal.
    pub fn from_event(event: &Event) -> Option<Notice> {
        match event {
            Event::DriftDetected { target, objects } => Some(Notice::DriftDetected {
                target: target.clone(),
                objects: objects.clone(),
            }),
            Event::Converged {
                target,
                drift_seconds,
            } => Some(Notice::Repaired {
                target: target.clone(),
                drift_seconds: *drift_seconds,
            }),
            Event::GuardRefused {
                guard,
                target,
                object,
                reason,
            } => Some(Notice::GuardRefused {
                guard: guard.clone(),
                target: target.clone(),
                object: object.clone(),
                reason: reason.clone(),
            }),
            _ => None,
        }
    }

    /// One line for a chat message.
    pub fn text(&self) -> String {
        match self {
            Notice::DriftDetected { target, objects } => format!(
                "ipdrift: drift detected on {target}: {} object(s) out of sync: {}",
                objects.len(),
                objects.join(", ")
            ),
            Notice::Repaired {
                target,
                drift_seconds,
            } => format!(
                "ipdrift: {target} repaired, in sync again {} after the drift was seen",
                humantime::format_duration(Duration::from_millis((drift_seconds * 1000.0) as u64))
            ),
            Notice::RepairFailing {
                target,
                passes,
                reason,
            } => format!("ipdrift: repair of {target} failing for {passes} passes: {reason}"),
            Notice::GuardRefused {
                guard,
                target,
                object,
                reason,
            } => format!("ipdrift: guard {guard} refused to change {object} on {target}: {reason}"),
            Notice::ScheduledEvent {
                source,
                instance,
                name,
                code,
                not_before,
                records,
                servers,
            } => {
                let when = humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + Duration::from_secs(*not_before),
                );
                let affected: Vec<&str> =
                    records.iter().chain(servers).map(String::as_str).collect();
                format!(
                    "ipdrift: {code} of {name:?} ({instance}, {source}) not before {when} will change its addresses; depending on them: {}",
                    if affected.is_empty() {
                        "nothing ipdrift manages".to_string()
                    } else {
                        affected.join(", ")
                    }
                )
            }
        }
    }
}

/// The body posted to a webhook of `kind`.
pub fn payload(kind: NotifyKind, ts: OffsetDateTime, notice: &Notice) -> Value {
    match kind {
        NotifyKind::Slack => json!({ "text": notice.text() }),
        NotifyKind::Json => {
            let mut body = serde_json::to_value(notice).expect("notices always serialize");
            body["ts"] = json!(
                ts.format(&time::format_description::well_known::Rfc3339)
                    .expect("UTC times always format")
            );
            body["text"] = json!(notice.text());
            body
        }
    }
}

/// One webhook: its queue and the task that delivers from it.
struct Webhook {
    kind: NotifyKind,
    failing_passes: u32,
    queue: mpsc::Sender<Value>,
    task: JoinHandle<()>,
}

/// Sends notices to every configured webhook without ever waiting for one.
pub struct Notifier {
    webhooks: Vec<Webhook>,
    metrics: Arc<Metrics>,
}

/// Why one delivery attempt failed, and whether another may succeed.
#[derive(Debug)]
struct Failure {
    message: String,
    retry: bool,
}

impl Notifier {
    /// Starts a delivery task per webhook. Needs a tokio runtime.
    pub fn start(configs: &[NotifyConfig], metrics: Arc<Metrics>) -> anyhow::Result<Notifier> {
        crate::install_tls_provider();
        let mut webhooks = Vec::new();
        for (index, config) in configs.iter().enumerate() {
            let client = reqwest::Client::builder()
                .timeout(config.timeout)
                .user_agent(concat!("ipdrift/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| anyhow::anyhow!("notify[{}]: {}", index + 1, e.without_url()))?;
            let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
            let task = tokio::spawn(deliver(
                client,
                config.url.as_str().to_string(),
                format!("notify[{}] ({:?})", index + 1, config.kind).to_lowercase(),
                rx,
                metrics.clone(),
            ));
            webhooks.push(Webhook {
                kind: config.kind,
                failing_passes: config.failing_passes,
                queue,
                task,
            });
        }
        Ok(Notifier { webhooks, metrics })
    }

    /// Queues `notice` for every webhook that wants it; drops it where the queue is full.
    /// "Repair failing" goes out once per streak, when it reaches the webhook's threshold.
    pub fn notify(&self, ts: OffsetDateTime, notice: &Notice) {
        for webhook in &self.webhooks {
            if let Notice::RepairFailing { passes, .. } = notice
                && *passes != webhook.failing_passes
            {
                continue;
            }
            if webhook
                .queue
                .try_send(payload(webhook.kind, ts, notice))
                .is_err()
            {
                self.count("dropped");
            }
        }
    }

    fn count(&self, result: &str) {
        self.metrics
            .notifications
            .get_or_create(&ResultLabel {
                result: result.to_string(),
            })
            .inc();
    }

    /// Lets queued notices go out for up to `grace`, then stops the delivery tasks.
    pub async fn shutdown(self, grace: Duration) {
        join_all(self.webhooks.into_iter().map(|webhook| async move {
            drop(webhook.queue);
            let abort = webhook.task.abort_handle();
            if tokio::time::timeout(grace, webhook.task).await.is_err() {
                abort.abort();
            }
        }))
        .await;
    }
}

/// Delivers a webhook's notices one after another until its queue closes.
async fn deliver(
    client: reqwest::Client,
    url: String,
    name: String,
    mut queue: mpsc::Receiver<Value>,
    metrics: Arc<Metrics>,
) {
    let backoff = ExponentialBuilder::default()
        .with_min_delay(FIRST_RETRY_DELAY)
        .with_max_times(RETRIES)
        .with_jitter();
    while let Some(body) = queue.recv().await {
        let attempt = || post(&client, &url, &body);
        let result = attempt
            .retry(backoff)
            .when(|failure: &Failure| failure.retry)
            .notify(|failure: &Failure, delay: Duration| {
                tracing::debug!(webhook = %name, error = %failure.message, retry_in = ?delay, "webhook delivery failed; retrying");
            })
            .await;
        let outcome = match result {
            Ok(()) => "sent",
            Err(failure) => {
                tracing::warn!(webhook = %name, error = %failure.message, "webhook notification not delivered");
                "failed"
            }
        };
        metrics
            .notifications
            .get_or_create(&ResultLabel {
                result: outcome.to_string(),
            })
            .inc();
    }
}

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> Result<(), Failure> {
    let response = client
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|e| Failure {
            // Without the URL: it is a secret.
            message: e.without_url().to_string(),
            retry: true,
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    Err(Failure {
        message: format!("the webhook answered {status}"),
        retry: status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WebhookUrl;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    fn at(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
    }

    #[test]
    fn a_scheduled_event_notice_names_the_instance_and_what_depends_on_it() {
        let forecast = crate::forecast::Forecast {
            source: "aws".into(),
            instance: "i-1".into(),
            name: "web-01".into(),
            code: "instance-stop".into(),
            not_before: 1_800_000_000,
            description: "stop".into(),
            records: vec!["ns1: web-01.example.com. A".into()],
            servers: vec!["lb-01: web/web-01".into()],
            prepare_from: 1_800_000_000 - 600,
            record_keys: vec![],
            server_keys: vec![],
        };
        let notice = Notice::from(&forecast);
        let text = notice.text();
        assert!(
            text.contains("instance-stop of \"web-01\" (i-1, aws) not before 2027-01-15T08:00:00Z"),
            "{text}"
        );
        assert!(
            text.contains("ns1: web-01.example.com. A, lb-01: web/web-01"),
            "{text}"
        );
        let body = payload(NotifyKind::Json, OffsetDateTime::UNIX_EPOCH, &notice);
        assert_eq!(body["event"], "scheduled_event");
        assert_eq!(body["not_before"], 1_800_000_000);
    }

    #[test]
    fn payloads_for_slack_and_json() {
        let notice = Notice::DriftDetected {
            target: "ns1".into(),
            objects: vec!["www.example.com. A".into()],
        };
        let ts = at("2026-05-01T10:00:00Z");
        assert_eq!(
            payload(NotifyKind::Slack, ts, &notice),
            json!({"text": "ipdrift: drift detected on ns1: 1 object(s) out of sync: www.example.com. A"})
        );
        let body = payload(NotifyKind::Json, ts, &notice);
        assert_eq!(body["event"], "drift_detected");
        assert_eq!(body["ts"], "2026-05-01T10:00:00Z");
        assert_eq!(body["objects"][0], "www.example.com. A");
        let repaired = Notice::from_event(&Event::Converged {
            target: "lb-01".into(),
            drift_seconds: 2.5,
        })
        .unwrap();
        assert_eq!(
            repaired.text(),
            "ipdrift: lb-01 repaired, in sync again 2s 500ms after the drift was seen"
        );
        assert_eq!(
            Notice::from_event(&Event::Started {
                version: "1".into()
            }),
            None
        );
    }

    /// A loopback HTTP server that answers each request with the next status of `statuses`
    /// (200 once they run out) and records the bodies.
    async fn receiver(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<Value>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/hook/secret-token",
            listener.local_addr().unwrap()
        );
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        tokio::spawn(async move {
            let mut statuses = statuses.into_iter();
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                let body = loop {
                    let n = stream.read(&mut buf).await.unwrap();
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        if body.len() >= length {
                            break body.to_string();
                        }
                    }
                };
                seen.lock()
                    .unwrap()
                    .push(serde_json::from_str(&body).unwrap());
                let status = statuses.next().unwrap_or(200);
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                stream.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        (url, bodies)
    }

    fn config(url: &str, timeout: Duration) -> NotifyConfig {
        NotifyConfig {
            url: WebhookUrl::parse(url).unwrap(),
            kind: NotifyKind::Json,
            failing_passes: 2,
            timeout,
        }
    }

    fn counted(metrics: &Metrics, result: &str) -> u64 {
        metrics
            .notifications
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .get()
    }

    #[tokio::test]
    async fn retries_server_errors_and_sends_repair_failing_once_per_streak() {
        let metrics = Arc::new(Metrics::new(&[], &[], &[]));
        let (url, bodies) = receiver(vec![503]).await;
        let notifier =
            Notifier::start(&[config(&url, Duration::from_secs(5))], metrics.clone()).unwrap();
        let ts = at("2026-05-01T10:00:00Z");
        for passes in 1..=3 {
            notifier.notify(
                ts,
                &Notice::RepairFailing {
                    target: "ns1".into(),
                    passes,
                    reason: "NOTAUTH".into(),
                },
            );
        }
        notifier.shutdown(Duration::from_secs(10)).await;
        let bodies = bodies.lock().unwrap();
        // One notice (passes == 2), answered 503 once, then delivered.
        assert_eq!(bodies.len(), 2, "{bodies:?}");
        assert_eq!(bodies[1]["passes"], 2);
        assert_eq!(counted(&metrics, "sent"), 1);
        assert_eq!(counted(&metrics, "failed"), 0);
    }

    #[tokio::test]
    async fn a_hanging_webhook_never_blocks_and_overflow_is_dropped() {
        let metrics = Arc::new(Metrics::new(&[], &[], &[]));
        // Accepts connections and never answers.
        let hang = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", hang.local_addr().unwrap());
        let _hold = tokio::spawn(async move {
            let mut open = Vec::new();
            loop {
                open.push(hang.accept().await.unwrap());
            }
        });
        let notifier =
            Notifier::start(&[config(&url, Duration::from_millis(200))], metrics.clone()).unwrap();
        let notice = Notice::DriftDetected {
            target: "ns1".into(),
            objects: vec![],
        };
        let started = std::time::Instant::now();
        for _ in 0..QUEUE_CAPACITY + 10 {
            notifier.notify(at("2026-05-01T10:00:00Z"), &notice);
        }
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "notify waited"
        );
        assert!(counted(&metrics, "dropped") >= 9);
        let started = std::time::Instant::now();
        notifier.shutdown(Duration::from_millis(300)).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "shutdown waited"
        );
    }

    #[tokio::test]
    async fn client_errors_are_not_retried_and_errors_hide_the_url() {
        let metrics = Arc::new(Metrics::new(&[], &[], &[]));
        let (url, bodies) = receiver(vec![404]).await;
        let notifier =
            Notifier::start(&[config(&url, Duration::from_secs(5))], metrics.clone()).unwrap();
        notifier.notify(
            at("2026-05-01T10:00:00Z"),
            &Notice::Repaired {
                target: "ns1".into(),
                drift_seconds: 1.0,
            },
        );
        notifier.shutdown(Duration::from_secs(5)).await;
        assert_eq!(bodies.lock().unwrap().len(), 1);
        assert_eq!(counted(&metrics, "failed"), 1);

        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook/secret-token", closed.local_addr().unwrap());
        drop(closed);
        let client = reqwest::Client::new();
        let failure = post(&client, &url, &json!({})).await.unwrap_err();
        assert!(failure.retry);
        assert!(
            !failure.message.contains("secret-token"),
            "{}",
            failure.message
        );
    }
}
