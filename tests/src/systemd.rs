//! Reading rendered systemd units the way systemd does, for the tests that
//! verify them offline and start the binaries exactly as the units would.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// `Key=value` lines of one section, in order (keys repeat: `LoadCredential=`).
pub fn directives(unit: &str, section: &str) -> Vec<(String, String)> {
    let header = format!("[{section}]");
    let mut inside = false;
    let mut out = Vec::new();
    for line in unit.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == header;
            continue;
        }
        if !inside || line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

/// Every value of `key` in `[Service]`.
pub fn values(unit: &str, key: &str) -> Vec<String> {
    directives(unit, "Service").into_iter().filter(|(k, _)| k == key).map(|(_, v)| v).collect()
}

/// The single value of `key` in `[Service]` (panics if absent).
pub fn value(unit: &str, key: &str) -> String {
    values(unit, key).pop().unwrap_or_else(|| panic!("no {key}= in unit:\n{unit}"))
}

/// Whether `systemd-analyze` can be run here. The tests using it say so
/// loudly when it cannot (scripts/install-deps.sh installs it).
pub fn systemd_analyze_available() -> bool {
    Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// `@group` → members, as this host's systemd defines them.
pub fn syscall_groups() -> BTreeMap<String, Vec<String>> {
    let out = Command::new("systemd-analyze").args(["syscall-filter", "--no-pager"]).output().expect("syscall-filter");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('@') {
            current = Some(format!("@{}", name.trim()));
            continue;
        }
        let item = line.trim();
        if item.is_empty() || item.starts_with('#') {
            continue;
        }
        if let Some(group) = &current {
            groups.entry(group.clone()).or_default().push(item.to_string());
        }
    }
    groups
}

fn expand(item: &str, groups: &BTreeMap<String, Vec<String>>, out: &mut BTreeSet<String>) {
    match groups.get(item) {
        Some(members) => {
            for m in members {
                expand(m, groups, out);
            }
        }
        None if item.starts_with('@') => panic!("unknown syscall group {item}"),
        None => {
            out.insert(item.to_string());
        }
    }
}

/// The syscalls a unit's `SystemCallFilter=` lines let through, evaluated in
/// order as systemd does for an allow-list (the first line is not `~`):
/// plain lines add, `~` lines remove.
pub fn allowed_syscalls(unit: &str, groups: &BTreeMap<String, Vec<String>>) -> BTreeSet<String> {
    let mut allowed = BTreeSet::new();
    for (index, line) in values(unit, "SystemCallFilter").iter().enumerate() {
        let (deny, list) = match line.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, line.as_str()),
        };
        assert!(!(deny && index == 0), "the first SystemCallFilter= must be an allow-list");
        let mut set = BTreeSet::new();
        for item in list.split_whitespace() {
            expand(item, groups, &mut set);
        }
        if deny {
            allowed.retain(|s| !set.contains(s));
        } else {
            allowed.extend(set);
        }
    }
    allowed
}

/// Syscall names of a seccomp profile in `sandbox-profiles/`.
pub fn profile_syscalls(profiles: &Path, role: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(profiles.join(format!("{role}.json"))).expect("profile");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("profile JSON");
    doc["syscalls"].as_array().expect("syscalls").iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
}
