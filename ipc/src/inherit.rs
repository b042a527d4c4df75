//! File descriptors a supervised child inherits from the supervisor.
//!
//! The supervisor maps each socket to a fixed fd number in the child and names
//! them in `LATCHGATE_FDS` (`control=3,front-broker=4`). Adopting a raw fd
//! needs `unsafe`: this module is the only place that does it, and it checks
//! before adopting that the fd is open, a socket, and of the expected type,
//! and adopts each named fd at most once (the variable is consumed).
#![allow(unsafe_code)]

use crate::error::IpcError;
use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

pub const FDS_ENV: &str = latchgate_core::process::SUPERVISED_ENV;

/// Names → fd numbers, parsed from the environment variable (and removed from it).
pub struct InheritedFds {
    fds: HashMap<String, RawFd>,
}

impl InheritedFds {
    /// `None` when the process was not started by the supervisor (standalone mode).
    pub fn from_env() -> Result<Option<InheritedFds>, IpcError> {
        let Some(spec) = std::env::var_os(FDS_ENV) else {
            return Ok(None);
        };
        // SAFETY: called once at start-up before any other thread exists.
        unsafe { std::env::remove_var(FDS_ENV) };
        let spec = spec.to_str().ok_or_else(|| IpcError::Malformed(format!("{FDS_ENV} is not UTF-8")))?;
        Self::parse(spec).map(Some)
    }

    pub fn parse(spec: &str) -> Result<InheritedFds, IpcError> {
        let mut fds = HashMap::new();
        for item in spec.split(',').filter(|s| !s.is_empty()) {
            let (name, fd) = item
                .split_once('=')
                .ok_or_else(|| IpcError::Malformed(format!("{FDS_ENV} entry {item:?} lacks '='")))?;
            let fd: RawFd = fd
                .parse()
                .ok()
                .filter(|fd| *fd > 2)
                .ok_or_else(|| IpcError::Malformed(format!("{FDS_ENV} entry {item:?}: bad fd")))?;
            if fds.insert(name.to_string(), fd).is_some() {
                return Err(IpcError::Malformed(format!("{FDS_ENV} names {name} twice")));
            }
        }
        Ok(InheritedFds { fds })
    }

    /// Take ownership of the seqpacket socket named `name`.
    pub fn take_seqpacket(&mut self, name: &str) -> Result<Option<OwnedFd>, IpcError> {
        self.take(name, libc::SOCK_SEQPACKET)
    }

    /// Take a listening stream socket (the front's HTTP sockets).
    pub fn take_listener(&mut self, name: &str) -> Result<Option<OwnedFd>, IpcError> {
        self.take(name, libc::SOCK_STREAM)
    }

    fn take(&mut self, name: &str, socket_type: libc::c_int) -> Result<Option<OwnedFd>, IpcError> {
        let Some(fd) = self.fds.remove(name) else {
            return Ok(None);
        };
        check_type(fd, socket_type)?;
        // SAFETY: `fd` is open and a socket of the expected type (checked above); the
        // supervisor gave it to this process for this purpose alone, and removing it
        // from the map guarantees it is adopted once.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        nix::fcntl::fcntl(&owned, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
            .map_err(|e| IpcError::FdPassing(format!("fd {fd}: {e}")))?;
        Ok(Some(owned))
    }
}

fn check_type(fd: RawFd, expected: libc::c_int) -> Result<(), IpcError> {
    let mut ty: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `ty`, which is a c_int.
    let rc = unsafe {
        libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_TYPE, (&mut ty as *mut libc::c_int).cast(), &mut len)
    };
    if rc != 0 {
        return Err(IpcError::FdPassing(format!("inherited fd {fd}: {}", std::io::Error::last_os_error())));
    }
    if ty != expected {
        return Err(IpcError::FdPassing(format!("inherited fd {fd} has socket type {ty}, expected {expected}")));
    }
    Ok(())
}
