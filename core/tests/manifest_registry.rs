//! The shipped registry: every manifest loads, the catalogue covers every risk
//! level, and the compiled schemas enforce their limits on hostile input.

use latchgate_core::action::RiskLevel;
use latchgate_core::manifest::{DigestError, Registry, ViolationKind};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn shipped() -> Registry {
    match Registry::load(&repo_root().join("manifests")) {
        Ok(r) => r,
        Err(errors) => panic!(
            "shipped manifests do not load:\n{}",
            errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")
        ),
    }
}

#[test]
fn all_shipped_manifests_load() {
    let registry = shipped();
    assert!(registry.len() >= 12, "only {} actions", registry.len());
    for id in [
        "http_fetch",
        "http_post",
        "github.issue_create",
        "github.issue_comment",
        "github.pr_create",
        "github.issue_get",
        "slack.message_post",
        "gmail.send",
        "webhook.notify",
        "fs.read",
        "fs.write",
        "fs.delete",
    ] {
        assert!(registry.get(id).is_some(), "{id} missing");
    }
}

#[test]
fn shipped_catalogue_covers_every_risk_level_and_high_risk_is_verified() {
    let registry = shipped();
    for level in [RiskLevel::Low, RiskLevel::Medium, RiskLevel::High, RiskLevel::Critical] {
        assert!(registry.iter().any(|a| a.manifest().risk_level == level), "no {level:?} action");
    }
    for action in registry.iter() {
        if matches!(action.manifest().risk_level, RiskLevel::High | RiskLevel::Critical) {
            assert!(action.response_schema().is_some(), "{}", action.id());
        }
    }
}

