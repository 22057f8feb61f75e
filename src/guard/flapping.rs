//! Flapping client ids (EMQX's term): a client id whose connections end more than a limit of times
//! within a window is refused for a while, so a device in a reconnect loop cannot churn its
//! session and take itself over again and again. Kept on the client id's home shard, where every
//! one of its connections is registered and ends. Pure; time is a parameter.
//!
//! Only ended connections are remembered: a client that connects and stays costs nothing here
//! (10,000 steady clients, no records), a client in a loop one small record until its window ends.
//!
//! Worked example, limit 15 per minute, ban 5 min: after 15 connections of one client id ended
//! within a minute, its next connect is refused, and so is every connect for the next 5 minutes;
//! after that the count starts over.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::protocol::ClientId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlappingLimits {
    /// Connections that may end in one window; the next connect is refused.
    pub connects: u32,
    pub window: Duration,
    pub ban: Duration,
}

#[derive(Debug)]
struct Record {
    ends: u32,
    window_start: Instant,
    banned_until: Option<Instant>,
}

/// Recently ended connections per client id.
#[derive(Debug)]
pub struct Flapping {
    limits: FlappingLimits,
    records: HashMap<ClientId, Record>,
}

impl Flapping {
    pub fn new(limits: FlappingLimits) -> Self {
        Self {
            limits,
            records: HashMap::new(),
        }
    }

    /// A CONNECT of `client_id` at `now`: `Err(until)` when it is refused as flapping.
    pub fn connect(&mut self, client_id: &ClientId, now: Instant) -> Result<(), Instant> {
        let limits = self.limits;
        let Some(r) = self.records.get_mut(client_id) else {
            return Ok(());
        };
        if let Some(until) = r.banned_until {
            if until > now {
                return Err(until);
            }
            // The ban is over: the count starts over.
            self.records.remove(client_id);
            return Ok(());
        }
        if now.saturating_duration_since(r.window_start) >= limits.window {
            self.records.remove(client_id);
            return Ok(());
        }
        if r.ends >= limits.connects {
            let until = now + limits.ban;
            r.banned_until = Some(until);
            return Err(until);
        }
        Ok(())
    }

    /// A connection of `client_id` ended at `now`.
    pub fn ended(&mut self, client_id: &ClientId, now: Instant) {
        let window = self.limits.window;
        let r = self.records.entry(client_id.detached()).or_insert(Record {
            ends: 0,
            window_start: now,
            banned_until: None,
        });
        if r.banned_until.is_none() && now.saturating_duration_since(r.window_start) >= window {
            r.window_start = now;
            r.ends = 0;
        }
        r.ends = r.ends.saturating_add(1);
    }

    /// Forgets client ids whose window and ban are over.
    pub fn forget_old(&mut self, now: Instant) {
        let window = self.limits.window;
        self.records.retain(|_, r| match r.banned_until {
            Some(t) => t > now,
            None => now.saturating_duration_since(r.window_start) < window,
        });
    }

    /// Client ids remembered.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_connects_in_a_window_ban_the_client_id_for_a_while() {
        let limits = FlappingLimits {
            connects: 3,
            window: Duration::from_secs(60),
            ban: Duration::from_secs(300),
        };
        let mut f = Flapping::new(limits);
        let id = ClientId::from_static("device").unwrap();
        let other = ClientId::from_static("other").unwrap();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        for i in 0..3 {
            assert_eq!(f.connect(&id, t0 + s(i)), Ok(()));
            f.ended(&id, t0 + s(i));
        }
        assert_eq!(f.connect(&id, t0 + s(3)), Err(t0 + s(303)));
        assert_eq!(f.connect(&id, t0 + s(200)), Err(t0 + s(303)));
        assert_eq!(f.connect(&other, t0 + s(4)), Ok(()), "other ids unaffected");
        assert_eq!(f.connect(&id, t0 + s(303)), Ok(()), "the ban is over");
        f.forget_old(t0 + s(400));
        assert!(f.is_empty());
    }

    #[test]
    fn connects_spread_over_windows_are_never_refused() {
        let limits = FlappingLimits {
            connects: 2,
            window: Duration::from_secs(10),
            ban: Duration::from_secs(60),
        };
        let mut f = Flapping::new(limits);
        let id = ClientId::from_static("steady").unwrap();
        let t0 = Instant::now();
        for i in 0..20 {
            let at = t0 + Duration::from_secs(i * 6);
            assert_eq!(f.connect(&id, at), Ok(()));
            f.ended(&id, at);
        }
    }

    #[test]
    fn clients_that_stay_connected_are_not_remembered() {
        let limits = FlappingLimits {
            connects: 2,
            window: Duration::from_secs(10),
            ban: Duration::from_secs(60),
        };
        let mut f = Flapping::new(limits);
        let t0 = Instant::now();
        for i in 0..1000 {
            let id = ClientId::copy_from(&format!("device-{i}")).unwrap();
            assert_eq!(f.connect(&id, t0), Ok(()));
        }
        assert!(f.is_empty());
    }
}
