//! Routing a message (`route`): match this shard's trie and deliver to local sessions; match the
//! interest table (filter → the other shards with subscribers) and send the message once to each
//! interested shard, which matches its own trie. The payload `Bytes` is shared by every delivery.
//!
//! Interest table: when a shard's trie gains its first subscriber for a filter it tells every
//! other shard (`MeshMsg::Interest`, with a barrier so SUBACK waits until all know); when it loses
//! the last one it tells them again.

use std::cell::{Cell, OnceCell};
use std::num::NonZeroU32;
use std::rc::Rc;
use std::time::Instant;

use super::barrier::Barrier;
use super::filtering::same_expression;
use super::Shard;
use crate::auth::security::Security;
use crate::filter::Filter;
use crate::mesh::{AckToken, MeshMsg, ShardId, ShardSet};
use crate::message::{Delivery, Message};
use crate::protocol::{ClientId, MqttString, SubscriptionOptions};
use crate::session::Link;
use crate::topic::Trie;

/// A local subscriber of one filter.
#[derive(Debug, Clone)]
struct Subscriber {
    client_id: ClientId,
    /// Granted QoS and the MQTT 5 options (No Local, Retain As Published).
    options: SubscriptionOptions,
    /// The Subscription Identifier given with the SUBSCRIBE, if any.
    id: Option<NonZeroU32>,
    /// The content filter, if the subscription has one: the session gets only messages it
    /// passes. The same filter text with another expression is another subscriber entry.
    content: Option<Rc<Filter>>,
    /// The slot its session was last found in (`SessionTable::key_near`): a delivery checks
    /// that slot first instead of hashing the client id, once per subscriber per message.
    slot: Cell<u32>,
}

/// Who subscribes to what: this shard's subscribers and the other shards' interest.
#[derive(Default)]
pub(super) struct Routing {
    /// Filter (without share prefix) → this shard's subscribers.
    subs: Trie<Vec<Subscriber>>,
    /// Filter → the *other* shards with subscribers to it.
    interest: Trie<ShardSet>,
    /// Filters some node of the cluster wants (COREMQ_CLUSTER_NATS): a message goes to the
    /// cluster only when its topic matches one.
    nodes: Trie<()>,
    /// Whether the link to the cluster is (re)learning the other nodes' filters
    /// (`FromCluster::InterestKnown(false)`, sent when it connects to NATS): meanwhile every
    /// message goes to the cluster. Not before the first connection: with NATS not there,
    /// nothing would take them.
    nodes_learning: bool,
}

impl Routing {
    pub fn local_filters(&self) -> usize {
        self.subs.len()
    }

    pub fn remote_filters(&self) -> usize {
        self.interest.len()
    }

    /// Some node of the cluster wants `filter` (`true`), or none does any more.
    pub(super) fn set_node_interest(&mut self, filter: &str, wanted: bool) {
        if wanted {
            self.nodes.entry(filter, || ());
        } else {
            self.nodes.update_remove(filter, |_| true);
        }
    }

    /// The link to the cluster knows every node's filters (`true`), or is learning them again.
    pub(super) fn set_node_interest_known(&mut self, known: bool) {
        self.nodes_learning = !known;
    }

    /// Whether some node of the cluster wants (or, while their filters are being learned, may
    /// want) messages on `topic`.
    pub(super) fn wanted_by_nodes(&self, topic: &str) -> bool {
        if self.nodes_learning {
            return true;
        }
        if self.nodes.is_empty() {
            return false;
        }
        let mut wanted = false;
        self.nodes.for_each_match(topic, |_| wanted = true);
        wanted
    }

    /// Shard `from` gained (`add`) or lost its subscribers of `filter`.
    pub fn set_interest(&mut self, filter: &MqttString, from: ShardId, add: bool) {
        let bit = ShardSet::of(from);
        if add {
            let set = self.interest.entry(filter.as_str(), || ShardSet::EMPTY);
            *set = set.union(bit);
        } else {
            self.interest.update_remove(filter.as_str(), |set| {
                *set = set.without(bit);
                set.is_empty()
            });
        }
    }

    /// The other shards with subscribers matching `topic`.
    fn interested(&self, topic: &str) -> ShardSet {
        let mut shards = ShardSet::EMPTY;
        self.interest
            .for_each_match(topic, |set| shards = shards.union(*set));
        shards
    }
}

