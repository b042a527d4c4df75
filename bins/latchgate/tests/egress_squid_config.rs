//! `latchgate egress squid-config`: the proxy may reach exactly what the
//! `proxy_allowlist` manifests allow, and nothing is written from a broken
//! manifest set. (A real Squid runs on these files in
//! bins/latchgate-executor/tests/squid_proxy.rs, through the same
//! `latchgate_core::egress::write_squid_files` this command calls.)

use latchgate_core::egress::{SQUID_ALLOWLIST_FILE, SQUID_CONFIG_FILE, proxy_allowlist_domains, squid_allowlist};
use latchgate_core::manifest::Registry;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh directory under the target dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn repo_manifests() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../manifests")
}

fn squid_config(config: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_latchgate"))
        .args(["egress", "squid-config", "--config"])
        .arg(config)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn squid_allowlist_is_exactly_the_proxy_allowlist_domains_of_the_manifests() {
    let scratch = Scratch::new("squid-config");
    let config = scratch.0.join("latchgate.toml");
    let toml = format!(
        "manifests_dir = {:?}\n[egress]\nproxy_url = \"http://127.0.0.1:3199\"\nextra_ports = [8443]\n",
        repo_manifests().display().to_string()
    );
    std::fs::write(&config, toml).unwrap();
    let out = scratch.0.join("squid");

    let o = squid_config(&config, &out, &["--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();

    let registry = Registry::load(&repo_manifests()).unwrap();
    let (expected, invalid) = squid_allowlist(&proxy_allowlist_domains(registry.iter().map(|a| &a.manifest().egress)));
    assert!(invalid.is_empty());
    let allowlist = std::fs::read_to_string(out.join(SQUID_ALLOWLIST_FILE)).unwrap();
    assert_eq!(allowlist, expected);
    let entries: Vec<&str> = allowlist.lines().collect();
    assert!(entries.contains(&".example.com"), "`*.example.com` is written as Squid's `.example.com`");
    assert!(!entries.contains(&"example.com"), "covered by `.example.com`; Squid refuses the overlap");
    assert!(entries.contains(&"api.open-meteo.com"));
    assert_eq!(report["entries"], serde_json::json!(entries));

    let actions: Vec<&str> = report["actions"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(actions.contains(&"weather.current"));
    assert!(!actions.iter().any(|a| a.starts_with("fs.")), "actions without egress are not proxied: {actions:?}");

    let conf = std::fs::read_to_string(out.join(SQUID_CONFIG_FILE)).unwrap();
    assert_eq!(report["listen"], "127.0.0.1:3199", "listens where egress.proxy_url points");
    assert!(conf.contains("http_port 127.0.0.1:3199"));
    assert!(conf.contains(&format!("acl allowed dstdomain -n \"{}\"", out.join(SQUID_ALLOWLIST_FILE).display())));
    assert!(conf.contains("acl Safe_ports port 80 443 8443"));
    assert!(conf.trim_end().ends_with("http_access deny all"));
    assert!(out.join("state").is_dir());
    assert_eq!(report["config"], out.join(SQUID_CONFIG_FILE).display().to_string());
}

#[test]
fn nothing_is_written_from_a_broken_manifest_set_or_an_unusable_listen_address() {
    let scratch = Scratch::new("squid-config-broken");
    let empty = scratch.0.join("manifests");
    std::fs::create_dir(&empty).unwrap();
    let config = scratch.0.join("latchgate.toml");
    std::fs::write(&config, format!("manifests_dir = {:?}\n", empty.display().to_string())).unwrap();
    let out = scratch.0.join("squid");
    let o = squid_config(&config, &out, &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("[manifest_invalid]"), "{}", stderr(&o));
    assert!(!out.exists());

    let toml = format!(
        "manifests_dir = {:?}\n[egress]\nproxy_url = \"http://proxy.internal:3128\"\n",
        repo_manifests().display().to_string()
    );
    std::fs::write(&config, toml).unwrap();
    let o = squid_config(&config, &out, &[]);
    assert!(stderr(&o).contains("[config_invalid]"), "{}", stderr(&o));
    assert!(!out.exists());
    let o = squid_config(&config, &out, &["--listen", "127.0.0.1:3128"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("squid.conf"));
}
