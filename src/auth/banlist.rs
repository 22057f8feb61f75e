//! The operator's ban list (`COREMQ_BAN_FILE`): source addresses and address ranges, client ids
//! and user names that may not connect. One entry a line, `#` comments and blank lines allowed:
//!
//! ```text
//! # a single address, then ranges in CIDR notation
//! address 192.0.2.7
//! address 10.0.0.0/8
//! address 2001:db8::/32
//! client_id broken-device-17
//! username mallory
//! ```
//!
//! A malformed line is a `FileError` with file, line and reason: start-up stops, a reload keeps
//! the previous list. Pure; shared read-only by a shard's `Security`.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

use super::FileError;

/// One address range: the first address and the prefix length in bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    network: IpAddr,
    prefix: u8,
}

impl Range {
    fn contains(&self, address: IpAddr) -> bool {
        match (self.network, to_canonical(address)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is (a dual-stack listener sees those).
fn to_canonical(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
        v4 => v4,
    }
}

/// Who may not connect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BanList {
    ranges: Vec<Range>,
    client_ids: HashSet<String>,
    usernames: HashSet<String>,
}

impl BanList {
    /// Parses a ban file's text (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, FileError> {
        let mut list = BanList::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |reason: String| FileError::at(path, i + 1, reason);
            let (kind, value) = line
                .split_once(char::is_whitespace)
                .map(|(k, v)| (k, v.trim()))
                .ok_or_else(|| at(format!("{line:?}: expected `KIND VALUE`")))?;
            match kind {
                "address" => list.ranges.push(parse_range(value).map_err(at)?),
                "client_id" | "clientid" => {
                    list.client_ids.insert(value.to_string());
                }
                "username" => {
                    list.usernames.insert(value.to_string());
                }
                other => {
                    return Err(at(format!(
                        "unknown kind {other:?}: expected address, client_id or username"
                    )))
                }
            }
        }
        Ok(list)
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty() && self.client_ids.is_empty() && self.usernames.is_empty()
    }

    pub fn bans_address(&self, address: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(address))
    }

    pub fn bans_client_id(&self, client_id: &str) -> bool {
        self.client_ids.contains(client_id)
    }

    pub fn bans_username(&self, username: &str) -> bool {
        self.usernames.contains(username)
    }
}

/// `ADDRESS` or `ADDRESS/PREFIX`.
fn parse_range(value: &str) -> Result<Range, String> {
    let (addr, prefix) = match value.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (value, None),
    };
    let network: IpAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IP address"))?;
    let network = to_canonical(network);
    let bits = if network.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => bits,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|&p| p <= bits)
            .ok_or_else(|| format!("prefix {p:?} is not a number from 0 to {bits}"))?,
    };
    Ok(Range { network, prefix })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BanList, FileError> {
        BanList::parse(text, Path::new("bans"))
    }

    #[test]
    fn each_kind_of_entry() {
        let list = parse(
            "# comment\n\naddress 192.0.2.7\naddress 10.0.0.0/8\naddress 2001:db8::/32\n\
             client_id broken-17\nclientid other\nusername  mallory \n",
        )
        .unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(list.bans_address(ip("192.0.2.7")));
        assert!(!list.bans_address(ip("192.0.2.8")));
        assert!(list.bans_address(ip("10.200.3.4")));
        assert!(!list.bans_address(ip("11.0.0.1")));
        assert!(list.bans_address(ip("2001:db8::1")));
        assert!(list.bans_address(ip("::ffff:10.1.2.3")), "IPv4-mapped");
        assert!(!list.bans_address(ip("2001:db9::1")));
        assert!(list.bans_client_id("broken-17") && list.bans_client_id("other"));
        assert!(!list.bans_client_id("broken-1"));
        assert!(list.bans_username("mallory") && !list.bans_username("alice"));
        let all = parse("address 0.0.0.0/0\n").unwrap();
        assert!(all.bans_address(ip("203.0.113.9")));
    }

    #[test]
    fn malformed_lines_name_file_line_and_reason() {
        for (text, line, words) in [
            ("address 10.0.0.0/33\n", 1, "prefix"),
            ("\naddress example.com\n", 2, "not an IP address"),
            ("# ok\nhost 1.2.3.4\n", 2, "unknown kind"),
            ("username\n", 1, "expected `KIND VALUE`"),
            ("address 2001:db8::/129\n", 1, "0 to 128"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, Some(line), "{text:?}");
            assert!(e.reason.contains(words), "{text:?}: {}", e.reason);
            assert!(e.to_string().starts_with("bans:"), "{e}");
        }
    }
}
