//! The `aws` source's `events_queue`: EC2 "Instance State-change Notification" events,
//! which an EventBridge rule delivers to an SQS queue, start a pass at once instead of at
//! the next poll.
//!
//! - The queue is long-polled (20 s, up to 10 messages a call) by the leader only: a
//!   follower would take events away from the controller that writes.
//! - EC2's API is eventually consistent: a state change can reach the queue before
//!   DescribeInstances shows it. The instances named are described again until each shows
//!   its latest event's state, for up to [`SETTLE_LIMIT`], and only then is the pass asked
//!   for; after the limit it is asked for anyway and polling is the safety net.
//! - A message is deleted only once the pass it triggered has finished. One that the
//!   controller could not finish with comes back after its visibility timeout (`VISIBILITY`); one that is no EC2
//!   state-change notification is left in the queue with a warning (a misrouted rule is
//!   the operator's to see, and a redrive policy to a dead-letter queue takes it).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_ec2::types::Filter;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::time::Instant;

use crate::clients::aws::{AwsAccess, explain, sdk_config};
use crate::trigger::{Cause, Trigger};

/// The `detail-type` of the events this consumes.
pub const DETAIL_TYPE: &str = "EC2 Instance State-change Notification";

/// How long one ReceiveMessage waits for a message (SQS's maximum).
const RECEIVE_WAIT: Duration = Duration::from_secs(20);

/// How long received messages stay hidden from other receives: long enough to settle and
/// run the pass they trigger.
const VISIBILITY: Duration = Duration::from_secs(120);

/// How long the instances of an event are described again before the pass is asked for
/// regardless.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(30);

/// The longest pause between two ReceiveMessage calls that failed.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(60);

/// One instance's state change, as EventBridge tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub instance_id: String,
    /// EC2's state name: pending, running, stopping, stopped, shutting-down, terminated.
    pub state: String,
    pub time: OffsetDateTime,
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "detail-type")]
    detail_type: Option<String>,
    source: Option<String>,
    time: Option<String>,
    detail: Option<RawDetail>,
}

#[derive(Deserialize)]
struct RawDetail {
    #[serde(rename = "instance-id")]
    instance_id: Option<String>,
    state: Option<String>,
}

/// The state change a message body holds: `Ok(None)` for a well-formed event of another
/// kind, an error for a body that is no EventBridge event or misses a field. Pure.
pub fn parse_notification(body: &str) -> Result<Option<StateChange>, String> {
    let event: RawEvent =
        serde_json::from_str(body).map_err(|e| format!("not an EventBridge event: {e}"))?;
    if event.source.as_deref() != Some("aws.ec2")
        || event.detail_type.as_deref() != Some(DETAIL_TYPE)
    {
        return Ok(None);
    }
    let detail = event.detail.ok_or("the event has no `detail`")?;
    let instance_id = detail
        .instance_id
        .filter(|id| !id.is_empty() && !id.chars().any(char::is_control))
        .ok_or("the event has no `detail.instance-id`")?;
    let state = detail
        .state
        .filter(|s| !s.is_empty() && !s.chars().any(char::is_control))
        .ok_or("the event has no `detail.state`")?;
    let time = event.time.ok_or("the event has no `time`")?;
    let time = OffsetDateTime::parse(&time, &Rfc3339)
        .map_err(|e| format!("the event's `time` {time:?} is no RFC 3339 time: {e}"))?;
    Ok(Some(StateChange {
        instance_id,
        state,
        time,
    }))
}

/// Each instance's latest state among `changes` (a standard queue does not keep order).
pub fn latest_states(changes: &[StateChange]) -> BTreeMap<&str, &str> {
    let mut latest: BTreeMap<&str, &StateChange> = BTreeMap::new();
    for change in changes {
        let entry = latest.entry(&change.instance_id).or_insert(change);
        if change.time > entry.time {
            *entry = change;
        }
    }
    latest
        .into_iter()
        .map(|(id, change)| (id, change.state.as_str()))
        .collect()
}

