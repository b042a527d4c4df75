//! Known-answer tests: RFC 7638 thumbprints and RFC 9449 `htu` normalisation.

use latchgate_core::jose::jws::CompactJws;
use latchgate_core::jose::{EcPublicJwk, HtuError, expected_htu, jwk_thumbprint, normalize_htu};
use serde_json::json;

#[test]
fn rfc7638_section_3_1_rsa_example_thumbprint() {
    let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
    let thumbprint = jwk_thumbprint(&[("kty", "RSA"), ("n", n), ("e", "AQAB")]);
    assert_eq!(thumbprint, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
}

/// RFC 9449's example key (Figure 2) and the `jkt` its §6.1 publishes for it.
const RFC9449_JWK_X: &str = "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs";
const RFC9449_JWK_Y: &str = "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA";
const RFC9449_JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
/// RFC 9449 Figure 2: a proof for `POST https://server.example.com/token`, iat 1562262616.
const RFC9449_PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";

#[test]
fn rfc9449_example_ec_key_has_the_published_thumbprint() {
    let jwk =
        EcPublicJwk::from_value(&json!({"kty": "EC", "crv": "P-256", "x": RFC9449_JWK_X, "y": RFC9449_JWK_Y})).unwrap();
    assert_eq!(jwk.thumbprint(), RFC9449_JKT);
}

#[test]
fn rfc9449_example_proof_signature_verifies_with_ring() {
    let jwk =
        EcPublicJwk::from_value(&json!({"kty": "EC", "crv": "P-256", "x": RFC9449_JWK_X, "y": RFC9449_JWK_Y})).unwrap();
    let jws = CompactJws::split(RFC9449_PROOF).unwrap();
    assert!(jws.verify_es256(&jwk.uncompressed_point().unwrap()));
}

#[test]
fn rfc9449_example_proof_passes_every_check_before_ath() {
    // The RFC's proof is for a token request, so it carries no `ath`: getting
    // exactly that error means typ, alg, jwk, jkt, signature, jti, htm, htu
    // and iat were all accepted.
    let err = latchgate_core::jose::verify_dpop_proof(
        RFC9449_PROOF,
        "POST",
        "https://server.example.com/token",
        "some-access-token",
        RFC9449_JKT,
        1_562_262_616,
    )
    .unwrap_err();
    assert_eq!(err.deny_reason(), "dpop_ath_missing");
}

#[test]
fn htu_scheme_and_host_are_case_normalised_and_default_port_dropped() {
    assert_eq!(normalize_htu("HTTPS://Server.Example.COM:443/token").unwrap(), "https://server.example.com/token");
    assert_eq!(normalize_htu("http://LOCALHOST:80/x").unwrap(), "http://localhost/x");
    assert_eq!(normalize_htu("http://localhost:3000/x").unwrap(), "http://localhost:3000/x");
}

#[test]
fn htu_query_and_fragment_are_ignored() {
    assert_eq!(
        normalize_htu("https://server.example.com/token?a=1&b=2#frag").unwrap(),
        "https://server.example.com/token"
    );
}

#[test]
fn htu_empty_path_is_slash_and_dot_segments_resolve() {
    assert_eq!(normalize_htu("https://server.example.com").unwrap(), "https://server.example.com/");
    assert_eq!(normalize_htu("https://server.example.com/a/./b/../c").unwrap(), "https://server.example.com/a/c");
}

#[test]
fn htu_percent_encoding_is_normalised_but_path_case_is_kept() {
    assert_eq!(normalize_htu("https://s.example/a%2fb").unwrap(), "https://s.example/a%2Fb");
    assert_eq!(normalize_htu("https://s.example/%7Euser").unwrap(), "https://s.example/~user");
    assert_ne!(normalize_htu("https://s.example/Token").unwrap(), normalize_htu("https://s.example/token").unwrap());
}

#[test]
fn htu_that_is_not_an_absolute_http_uri_is_refused() {
    assert_eq!(normalize_htu("/v1/leases"), Err(HtuError::NotAbsolute));
    assert_eq!(normalize_htu("ftp://s.example/x"), Err(HtuError::Scheme));
    assert_eq!(normalize_htu("https://user:pw@s.example/x"), Err(HtuError::UserInfo));
}

#[test]
fn expected_htu_joins_public_base_url_and_path() {
    assert_eq!(
        expected_htu("http://localhost:3000", "/v1/actions/echo/execute?x=1").unwrap(),
        "http://localhost:3000/v1/actions/echo/execute"
    );
    assert_eq!(
        expected_htu("https://Gate.Example/", "/v1/receipts/r1").unwrap(),
        "https://gate.example/v1/receipts/r1"
    );
    assert_eq!(
        expected_htu("https://gate.example/prefix", "/v1/leases").unwrap(),
        "https://gate.example/prefix/v1/leases"
    );
    assert_eq!(expected_htu("http://localhost:3000", "v1/leases"), Err(HtuError::Path));
}

#[test]
fn htu_normal_form_is_a_fixed_point() {
    // The verifier skips normalisation when a proof's htu already equals the
    // expected normal form; that is only sound if normalising is idempotent.
    for htu in [
        "HTTPS://Server.Example.COM:443/token?x#y",
        "http://localhost:3000/a/./b/../c/%7e%2f%41",
        "https://s.example/a/.%2E/b",
        "https://s.example/%2e%2E/x",
        "http://[::1]:80/p",
        "https://s.example",
    ] {
        let once = normalize_htu(htu).unwrap();
        assert_eq!(normalize_htu(&once).unwrap(), once, "{htu}");
    }
}
