//! The secrets part of `latchgate doctor` (also `latchgate secrets check`):
//! is `[secrets]` configured when an action needs it, is the age key private,
//! does the file decrypt and verify, and is every required secret of every
//! action present. Findings name files, actions and secret names — never a
//! value.

use crate::sops::{self, AgeIdentities, SopsError};
use latchgate_core::config::LoadedConfig;
use latchgate_core::manifest::Registry;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable check id, e.g. `secrets.required_present`.
    pub check: &'static str,
    pub status: Status,
    pub message: String,
    /// What to do about a warning or failure.
    pub remediation: Option<String>,
}

impl Finding {
    fn new(check: &'static str, status: Status, message: impl Into<String>, remediation: Option<String>) -> Finding {
        Finding { check, status, message: message.into(), remediation }
    }
}

/// Every declared secret: name → (actions requiring it, actions using it optionally).
pub fn declared_secrets(registry: &Registry) -> BTreeMap<String, (Vec<String>, Vec<String>)> {
    let mut declared: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for action in registry.iter() {
        let manifest = action.manifest();
        for spec in &manifest.secrets {
            let entry = declared.entry(spec.name.clone()).or_default();
            let list = if spec.required { &mut entry.0 } else { &mut entry.1 };
            list.push(manifest.action_id.clone());
        }
    }
    declared
}

pub fn check_secrets(cfg: &LoadedConfig, registry: &Registry) -> Vec<Finding> {
    let declared = declared_secrets(registry);
    let required: Vec<&String> = declared.iter().filter(|(_, (req, _))| !req.is_empty()).map(|(n, _)| n).collect();
    let Some((secrets_file, key_file)) = cfg.secrets_files() else {
        return vec![if required.is_empty() {
            Finding::new(
                "secrets.configured",
                Status::Pass,
                "no action requires a secret and [secrets] is not set",
                None,
            )
        } else {
            Finding::new(
                "secrets.configured",
                Status::Fail,
                format!("actions require secrets ({}) but [secrets] is not configured", join(&required)),
                Some("run `latchgate secrets init`, then `latchgate secrets set NAME` for each".into()),
            )
        }];
    };
    let mut findings = vec![Finding::new(
        "secrets.configured",
        Status::Pass,
        format!("secrets file {}, age key {}", secrets_file.display(), key_file.display()),
        None,
    )];
    match AgeIdentities::load(&key_file) {
        Ok(ids) => findings.push(Finding::new(
            "secrets.key_file",
            Status::Pass,
            format!(
                "{} is private and holds {} age identit{}",
                key_file.display(),
                ids.recipients().len(),
                plural(ids.recipients().len())
            ),
            None,
        )),
        Err(e) => {
            findings.push(Finding::new("secrets.key_file", Status::Fail, e.to_string(), Some(remedy(&e))));
            return findings;
        }
    }
    let document = match sops::decrypt_file(&secrets_file, &key_file) {
        Ok((document, _)) => document,
        Err(e) => {
            findings.push(Finding::new("secrets.file_decrypts", Status::Fail, e.to_string(), Some(remedy(&e))));
            return findings;
        }
    };
    let values = document.secrets();
    findings.push(Finding::new(
        "secrets.file_decrypts",
        Status::Pass,
        format!(
            "{} decrypts and its MAC verifies ({} value{})",
            secrets_file.display(),
            values.len(),
            if values.len() == 1 { "" } else { "s" }
        ),
        None,
    ));
    let mut all_required_present = true;
    for (name, (requiring, optional)) in &declared {
        if values.contains_key(name) {
            continue;
        }
        let remediation = Some(format!("latchgate secrets set {name}"));
        if !requiring.is_empty() {
            all_required_present = false;
            let message = format!("{name} is required by {} and is not in the secrets file", requiring.join(", "));
            findings.push(Finding::new("secrets.required_present", Status::Fail, message, remediation));
        } else {
            let message = format!("{name} (optional for {}) is not in the secrets file", optional.join(", "));
            findings.push(Finding::new("secrets.optional_present", Status::Warn, message, remediation));
        }
    }
    if all_required_present {
        let message = format!(
            "every required secret is present ({})",
            if required.is_empty() { "none".into() } else { join(&required) }
        );
        findings.push(Finding::new("secrets.required_present", Status::Pass, message, None));
    }
    findings
}

fn join(names: &[&String]) -> String {
    names.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "y" } else { "ies" }
}

/// The one thing to try for each kind of failure.
pub fn remedy(e: &SopsError) -> String {
    match e.code() {
        "sops_key_insecure_permissions" => {
            e.to_string().rsplit("fix with ").next().unwrap_or("chmod 600 the key file").to_string()
        }
        "sops_file_unreadable" | "sops_key_unreadable" => {
            "run `latchgate secrets init`, or point [secrets] at existing files".into()
        }
        "sops_no_matching_key" => "configure the age key the file was encrypted to (sops_key_file)".into(),
        "sops_mac_mismatch" | "sops_value_tampered" | "sops_data_key_invalid" => {
            "the file was modified outside sops/latchgate: restore it from a trusted copy".into()
        }
        _ => "re-create the file with `latchgate secrets` or sops 3.x (age recipients only)".into(),
    }
}
