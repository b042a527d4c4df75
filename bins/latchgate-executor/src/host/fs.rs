//! `latchgate:io/fs`: file operations confined to the call's `fs_root`.
//! Every path is resolved by the kernel with openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS) against a directory fd of the
//! root, so `..`, absolute paths and symlinks (including ones swapped in
//! during the call) cannot leave it. Overwrite and delete require the sha256
//! of the current content, so a provider cannot clobber what it has not seen.

use super::CallState;
use super::latchgate::io::fs::Host;
use super::latchgate::io::types::IoError;
use crate::task::{FsObservation, IoObservation};
use latchgate_core::action::HostImport;
use latchgate_core::jcs::sha256_tagged;
use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, open, openat2};
use nix::sys::stat::Mode;
use nix::unistd::{UnlinkatFlags, unlinkat};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

const MAX_PATH_BYTES: usize = 1024;

fn resolve_flags() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

/// Rejects what has no business in a relative file path before the kernel sees it.
fn check_path(path: &str) -> Result<(), IoError> {
    let bad = path.is_empty()
        || path.len() > MAX_PATH_BYTES
        || path.starts_with('/')
        || path.contains('\0')
        || path.split('/').any(|c| c == "..")
        || path.ends_with('/');
    if bad { Err(IoError::InvalidRequest(format!("path `{path}` is not a plain relative file path"))) } else { Ok(()) }
}

fn map_errno(e: Errno) -> IoError {
    match e {
        Errno::ENOENT => IoError::NotFound,
        Errno::EEXIST => IoError::AlreadyExists,
        // EXDEV: escape attempt under RESOLVE_BENEATH; ELOOP: a symlink on the way.
        Errno::EXDEV | Errno::ELOOP | Errno::EACCES | Errno::EPERM | Errno::EISDIR | Errno::ENOTDIR => {
            IoError::Denied(e.desc().to_string())
        }
        other => IoError::Denied(other.desc().to_string()),
    }
}

fn io_err(e: std::io::Error) -> IoError {
    match e.raw_os_error() {
        Some(code) => map_errno(Errno::from_raw(code)),
        None => IoError::Denied(e.to_string()),
    }
}

fn open_root(root: &Path) -> Result<OwnedFd, IoError> {
    open(root, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(map_errno)
}

fn open_beneath(root: &OwnedFd, path: &str, flags: OFlag, mode: Mode) -> Result<File, IoError> {
    let how = OpenHow::new().flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW).mode(mode).resolve(resolve_flags());
    openat2(root, path, how).map(File::from).map_err(map_errno)
}

/// Reads at most `limit` bytes; more is `response-too-large`.
fn read_bounded(file: &mut File, limit: u64) -> Result<Vec<u8>, IoError> {
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes).map_err(io_err)?;
    if bytes.len() as u64 > limit {
        return Err(IoError::ResponseTooLarge);
    }
    Ok(bytes)
}

fn split_parent(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((parent, name)) => (if parent.is_empty() { "." } else { parent }, name),
        None => (".", path),
    }
}

impl CallState {
    fn fs_call<T>(
        &mut self,
        op: &str,
        path: &str,
        body: impl FnOnce(&OwnedFd, u64, &mut FsObservation) -> Result<T, IoError>,
    ) -> wasmtime::Result<Result<T, IoError>> {
        self.admit_io(HostImport::Fs)?;
        let mut observation = FsObservation {
            op: op.into(),
            path: path.into(),
            sha256_before: None,
            sha256_after: None,
            bytes: 0,
            error: None,
        };
        let limit = self.max_host_response_bytes;
        let result = check_path(path).and_then(|()| {
            let root = self.fs_root.as_deref().ok_or_else(|| IoError::Denied("action has no fs_root".into()))?;
            let root = open_root(root)?;
            body(&root, limit, &mut observation)
        });
        if let Err(e) = &result {
            observation.error = Some(format!("{e:?}"));
        }
        self.observations.push(IoObservation::Fs(observation));
        Ok(result)
    }
}

