//! What confinement a process ended up with, for the IPC health message, the
//! supervisor banner, `/readyz`, `/v1/admin/status` and `latchgate doctor`.
//! Plain externally tagged serde so it encodes with bincode as well as JSON.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerStatus {
    /// Everything the profile asks for is enforced by the kernel.
    Enforced,
    /// Enforced in part; the reason says what is missing.
    Degraded(String),
    /// Not enforced at all on this host.
    Unavailable(String),
}

impl LayerStatus {
    pub fn is_enforced(&self) -> bool {
        matches!(self, LayerStatus::Enforced)
    }

    fn describe(&self) -> String {
        match self {
            LayerStatus::Enforced => "enforced".into(),
            LayerStatus::Degraded(reason) => format!("DEGRADED ({reason})"),
            LayerStatus::Unavailable(reason) => format!("UNAVAILABLE ({reason})"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfinementReport {
    pub seccomp: LayerStatus,
    pub landlock: LayerStatus,
    /// The kernel's Landlock ABI, `None` when Landlock is off.
    pub landlock_abi: Option<u8>,
    /// Read back from `/proc/self/status` after sealing.
    pub no_new_privs: bool,
    /// Effective, permitted, inheritable and ambient sets all empty.
    pub caps_dropped: bool,
    /// Bounding set empty too (only possible when started with `CAP_SETPCAP`;
    /// with `no_new_privs` a full bounding set grants nothing).
    pub bounding_set_empty: bool,
    pub uid: u32,
    pub gid: u32,
}

impl ConfinementReport {
    /// Some layer is not fully enforced (what `best_effort` tolerates and reports).
    pub fn is_degraded(&self) -> bool {
        !self.seccomp.is_enforced() || !self.landlock.is_enforced() || !self.no_new_privs || !self.caps_dropped
    }

    /// One line for the banner and logs.
    pub fn summary(&self) -> String {
        let abi = self.landlock_abi.map(|a| format!(" (ABI {a})")).unwrap_or_default();
        format!(
            "uid {} gid {}, seccomp {}, landlock {}{abi}, no_new_privs {}, capabilities {}",
            self.uid,
            self.gid,
            self.seccomp.describe(),
            self.landlock.describe(),
            if self.no_new_privs { "set" } else { "NOT SET" },
            if self.caps_dropped { "none" } else { "HELD" },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> ConfinementReport {
        ConfinementReport {
            seccomp: LayerStatus::Enforced,
            landlock: LayerStatus::Degraded("landlock ABI 3: no TCP port rules".into()),
            landlock_abi: Some(3),
            no_new_privs: true,
            caps_dropped: true,
            bounding_set_empty: true,
            uid: 998,
            gid: 998,
        }
    }

    #[test]
    fn degraded_layer_is_visible_in_summary_and_flag() {
        let r = report();
        assert!(r.is_degraded());
        assert!(r.summary().contains("DEGRADED (landlock ABI 3"), "{}", r.summary());
    }

    #[test]
    fn report_round_trips_through_json() {
        let r = report();
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"degraded\""), "{json}");
        assert_eq!(serde_json::from_str::<ConfinementReport>(&json).unwrap(), r);
    }
}
