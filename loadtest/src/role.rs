//! What a client does once connected: a publisher's send loop (closed or open loop), a
//! subscriber's bookkeeping of every delivery, and the counters both feed. Owned by one worker;
//! no sockets here beyond queueing packets on a [`Conn`].

use std::collections::HashMap;

use bytes::Bytes;
use coremq::protocol::{QoS, TopicFilter, TopicName};
use hdrhistogram::Histogram;

use crate::connection::Conn;
use crate::latency::{latency_us, Pacer};
use crate::payload::Stamp;
use crate::tally::{PublisherOutcome, Seen, SeqTracker};

/// Stop queueing publishes on a connection while this many bytes wait for the socket.
const WRITE_BACKLOG: usize = 256 * 1024;
/// Publishes one publisher may queue per event-loop turn, so reads are not starved.
const BURST: u32 = 256;

/// The measured period, in ns since the epoch. Sent by the coordinator with `Start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Publishing and connect loops begin.
    pub start_ns: u64,
    /// Warm-up ends: latencies and rates count from here.
    pub measure_start_ns: u64,
    /// Streams and connect loops stop here.
    pub measure_end_ns: u64,
}

impl Window {
    pub fn contains(&self, t_ns: u64) -> bool {
        t_ns >= self.measure_start_ns && t_ns < self.measure_end_ns
    }
}

/// Cumulative counters of one worker (summed by the coordinator).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Publishes queued.
    pub sent: u64,
    /// … whose (intended) send time lies in the window.
    pub sent_in_window: u64,
    /// Deliveries (every copy to every subscriber).
    pub received: u64,
    /// … of messages sent in the window.
    pub received_in_window: u64,
    /// First deliveries (per subscriber).
    pub distinct: u64,
    /// Payloads without our stamp or from another run.
    pub foreign: u64,
    /// Open loop: messages due in the window that were never sent.
    pub behind: u64,
    /// Publishes the broker acknowledged (PUBACK / PUBREC with success).
    pub confirmed: u64,
    /// Publishes the broker refused (MQTT 5 reason code).
    pub rejected: u64,
    /// Connections currently up.
    pub conns_up: u64,
    pub connects_ok: u64,
    pub connects_failed: u64,
    /// Connects begun and completed inside the window (`connect`).
    pub connects_in_window: u64,
    /// Connections the broker closed while the run needed them.
    pub disconnects: u64,
}

/// The shared, read-only knobs a role needs.
pub struct Knobs<'a> {
    pub run: u32,
    pub qos: QoS,
    pub payload: &'a Bytes,
    /// Closed loop: unacknowledged publishes (QoS 1/2) or publishes per PINGREQ round trip
    /// (QoS 0). Open loop: the same bound, as a safety valve.
    pub inflight: u32,
    pub window: Window,
    /// Stream until the window ends (not `retained`, which publishes its set once).
    pub streams: bool,
}

/// A publisher's state.
pub struct Pub {
    /// This publisher's own payload template (`filtered`: with its marker); else the run's.
    pub payload: Option<bytes::Bytes>,
    pub id: u32,
    pub topics: Vec<TopicName>,
    pub retain: bool,
    /// Messages `0..cap` at most.
    pub cap: u64,
    /// Next sequence number = messages queued so far.
    pub next_seq: u64,
    /// Open loop schedule, set at `Start` when `--rate` is given.
    pub pacer: Option<Pacer>,
    /// When publishing stopped (cap, window end or connection loss).
    pub done_ns: Option<u64>,
    /// Publishes since the last PINGREQ (QoS 0 closed loop).
    since_ping: u32,
    /// Refused or never confirmed: not counted as lost.
    pub uncertain: Vec<u64>,
    /// When the next open-loop message is due, if the publisher waits only for time.
    pub wake_ns: Option<u64>,
    pub last_send_ns: u64,
}

impl Pub {
    pub fn new(id: u32, topics: Vec<TopicName>, retain: bool, cap: u64) -> Pub {
        Pub {
            payload: None,
            id,
            topics,
            retain,
            cap,
            next_seq: 0,
            pacer: None,
            done_ns: None,
            since_ping: 0,
            uncertain: Vec::new(),
            wake_ns: None,
            last_send_ns: 0,
        }
    }