impl Shard {
    /// Delivers `message` to every matching subscriber, here and on other shards. `message.retain`
    /// is the publisher's flag; each subscriber sees it only with Retain As Published. Returns
    /// whether any subscription (here, or possibly on another shard) matched. With `sync` (a
    /// barrier of this shard, held open by its caller), every shard the message reaches acks it
    /// once what it stored of the message is on disk (see `persist.rs`).
    pub fn route(&self, message: &Message, now: Instant, sync: Option<AckToken>) -> bool {
        let local = self.deliver_local(message, now);
        let shards = self.routing.borrow().interested(message.topic.as_str());
        let sync = sync.map(|token| {
            self.barriers.borrow_mut().expect(token, shards.len());
            (self.id(), token)
        });
        self.note_routed(shards);
        self.mesh.send_to_set(shards, || MeshMsg::Publish {
            message: message.clone(),
            sync,
        });
        // In a cluster, NATS picks the member of a shared subscription (`on_cluster`).
        let shared = if self.shared_by_cluster(message.topic.as_str()) {
            false
        } else {
            self.route_shared(message, sync)
        };
        local > 0 || !shards.is_empty() || shared
    }

    /// Delivers to this shard's subscribers: once per session, at the highest QoS of its
    /// matching subscriptions, with the identifiers of all of them [MQTT-3.3.4-2]
    /// [MQTT-3.3.4-3]; never back to a No Local subscriber's own messages [MQTT-3.8.3-3].
    /// Returns the number of sessions it went to.
    pub(super) fn deliver_local(&self, message: &Message, now: Instant) -> usize {
        let routing = self.routing.borrow();
        let mut matches: Vec<&Subscriber> = Vec::new();
        // Built on the first filtered subscriber only: no cost when nobody filters.
        let subject = OnceCell::new();
        // Whether a client may be among the matches twice (and its subscriptions must be
        // merged into one delivery [MQTT-3.3.4-2]): only if more than one filter matched, or
        // one list holds content filters (a client's subscription to a filter is one entry,
        // one per expression with content filters; see `add_subscriber`).
        let (mut lists, mut filtered) = (0, false);
        routing
            .subs
            .for_each_match(message.topic.as_str(), |subs: &Vec<Subscriber>| {
                lists += 1;
                for s in subs {
                    if s.options.no_local && s.client_id == message.publisher {
                        continue;
                    }
                    if let Some(f) = &s.content {
                        filtered = true;
                        if !self.passes(f, message, &subject) {
                            continue;
                        }
                    }
                    matches.push(s);
                }
            });
        if let Some(subject) = subject.get() {
            self.remember_scan(message, subject);
        }
        if matches.len() > 1 && (lists > 1 || filtered) {
            matches.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        }
        let security = self.security();
        let mut delivered = 0;
        let mut rest = &matches[..];
        while let Some(first) = rest.first() {
            let n = rest
                .iter()
                .take_while(|s| s.client_id == first.client_id)
                .count();
            let (same, tail) = rest.split_at(n);
            rest = tail;
            let mut delivery = Delivery::default();
            for s in same {
                delivery.qos = delivery.qos.max(message.qos.min(s.options.qos));
                // [MQTT-3.3.1-12] Retain As Published keeps the publisher's flag.
                delivery.retain |= s.options.retain_as_published && message.retain;
                delivery.subscription_ids.extend(s.id);
            }
            if self.deliver_to(&security, first, message, delivery, now) {
                delivered += 1;
            }
        }
        delivered
    }

    /// Delivers `message` to one local session as `delivery` says, unless the ACL forbids the
    /// client to read the topic. Returns whether it went to the session (sent, queued or dropped
    /// by its limits).
    fn deliver_to(
        &self,
        security: &Security,
        subscriber: &Subscriber,
        message: &Message,
        delivery: Delivery,
        now: Instant,
    ) -> bool {
        let client_id = &subscriber.client_id;
        let mut guard = self.clients.borrow_mut();
        let clients = &mut *guard;
        let Some(key) = clients.sessions.key_near(client_id, subscriber.slot.get()) else {
            return false;
        };
        subscriber.slot.set(key);
        let Some(entry) = clients.sessions.by_key_mut(key) else {
            return false;
        };
        if security.checks_deliveries()
            && !security.can_receive(
                client_id.as_str(),
                entry.session.username.as_deref(),
                message.topic.as_str(),
            )
        {
            self.counters().denied_delivery();
            return false; // [ACL] this subscriber may not read this topic
        }
        let before = entry.session.drops;
        let link = entry.link(now);
        if link == Link::Congested {
            if let Some(conn) = &entry.conn {
                conn.note_held_back();
            }
        }
        let qos = delivery.qos;
        entry.session.set_stretch(Self::stretching(&entry.holds));
        let sent = entry.session.deliver(message, delivery, link, now);
        // Recorded before it goes out (see `persist.rs`).
        self.keep(&mut entry.session);
        if let Some(publish) = sent {
            if entry.parked.is_some() {
                self.unpark(entry, &mut clients.parking, &mut clients.conns);
            }
            if let Some(conn) = &entry.conn {
                self.send_delivery(conn, publish);
            }
        }
        self.note_pressure(
            &mut entry.holds,
            &entry.session,
            link,
            qos,
            &message.publisher,
            now,
        );
        if entry.session.drops != before {
            self.note_drop(client_id, &entry.session.drops, &before, now);
        }
        true
    }

