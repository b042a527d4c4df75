//! A whole SOPS document: parse (YAML or JSON), decrypt with age identities
//! (data key, every value, MAC), edit, and encrypt back into the layout sops
//! 3.x reads.
//!
//! The MAC is SHA-512 over every non-null leaf in file order (or only the
//! encrypted ones when `mac_only_encrypted`), as the plaintext bytes sops
//! would hash, hex in upper case, stored AES-GCM-encrypted under the data key
//! with `lastmodified` as additional data. Decryption fails closed on any
//! difference: a changed, moved, removed, added or reordered value, a
//! changed `lastmodified`, or a changed MAC.

use super::SopsError;
use super::age_key::{AgeIdentities, wrap_data_key};
use super::cipher::{self, DataKey, ValueType};
use super::metadata::{AgeEntry, Metadata, Selection, WRITTEN_VERSION};
use super::tree::Node;
use sha2::{Digest, Sha512};
use std::collections::BTreeMap;
use std::path::Path;
use zeroize::Zeroizing;

/// Top-level `sops` key holding the metadata.
const METADATA_KEY: &str = "sops";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    /// By extension, as sops decides: `.json` is JSON, `.yaml`/`.yml` YAML.
    pub fn from_path(path: &Path) -> Result<Format, SopsError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Ok(Format::Json),
            Some("yaml" | "yml") => Ok(Format::Yaml),
            _ => Err(SopsError::Unsupported(format!(
                "{}: the secrets file must end in .yaml, .yml or .json",
                path.display()
            ))),
        }
    }
}

/// Decrypted top-level values by name; each value is wiped when dropped.
pub type SecretValues = BTreeMap<String, Zeroizing<String>>;

/// A file as read: the encrypted tree and its metadata.
pub struct EncryptedDocument {
    data: Vec<(String, Node)>,
    metadata: Metadata,
    format: Format,
}

impl EncryptedDocument {
    pub fn parse(text: &str, format: Format) -> Result<EncryptedDocument, SopsError> {
        let root: Node = match format {
            Format::Yaml => serde_yaml::from_str(text).map_err(|e| SopsError::Format(e.to_string()))?,
            Format::Json => serde_json::from_str(text).map_err(|e| SopsError::Format(e.to_string()))?,
        };
        let Node::Map(mut entries) = root else {
            return Err(SopsError::Format(format!("the document is {}, not a map", root.kind())));
        };
        let at = entries.iter().position(|(k, _)| k == METADATA_KEY).ok_or(SopsError::NotEncrypted)?;
        let (_, meta) = entries.remove(at);
        let metadata = Metadata::parse(&meta)?;
        Ok(EncryptedDocument { data: entries, metadata, format })
    }

    pub fn recipients(&self) -> Vec<String> {
        self.metadata.age.iter().map(|a| a.recipient.clone()).collect()
    }

    /// Recovers the data key, decrypts every value and checks the MAC.
    pub fn decrypt(&self, identities: &AgeIdentities) -> Result<DecryptedDocument, SopsError> {
        let key = self.data_key(identities)?;
        let mut mac = MacHasher::new(self.metadata.mac_only_encrypted);
        let selection = &self.metadata.selection;
        let data = map_entries(&self.data, &mut Vec::new(), &mut |v, p| decrypt_leaf(v, p, selection, &key, &mut mac))?;
        let aad = rfc3339_as_sops_formats_it(&self.metadata.last_modified)?;
        let (stored, _) = cipher::decrypt(&self.metadata.mac, &key, &aad).map_err(|_| SopsError::MacMismatch)?;
        if !constant_time_eq(stored.as_slice(), mac.finish().as_bytes()) {
            return Err(SopsError::MacMismatch);
        }
        Ok(DecryptedDocument { data, key, metadata: self.metadata.clone(), format: self.format })
    }

