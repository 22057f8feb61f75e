//! Shared subscriptions across shards [MQTT-4.8.2]: each message goes to exactly one member of
//! each group, members on several shards, with raw MQTT 5 (and 3.1.1) clients for exact control
//! over acknowledgements.

use std::collections::HashMap;
use std::num::NonZeroU16;

use bytes::Bytes;
use coremq::config::SharedStrategy;
use coremq::protocol::{
    Packet, PacketId, ProtocolVersion, Publish, PublishAck, QoS, ReasonCode, SubAck, Subscribe,
    SubscriptionOptions, TopicFilter, TopicName,
};

use crate::common::{RawClient, TestBroker};
use crate::{raw_connect, raw_connect_with};

fn subscribe(client: &mut RawClient, filter: &str, qos: QoS) {
    let id = PacketId::new(1).unwrap();
    client.send(&Packet::Subscribe(Subscribe {
        packet_id: id,
        properties: Default::default(),
        filters: vec![(
            TopicFilter::copy_from(filter).unwrap(),
            SubscriptionOptions::with_qos(qos),
        )],
    }));
    match client.expect_packet() {
        Packet::SubAck(SubAck { reason_codes, .. }) => {
            assert_eq!(reason_codes, vec![ReasonCode::granted(qos)])
        }
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// Publishes `n` QoS 1 messages "0".."n-1" to `topic` and waits for each PUBACK.
fn publish_numbered(client: &mut RawClient, topic: &str, n: u16, first: u16) {
    for i in first..first + n {
        let id = PacketId::new(i + 1).unwrap();
        client.send(&Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            packet_id: Some(id),
            ..Publish::new(
                TopicName::copy_from(topic).unwrap(),
                Bytes::from(i.to_string()),
            )
        }));
        match client.expect_packet() {
            Packet::PubAck(a) => assert_eq!(a.packet_id, id),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
}

/// Reads `n` PUBLISHes, acknowledging them when `ack`; returns their payloads.
fn receive(client: &mut RawClient, n: usize, ack: bool) -> Vec<String> {
    (0..n)
        .map(|_| match client.expect_packet() {
            Packet::Publish(p) => {
                if ack {
                    if let Some(id) = p.packet_id {
                        client.send(&Packet::PubAck(PublishAck::new(id)));
                    }
                }
                String::from_utf8(p.payload.to_vec()).unwrap()
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        })
        .collect()
}

/// Sends a PINGREQ and reads until PINGRESP, returning the PUBLISH payloads seen before it
/// (acknowledged): everything the broker had sent by then.
fn drain(client: &mut RawClient) -> Vec<String> {
    client.send(&Packet::PingReq);
    let mut got = Vec::new();
    loop {
        match client.expect_packet() {
            Packet::PingResp => return got,
            Packet::Publish(p) => {
                if let Some(id) = p.packet_id {
                    client.send(&Packet::PubAck(PublishAck::new(id)));
                }
                got.push(String::from_utf8(p.payload.to_vec()).unwrap());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Drains every member until `n` messages arrived in all (messages cross shards after the
/// publisher's PUBACK, so one drain may be early), then checks nothing more comes.
fn collect(members: &mut [&mut RawClient], n: usize) -> Vec<Vec<String>> {
    let deadline = std::time::Instant::now() + crate::common::PATIENCE;
    let mut got: Vec<Vec<String>> = members.iter().map(|_| Vec::new()).collect();
    while got.iter().map(Vec::len).sum::<usize>() < n {
        assert!(std::time::Instant::now() < deadline, "only {got:?} of {n}");
        for (m, g) in members.iter_mut().zip(got.iter_mut()) {
            g.extend(drain(m));
        }
    }
    for m in members.iter_mut() {
        assert_eq!(drain(m), Vec::<String>::new(), "more than {n} messages");
    }
    got
}

fn assert_each_once(all: Vec<String>, n: u16) {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for p in all {
        *counts.entry(p).or_default() += 1;
    }
    for i in 0..n {
        assert_eq!(
            counts.get(&i.to_string()),
            Some(&1),
            "message {i}: {counts:?}"
        );
    }
    assert_eq!(counts.len(), n as usize);
}

#[test]
fn mqtt_4_8_2_each_message_goes_to_one_member_with_members_on_every_shard() {
    let broker = TestBroker::start(3);
    let v = ProtocolVersion::V5;
    let mut members: Vec<RawClient> = (0..3)
        .map(|shard| raw_connect(&broker, v, &broker.id_on(shard, "member")))
        .collect();
    for m in &mut members {
        subscribe(m, "$share/g/jobs/+", QoS::AtLeastOnce);
    }
    // A plain subscriber sees every message; a second group gets its own copy of each.
    let mut plain = raw_connect(&broker, v, &broker.id_on(2, "plain"));
    subscribe(&mut plain, "jobs/#", QoS::AtLeastOnce);
    let mut other_group = raw_connect(&broker, v, &broker.id_on(1, "other"));
    subscribe(&mut other_group, "$share/h/jobs/#", QoS::AtLeastOnce);

    let mut publisher = raw_connect(&broker, v, &broker.id_on(0, "pub"));
    publish_numbered(&mut publisher, "jobs/a", 60, 0);

    assert_eq!(receive(&mut plain, 60, true).len(), 60);
    assert_eq!(receive(&mut other_group, 60, true).len(), 60);
    let mut refs: Vec<&mut RawClient> = members.iter_mut().collect();
    let got = collect(&mut refs, 60);
    for share in &got {
        // Round-robin over the three shards with members: a third each.
        assert_eq!(share.len(), 20, "each member gets its share: {got:?}");
    }
    assert_each_once(got.concat(), 60);
}

#[test]
fn mqtt_4_8_2_a_member_with_a_full_window_is_skipped() {
    let broker = TestBroker::start(2);
    let v = ProtocolVersion::V5;
    // `slow` allows one unacknowledged message and never acknowledges.
    let mut slow = raw_connect_with(&broker, v, &broker.id_on(0, "slow"), |c| {
        c.properties.receive_maximum = NonZeroU16::new(1);
    });
    let mut fast = raw_connect(&broker, v, &broker.id_on(1, "fast"));
    subscribe(&mut slow, "$share/g/t", QoS::AtLeastOnce);
    subscribe(&mut fast, "$share/g/t", QoS::AtLeastOnce);
    let mut publisher = raw_connect(&broker, v, &broker.id_on(0, "pub"));
    publish_numbered(&mut publisher, "t", 20, 0);
    let held = receive(&mut slow, 1, false);
    let mut all = collect(&mut [&mut fast], 19).concat();
    all.extend(held);
    assert_each_once(all, 20);
}

#[test]
fn mqtt_4_8_2_5_unacknowledged_messages_of_a_leaving_member_go_to_another() {
    let broker = TestBroker::start(2);
    let v = ProtocolVersion::V5;
    let mut leaver = raw_connect(&broker, v, &broker.id_on(0, "leaver"));
    let mut stayer = raw_connect(&broker, v, &broker.id_on(1, "stayer"));
    subscribe(&mut leaver, "$share/g/t", QoS::AtLeastOnce);
    subscribe(&mut stayer, "$share/g/t", QoS::AtLeastOnce);
    let mut publisher = raw_connect(&broker, v, &broker.id_on(1, "pub"));
    publish_numbered(&mut publisher, "t", 10, 0);
    // The leaver reads its share without acknowledging, then its connection (and clean session)
    // ends: those messages go to the stayer.
    // Round-robin over the two shards: half each.
    let unacked = receive(&mut leaver, 5, false);
    let stayed = 10 - unacked.len();
    drop(leaver);
    // The stayer gets its own share plus the leaver's unacknowledged ones.
    assert_each_once(
        collect(&mut [&mut stayer], stayed + unacked.len()).concat(),
        10,
    );
}

#[test]
fn mqtt_4_8_2_retained_messages_are_not_sent_to_shared_subscriptions() {
    let broker = TestBroker::start(2);
    let v = ProtocolVersion::V5;
    let mut publisher = raw_connect(&broker, v, &broker.id_on(0, "pub"));
    let id = PacketId::new(1).unwrap();
    publisher.send(&Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        retain: true,
        packet_id: Some(id),
        ..Publish::new(
            TopicName::from_static("r").unwrap(),
            Bytes::from_static(b"kept"),
        )
    }));
    assert!(matches!(publisher.expect_packet(), Packet::PubAck(_)));
    let mut member = raw_connect(&broker, v, &broker.id_on(1, "member"));
    subscribe(&mut member, "$share/g/r", QoS::AtLeastOnce);
    assert_eq!(drain(&mut member), Vec::<String>::new());
}

#[test]
fn shared_subscriptions_work_for_mqtt_3_1_1_clients_too() {
    let broker = TestBroker::start(2);
    let v = ProtocolVersion::V3_1_1;
    let mut a = raw_connect(&broker, v, &broker.id_on(0, "a"));
    let mut b = raw_connect(&broker, v, &broker.id_on(1, "b"));
    subscribe(&mut a, "$share/g/t", QoS::AtLeastOnce);
    subscribe(&mut b, "$share/g/t", QoS::AtLeastOnce);
    let mut publisher = raw_connect(&broker, v, &broker.id_on(0, "pub"));
    publish_numbered(&mut publisher, "t", 10, 0);
    assert_each_once(collect(&mut [&mut a, &mut b], 10).concat(), 10);
}

#[test]
fn local_first_keeps_messages_on_the_publishers_shard() {
    let broker = TestBroker::start_with(2, |c| c.shared_strategy = SharedStrategy::LocalFirst);
    let v = ProtocolVersion::V5;
    let mut local = raw_connect(&broker, v, &broker.id_on(0, "local"));
    let mut remote = raw_connect(&broker, v, &broker.id_on(1, "remote"));
    subscribe(&mut local, "$share/g/t", QoS::AtLeastOnce);
    subscribe(&mut remote, "$share/g/t", QoS::AtLeastOnce);
    let mut publisher = raw_connect(&broker, v, &broker.id_on(0, "pub"));
    publish_numbered(&mut publisher, "t", 10, 0);
    let got = collect(&mut [&mut local, &mut remote], 10);
    assert_eq!(got[0].len(), 10, "all on the publisher's shard: {got:?}");
}
