//! Destinations an operator allowed for one action beyond its manifest's
//! allowlist: `policy_data.egress_allow = {"<action_id>": ["host", ...]}` in
//! `data.json`. The broker's egress pre-check reads them from here, the Rego
//! policy from its data (both checks stay), and the grant then names the host
//! as an allowed sink — the executor enforces only what the signed grant says.
//! Exact host names or IP literals only: an operator allows what an agent was
//! seen asking for, never a wildcard.

use super::acl::{AclEditError, add_to_list, bump_revision, policy_data_mut, remove_from_list};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};

const SECTION: &str = "egress_allow";

/// action id → allowed hosts.
pub type EgressAllowEntries = BTreeMap<String, Vec<String>>;

/// The allowances currently in force (swapped whole on reload).
#[derive(Default)]
pub struct EgressAllowances {
    current: RwLock<EgressAllowEntries>,
}

impl EgressAllowances {
    /// Replace the allowances with those of `data` (the whole data.json document).
    pub fn load_from(&self, data: &Value) -> Result<usize, AclEditError> {
        let entries = entries(data)?;
        let count = entries.values().map(Vec::len).sum();
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = entries;
        Ok(count)
    }

    pub fn for_action(&self, action_id: &str) -> Vec<String> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).get(action_id).cloned().unwrap_or_default()
    }

    pub fn all(&self) -> EgressAllowEntries {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// `policy_data.egress_allow` of a data.json document (empty when absent).
pub fn entries(data: &Value) -> Result<EgressAllowEntries, AclEditError> {
    let Some(section) = data.pointer("/policy_data/egress_allow") else {
        return Ok(BTreeMap::new());
    };
    let section = section
        .as_object()
        .ok_or_else(|| AclEditError::Malformed("policy_data.egress_allow is not an object".into()))?;
    section
        .iter()
        .map(|(action, hosts)| {
            let hosts = hosts
                .as_array()
                .and_then(|a| a.iter().map(|h| h.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>())
                .ok_or_else(|| {
                    AclEditError::Malformed(format!("policy_data.egress_allow.{action} is not a list of strings"))
                })?;
            for host in &hosts {
                check_host(host)?;
            }
            Ok((action.clone(), hosts))
        })
        .collect()
}

/// Allow `host` for `action_id`. Returns whether the document changed.
pub fn allow(data: &mut Value, action_id: &str, host: &str) -> Result<bool, AclEditError> {
    check_action(action_id)?;
    check_host(host)?;
    let changed = add_to_list(section_mut(data)?, SECTION, action_id, host)?;
    if changed {
        bump_revision(data)?;
    }
    Ok(changed)
}

/// Withdraw `host` for `action_id`. Returns whether the document changed.
pub fn disallow(data: &mut Value, action_id: &str, host: &str) -> Result<bool, AclEditError> {
    check_action(action_id)?;
    let changed = remove_from_list(section_mut(data)?, SECTION, action_id, host)?;
    if changed {
        bump_revision(data)?;
    }
    Ok(changed)
}

fn section_mut(data: &mut Value) -> Result<&mut Map<String, Value>, AclEditError> {
    policy_data_mut(data)?
        .entry(SECTION)
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| AclEditError::Malformed("policy_data.egress_allow is not an object".into()))
}

fn check_action(action_id: &str) -> Result<(), AclEditError> {
    let ok = !action_id.is_empty()
        && action_id.len() <= 128
        && action_id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if ok { Ok(()) } else { Err(AclEditError::InvalidPattern(action_id.to_owned())) }
}

fn check_host(host: &str) -> Result<(), AclEditError> {
    if host.starts_with("*.") || latchgate_core::egress::validate_pattern(host).is_err() {
        return Err(AclEditError::InvalidHost(host.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data() -> Value {
        json!({"policy_data": {"version": "v", "acl_revision": 3, "acl": {}}})
    }

    #[test]
    fn allow_and_disallow_edit_the_section_and_bump_the_revision() {
        let mut d = data();
        assert!(allow(&mut d, "http_fetch", "new.example.org").unwrap());
        assert!(!allow(&mut d, "http_fetch", "new.example.org").unwrap());
        assert_eq!(entries(&d).unwrap()["http_fetch"], vec!["new.example.org"]);
        assert_eq!(d["policy_data"]["acl_revision"], 4);
        assert!(disallow(&mut d, "http_fetch", "new.example.org").unwrap());
        assert!(entries(&d).unwrap().is_empty());
        assert_eq!(d["policy_data"]["acl_revision"], 5);
    }

    #[test]
    fn wildcards_and_junk_hosts_are_refused() {
        let mut d = data();
        for host in ["*.example.org", "Example.org", "a b", "", "evil.com/x"] {
            assert!(allow(&mut d, "http_fetch", host).is_err(), "{host}");
        }
        let bad = json!({"policy_data": {"egress_allow": {"http_fetch": ["*.x.org"]}}});
        assert!(entries(&bad).is_err());
    }

    #[test]
    fn allowances_swap_whole() {
        let allowances = EgressAllowances::default();
        let mut d = data();
        allow(&mut d, "http_fetch", "a.example").unwrap();
        assert_eq!(allowances.load_from(&d).unwrap(), 1);
        assert_eq!(allowances.for_action("http_fetch"), vec!["a.example"]);
        assert!(allowances.for_action("http_post").is_empty());
    }
}
