//! `latchgate policy grant|revoke|show`: ACL edits of data.json are exact,
//! validated, and written atomically.

use latchgate_broker::policy::{AclEditError, grant, read_data_file, revoke, show, update_data_file};
use serde_json::json;

fn data() -> serde_json::Value {
    json!({"policy_data": {"version": "v", "acl_revision": 4, "acl": {"alice": ["http_fetch"]}, "other": {"kept": true}}})
}

#[test]
fn grant_adds_once_and_bumps_the_revision() {
    let mut d = data();
    assert!(grant(&mut d, "bob", "github.*").unwrap());
    assert!(!grant(&mut d, "bob", "github.*").unwrap(), "second grant is a no-op");
    assert_eq!(show(&d).unwrap()["bob"], vec!["github.*"]);
    assert_eq!(d["policy_data"]["acl_revision"], 5);
    assert_eq!(d["policy_data"]["other"], json!({"kept": true}));
}

#[test]
fn the_pattern_grammar_of_the_policy_is_accepted() {
    let mut d = data();
    for pattern in ["github.issue_get", "github.*", "fs.**", "**", "http_*", "*"] {
        grant(&mut d, "bob", pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
    }
}

#[test]
fn revoke_removes_only_the_exact_pattern() {
    let mut d = data();
    grant(&mut d, "alice", "github.*").unwrap();
    assert!(!revoke(&mut d, "alice", "github.issue_get").unwrap(), "a narrower pattern is not the grant");
    assert!(revoke(&mut d, "alice", "github.*").unwrap());
    assert_eq!(show(&d).unwrap()["alice"], vec!["http_fetch"]);
    assert!(revoke(&mut d, "alice", "http_fetch").unwrap());
    assert!(!show(&d).unwrap().contains_key("alice"), "empty principal entries are dropped");
    assert!(!revoke(&mut d, "nobody", "x").unwrap());
}

#[test]
fn glob_syntax_beyond_star_and_bad_principals_are_refused() {
    let mut d = data();
    for pattern in ["", "github.{a,b}", "github.[ab]", "git?ub", "***", "a*b", "*.x", "github**"] {
        assert!(matches!(grant(&mut d, "bob", pattern), Err(AclEditError::InvalidPattern(_))), "{pattern}");
    }
    for principal in ["", "bob smith", "a/b"] {
        assert!(matches!(grant(&mut d, principal, "x"), Err(AclEditError::InvalidPrincipal(_))), "{principal}");
    }
    assert_eq!(d, data(), "refused edits change nothing");
}

#[test]
fn edits_of_a_malformed_document_are_refused() {
    let mut d = json!({"policy_data": {"acl": {"alice": "http_fetch"}}});
    assert!(matches!(grant(&mut d, "alice", "x"), Err(AclEditError::Malformed(_))));
    assert!(matches!(show(&json!({})), Err(AclEditError::Malformed(_))));
}

#[test]
fn file_update_is_atomic_and_keeps_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.json");
    std::fs::write(&path, serde_json::to_vec(&data()).unwrap()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();

    assert!(update_data_file(&path, |d| grant(d, "carol", "fs.read")).unwrap());
    let written = read_data_file(&path).unwrap();
    assert_eq!(show(&written).unwrap()["carol"], vec!["fs.read"]);
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 1, "temp file left behind: {leftovers:?}");

    let before = std::fs::read(&path).unwrap();
    assert!(update_data_file(&path, |d| grant(d, "carol", "bad{glob}")).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), before, "failed edit leaves the file untouched");
}
