//! Whether this process's user can reach a path at all. Started as root, the
//! supervisor drops each child to its own user, so a checkout or state dir
//! under a private directory (`/root` is 0700 on Debian) is out of reach: the
//! kernel only says EACCES (and `Path::exists` says "no"), which sends the
//! operator looking at the wrong file. This names the directory that stops us.

use std::path::{Path, PathBuf};

/// The first directory above `path`, from `/` down, that this process may not
/// search (execute permission, checked by the kernel for the real uid, which
/// is the dropped one, with ACLs). `None` when every ancestor lets us through.
pub fn blocking_ancestor(path: &Path) -> Option<PathBuf> {
    let mut ancestors: Vec<&Path> = path.ancestors().skip(1).filter(|a| !a.as_os_str().is_empty()).collect();
    ancestors.reverse();
    ancestors
        .into_iter()
        .find(|dir| nix::unistd::access(*dir, nix::unistd::AccessFlags::X_OK) == Err(nix::errno::Errno::EACCES))
        .map(Path::to_path_buf)
}

/// `Err` naming the blocking directory when `path` is out of reach.
pub fn require_reachable(path: &Path) -> Result<(), super::ConfineError> {
    match blocking_ancestor(path) {
        None => Ok(()),
        Some(blocked) => {
            let uid = nix::unistd::getuid();
            let name = nix::unistd::User::from_uid(uid).ok().flatten().map_or_else(|| "?".to_string(), |u| u.name);
            Err(super::ConfineError::PathUnreachable {
                path: path.to_path_buf(),
                blocked,
                user: name,
                uid: uid.as_raw(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ancestor_of_a_temp_file_is_searchable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a/b/c.json");
        assert_eq!(blocking_ancestor(&file), None);
        assert!(require_reachable(&file).is_ok());
    }

    #[test]
    fn relative_paths_check_their_named_ancestors_only() {
        assert_eq!(blocking_ancestor(Path::new("c.json")), None);
    }
}