    /// Queues every publish that is due and allowed on `conn`. `now` reads the clock (closed
    /// loop stamps the real send time of each message).
    pub fn produce(
        &mut self,
        conn: &mut Conn,
        k: &Knobs,
        counters: &mut Counters,
        now: &dyn Fn() -> u64,
    ) {
        self.wake_ns = None;
        if self.done_ns.is_some() {
            return;
        }
        let mut t = now();
        let limit = usize::from(conn.receive_maximum).min(k.inflight as usize);
        for _ in 0..BURST {
            if self.next_seq >= self.cap || (k.streams && t >= k.window.measure_end_ns) {
                return self.finish(conn, t, k, counters);
            }
            if conn.pending_write() > WRITE_BACKLOG {
                return;
            }
            if k.qos != QoS::AtMostOnce && conn.inflight() >= limit {
                return;
            }
            let sent_ns = match self.pacer {
                Some(p) => {
                    let intended = p.intended_ns(self.next_seq);
                    if k.streams && intended >= k.window.measure_end_ns {
                        return self.finish(conn, t, k, counters);
                    }
                    if p.due_by(t) <= self.next_seq {
                        self.wake_ns = Some(intended);
                        return;
                    }
                    intended
                }
                None => {
                    // Closed loop at QoS 0: no acks to wait for, so a PINGREQ round trip after
                    // every `inflight` publishes bounds what is outstanding (two rounds).
                    if k.qos == QoS::AtMostOnce && conn.pings_out >= 2 {
                        return;
                    }
                    t
                }
            };
            let seq = self.next_seq;
            let topic = &self.topics[(seq % self.topics.len() as u64) as usize];
            let stamp = Stamp {
                run: k.run,
                publisher: self.id,
                seq,
                sent_ns,
            };
            let payload = self.payload.as_ref().unwrap_or(k.payload);
            conn.publish(topic, k.qos, self.retain, payload, &stamp, t);
            self.next_seq += 1;
            self.last_send_ns = t;
            counters.sent += 1;
            if k.window.contains(sent_ns) {
                counters.sent_in_window += 1;
            }
            if self.pacer.is_none() && k.qos == QoS::AtMostOnce {
                self.since_ping += 1;
                if self.since_ping >= k.inflight {
                    self.since_ping = 0;
                    conn.ping(t);
                }
            }
            t = now();
        }
    }

    /// Stops publishing; a PINGREQ behind the last publish tells when the broker has read them.
    /// Open loop: messages due before the window's end but never sent (the broker or the tester
    /// could not keep up) are counted as `behind`.
    fn finish(&mut self, conn: &mut Conn, now_ns: u64, k: &Knobs, counters: &mut Counters) {
        if self.done_ns.is_some() {
            return;
        }
        self.done_ns = Some(now_ns);
        conn.ping(now_ns);
        if let (Some(p), true) = (self.pacer, k.streams) {
            let due = p
                .due_by(k.window.measure_end_ns.saturating_sub(1))
                .min(self.cap);
            counters.behind += due.saturating_sub(self.next_seq);
        }
    }

    /// Marks the publisher stopped because its connection is gone; what was in flight becomes
    /// uncertain.
    pub fn lost_connection(&mut self, conn: &Conn, now_ns: u64) {
        self.uncertain.extend(conn.unconfirmed());
        self.done_ns.get_or_insert(now_ns);
    }

    /// Done and everything acknowledged (or the drain ran out).
    pub fn settled(&self, conn: Option<&Conn>, now_ns: u64, drain_ns: u64) -> bool {
        let Some(done) = self.done_ns else {
            return false;
        };
        match conn {
            None => true,
            Some(c) => (c.inflight() == 0 && c.pings_out == 0) || now_ns >= done + drain_ns,
        }
    }

    pub fn outcome(&self, conn: Option<&Conn>) -> PublisherOutcome {
        let mut uncertain = self.uncertain.clone();
        if let Some(c) = conn {
            uncertain.extend(c.unconfirmed());
        }
        uncertain.sort_unstable();
        uncertain.dedup();
        PublisherOutcome {
            sent: self.next_seq,
            uncertain,
        }
    }
}

/// A subscriber's state.
pub struct Sub {
    pub id: u32,
    pub filter: TopicFilter,
    /// Subscribe on the coordinator's signal rather than at connect.
    pub deferred: bool,
    /// When SUBSCRIBE was queued (retained delivery time runs from here).
    pub subscribed_ns: Option<u64>,
    /// Per publisher id.
    pub trackers: HashMap<u32, SeqTracker>,
    pub distinct: u64,
    /// `retained`: messages that make a complete set.
    pub expect_all: Option<u64>,
}

/// Where a subscriber's deliveries are recorded.
pub struct Sinks<'a> {
    pub counters: &'a mut Counters,
    pub latency: &'a mut Histogram<u64>,
    /// `retained`: time from SUBSCRIBE to the whole set, per subscriber (µs).
    pub time_to_all: &'a mut Vec<u64>,
}

impl Sub {
    pub fn new(id: u32, filter: TopicFilter, deferred: bool) -> Sub {
        Sub {
            id,
            filter,
            deferred,
            subscribed_ns: None,
            trackers: HashMap::new(),
            distinct: 0,
            expect_all: None,
        }
    }

