//! The kernel's own account of a process's privileges (`/proc/<pid>/status`).
//! Confinement is verified from here rather than trusted from our own calls:
//! if the kernel disagrees with what we think we did, we fail closed.

use super::error::ConfineError;
use std::path::Path;

/// The fields of `/proc/<pid>/status` that say what a process may still do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcStatus {
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    pub cap_amb: u64,
    pub no_new_privs: bool,
    /// 0 none, 1 strict, 2 filter. `None` when the kernel has no seccomp at all.
    pub seccomp_mode: Option<u8>,
    pub threads: u32,
    /// Real, effective, saved, filesystem ids.
    pub uids: [u32; 4],
    pub gids: [u32; 4],
    pub groups: Vec<u32>,
}

impl ProcStatus {
    pub fn read_self() -> Result<ProcStatus, ConfineError> {
        Self::read(Path::new("/proc/self/status"))
    }

    pub fn read_pid(pid: u32) -> Result<ProcStatus, ConfineError> {
        Self::read(&Path::new("/proc").join(pid.to_string()).join("status"))
    }

    fn read(path: &Path) -> Result<ProcStatus, ConfineError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfineError::ProcStatus(format!("{}: {e}", path.display())))?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<ProcStatus, ConfineError> {
        let field = |name: &str| -> Option<&str> {
            text.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')).map(str::trim))
        };
        let required = |name: &str| -> Result<&str, ConfineError> {
            field(name).ok_or_else(|| ConfineError::ProcStatus(format!("field {name} missing")))
        };
        let hex = |name: &str| -> Result<u64, ConfineError> {
            let v = required(name)?;
            u64::from_str_radix(v, 16).map_err(|_| ConfineError::ProcStatus(format!("field {name} is not hex: {v}")))
        };
        let ids = |name: &str| -> Result<[u32; 4], ConfineError> {
            let parsed = numbers(required(name)?)
                .map_err(|v| ConfineError::ProcStatus(format!("field {name} has a non-numeric id {v}")))?;
            <[u32; 4]>::try_from(parsed)
                .map_err(|_| ConfineError::ProcStatus(format!("field {name} does not hold four ids")))
        };
        let number = |name: &str| -> Result<u32, ConfineError> {
            let v = required(name)?;
            v.parse().map_err(|_| ConfineError::ProcStatus(format!("field {name} is not a number: {v}")))
        };
        Ok(ProcStatus {
            cap_inh: hex("CapInh")?,
            cap_prm: hex("CapPrm")?,
            cap_eff: hex("CapEff")?,
            cap_bnd: hex("CapBnd")?,
            cap_amb: hex("CapAmb")?,
            no_new_privs: number("NoNewPrivs")? == 1,
            seccomp_mode: field("Seccomp").and_then(|v| v.parse().ok()),
            threads: number("Threads")?,
            uids: ids("Uid")?,
            gids: ids("Gid")?,
            groups: numbers(field("Groups").unwrap_or(""))
                .map_err(|v| ConfineError::ProcStatus(format!("field Groups has a non-numeric id {v}")))?,
        })
    }

    /// No capability left in any set a process could use now or pass on.
    pub fn holds_no_capabilities(&self) -> bool {
        self.cap_inh == 0 && self.cap_prm == 0 && self.cap_eff == 0 && self.cap_amb == 0
    }
}

fn numbers(text: &str) -> Result<Vec<u32>, String> {
    text.split_whitespace().map(|v| v.parse::<u32>().map_err(|_| v.to_string())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFINED: &str = "Name:\tlatchgate-signe\nUid:\t998\t998\t998\t998\nGid:\t997\t997\t997\t997\n\
        Groups:\t\nThreads:\t1\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\n\
        CapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\n\
        NoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n";

    #[test]
    fn confined_status_is_read_as_confined() {
        let s = ProcStatus::parse(CONFINED).unwrap();
        assert!(s.holds_no_capabilities());
        assert!(s.no_new_privs);
        assert_eq!(s.seccomp_mode, Some(2));
        assert_eq!(s.uids, [998; 4]);
        assert!(s.groups.is_empty());
    }

    #[test]
    fn a_single_remaining_capability_is_noticed() {
        let text = CONFINED.replace("CapPrm:\t0000000000000000", "CapPrm:\t0000000000000400");
        assert!(!ProcStatus::parse(&text).unwrap().holds_no_capabilities());
    }

    #[test]
    fn truncated_status_is_an_error_not_a_default() {
        let text: String = CONFINED.lines().filter(|l| !l.starts_with("CapEff")).collect::<Vec<_>>().join("\n");
        let e = ProcStatus::parse(&text).unwrap_err();
        assert!(e.to_string().contains("CapEff"), "{e}");
    }

    #[test]
    fn own_status_parses() {
        let s = ProcStatus::read_self().unwrap();
        assert!(s.threads >= 1);
    }
}
