//! The gate's native SOPS code against the real `sops` 3.11 binary, both
//! ways, and refusal of every kind of tampering with a file sops wrote.

use latchgate_signer::sops::{AgeIdentities, DecryptedDocument, EncryptedDocument, Format, decrypt_file};
use latchgate_tests::secrets::{age_keygen, sops, write_sops_config};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

struct Scratch {
    dir: tempfile::TempDir,
    key: PathBuf,
}

impl Scratch {
    /// A directory with an age key (0600) and a `.sops.yaml` for it.
    fn new() -> Scratch {
        let dir = tempfile::Builder::new().prefix("lg-sops").tempdir_in("/tmp").unwrap();
        let key = dir.path().join("age.txt");
        let recipient = age_keygen(&key);
        write_sops_config(dir.path(), &recipient);
        Scratch { dir, key }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `sops encrypt` of `plain` written to `name`.
    fn sops_encrypt(&self, name: &str, plain: &str) -> PathBuf {
        let source = self.path(&format!("plain-{name}"));
        std::fs::write(&source, plain).unwrap();
        let out =
            sops(self.dir.path(), &self.key, &["encrypt", "--filename-override", name, source.to_str().unwrap()], None);
        assert!(out.status.success(), "sops encrypt: {}", String::from_utf8_lossy(&out.stderr));
        std::fs::remove_file(&source).unwrap();
        let target = self.path(name);
        std::fs::write(&target, &out.stdout).unwrap();
        target
    }

    fn sops_decrypt(&self, file: &Path) -> Result<String, String> {
        let out = sops(self.dir.path(), &self.key, &["decrypt", file.to_str().unwrap()], None);
        if out.status.success() {
            Ok(String::from_utf8(out.stdout).unwrap())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

const PLAIN_YAML: &str = "\
GITHUB_TOKEN: ghp_0123456789abcdefSECRET
SLACK_BOT_TOKEN: 'xoxb-with spaces and: colons'
PIN: 1234
ENABLED: true
RATIO: 0.25
# a comment sops encrypts but leaves out of the MAC
nested:
    list: [one, 2, {deep: three}]
    note_unencrypted: stays readable
EMPTY: ''
NOTHING: null
";

#[test]
fn files_written_by_sops_are_read_by_the_gate() {
    let s = Scratch::new();
    let yaml = s.sops_encrypt("secrets.yaml", PLAIN_YAML);
    assert!(!std::fs::read_to_string(&yaml).unwrap().contains("ghp_0123"));
    let (doc, _) = decrypt_file(&yaml, &s.key).expect("sops-written YAML decrypts and its MAC verifies");
    let secrets = doc.secrets();
    let get = |k: &str| secrets.get(k).map(|v| v.as_str().to_string());
    assert_eq!(get("GITHUB_TOKEN").as_deref(), Some("ghp_0123456789abcdefSECRET"));
    assert_eq!(get("SLACK_BOT_TOKEN").as_deref(), Some("xoxb-with spaces and: colons"));
    assert_eq!(get("PIN").as_deref(), Some("1234"));
    assert_eq!(get("ENABLED").as_deref(), Some("true"));
    assert_eq!(get("RATIO").as_deref(), Some("0.25"));
    assert_eq!(get("EMPTY").as_deref(), Some(""));
    assert_eq!(get("nested"), None, "nested maps are kept but are not secrets");

    let json = s.sops_encrypt(
        "secrets.json",
        r#"{"API_KEY": "k-123", "n": 7, "flags": {"on": false, "list": [1.5, "x"]}, "MAYBE": null}"#,
    );
    let (doc, _) = decrypt_file(&json, &s.key).expect("sops-written JSON decrypts and its MAC verifies");
    assert_eq!(doc.get("API_KEY").as_deref().map(String::as_str), Some("k-123"));
    assert_eq!(doc.get("n").as_deref().map(String::as_str), Some("7"));
}

#[test]
fn files_written_by_the_gate_are_read_and_edited_by_sops() {
    let s = Scratch::new();
    let identities = AgeIdentities::load(&s.key).unwrap();
    for (name, format) in [("gate.yaml", Format::Yaml), ("gate.json", Format::Json)] {
        let mut doc = DecryptedDocument::new_empty(&identities.primary_recipient(), format).unwrap();
        doc.set("GITHUB_TOKEN", Zeroizing::new("ghp_gate_written".into()));
        doc.set("WEBHOOK_TOKEN", Zeroizing::new("wh \"quoted\" \\ value".into()));
        let path = s.path(name);
        std::fs::write(&path, doc.encrypt(time::OffsetDateTime::now_utc()).unwrap()).unwrap();

        let plain = s.sops_decrypt(&path).expect("sops decrypts the gate's file");
        let value: serde_json::Value =
            if format == Format::Json { serde_json::from_str(&plain).unwrap() } else { serde_yaml_from(&plain) };
        assert_eq!(value["GITHUB_TOKEN"], "ghp_gate_written", "{plain}");
        assert_eq!(value["WEBHOOK_TOKEN"], "wh \"quoted\" \\ value", "{plain}");

        // sops edits the gate's file in place; the gate reads sops's edit.
        let out = s_set(&s, &path, "ADDED_BY_SOPS", "\"from-sops\"");
        assert!(out.status.success(), "sops set: {}", String::from_utf8_lossy(&out.stderr));
        let (doc, _) = decrypt_file(&path, &s.key).expect("the gate reads the file sops edited");
        assert_eq!(doc.get("ADDED_BY_SOPS").as_deref().map(String::as_str), Some("from-sops"));
        assert_eq!(doc.get("GITHUB_TOKEN").as_deref().map(String::as_str), Some("ghp_gate_written"));
    }
    // An empty document (what `latchgate secrets init` writes) is a valid sops file too.
    let empty = DecryptedDocument::new_empty(&identities.primary_recipient(), Format::Yaml).unwrap();
    let path = s.path("empty.yaml");
    std::fs::write(&path, empty.encrypt(time::OffsetDateTime::now_utc()).unwrap()).unwrap();
    assert_eq!(s.sops_decrypt(&path).expect("sops decrypts an empty gate file").trim(), "{}");
}

fn s_set(s: &Scratch, path: &Path, key: &str, json_value: &str) -> std::process::Output {
    sops(s.dir.path(), &s.key, &["set", path.to_str().unwrap(), &format!("[\"{key}\"]"), json_value], None)
}

fn serde_yaml_from(text: &str) -> serde_json::Value {
    let value: latchgate_signer::sops::tree::Node = serde_yaml::from_str(text).unwrap();
    serde_json::to_value(&value).unwrap()
}

/// Rewrites the `data:` of the first encrypted value of `key` (one base64
/// character changed), keeping the file well-formed.
fn flip_data_of(text: &str, key: &str) -> String {
    let line = text.lines().find(|l| l.trim_start().starts_with(&format!("{key}:"))).unwrap();
    let start = line.find("data:").unwrap() + "data:".len();
    let mut chars: Vec<char> = line.chars().collect();
    chars[start] = if chars[start] == 'A' { 'B' } else { 'A' };
    text.replace(line, &chars.into_iter().collect::<String>())
}

#[test]
fn tampered_ciphertext_mac_or_timestamp_of_a_sops_file_is_refused() {
    let s = Scratch::new();
    let path = s.sops_encrypt("secrets.yaml", PLAIN_YAML);
    let original = std::fs::read_to_string(&path).unwrap();
    let identities = AgeIdentities::load(&s.key).unwrap();
    let decrypt = |text: &str| EncryptedDocument::parse(text, Format::Yaml).and_then(|d| d.decrypt(&identities));
    assert!(decrypt(&original).is_ok());

    let err = decrypt(&flip_data_of(&original, "GITHUB_TOKEN")).unwrap_err();
    assert_eq!(err.code(), "sops_value_tampered", "{err}");
    assert!(err.to_string().contains("GITHUB_TOKEN"), "names the path: {err}");
    // An unencrypted value changed (no ciphertext to break): only the MAC notices.
    let err = decrypt(&original.replace("stays readable", "was edited")).unwrap_err();
    assert_eq!(err.code(), "sops_mac_mismatch", "{err}");
    let err = decrypt(&flip_data_of(&original, "mac")).unwrap_err();
    assert_eq!(err.code(), "sops_mac_mismatch", "{err}");
    let lastmodified = original.lines().find(|l| l.trim_start().starts_with("lastmodified:")).unwrap();
    let err = decrypt(&original.replace(lastmodified, "    lastmodified: \"2001-01-01T00:00:00Z\"")).unwrap_err();
    assert_eq!(err.code(), "sops_mac_mismatch", "{err}");
    // The wrapped data key: a change breaks age's authentication.
    let enc_line = original.lines().skip_while(|l| !l.contains("BEGIN AGE")).nth(2).unwrap();
    let mut flipped: Vec<char> = enc_line.chars().collect();
    let at = flipped.len() / 2;
    flipped[at] = if flipped[at] == 'A' { 'B' } else { 'A' };
    let err = decrypt(&original.replace(enc_line, &flipped.into_iter().collect::<String>())).unwrap_err();
    assert_eq!(err.code(), "sops_data_key_invalid", "{err}");
    // sops agrees about the tampered value (its own integrity check refuses it too).
    std::fs::write(&path, flip_data_of(&original, "GITHUB_TOKEN")).unwrap();
    assert!(s.sops_decrypt(&path).is_err());
    // Another key cannot open it at all.
    let other = AgeIdentities::generate();
    let err = EncryptedDocument::parse(&original, Format::Yaml).unwrap().decrypt(&other).unwrap_err();
    assert_eq!(err.code(), "sops_no_matching_key", "{err}");
}
