//! A real `moto_server` (a local AWS, PyPI `moto[server]`) on a free loopback port, killed
//! when dropped, with SDK clients for setting up instances and hosted zones, and the
//! ipdrift binary run against it with test credentials.
//!
//! [`EventProxy`] stands between ipdrift and moto to add what moto does not implement:
//! scheduled events in DescribeInstanceStatus (moto answers none), and `IpOwnerId`
//! "amazon" for public addresses EC2 assigned (moto puts the account id on every public
//! address, as if each were an Elastic IP).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType, Tag, TagSpecification};
use tempfile::TempDir;

pub const REGION: &str = "eu-west-1";
/// moto's account id.
pub const ACCOUNT: &str = "123456789012";

/// The path of `name`: on PATH (pyenv shims included) or in the usual directories.
fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let home = std::env::var_os("HOME").map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(home.map(|h| h.join(".pyenv/shims")))
        .chain(["/usr/local/bin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A running `moto_server -H 127.0.0.1 -p PORT`.
pub struct Moto {
    dir: TempDir,
    port: u16,
    child: Child,
}

impl Moto {
    /// Starts moto and waits until it answers; panics (never skips) when it is missing.
    pub fn start() -> Moto {
        let binary = find_binary("moto_server").unwrap_or_else(|| {
            panic!(
                "`moto_server` is not installed; install it with: python3 -m pip install 'moto[server]' (scripts/test does this)"
            )
        });
        let dir = tempfile::Builder::new()
            .prefix("ipdrift-moto-")
            .tempdir()
            .unwrap();
        let port = super::free_port();
        let log = File::create(dir.path().join("moto.log")).unwrap();
        let child = Command::new(binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start moto_server");
        let mut moto = Moto { dir, port, child };
        let child = &mut moto.child;
        let ready = super::wait_until(Duration::from_secs(30), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("moto_server exited with {status} at start");
            }
            http(port, "GET", "/moto-api/", "").is_some_and(|(status, _)| status == 200)
        });
        assert!(
            ready,
            "moto_server did not answer within 30s:\n{}",
            moto.log()
        );
        moto.reset();
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Forgets every resource (`POST /moto-api/reset`).
    pub fn reset(&self) {
        let answer = http(self.port, "POST", "/moto-api/reset", "");
        assert_eq!(answer.map(|a| a.0), Some(200), "moto reset failed");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    async fn sdk_config(&self) -> aws_config::SdkConfig {
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(self.endpoint())
            .http_client(http_client)
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "testing", "testing", None, None, "moto",
            ))
            .load()
            .await
    }

    pub async fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk_config().await)
    }

    pub async fn route53(&self) -> aws_sdk_route53::Client {
        aws_sdk_route53::Client::new(&self.sdk_config().await)
    }

    pub async fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk_config().await)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A subnet that gives each instance a public address EC2 assigns (released on stop).
pub async fn public_subnet(ec2: &aws_sdk_ec2::Client) -> String {
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.20.0.0/16")
        .send()
        .await
        .unwrap();
    let subnet = ec2
        .create_subnet()
        .vpc_id(vpc.vpc().unwrap().vpc_id().unwrap())
        .cidr_block("10.20.1.0/24")
        .send()
        .await
        .unwrap();
    let subnet_id = subnet.subnet().unwrap().subnet_id().unwrap().to_string();
    ec2.modify_subnet_attribute()
        .subnet_id(&subnet_id)
        .map_public_ip_on_launch(AttributeBooleanValue::builder().value(true).build())
        .send()
        .await
        .unwrap();
    subnet_id
}

/// Runs one instance in `subnet` with these tags; returns its id.
pub async fn run_instance(
    ec2: &aws_sdk_ec2::Client,
    subnet: &str,
    tags: &[(&str, &str)],
) -> String {
    let mut spec = TagSpecification::builder().resource_type(ResourceType::Instance);
    for (key, value) in tags {
        spec = spec.tags(Tag::builder().key(*key).value(*value).build());
    }
    let out = ec2
        .run_instances()
        .image_id("ami-12c6146b")
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .subnet_id(subnet)
        .tag_specifications(spec.build())
        .send()
        .await
        .unwrap();
    out.instances()[0].instance_id().unwrap().to_string()
}

