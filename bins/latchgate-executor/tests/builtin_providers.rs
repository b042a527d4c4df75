//! The builtin providers end to end through the runtime: `http_api` against a
//! loopback target, `fs` under a temporary root.

mod common;

use common::*;
use latchgate_core::action::{HostImport, HttpTemplate};
use latchgate_executor::FailureClass;
use latchgate_executor::task::IoObservation;
use serde_json::{Value, json};

fn output(outcome: &latchgate_executor::Outcome) -> Value {
    serde_json::from_str(outcome.output_json().unwrap_or_else(|| panic!("call failed: {outcome:?}"))).unwrap()
}

#[tokio::test]
async fn http_api_fills_the_template_and_reports_what_the_host_observed() {
    let target = start_target().await;
    let runtime = runtime(Some(target.addr));
    let url = format!("http://{TARGET_HOST}:{}/search/{{{{q}}}}?page={{{{page}}}}", target.addr.port());
    let template = HttpTemplate {
        method: "POST".into(),
        url_template: url,
        headers: [("X-Client".to_string(), "latchgate".to_string())].into(),
        body_template: Some(r#"{"query": {{q}}, "page": {{page}}}"#.into()),
    };
    let outcome = runtime.run(http_task(template, json!({"q": "a b/../c", "page": 2}), &["POST"])).await.unwrap();
    let out = output(&outcome);
    assert_eq!(out["status"], 200);
    assert_eq!(out["body"]["uri"], "/search/a%20b%2F..%2Fc?page=2");
    let seen = target.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(serde_json::from_slice::<Value>(&seen[0].body).unwrap(), json!({"query": "a b/../c", "page": 2}));
    assert_eq!(outcome.io_calls, 1);
    let IoObservation::Http(obs) = &outcome.io[0] else { panic!("expected an http observation") };
    assert_eq!(obs.status, Some(200));
    assert_eq!(obs.connected_to.as_deref(), Some(target.addr.to_string().as_str()));
    assert!(obs.response_sha256.as_deref().unwrap().starts_with("sha256:"));
    assert!(obs.response_bytes > 0);
    assert!(outcome.fuel_consumed > 0);
}

#[tokio::test]
async fn url_values_cannot_add_path_segments_query_parameters_or_fragments() {
    let target = start_target().await;
    let runtime = runtime(Some(target.addr));
    let port = target.addr.port();
    let template = get_template(&format!("http://{TARGET_HOST}:{port}/items/{{{{id}}}}?q={{{{q}}}}&n={{{{n}}}}"));
    let value = "a/b?admin=1#frag x&y";
    let outcome = runtime.run(http_task(template, json!({"id": value, "q": value, "n": 7}), &[])).await.unwrap();
    assert_eq!(output(&outcome)["status"], 200);
    let seen = target.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let encoded = "a%2Fb%3Fadmin%3D1%23frag%20x%26y";
    assert_eq!(seen[0].uri, format!("/items/{encoded}?q={encoded}&n=7"));
}

#[tokio::test]
async fn a_url_template_that_is_one_placeholder_takes_the_whole_url_unencoded() {
    let target = start_target().await;
    let runtime = runtime(Some(target.addr));
    let url = format!("http://{TARGET_HOST}:{}/a/b?x=1&y=%2F", target.addr.port());
    let outcome = runtime.run(http_task(get_template("{{url}}"), json!({ "url": url }), &[])).await.unwrap();
    assert_eq!(output(&outcome)["status"], 200);
    assert_eq!(target.seen.lock().unwrap()[0].uri, "/a/b?x=1&y=%2F");
    // The whole URL is still a sink the host checks like any other.
    let metadata = json!({"url": "http://169.254.169.254/latest/meta-data/"});
    let outcome = runtime.run(http_task(get_template("{{url}}"), metadata, &[])).await.unwrap();
    assert_eq!(outcome.failure_class(), Some(FailureClass::EgressDenied));
    assert_eq!(target.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn provider_set_credential_headers_are_stripped() {
    let target = start_target().await;
    let runtime = runtime(Some(target.addr));
    let mut template = get_template(&format!("http://{TARGET_HOST}:{}/h", target.addr.port()));
    for h in ["Authorization", "Cookie", "Proxy-Authorization", "X-Api-Key", "X-Keep"] {
        template.headers.insert(h.into(), "stolen".into());
    }
    let outcome = runtime.run(http_task(template, json!({}), &[])).await.unwrap();
    let names: Vec<String> = output(&outcome)["body"]["header_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(names.contains(&"x-keep".to_string()));
    for h in ["authorization", "cookie", "proxy-authorization", "x-api-key"] {
        assert!(!names.contains(&h.to_string()), "{h} reached the target");
    }
    let IoObservation::Http(obs) = &outcome.io[0] else { panic!() };
    assert_eq!(obs.stripped_headers.len(), 4);
}

#[tokio::test]
async fn redirects_are_returned_not_followed() {
    let target = start_target().await;
    let runtime = runtime(Some(target.addr));
    let template = get_template(&format!("http://{TARGET_HOST}:{}/redirect", target.addr.port()));
    let outcome = runtime.run(http_task(template, json!({}), &[])).await.unwrap();
    assert_eq!(output(&outcome)["status"], 302);
    assert_eq!(outcome.io.len(), 1, "the metadata redirect target was never contacted");
}

#[tokio::test]
async fn unknown_template_variable_is_a_provider_error_and_nothing_is_sent() {
    let target = start_target().await;
    let runtime = runtime(Some(target.addr));
    let template = get_template(&format!("http://{TARGET_HOST}:{}/{{{{missing}}}}", target.addr.port()));
    let outcome = runtime.run(http_task(template, json!({"present": 1}), &[])).await.unwrap();
    assert_eq!(outcome.failure_class(), Some(FailureClass::ProviderError));
    assert!(format!("{:?}", outcome.result).contains("unknown_template_variable"));
    assert!(target.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn url_outside_the_allowlist_ends_the_call_with_egress_denied() {
    let target = start_target().await;
    let runtime = runtime(Some(target.addr));
    let template = get_template("http://169.254.169.254/latest/meta-data/");
    let outcome = runtime.run(http_task(template, json!({}), &[])).await.unwrap();
    assert_eq!(outcome.failure_class(), Some(FailureClass::EgressDenied));
    let IoObservation::Http(obs) = &outcome.io[0] else { panic!() };
    assert_eq!(obs.error.as_deref(), Some("domain_not_allowed"));
}

#[tokio::test]
async fn response_larger_than_the_limit_is_not_handed_to_the_provider() {
    let target = start_target().await;
    let runtime = runtime(Some(target.addr));
    let mut t = http_task(get_template(&format!("http://{TARGET_HOST}:{}/big", target.addr.port())), json!({}), &[]);
    t.limits.max_host_response_bytes = 1024;
    let outcome = runtime.run(t).await.unwrap();
    assert_eq!(outcome.failure_class(), Some(FailureClass::ProviderError));
    assert!(format!("{:?}", outcome.result).contains("response_too_large"));
}

fn fs_task(root: &std::path::Path, params: Value) -> latchgate_executor::RunTask {
    let mut t = task("fs", &[HostImport::Fs], params);
    t.fs_root = Some(root.to_path_buf());
    t
}

#[tokio::test]
async fn fs_create_read_overwrite_delete_with_expected_hashes() {
    let root = tempfile::tempdir().unwrap();
    let runtime = runtime(None);
    let created = output(
        &runtime.run(fs_task(root.path(), json!({"op":"create","path":"a.txt","content":"one"}))).await.unwrap(),
    );
    let read = output(&runtime.run(fs_task(root.path(), json!({"op":"read","path":"a.txt"}))).await.unwrap());
    assert_eq!(read["content"], "one");
    assert_eq!(read["sha256"], created["sha256"]);

    let stale = runtime
        .run(fs_task(
            root.path(),
            json!({"op":"overwrite","path":"a.txt","content":"two","expected_before":"sha256:00"}),
        ))
        .await
        .unwrap();
    assert!(format!("{:?}", stale.result).contains("precondition_failed"));
    assert_eq!(std::fs::read_to_string(root.path().join("a.txt")).unwrap(), "one");

    let ok = runtime
        .run(fs_task(
            root.path(),
            json!({"op":"overwrite","path":"a.txt","content":"two","expected_before": read["sha256"]}),
        ))
        .await
        .unwrap();
    let after = output(&ok)["sha256"].clone();
    assert_eq!(std::fs::read_to_string(root.path().join("a.txt")).unwrap(), "two");

    let again = runtime.run(fs_task(root.path(), json!({"op":"create","path":"a.txt","content":"x"}))).await.unwrap();
    assert!(format!("{:?}", again.result).contains("already_exists"));

    output(
        &runtime
            .run(fs_task(root.path(), json!({"op":"delete","path":"a.txt","expected_before": after})))
            .await
            .unwrap(),
    );
    assert!(!root.path().join("a.txt").exists());
}

#[tokio::test]
async fn fs_cannot_escape_its_root() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "top secret").unwrap();
    let root = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("link")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.path().join("out")).unwrap();
    let runtime = runtime(None);
    let escape = format!("../{}/secret", outside.path().file_name().unwrap().to_str().unwrap());
    for path in ["link", "out/secret", escape.as_str(), "/etc/passwd"] {
        let outcome = runtime.run(fs_task(root.path(), json!({"op":"read","path": path}))).await.unwrap();
        assert_eq!(outcome.failure_class(), Some(FailureClass::ProviderError), "{path}: {outcome:?}");
        assert!(!format!("{:?}", outcome).contains("top secret"));
    }
    let outcome =
        runtime.run(fs_task(root.path(), json!({"op":"create","path":"out/planted","content":"x"}))).await.unwrap();
    assert_eq!(outcome.failure_class(), Some(FailureClass::ProviderError));
    assert!(!outside.path().join("planted").exists());
}

#[tokio::test]
async fn fs_import_is_denied_to_an_action_that_did_not_declare_it() {
    let root = tempfile::tempdir().unwrap();
    let mut t = fs_task(root.path(), json!({"op":"create","path":"a.txt","content":"x"}));
    t.required_imports = vec![HostImport::Http];
    let outcome = runtime(None).run(t).await.unwrap();
    assert_eq!(outcome.failure_class(), Some(FailureClass::ImportDenied));
    assert!(!root.path().join("a.txt").exists());
}
