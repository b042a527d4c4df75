//! `latchgate secrets`: files it writes are read and edited by the real
//! `sops` 3.11, edits by sops are read back, values come only from stdin,
//! `rotate-key` leaves the old key useless, and `check` names what is missing.

use latchgate_signer::sops::{AgeIdentities, EncryptedDocument, Format};
use latchgate_tests::repo_root;
use latchgate_tests::secrets::sops;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::Builder::new().prefix("lg-cli").tempdir_in("/tmp").unwrap();
        let config =
            format!("manifests_dir = \"{}\"\n\n[keys]\ndir = \"keys\"\n", repo_root().join("manifests").display());
        std::fs::write(dir.path().join("latchgate.toml"), config).unwrap();
        Home { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> (i32, Value) {
        latchgate_tests::secrets::secrets_cli(&self.path("latchgate.toml"), args, stdin)
    }

    fn get(&self, name: &str) -> Option<String> {
        match self.run(&["get", name], None) {
            (0, v) => Some(v["value"].as_str().unwrap().to_string()),
            _ => None,
        }
    }

    fn sops(&self, key: &Path, args: &[&str]) -> std::process::Output {
        sops(&self.path("keys"), key, args, None)
    }
}

#[test]
fn cli_files_round_trip_with_sops_and_rotate_key_retires_the_old_key() {
    let home = Home::new();
    let (code, init) = home.run(&["init"], None);
    assert_eq!(code, 0, "{init}");
    let key = PathBuf::from(init["key_file"].as_str().unwrap());
    let file = PathBuf::from(init["secrets_file"].as_str().unwrap());
    assert_eq!((key.clone(), file.clone()), (home.path("keys/age-key.txt"), home.path("keys/secrets.yaml")));
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let config = std::fs::read_to_string(home.path("latchgate.toml")).unwrap();
    assert!(config.contains("[secrets]") && config.contains("sops_key_file"), "{config}");
    let (code, again) = home.run(&["init"], None);
    assert_eq!((code, again["error"]["code"].as_str()), (1, Some("secrets_already_initialised")), "{again}");

    // Values come from stdin (one trailing newline is the shell's); never from argv.
    let (code, set) = home.run(&["set", "GITHUB_TOKEN"], Some("ghp_from_cli\n"));
    assert_eq!((code, &set["created"]), (0, &Value::Bool(true)), "{set}");
    assert_eq!(home.get("GITHUB_TOKEN").as_deref(), Some("ghp_from_cli"));
    let (code, _) = home.run(&["set", "GITHUB_TOKEN", "ghp_on_argv"], None);
    assert_ne!(code, 0, "a value on the command line is a usage error");
    let (code, bad) = home.run(&["set", "GITHUB_TOKEN"], Some("line1\nline2"));
    assert_eq!((code, bad["error"]["code"].as_str()), (1, Some("secret_value_invalid")), "{bad}");
    let (code, bad) = home.run(&["set", "lower_case"], Some("x"));
    assert_eq!((code, bad["error"]["code"].as_str()), (1, Some("secret_name_invalid")), "{bad}");
    assert!(!std::fs::read_to_string(&file).unwrap().contains("ghp_from_cli"), "stored encrypted");

    // The real sops reads the CLI's file, edits it, and writes new files by the .sops.yaml rule.
    let out = home.sops(&key, &["decrypt", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("GITHUB_TOKEN: ghp_from_cli"));
    let out = home.sops(&key, &["set", file.to_str().unwrap(), "[\"SLACK_BOT_TOKEN\"]", "\"xoxb-from-sops\""]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(home.get("SLACK_BOT_TOKEN").as_deref(), Some("xoxb-from-sops"));
    std::fs::write(home.path("keys/plain.yaml"), "A: b\n").unwrap();
    let out = home.sops(&key, &["encrypt", "--filename-override", "secrets.yaml", "plain.yaml"]);
    assert!(out.status.success(), "the .sops.yaml rule matches: {}", String::from_utf8_lossy(&out.stderr));

    // list: names and the actions that need them, never a value.
    let (code, listed) = home.run(&["list"], None);
    assert_eq!(code, 0, "{listed}");
    let text = listed.to_string();
    assert!(!text.contains("ghp_from_cli") && !text.contains("xoxb-from-sops"), "{text}");
    let github = listed["secrets"].as_array().unwrap().iter().find(|s| s["name"] == "GITHUB_TOKEN").unwrap();
    assert_eq!(github["present"], true);
    assert!(github["required_by"].as_array().unwrap().iter().any(|a| a == "github.issue_create"), "{github}");

    // rotate-key: new age key and data key; the old key opens nothing written afterwards.
    let old = AgeIdentities::load(&key).unwrap();
    let (code, rotated) = home.run(&["rotate-key"], None);
    assert_eq!(code, 0, "{rotated}");
    let new_recipient = rotated["recipient"].as_str().unwrap();
    assert_ne!(old.recipients(), vec![new_recipient.to_string()]);
    let text = std::fs::read_to_string(&file).unwrap();
    let err = EncryptedDocument::parse(&text, Format::Yaml).unwrap().decrypt(&old).unwrap_err();
    assert_eq!(err.code(), "sops_no_matching_key", "{err}");
    assert_eq!(AgeIdentities::load(&key).unwrap().recipients(), vec![new_recipient.to_string()]);
    let sops_config = std::fs::read_to_string(home.path("keys/.sops.yaml")).unwrap();
    assert!(sops_config.contains(new_recipient) && !sops_config.contains(&old.recipients()[0]), "{sops_config}");
    let out = home.sops(&key, &["decrypt", file.to_str().unwrap()]);
    assert!(out.status.success(), "sops opens the rotated file with the new key");
    assert_eq!(home.get("GITHUB_TOKEN").as_deref(), Some("ghp_from_cli"));

    // remove, and check names every required secret that is now missing.
    let (code, _) = home.run(&["remove", "GITHUB_TOKEN"], None);
    assert_eq!(code, 0);
    assert_eq!(home.get("GITHUB_TOKEN"), None);
    let (code, checked) = home.run(&["check"], None);
    assert_eq!(code, 2, "{checked}");
    let failures: Vec<String> = checked["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] == "fail")
        .map(|f| f["message"].as_str().unwrap().to_string())
        .collect();
    assert!(failures.iter().any(|m| m.starts_with("GITHUB_TOKEN is required by")), "{failures:?}");
    assert!(failures.iter().any(|m| m.starts_with("GMAIL_OAUTH_TOKEN")), "{failures:?}");
    assert!(!failures.iter().any(|m| m.starts_with("SLACK_BOT_TOKEN")), "{failures:?}");
    let key_ok = checked["findings"].as_array().unwrap().iter().find(|f| f["check"] == "secrets.key_file").unwrap();
    assert_eq!(key_ok["status"], "pass", "{key_ok}");
}