/// The instances whose described state (`described`: id → EC2 state name) does not show
/// their latest event yet. An instance EC2 no longer lists has settled only when its event
/// is its end.
pub fn unsettled<'a>(
    latest: &BTreeMap<&'a str, &str>,
    described: &BTreeMap<String, String>,
) -> Vec<&'a str> {
    latest
        .iter()
        .filter(|(id, state)| match described.get(**id) {
            Some(now) => now != *state,
            None => !matches!(**state, "shutting-down" | "terminated"),
        })
        .map(|(id, _)| *id)
        .collect()
}

/// Checks `events_queue`: an http(s) URL, and — for an AWS queue URL, which names its
/// region — one in the source's region, the only region whose EventBridge can deliver
/// the source's instances' events to it. Pure.
pub fn check_queue_url(text: &str, region: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| {
        format!(
            "{text:?} is not a URL ({e}); give the queue's URL, e.g. \"https://sqs.{region}.amazonaws.com/123456789012/ipdrift-events\""
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "{text:?} is not an http(s) URL; give the queue's URL, e.g. \"https://sqs.{region}.amazonaws.com/123456789012/ipdrift-events\""
        ));
    }
    let host = url.host_str().unwrap_or_default();
    let queue_region = host
        .strip_prefix("sqs.")
        .and_then(|rest| rest.split_once('.'))
        .or_else(|| host.split_once(".queue."))
        .map(|(region, _)| region)
        .filter(|_| host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn"));
    match queue_region {
        Some(queue_region) if queue_region != region => Err(format!(
            "the queue is in {queue_region} but the source lists {region}; EventBridge delivers an instance's events only to a queue in its own region"
        )),
        _ => Ok(()),
    }
}

/// The consumer of one source's queue, run as its watch.
pub struct EventQueue {
    pub source: String,
    pub queue_url: String,
    pub access: AwsAccess,
    /// `controller.timeout`: each EC2 call and the ReceiveMessage call beyond its wait.
    pub timeout: Duration,
}

impl EventQueue {
    /// Consumes the queue until the watch is dropped.
    pub async fn consume(self, trigger: Trigger) {
        let sqs =
            aws_sdk_sqs::Client::new(&sdk_config(&self.access, RECEIVE_WAIT + self.timeout).await);
        let ec2 = aws_sdk_ec2::Client::new(&sdk_config(&self.access, self.timeout).await);
        let mut failures: u32 = 0;
        loop {
            trigger.until_leading().await;
            let received = sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(RECEIVE_WAIT.as_secs() as i32)
                .visibility_timeout(VISIBILITY.as_secs() as i32)
                .send()
                .await;
            let messages = match received {
                Ok(output) => {
                    failures = 0;
                    output.messages.unwrap_or_default()
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let pause = retry_pause(failures);
                    tracing::warn!(
                        source = %self.source,
                        "events_queue: {}; polling goes on, trying the queue again in {}",
                        explain(&e, "ReceiveMessage", "sqs:ReceiveMessage"),
                        humantime::format_duration(pause)
                    );
                    tokio::time::sleep(pause).await;
                    continue;
                }
            };
            let mut changes = Vec::new();
            let mut handles = Vec::new();
            for message in &messages {
                let id = message.message_id().unwrap_or("?");
                match parse_notification(message.body().unwrap_or_default()) {
                    Ok(Some(change)) => {
                        changes.push(change);
                        handles.extend(message.receipt_handle().map(str::to_string));
                    }
                    Ok(None) => tracing::warn!(
                        source = %self.source,
                        message = id,
                        "events_queue: message {id} is no EC2 instance state-change notification; left in the queue (send only \"{DETAIL_TYPE}\" events from aws.ec2 to it)"
                    ),
                    Err(e) => tracing::warn!(
                        source = %self.source,
                        message = id,
                        "events_queue: message {id}: {e}; left in the queue"
                    ),
                }
            }
            if changes.is_empty() {
                continue;
            }
            self.settle(&ec2, &changes).await;
            let pass = trigger.fire(Cause::Source(self.source.clone()));
            tracing::info!(
                source = %self.source,
                pass,
                events = changes.len(),
                "events_queue: EC2 state change; pass asked for"
            );
            if trigger.finished(pass).await.is_err() {
                // Stopping: the messages come back after their visibility timeout.
                return;
            }
            self.delete(&sqs, handles).await;
        }
    }

