//! Failed logins: a key (source address or user name) that fails more than a limit within a
//! window is banned; each ban while the key is still remembered doubles the previous one, up to a
//! maximum. Pure; time is a parameter.
//!
//! Worked example, limit 5 per minute, ban 10 s, maximum 1 h: 5 failures in 20 s → banned for
//! 10 s; the sixth failure a minute after that (a new window, but the key is remembered for the
//! length of its last ban plus a window) → banned for 20 s; then 40 s, 80 s, … 1 h. A key that
//! stays quiet for its last ban plus a window is forgotten and starts over.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// The throttle's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleLimits {
    /// Failures allowed in one window; the next one bans.
    pub failures: u32,
    pub window: Duration,
    /// The first ban's length.
    pub ban: Duration,
    /// The longest ban.
    pub max_ban: Duration,
}

#[derive(Debug, Clone)]
struct Record {
    /// Failures in the current window and when it started.
    failures: u32,
    window_start: Instant,
    /// The last ban's length (zero before the first) and when it ends.
    last_ban: Duration,
    banned_until: Option<Instant>,
}

/// Failure counts and bans of one kind of key.
#[derive(Debug)]
pub struct LoginThrottle<K> {
    limits: ThrottleLimits,
    records: HashMap<K, Record>,
    /// Bans made elsewhere (another shard owns the key's count) and applied here.
    bans: HashMap<K, Instant>,
}

impl<K: Hash + Eq + Clone> LoginThrottle<K> {
    pub fn new(limits: ThrottleLimits) -> Self {
        Self {
            limits,
            records: HashMap::new(),
            bans: HashMap::new(),
        }
    }

    /// One failed login of `key` at `now`. Returns the end of the ban it earns, if it earns one.
    pub fn failed(&mut self, key: &K, now: Instant) -> Option<Instant> {
        let limits = self.limits;
        let r = self.records.entry(key.clone()).or_insert(Record {
            failures: 0,
            window_start: now,
            last_ban: Duration::ZERO,
            banned_until: None,
        });
        if now.saturating_duration_since(r.window_start) >= limits.window {
            r.window_start = now;
            r.failures = 0;
        }
        r.failures += 1;
        if r.failures <= limits.failures {
            return None;
        }
        let ban = if r.last_ban.is_zero() {
            limits.ban
        } else {
            (r.last_ban * 2).min(limits.max_ban)
        };
        r.last_ban = ban;
        r.failures = 0;
        r.window_start = now;
        let until = now + ban;
        r.banned_until = Some(until);
        Some(until)
    }

    /// A ban of `key` until `until`, decided by the shard that owns the key's count.
    pub fn ban(&mut self, key: K, until: Instant) {
        let e = self.bans.entry(key).or_insert(until);
        *e = (*e).max(until);
    }

    /// When the ban of `key` ends, if it is banned at `now`.
    pub fn banned_until(&self, key: &K, now: Instant) -> Option<Instant> {
        let own = self.records.get(key).and_then(|r| r.banned_until);
        let applied = self.bans.get(key).copied();
        own.into_iter().chain(applied).filter(|t| *t > now).max()
    }

    /// Forgets keys that have been quiet for their last ban plus a window, and bans that ended.
    pub fn forget_old(&mut self, now: Instant) {
        let window = self.limits.window;
        self.records.retain(|_, r| {
            let quiet_since = r
                .banned_until
                .map_or(r.window_start, |t| t.max(r.window_start));
            now.saturating_duration_since(quiet_since) < window + r.last_ban
        });
        self.bans.retain(|_, until| *until > now);
    }

    /// Keys remembered (failure records and applied bans).
    pub fn len(&self) -> usize {
        self.records.len() + self.bans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ThrottleLimits = ThrottleLimits {
        failures: 3,
        window: Duration::from_secs(60),
        ban: Duration::from_secs(10),
        max_ban: Duration::from_secs(35),
    };

    #[test]
    fn failures_beyond_the_limit_ban_and_bans_grow_to_the_maximum() {
        let t0 = Instant::now();
        let mut t = LoginThrottle::new(LIMITS);
        let s = |n| Duration::from_secs(n);
        for i in 0..3 {
            assert_eq!(t.failed(&"a", t0 + s(i)), None);
        }
        assert_eq!(t.failed(&"a", t0 + s(3)), Some(t0 + s(13)));
        assert_eq!(t.banned_until(&"a", t0 + s(12)), Some(t0 + s(13)));
        assert_eq!(t.banned_until(&"a", t0 + s(13)), None);
        assert_eq!(
            t.banned_until(&"b", t0 + s(5)),
            None,
            "other keys unaffected"
        );
        // Again: 20 s, then 35 s (the maximum), and 35 s again.
        let mut at = t0 + s(20);
        for want in [20, 35, 35] {
            for _ in 0..3 {
                assert_eq!(t.failed(&"a", at), None);
            }
            assert_eq!(t.failed(&"a", at), Some(at + s(want)));
            at += s(want + 1);
        }
    }

    #[test]
    fn a_new_window_starts_the_count_over() {
        let t0 = Instant::now();
        let mut t = LoginThrottle::new(LIMITS);
        for i in 0..3 {
            assert_eq!(t.failed(&1, t0 + Duration::from_secs(i * 30)), None);
        }
        // The first was 60 s ago: a new window began with the third.
        assert_eq!(t.failed(&1, t0 + Duration::from_secs(61)), None);
    }

    #[test]
    fn applied_bans_count_and_quiet_keys_are_forgotten() {
        let t0 = Instant::now();
        let mut t = LoginThrottle::new(LIMITS);
        t.ban("x", t0 + Duration::from_secs(5));
        assert!(t.banned_until(&"x", t0).is_some());
        for _ in 0..4 {
            t.failed(&"y", t0);
        }
        assert_eq!(t.len(), 2);
        t.forget_old(t0 + Duration::from_secs(6));
        assert_eq!(t.len(), 1, "the applied ban ended; y is still remembered");
        // y's ban ended at 10 s; it is forgotten once quiet for that ban plus a window.
        t.forget_old(t0 + Duration::from_secs(10 + 10 + 59));
        assert_eq!(t.len(), 1);
        t.forget_old(t0 + Duration::from_secs(10 + 10 + 60));
        assert!(t.is_empty());
    }
}
