//! Announced maintenance, against real BIND and HAProxy with the real binary: from the
//! lead on, the affected record's TTL is lowered and its server drained; the instance's
//! event changes its addresses; the new ones are written while the TTL stays low and the
//! server drains; then TTL and service come back. No request through the load balancer
//! fails on the way.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use support::controller::Controller;
use support::fleet::{
    Fleet, WebServer, ZONE, describe, http_get, web_instance, web_private, web_public,
};
use support::wait_until;

const MAINTENANCE_TTL: u32 = 5;

/// `(ttl, address)` of each record of `name A`, as the server answers it.
fn ttl_and_addrs(fleet: &Fleet, name: &str) -> Vec<(u32, String)> {
    let output = std::process::Command::new("dig")
        .args([
            "+noall",
            "+answer",
            "+norecurse",
            "+time=1",
            "+tries=1",
            "-p",
        ])
        .arg(fleet.bind.addr().port().to_string())
        .args(["@127.0.0.1", name, "A"])
        .output()
        .expect("run dig");
    let mut records: Vec<(u32, String)> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            Some((fields.get(1)?.parse().ok()?, fields.get(4)?.to_string()))
        })
        .collect();
    records.sort();
    records
}

fn json_of(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", describe(output)))
}

fn rfc3339_in(from_now: Duration) -> String {
    humantime::format_rfc3339_seconds(SystemTime::now() + from_now).to_string()
}