    fn data_key(&self, identities: &AgeIdentities) -> Result<DataKey, SopsError> {
        if self.metadata.age.is_empty() {
            return Err(SopsError::Unsupported("the file has no age recipient (only other key types)".into()));
        }
        let mut failure = None;
        let ours = identities.recipients();
        for entry in &self.metadata.age {
            match identities.unwrap_data_key(&entry.enc) {
                Ok(Some(key)) => return Ok(key),
                // Wrapped for one of our keys and still not ours to open: modified.
                Ok(None) if ours.contains(&entry.recipient) => {
                    failure = Some(SopsError::DataKey("the data key wrapped for this age key does not authenticate"))
                }
                Ok(None) => {}
                Err(e) => failure = Some(e),
            }
        }
        Err(failure.unwrap_or_else(|| SopsError::NoMatchingKey {
            file_recipients: self.recipients(),
            key_recipients: identities.recipients(),
        }))
    }
}

/// A decrypted document that can be read, edited and encrypted again with the
/// same data key (so other recipients stay valid).
pub struct DecryptedDocument {
    data: Vec<(String, Node)>,
    key: DataKey,
    metadata: Metadata,
    format: Format,
}

impl std::fmt::Debug for DecryptedDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.data.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("DecryptedDocument").field("keys", &keys).field("format", &self.format).finish_non_exhaustive()
    }
}

impl DecryptedDocument {
    /// An empty document encrypted to `recipient` under a new data key.
    pub fn new_empty(recipient: &str, format: Format) -> Result<DecryptedDocument, SopsError> {
        let key = cipher::random_data_key();
        let metadata = Metadata {
            age: vec![AgeEntry { recipient: recipient.to_string(), enc: wrap_data_key(recipient, &key)? }],
            last_modified: String::new(),
            mac: String::new(),
            selection: Selection::UnencryptedSuffix(super::metadata::DEFAULT_UNENCRYPTED_SUFFIX.into()),
            mac_only_encrypted: false,
            version: WRITTEN_VERSION.into(),
            other_keys: Vec::new(),
        };
        Ok(DecryptedDocument { data: Vec::new(), key, metadata, format })
    }

    /// Top-level scalar values (the secrets), as text. Nested maps and lists
    /// are kept in the file but are not secrets the gate injects.
    pub fn secrets(&self) -> SecretValues {
        self.data.iter().filter_map(|(k, v)| scalar_text(v).map(|t| (k.clone(), t))).collect()
    }

    pub fn get(&self, name: &str) -> Option<Zeroizing<String>> {
        self.data.iter().find(|(k, _)| k == name).and_then(|(_, v)| scalar_text(v))
    }

    /// Sets `name` to a string value (in place when it exists, else appended).
    pub fn set(&mut self, name: &str, value: Zeroizing<String>) {
        let node = Node::Str(value);
        match self.data.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = node,
            None => self.data.push((name.to_string(), node)),
        }
    }

    /// Removes `name`; whether it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.data.len();
        self.data.retain(|(k, _)| k != name);
        before != self.data.len()
    }

    pub fn recipients(&self) -> Vec<String> {
        self.metadata.age.iter().map(|a| a.recipient.clone()).collect()
    }

    /// A new data key wrapped for `recipient` only: after this, old keys and
    /// old copies of the file can no longer decrypt anything written next.
    pub fn rekey(&mut self, recipient: &str) -> Result<(), SopsError> {
        if let Some((kind, _)) = self.metadata.other_keys.first() {
            return Err(SopsError::Unsupported(format!(
                "the file also has `{kind}` master keys, which the gate cannot re-wrap a new data key for"
            )));
        }
        let key = cipher::random_data_key();
        self.metadata.age = vec![AgeEntry { recipient: recipient.to_string(), enc: wrap_data_key(recipient, &key)? }];
        self.key = key;
        Ok(())
    }

    /// The file text: every value encrypted with fresh nonces, a new
    /// `lastmodified` and MAC.
    pub fn encrypt(&self, now: time::OffsetDateTime) -> Result<String, SopsError> {
        let mut mac = MacHasher::new(self.metadata.mac_only_encrypted);
        let selection = &self.metadata.selection;
        let mut entries =
            map_entries(&self.data, &mut Vec::new(), &mut |v, p| encrypt_leaf(v, p, selection, &self.key, &mut mac))?;
        let mut metadata = self.metadata.clone();
        metadata.last_modified = format_sops_time(now)?;
        metadata.mac = cipher::encrypt(mac.finish().as_bytes(), ValueType::Str, &self.key, &metadata.last_modified)?;
        metadata.version = WRITTEN_VERSION.into();
        entries.push((METADATA_KEY.to_string(), metadata.to_node()));
        let root = Node::Map(entries);
        match self.format {
            Format::Yaml => serde_yaml::to_string(&root).map_err(|e| SopsError::Format(e.to_string())),
            Format::Json => {
                let mut text = serde_json::to_string_pretty(&root).map_err(|e| SopsError::Format(e.to_string()))?;
                text.push('\n');
                Ok(text)
            }
        }
    }
}

