//! This shard's side of the guards against abuse (`crate::guard`): failed-login throttling,
//! flapping client ids, and the count of refusals by reason.
//!
//! Failed logins are counted where the key is owned, not where the attempt happened: a failure is
//! posted to the shard that owns the source address (or user name) by hash, so one source's
//! attempts are counted together whichever shards its connections landed on. When a count earns
//! a ban, the owner broadcasts it and every shard refuses the key at once. Flapping is counted on
//! the client id's home shard, where all of its connections are registered. No locks: per-shard
//! tables, and the mesh between them.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::Shard;
use crate::config::Config;
use crate::guard::flapping::FlappingLimits;
use crate::guard::throttle::ThrottleLimits;
use crate::guard::{Flapping, GuardKey, LoginThrottle};
use crate::mesh::MeshMsg;
pub use crate::metrics::Refusals;
use crate::protocol::{ClientId, MqttString};

/// One refusal's reason, for `Shard::count_refusal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Banned,
    LoginBanned,
    Flapping,
    BadCredentials,
    NotAuthorized,
    Quota,
    PerAddress,
    ConnectionRate,
    Connecting,
}

/// The shard's tables.
pub(super) struct Guards {
    addresses: Option<LoginThrottle<IpAddr>>,
    users: Option<LoginThrottle<MqttString>>,
    flapping: Option<Flapping>,
    pub refusals: Refusals,
}

impl Guards {
    pub fn new(config: &Config) -> Self {
        let throttle = |limit: Option<(u32, Duration)>| {
            limit.map(|(failures, window)| ThrottleLimits {
                failures,
                window,
                ban: config.login_ban,
                max_ban: config.login_ban_max.max(config.login_ban),
            })
        };
        Self {
            addresses: throttle(config.login_failures).map(LoginThrottle::new),
            users: throttle(config.login_failures_per_user).map(LoginThrottle::new),
            flapping: config.flapping.map(|(connects, window)| {
                Flapping::new(FlappingLimits {
                    connects,
                    window,
                    ban: config.flapping_ban,
                })
            }),
            refusals: Refusals::default(),
        }
    }
}

impl Shard {
    /// Counts a refusal.
    pub fn count_refusal(&self, why: Refusal) {
        let r = &mut self.guards.borrow_mut().refusals;
        let n = match why {
            Refusal::Banned => &mut r.banned,
            Refusal::LoginBanned => &mut r.login_banned,
            Refusal::Flapping => &mut r.flapping,
            Refusal::BadCredentials => &mut r.bad_credentials,
            Refusal::NotAuthorized => &mut r.not_authorized,
            Refusal::Quota => &mut r.quota,
            Refusal::PerAddress => &mut r.per_address,
            Refusal::ConnectionRate => &mut r.connection_rate,
            Refusal::Connecting => &mut r.connecting,
        };
        *n += 1;
    }

    /// Whether connections from `address` are refused at accept: the ban list names it, or it is
    /// banned for failed logins.
    pub fn address_refused(&self, address: IpAddr, now: Instant) -> Option<Refusal> {
        if self.security().bans_address(address) {
            return Some(Refusal::Banned);
        }
        let g = self.guards.borrow();
        g.addresses
            .as_ref()
            .is_some_and(|t| !t.is_empty() && t.banned_until(&address, now).is_some())
            .then_some(Refusal::LoginBanned)
    }

    /// Whether logins from `address`, or of `username`, are banned now for failed logins.
    pub(super) fn login_banned(
        &self,
        address: IpAddr,
        username: Option<&MqttString>,
        now: Instant,
    ) -> bool {
        let g = self.guards.borrow();
        let by_address = g
            .addresses
            .as_ref()
            .is_some_and(|t| t.banned_until(&address, now).is_some());
        let by_user = match (&g.users, username) {
            (Some(t), Some(u)) => t.banned_until(u, now).is_some(),
            _ => false,
        };
        by_address || by_user
    }

    /// A failed login from `address` (as `username`): counted on the shards that own the keys.
    pub(super) fn login_failed(&self, address: IpAddr, username: Option<&MqttString>) {
        self.count_refusal(Refusal::BadCredentials);
        let (by_address, by_user) = {
            let g = self.guards.borrow();
            (g.addresses.is_some(), g.users.is_some())
        };
        let mut keys = Vec::with_capacity(2);
        if by_address {
            keys.push(GuardKey::Address(address));
        }
        if let (true, Some(u)) = (by_user, username) {
            keys.push(GuardKey::User(
                MqttString::copy_from(u).unwrap_or_else(|_| u.clone()),
            ));
        }
        for key in keys {
            let owner = self.mesh.owner_of(&key.owner_bytes());
            self.post(owner, MeshMsg::LoginFailed { key });
        }
    }

    /// On the shard that owns `key`: count the failure; a ban it earns goes to every shard.
    pub(super) fn count_login_failure(&self, key: GuardKey) {
        let now = Instant::now();
        let until = {
            let mut g = self.guards.borrow_mut();
            match &key {
                GuardKey::Address(a) => g.addresses.as_mut().and_then(|t| t.failed(a, now)),
                GuardKey::User(u) => g.users.as_mut().and_then(|t| t.failed(u, now)),
            }
        };
        let Some(until) = until else { return };
        crate::log!(
            Warn,
            "too many failed logins from {}: banned for {:?}",
            describe(&key),
            until.saturating_duration_since(now)
        );
        self.mesh.broadcast(|| MeshMsg::Ban {
            key: key.clone(),
            until,
        });
    }

    /// A ban decided by the shard that owns `key`.
    pub(super) fn apply_ban(&self, key: GuardKey, until: Instant) {
        let mut g = self.guards.borrow_mut();
        match key {
            GuardKey::Address(a) => {
                if let Some(t) = g.addresses.as_mut() {
                    t.ban(a, until)
                }
            }
            GuardKey::User(u) => {
                if let Some(t) = g.users.as_mut() {
                    t.ban(u, until)
                }
            }
        }
    }

    /// A CONNECT of `client_id` on its home shard: `false` when it is refused as flapping.
    pub(super) fn connect_allowed(&self, client_id: &ClientId, now: Instant) -> bool {
        let mut g = self.guards.borrow_mut();
        let Some(f) = g.flapping.as_mut() else {
            return true;
        };
        match f.connect(client_id, now) {
            Ok(()) => true,
            Err(until) => {
                crate::log!(
                    Info,
                    "client {:?} connects too often (COREMQ_FLAPPING): refused for {:?}",
                    client_id.as_str(),
                    until.saturating_duration_since(now)
                );
                false
            }
        }
    }

    /// A connection of `client_id` ended on its home shard (COREMQ_FLAPPING counts these).
    pub(super) fn connection_ended(&self, client_id: &ClientId, now: Instant) {
        if let Some(f) = self.guards.borrow_mut().flapping.as_mut() {
            f.ended(client_id, now);
        }
    }

    /// Forgets what the guards no longer need (about once a second).
    pub(super) fn forget_old_guards(&self, now: Instant) {
        let mut g = self.guards.borrow_mut();
        if let Some(t) = g.addresses.as_mut() {
            t.forget_old(now);
        }
        if let Some(t) = g.users.as_mut() {
            t.forget_old(now);
        }
        if let Some(f) = g.flapping.as_mut() {
            f.forget_old(now);
        }
    }
}

/// A key for the log (user names quoted and escaped).
fn describe(key: &GuardKey) -> String {
    match key {
        GuardKey::Address(a) => format!("address {a}"),
        GuardKey::User(u) => format!("user {:?}", u.as_str()),
    }
}
