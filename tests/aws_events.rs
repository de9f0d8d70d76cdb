//! The `aws` source's `events_queue` against a real moto server (EC2, SQS, Route 53) and
//! the real binary: an EventBridge-shaped "EC2 Instance State-change Notification" on the
//! queue starts a pass at once, long before the 10-minute poll, even when it arrives
//! before DescribeInstances shows the change; the message is deleted after that pass, and
//! a message of another kind is left in the queue.
#![cfg(feature = "aws")]

mod support;

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use support::controller::Controller;
use support::moto::{self, Moto, REGION};

const ZONE: &str = "example.test.";

/// An event exactly as EventBridge delivers it to an SQS target (the example of EC2's
/// documentation, "State change events for Amazon EC2 instances").
fn state_change(instance: &str, state: &str) -> String {
    serde_json::json!({
        "version": "0",
        "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": "123456789012",
        "time": "2026-12-03T07:00:00Z",
        "region": REGION,
        "resources": [format!("arn:aws:ec2:{REGION}:123456789012:instance/{instance}")],
        "detail": { "instance-id": instance, "state": state }
    })
    .to_string()
}

/// Messages in the queue, visible or not.
async fn messages_in(sqs: &aws_sdk_sqs::Client, queue: &str) -> u64 {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(queue)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    attributes
        .attributes()
        .into_iter()
        .flatten()
        .map(|(_, v)| v.parse::<u64>().unwrap())
        .sum()
}

async fn web_01(route53: &aws_sdk_route53::Client, zone_id: &str) -> Option<Vec<String>> {
    moto::records(route53, zone_id)
        .await
        .get(&(format!("web-01.{ZONE}"), "A".to_string()))
        .cloned()
}

/// Polls `route53` until web-01 holds `want`, for up to `limit`; returns how long it took.
async fn until_web_01_is(
    route53: &aws_sdk_route53::Client,
    zone_id: &str,
    want: &str,
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if web_01(route53, zone_id).await == Some(vec![want.to_string()]) {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_change_on_the_queue_repairs_at_once_and_is_deleted_after_its_pass() {
    let moto = Moto::start();
    let (ec2, route53, sqs) = (moto.ec2().await, moto.route53().await, moto.sqs().await);
    let zone_id = moto::hosted_zone(&route53, ZONE).await;
    let queue = sqs
        .create_queue()
        .queue_name("ipdrift-events")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let subnet = moto::public_subnet(&ec2).await;
    let web = moto::run_instance(&ec2, &subnet, &[("Name", "web-01"), ("role", "web")]).await;
    let before = moto::public_ips(&ec2, std::slice::from_ref(&web)).await[0].clone();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ipdrift.toml");
    std::fs::write(
        &config,
        format!(
            r#"[controller]
timeout = "5s"

[[inventory]]
name = "ec2"
kind = "aws"
region = "{REGION}"
endpoint = "{endpoint}"
events_queue = "{queue}"

[[dns]]
name = "r53"
kind = "route53"
zone = "{ZONE}"
endpoint = "{endpoint}"

[[record]]
dns = "r53"
name = "{{name}}.{ZONE}"
select = {{ tags = {{ role = "web" }} }}
address = "public_ipv4"
"#,
            endpoint = moto.endpoint()
        ),
    )
    .unwrap();
    let controller = Controller::start_every_configured(&config, "10m", moto::aws_test_env);
    assert!(
        until_web_01_is(&route53, &zone_id, &before, Duration::from_secs(30))
            .await
            .is_some(),
        "the first pass did not write web-01:\n{}",
        controller.log_text()
    );

    // A message of another kind: never a pass, never deleted.
    sqs.send_message()
        .queue_url(&queue)
        .message_body(r#"{"Service":"Amazon S3","Event":"s3:TestEvent"}"#)
        .send()
        .await
        .unwrap();
    // The "running" event arrives while EC2 still shows the instance stopped; the start
    // (a new public address) comes 2 s later.
    ec2.stop_instances()
        .instance_ids(&web)
        .send()
        .await
        .unwrap();
    sqs.send_message()
        .queue_url(&queue)
        .message_body(state_change(&web, "running"))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    ec2.start_instances()
        .instance_ids(&web)
        .send()
        .await
        .unwrap();
    let after = moto::public_ips(&ec2, std::slice::from_ref(&web)).await[0].clone();
    assert_ne!(before, after, "a stop and start gives a new public address");

    let took = until_web_01_is(&route53, &zone_id, &after, Duration::from_secs(20)).await;
    let log = controller.log_text();
    let took = took.unwrap_or_else(|| panic!("the event did not repair web-01:\n{log}"));
    eprintln!("start of the instance → web-01 repaired in Route 53: {took:?}");
    assert!(
        log.contains("EC2 state change; pass asked for"),
        "the pass was the event's, not the poll's:\n{log}"
    );
    let mut left = 0;
    for _ in 0..100 {
        left = messages_in(&sqs, &queue).await;
        if left == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        left, 1,
        "the served event is deleted, the other message left:\n{log}"
    );
    assert!(
        log.contains("is no EC2 instance state-change notification; left in the queue"),
        "{log}"
    );
    assert_eq!(
        controller.passes(),
        2,
        "the first pass and the event's:\n{log}"
    );
}

#[test]
fn check_config_names_an_events_queue_in_another_region() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ipdrift.toml");
    std::fs::write(
        &config,
        format!(
            "[[inventory]]\nname = \"ec2\"\nkind = \"aws\"\nregion = \"{REGION}\"\nevents_queue = \"https://sqs.ap-south-1.amazonaws.com/123456789012/q\"\n\n[[dns]]\nname = \"r53\"\nkind = \"route53\"\nzone = \"{ZONE}\"\n"
        ),
    )
    .unwrap();
    let output = moto::ipdrift(&config, &["check-config"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("events_queue")
            && stderr.contains("ap-south-1")
            && stderr.contains("ipdrift.toml:5:"),
        "{stderr}"
    );
}
