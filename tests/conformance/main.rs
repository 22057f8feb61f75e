//! Conformance tests: one module per section of the MQTT specification, each case named after the
//! normative statement it checks (`mqtt_3_1_4_2_…` is [MQTT-3.1.4-2]). A case that applies to
//! both MQTT 3.1.1 and MQTT 5 is written once, as a function of the protocol version, and
//! `each_version!` turns it into the tests `case::v3_1_1` and `case::v5`.
//!
//! Every test starts its own broker in-process with 2 shards and drives it with `RawClient`, so
//! the bytes on the wire are exactly the ones the case names. Clients are placed on shards on
//! purpose (`TestBroker::id_on`): publisher and subscriber, or a will's sender and its receiver,
//! live on different shards. Cases assert behaviour, never timings; waits are generous.
//!
//! Modules are named `s<chapter>_<section>_<topic>`: `s3_01_*` CONNECT (connect, session, session
//! expiry, will), `s3_02_connack`, `s3_03_*` PUBLISH (topic alias, message expiry, receive
//! maximum), `s3_04_acks` (every acknowledgement byte for byte), `s3_08_subscription_options`,
//! `s3_12_keepalive`; `malformed/` holds the raw-byte violation tables, one module per section,
//! and the runner that checks each closes only its own connection. Packet helpers shared with
//! the fault tests live in `tests/common`; MQTT 5 helpers in `v5`.

#[path = "../common/mod.rs"]
mod common;

use coremq::protocol::{Packet, ProtocolVersion};

/// Turns each `case(version)` function into a module of two tests, `case::v3_1_1` and `case::v5`.
macro_rules! each_version {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[test]
            fn v3_1_1() {
                super::$case(coremq::protocol::ProtocolVersion::V3_1_1)
            }

            #[test]
            fn v5() {
                super::$case(coremq::protocol::ProtocolVersion::V5)
            }
        }
    )*};
}

mod malformed;
mod s3_01_connect;
mod s3_01_session;
mod s3_01_session_expiry;
mod s3_01_will;
mod s3_02_connack;
mod s3_03_message_expiry;
mod s3_03_receive_maximum;
mod s3_03_topic_alias;
mod s3_04_acks;
mod s3_08_subscription_options;
mod s3_12_keepalive;
mod v5;

use common::{
    connect, connect_packet, connect_with, expect_message, packet_id, ping, publish, subscribe,
    topic_name, will,
};

/// A frame of type-and-flags byte `first`: the fixed header (remaining length as a variable byte
/// integer) and `body`.
fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        out.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// `packets` as bytes on the wire of a `v` connection (to compare with a case's expected hex).
fn wire(packets: &[Packet], v: ProtocolVersion) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    for p in packets {
        p.encode(v, &mut out).unwrap();
    }
    out.to_vec()
}
