//! `latchgate policy grant|revoke|show` on a copy of the shipped
//! `policies/data.json`: every change bumps `acl_revision` (so decisions name
//! the ACL that made them), a no-op changes nothing, and a refused edit leaves
//! the file byte for byte as it was.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

struct PolicyDir {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl PolicyDir {
    fn new() -> PolicyDir {
        let dir = tempfile::tempdir().unwrap();
        let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies/data.json");
        std::fs::create_dir(dir.path().join("acl")).unwrap();
        std::fs::copy(&shipped, dir.path().join("acl/data.json")).unwrap();
        let config = dir.path().join("latchgate.toml");
        std::fs::write(&config, "policies_dir = \"acl\"\n").unwrap();
        PolicyDir { dir, config }
    }

    fn data_file(&self) -> PathBuf {
        self.dir.path().join("acl/data.json")
    }

    fn data(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.data_file()).unwrap()).unwrap()
    }

    /// `policy` commands edit the file here (`--offline`): no gate runs in these tests.
    fn run(&self, args: &[&str]) -> Output {
        let mut args = args.to_vec();
        if args.first() == Some(&"policy") {
            args.push("--offline");
        }
        Command::new(env!("CARGO_BIN_EXE_latchgate"))
            .args(&args)
            .env("LATCHGATE_CONFIG", &self.config)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run latchgate")
    }

    fn json(&self, args: &[&str], status: i32) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.run(&args);
        assert_eq!(
            out.status.code(),
            Some(status),
            "{args:?}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("stdout is JSON")
    }
}

#[test]
fn grant_show_revoke_round_trip_bumps_the_acl_revision() {
    let p = PolicyDir::new();
    let before = p.data();
    let start = before["policy_data"]["acl_revision"].as_u64().unwrap();

    let granted = p.json(&["policy", "grant", "agent-new", "http_fetch"], 0);
    assert_eq!(granted["changed"], true);
    assert_eq!(granted["acl_revision"], start + 1);
    assert_eq!(granted["patterns"], serde_json::json!(["http_fetch"]));

    let granted = p.json(&["policy", "grant", "agent-new", "github.*"], 0);
    assert_eq!(granted["acl_revision"], start + 2);

    let again = p.json(&["policy", "grant", "agent-new", "github.*"], 0);
    assert_eq!(again["changed"], false, "granting twice is a no-op");
    assert_eq!(again["acl_revision"], start + 2);

    let shown = p.json(&["policy", "show", "agent-new"], 0);
    assert_eq!(shown["acl_revision"], start + 2);
    assert_eq!(shown["acl"]["agent-new"], serde_json::json!(["http_fetch", "github.*"]));
    assert_eq!(shown["acl"]["*"], before["policy_data"]["acl"]["*"], "`*` applies to every principal");
    assert!(shown["acl"].get("agent-dev").is_none(), "other principals are not shown");

    let all = p.json(&["policy", "show"], 0);
    assert_eq!(all["acl"]["agent-dev"], before["policy_data"]["acl"]["agent-dev"]);

    let revoked = p.json(&["policy", "revoke", "agent-new", "http_fetch"], 0);
    assert_eq!((revoked["changed"].as_bool(), revoked["acl_revision"].as_u64()), (Some(true), Some(start + 3)));
    assert_eq!(revoked["patterns"], serde_json::json!(["github.*"]));

    let narrower = p.json(&["policy", "revoke", "agent-new", "github.issue_get"], 0);
    assert_eq!(narrower["changed"], false, "revoking a narrower pattern does not touch `github.*`");

    p.json(&["policy", "revoke", "agent-new", "github.*"], 0);
    let shown = p.json(&["policy", "show", "agent-new"], 0);
    assert!(shown["acl"].get("agent-new").is_none(), "a principal without entries is dropped");

    // Everything but the ACL and its revision is as shipped.
    let mut after = p.data();
    assert_eq!(after["policy_data"]["acl_revision"], start + 4);
    after["policy_data"]["acl_revision"] = before["policy_data"]["acl_revision"].clone();
    assert_eq!(after, before);
}

#[test]
fn refused_edits_leave_the_file_untouched() {
    let p = PolicyDir::new();
    let original = std::fs::read(p.data_file()).unwrap();

    let bad_pattern = p.json(&["policy", "grant", "agent-new", "github.{issue,pr}*"], 1);
    assert_eq!(bad_pattern["error"]["code"], "invalid_action_pattern");
    assert!(bad_pattern["error"]["remediation"].as_str().unwrap().contains("**"));

    let bad_principal = p.json(&["policy", "grant", "agent new", "http_fetch"], 1);
    assert_eq!(bad_principal["error"]["code"], "invalid_principal");

    let unchanged = p.json(&["policy", "revoke", "nobody", "http_fetch"], 0);
    assert_eq!(unchanged["changed"], false);

    assert_eq!(std::fs::read(p.data_file()).unwrap(), original);

    let out = p.run(&["policy", "grant", "agent-new", "a?b"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("[invalid_action_pattern]") && stderr.contains("fix: "), "{stderr}");
}

#[test]
fn human_output_names_what_changed() {
    let p = PolicyDir::new();
    let out = p.run(&["policy", "grant", "agent-new", "fs.**"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("granted fs.** to agent-new (acl_revision"));

    let out = p.run(&["policy", "show"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.lines().any(|l| l.starts_with("agent-new") && l.ends_with("fs.**")), "{table}");
}

#[test]
fn missing_data_file_is_an_error_with_a_remediation() {
    let p = PolicyDir::new();
    std::fs::remove_file(p.data_file()).unwrap();
    let doc = p.json(&["policy", "show"], 1);
    assert_eq!(doc["error"]["code"], "policy_data_io_error");
}
