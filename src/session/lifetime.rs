//! A session's life beyond its connection, pure (time is a parameter): the will of the connection
//! that owns the session and its Will Delay Interval, the Session Expiry Interval, and what each
//! turn — connect, disconnect, takeover, a timer coming due — leaves for the shard to do.
//!
//! Worked example, Session Expiry 60 s, will delayed 10 s, the connection drops at t = 0
//! without DISCONNECT: `disconnected(true, t0)` keeps the will (due t0 + 10 s) and returns both
//! times for the shard's timers; `due(t0 + 10 s)` gives the will to publish; `due(t0 + 60 s)`
//! says the session expired. Had the client reconnected at t0 + 5 s keeping its session,
//! `taken_over(false, …)` would have cancelled the will [MQTT-3.1.3-9].

use std::time::{Duration, Instant};

use super::Session;
use crate::message::Message;
use crate::protocol::{MqttString, ProtocolVersion};

/// A will and its delay, waiting for its connection to end abnormally, then for the delay.
#[derive(Debug)]
pub(super) struct PendingWill {
    message: Message,
    delay: Duration,
    /// Set once the connection ended abnormally: when the will goes out.
    due: Option<Instant>,
}

impl PendingWill {
    /// The will as it goes out at `now`. Its Message Expiry Interval counts from publication, not
    /// from CONNECT: it "is sent as the Publication Expiry Interval when the Server publishes the
    /// Will Message" (MQTT 5 §3.1.3.2.4), and queued or retained copies expire accordingly
    /// [MQTT-3.3.2-5].
    fn publish_at(self, now: Instant) -> Message {
        let mut message = self.message;
        message.received = now;
        message.expires_at = message
            .properties
            .message_expiry_interval
            .map(|secs| now + Duration::from_secs(u64::from(secs)));
        message
    }
}

/// What a new connection brings to the session it takes (see `Session::connected`).
#[derive(Debug)]
pub struct Connection {
    pub version: ProtocolVersion,
    /// How long the session outlives its connection: `None` never expires, zero ends with it.
    pub lifetime: Option<Duration>,
    /// The client's Receive Maximum within COREMQ_MAX_INFLIGHT.
    pub max_inflight: usize,
    /// The user name (from CONNECT or proved by enhanced authentication), for access control.
    pub username: Option<MqttString>,
    /// The will (already detached from the read buffer) and its Will Delay Interval.
    pub will: Option<(Message, Duration)>,
}

/// What ending a connection leaves for the shard to do.
#[derive(Debug, Default)]
pub struct Disconnected {
    /// A will to publish now.
    pub will: Option<Message>,
    /// The session ends now (Session Expiry Interval 0) [MQTT-3.1.2-6].
    pub ends: bool,
    /// When to look at the session again (`Session::due`): its expiry, a delayed will.
    pub wake_at: Vec<Instant>,
}

