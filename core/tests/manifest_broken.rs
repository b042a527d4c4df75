//! Broken manifests are refused at load with an error that names the file and
//! the field, so a typo can never silently widen what an action may do.

use latchgate_core::manifest::{ManifestError, Registry, load_action};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn broken(name: &str) -> Vec<ManifestError> {
    let dir = fixtures().join("broken_manifests");
    let file = dir.join(name);
    match load_action(&file, &dir) {
        Ok(action) => panic!("{name} loaded as {}", action.id()),
        Err(errors) => errors,
    }
}

/// Exactly one error about `field`, with `code`, naming the file, whose
/// message contains `needle`.
fn assert_refused(name: &str, code: &str, field: &str, needle: &str) {
    let errors = broken(name);
    let matching: Vec<&ManifestError> = errors.iter().filter(|e| e.field() == Some(field)).collect();
    assert!(!matching.is_empty(), "{name}: no error about `{field}`; got {errors:#?}");
    let error = matching[0];
    let text = error.to_string();
    assert_eq!(error.code(), code, "{text}");
    assert!(text.contains(name), "error does not name the file: {text}");
    assert!(text.contains(field), "error does not name the field: {text}");
    assert!(text.contains(needle), "`{needle}` missing from: {text}");
}

#[test]
fn the_baseline_fixture_is_valid_so_each_mutation_is_what_breaks_it() {
    let dir = fixtures().join("broken_manifests");
    load_action(&dir.join("valid_baseline.yaml"), &dir).expect("baseline loads");
}

#[test]
fn misspelled_field_is_an_error_not_a_permissive_default() {
    assert_refused("unknown_field.yaml", "manifest_parse_error", "egress.alowed_domains", "unknown field");
}

#[test]
fn wrong_type_names_the_field() {
    assert_refused("wrong_type.yaml", "manifest_parse_error", "io.max_request_bytes", "invalid type");
}

#[test]
fn malformed_provider_digest_is_refused() {
    assert_refused("bad_digest_format.yaml", "manifest_invalid", "provider_module_digest", "64 lowercase hex");
}

#[test]
fn high_risk_action_without_response_schema_is_refused() {
    assert_refused(
        "high_risk_without_response_schema.yaml",
        "manifest_invalid",
        "io.response_schema",
        "high/critical-risk",
    );
}

#[test]
fn critical_risk_action_without_verifier_is_refused() {
    assert_refused(
        "critical_risk_without_verifier.yaml",
        "manifest_invalid",
        "verifier_kind",
        "verifier other than none",
    );
}

#[test]
fn schema_that_does_not_compile_is_refused() {
    assert_refused(
        "schema_does_not_compile.yaml",
        "manifest_schema_invalid",
        "io.request_schema",
        "schema is not usable",
    );
}

#[test]
fn schema_path_cannot_escape_the_manifests_directory() {
    assert_refused(
        "schema_path_escapes.yaml",
        "manifest_schema_invalid",
        "io.request_schema",
        "inside the manifests directory",
    );
}

#[test]
fn no_egress_profile_cannot_list_domains() {
    assert_refused("egress_none_with_domains.yaml", "manifest_invalid", "egress.allowed_domains", "profile is none");
}

#[test]
fn http_api_action_needs_a_template() {
    assert_refused("http_api_without_template.yaml", "manifest_invalid", "template", "required for provider http_api");
}

#[test]
fn template_host_must_be_on_the_actions_own_allowlist() {
    assert_refused(
        "template_host_not_allowlisted.yaml",
        "manifest_invalid",
        "template.url_template",
        "evil.example.net",
    );
}

#[test]
fn template_placeholder_must_be_a_required_request_property() {
    assert_refused("placeholder_not_in_request_schema.yaml", "manifest_invalid", "template.url_template", "{{idx}}");
}

#[test]
fn credentials_cannot_be_hard_coded_in_template_headers() {
    assert_refused(
        "credential_header_in_template.yaml",
        "manifest_invalid",
        "template.headers.Authorization",
        "secrets",
    );
}

#[test]
fn action_id_and_version_patterns_are_enforced() {
    assert_refused("bad_action_id.yaml", "manifest_invalid", "action_id", "^[a-z]");
    assert_refused("bad_version.yaml", "manifest_invalid", "version", "semantic version");
}

#[test]
fn wildcard_tld_and_ip_literal_are_not_domains() {
    let errors = broken("invalid_domains.yaml");
    let fields: Vec<_> = errors.iter().filter_map(|e| e.field()).collect();
    assert!(fields.contains(&"egress.allowed_domains[1]"), "{errors:#?}");
    assert!(fields.contains(&"egress.allowed_domains[2]"), "{errors:#?}");
    assert!(!fields.contains(&"egress.allowed_domains[0]"), "{errors:#?}");
}

#[test]
fn fs_action_must_pin_its_operation_in_the_request_schema() {
    assert_refused("fs_operation_not_pinned.yaml", "manifest_invalid", "io.request_schema", "const \"read\"");
}

#[test]
fn every_broken_rule_of_a_manifest_is_reported_at_once() {
    let errors = broken("secret_with_two_targets.yaml");
    let fields: Vec<_> = errors.iter().filter_map(|e| e.field()).collect();
    assert!(fields.contains(&"secrets[0].name"), "{errors:#?}");
    assert!(fields.contains(&"secrets[0].inject"), "{errors:#?}");
}

#[test]
fn duplicate_action_id_names_both_files() {
    let errors = Registry::load(&fixtures().join("duplicate_ids")).expect_err("duplicates refused");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let text = errors[0].to_string();
    assert_eq!(errors[0].code(), "manifest_duplicate_action_id");
    assert!(text.contains("second.yaml") && text.contains("first.yaml") && text.contains("dup.action"), "{text}");
}

#[test]
fn a_directory_of_broken_manifests_reports_all_of_them() {
    let errors = Registry::load(&fixtures().join("broken_manifests")).expect_err("refused");
    let files: std::collections::BTreeSet<_> = errors.iter().map(|e| e.file().to_path_buf()).collect();
    // Every fixture except the valid baseline contributes at least one error.
    let fixture_count = std::fs::read_dir(fixtures().join("broken_manifests")).unwrap().count();
    assert_eq!(files.len(), fixture_count - 1, "{errors:#?}");
}

#[test]
fn empty_or_missing_directory_is_an_error() {
    let empty = tempfile::tempdir().unwrap();
    let errors = Registry::load(empty.path()).expect_err("empty refused");
    assert_eq!(errors[0].code(), "manifest_dir_unreadable");
    let errors = Registry::load(&empty.path().join("missing")).expect_err("missing refused");
    assert_eq!(errors[0].code(), "manifest_dir_unreadable");
}
