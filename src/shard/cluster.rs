//! What this shard tells the cluster (COREMQ_CLUSTER_NATS) and what it does with what comes
//! back. To the shard the cluster is one more place interest and messages come from, like
//! another shard: a message from another node is routed here as if published here, minus the
//! retained store (the cluster's retained messages arrive on their own) and minus going back out.

use std::time::Instant;

use crate::cluster::{subject, FromCluster, ShardLink, ToCluster};
use crate::message::Message;
use crate::protocol::{ClientId, Disconnect, MqttString, Packet, ReasonCode, TopicFilter};

use super::Shard;

impl Shard {
    /// Joins this shard to the cluster.
    pub fn set_cluster(&mut self, link: ShardLink) {
        self.cluster = Some(link);
    }

    /// The cluster link, when this node is in a cluster.
    pub fn cluster(&self) -> Option<&ShardLink> {
        self.cluster.as_ref()
    }

    /// Whether shared subscriptions on `topic` are served through the cluster (NATS queue
    /// groups pick one member cluster-wide) rather than by this node alone: when clustered and
    /// connected, for topics that cross nodes.
    pub(super) fn shared_by_cluster(&self, topic: &str) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.is_connected() && !subject::node_local(topic))
    }

    /// A message published on this node goes to the cluster too (and a retained one into its
    /// store of retained messages).
    pub(super) fn export(&self, message: &Message) {
        let Some(c) = &self.cluster else { return };
        if subject::node_local(message.topic.as_str()) {
            return;
        }
        if message.retain {
            c.send(ToCluster::Retain(message.detached()));
        }
        // Only where some node wants it (NATS would drop the rest, at a cost to both).
        // A shared group here counts too: NATS picks its member, maybe one on this node, even
        // before the node's own filter came back from the link thread.
        let topic = message.topic.as_str();
        if self.routing.borrow().wanted_by_nodes(topic) || self.has_shared_group(topic) {
            c.send(ToCluster::Publish(message.clone()));
        }
    }

    /// A filter is new on this shard (`add`), or gone from it.
    pub(super) fn export_interest(&self, filter: &str, add: bool) {
        let Some(c) = &self.cluster else { return };
        // Filters starting with `$` match only `$` topics, which stay on their node.
        if filter.starts_with('$') {
            return;
        }
        c.send(ToCluster::Interest {
            filter: filter.to_string(),
            add,
        });
    }

    /// A shared subscription is new on this shard (`add`), or gone from it.
    pub(super) fn export_shared(&self, group: &TopicFilter, add: bool) {
        let Some(c) = &self.cluster else { return };
        let (Some(name), filter) = (group.share_name(), group.filter()) else {
            return;
        };
        if filter.starts_with('$') {
            return;
        }
        c.send(ToCluster::Shared {
            group: name.to_string(),
            filter: filter.to_string(),
            add,
        });
    }

    /// A client connected here: the cluster's registry of client ids learns it.
    pub(super) fn export_connected(&self, client_id: &ClientId) {
        if let Some(c) = &self.cluster {
            c.send(ToCluster::Connected(client_id.clone()));
        }
    }

    /// Handles what the cluster sent this shard.
    pub fn on_cluster(&self, msg: FromCluster) {
        let now = Instant::now();
        match msg {
            FromCluster::Publish(m) => {
                if !m.is_expired(now) {
                    self.route(&m, now, None);
                }
            }
            FromCluster::Shared(group, m) => {
                if !m.is_expired(now) {
                    self.route_shared_group(&group, &m);
                }
            }
            FromCluster::Retained(m) => {
                self.update_retained(m, None);
            }
            FromCluster::TakenOver(id) => self.taken_over_elsewhere(&id),
            FromCluster::Interest(filter, wanted) => {
                self.routing.borrow_mut().set_node_interest(&filter, wanted);
            }
            FromCluster::InterestKnown(known) => {
                self.routing.borrow_mut().set_node_interest_known(known);
            }
        }
    }

    /// Another node took `client_id`: its connection here, if any, is told (MQTT 5: DISCONNECT
    /// 0x8E) and closed, as a takeover on this node would [MQTT-3.1.4-2]. Its session here ends
    /// or stays as its expiry says (sessions are node-local).
    fn taken_over_elsewhere(&self, client_id: &ClientId) {
        let mut guard = self.clients.borrow_mut();
        let clients = &mut *guard;
        let Some(entry) = clients.sessions.get_mut(client_id) else {
            return;
        };
        self.unpark(entry, &mut clients.parking, &mut clients.conns);
        let Some(conn) = entry.conn.as_ref() else {
            return;
        };
        if conn.terms().version.is_v5() {
            let mut d = Disconnect::new(ReasonCode::SESSION_TAKEN_OVER);
            d.properties.reason_string = MqttString::from_static(
                "[MQTT-3.1.4-2] the client id connected to another node of the cluster",
            )
            .ok();
            conn.send(&Packet::Disconnect(d));
        }
        conn.close();
    }
}