impl Session {
    /// A connection takes the session: its protocol version, lifetime, window, user name and will
    /// replace the previous connection's.
    pub fn connected(&mut self, c: Connection) {
        self.version = c.version;
        self.lifetime = c
            .lifetime
            .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX - 1));
        self.expires_at = None;
        self.set_max_inflight(c.max_inflight);
        self.username = c.username;
        self.will = c.will.map(|(message, delay)| {
            // Boxed: most sessions have no will, and a session is kept per client.
            Box::new(PendingWill {
                message,
                delay,
                due: None,
            })
        })
    }

    /// The will waiting for its Will Delay Interval (offline), with its delay and due time.
    pub fn delayed_will(&self) -> Option<(Message, Duration, Instant)> {
        let w = self.will.as_ref()?;
        Some((w.message.clone(), w.delay, w.due?))
    }

    /// Puts back a will that was waiting for its delay (`Session::restore`).
    pub(super) fn restore_will(&mut self, will: Option<(Message, Duration, Instant)>) {
        self.will = will.map(|(message, delay, due)| {
            Box::new(PendingWill {
                message,
                delay,
                due: Some(due),
            })
        });
    }

    /// When the offline session expires, and when its delayed will is due: the timers a
    /// restored session needs.
    pub fn wake_times(&self) -> Vec<Instant> {
        let mut out: Vec<Instant> = self.expires_at.into_iter().collect();
        out.extend(self.will.as_ref().and_then(|w| w.due));
        out
    }

    /// The Session Expiry Interval in seconds (`None`: never expires).
    pub fn lifetime(&self) -> Option<u32> {
        self.lifetime
    }

    /// When the offline session expires.
    pub fn expires_at(&self) -> Option<Instant> {
        self.expires_at
    }

    /// Whether the session ends with its connection (Session Expiry Interval 0, 3.1.1 Clean
    /// Session 1).
    pub fn ends_with_connection(&self) -> bool {
        self.lifetime == Some(0)
    }

    /// Another connection with this client id arrives while the previous one is still open (a
    /// takeover [MQTT-3.1.4-3]) or its will still waits for its delay: the will goes out now —
    /// unless it is delayed and the new connection keeps the session, which cancels it
    /// [MQTT-3.1.3-9].
    pub fn taken_over(&mut self, clean_start: bool, now: Instant) -> Option<Message> {
        let will = self.will.take()?;
        (will.delay.is_zero() || clean_start).then(|| will.publish_at(now))
    }

    /// DISCONNECT: the will is discarded [MQTT-3.14.4-3]; returned so that reason 0x04 can
    /// publish it.
    pub fn take_will(&mut self, now: Instant) -> Option<Message> {
        self.will.take().map(|w| w.publish_at(now))
    }

    /// Forgets the will without publishing it (shutdown).
    pub fn drop_will(&mut self) {
        self.will = None;
    }

    /// DISCONNECT may change the Session Expiry Interval, except from 0 (MQTT 5 §3.14.2.2.2):
    /// returns whether the change was allowed (and made).
    pub fn set_expiry_interval(&mut self, secs: u32) -> bool {
        if self.ends_with_connection() && secs > 0 {
            return false;
        }
        self.lifetime = (secs != u32::MAX).then_some(secs);
        true
    }

    /// The connection ended at `now`; `will_due` when it ended abnormally (no DISCONNECT) and the
    /// will must go out [MQTT-3.1.2-8], after its Will Delay Interval if it has one, or when the
    /// session ends if that comes first.
    pub fn disconnected(&mut self, will_due: bool, now: Instant) -> Disconnected {
        let will = self.will.take().filter(|_| will_due);
        if self.ends_with_connection() {
            return Disconnected {
                will: will.map(|w| w.publish_at(now)),
                ends: true,
                wake_at: Vec::new(),
            };
        }
        // What is in flight waits for a reconnect now: copy it out of the read buffers.
        self.detach_inflight();
        let mut out = Disconnected::default();
        if let Some(secs) = self.lifetime {
            let lifetime = Duration::from_secs(u64::from(secs));
            self.expires_at = Some(now + lifetime);
            out.wake_at.push(now + lifetime);
        }
        match will {
            Some(w) if w.delay.is_zero() => out.will = Some(w.publish_at(now)),
            Some(mut w) => {
                let due = now + w.delay;
                w.due = Some(due);
                self.will = Some(w);
                out.wake_at.push(due);
            }
            None => {}
        }
        out
    }

    /// While offline, at `now`: the delayed will if it is due (or the session expired first), and
    /// whether the session expired [MQTT-3.1.3-9].
    pub fn due(&mut self, now: Instant) -> (Option<Message>, bool) {
        let expired = self.expires_at.is_some_and(|t| t <= now);
        let will_due = self
            .will
            .as_ref()
            .is_some_and(|w| w.due.is_some_and(|t| t <= now));
        let will = if expired || will_due {
            self.take_will(now)
        } else {
            None
        };
        (will, expired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ClientId, QoS};
    use crate::session::Limits;
    use bytes::Bytes;

    fn session() -> Session {
        let limits = Limits {
            max_inflight: 10,
            max_queued: 10,
            max_queued_bytes: 1 << 20,
            queue_qos0: false,
        };
        Session::new(
            ClientId::from_static("c").unwrap(),
            ProtocolVersion::V5,
            limits,
        )
    }

    fn will(payload: &'static str) -> Message {
        Message {
            topic: crate::protocol::TopicName::copy_from("w").unwrap(),
            payload: Bytes::from_static(payload.as_bytes()),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
            publisher: ClientId::default(),
            expires_at: None,
            received: std::time::Instant::now(),
        }
    }

    fn connect(s: &mut Session, lifetime: Option<u64>, will_delay: Option<u64>) {
        s.connected(Connection {
            version: ProtocolVersion::V5,
            lifetime: lifetime.map(Duration::from_secs),
            max_inflight: 10,
            username: None,
            will: will_delay.map(|d| (will("w"), Duration::from_secs(d))),
        });
    }

    #[test]
    fn a_delayed_will_and_the_expiry_come_due_in_turn() {
        let t0 = Instant::now();
        let mut s = session();
        connect(&mut s, Some(60), Some(10));
        let d = s.disconnected(true, t0);
        assert!(d.will.is_none() && !d.ends);
        assert_eq!(
            d.wake_at,
            [t0 + Duration::from_secs(60), t0 + Duration::from_secs(10)]
        );
        assert_eq!(s.due(t0 + Duration::from_secs(9)), (None, false));
        let (w, expired) = s.due(t0 + Duration::from_secs(10));
        assert!(w.is_some() && !expired);
        assert_eq!(s.due(t0 + Duration::from_secs(59)), (None, false));
        assert_eq!(s.due(t0 + Duration::from_secs(60)), (None, true));
    }

    #[test]
    fn expiry_before_the_will_delay_publishes_the_will_with_it() {
        let t0 = Instant::now();
        let mut s = session();
        connect(&mut s, Some(5), Some(10));
        s.disconnected(true, t0);
        let (w, expired) = s.due(t0 + Duration::from_secs(5));
        assert!(w.is_some() && expired, "[MQTT-3.1.3-9]");
    }

    #[test]
    fn a_session_with_expiry_zero_ends_with_its_will_at_once() {
        let mut s = session();
        connect(&mut s, Some(0), Some(10));
        let d = s.disconnected(true, Instant::now());
        assert!(d.ends && d.will.is_some() && d.wake_at.is_empty());
        // A normal end (DISCONNECT, or shutdown) publishes nothing.
        connect(&mut s, Some(0), Some(0));
        let d = s.disconnected(false, Instant::now());
        assert!(d.ends && d.will.is_none());
    }

    #[test]
    fn a_reconnect_keeping_the_session_cancels_a_delayed_will_only() {
        let now = Instant::now();
        let mut s = session();
        connect(&mut s, None, Some(10));
        assert_eq!(s.taken_over(false, now), None, "delayed: cancelled");
        connect(&mut s, None, Some(10));
        assert!(s.taken_over(true, now).is_some(), "clean start: published");
        connect(&mut s, None, Some(0));
        assert!(s.taken_over(false, now).is_some(), "no delay: published");
    }

    #[test]
    fn the_expiry_interval_may_change_on_disconnect_except_from_zero() {
        let mut s = session();
        connect(&mut s, Some(0), None);
        assert!(!s.set_expiry_interval(30));
        assert!(s.set_expiry_interval(0));
        connect(&mut s, Some(5), None);
        assert!(s.set_expiry_interval(u32::MAX));
        assert_eq!(s.lifetime, None, "0xFFFFFFFF: never expires");
        assert!(s.set_expiry_interval(0));
        assert!(s.ends_with_connection());
    }

    #[test]
    fn a_will_expires_from_its_publication() {
        let now = Instant::now();
        let mut s = session();
        let mut w = will("w");
        w.properties.message_expiry_interval = Some(30);
        s.connected(Connection {
            version: ProtocolVersion::V5,
            lifetime: None,
            max_inflight: 10,
            username: None,
            will: Some((w, Duration::ZERO)),
        });
        let later = now + Duration::from_secs(100);
        let published = s.take_will(later).unwrap();
        assert_eq!(published.expires_at, Some(later + Duration::from_secs(30)));
    }
}
