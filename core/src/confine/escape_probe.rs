//! TEST ONLY (cargo feature `escape-probe`, never in a release build): lets a
//! test ask a *running, sealed* process over a SOCK_SEQPACKET socket to try a
//! forbidden operation and report what the kernel answered.
//!
//! The socket is bound before Landlock (so it can be created at all) and
//! served by a thread started after Landlock and before seccomp, so the probe
//! runs under exactly the process's own confinement. Requests and replies are
//! one JSON datagram each. An operation the seccomp profile kills for takes
//! the process down: the test sees the connection close and the supervisor
//! log the SIGSYS.
#![allow(unsafe_code)]

use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
use serde::{Deserialize, Serialize};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

/// Set by the test to a directory where each process binds `<role>.sock`.
pub const PROBE_DIR_ENV: &str = "LATCHGATE_ESCAPE_PROBE_DIR";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ProbeOp {
    OpenRead { path: String },
    OpenWrite { path: String },
    InetSocket,
    ConnectTcp { port: u16 },
    Execve { path: String },
    PtraceAttach { pid: i32 },
    MprotectExec,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeReply {
    /// The operation succeeded: confinement failed.
    pub allowed: bool,
    pub errno: Option<i32>,
    pub detail: String,
}

/// Binds `<dir>/<role>.sock` (before Landlock).
pub fn bind(dir: &Path, role: &str) -> std::io::Result<OwnedFd> {
    let path = dir.join(format!("{role}.sock"));
    let _ = std::fs::remove_file(&path);
    let fd = socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None)?;
    socket::bind(fd.as_raw_fd(), &UnixAddr::new(&path)?)?;
    socket::listen(&fd, Backlog::new(4)?)?;
    Ok(fd)
}

/// Serves probes on a thread of its own (start it after Landlock, before seccomp).
pub fn spawn(listener: OwnedFd) -> std::io::Result<()> {
    std::thread::Builder::new().name("escape-probe".into()).spawn(move || {
        loop {
            let Ok(conn) = socket::accept4(listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC) else { continue };
            // SAFETY: accept returned a fresh descriptor that nothing else owns.
            let conn = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(conn) };
            let mut buf = vec![0u8; 4096];
            let Ok(n) = socket::recv(conn.as_raw_fd(), &mut buf, socket::MsgFlags::empty()) else { continue };
            let reply = match serde_json::from_slice::<ProbeOp>(&buf[..n]) {
                Ok(op) => attempt(&op),
                Err(e) => ProbeReply { allowed: false, errno: None, detail: format!("bad request: {e}") },
            };
            let text = serde_json::to_vec(&reply).unwrap_or_default();
            let _ = socket::send(conn.as_raw_fd(), &text, socket::MsgFlags::empty());
        }
    })?;
    Ok(())
}

fn io(result: std::io::Result<impl Sized>, what: &str) -> ProbeReply {
    match result {
        Ok(_) => ProbeReply { allowed: true, errno: None, detail: format!("{what}: succeeded") },
        Err(e) => ProbeReply { allowed: false, errno: e.raw_os_error(), detail: format!("{what}: {e}") },
    }
}

fn errno(result: nix::Result<impl Sized>, what: &str) -> ProbeReply {
    io(result.map_err(std::io::Error::from), what)
}

fn attempt(op: &ProbeOp) -> ProbeReply {
    match op {
        ProbeOp::OpenRead { path } => io(std::fs::File::open(path), "open for reading"),
        ProbeOp::OpenWrite { path } => io(std::fs::OpenOptions::new().append(true).open(path), "open for writing"),
        ProbeOp::InetSocket => errno(
            socket::socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None),
            "socket(AF_INET)",
        ),
        ProbeOp::ConnectTcp { port } => io(std::net::TcpStream::connect(("127.0.0.1", *port)), "connect"),
        ProbeOp::Execve { path } => {
            let Ok(path) = std::ffi::CString::new(path.as_str()) else {
                return ProbeReply { allowed: false, errno: None, detail: "bad path".into() };
            };
            errno(nix::unistd::execv(&path, &[path.as_c_str()]), "execve")
        }
        ProbeOp::PtraceAttach { pid } => {
            errno(nix::sys::ptrace::attach(nix::unistd::Pid::from_raw(*pid)), "ptrace(PTRACE_ATTACH)")
        }
        ProbeOp::MprotectExec => {
            // SAFETY: a fresh private anonymous page, unmapped before returning.
            unsafe {
                let page = libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                if page == libc::MAP_FAILED {
                    return io(Err::<(), _>(std::io::Error::last_os_error()), "mmap");
                }
                let r = libc::mprotect(page, 4096, libc::PROT_READ | libc::PROT_EXEC);
                let result = if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) };
                libc::munmap(page, 4096);
                io(result, "mprotect(PROT_EXEC)")
            }
        }
    }
}