    /// Publishes a message from a client or a will: updates the retained store when the retain
    /// flag is set [MQTT-3.3.1-5], then routes it. Returns whether any subscription matched, and
    /// with `wait` the barrier that its QoS 1/2 acknowledgement waits for: every shard applied
    /// the retained update, and, when acknowledgements wait for the disk (COREMQ_FSYNC always or
    /// batch), every shard the message reached has it on disk.
    pub(super) fn publish_message(
        &self,
        message: Message,
        wait: bool,
        now: Instant,
    ) -> (bool, Option<Barrier>) {
        self.export(&message);
        let stored = wait && self.acks_wait_for_sync();
        if !stored {
            let barrier = if message.retain {
                self.update_retained(message.detached(), wait.then_some(None))
            } else {
                None
            };
            return (self.route(&message, now, None), barrier);
        }
        // This shard's own part holds the barrier open while the others are counted in.
        let (token, barrier) = self.barriers.borrow_mut().open(1);
        if message.retain {
            self.update_retained(message.detached(), Some(Some(token)));
        }
        let matched = self.route(&message, now, Some(token));
        self.ack_after_sync(self.id(), token);
        (matched, Some(barrier))
    }

    /// Adds (or updates) a local subscriber; tells other shards when the filter is new here.
    /// Returns whether the subscription existed already (for Retain Handling 1) and the barrier
    /// to wait for before acknowledging.
    pub(super) fn add_subscriber(
        &self,
        filter: &MqttString,
        client_id: &ClientId,
        options: SubscriptionOptions,
        id: Option<NonZeroU32>,
        content: Option<Rc<Filter>>,
    ) -> (bool, Option<Barrier>) {
        let (existed, first) = {
            let mut routing = self.routing.borrow_mut();
            let subs = routing.subs.entry(filter.as_str(), Vec::new);
            let expression = content.as_ref().map(|f| f.source());
            match subs.iter_mut().find(|s| {
                &s.client_id == client_id && same_expression(s.content.as_ref(), expression)
            }) {
                Some(s) => {
                    // [MQTT-3.8.4-3] a repeated subscription replaces the old one.
                    s.options = options;
                    s.id = id;
                    (true, false)
                }
                None => {
                    // Most filters have one subscriber: room for exactly one (a first push
                    // would make room for four, ~170 bytes more per subscription); later
                    // pushes grow the usual way.
                    if subs.capacity() == 0 {
                        subs.reserve_exact(1);
                    }
                    subs.push(Subscriber {
                        client_id: client_id.clone(),
                        options,
                        id,
                        content,
                        slot: Cell::new(u32::MAX),
                    });
                    (false, subs.len() == 1)
                }
            }
        };
        if !first {
            return (existed, None);
        }
        self.export_interest(filter.as_str(), true);
        let Some((token, barrier)) = self.barrier_to_peers() else {
            return (existed, None);
        };
        self.broadcast_interest(filter, true, Some(token));
        (existed, Some(barrier))
    }

    /// Removes a local subscriber; tells other shards when it was the filter's last one here.
    pub(super) fn remove_subscriber(
        &self,
        filter: &MqttString,
        client_id: &ClientId,
        expression: Option<&str>,
    ) {
        let emptied = self
            .routing
            .borrow_mut()
            .subs
            .update_remove(filter.as_str(), |subs| {
                subs.retain(|s| {
                    !(&s.client_id == client_id && same_expression(s.content.as_ref(), expression))
                });
                subs.is_empty()
            });
        if emptied {
            self.export_interest(filter.as_str(), false);
            self.broadcast_interest(filter, false, None);
        }
    }

    fn broadcast_interest(&self, filter: &MqttString, add: bool, ack: Option<AckToken>) {
        let from = self.id();
        self.mesh.broadcast(|| MeshMsg::Interest {
            filter: filter.clone(),
            from,
            add,
            ack,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::Routing;

    /// While the link learns the other nodes' filters, every message may be wanted somewhere;
    /// then only those matching a wanted filter; a new NATS connection starts learning again.
    #[test]
    fn messages_go_to_the_cluster_while_its_filters_are_learned_then_only_where_wanted() {
        let mut r = Routing::default();
        assert!(!r.wanted_by_nodes("x/1"), "not connected yet: nothing goes");
        r.set_node_interest_known(false);
        assert!(r.wanted_by_nodes("x/1"), "learning: everything goes");
        r.set_node_interest_known(true);
        assert!(
            !r.wanted_by_nodes("x/1"),
            "known, and nobody wants anything"
        );
        r.set_node_interest("a/#", true);
        assert!(r.wanted_by_nodes("a/b"));
        assert!(!r.wanted_by_nodes("x/1"));
        r.set_node_interest_known(false);
        assert!(r.wanted_by_nodes("x/1"), "learning again after a reconnect");
        r.set_node_interest_known(true);
        r.set_node_interest("a/#", false);
        assert!(!r.wanted_by_nodes("a/b"));
    }
}
