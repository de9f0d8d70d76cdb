//! The config `init` writes: the base config as it was, each load balancer's backends
//! inserted right after its table (TOML attaches `[[haproxy.backend]]` to the table above
//! it), and the `[[record]]` rules at the end, each with a comment saying what it matched.

use std::fmt::Write as _;

use super::{Proposal, ProposedBackend, ProposedRecord, ProposedSelect};

/// A load balancer of the base config: its table's name (`haproxy`), the key of its
/// backends' tables (`backend`), and its `name`, in the order of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbTable {
    pub section: String,
    pub backend_key: String,
    pub name: String,
}

/// `base` with `proposal`'s rules added. `tables` are the base config's load balancers in
/// the order they appear in it.
pub fn render(base: &str, tables: &[LbTable], proposal: &Proposal) -> String {
    let lines: Vec<&str> = base.lines().collect();
    let mut out = String::new();
    let mut seen: Vec<usize> = Vec::new();
    let mut pending: Option<&LbTable> = None;
    for line in &lines {
        if let Some(header) = header_of(line) {
            if let Some(table) = pending.take() {
                backends(&mut out, table, proposal);
            }
            if let Some(section) = header.strip_prefix("[[").and_then(|h| h.strip_suffix("]]")) {
                let next = tables
                    .iter()
                    .enumerate()
                    .find(|(i, t)| t.section == section.trim() && !seen.contains(i));
                if let Some((i, table)) = next {
                    seen.push(i);
                    pending = Some(table);
                }
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    if let Some(table) = pending.take() {
        backends(&mut out, table, proposal);
    }
    out.push_str(
        "\n# Written by `ipdrift init` from what the sources, zones and load balancers held.\n",
    );
    for record in &proposal.records {
        record_rule(&mut out, record);
    }
    if !proposal.drifted.is_empty() {
        out.push_str("\n# Already drifted (matched by name; `ipdrift diff` shows the repair):\n");
        for line in &proposal.drifted {
            let _ = writeln!(out, "#   {}", comment(line));
        }
    }
    if !proposal.unexplained.is_empty() {
        out.push_str("\n# Not explained (no rule written; decide by hand):\n");
        for line in &proposal.unexplained {
            let _ = writeln!(out, "#   {}", comment(line));
        }
    }
    out
}

/// A table header line (`[x]`, `[[x.y]]`), without its comment.
fn header_of(line: &str) -> Option<&str> {
    let line = line.trim();
    if !line.starts_with('[') {
        return None;
    }
    let end = line.rfind(']')?;
    Some(&line[..=end])
}

fn backends(out: &mut String, table: &LbTable, proposal: &Proposal) {
    let Some(list) = proposal.backends.get(&table.name) else {
        return;
    };
    for backend in list {
        backend_rule(out, table, backend);
    }
}

fn backend_rule(out: &mut String, table: &LbTable, b: &ProposedBackend) {
    out.push('\n');
    for m in &b.matched {
        let _ = writeln!(out, "# matched {}", comment(m));
    }
    let _ = writeln!(out, "[[{}.{}]]", table.section, table.backend_key);
    let _ = writeln!(out, "name = {}", quoted(&b.name));
    let _ = writeln!(out, "select = {}", select(&b.select));
    let _ = writeln!(out, "address = {}", quoted(b.address.as_str()));
    let _ = writeln!(out, "port = {}", b.port);
    let _ = writeln!(out, "server = {}", quoted(&b.server));
}

fn record_rule(out: &mut String, r: &ProposedRecord) {
    out.push('\n');
    for m in &r.matched {
        let _ = writeln!(out, "# matched {}", comment(m));
    }
    out.push_str("[[record]]\n");
    let _ = writeln!(out, "dns = {}", quoted(&r.dns));
    let _ = writeln!(out, "name = {}", quoted(&r.name));
    let _ = writeln!(out, "select = {}", select(&r.select));
    let _ = writeln!(out, "address = {}", quoted(r.address.as_str()));
    let _ = writeln!(out, "ttl = {}", r.ttl);
}

fn select(s: &ProposedSelect) -> String {
    let mut parts = Vec::new();
    if !s.tags.is_empty() {
        let tags: Vec<String> = s
            .tags
            .iter()
            .map(|(k, v)| format!("{} = {}", quoted(k), quoted(v)))
            .collect();
        parts.push(format!("tags = {{ {} }}", tags.join(", ")));
    }
    if let Some(source) = &s.source {
        parts.push(format!("source = {}", quoted(source)));
    }
    if parts.is_empty() {
        "{}".into()
    } else {
        format!("{{ {} }}", parts.join(", "))
    }
}

/// A TOML basic string: JSON's escapes are TOML's.
fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// One comment line: nothing an instance or server name holds may end the comment.
fn comment(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect::<String>()
}