#[test]
fn listing_is_sorted_summaries() {
    let summaries = shipped().summaries();
    let ids: Vec<_> = summaries.iter().map(|s| s.action_id.clone()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    let first = serde_json::to_value(&summaries[0]).unwrap();
    assert_eq!(first.as_object().unwrap().len(), 3);
    assert!(first["risk_level"].is_string() && first["version"].is_string());
}

#[test]
fn detail_shows_egress_in_the_wire_shape() {
    let registry = shipped();
    let fetch = registry.get("http_fetch").unwrap().detail_json();
    assert_eq!(
        fetch["egress"],
        json!({"proxy_allowlist": {"allowed_domains": ["example.com", "*.example.com", "localhost"]}})
    );
    assert_eq!(fetch["risk_level"], "low");
    assert!(fetch["request_schema"].is_object());
    let read = registry.get("fs.read").unwrap().detail_json();
    assert_eq!(read["egress"], json!("none"));
}

#[test]
fn detail_lists_secret_names_but_not_how_they_are_injected() {
    let detail = shipped().get("github.issue_create").unwrap().detail_json();
    assert_eq!(detail["secrets"], json!(["GITHUB_TOKEN"]));
    let text = detail.to_string();
    assert!(!text.contains("Bearer"), "{text}");
}

#[test]
fn request_outside_the_schema_is_a_schema_violation() {
    let registry = shipped();
    let fetch = registry.get("http_fetch").unwrap();
    fetch.validate_request(&json!({"url": "https://example.com/a"})).unwrap();
    let err = fetch.validate_request(&json!({"url": "https://example.com/a", "extra": 1})).unwrap_err();
    assert_eq!(err.kind, ViolationKind::Schema);
    assert_eq!(err.code(), "schema_violation");
    let err = fetch.validate_request(&json!({"url": "file:///etc/passwd"})).unwrap_err();
    assert!(err.reason.contains("/url"), "{}", err.reason);
}

#[test]
fn fs_read_cannot_be_asked_to_delete_or_escape_its_root() {
    let registry = shipped();
    let read = registry.get("fs.read").unwrap();
    read.validate_request(&json!({"op": "read", "path": "notes/today.txt"})).unwrap();
    for bad in [
        json!({"op": "delete", "path": "notes/today.txt"}),
        json!({"op": "read", "path": "../etc/passwd"}),
        json!({"op": "read", "path": "notes/../../x"}),
        json!({"op": "read", "path": "/etc/passwd"}),
        json!({"op": "read", "path": "a//b"}),
    ] {
        assert!(read.validate_request(&bad).is_err(), "accepted {bad}");
    }
}

#[test]
fn deeply_nested_request_is_refused_before_schema_validation() {
    let registry = shipped();
    let post = registry.get("http_post").unwrap();
    let mut body = json!({});
    for _ in 0..40 {
        body = json!({"a": body});
    }
    let err = post.validate_request(&json!({"url": "https://example.com/", "body": body})).unwrap_err();
    assert_eq!(err.kind, ViolationKind::TooDeep);
}

#[test]
fn oversized_request_is_refused_with_payload_too_large() {
    let registry = shipped();
    let fetch = registry.get("http_fetch").unwrap();
    let huge = format!("https://example.com/{}", "a".repeat(5000));
    let err = fetch.validate_request(&json!({ "url": huge })).unwrap_err();
    assert_eq!(err.kind, ViolationKind::TooLarge);
    assert_eq!(err.code(), "payload_too_large");
    let err = fetch.parse_request(huge.as_bytes()).unwrap_err();
    assert_eq!(err.kind, ViolationKind::TooLarge);
}

#[test]
fn schema_violation_reports_a_bounded_number_of_errors() {
    let registry = shipped();
    let pr = registry.get("github.pr_create").unwrap();
    let err = pr
        .validate_request(
            &json!({"owner": 1, "repo": 2, "title": 3, "head": 4, "base": 5, "body": 6, "draft": 7, "x": 8}),
        )
        .unwrap_err();
    assert!(err.reason.contains("more"), "{}", err.reason);
    assert!(err.reason.matches("; ").count() <= latchgate_core::manifest::MAX_REPORTED_ERRORS, "{}", err.reason);
}

#[test]
fn response_schema_rejects_an_output_that_does_not_prove_the_effect() {
    let registry = shipped();
    let merge = registry.get("github.pr_merge").unwrap();
    let ok = json!({"status": 200, "content_type": "application/json", "body": {"sha": "abc", "merged": true, "message": "ok"}});
    merge.validate_response(&ok).unwrap();
    let not_merged = json!({"status": 200, "content_type": null, "body": {"sha": "abc", "merged": false}});
    assert!(merge.validate_response(&not_merged).is_err());
}

#[test]
fn response_without_declared_schema_still_has_size_limits() {
    let registry = shipped();
    let action = registry.iter().find(|a| a.response_schema().is_none());
    if let Some(action) = action {
        let max = action.manifest().io.max_response_bytes;
        let big = Value::String("x".repeat(max + 1));
        assert_eq!(action.validate_response(&big).unwrap_err().kind, ViolationKind::TooLarge);
    }
}

#[test]
fn provider_digest_trust_detects_a_swapped_module() {
    let registry = shipped();
    let providers = tempfile::tempdir().unwrap();
    std::fs::create_dir(providers.path().join("dist")).unwrap();

    // No module at all: nothing is trusted.
    let trust = registry.verify_module_digests(providers.path());
    assert!(!trust.is_trusted("http_fetch"));
    assert!(trust.failures().all(|f| f.code() == "provider_module_unreadable"));

    // A module that is not the pinned one: mismatch.
    std::fs::write(providers.path().join("dist/http_api.wasm"), b"\0asm not the real module").unwrap();
    let fetch = registry.get("http_fetch").unwrap();
    match fetch.verify_module_digest(providers.path()) {
        Err(DigestError::Mismatch { expected, actual, .. }) => assert_ne!(expected, actual),
        other => panic!("expected a mismatch, got {other:?}"),
    }
    assert!(!registry.verify_module_digests(providers.path()).is_trusted("http_fetch"));
    assert!(!registry.verify_module_digests(providers.path()).is_trusted("unknown.action"));
}

#[test]
fn provider_digest_trust_accepts_the_pinned_module() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    let providers = dir.path().join("providers");
    std::fs::create_dir_all(manifests.join("schemas")).unwrap();
    std::fs::create_dir_all(providers.join("dist")).unwrap();
    let module = b"\0asm\x01\0\0\0 test module";
    std::fs::write(providers.join("dist/fs.wasm"), module).unwrap();
    let digest = latchgate_core::jcs::sha256_tagged(module);
    let text = std::fs::read_to_string(repo_root().join("manifests/fs_read.yaml")).unwrap();
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("provider_module_digest:") {
                format!("provider_module_digest: {digest}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(manifests.join("fs_read.yaml"), text).unwrap();
    let registry = Registry::load(&manifests).unwrap();
    let trust = registry.verify_module_digests(&providers);
    assert!(trust.is_trusted("fs.read") && trust.all_trusted());
    registry.get("fs.read").unwrap().verify_module_digest(&providers).unwrap();
}

/// Once `make providers` has produced the modules, the shipped manifests must
/// pin exactly those bytes (CI rebuilds and fails on any drift).
#[test]
fn shipped_manifests_pin_the_built_provider_modules() {
    let providers = repo_root().join("providers");
    let registry = shipped();
    let built: Vec<_> = registry.iter().filter(|a| a.manifest().module_path(&providers).exists()).collect();
    for action in built {
        if let Err(e) = action.verify_module_digest(&providers) {
            panic!("{e}");
        }
    }
}
