//! The `sops:` section of a file: who can unwrap the data key, the encrypted
//! MAC and when it was computed, and which values are encrypted. Only what
//! the gate implements is accepted; anything that would change which values
//! are encrypted or how the data key is recovered (regex rules, Shamir key
//! groups, a future field) is refused rather than guessed at.

use super::SopsError;
use super::tree::Node;

pub const DEFAULT_UNENCRYPTED_SUFFIX: &str = "_unencrypted";
/// The sops version the gate writes into files it creates (their format is sops 3.x).
pub const WRITTEN_VERSION: &str = "3.11.0";

/// Master-key lists of other kinds: kept verbatim so that editing a file
/// keeps them valid (the data key does not change), never used to decrypt.
const PASSED_THROUGH: &[&str] = &["kms", "gcp_kms", "azure_kv", "hc_vault", "pgp"];
/// Fields that change which values are encrypted: not implemented, refused.
const UNSUPPORTED: &[&str] = &[
    "unencrypted_regex",
    "encrypted_regex",
    "unencrypted_comment_regex",
    "encrypted_comment_regex",
    "key_groups",
    "shamir_threshold",
];

#[derive(Clone, Debug, PartialEq)]
pub struct AgeEntry {
    pub recipient: String,
    /// The data key wrapped for `recipient`: an armored age file.
    pub enc: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Selection {
    /// Every value is encrypted except those below a key ending in the suffix.
    UnencryptedSuffix(String),
    /// Only values below a key ending in the suffix are encrypted.
    EncryptedSuffix(String),
}

impl Selection {
    /// Whether the value at `path` (its map keys) is encrypted.
    pub fn encrypts(&self, path: &[&str]) -> bool {
        match self {
            Selection::UnencryptedSuffix(s) => !path.iter().any(|k| k.ends_with(s.as_str())),
            Selection::EncryptedSuffix(s) => path.iter().any(|k| k.ends_with(s.as_str())),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Metadata {
    pub age: Vec<AgeEntry>,
    /// RFC 3339, as written in the file.
    pub last_modified: String,
    /// The encrypted MAC (`ENC[…]`).
    pub mac: String,
    pub selection: Selection,
    pub mac_only_encrypted: bool,
    pub version: String,
    /// Other master-key lists, by name, verbatim.
    pub other_keys: Vec<(String, Node)>,
}

impl Metadata {
    pub fn parse(node: &Node) -> Result<Metadata, SopsError> {
        let Node::Map(entries) = node else {
            return Err(SopsError::Format(format!("`sops` is {}, not a map", node.kind())));
        };
        let text = |key: &str| -> Result<Option<String>, SopsError> {
            match node.get(key) {
                None | Some(Node::Null) => Ok(None),
                Some(Node::Str(s)) => Ok(Some(s.to_string())),
                Some(other) => Err(SopsError::Format(format!("sops.{key} is {}, not a string", other.kind()))),
            }
        };
        let mut other_keys = Vec::new();
        for (key, value) in entries {
            match key.as_str() {
                "age" | "lastmodified" | "mac" | "unencrypted_suffix" | "encrypted_suffix" | "mac_only_encrypted"
                | "version" => {}
                k if PASSED_THROUGH.contains(&k) => {
                    if !matches!(value, Node::Null) && !matches!(value, Node::List(l) if l.is_empty()) {
                        other_keys.push((key.clone(), value.clone()));
                    }
                }
                // A single key group is what sops writes without Shamir.
                "shamir_threshold" if matches!(value, Node::Null | Node::Int(0 | 1)) => {}
                k if UNSUPPORTED.contains(&k) => {
                    if !is_empty(value) {
                        return Err(SopsError::Unsupported(format!("sops.{k} is not supported by the gate")));
                    }
                }
                k => return Err(SopsError::Unsupported(format!("unknown sops metadata field `{k}`"))),
            }
        }
        let age = match node.get("age") {
            None | Some(Node::Null) => Vec::new(),
            Some(Node::List(items)) => items.iter().map(age_entry).collect::<Result<_, _>>()?,
            Some(other) => return Err(SopsError::Format(format!("sops.age is {}, not a list", other.kind()))),
        };
        let selection = match (text("unencrypted_suffix")?, text("encrypted_suffix")?) {
            (Some(_), Some(_)) => {
                return Err(SopsError::Format("both unencrypted_suffix and encrypted_suffix are set".into()));
            }
            (None, Some(s)) => Selection::EncryptedSuffix(s),
            (Some(s), None) => Selection::UnencryptedSuffix(s),
            (None, None) => Selection::UnencryptedSuffix(DEFAULT_UNENCRYPTED_SUFFIX.into()),
        };
        let mac_only_encrypted = match node.get("mac_only_encrypted") {
            None | Some(Node::Null) => false,
            Some(Node::Bool(b)) => *b,
            Some(other) => return Err(SopsError::Format(format!("sops.mac_only_encrypted is {}", other.kind()))),
        };
        Ok(Metadata {
            age,
            last_modified: text("lastmodified")?.ok_or_else(|| missing("lastmodified"))?,
            mac: text("mac")?.ok_or_else(|| missing("mac"))?,
            selection,
            mac_only_encrypted,
            version: text("version")?.unwrap_or_default(),
            other_keys,
        })
    }

    /// The `sops:` map as sops 3.x writes it.
    pub fn to_node(&self) -> Node {
        let mut entries = Vec::new();
        for (key, value) in &self.other_keys {
            entries.push((key.clone(), value.clone()));
        }
        let age = self
            .age
            .iter()
            .map(|a| Node::Map(vec![("recipient".into(), Node::str(&a.recipient)), ("enc".into(), Node::str(&a.enc))]))
            .collect();
        entries.push(("age".into(), Node::List(age)));
        entries.push(("lastmodified".into(), Node::str(&self.last_modified)));
        entries.push(("mac".into(), Node::str(&self.mac)));
        if self.mac_only_encrypted {
            entries.push(("mac_only_encrypted".into(), Node::Bool(true)));
        }
        match &self.selection {
            Selection::UnencryptedSuffix(s) => entries.push(("unencrypted_suffix".into(), Node::str(s))),
            Selection::EncryptedSuffix(s) => entries.push(("encrypted_suffix".into(), Node::str(s))),
        }
        entries.push(("version".into(), Node::str(&self.version)));
        Node::Map(entries)
    }
}

fn missing(key: &str) -> SopsError {
    SopsError::Format(format!("sops.{key} is missing"))
}

fn is_empty(node: &Node) -> bool {
    match node {
        Node::Null => true,
        Node::Str(s) => s.is_empty(),
        Node::List(l) => l.is_empty(),
        _ => false,
    }
}

fn age_entry(node: &Node) -> Result<AgeEntry, SopsError> {
    let field = |key: &str| {
        node.get(key)
            .and_then(Node::as_str)
            .map(str::to_string)
            .ok_or_else(|| SopsError::Format(format!("a sops.age entry has no string `{key}`")))
    };
    Ok(AgeEntry { recipient: field("recipient")?, enc: field("enc")? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_rules_and_unknown_fields_are_refused() {
        let base = "lastmodified: '2026-01-01T00:00:00Z'\nmac: ENC[x]\n";
        for extra in ["encrypted_regex: ^data$\n", "key_groups: [{age: []}]\n", "future_field: 1\n"] {
            let node: Node = serde_yaml::from_str(&format!("{base}{extra}")).unwrap();
            assert_eq!(Metadata::parse(&node).unwrap_err().code(), "sops_unsupported", "{extra}");
        }
        let node: Node = serde_yaml::from_str(&format!("{base}encrypted_regex: ''\npgp: []\n")).unwrap();
        let meta = Metadata::parse(&node).unwrap();
        assert_eq!(meta.selection, Selection::UnencryptedSuffix("_unencrypted".into()));
        assert!(meta.other_keys.is_empty());
    }
}
