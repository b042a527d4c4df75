//! A task whose grant is forged, expired, pre-epoch or for another module or
//! action is refused before anything runs: the `fs` provider's file is never
//! created.

mod common;

use common::*;
use ed25519_dalek::SigningKey;
use latchgate_core::action::HostImport;
use latchgate_executor::{GrantError, RunError, RunTask};
use serde_json::json;

fn create_task(root: &std::path::Path) -> RunTask {
    let mut t = task("fs", &[HostImport::Fs], json!({"op": "create", "path": "proof.txt", "content": "ran"}));
    t.fs_root = Some(root.to_path_buf());
    t
}

async fn assert_refused(t: RunTask, root: &std::path::Path, runtime: &latchgate_executor::Runtime) -> GrantError {
    let err = runtime.run(t).await.expect_err("task must be refused");
    assert!(!root.join("proof.txt").exists(), "the provider ran despite the refusal");
    match err {
        RunError::Grant(g) => g,
        other => panic!("expected a grant refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_valid_grant_runs_the_provider() {
    let root = tempfile::tempdir().unwrap();
    let outcome = runtime(None).run(create_task(root.path())).await.unwrap();
    assert!(outcome.output_json().is_some(), "{outcome:?}");
    assert_eq!(std::fs::read(root.path().join("proof.txt")).unwrap(), b"ran");
}

#[tokio::test]
async fn forged_grant_is_refused_and_nothing_runs() {
    let root = tempfile::tempdir().unwrap();
    let runtime = runtime(None);
    let mut t = create_task(root.path());
    t.grant = sign(t.grant.grant.clone(), &SigningKey::from_bytes(&[9; 32]));
    assert_eq!(assert_refused(t, root.path(), &runtime).await, GrantError::BadSignature);
}

#[tokio::test]
async fn grant_edited_after_signing_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let runtime = runtime(None);
    let mut t = create_task(root.path());
    t.grant.grant.allowed_sinks.push("evil.example".into());
    assert_eq!(assert_refused(t, root.path(), &runtime).await, GrantError::BadSignature);
}

#[tokio::test]
async fn expired_grant_is_refused_and_nothing_runs() {
    let root = tempfile::tempdir().unwrap();
    let runtime = runtime(None);
    let mut t = create_task(root.path());
    let mut g = t.grant.grant.clone();
    g.issued_at = now() - 120;
    g.expires_at = now() - 60;
    t.grant = sign(g, &signing_key());
    assert!(matches!(assert_refused(t, root.path(), &runtime).await, GrantError::Expired { .. }));
}

#[tokio::test]
async fn pre_epoch_grant_is_refused_after_revocation() {
    let root = tempfile::tempdir().unwrap();
    let runtime = runtime(None);
    runtime.set_revocation_epoch(3);
    let mut t = create_task(root.path());
    let mut g = t.grant.grant.clone();
    g.epoch = 2;
    t.grant = sign(g, &signing_key());
    assert!(matches!(
        assert_refused(t, root.path(), &runtime).await,
        GrantError::RevokedEpoch { grant: 2, current: 3 }
    ));
}

#[tokio::test]
async fn grant_for_another_module_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let runtime = runtime(None);
    let mut t = create_task(root.path());
    let mut g = t.grant.grant.clone();
    g.provider_module_digest = digest_of("http_api");
    t.grant = sign(g, &signing_key());
    assert!(matches!(assert_refused(t, root.path(), &runtime).await, GrantError::DigestMismatch { .. }));
}

#[tokio::test]
async fn grant_for_another_action_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let runtime = runtime(None);
    let mut t = create_task(root.path());
    let mut g = t.grant.grant.clone();
    g.action_id = "test.other".into();
    t.grant = sign(g, &signing_key());
    assert!(matches!(assert_refused(t, root.path(), &runtime).await, GrantError::ActionMismatch { .. }));
}

#[tokio::test]
async fn tampered_module_on_disk_stops_the_runtime_from_starting() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(dist_dir()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let mut bytes = std::fs::read(dir.path().join("http_api.wasm")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(dir.path().join("http_api.wasm"), bytes).unwrap();
    let mut config = config_with(None);
    config.providers_dir = dir.path().to_path_buf();
    let err = latchgate_executor::Runtime::new(config).err().expect("tampered module accepted");
    assert_eq!(err.code(), "module_digest_mismatch");
}
