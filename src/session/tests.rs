use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::protocol::{ClientId, TopicName};

fn at(qos: QoS) -> Delivery {
    Delivery {
        qos,
        ..Delivery::default()
    }
}

fn limits(window: usize, queue: usize) -> Limits {
    Limits {
        max_inflight: window,
        max_queued: queue,
        max_queued_bytes: usize::MAX,
        queue_qos0: false,
    }
}

fn msg(payload: &'static str, qos: QoS) -> Message {
    Message {
        topic: TopicName::from_static("t").unwrap(),
        payload: Bytes::from_static(payload.as_bytes()),
        qos,
        retain: false,
        properties: Default::default(),
        publisher: ClientId::default(),
        expires_at: None,
        received: std::time::Instant::now(),
    }
}

/// Delivers a message of `payload` at `qos` to `s`, online, now.
fn deliver_now(s: &mut Session, payload: &'static str, qos: QoS) -> Option<Outgoing> {
    s.deliver(&msg(payload, qos), at(qos), Link::Online, Instant::now())
}

fn session(window: usize, queue: usize) -> Session {
    session_with(limits(window, queue))
}

fn session_with(limits: Limits) -> Session {
    Session::new(
        ClientId::from_static("c").unwrap(),
        ProtocolVersion::V3_1_1,
        limits,
    )
}

