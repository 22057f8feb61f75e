//! §1.5, §2 and the per-packet rules: raw bytes that break the protocol, sent by a connected
//! client. Each case ends that connection only — MQTT 5 clients first get a DISCONNECT with the
//! reason code the case names, MQTT 3.1.1 clients are just closed [MQTT-4.8.0-1] — and after
//! every case two well-behaved clients, one per shard, still exchange messages across the mesh.
//!
//! Each case carries the bytes for each version it applies to (the formats differ where MQTT 5
//! adds a property block) and is named after the statement it breaks. Refused CONNECTs, with the
//! same bystanders, are in `s3_01_connect`. One module per section holds its cases; this one
//! runs them all.

mod s2_fixed_header;
mod s3_01_connect;
mod s3_03_publish;
mod s3_04_acks;
mod s3_08_subscribe;
mod s3_14_disconnect;
mod s3_15_server_packets;

use coremq::protocol::{Packet, ProtocolVersion, QoS, ReasonCode};

use crate::common::{hex, RawClient, TestBroker};
use crate::{connect, expect_message, publish, subscribe};
use s3_01_connect::CONNECT_CASES;

each_version!(mqtt_4_8_0_1_protocol_violation_closes_only_its_connection);

#[test]
fn the_tables_hold_over_100_distinct_cases_across_every_packet_type() {
    let mut names: Vec<&str> = cases().map(|c| c.name).collect();
    names.extend(CONNECT_CASES.iter().map(|c| c.name));
    let total = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), total, "case names repeat");
    assert!(total >= 100, "{total} cases");
    assert!(names.iter().all(|n| n.starts_with("mqtt_")));
    // Every packet type 0..=15 is the first byte of some case, in some version.
    let mut types = [false; 16];
    for c in cases() {
        for bytes in [c.v3, c.v5].into_iter().flatten() {
            types[usize::from(hex(bytes)[0] >> 4)] = true;
        }
    }
    types[1] = !CONNECT_CASES.is_empty();
    assert_eq!(types, [true; 16], "packet types without a case");
}

pub(super) struct Case {
    name: &'static str,
    /// The bytes sent after CONNECT on an MQTT 3.1.1 connection; `None`: MQTT 5 only.
    v3: Option<&'static str>,
    /// The bytes sent after CONNECT on an MQTT 5 connection; `None`: not a violation there.
    v5: Option<&'static str>,
    /// The reason code of the DISCONNECT an MQTT 5 client gets.
    reason: ReasonCode,
}

pub(super) const fn both(
    name: &'static str,
    v3: &'static str,
    v5: &'static str,
    reason: ReasonCode,
) -> Case {
    Case {
        name,
        v3: Some(v3),
        v5: Some(v5),
        reason,
    }
}

pub(super) const MALFORMED: ReasonCode = ReasonCode::MALFORMED_PACKET;
pub(super) const PROTOCOL: ReasonCode = ReasonCode::PROTOCOL_ERROR;

/// Every section's cases.
const SECTIONS: &[&[Case]] = &[
    s2_fixed_header::FIXED_HEADER,
    s3_03_publish::PUBLISH,
    s3_04_acks::ACKS,
    s3_14_disconnect::DISCONNECT,
    s3_08_subscribe::SUBSCRIBE,
    s3_15_server_packets::SERVER_PACKETS,
];

fn cases() -> impl Iterator<Item = &'static Case> {
    SECTIONS.iter().flat_map(|s| s.iter())
}

/// Two clients, one homed on each shard, each subscribed to its own topic.
pub(super) struct Bystanders {
    on_0: RawClient,
    on_1: RawClient,
}

impl Bystanders {
    pub(super) fn connect(broker: &TestBroker, v: ProtocolVersion) -> Self {
        let mut on_0 = connect(broker, v, &broker.id_on(0, "bystander"), true);
        let mut on_1 = connect(broker, v, &broker.id_on(1, "bystander"), true);
        subscribe(&mut on_0, "bystander/0", QoS::AtMostOnce);
        subscribe(&mut on_1, "bystander/1", QoS::AtMostOnce);
        Self { on_0, on_1 }
    }

    /// Each publishes to the other, across the mesh, and receives the other's message.
    pub(super) fn still_served(&mut self, after: &str) {
        publish(&mut self.on_0, "bystander/1", after, QoS::AtMostOnce);
        publish(&mut self.on_1, "bystander/0", after, QoS::AtMostOnce);
        expect_message(&mut self.on_1, "bystander/1", after);
        expect_message(&mut self.on_0, "bystander/0", after);
    }
}

fn mqtt_4_8_0_1_protocol_violation_closes_only_its_connection(v: ProtocolVersion) {
    let broker = TestBroker::start(2);
    let mut bystanders = Bystanders::connect(&broker, v);
    for (i, case) in cases().enumerate() {
        let bytes = if v.is_v5() { case.v5 } else { case.v3 };
        let Some(bytes) = bytes else { continue };
        // Shown if the case fails inside a helper.
        eprintln!("case {}", case.name);
        // The offender alternates between the shards.
        let mut client = connect(&broker, v, &broker.id_on(i % 2, case.name), true);
        client.send_bytes(&hex(bytes));
        let before = client.expect_close();
        // Only the reason code is normative; the broker adds a Reason String saying why.
        let codes: Vec<ReasonCode> = before
            .iter()
            .map(|p| match p {
                Packet::Disconnect(d) => d.reason_code,
                other => panic!("{}: unexpected {other:?} before the close", case.name),
            })
            .collect();
        let expected = if v.is_v5() {
            vec![case.reason]
        } else {
            Vec::new()
        };
        assert_eq!(
            codes,
            expected,
            "{}: expected {}",
            case.name,
            if v.is_v5() {
                "DISCONNECT then close"
            } else {
                "a close"
            }
        );
        bystanders.still_served(case.name);
    }
}
