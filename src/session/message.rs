//! An application message as the broker routes it: what a PUBLISH carries, minus the per-delivery
//! fields (packet id, DUP). Crosses shards through the mesh; topic and payload are shared
//! `Bytes`, so a clone is a few reference counts, never a payload copy.

use bytes::Bytes;

use crate::protocol::{MessageProperties, PacketId, Publish, PublishProperties, QoS, TopicName};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: TopicName,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// MQTT 5 properties forwarded unchanged to subscribers.
    pub properties: MessageProperties,
}

impl Message {
    /// The message a received PUBLISH carries (topic alias already resolved by the caller).
    pub fn from_publish(p: Publish) -> Self {
        Self {
            topic: p.topic,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            properties: p.properties.message,
        }
    }

    /// The PUBLISH that delivers this message at `qos`. The retain flag is the message's: the
    /// shard clears it for deliveries to established subscriptions [MQTT-3.3.1-9] and keeps it
    /// for retained messages sent on subscribe [MQTT-3.3.1-8].
    pub fn to_publish(&self, qos: QoS, packet_id: Option<PacketId>, dup: bool) -> Publish {
        Publish {
            dup,
            qos,
            retain: self.retain,
            topic: self.topic.clone(),
            packet_id,
            payload: self.payload.clone(),
            properties: PublishProperties {
                topic_alias: None,
                subscription_identifiers: Vec::new(),
                message: self.properties.clone(),
            },
        }
    }

    /// A copy whose payload and topic no longer share the read chunk they were decoded from, for
    /// messages that outlive the tick (retained, queued): a small slice would otherwise keep a
    /// whole read buffer alive.
    pub fn detached(&self) -> Self {
        Self {
            topic: TopicName::copy_from(self.topic.as_str()).unwrap_or_else(|_| self.topic.clone()),
            payload: Bytes::copy_from_slice(&self.payload),
            ..self.clone()
        }
    }
}