/// Rebuilds `node` with every leaf replaced by `leaf(value, key path)`, in
/// file order (the order the MAC hashes). Nulls are kept and not visited:
/// sops does not walk them (nothing to decrypt, nothing in the MAC). List
/// items share their list's key path.
fn map_leaves<'a>(node: &'a Node, path: &mut Vec<&'a str>, leaf: &mut LeafFn<'_>) -> Result<Node, SopsError> {
    match node {
        Node::Map(entries) => map_entries(entries, path, leaf).map(Node::Map),
        Node::List(items) => items.iter().map(|v| map_leaves(v, path, leaf)).collect::<Result<_, _>>().map(Node::List),
        Node::Null => Ok(Node::Null),
        value => leaf(value, path),
    }
}

type LeafFn<'f> = dyn FnMut(&Node, &[&str]) -> Result<Node, SopsError> + 'f;

fn map_entries<'a>(
    entries: &'a [(String, Node)],
    path: &mut Vec<&'a str>,
    leaf: &mut LeafFn<'_>,
) -> Result<Vec<(String, Node)>, SopsError> {
    let mut out = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        path.push(k.as_str());
        let mapped = map_leaves(v, path, leaf);
        path.pop();
        out.push((k.clone(), mapped?));
    }
    Ok(out)
}

fn decrypt_leaf(
    leaf: &Node,
    path: &[&str],
    selection: &Selection,
    key: &DataKey,
    mac: &mut MacHasher,
) -> Result<Node, SopsError> {
    let encrypted = selection.encrypts(path);
    let plain = if !encrypted {
        leaf.clone()
    } else {
        match leaf {
            Node::Str(s) if s.is_empty() => Node::str(""),
            Node::Str(s) => {
                let (bytes, kind) = cipher::decrypt(s, key, &additional_data(path))
                    .map_err(|e| e.at_path(path, cipher::looks_encrypted(s)))?;
                typed_plaintext(bytes, kind).map_err(|e| e.at_path(path, true))?
            }
            other => return Err(SopsError::Plaintext { path: path.join(":"), found: other.kind() }),
        }
    };
    if encrypted || !mac.only_encrypted {
        mac.leaf(&plain)?;
    }
    Ok(plain)
}

fn encrypt_leaf(
    leaf: &Node,
    path: &[&str],
    selection: &Selection,
    key: &DataKey,
    mac: &mut MacHasher,
) -> Result<Node, SopsError> {
    let encrypted = selection.encrypts(path);
    if encrypted || !mac.only_encrypted {
        mac.leaf(leaf)?;
    }
    if !encrypted || matches!(leaf, Node::Str(s) if s.is_empty()) {
        return Ok(leaf.clone());
    }
    let (bytes, kind) = leaf_bytes(leaf)?;
    Ok(Node::str(cipher::encrypt(&bytes, kind, key, &additional_data(path))?))
}