    /// Records one delivery; `run` is this run's tag, `window` the measured period.
    pub fn on_message(
        &mut self,
        payload: &[u8],
        now_ns: u64,
        run: u32,
        window: &Window,
        out: &mut Sinks,
    ) {
        if payload.is_empty() {
            // A retained message being deleted (our own clean-up at the end of `retained`).
            return;
        }
        out.counters.received += 1;
        let stamp = match Stamp::read(payload) {
            Ok(s) if s.run == run => s,
            _ => {
                out.counters.foreign += 1;
                return;
            }
        };
        let verdict = self
            .trackers
            .entry(stamp.publisher)
            .or_default()
            .record(stamp.seq);
        if matches!(verdict, Seen::New | Seen::Late) {
            self.distinct += 1;
            out.counters.distinct += 1;
        }
        if let Some(all) = self.expect_all {
            // Retained: delivery time since SUBSCRIBE (the stamp's time is when it was stored).
            let since = self.subscribed_ns.unwrap_or(now_ns);
            out.latency.saturating_record(latency_us(since, now_ns));
            if self.distinct == all && verdict != Seen::Duplicate {
                out.time_to_all.push(latency_us(since, now_ns));
            }
        } else if window.contains(stamp.sent_ns) {
            out.counters.received_in_window += 1;
            out.latency
                .saturating_record(latency_us(stamp.sent_ns, now_ns));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::new_histogram;
    use crate::payload::template;
    use coremq::protocol::{decode, Packet, ProtocolVersion};

    /// The stamps of every PUBLISH queued on `conn`.
    fn queued_stamps(conn: &mut Conn) -> Vec<Stamp> {
        let mut buf = conn.take_queued();
        let mut out = Vec::new();
        while let Some(p) = decode(&mut buf, ProtocolVersion::V3_1_1, 1 << 20).unwrap() {
            if let Packet::Publish(p) = p {
                out.push(Stamp::read(&p.payload).unwrap());
            }
        }
        out
    }

    fn publisher() -> Pub {
        Pub::new(
            3,
            vec![TopicName::from_static("t").unwrap()],
            false,
            u64::MAX,
        )
    }

    #[test]
    fn closed_loop_qos1_stops_at_the_inflight_bound() {
        let payload = template(32);
        let mut k = knobs(&payload);
        k.qos = QoS::AtLeastOnce;
        k.inflight = 4;
        let (mut conn, _l) = Conn::for_test(ProtocolVersion::V3_1_1);
        let mut p = publisher();
        let mut counters = Counters::default();
        p.produce(&mut conn, &k, &mut counters, &|| 5_000);
        let stamps = queued_stamps(&mut conn);
        assert_eq!(stamps.len(), 4);
        assert_eq!(conn.inflight(), 4);
        assert!(stamps
            .iter()
            .all(|s| s.sent_ns == 5_000 && s.publisher == 3 && s.run == 7));
        assert_eq!((counters.sent, counters.sent_in_window), (4, 4));
        assert_eq!(p.wake_ns, None); // waits for acknowledgements, not for time
    }

    #[test]
    fn closed_loop_qos0_is_bounded_by_ping_round_trips() {
        let payload = template(32);
        let mut k = knobs(&payload);
        k.inflight = 3;
        let (mut conn, _l) = Conn::for_test(ProtocolVersion::V3_1_1);
        let mut p = publisher();
        p.produce(&mut conn, &k, &mut Counters::default(), &|| 5_000);
        // Two rounds of 3 publishes, each followed by a PINGREQ.
        assert_eq!(queued_stamps(&mut conn).len(), 6);
        assert_eq!(conn.pings_out, 2);
    }

    #[test]
    fn open_loop_after_a_stall_sends_the_backlog_stamped_with_intended_times() {
        let payload = template(32);
        let mut k = knobs(&payload);
        k.window.measure_end_ns = u64::MAX;
        let (mut conn, _l) = Conn::for_test(ProtocolVersion::V3_1_1);
        let mut p = publisher();
        // 1000 msg/s for this one publisher: one every 1 ms from t = 0.
        p.pacer = Some(Pacer::new(0, 1000, 1, 0));
        // The loop only gets to run at 10.5 ms.
        p.produce(&mut conn, &k, &mut Counters::default(), &|| 10_500_000);
        let stamps = queued_stamps(&mut conn);
        let sent: Vec<u64> = stamps.iter().map(|s| s.sent_ns).collect();
        assert_eq!(sent, (0..=10).map(|i| i * 1_000_000).collect::<Vec<_>>());
        assert_eq!(p.wake_ns, Some(11_000_000));
    }

    #[test]
    fn open_loop_counts_messages_left_behind_at_the_end() {
        let payload = template(32);
        let k = knobs(&payload); // window ends at 1 ms
        let (mut conn, _l) = Conn::for_test(ProtocolVersion::V3_1_1);
        let mut p = publisher();
        // 10 000 msg/s: messages at 0, 0.1, …, 0.9 ms are due in the window.
        p.pacer = Some(Pacer::new(0, 10_000, 1, 0));
        let mut counters = Counters::default();
        p.produce(&mut conn, &k, &mut counters, &|| 250_000);
        assert_eq!(p.next_seq, 3);
        // The next turn comes only after the window closed.
        p.produce(&mut conn, &k, &mut counters, &|| 5_000_000);
        assert_eq!(p.next_seq, 3);
        assert_eq!(counters.behind, 7);
    }

    #[test]
    fn publisher_stops_at_cap_and_at_window_end() {
        let payload = template(32);
        let k = knobs(&payload);
        let (mut conn, _l) = Conn::for_test(ProtocolVersion::V3_1_1);
        let mut p = publisher();
        p.cap = 2;
        p.produce(&mut conn, &k, &mut Counters::default(), &|| 5_000);
        assert_eq!(p.next_seq, 2);
        assert_eq!(p.done_ns, Some(5_000));
        let (mut conn, _l) = Conn::for_test(ProtocolVersion::V3_1_1);
        let mut late = publisher();
        late.produce(&mut conn, &k, &mut Counters::default(), &|| 2_000_000);
        assert_eq!((late.next_seq, late.done_ns), (0, Some(2_000_000)));
        assert_eq!(late.outcome(Some(&conn)).sent, 0);
    }

    fn knobs(payload: &Bytes) -> Knobs<'_> {
        Knobs {
            run: 7,
            qos: QoS::AtMostOnce,
            payload,
            inflight: 16,
            window: Window {
                start_ns: 0,
                measure_start_ns: 1_000,
                measure_end_ns: 1_000_000,
            },
            streams: true,
        }
    }

    fn stamped(run: u32, publisher: u32, seq: u64, sent_ns: u64) -> Vec<u8> {
        let mut v = template(32).to_vec();
        Stamp {
            run,
            publisher,
            seq,
            sent_ns,
        }
        .write(&mut v);
        v
    }

    #[test]
    fn subscriber_counts_window_latency_and_foreign_payloads() {
        let payload = template(32);
        let k = knobs(&payload);
        let mut sub = Sub::new(0, TopicFilter::from_static("a").unwrap(), false);
        let (mut counters, mut latency, mut tta) = (Counters::default(), new_histogram(), vec![]);
        let mut out = Sinks {
            counters: &mut counters,
            latency: &mut latency,
            time_to_all: &mut tta,
        };
        sub.on_message(&stamped(7, 1, 0, 500), 900, k.run, &k.window, &mut out); // warm-up: not timed
        sub.on_message(&stamped(7, 1, 1, 2_000), 52_000, k.run, &k.window, &mut out); // 50 µs
        sub.on_message(&stamped(7, 1, 1, 2_000), 60_000, k.run, &k.window, &mut out); // duplicate
        sub.on_message(&stamped(8, 1, 2, 2_000), 60_000, k.run, &k.window, &mut out); // other run
        sub.on_message(b"not ours", 60_000, k.run, &k.window, &mut out);
        sub.on_message(b"", 60_000, k.run, &k.window, &mut out); // retained deletion: ignored
        assert_eq!(counters.received, 5);
        assert_eq!(counters.distinct, 2);
        assert_eq!(counters.foreign, 2);
        assert_eq!(counters.received_in_window, 2);
        assert_eq!(sub.trackers[&1].duplicates, 1);
        assert_eq!(latency.len(), 2);
        assert_eq!(latency.max(), 58);
    }

    #[test]
    fn retained_subscriber_reports_time_to_complete_set() {
        let payload = template(32);
        let k = knobs(&payload);
        let mut sub = Sub::new(0, TopicFilter::from_static("a/#").unwrap(), true);
        sub.expect_all = Some(2);
        sub.subscribed_ns = Some(10_000);
        let (mut counters, mut latency, mut tta) = (Counters::default(), new_histogram(), vec![]);
        let mut out = Sinks {
            counters: &mut counters,
            latency: &mut latency,
            time_to_all: &mut tta,
        };
        sub.on_message(&stamped(7, 0, 0, 1), 20_000, k.run, &k.window, &mut out);
        sub.on_message(&stamped(7, 0, 1, 1), 40_000, k.run, &k.window, &mut out);
        sub.on_message(&stamped(7, 0, 1, 1), 50_000, k.run, &k.window, &mut out);
        assert_eq!(tta, [30]);
        assert_eq!(latency.len(), 3);
    }
}