    /// Describes the instances of `changes` until each shows its latest event's state, for
    /// up to [`SETTLE_LIMIT`].
    async fn settle(&self, ec2: &aws_sdk_ec2::Client, changes: &[StateChange]) {
        let latest = latest_states(changes);
        let ids: Vec<String> = latest.keys().map(|id| id.to_string()).collect();
        let deadline = Instant::now() + SETTLE_LIMIT;
        let mut pause = Duration::from_millis(200);
        loop {
            // What is still waited for, in words for the warning at the limit.
            let waiting = match self.described(ec2, &ids).await {
                Ok(described) => unsettled(&latest, &described).join(", "),
                Err(e) => format!("{} ({e})", ids.join(", ")),
            };
            if waiting.is_empty() {
                return;
            }
            if Instant::now() + pause > deadline {
                tracing::warn!(
                    source = %self.source,
                    "events_queue: EC2 does not show the announced state of {waiting} after {}; the pass runs anyway",
                    humantime::format_duration(SETTLE_LIMIT)
                );
                return;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    /// Each of `ids`' EC2 state name. A filter, not InstanceIds: an id EC2 no longer knows
    /// is left out instead of failing the call.
    async fn described(
        &self,
        ec2: &aws_sdk_ec2::Client,
        ids: &[String],
    ) -> Result<BTreeMap<String, String>, String> {
        let filter = Filter::builder()
            .name("instance-id")
            .set_values(Some(ids.to_vec()))
            .build();
        let mut pages = ec2
            .describe_instances()
            .filters(filter)
            .into_paginator()
            .send();
        let mut states = BTreeMap::new();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| explain(&e, "DescribeInstances", "ec2:DescribeInstances"))?;
            for instance in page.reservations().iter().flat_map(|r| r.instances()) {
                if let (Some(id), Some(state)) = (
                    instance.instance_id(),
                    instance.state().and_then(|s| s.name()),
                ) {
                    states.insert(id.to_string(), state.as_str().to_string());
                }
            }
        }
        Ok(states)
    }

    /// Deletes the messages a finished pass served.
    async fn delete(&self, sqs: &aws_sdk_sqs::Client, handles: Vec<String>) {
        let unique: BTreeSet<String> = handles.into_iter().collect();
        let mut request = sqs.delete_message_batch().queue_url(&self.queue_url);
        for (index, handle) in unique.into_iter().enumerate() {
            match aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                .id(index.to_string())
                .receipt_handle(handle)
                .build()
            {
                Ok(entry) => request = request.entries(entry),
                Err(e) => tracing::warn!(source = %self.source, "events_queue: {e}"),
            }
        }
        match request.send().await {
            Ok(output) => {
                for failed in output.failed() {
                    tracing::warn!(
                        source = %self.source,
                        "events_queue: a served message was not deleted ({}: {}); it comes back and starts one more pass",
                        failed.code(),
                        failed.message().unwrap_or_default()
                    );
                }
            }
            Err(e) => tracing::warn!(
                source = %self.source,
                "events_queue: {}; the served messages come back and start one more pass",
                explain(&e, "DeleteMessageBatch", "sqs:DeleteMessage")
            ),
        }
    }
}

/// The pause after `failures` ReceiveMessage calls failed in a row: 1 s, doubling, at most
/// [`MAX_RETRY_PAUSE`].
fn retry_pause(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(6)).min(MAX_RETRY_PAUSE)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of EC2's documentation ("State change events for Amazon EC2 instances").
    const DOCUMENTED: &str = r#"{
       "id":"7bf73129-1428-4cd3-a780-95db273d1602",
       "detail-type":"EC2 Instance State-change Notification",
       "source":"aws.ec2",
       "account":"123456789012",
       "time":"2021-11-11T21:29:54Z",
       "region":"us-east-1",
       "resources":["arn:aws:ec2:us-east-1:123456789012:instance/i-1234567890abcdef0"],
       "detail":{"instance-id":"i-1234567890abcdef0","state":"pending"}
    }"#;

    fn change(id: &str, state: &str, second: i64) -> StateChange {
        StateChange {
            instance_id: id.into(),
            state: state.into(),
            time: OffsetDateTime::from_unix_timestamp(1_700_000_000 + second).unwrap(),
        }
    }

    #[test]
    fn the_documented_event_is_a_state_change() {
        let change = parse_notification(DOCUMENTED).unwrap().unwrap();
        assert_eq!(change.instance_id, "i-1234567890abcdef0");
        assert_eq!(change.state, "pending");
        assert_eq!(change.time.unix_timestamp(), 1_636_666_194);
    }

    #[test]
    fn other_events_are_none_and_broken_ones_errors() {
        let other = DOCUMENTED.replace(
            "EC2 Instance State-change Notification",
            "EC2 Spot Instance Interruption Warning",
        );
        assert_eq!(parse_notification(&other), Ok(None));
        let s3 = r#"{"Service":"Amazon S3","Event":"s3:TestEvent"}"#;
        assert_eq!(parse_notification(s3), Ok(None));
        assert!(
            parse_notification("hello")
                .unwrap_err()
                .contains("not an EventBridge event")
        );
        let no_id = DOCUMENTED.replace("\"instance-id\":\"i-1234567890abcdef0\",", "");
        assert!(
            parse_notification(&no_id)
                .unwrap_err()
                .contains("instance-id")
        );
        let bad_time = DOCUMENTED.replace("2021-11-11T21:29:54Z", "yesterday");
        assert!(
            parse_notification(&bad_time)
                .unwrap_err()
                .contains("RFC 3339")
        );
    }

    #[test]
    fn the_latest_event_of_each_instance_counts_whatever_the_order() {
        let changes = [
            change("i-1", "running", 30),
            change("i-1", "stopped", 10),
            change("i-1", "pending", 20),
            change("i-2", "stopping", 5),
        ];
        let latest = latest_states(&changes);
        assert_eq!(latest.get("i-1"), Some(&"running"));
        assert_eq!(latest.get("i-2"), Some(&"stopping"));
    }

    #[test]
    fn an_instance_settles_when_described_in_its_latest_state() {
        let changes = [change("i-1", "running", 1), change("i-2", "terminated", 1)];
        let latest = latest_states(&changes);
        let described = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(id, s)| (id.to_string(), s.to_string()))
                .collect()
        };
        assert_eq!(
            unsettled(
                &latest,
                &described(&[("i-1", "pending"), ("i-2", "shutting-down")])
            ),
            ["i-1", "i-2"]
        );
        assert!(
            unsettled(&latest, &described(&[("i-1", "running")])).is_empty(),
            "a terminated instance EC2 no longer lists has settled"
        );
        let started = [change("i-3", "running", 1)];
        let running = latest_states(&started);
        assert_eq!(unsettled(&running, &described(&[])), ["i-3"]);
    }

    #[test]
    fn queue_urls_must_be_urls_in_the_sources_region() {
        assert_eq!(
            check_queue_url(
                "https://sqs.eu-west-1.amazonaws.com/123456789012/ipdrift",
                "eu-west-1"
            ),
            Ok(())
        );
        assert_eq!(
            check_queue_url("https://eu-west-1.queue.amazonaws.com/1/q", "eu-west-1"),
            Ok(())
        );
        assert_eq!(
            check_queue_url("http://127.0.0.1:5000/123456789012/q", "eu-west-1"),
            Ok(())
        );
        let other = check_queue_url(
            "https://sqs.us-east-1.amazonaws.com/123456789012/ipdrift",
            "eu-west-1",
        )
        .unwrap_err();
        assert!(
            other.contains("us-east-1") && other.contains("own region"),
            "{other}"
        );
        assert!(
            check_queue_url("ipdrift-events", "eu-west-1")
                .unwrap_err()
                .contains("not a URL")
        );
        assert!(
            check_queue_url("ftp://x/q", "eu-west-1")
                .unwrap_err()
                .contains("http(s)")
        );
    }

    #[test]
    fn failed_receives_back_off_to_a_minute() {
        assert_eq!(retry_pause(1), Duration::from_secs(1));
        assert_eq!(retry_pause(2), Duration::from_secs(2));
        assert_eq!(retry_pause(7), MAX_RETRY_PAUSE);
        assert_eq!(retry_pause(u32::MAX), MAX_RETRY_PAUSE);
    }
}
