//! `apply --plan FILE`: a plan reviewed earlier (what `diff --output json` printed) is
//! applied only when the plan made now holds exactly its changes. Any difference means the
//! world or the config changed since the review, and nothing is written. Pure.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::{Change, Op, Plan};

/// One change of a reviewed plan, as `diff --output json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub struct ReviewedChange {
    pub target: String,
    pub op: Op,
    pub object: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

impl ReviewedChange {
    fn of(change: &Change) -> ReviewedChange {
        ReviewedChange {
            target: change.target.clone(),
            op: change.op,
            object: change.object.clone(),
            from: change.from.clone(),
            to: change.to.clone(),
        }
    }

    fn text(&self) -> String {
        format!(
            "{} {}: {}  {} -> {}",
            self.op.as_str(),
            self.target,
            self.object,
            self.from.as_deref().unwrap_or("(absent)"),
            self.to.as_deref().unwrap_or("(absent)")
        )
    }
}

/// The changes a reviewer saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewedPlan {
    changes: BTreeSet<ReviewedChange>,
}

#[derive(Deserialize)]
struct PlanDocument {
    changes: Vec<ReviewedChange>,
}

impl ReviewedPlan {
    /// Reads the JSON document of `diff --output json`. Other fields (refusals, errors,
    /// results of an `apply --output json`) are ignored: only changes are ever written.
    pub fn parse(text: &str) -> Result<ReviewedPlan, String> {
        let document: PlanDocument = serde_json::from_str(text).map_err(|e| {
            format!(
                "line {} column {}: {e}; expected the output of `ipdrift diff --output json`",
                e.line(),
                e.column()
            )
        })?;
        let count = document.changes.len();
        let changes: BTreeSet<ReviewedChange> = document.changes.into_iter().collect();
        if changes.len() != count {
            return Err("the same change appears twice; expected the output of `ipdrift diff --output json`".into());
        }
        Ok(ReviewedPlan { changes })
    }

    pub fn len(&self) -> usize {
        self.changes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// What differs between the reviewed changes and `now`'s, one line each, reviewed
    /// changes first; empty when `now` is exactly the reviewed plan.
    pub fn differences(&self, now: &Plan) -> Vec<String> {
        let planned: BTreeSet<ReviewedChange> =
            now.changes.iter().map(ReviewedChange::of).collect();
        let gone = self
            .changes
            .difference(&planned)
            .map(|c| format!("reviewed, no longer planned: {}", c.text()));
        let new = planned
            .difference(&self.changes)
            .map(|c| format!("planned now, not reviewed: {}", c.text()));
        gone.chain(new).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::ServerChange;
    use crate::model::ServerKey;
    use crate::plan::Action;

    fn change(object: &str, from: &str, to: &str) -> Change {
        Change {
            target: "ns1".into(),
            op: Op::Update,
            object: object.into(),
            from: Some(from.into()),
            to: Some(to.into()),
            action: Action::Lb(ServerChange::Delete {
                key: ServerKey {
                    backend: "b".into(),
                    server: "s".into(),
                },
            }),
            removes: 0,
        }
    }

    fn plan_of(changes: Vec<Change>) -> Plan {
        Plan {
            changes,
            ..Plan::default()
        }
    }

    fn document(plan: &Plan) -> String {
        let report = crate::plan::PassReport {
            plan: plan.clone(),
            ..Default::default()
        };
        crate::plan::render::json(&report).to_string()
    }

    #[test]
    fn a_plan_read_back_from_diff_json_matches_itself() {
        let plan = plan_of(vec![
            change(
                "www.example.com. A",
                "192.0.2.1 ttl=60",
                "198.51.100.1 ttl=60",
            ),
            change(
                "web-01.example.com. A",
                "192.0.2.2 ttl=60",
                "198.51.100.2 ttl=60",
            ),
        ]);
        let reviewed = ReviewedPlan::parse(&document(&plan)).unwrap();
        assert_eq!(reviewed.len(), 2);
        assert_eq!(reviewed.differences(&plan), Vec::<String>::new());
    }

    #[test]
    fn a_changed_address_a_new_change_and_a_gone_one_are_each_named() {
        let reviewed = ReviewedPlan::parse(&document(&plan_of(vec![
            change(
                "www.example.com. A",
                "192.0.2.1 ttl=60",
                "198.51.100.1 ttl=60",
            ),
            change(
                "web-01.example.com. A",
                "192.0.2.2 ttl=60",
                "198.51.100.2 ttl=60",
            ),
        ])))
        .unwrap();
        let now = plan_of(vec![
            change(
                "www.example.com. A",
                "192.0.2.1 ttl=60",
                "203.0.113.1 ttl=60",
            ),
            change(
                "web-02.example.com. A",
                "192.0.2.3 ttl=60",
                "198.51.100.3 ttl=60",
            ),
        ]);
        let differences = reviewed.differences(&now);
        assert_eq!(
            differences,
            vec![
                "reviewed, no longer planned: update ns1: web-01.example.com. A  192.0.2.2 ttl=60 -> 198.51.100.2 ttl=60",
                "reviewed, no longer planned: update ns1: www.example.com. A  192.0.2.1 ttl=60 -> 198.51.100.1 ttl=60",
                "planned now, not reviewed: update ns1: web-02.example.com. A  192.0.2.3 ttl=60 -> 198.51.100.3 ttl=60",
                "planned now, not reviewed: update ns1: www.example.com. A  192.0.2.1 ttl=60 -> 203.0.113.1 ttl=60",
            ]
        );
    }

    #[test]
    fn an_empty_reviewed_plan_matches_only_a_world_in_sync() {
        let reviewed = ReviewedPlan::parse(r#"{"in_sync": true, "changes": []}"#).unwrap();
        assert!(reviewed.is_empty());
        assert!(reviewed.differences(&Plan::default()).is_empty());
        let drifted = plan_of(vec![change(
            "www.example.com. A",
            "192.0.2.1 ttl=60",
            "192.0.2.9 ttl=60",
        )]);
        assert_eq!(reviewed.differences(&drifted).len(), 1);
    }

    #[test]
    fn what_is_not_a_plan_is_an_error_naming_where() {
        let truncated = ReviewedPlan::parse("{\"changes\": [").unwrap_err();
        assert!(truncated.contains("line 1"), "{truncated}");
        assert!(
            truncated.contains("ipdrift diff --output json"),
            "{truncated}"
        );
        assert!(ReviewedPlan::parse("{}").unwrap_err().contains("changes"));
        assert!(
            ReviewedPlan::parse(
                r#"{"changes":[{"target":"a","op":"explode","object":"x","from":null,"to":null}]}"#
            )
            .is_err()
        );
        let twice = r#"{"changes":[{"target":"a","op":"delete","object":"x","from":"1","to":null},{"target":"a","op":"delete","object":"x","from":"1","to":null}]}"#;
        assert!(ReviewedPlan::parse(twice).unwrap_err().contains("twice"));
    }
}