fn id(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

#[test]
fn window_then_queue_then_drain_on_puback() {
    let mut s = session(2, 10);
    let p1 = deliver_now(&mut s, "1", QoS::AtLeastOnce).unwrap();
    let p2 = deliver_now(&mut s, "2", QoS::AtLeastOnce).unwrap();
    assert_eq!((p1.packet_id, p2.packet_id), (Some(id(1)), Some(id(2))));
    assert!(deliver_now(&mut s, "3", QoS::AtLeastOnce).is_none());
    assert_eq!(s.queued(), 1);
    assert!(s.handle_puback(id(1)));
    let drained = s.drain_queue(Instant::now());
    assert_eq!(drained.len(), 1);
    assert_eq!(drained[0].payload, "3");
    assert_eq!(drained[0].packet_id, Some(id(3)));
    assert!(
        !s.handle_puback(id(1)),
        "a second PUBACK for the same id is unknown"
    );
}

#[test]
fn delivery_fields_reach_the_publish() {
    let mut s = session(10, 10);
    let d = Delivery {
        qos: QoS::AtLeastOnce,
        retain: true,
        subscription_ids: vec![std::num::NonZeroU32::new(7).unwrap()],
        group: None,
    };
    let p = s
        .deliver(&msg("x", QoS::ExactlyOnce), d, Link::Online, Instant::now())
        .unwrap();
    assert_eq!(p.qos, QoS::AtLeastOnce);
    assert!(p.retain);
    assert_eq!(p.properties.subscription_identifiers.len(), 1);
    let p = deliver_now(&mut s, "x", QoS::AtMostOnce).unwrap();
    assert_eq!(p.packet_id, None);
}

#[test]
fn mqtt_3_3_2_5_expired_messages_are_dropped_and_the_rest_carry_the_remaining_time() {
    let mut s = session(1, 10);
    let t0 = Instant::now();
    let mut m = msg("x", QoS::AtLeastOnce);
    m.expires_at = Some(t0 + Duration::from_secs(10));
    let p = s
        .deliver(
            &m,
            at(QoS::AtLeastOnce),
            Link::Online,
            t0 + Duration::from_millis(2500),
        )
        .unwrap();
    // [MQTT-3.3.2-6] the received interval minus the time waited, rounded up.
    assert_eq!(p.properties.message.message_expiry_interval, Some(8));
    // The window is full: the next one queues, and expires while waiting.
    assert!(s
        .deliver(&m, at(QoS::AtLeastOnce), Link::Online, t0)
        .is_none());
    assert!(s.handle_puback(p.packet_id.unwrap()));
    assert!(s.drain_queue(t0 + Duration::from_secs(11)).is_empty());
    assert_eq!(s.drops.expired, 1);
    assert!(s
        .deliver(
            &m,
            at(QoS::AtMostOnce),
            Link::Online,
            t0 + Duration::from_secs(10)
        )
        .is_none());
    assert_eq!(s.drops.expired, 2);
}

#[test]
fn mqtt_4_4_0_1_resume_resends_unacked_with_dup_and_pubrel() {
    let mut s = session(10, 10);
    deliver_now(&mut s, "a", QoS::AtLeastOnce).unwrap();
    deliver_now(&mut s, "b", QoS::ExactlyOnce).unwrap();
    deliver_now(&mut s, "c", QoS::ExactlyOnce).unwrap();
    assert!(s.handle_pubrec(id(3)));
    // Offline: QoS 1 queued, QoS 0 dropped (queue_qos0 off).
    assert!(s
        .deliver(
            &msg("d", QoS::AtLeastOnce),
            at(QoS::AtLeastOnce),
            Link::Offline,
            Instant::now()
        )
        .is_none());
    assert!(s
        .deliver(
            &msg("e", QoS::AtMostOnce),
            at(QoS::AtMostOnce),
            Link::Offline,
            Instant::now()
        )
        .is_none());
    assert_eq!(s.drops.qos0_offline, 1);
    let resent = s.resume(Instant::now());
    assert_eq!(resent.len(), 4);
    match &resent[0] {
        Resend::Publish(p) => {
            assert!(p.dup);
            assert_eq!(p.payload, "a");
            assert_eq!(p.packet_id, Some(id(1)));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&resent[1], Resend::Publish(p) if p.dup && p.payload == "b"));
    assert_eq!(resent[2], Resend::PubRel(id(3)));
    assert!(matches!(&resent[3], Resend::Publish(p) if !p.dup && p.payload == "d"));
    assert!(s.handle_pubcomp(id(3)));
    assert!(!s.handle_pubcomp(id(3)));
}

#[test]
fn queue_is_bounded_and_drops_are_counted() {
    let mut s = session(1, 2);
    for _ in 0..5 {
        s.deliver(
            &msg("x", QoS::AtLeastOnce),
            at(QoS::AtLeastOnce),
            Link::Offline,
            Instant::now(),
        );
    }
    assert_eq!(s.queued(), 2);
    assert_eq!(s.drops.queue_full, 3);
}

#[test]
fn while_publishers_are_held_only_the_byte_limit_bounds_the_queue() {
    let mut s = session_with(Limits {
        // "t" + "x": 2 bytes a message, so 8 messages fit.
        max_queued_bytes: 16,
        ..limits(1, 2)
    });
    let deliver = |s: &mut Session| {
        s.deliver(
            &msg("x", QoS::AtLeastOnce),
            at(QoS::AtLeastOnce),
            Link::Offline,
            Instant::now(),
        )
    };
    s.set_stretch(true);
    for _ in 0..10 {
        deliver(&mut s);
    }
    assert_eq!(
        s.queued(),
        8,
        "past the message limit, up to the byte limit"
    );
    assert_eq!(s.drops.queue_full, 2);
    s.set_stretch(false);
    deliver(&mut s);
    assert_eq!(s.queued(), 8, "the message limit applies again");
    assert_eq!(s.drops.queue_full, 3);
}

#[test]
fn going_offline_copies_unacknowledged_messages_out_of_their_read_chunk() {
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    let inside = |b: &Bytes| {
        let start = chunk.as_ptr() as usize;
        (start..start + chunk.len()).contains(&(b.as_ptr() as usize))
    };
    let mut s = session(10, 10);
    let mut m = msg("", QoS::AtLeastOnce);
    m.payload = chunk.slice(100..110);
    let sent = s
        .deliver(&m, at(QoS::AtLeastOnce), Link::Online, Instant::now())
        .unwrap();
    assert!(
        inside(&sent.payload),
        "while online, deliveries share the chunk"
    );
    s.detach_inflight();
    let out = s.resume(Instant::now());
    let Resend::Publish(again) = &out[0] else {
        panic!("expected the PUBLISH again, got {out:?}");
    };
    assert_eq!(again.payload, chunk.slice(100..110), "same bytes");
    assert!(!inside(&again.payload), "no longer a slice of the chunk");
}

#[test]
fn queue_qos0_when_configured() {
    let mut s = session_with(Limits {
        queue_qos0: true,
        ..limits(1, 10)
    });
    assert!(s
        .deliver(
            &msg("x", QoS::AtMostOnce),
            at(QoS::AtMostOnce),
            Link::Offline,
            Instant::now()
        )
        .is_none());
    assert_eq!(s.queued(), 1);
    let out = s.resume(Instant::now());
    assert!(
        matches!(&out[0], Resend::Publish(p) if p.qos == QoS::AtMostOnce && p.packet_id.is_none())
    );
}

#[test]
fn mqtt_4_3_3_incoming_qos2_is_delivered_once_until_pubrel() {
    let mut s = session(10, 10);
    assert!(s.handle_incoming_qos2(id(7)));
    assert!(
        !s.handle_incoming_qos2(id(7)),
        "resend before PUBREL is not routed again"
    );
    assert!(s.handle_pubrel(id(7)));
    assert!(!s.handle_pubrel(id(7)));
    assert!(
        s.handle_incoming_qos2(id(7)),
        "after PUBREL the id is free again"
    );
}

#[test]
fn packet_ids_skip_ids_still_in_flight_after_wrapping() {
    let mut s = session(3, 10);
    s.next_id = id(65535);
    let a = deliver_now(&mut s, "a", QoS::AtLeastOnce).unwrap();
    assert_eq!(a.packet_id, Some(id(65535)));
    let b = deliver_now(&mut s, "b", QoS::AtLeastOnce).unwrap();
    assert_eq!(b.packet_id, Some(id(1)));
    s.next_id = id(65535);
    let c = deliver_now(&mut s, "c", QoS::AtLeastOnce).unwrap();
    assert_eq!(c.packet_id, Some(id(2)), "65535 and 1 are still in flight");
}

/// Sessions are kept per client, so their size is most of what an idle connection costs: what
/// is on its way sits behind one pointer, given back when the connection goes idle or offline.
#[test]
fn traffic_is_boxed_and_given_back_once_nothing_is_on_its_way() {
    let mut s = session(10, 10);
    assert!(s.traffic.is_none(), "a new session has none");
    let sent = deliver_now(&mut s, "t", QoS::AtLeastOnce).unwrap();
    assert_eq!(s.inflight(), 1);
    s.detach_inflight();
    assert!(
        s.traffic.is_some(),
        "kept while a delivery awaits its PUBACK"
    );
    assert!(s.handle_puback(sent.packet_id.unwrap()));
    assert_eq!(s.inflight(), 0);
    s.detach_inflight();
    assert!(s.traffic.is_none(), "given back once empty");
    assert_eq!((s.inflight(), s.queued()), (0, 0));
    assert!(std::mem::size_of::<Session>() <= 208);
}

/// Neither making a session durable nor a PUBREC for an unknown id makes it keep a `Traffic`.
#[test]
fn durable_sessions_and_stray_pubrecs_keep_no_traffic() {
    let mut s = session(10, 10);
    s.set_durable(true);
    assert!(s.traffic.is_none());
    assert!(!s.handle_pubrec(crate::protocol::PacketId::new(7).unwrap()));
    assert!(s.traffic.is_none());
}
