//! Runs the Rego unit tests (policies/latchgate_test.rego) inside `cargo test`:
//! every `data.latchgate.test_*` rule must evaluate to true.

use std::path::{Path, PathBuf};

fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

fn engine_with_tests() -> regorus::Engine {
    let dir = policies_dir();
    let mut engine = regorus::Engine::new();
    for name in ["latchgate.rego", "latchgate_test.rego"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        engine.add_policy(name.to_owned(), text).unwrap();
    }
    let data = std::fs::read_to_string(dir.join("data.json")).unwrap();
    engine.add_data(regorus::Value::from_json_str(&data).unwrap()).unwrap();
    engine
}

fn test_rule_names() -> Vec<String> {
    let text = std::fs::read_to_string(policies_dir().join("latchgate_test.rego")).unwrap();
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("test_"))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|n| format!("test_{n}"))
        .collect();
    names.dedup();
    names
}

#[test]
fn every_rego_unit_test_passes() {
    let names = test_rule_names();
    assert!(names.len() >= 15, "found only {} Rego tests", names.len());
    let template = engine_with_tests();
    let mut failures = Vec::new();
    for name in &names {
        let mut engine = template.clone();
        engine.set_input(regorus::Value::new_object());
        match engine.eval_rule(format!("data.latchgate.{name}")) {
            Ok(v) if v == regorus::Value::from(true) => {}
            Ok(v) => failures.push(format!("{name}: {v}")),
            Err(e) => failures.push(format!("{name}: error {e}")),
        }
    }
    assert!(failures.is_empty(), "failing Rego tests:\n{}", failures.join("\n"));
}

/// The runner itself must be able to fail: a deliberately false test is reported.
#[test]
fn the_runner_detects_a_failing_rego_test() {
    let mut engine = engine_with_tests();
    engine
        .add_policy(
            "failing_test.rego".into(),
            "package latchgate\nimport rego.v1\ntest_meta_must_fail if {\n d := decide({\"principal\": \"mallory\"})\n d.allow == true\n}\n".into(),
        )
        .unwrap();
    let v = engine.eval_rule("data.latchgate.test_meta_must_fail".into()).unwrap();
    assert_ne!(v, regorus::Value::from(true));
}
