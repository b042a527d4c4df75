//! Who is calling: the `SO_PEERCRED` uid the front captured, mapped to a
//! principal by `[identity.peercred]`.

use latchgate_core::config::{IdentityProvider, LoadedConfig};
use latchgate_core::error::{ApiError, ErrorCode};
use latchgate_ipc::messages::front_broker::PeerCred;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    /// Scopes the principal may hold; `None` = any (identity `none` or an
    /// unmapped uid with `allow_unmapped`, both refused in production).
    pub scopes: Option<Vec<String>>,
}

pub fn principal_for(cfg: &LoadedConfig, peer: &PeerCred) -> Result<Principal, ApiError> {
    let identity = &cfg.config.identity;
    match identity.provider {
        IdentityProvider::None => Ok(Principal { name: "anonymous".into(), scopes: None }),
        IdentityProvider::Peercred => match identity.peercred.principals.get(&peer.uid.to_string()) {
            Some(entry) => Ok(Principal { name: entry.principal.clone(), scopes: Some(entry.scopes.clone()) }),
            None if identity.peercred.allow_unmapped => {
                Ok(Principal { name: format!("uid:{}", peer.uid), scopes: None })
            }
            None => Err(ApiError::new(ErrorCode::IdentityForbidden)
                .with_deny_reason("uid_not_mapped")
                .with_remediation(format!(
                    "map uid {} under [identity.peercred.principals] (latchgate config add-principal)",
                    peer.uid
                ))),
        },
    }
}
