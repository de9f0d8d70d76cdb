//! What an operator reviews before a write, against real BIND and HAProxy: `explain NAME`
//! (which rule, which instances, what it should hold, what a pass would do), and
//! `apply --plan`: a plan reviewed with `diff --output json` is applied exactly, and refused
//! (exit 4, nothing written) once the world no longer matches it.

mod support;

use serde_json::Value;
use support::fleet::{Fleet, ZONE, describe, lb_public};

fn save_plan(fleet: &Fleet) -> std::path::PathBuf {
    let diff = fleet.ipdrift(&["diff", "--output", "json"]);
    assert_eq!(diff.status.code(), Some(2), "{}", describe(&diff));
    let path = fleet.dir.path().join("plan.json");
    std::fs::write(&path, &diff.stdout).unwrap();
    path
}

#[test]
fn a_reviewed_plan_is_applied_when_the_world_still_matches_it() {
    let mut fleet = Fleet::start();
    fleet.move_to(2);
    let plan = save_plan(&fleet);
    let apply = fleet.ipdrift(&["apply", "--plan", plan.to_str().unwrap()]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert!(fleet.converged_at(2), "{}", describe(&apply));
    let diff = fleet.ipdrift(&["diff"]);
    assert_eq!(diff.status.code(), Some(0), "{}", describe(&diff));
}

#[test]
fn a_plan_made_before_the_addresses_changed_again_is_refused_and_writes_nothing() {
    let mut fleet = Fleet::start();
    fleet.move_to(2);
    let plan = save_plan(&fleet);
    fleet.move_to(3);
    let apply = fleet.ipdrift(&["apply", "--plan", plan.to_str().unwrap()]);
    assert_eq!(apply.status.code(), Some(4), "{}", describe(&apply));
    let stderr = String::from_utf8_lossy(&apply.stderr);
    assert!(stderr.contains("nothing was written"), "{stderr}");
    assert!(stderr.contains("reviewed, no longer planned"), "{stderr}");
    assert!(stderr.contains("planned now, not reviewed"), "{stderr}");
    assert!(
        fleet.converged_at(1),
        "nothing written: {}",
        describe(&apply)
    );

    let fresh = save_plan(&fleet);
    let apply = fleet.ipdrift(&["apply", "--plan", fresh.to_str().unwrap()]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert!(fleet.converged_at(3));
}

#[test]
fn a_plan_made_on_a_world_in_sync_is_refused_once_drift_appeared() {
    let mut fleet = Fleet::start();
    let diff = fleet.ipdrift(&["diff", "--output", "json"]);
    assert_eq!(diff.status.code(), Some(0), "{}", describe(&diff));
    let plan = fleet.dir.path().join("empty-plan.json");
    std::fs::write(&plan, &diff.stdout).unwrap();
    let apply = fleet.ipdrift(&["apply", "--plan", plan.to_str().unwrap()]);
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));

    fleet.move_to(2);
    let apply = fleet.ipdrift(&["apply", "--plan", plan.to_str().unwrap()]);
    assert_eq!(apply.status.code(), Some(4), "{}", describe(&apply));
    assert!(fleet.converged_at(1));
}

#[test]
fn a_plan_file_that_is_missing_or_not_a_plan_is_an_error_naming_it() {
    let mut fleet = Fleet::start();
    fleet.move_to(2);
    let missing = fleet.dir.path().join("nope.json");
    let apply = fleet.ipdrift(&["apply", "--plan", missing.to_str().unwrap()]);
    assert_eq!(apply.status.code(), Some(1), "{}", describe(&apply));
    let stderr = String::from_utf8_lossy(&apply.stderr);
    assert!(stderr.contains("nope.json"), "{stderr}");
    assert!(stderr.contains("diff --output json"), "{stderr}");

    let text = fleet.dir.path().join("text-plan.txt");
    std::fs::write(&text, &fleet.ipdrift(&["diff"]).stdout).unwrap();
    let apply = fleet.ipdrift(&["apply", "--plan", text.to_str().unwrap()]);
    assert_eq!(apply.status.code(), Some(1), "{}", describe(&apply));
    let stderr = String::from_utf8_lossy(&apply.stderr);
    assert!(stderr.contains("text-plan.txt: line 1"), "{stderr}");
    assert!(fleet.converged_at(1), "nothing written");
}

#[test]
fn explain_names_the_rule_the_instance_and_the_planned_repair_without_writing() {
    let mut fleet = Fleet::start();
    fleet.move_to(2);
    let out = fleet.ipdrift(&["explain", &format!("www.{ZONE}")]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("ns1: www.{ZONE} A")), "{text}");
    assert!(text.contains("rule:         [[record]] #1"), "{text}");
    assert!(text.contains("this pass:    update planned"), "{text}");
    assert!(
        text.contains(&lb_public(1)) && text.contains(&lb_public(2)),
        "{text}"
    );
    assert!(
        text.contains("instance:     \"lb\" (\"i-lb\", source local) running"),
        "{text}"
    );

    let out = fleet.ipdrift(&["explain", "web/web-01", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let managed = &json["managed_by"][0];
    assert_eq!(managed["target"], "lb-01");
    assert_eq!(managed["object"], "web/web-01");
    assert!(
        managed["verdict"]
            .as_str()
            .unwrap()
            .starts_with("update planned"),
        "{json:#}"
    );
    assert_eq!(managed["instances"][0]["name"], "web-01");
    assert!(fleet.converged_at(1), "explain never writes");

    let out = fleet.ipdrift(&["explain", &format!("static.{ZONE}")]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not managed by ipdrift"));
}
