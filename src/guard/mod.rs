//! Guards against abuse, pure and shard-local (time is a parameter; no locks, no I/O): throttling
//! of failed logins by source address and user name (`throttle`) and flapping client ids
//! (`flapping`). The shard keeps the tables and asks them; the mesh carries failures to the shard
//! that owns a key and bans to every shard (`shard/guard.rs`). The broker-wide connection counts
//! checked at accept are in `gate`; the operator's ban list is an access file, in `auth::banlist`.

pub mod flapping;
pub mod throttle;

use std::net::IpAddr;

use crate::protocol::MqttString;

pub use flapping::Flapping;
pub use throttle::LoginThrottle;

/// What failed logins are counted and banned by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GuardKey {
    /// A source address.
    Address(IpAddr),
    /// A user name.
    User(MqttString),
}

impl GuardKey {
    /// Bytes that pick the shard owning this key's failure count.
    pub fn owner_bytes(&self) -> Vec<u8> {
        match self {
            GuardKey::Address(IpAddr::V4(a)) => a.octets().to_vec(),
            GuardKey::Address(IpAddr::V6(a)) => a.octets().to_vec(),
            GuardKey::User(u) => u.as_bytes().to_vec(),
        }
    }
}