/// The public IPv4 address of each of `ids`, in that order.
pub async fn public_ips(ec2: &aws_sdk_ec2::Client, ids: &[String]) -> Vec<String> {
    let out = ec2
        .describe_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .send()
        .await
        .unwrap();
    let all: Vec<_> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .collect();
    ids.iter()
        .map(|id| {
            let instance = all
                .iter()
                .find(|i| i.instance_id() == Some(id))
                .unwrap_or_else(|| panic!("{id} not listed"));
            instance
                .public_ip_address()
                .unwrap_or_else(|| panic!("{id} has no public address"))
                .to_string()
        })
        .collect()
}

/// Stops and starts `ids`: each gets a new public address.
pub async fn stop_start(ec2: &aws_sdk_ec2::Client, ids: &[String]) {
    ec2.stop_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .send()
        .await
        .unwrap();
    ec2.start_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .send()
        .await
        .unwrap();
}

/// Creates the hosted zone `name`; returns its bare id.
pub async fn hosted_zone(route53: &aws_sdk_route53::Client, name: &str) -> String {
    let out = route53
        .create_hosted_zone()
        .name(name)
        .caller_reference(format!("ipdrift-test-{name}"))
        .send()
        .await
        .unwrap();
    let id = out.hosted_zone().unwrap().id();
    id.trim_start_matches("/hostedzone/").to_string()
}

/// UPSERTs `name` `rtype` with `values` (TTL 60), as a person would by hand.
pub async fn upsert(
    route53: &aws_sdk_route53::Client,
    zone_id: &str,
    name: &str,
    rtype: &str,
    values: &[&str],
) {
    use aws_sdk_route53::types::{
        Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
    };
    let set = ResourceRecordSet::builder()
        .name(name)
        .r#type(RrType::from(rtype))
        .ttl(60)
        .set_resource_records(Some(
            values
                .iter()
                .map(|v| ResourceRecord::builder().value(*v).build().unwrap())
                .collect(),
        ))
        .build()
        .unwrap();
    let change = Change::builder()
        .action(ChangeAction::Upsert)
        .resource_record_set(set)
        .build()
        .unwrap();
    route53
        .change_resource_record_sets()
        .hosted_zone_id(zone_id)
        .change_batch(ChangeBatch::builder().changes(change).build().unwrap())
        .send()
        .await
        .unwrap();
}

/// Every record set of the zone: `(name, type)` → sorted values.
pub async fn records(
    route53: &aws_sdk_route53::Client,
    zone_id: &str,
) -> std::collections::BTreeMap<(String, String), Vec<String>> {
    let out = route53
        .list_resource_record_sets()
        .hosted_zone_id(zone_id)
        .send()
        .await
        .unwrap();
    assert!(!out.is_truncated(), "the test zones are small");
    out.resource_record_sets()
        .iter()
        .map(|s| {
            let mut values: Vec<String> = s
                .resource_records()
                .iter()
                .map(|r| r.value().to_string())
                .collect();
            values.sort();
            (
                (s.name().to_string(), s.r#type().as_str().to_string()),
                values,
            )
        })
        .collect()
}

/// Runs `ipdrift --config CONFIG ARGS…` with moto's test credentials in the environment
/// (and nothing that could send the SDK elsewhere: no profile files, no instance metadata).
pub fn ipdrift(config: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ipdrift"));
    command.arg("--config").arg(config).args(args);
    aws_test_env(&mut command);
    command.output().expect("run ipdrift")
}

/// Test credentials and a hermetic SDK environment for a child process.
pub fn aws_test_env(command: &mut Command) {
    command
        .env_remove("RUST_LOG")
        .env_remove("IPDRIFT_CONFIG")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", REGION)
        .env("AWS_CONFIG_FILE", "/nonexistent/ipdrift-test/config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/ipdrift-test/credentials",
        )
        .env("AWS_EC2_METADATA_DISABLED", "true");
}

/// An event to announce for an instance in DescribeInstanceStatus.
#[derive(Debug, Clone)]
pub struct AnnouncedEvent {
    pub instance_id: String,
    pub code: String,
    /// RFC 3339, e.g. `2030-01-15T08:00:00.000Z`.
    pub not_before: String,
    pub description: String,
}

/// An HTTP proxy on a free loopback port in front of moto: DescribeInstanceStatus is
/// answered with the announced events; everything else goes to moto, with
/// `IpOwnerId` "amazon" in DescribeInstances answers (see the module doc).
pub struct EventProxy {
    port: u16,
    events: Arc<Mutex<Vec<AnnouncedEvent>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EventProxy {
    pub fn start(moto_port: u16) -> EventProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let events = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, stopping) = (events.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let events = shared.clone();
                std::thread::spawn(move || serve(stream, moto_port, &events));
            }
        });
        EventProxy {
            port,
            events,
            stop,
            thread: Some(thread),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn announce(&self, event: AnnouncedEvent) {
        self.events.lock().unwrap().push(event);
    }
}

