//! RFC 8785 JSON Canonicalization Scheme, and the `sha256:<hex>` hashes built on it.
//! Every signed or hashed document (request_hash, grants, receipts, audit chain)
//! goes through here so that two processes always hash the same bytes.

use serde::Serialize;
use serde_json::{Number, Value};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum JcsError {
    #[error("value cannot be canonicalized: {0}")]
    Canonicalize(String),
}

impl JcsError {
    pub fn code(&self) -> &'static str {
        "jcs_error"
    }
}

/// The canonical UTF-8 bytes of `value`: its JSON value, written with object
/// members sorted by the UTF-16 code units of their names, numbers as
/// ECMAScript writes doubles (`ryu-js`), strings with only the escapes
/// RFC 8785 requires, no whitespace.
///
/// Written against the parsed value rather than through a serde
/// `Formatter` (`serde_json_canonicalizer` boxes a writer for every token
/// and re-parses every member name): every grant, receipt, audit event and
/// request hash goes through here, and that took 60 us of a receipt on the
/// execute path. `tests::same_bytes_as_serde_json_canonicalizer` holds the
/// two to the same output.
pub fn canonical_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>, JcsError> {
    let value = serde_json::to_value(value).map_err(|e| JcsError::Canonicalize(e.to_string()))?;
    let mut out = Vec::with_capacity(256);
    write_value(&value, &mut out)?;
    Ok(out)
}

fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), JcsError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push(b'{');
            for (i, (name, member)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(name, out);
                out.push(b':');
                write_value(member, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// Every JSON number is an IEEE double in RFC 8785 (integers past 2^53 lose
/// precision exactly as they would in JavaScript).
fn write_number(n: &Number, out: &mut Vec<u8>) -> Result<(), JcsError> {
    let double = match (n.as_u64(), n.as_i64(), n.as_f64()) {
        (Some(u), _, _) => u as f64,
        (None, Some(i), _) => i as f64,
        (None, None, Some(f)) => f,
        _ => return Err(JcsError::Canonicalize(format!("number {n} is not a double"))),
    };
    if !double.is_finite() {
        return Err(JcsError::Canonicalize("NaN and infinities are not JSON".into()));
    }
    out.extend_from_slice(ryu_js::Buffer::new().format_finite(double).as_bytes());
    Ok(())
}

/// `"`, `\` and the C0 controls are escaped (the five with short forms by
/// them, the rest as `\u00xx`); everything else is written as UTF-8.
fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x0c => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x00..=0x1f => 0,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        start = i + 1;
        if short == 0 {
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        } else {
            out.extend_from_slice(&[b'\\', short]);
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// `sha256:<lowercase hex>` of arbitrary bytes.
pub fn sha256_tagged(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `sha256:<hex>` of the canonical form of `value`.
pub fn hash<T: Serialize>(value: &T) -> Result<String, JcsError> {
    Ok(sha256_tagged(&canonical_bytes(value)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Any JSON value: names and strings from all of Unicode (astral
    /// characters sort differently in UTF-16 than in UTF-8), controls,
    /// quotes, integers of every size and doubles of every magnitude.
    fn json_value() -> impl Strategy<Value = Value> {
        // Few, clashing characters: members whose order differs between
        // UTF-8 and UTF-16 (U+E000.. against astral) share objects often,
        // and every escape is common.
        let clashing = proptest::collection::vec(
            proptest::sample::select(vec![
                'a',
                'Z',
                '\u{e9}',
                '\u{E000}',
                '\u{FFFF}',
                '\u{10000}',
                '\u{1F600}', // order
                '"',
                '\\',
                '\u{0}',
                '\u{8}',
                '\t',
                '\n',
                '\u{c}',
                '\r',
                '\u{1f}',
                '\u{7f}',
                '/', // escapes
            ]),
            0..4,
        )
        .prop_map(|c| c.into_iter().collect::<String>());
        let text = prop_oneof![
            clashing,
            "[a-z]{0,6}",
            "\\PC{0,6}",
            proptest::collection::vec(any::<char>(), 0..6).prop_map(|c| c.into_iter().collect::<String>()),
            Just("\u{1F600}\u{E000}\"\\\u{0}\u{1f}\u{7f}".to_string()),
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
            text.clone().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(text.clone(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn same_bytes_as_serde_json_canonicalizer(value in json_value()) {
            let reference = serde_json_canonicalizer::to_vec(&value).unwrap();
            prop_assert_eq!(canonical_bytes(&value).unwrap(), reference);
        }
    }
}
