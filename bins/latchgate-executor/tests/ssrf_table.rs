//! SSRF table: each URL meets the executor's sink check and address
//! classification (egress steps 3–4) with a resolver under the test's
//! control, and gets the expected verdict. The allowlist is generous on
//! purpose — it contains every name and literal below — so that a denial
//! comes from the SSRF defences, not from the allowlist.

mod common;

use common::MapResolver;
use latchgate_core::action::{EgressProfile, EgressRules};
use latchgate_executor::egress::{EgressClient, EgressConfig};
use std::sync::Arc;

enum Verdict {
    Allowed,
    Denied(&'static str),
}
use Verdict::*;

const TABLE: &[(&str, &str, Verdict)] = &[
    // (url, method, verdict)
    ("https://api.example.com/v1", "GET", Allowed),
    ("HTTPS://API.EXAMPLE.COM/v1", "GET", Allowed),
    ("hTtP://api.example.com/", "get", Allowed),
    ("https://deep.sub.example.org/", "GET", Allowed),
    ("http://[2606:4700::1111]/", "GET", Allowed),
    ("http://127.0.0.1/", "GET", Denied("forbidden_address")),
    ("http://2130706433/", "GET", Denied("forbidden_address")),
    ("http://0177.0.0.1/", "GET", Denied("forbidden_address")),
    ("http://0x7f000001/", "GET", Denied("forbidden_address")),
    ("http://127.1/", "GET", Denied("forbidden_address")),
    ("http://[::ffff:127.0.0.1]/", "GET", Denied("forbidden_address")),
    ("http://[::1]/", "GET", Denied("forbidden_address")),
    ("http://[::ffff:a9fe:a9fe]/", "GET", Denied("forbidden_address")),
    ("http://[64:ff9b::7f00:1]/", "GET", Denied("forbidden_address")),
    ("http://[2002:7f00:1::]/", "GET", Denied("forbidden_address")),
    ("http://[fd00:ec2::254]/", "GET", Denied("forbidden_address")),
    ("http://169.254.169.254/latest/meta-data/", "GET", Denied("forbidden_address")),
    ("http://100.64.0.1/", "GET", Denied("forbidden_address")),
    ("http://10.0.0.1/", "GET", Denied("forbidden_address")),
    ("http://192.168.1.1/", "GET", Denied("forbidden_address")),
    ("http://0.0.0.0/", "GET", Denied("forbidden_address")),
    ("http://224.0.0.1/", "GET", Denied("forbidden_address")),
    ("http://255.255.255.255/", "GET", Denied("forbidden_address")),
    ("http://localhost/", "GET", Denied("forbidden_address")),
    ("http://localhost./", "GET", Denied("domain_not_allowed")),
    ("http://rebind.example.com/", "GET", Denied("forbidden_address")),
    ("http://mixed.example.com/", "GET", Denied("forbidden_address")),
    ("http://metadata.example.com/", "GET", Denied("forbidden_address")),
    ("http://api.example.com@127.0.0.1/", "GET", Denied("url_userinfo")),
    ("http://user:pw@api.example.com/", "GET", Denied("url_userinfo")),
    ("http://api.example.com:8080/", "GET", Denied("port_not_allowed")),
    ("http://api.example.com:22/", "GET", Denied("port_not_allowed")),
    ("https://api.example.com:443/", "GET", Allowed),
    ("ftp://api.example.com/", "GET", Denied("scheme_not_allowed")),
    ("file:///etc/passwd", "GET", Denied("scheme_not_allowed")),
    ("gopher://api.example.com/", "GET", Denied("scheme_not_allowed")),
    ("https://evil.com/", "GET", Denied("domain_not_allowed")),
    ("https://api.example.com.evil.com/", "GET", Denied("domain_not_allowed")),
    ("https://example.org/", "GET", Denied("domain_not_allowed")),
    ("https://api.example.com/", "DELETE", Denied("method_not_allowed")),
    ("https://nxdomain.example.com/", "GET", Denied("unresolvable_host")),
    ("https://not-in-grant.example.net/", "GET", Denied("sink_not_in_grant")),
];

fn resolver() -> MapResolver {
    MapResolver::default()
        .with("api.example.com", &["93.184.216.34"])
        .with("deep.sub.example.org", &["93.184.216.35"])
        .with("localhost", &["127.0.0.1"])
        .with("rebind.example.com", &["127.0.0.1"])
        .with("mixed.example.com", &["93.184.216.34", "10.0.0.5"])
        .with("metadata.example.com", &["169.254.169.254"])
        .with("not-in-grant.example.net", &["93.184.216.36"])
}

#[tokio::test]
async fn ssrf_table_verdicts() {
    assert!(TABLE.len() >= 25);
    let client = EgressClient::with_resolver(EgressConfig::default(), Arc::new(resolver())).unwrap();
    let literals = [
        "127.0.0.1",
        "::ffff:127.0.0.1",
        "::1",
        "::ffff:169.254.169.254",
        "64:ff9b::7f00:1",
        "2002:7f00:1::",
        "fd00:ec2::254",
        "169.254.169.254",
        "100.64.0.1",
        "10.0.0.1",
        "192.168.1.1",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "2606:4700::1111",
    ];
    let names = [
        "api.example.com",
        "*.example.org",
        "localhost",
        "rebind.example.com",
        "mixed.example.com",
        "metadata.example.com",
        "nxdomain.example.com",
        "not-in-grant.example.net",
    ];
    let allowed: Vec<String> = names.iter().chain(literals.iter()).map(|s| s.to_string()).collect();
    let rules = EgressRules {
        profile: EgressProfile::ProxyAllowlist,
        allowed_domains: allowed.clone(),
        allowed_methods: vec!["GET".into(), "POST".into()],
    };
    let grant_sinks: Vec<String> = allowed.into_iter().filter(|s| s != "not-in-grant.example.net").collect();
    let mut failures = Vec::new();
    for (url, method, expected) in TABLE {
        let got = client.authorize(url, method, &rules, &grant_sinks).await;
        let ok = match (expected, &got) {
            (Allowed, Ok(_)) => true,
            (Denied(code), Err(e)) => e.code() == *code,
            _ => false,
        };
        if !ok {
            failures.push(format!("{url} {method}: got {:?}", got.map(|d| d.pinned).map_err(|e| e.code())));
        }
    }
    assert!(failures.is_empty(), "SSRF table mismatches:\n{}", failures.join("\n"));
}

#[tokio::test]
async fn private_destination_exception_is_exact_ip_and_port() {
    let config = EgressConfig {
        allow_private_destinations: vec!["127.0.0.1:8080".parse().unwrap()],
        sink_policy: latchgate_core::egress::SinkPolicy { extra_ports: vec![8080, 8081] },
        ..EgressConfig::default()
    };
    let client = EgressClient::with_resolver(config, Arc::new(resolver())).unwrap();
    let rules = EgressRules {
        profile: EgressProfile::ProxyAllowlist,
        allowed_domains: vec!["localhost".into()],
        allowed_methods: vec![],
    };
    let sinks = vec!["localhost".to_string()];
    let pinned = client.authorize("http://localhost:8080/", "GET", &rules, &sinks).await.unwrap().pinned;
    assert_eq!(pinned, "127.0.0.1:8080".parse().unwrap());
    let other_port = client.authorize("http://localhost:8081/", "GET", &rules, &sinks).await;
    assert_eq!(other_port.unwrap_err().code(), "forbidden_address");
}
