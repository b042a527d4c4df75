//! Which resolved addresses the gate may connect to (the executor's host I/O,
//! the broker's webhook deliveries). Everything that is not plainly global
//! unicast is refused, including IPv6 forms that embed an IPv4 address
//! (mapped, compatible, NAT64, 6to4), judged by the embedded address, and the
//! cloud metadata endpoints.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressVerdict {
    Public,
    /// Refused, with the range it fell in.
    Forbidden(&'static str),
}

pub fn classify(ip: IpAddr) -> AddressVerdict {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressVerdict {
    let [a, b, c, _] = ip.octets();
    let reason = if ip == Ipv4Addr::new(169, 254, 169, 254) {
        "metadata"
    } else if a == 0 {
        "unspecified"
    } else if ip.is_broadcast() {
        "broadcast"
    } else if a == 127 {
        "loopback"
    } else if a == 10 || (a == 172 && (16..=31).contains(&b)) || (a == 192 && b == 168) {
        "private"
    } else if a == 100 && (64..=127).contains(&b) {
        "cgnat"
    } else if a == 169 && b == 254 {
        "link_local"
    } else if (224..=239).contains(&a) {
        "multicast"
    } else if a >= 240 {
        "reserved"
    } else if a == 192 && b == 0 && c == 0 {
        "ietf_protocol"
    } else if (a == 192 && b == 0 && c == 2) || (a == 198 && b == 51 && c == 100) || (a == 203 && b == 0 && c == 113) {
        "documentation"
    } else if a == 198 && (b == 18 || b == 19) {
        "benchmarking"
    } else {
        return AddressVerdict::Public;
    };
    AddressVerdict::Forbidden(reason)
}

fn classify_v6(ip: Ipv6Addr) -> AddressVerdict {
    let s = ip.segments();
    if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254) {
        return AddressVerdict::Forbidden("metadata");
    }
    if ip.is_unspecified() {
        return AddressVerdict::Forbidden("unspecified");
    }
    if ip.is_loopback() {
        return AddressVerdict::Forbidden("loopback");
    }
    // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (deprecated compatible).
    if s[..5] == [0, 0, 0, 0, 0] && (s[5] == 0xffff || s[5] == 0) {
        return embedded(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8));
    }
    // 64:ff9b::/96 well-known NAT64 prefix.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return embedded(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8));
    }
    // 2002:AABB:CCDD::/48 6to4.
    if s[0] == 0x2002 {
        return embedded(Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8));
    }
    let reason = if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        "nat64_local"
    } else if s[0] & 0xfe00 == 0xfc00 {
        "unique_local"
    } else if s[0] & 0xffc0 == 0xfe80 {
        "link_local"
    } else if s[0] & 0xffc0 == 0xfec0 {
        "site_local"
    } else if s[0] & 0xff00 == 0xff00 {
        "multicast"
    } else if s[0] == 0x2001 && s[1] == 0 {
        // Teredo hides an obfuscated IPv4 server and client.
        "teredo"
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        "documentation"
    } else if s[..4] == [0x0100, 0, 0, 0] {
        "discard"
    } else {
        return AddressVerdict::Public;
    };
    AddressVerdict::Forbidden(reason)
}

/// An IPv6 form carrying an IPv4 address is judged by that address.
fn embedded(v4: Ipv4Addr) -> AddressVerdict {
    match classify_v4(v4) {
        AddressVerdict::Public => AddressVerdict::Public,
        AddressVerdict::Forbidden(_) => AddressVerdict::Forbidden("embedded_ipv4_forbidden"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(s: &str) -> AddressVerdict {
        classify(s.parse().unwrap())
    }

    #[test]
    fn non_global_ranges_are_forbidden() {
        for ip in [
            "127.0.0.1",
            "127.255.0.3",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.254",
            "169.254.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "239.1.1.1",
            "240.0.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "2002:c0a8:101::",
            "2001:0:4136:e378::1",
            "2001:db8::1",
            "fec0::1",
            "64:ff9b:1::1",
        ] {
            assert!(matches!(verdict(ip), AddressVerdict::Forbidden(_)), "{ip} allowed");
        }
    }

    #[test]
    fn global_unicast_is_public_including_embedded_public_ipv4() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(verdict(ip), AddressVerdict::Public, "{ip}");
        }
    }

    #[test]
    fn metadata_endpoints_have_their_own_reason() {
        assert_eq!(verdict("169.254.169.254"), AddressVerdict::Forbidden("metadata"));
        assert_eq!(verdict("fd00:ec2::254"), AddressVerdict::Forbidden("metadata"));
    }
}