impl Host for CallState {
    fn read(&mut self, path: String) -> wasmtime::Result<Result<Vec<u8>, IoError>> {
        self.fs_call("read", &path, |root, limit, obs| {
            let mut file = open_beneath(root, &path, OFlag::O_RDONLY, Mode::empty())?;
            let bytes = read_bounded(&mut file, limit)?;
            obs.bytes = bytes.len() as u64;
            obs.sha256_before = Some(sha256_tagged(&bytes));
            Ok(bytes)
        })
    }

    fn create(&mut self, path: String, contents: Vec<u8>) -> wasmtime::Result<Result<String, IoError>> {
        self.fs_call("create", &path, |root, limit, obs| {
            check_content_size(&contents, limit)?;
            let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL;
            let mut file = open_beneath(root, &path, flags, Mode::from_bits_truncate(0o640))?;
            write_durably(&mut file, &contents, obs)
        })
    }

    fn overwrite(
        &mut self,
        path: String,
        expected_before: String,
        contents: Vec<u8>,
    ) -> wasmtime::Result<Result<String, IoError>> {
        self.fs_call("overwrite", &path, |root, limit, obs| {
            check_content_size(&contents, limit)?;
            let mut file = open_beneath(root, &path, OFlag::O_RDWR, Mode::empty())?;
            let before = sha256_tagged(&read_bounded(&mut file, limit)?);
            obs.sha256_before = Some(before.clone());
            if before != expected_before {
                return Err(IoError::PreconditionFailed(format!("current content is {before}")));
            }
            file.set_len(0).map_err(io_err)?;
            file.seek(SeekFrom::Start(0)).map_err(io_err)?;
            write_durably(&mut file, &contents, obs)
        })
    }

    fn delete(&mut self, path: String, expected_before: String) -> wasmtime::Result<Result<(), IoError>> {
        self.fs_call("delete", &path, |root, limit, obs| {
            let mut file = open_beneath(root, &path, OFlag::O_RDONLY, Mode::empty())?;
            let before = sha256_tagged(&read_bounded(&mut file, limit)?);
            obs.sha256_before = Some(before.clone());
            if before != expected_before {
                return Err(IoError::PreconditionFailed(format!("current content is {before}")));
            }
            // unlinkat has no resolve flags: resolve the parent beneath the root, then
            // remove a single name from it.
            let (parent, name) = split_parent(&path);
            let parent = open_beneath(root, parent, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty())?;
            unlinkat(&parent, name, UnlinkatFlags::NoRemoveDir).map_err(map_errno)?;
            Ok(())
        })
    }
}

/// New content is bounded like host responses are.
fn check_content_size(contents: &[u8], limit: u64) -> Result<(), IoError> {
    if contents.len() as u64 > limit {
        return Err(IoError::InvalidRequest("content larger than max_host_response_bytes".into()));
    }
    Ok(())
}

/// Write `contents`, make them durable, and record what now stands in the file.
fn write_durably(file: &mut std::fs::File, contents: &[u8], obs: &mut FsObservation) -> Result<String, IoError> {
    file.write_all(contents).map_err(io_err)?;
    file.sync_data().map_err(io_err)?;
    let digest = sha256_tagged(contents);
    obs.bytes = contents.len() as u64;
    obs.sha256_after = Some(digest.clone());
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_absolute_paths_never_reach_the_kernel() {
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a/", "a\0b"] {
            assert!(check_path(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_path("notes/today.txt").is_ok());
    }

    #[test]
    fn symlink_inside_root_pointing_outside_is_refused_by_the_kernel() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("dir")).unwrap();
        let fd = open_root(root.path()).unwrap();
        assert!(matches!(open_beneath(&fd, "link", OFlag::O_RDONLY, Mode::empty()), Err(IoError::Denied(_))));
        assert!(matches!(open_beneath(&fd, "dir/secret", OFlag::O_RDONLY, Mode::empty()), Err(IoError::Denied(_))));
    }
}
