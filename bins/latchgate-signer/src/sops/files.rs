//! Reading the secrets file (size-capped, with the identity of what was
//! read) and replacing the secrets and key files atomically: written 0600
//! beside the target, given the owner of the file it replaces (the signer's
//! user, when the operator runs the CLI as root), then renamed over it.

use super::SopsError;
use crate::keystore::{self, KeyStoreError};
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use zeroize::Zeroizing;

/// A secrets file holds a few secrets; anything far larger is refused.
pub const MAX_SECRETS_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Which version of a file was read: a rename or an in-place edit (sops
/// writes in place) changes the inode or the modification time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    mtime: i64,
    mtime_nsec: i64,
    size: u64,
}

impl FileStamp {
    fn from_metadata(m: &fs::Metadata) -> FileStamp {
        FileStamp { dev: m.dev(), ino: m.ino(), mtime: m.mtime(), mtime_nsec: m.mtime_nsec(), size: m.size() }
    }

    /// The stamp of `path` now (one `statx`).
    pub fn of(path: &Path) -> Result<FileStamp, SopsError> {
        fs::metadata(path)
            .map(|m| FileStamp::from_metadata(&m))
            .map_err(|source| SopsError::Io { path: path.to_owned(), source })
    }
}

/// The file's text and the stamp of the inode that was read.
pub fn read_secrets_file(path: &Path) -> Result<(Zeroizing<String>, FileStamp), SopsError> {
    let io = |source| SopsError::Io { path: path.to_owned(), source };
    let file = File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(SopsError::Io { path: path.to_owned(), source: std::io::Error::other("not a regular file") });
    }
    if meta.len() > MAX_SECRETS_FILE_BYTES {
        return Err(SopsError::TooLarge { path: path.to_owned(), size: meta.len(), max: MAX_SECRETS_FILE_BYTES });
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(meta.len() as usize));
    file.take(MAX_SECRETS_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(io)?;
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|_| SopsError::Format(format!("{} is not UTF-8 text", path.display())))?;
    Ok((Zeroizing::new(text), FileStamp::from_metadata(&meta)))
}

/// Replaces (or creates) `path` with `bytes`, mode 0600, keeping the owner of
/// the file it replaces. A crash leaves either the old or the new file.
pub fn replace_private_file(path: &Path, bytes: &[u8]) -> Result<(), SopsError> {
    let write_err = |source: KeyStoreError| SopsError::Write { path: path.to_owned(), source: Box::new(source) };
    let io_err = |source| write_err(KeyStoreError::Io { path: path.to_owned(), source });
    let owner = fs::symlink_metadata(path).ok().map(|m| (m.uid(), m.gid()));
    let tmp = keystore::temp_sibling(path);
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(e)),
        _ => {}
    }
    keystore::write_new_file(&tmp, bytes).map_err(write_err)?;
    let euid = nix::unistd::geteuid().as_raw();
    if let Some((uid, gid)) = owner.filter(|(uid, _)| *uid != euid) {
        let chowned = nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &tmp,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        );
        if let Err(e) = chowned {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(std::io::Error::from(e)));
        }
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(e));
    }
    keystore::sync_parent(path).map_err(write_err)
}