/// Requests through HAProxy every 20 ms until dropped; counts those that fail.
struct Client {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Client {
    fn start(port: u16) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (s, n, f) = (stop.clone(), sent.clone(), failed.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                n.fetch_add(1, Ordering::SeqCst);
                if http_get(port).is_none_or(|(status, _)| status != 200) {
                    f.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Client {
            stop,
            sent,
            failed,
            thread: Some(thread),
        }
    }

    /// Stops the client: (requests sent, requests failed).
    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        (
            self.sent.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        )
    }
}

/// The fleet's config with maintenance settings (draining the servers, or not) and an
/// audit log.
fn configure_draining(fleet: &Fleet, drain: bool) {
    let text = std::fs::read_to_string(fleet.config_path()).unwrap();
    let text = text.replacen(
        "[controller]\n",
        &format!(
            "[controller]\nmaintenance_ttl = {MAINTENANCE_TTL}\nmaintenance_lead = \"1h\"\nmaintenance_drain = {drain}\naudit_log = \"audit.jsonl\"\n"
        ),
        1,
    );
    std::fs::write(fleet.config_path(), text).unwrap();
}

fn configure(fleet: &Fleet) {
    configure_draining(fleet, true);
}

/// instances.json at generation 1, with web-01 at generation `web01_generation` and,
/// when `announced`, an address-changing event for it 30 minutes from now.
fn write_instances(fleet: &Fleet, web01_generation: u8, announced: bool) {
    let mut instances = fleet.instances_at(1);
    let mut web01 = web_instance(web01_generation, 1);
    if announced {
        web01["events"] = serde_json::json!([{
            "code": "instance-stop",
            "not_before": rfc3339_in(Duration::from_secs(1800)),
            "description": "The instance is scheduled for a stop"
        }]);
    }
    instances[1] = web01;
    fleet.write_instances(&instances);
}

fn steps(report: &Value) -> Vec<(String, String)> {
    let mut steps: Vec<(String, String)> = report["maintenance"]
        .as_array()
        .unwrap_or_else(|| panic!("no maintenance in {report:#}"))
        .iter()
        .map(|s| {
            (
                s["object"].as_str().unwrap().to_string(),
                s["step"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    steps.sort();
    steps
}

#[test]
fn an_announced_address_change_lowers_the_ttl_drains_and_restores_without_a_failed_request() {
    let mut fleet = Fleet::start();
    configure(&fleet);
    let web01 = format!("web-01.{ZONE}");
    let zone_ttl = support::bind::ZONE_TTL;
    assert_eq!(
        ttl_and_addrs(&fleet, &web01),
        vec![(zone_ttl, web_public(1, 1))]
    );
    let client = Client::start(fleet.haproxy.frontend_port());

    // Announced: diff shows what will be done, and writes nothing.
    write_instances(&fleet, 1, true);
    let diff = fleet.ipdrift(&["diff", "--output", "json"]);
    assert_eq!(diff.status.code(), Some(2), "{}", describe(&diff));
    let plan = json_of(&diff);
    assert_eq!(
        steps(&plan),
        vec![
            (format!("{web01} A"), "ttl-lowered".to_string()),
            ("web/web-01".to_string(), "drained".to_string()),
        ]
    );
    assert!(
        plan["forecast"][0]["prepare_from"].as_u64().is_some(),
        "{plan:#}"
    );
    assert_eq!(
        ttl_and_addrs(&fleet, &web01)[0].0,
        zone_ttl,
        "diff must not write"
    );

    // The controller prepares: TTL lowered, server drained, metrics say so.
    let controller = Controller::start(&fleet);
    assert!(
        wait_until(Duration::from_secs(15), || {
            ttl_and_addrs(&fleet, &web01) == vec![(MAINTENANCE_TTL, web_public(1, 1))]
                && fleet.server_states()[0].admin_state & 0x08 != 0
        }),
        "not prepared: {:?} {:?}\n{}",
        ttl_and_addrs(&fleet, &web01),
        fleet.server_states(),
        controller.log_text()
    );
    assert_eq!(
        ttl_and_addrs(&fleet, &format!("web-02.{ZONE}"))[0].0,
        zone_ttl,
        "an unaffected record keeps its TTL"
    );
    assert!(
        wait_until(Duration::from_secs(5), || {
            controller.metric("ipdrift_maintenance_objects{target=\"ns1\"}") == Some(1.0)
                && controller.metric("ipdrift_maintenance_objects{target=\"lb-01\"}") == Some(1.0)
        }),
        "{:?}",
        controller.get("/metrics")
    );
    let (code, log) = controller.terminate();
    assert_eq!(code, Some(0), "{log}");

    // The event: web-01 stops and comes back with new addresses; the old ones are dead.
    fleet.webs.remove(0);
    fleet.webs.push(WebServer::start(
        &web_private(2, 1),
        fleet.web_port,
        "web-01 gen 2",
    ));
    write_instances(&fleet, 2, false);
    // Until the repair, a server that was not drained would fail every other request.
    std::thread::sleep(Duration::from_secs(1));
    let apply = fleet.ipdrift(&["apply", "--output", "json"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert_eq!(
        steps(&json_of(&apply)),
        vec![
            (format!("{web01} A"), "ttl-held".to_string()),
            ("web/web-01".to_string(), "drain-held".to_string()),
        ]
    );
    assert_eq!(
        ttl_and_addrs(&fleet, &web01),
        vec![(MAINTENANCE_TTL, web_public(2, 1))],
        "the new address, still with the low TTL"
    );
    let web01_server = &fleet.server_states()[0];
    assert_eq!(
        (
            web01_server.addr.as_str(),
            web01_server.admin_state & 0x08 != 0
        ),
        (
            format!("{}:{}", web_private(2, 1), fleet.web_port).as_str(),
            true
        ),
        "the new address, still draining"
    );

    // The next pass finds the new addresses in place: TTL and service come back.
    let apply = fleet.ipdrift(&["apply", "--output", "json"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert_eq!(
        steps(&json_of(&apply)),
        vec![
            (format!("{web01} A"), "ttl-restored".to_string()),
            ("web/web-01".to_string(), "service-restored".to_string()),
        ]
    );
    assert_eq!(
        ttl_and_addrs(&fleet, &web01),
        vec![(zone_ttl, web_public(2, 1))]
    );
    assert_eq!(fleet.server_states()[0].admin_state, 0, "ready again");
    assert!(
        wait_until(Duration::from_secs(5), || {
            http_get(fleet.haproxy.frontend_port())
                .is_some_and(|(_, body)| body.contains("web-01 gen 2"))
        }),
        "web-01 takes traffic again"
    );
    let again = fleet.ipdrift(&["diff", "--output", "json"]);
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    assert_eq!(steps(&json_of(&again)), vec![], "nothing left to do");

    let (sent, failed) = client.finish();
    eprintln!("with maintenance_drain: {failed} of {sent} requests through HAProxy failed");
    assert!(sent > 40, "the client sent {sent} requests");
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests through HAProxy failed"
    );

    // The audit log and the timeline tell the story.
    let timeline = fleet.ipdrift(&["timeline"]);
    let text = String::from_utf8_lossy(&timeline.stdout);
    for said in [
        "maintenance ttl-lowered",
        "maintenance drained",
        "maintenance ttl-held",
        "maintenance ttl-restored",
        "maintenance service-restored",
    ] {
        assert!(text.contains(said), "{said}:\n{}", describe(&timeline));
    }
}

/// The control: the same event without `maintenance_drain`. The old address is dead and
/// HAProxy still sends web-01 its share until the repair.
#[test]
fn without_draining_requests_fail_until_the_repair() {
    let mut fleet = Fleet::start();
    configure_draining(&fleet, false);
    write_instances(&fleet, 1, true);
    let apply = fleet.ipdrift(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert_eq!(fleet.server_states()[0].admin_state, 0, "not drained");

    let client = Client::start(fleet.haproxy.frontend_port());
    fleet.webs.remove(0);
    write_instances(&fleet, 2, false);
    std::thread::sleep(Duration::from_secs(1));
    let (sent, failed) = client.finish();
    eprintln!("without maintenance_drain: {failed} of {sent} requests through HAProxy failed");
    assert!(
        failed > 0,
        "{failed} of {sent} failed: the drained test's 0 would prove nothing"
    );
    let apply = fleet.ipdrift(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
}

#[test]
fn a_cancelled_event_restores_the_ttl_and_service_at_once() {
    let fleet = Fleet::start();
    configure(&fleet);
    let web01 = format!("web-01.{ZONE}");
    write_instances(&fleet, 1, true);
    let apply = fleet.ipdrift(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert_eq!(ttl_and_addrs(&fleet, &web01)[0].0, MAINTENANCE_TTL);
    assert!(fleet.server_states()[0].admin_state & 0x08 != 0);

    write_instances(&fleet, 1, false);
    let apply = fleet.ipdrift(&["apply", "--output", "json"]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert_eq!(
        steps(&json_of(&apply)),
        vec![
            (format!("{web01} A"), "ttl-restored".to_string()),
            ("web/web-01".to_string(), "service-restored".to_string()),
        ]
    );
    assert_eq!(
        ttl_and_addrs(&fleet, &web01),
        vec![(support::bind::ZONE_TTL, web_public(1, 1))]
    );
    assert_eq!(fleet.server_states()[0].admin_state, 0);
}

#[test]
fn a_malformed_event_costs_the_forewarning_and_nothing_else() {
    let mut fleet = Fleet::start();
    configure(&fleet);
    let mut instances = fleet.instances_at(2);
    instances[1]["events"] = serde_json::json!([{"code": "instance-stop", "not_before": "soon"}]);
    fleet.move_web_servers_to(2);
    fleet.write_instances(&instances);
    let apply = fleet.ipdrift(&["apply"]);
    let stderr = String::from_utf8_lossy(&apply.stderr);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert!(fleet.converged_at(2), "repaired all the same");
    let out = format!("{}{stderr}", String::from_utf8_lossy(&apply.stdout));
    assert!(
        out.contains("scheduled events unavailable") && out.contains("events[0].not_before"),
        "{}",
        describe(&apply)
    );
}
