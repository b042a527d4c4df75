//! Which sockets each child gets. The supervisor makes one socketpair per
//! channel; a child receives only the ends of the channels it is part of (and
//! the front, the two listening sockets). Everything else stays `CLOEXEC`.

use latchgate_core::role::Role;
use latchgate_ipc::ChannelKind;
use std::os::fd::OwnedFd;

/// The channels a role takes part in.
pub fn channels_of(role: Role) -> Vec<ChannelKind> {
    ChannelKind::ALL.into_iter().filter(|k| k.client() == role || k.server() == role).collect()
}

/// The role at the other end of `kind` from `role`.
pub fn peer_of(kind: ChannelKind, role: Role) -> Role {
    if kind.client() == role { kind.server() } else { kind.client() }
}

/// A fresh socketpair for `kind`: (client end, server end), both CLOEXEC.
pub fn pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK)
        .map_err(std::io::Error::from)
}

/// The fds one child is started with, by name (see `latchgate_ipc::inherit`).
#[derive(Default)]
pub struct ChildFds {
    pub named: Vec<(String, OwnedFd)>,
}

impl ChildFds {
    pub fn add(&mut self, name: impl Into<String>, fd: OwnedFd) {
        self.named.push((name.into(), fd));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_never_gets_a_signer_or_executor_channel() {
        assert_eq!(channels_of(Role::Front), vec![ChannelKind::FrontBroker]);
    }

    #[test]
    fn signer_serves_broker_and_executor_only() {
        let mut peers: Vec<_> = channels_of(Role::Signer).into_iter().map(|k| peer_of(k, Role::Signer)).collect();
        peers.sort_by_key(|r| r.as_str());
        assert_eq!(peers, vec![Role::Broker, Role::Executor]);
    }
}