impl Drop for EventProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request: answered here (DescribeInstanceStatus) or forwarded to moto; the
/// connection is closed after the answer.
fn serve(mut client: TcpStream, moto_port: u16, events: &Mutex<Vec<AnnouncedEvent>>) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(5)));
    let Some((head, body)) = read_message(&mut client) else {
        return;
    };
    let form = String::from_utf8_lossy(&body).into_owned();
    let answer = if form.contains("Action=DescribeInstanceStatus") {
        let xml = instance_status_xml(&events.lock().unwrap());
        response(200, "text/xml", xml.as_bytes())
    } else {
        let forwarded = forward(&head, &body, moto_port);
        if form.contains("Action=DescribeInstances&") || form.ends_with("Action=DescribeInstances")
        {
            rewrite_body(&forwarded, |text| {
                text.replace(
                    &format!("<ipOwnerId>{ACCOUNT}</ipOwnerId>"),
                    "<ipOwnerId>amazon</ipOwnerId>",
                )
            })
        } else {
            forwarded
        }
    };
    let _ = client.write_all(&answer);
    let _ = client.shutdown(Shutdown::Both);
}

/// Reads one HTTP message with a Content-Length body: (head, body).
fn read_message(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let length = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while data.len() < head_end + length {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    }
    Some((head, data[head_end..head_end + length].to_vec()))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Sends the request to moto with `Connection: close` and returns moto's whole answer.
fn forward(head: &str, body: &[u8], moto_port: u16) -> Vec<u8> {
    let mut upstream = TcpStream::connect(("127.0.0.1", moto_port)).expect("connect to moto");
    let mut request: Vec<String> = head
        .lines()
        .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("connection:"))
        .map(str::to_string)
        .collect();
    request.push("Connection: close".into());
    let mut bytes = format!("{}\r\n\r\n", request.join("\r\n")).into_bytes();
    bytes.extend_from_slice(body);
    upstream.write_all(&bytes).unwrap();
    let mut answer = Vec::new();
    upstream.read_to_end(&mut answer).unwrap();
    answer
}

/// A whole HTTP answer with `Content-Length` and `Connection: close`.
fn response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = format!(
        "HTTP/1.1 {status} OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// `answer` with its body changed by `edit` (a Content-Length body, as moto sends).
fn rewrite_body(answer: &[u8], edit: impl Fn(&str) -> String) -> Vec<u8> {
    let Some(head_end) = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
    else {
        return answer.to_vec();
    };
    let head = String::from_utf8_lossy(&answer[..head_end]);
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let content_type = header(&head, "content-type")
        .unwrap_or("text/xml")
        .to_string();
    let body = edit(&String::from_utf8_lossy(&answer[head_end..]));
    response(status, &content_type, body.as_bytes())
}

/// A DescribeInstanceStatus answer holding `events`, as EC2 writes it.
fn instance_status_xml(events: &[AnnouncedEvent]) -> String {
    let items: String = events
        .iter()
        .map(|e| {
            format!(
                "<item><instanceId>{}</instanceId><availabilityZone>{REGION}a</availabilityZone>\
                 <instanceState><code>16</code><name>running</name></instanceState>\
                 <systemStatus><status>ok</status></systemStatus><instanceStatus><status>ok</status></instanceStatus>\
                 <eventsSet><item><instanceEventId>instance-event-0123456789abcdef0</instanceEventId>\
                 <code>{}</code><description>{}</description><notBefore>{}</notBefore></item></eventsSet></item>",
                e.instance_id, e.code, e.description, e.not_before
            )
        })
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeInstanceStatusResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
         <requestId>3be1508e-c444-4fef-89cc-0b1223c4f02f</requestId><instanceStatusSet>{items}</instanceStatusSet>\
         </DescribeInstanceStatusResponse>"
    )
}

/// `method path` on 127.0.0.1:port with `body`: (status, body), or `None` on failure.
fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}
