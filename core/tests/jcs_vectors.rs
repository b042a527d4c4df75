//! RFC 8785 (JSON Canonicalization Scheme) test vectors. Every hash the gate
//! signs — request_hash, grants, receipts, the audit chain — is computed over
//! this form, so a verifier in another language must get the same bytes.

use latchgate_core::jcs::{canonical_bytes, hash, sha256_tagged};
use serde_json::{Value, json};

fn canon(value: &Value) -> String {
    String::from_utf8(canonical_bytes(value).unwrap()).unwrap()
}

fn canon_text(json_text: &str) -> String {
    canon(&serde_json::from_str::<Value>(json_text).unwrap())
}

fn number(bits: u64) -> Value {
    Value::Number(serde_json::Number::from_f64(f64::from_bits(bits)).expect("finite"))
}

/// RFC 8785 appendix B: IEEE 754 bit patterns and their canonical text
/// (ECMAScript Number.prototype.toString).
#[test]
fn rfc8785_appendix_b_number_serialization() {
    let vectors: &[(u64, &str)] = &[
        (0x0000000000000000, "0"),
        (0x8000000000000000, "0"), // minus zero
        (0x0000000000000001, "5e-324"),
        (0x8000000000000001, "-5e-324"),
        (0x7fefffffffffffff, "1.7976931348623157e+308"),
        (0xffefffffffffffff, "-1.7976931348623157e+308"),
        (0x4340000000000000, "9007199254740992"),
        (0xc340000000000000, "-9007199254740992"),
        (0x4430000000000000, "295147905179352830000"),
        (0x44b52d02c7e14af5, "9.999999999999997e+22"),
        (0x44b52d02c7e14af6, "1e+23"),
        (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
        (0x444b1ae4d6e2ef4e, "999999999999999700000"),
        (0x444b1ae4d6e2ef4f, "999999999999999900000"),
        (0x444b1ae4d6e2ef50, "1e+21"),
        (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
        (0x3eb0c6f7a0b5ed8d, "0.000001"),
        (0x41b3de4355555553, "333333333.3333332"),
        (0x41b3de4355555554, "333333333.33333325"),
        (0x41b3de4355555555, "333333333.3333333"),
        (0x41b3de4355555556, "333333333.3333334"),
        (0x41b3de4355555557, "333333333.33333343"),
        (0xbecbf647612f3696, "-0.0000033333333333333333"),
        (0x43143ff3c1cb0959, "1424953923781206.2"),
    ];
    let mut failures = Vec::new();
    for (bits, expected) in vectors {
        let got = canon(&number(*bits));
        if got != *expected {
            failures.push(format!("{bits:016x}: expected {expected}, got {got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Boundaries of ECMAScript's decimal/exponent switch (1e21 and 1e-7).
#[test]
fn exponent_switch_points() {
    let cases: &[(f64, &str)] = &[
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e-7, "1e-7"),
        (1e-6, "0.000001"),
        (0.1, "0.1"),
        (-1.5, "-1.5"),
        (4.50, "4.5"),
        (2e-3, "0.002"),
        (1e30, "1e+30"),
        (123456789012345680000.0, "123456789012345680000"),
    ];
    for (value, expected) in cases {
        assert_eq!(canon(&json!(value)), *expected, "{value:e}");
    }
}

#[test]
fn nan_and_infinity_cannot_be_represented() {
    // serde_json refuses them as numbers; a float field that is NaN serializes
    // as null rather than producing invalid JSON text.
    assert!(serde_json::Number::from_f64(f64::NAN).is_none());
    assert!(serde_json::Number::from_f64(f64::INFINITY).is_none());
    #[derive(serde::Serialize)]
    struct Reading {
        value: f64,
    }
    let bytes = canonical_bytes(&Reading { value: f64::NAN });
    if let Ok(bytes) = bytes {
        assert_eq!(String::from_utf8(bytes).unwrap(), r#"{"value":null}"#);
    }
}

/// RFC 8785 §3.2.2 example: whitespace removed, numbers and strings normalised.
#[test]
fn rfc8785_section_3_2_2_example() {
    let input = r#"{
        "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
        "literals": [null, true, false]
    }"#;
    let expected = "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\"string\":\"\u{20ac}$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}";
    assert_eq!(canon_text(input), expected);
}

/// RFC 8785 §3.2.3 example: properties sorted by UTF-16 code units, so the
/// emoji (surrogates D83D DE00) sorts before U+FB33 although its code point is larger.
#[test]
fn rfc8785_section_3_2_3_property_order_by_utf16_code_units() {
    let input = r#"{
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\ud83d\ude00": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis"
    }"#;
    let expected = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
    assert_eq!(canon_text(input), expected);
}

#[test]
fn nested_objects_are_sorted_and_arrays_keep_their_order() {
    let v = json!({"b": [3, {"z": 1, "a": 2}, 1], "a": {"d": null, "c": true}});
    assert_eq!(canon(&v), r#"{"a":{"c":true,"d":null},"b":[3,{"a":2,"z":1},1]}"#);
}

#[test]
fn strings_escape_only_what_rfc8785_requires() {
    let all_controls: String = (0u8..0x20).map(char::from).collect();
    let expected_controls = "\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f";
    assert_eq!(canon(&json!(all_controls)), format!("\"{expected_controls}\""));
    // '/' and DEL are not escaped, non-ASCII stays raw UTF-8, quote and backslash are.
    assert_eq!(canon(&json!("a/b\u{7f}\u{e9}\u{1f600}\"\\")), "\"a/b\u{7f}\u{e9}\u{1f600}\\\"\\\\\"");
}

#[test]
fn integers_are_numbers_not_strings() {
    assert_eq!(canon(&json!([0, -1, 42, 9007199254740991_i64])), "[0,-1,42,9007199254740991]");
}

/// RFC 8785 §3.2.2.3: numbers are IEEE 754 doubles; an integer beyond 2^53
/// is written as the double nearest to it.
#[test]
fn integers_beyond_2_pow_53_are_rounded_like_doubles() {
    assert_eq!(canon_text("9007199254740993"), "9007199254740992");
    assert_eq!(canon_text("[18446744073709551615]"), "[18446744073709552000]");
    assert_eq!(canon_text("-9223372036854775808"), "-9223372036854776000");
}

#[test]
fn equal_documents_hash_equal_whatever_their_formatting() {
    let a = r#"{"b": 1.0, "a": [true, "x"]}"#;
    let b = "{\"a\":[true,\"x\"],\n \"b\":1}";
    let ha = hash(&serde_json::from_str::<Value>(a).unwrap()).unwrap();
    let hb = hash(&serde_json::from_str::<Value>(b).unwrap()).unwrap();
    assert_eq!(ha, hb);
    assert!(ha.starts_with("sha256:") && ha.len() == 7 + 64);
    assert_eq!(ha, sha256_tagged(br#"{"a":[true,"x"],"b":1}"#));
}
