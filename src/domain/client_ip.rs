//! Whose budget a request spends: the client key every per-IP limit (and every per-client cap)
//! is counted under. This is the one place that decides it.
//!
//! - IPv4: the address itself.
//! - IPv6: the network of the first `ipv6_prefix` bits (`IP_V6_PREFIX`, default 64). One
//!   subscriber usually holds at least a /64, so keying the full address would hand every
//!   client 2^64 fresh budgets (the bug Authelia's `ipv6_mask` and Zulip fixed).
//! - IPv4-mapped IPv6 (`::ffff:a.b.c.d`, what a dual-stack socket reports for an IPv4 peer):
//!   the IPv4 address, so one client does not get two budgets by switching socket families.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

/// The default `IP_V6_PREFIX`.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

/// The key a client's per-IP budgets are counted under. `Display` gives the bucket text:
/// `203.0.113.7` or `2001:db8:1:2::/64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientKey {
    V4(Ipv4Addr),
    V6 { network: Ipv6Addr, prefix: u8 },
}

/// The client key of `ip`, with IPv6 addresses grouped by their first `ipv6_prefix` bits
/// (clamped to 0..=128).
pub fn client_key(ip: IpAddr, ipv6_prefix: u8) -> ClientKey {
    match ip {
        IpAddr::V4(v4) => ClientKey::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => ClientKey::V4(v4),
            None => {
                let prefix = ipv6_prefix.min(128);
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                ClientKey::V6 {
                    network: Ipv6Addr::from(u128::from(v6) & mask),
                    prefix,
                }
            }
        },
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(v4) => write!(f, "{v4}"),
            Self::V6 { network, prefix } => write!(f, "{network}/{prefix}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ip: &str, prefix: u8) -> String {
        client_key(ip.parse().unwrap(), prefix).to_string()
    }

    #[test]
    fn ipv4_is_keyed_by_address() {
        assert_eq!(key("203.0.113.7", 64), "203.0.113.7");
        assert_ne!(key("203.0.113.7", 64), key("203.0.113.8", 64));
    }

    #[test]
    fn ipv6_is_keyed_by_its_network() {
        assert_eq!(key("2001:db8:1:2:aaaa::1", 64), "2001:db8:1:2::/64");
        assert_eq!(
            key("2001:db8:1:2:aaaa::1", 64),
            key("2001:db8:1:2:ffff:ffff:ffff:ffff", 64)
        );
        assert_ne!(key("2001:db8:1:2::1", 64), key("2001:db8:1:3::1", 64));
        assert_eq!(key("2001:db8:1:2::1", 48), "2001:db8:1::/48");
        assert_eq!(key("2001:db8:1:2::1", 56), key("2001:db8:1:ff::1", 56));
        assert_eq!(key("2001:db8::1", 128), "2001:db8::1/128");
        assert_eq!(key("2001:db8::1", 0), "::/0");
        assert_eq!(key("2001:db8::1", 200), "2001:db8::1/128");
    }

    #[test]
    fn ipv4_mapped_ipv6_is_ipv4() {
        assert_eq!(key("::ffff:203.0.113.7", 64), "203.0.113.7");
        assert_eq!(
            client_key("::ffff:203.0.113.7".parse().unwrap(), 64),
            client_key("203.0.113.7".parse().unwrap(), 64)
        );
        // Not every ::/96 address is mapped: the IPv4-compatible form is plain IPv6.
        assert_eq!(key("::203.0.113.7", 64), "::/64");
    }
}
