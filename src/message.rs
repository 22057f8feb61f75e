//! An application message as the broker routes it: what a PUBLISH carries, minus the per-delivery
//! fields (packet id, DUP, subscription identifiers, the retain flag as a subscriber sees it),
//! which are a `Delivery`. Crosses shards through the mesh and is kept by the retained store and
//! session queues; topic and payload are shared `Bytes`, so a clone is a few reference counts,
//! never a payload copy. Depends on the codec only.

use std::num::NonZeroU32;
use std::time::Instant;

use bytes::Bytes;

use crate::protocol::{
    ClientId, MessageProperties, MqttString, PacketId, Publish, PublishProperties, QoS,
    TopicFilter, TopicName,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: TopicName,
    pub payload: Bytes,
    pub qos: QoS,
    /// The publisher's retain flag (kept for Retain As Published and the retained index).
    pub retain: bool,
    /// MQTT 5 properties forwarded unchanged to subscribers, except the Message Expiry Interval,
    /// which is recomputed from `expires_at` at each delivery [MQTT-3.3.2-6].
    pub properties: MessageProperties,
    /// The publishing client's id (empty for messages the broker makes), for No Local.
    pub publisher: ClientId,
    /// When the Message Expiry Interval runs out.
    pub expires_at: Option<Instant>,
    /// When it entered the broker (its PUBLISH was read, or the broker made it), for the
    /// latency metric: time inside the broker until written to a subscriber's socket.
    pub received: Instant,
}

/// A PUBLISH on its way to a client, with when its message entered the broker. Reads as the
/// PUBLISH it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub publish: Publish,
    pub received: Instant,
}

impl std::ops::Deref for Outgoing {
    type Target = Publish;
    fn deref(&self) -> &Publish {
        &self.publish
    }
}

/// How one session receives one message: the fields that differ per subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Delivery {
    /// The message QoS downgraded to the subscription's.
    pub qos: QoS,
    /// The retain flag as sent: 0 for established subscriptions unless Retain As Published
    /// [MQTT-3.3.1-12], 1 for retained messages sent on subscribe [MQTT-3.3.1-8].
    pub retain: bool,
    /// Identifiers of every matching subscription that has one [MQTT-3.3.4-3].
    pub subscription_ids: Vec<NonZeroU32>,
    /// The shared subscription group this delivery was chosen for, so the message can go to
    /// another member if this session ends before acknowledging it.
    pub group: Option<TopicFilter>,
}

impl Message {
    /// The message a received PUBLISH carries (topic alias already resolved by the caller).
    pub fn from_publish(p: Publish, publisher: ClientId, now: Instant) -> Self {
        let expires_at = p
            .properties
            .message
            .message_expiry_interval
            .map(|s| now + std::time::Duration::from_secs(u64::from(s)));
        Self {
            topic: p.topic,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            properties: p.properties.message,
            publisher,
            expires_at,
            received: now,
        }
    }

    /// Whether the message expired by `now` [MQTT-3.3.2-5].
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// `to_publish`, with when the message entered the broker.
    pub fn outgoing(
        &self,
        delivery: &Delivery,
        packet_id: Option<PacketId>,
        dup: bool,
        now: Instant,
    ) -> Outgoing {
        Outgoing {
            publish: self.to_publish(delivery, packet_id, dup, now),
            received: self.received,
        }
    }

    /// The PUBLISH that delivers this message as `delivery` says, with the remaining expiry
    /// interval (rounded up, never 0 while not expired).
    pub fn to_publish(
        &self,
        delivery: &Delivery,
        packet_id: Option<PacketId>,
        dup: bool,
        now: Instant,
    ) -> Publish {
        let mut message = self.properties.clone();
        if let Some(t) = self.expires_at {
            let left = t.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            message.message_expiry_interval = Some(secs.clamp(1, u64::from(u32::MAX)) as u32);
        }
        Publish {
            dup,
            qos: delivery.qos,
            retain: delivery.retain,
            topic: self.topic.clone(),
            packet_id,
            payload: self.payload.clone(),
            properties: PublishProperties {
                topic_alias: None,
                subscription_identifiers: delivery.subscription_ids.clone(),
                message,
            },
        }
    }

    /// A copy whose payload and topic no longer share the read chunk they were decoded from, for
    /// messages that outlive the tick (retained, queued, wills): a small slice would otherwise
    /// keep a whole read buffer alive.
    pub fn detached(&self) -> Self {
        let text = |s: &MqttString| MqttString::copy_from(s.as_str()).unwrap_or_else(|_| s.clone());
        let p = &self.properties;
        Self {
            topic: TopicName::copy_from(self.topic.as_str()).unwrap_or_else(|_| self.topic.clone()),
            payload: Bytes::copy_from_slice(&self.payload),
            publisher: self.publisher.detached(),
            properties: MessageProperties {
                payload_format_indicator: p.payload_format_indicator,
                message_expiry_interval: p.message_expiry_interval,
                content_type: p.content_type.as_ref().map(text),
                response_topic: p
                    .response_topic
                    .as_ref()
                    .map(|t| TopicName::copy_from(t.as_str()).unwrap_or_else(|_| t.clone())),
                correlation_data: p.correlation_data.as_deref().map(Bytes::copy_from_slice),
                user_properties: p
                    .user_properties
                    .iter()
                    .map(|(k, v)| (text(k), text(v)))
                    .collect(),
            },
            ..self.clone()
        }
    }
}