/// `a:b:c:` — sops's additional data for the value at that key path.
fn additional_data(path: &[&str]) -> String {
    let mut aad = path.join(":");
    aad.push(':');
    aad
}

fn typed_plaintext(bytes: Zeroizing<Vec<u8>>, kind: ValueType) -> Result<Node, SopsError> {
    let text = std::str::from_utf8(&bytes).map_err(|_| SopsError::BadPlaintext("not UTF-8"))?;
    Ok(match kind {
        ValueType::Str | ValueType::Bytes => Node::str(text),
        ValueType::Int | ValueType::Int64 => {
            Node::Int(text.parse().map_err(|_| SopsError::BadPlaintext("an int value is not an integer"))?)
        }
        ValueType::Float => {
            Node::Float(text.parse().map_err(|_| SopsError::BadPlaintext("a float value is not a number"))?)
        }
        ValueType::Bool => {
            Node::Bool(parse_go_bool(text).ok_or(SopsError::BadPlaintext("a bool value is not a boolean"))?)
        }
        ValueType::Comment => return Err(SopsError::BadPlaintext("a comment where a value belongs")),
    })
}

/// What Go's `strconv.ParseBool` accepts.
fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The plaintext bytes and type tag sops uses for a leaf (its `ToBytes`).
fn leaf_bytes(leaf: &Node) -> Result<(Zeroizing<Vec<u8>>, ValueType), SopsError> {
    let (text, kind) = match leaf {
        Node::Str(s) => return Ok((Zeroizing::new(s.as_bytes().to_vec()), ValueType::Str)),
        Node::Int(i) => (i.to_string(), ValueType::Int),
        Node::Float(f) => (go_float(*f)?, ValueType::Float),
        Node::Bool(b) => ((if *b { "True" } else { "False" }).to_string(), ValueType::Bool),
        other => return Err(SopsError::Format(format!("{} is not a leaf value", other.kind()))),
    };
    Ok((Zeroizing::new(text.into_bytes()), kind))
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`: shortest digits that read back
/// to the same number, never an exponent — which is also Rust's `Display`.
fn go_float(f: f64) -> Result<String, SopsError> {
    if !f.is_finite() {
        return Err(SopsError::Unsupported("non-finite float values are not supported".into()));
    }
    Ok(f.to_string())
}

fn scalar_text(node: &Node) -> Option<Zeroizing<String>> {
    Some(Zeroizing::new(match node {
        Node::Str(s) => s.to_string(),
        Node::Int(i) => i.to_string(),
        Node::Float(f) => go_float(*f).ok()?,
        Node::Bool(b) => b.to_string(),
        _ => return None,
    }))
}

struct MacHasher {
    hash: Sha512,
    only_encrypted: bool,
}

/// sops's fixed prefix for `mac_only_encrypted` MACs: SHA-256 of "sops".
const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b, 0x0b, 0x97, 0x5b,
    0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

impl MacHasher {
    fn new(only_encrypted: bool) -> MacHasher {
        let mut hash = Sha512::new();
        if only_encrypted {
            hash.update(MAC_ONLY_ENCRYPTED_INIT);
        }
        MacHasher { hash, only_encrypted }
    }

    fn leaf(&mut self, plain: &Node) -> Result<(), SopsError> {
        let (bytes, _) = leaf_bytes(plain)?;
        self.hash.update(&bytes);
        Ok(())
    }

    fn finish(self) -> String {
        hex::encode_upper(self.hash.finalize())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// sops authenticates the MAC with `LastModified.Format(time.RFC3339)`: the
/// parsed time, whole seconds, `Z` for UTC, else `±hh:mm`.
fn rfc3339_as_sops_formats_it(text: &str) -> Result<String, SopsError> {
    let parsed = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| SopsError::Format(format!("sops.lastmodified `{text}` is not RFC 3339")))?;
    format_sops_time(parsed)
}

fn format_sops_time(t: time::OffsetDateTime) -> Result<String, SopsError> {
    let date = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let mut out = t.format(&date).map_err(|_| SopsError::Format("time out of range".into()))?;
    let offset = t.offset();
    if offset.is_utc() {
        out.push('Z');
    } else {
        let (h, m, _) = offset.as_hms();
        out.push_str(&format!("{}{:02}:{:02}", if offset.is_negative() { '-' } else { '+' }, h.abs(), m.abs()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(format: Format) -> (AgeIdentities, String) {
        let ids = AgeIdentities::generate();
        let mut doc = DecryptedDocument::new_empty(&ids.primary_recipient(), format).unwrap();
        doc.set("GITHUB_TOKEN", Zeroizing::new("ghp_secret_value".into()));
        doc.set("OTHER", Zeroizing::new("x y".into()));
        let text = doc.encrypt(time::OffsetDateTime::now_utc()).unwrap();
        (ids, text)
    }

    #[test]
    fn written_documents_decrypt_in_both_formats() {
        for format in [Format::Yaml, Format::Json] {
            let (ids, text) = sample(format);
            assert!(!text.contains("ghp_secret_value"), "{text}");
            let doc = EncryptedDocument::parse(&text, format).unwrap().decrypt(&ids).unwrap();
            let secrets = doc.secrets();
            assert_eq!(secrets.get("GITHUB_TOKEN").map(|v| v.as_str()), Some("ghp_secret_value"));
            assert_eq!(secrets.keys().collect::<Vec<_>>(), ["GITHUB_TOKEN", "OTHER"]);
        }
    }

    #[test]
    fn reordered_or_moved_values_fail_the_mac_or_their_key_path() {
        let (ids, text) = sample(Format::Yaml);
        let lines: Vec<&str> = text.lines().collect();
        // Swap the two values, keeping the keys in place: each value now sits under another key path.
        let (k0, v0) = lines[0].split_once(": ").unwrap();
        let (k1, v1) = lines[1].split_once(": ").unwrap();
        let mut swapped: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        swapped[0] = format!("{k0}: {v1}");
        swapped[1] = format!("{k1}: {v0}");
        let swapped = swapped.join("\n");
        let err = EncryptedDocument::parse(&swapped, Format::Yaml).unwrap().decrypt(&ids).unwrap_err();
        assert_eq!(err.code(), "sops_value_tampered", "{err}");
        // Dropping a value keeps every remaining one valid but breaks the MAC.
        let dropped: String = lines[1..].join("\n");
        let err = EncryptedDocument::parse(&dropped, Format::Yaml).unwrap().decrypt(&ids).unwrap_err();
        assert_eq!(err.code(), "sops_mac_mismatch", "{err}");
    }

    #[test]
    fn a_plaintext_value_where_a_ciphertext_belongs_is_refused() {
        let (ids, text) = sample(Format::Yaml);
        let first = text.lines().next().unwrap().to_string();
        let planted = text.replacen(&first, "GITHUB_TOKEN: attacker-chosen", 1);
        let err = EncryptedDocument::parse(&planted, Format::Yaml).unwrap().decrypt(&ids).unwrap_err();
        assert_eq!(err.code(), "sops_value_tampered", "{err}");
        assert!(!err.to_string().contains("attacker-chosen"), "{err}");
    }

    #[test]
    fn sops_time_formatting_matches_go() {
        assert_eq!(rfc3339_as_sops_formats_it("2026-12-02T07:45:24Z").unwrap(), "2026-12-02T07:45:24Z");
        assert_eq!(rfc3339_as_sops_formats_it("2026-12-02T07:45:24.5+00:00").unwrap(), "2026-12-02T07:45:24Z");
        assert_eq!(rfc3339_as_sops_formats_it("2026-12-02T07:45:24-05:30").unwrap(), "2026-12-02T07:45:24-05:30");
    }
}
