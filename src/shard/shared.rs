//! Shared subscriptions (`$share/{group}/{filter}`, MQTT 5 §4.8.2): every message matching a
//! group's filter goes to exactly one of the group's members, wherever they are.
//!
//! Members are spread over shards (each member lives on its client id's home shard). Every shard
//! knows, per group, its own members and which *other* shards have members (`SharedInterest`
//! messages, like the plain interest table, with a barrier so SUBACK means "the group will get
//! the next message").
//!
//! Distribution (`COREMQ_SHARED_STRATEGY`):
//! 1. The publisher's shard picks a shard among those with members: `round-robin` rotates over
//!    them per group; `local-first` keeps the message on the publisher's shard when that shard has
//!    a member that can take it (no cross-core hop), and rotates otherwise.
//! 2. That shard picks one of its members, rotating, skipping members that are offline or whose
//!    window (Receive Maximum / COREMQ_MAX_INFLIGHT) is full.
//! 3. If none of its members can take the message, it passes it to another shard with members that
//!    has not been tried; when every shard was tried, the message queues on a member (an online
//!    one if any) rather than being lost.
//!
//! A member whose session ends with shared messages unacknowledged or still queued hands them
//! back to the group (`Session::take_shared`), so another member gets them [MQTT-4.8.2-5].
//! Retained messages are never sent to shared subscriptions [MQTT-3.8.4-?/§4.8.2].

use std::num::NonZeroU32;
use std::time::Instant;

use super::barrier::Wait;
use super::Shard;
use crate::config::SharedStrategy;
use crate::mesh::{AckToken, MeshMsg, ShardId};
use crate::protocol::{MqttString, SubscriptionOptions, TopicFilter};
use crate::session::{Delivery, Link, Message};

/// This shard's members of one group.
#[derive(Debug)]
pub(super) struct Group {
    /// `$share/{group}/{filter}` as subscribed.
    filter: TopicFilter,
    members: Vec<Member>,
    /// Where the next member search starts (round-robin).
    cursor: usize,
}

#[derive(Debug)]
struct Member {
    client_id: MqttString,
    options: SubscriptionOptions,
    id: Option<NonZeroU32>,
}

/// What other shards have members of a group: the group and their shard bits.
pub(super) type RemoteGroups = Vec<(TopicFilter, u64)>;

impl Shard {
    /// Adds a member on this shard; tells the other shards when it is the group's first member
    /// here. Returns the barrier to wait for before SUBACK.
    pub(super) fn add_shared_member(
        &self,
        filter: &TopicFilter,
        client_id: &MqttString,
        options: SubscriptionOptions,
        id: Option<NonZeroU32>,
    ) -> Option<Wait> {
        let first = {
            let mut state = self.state.borrow_mut();
            let groups = state.shared.entry(filter.filter(), Vec::new);
            let pos = match groups.iter().position(|g| &g.filter == filter) {
                Some(p) => p,
                None => {
                    groups.push(Group {
                        filter: filter.clone(),
                        members: Vec::new(),
                        cursor: 0,
                    });
                    groups.len() - 1
                }
            };
            let group = &mut groups[pos];
            match group.members.iter_mut().find(|m| &m.client_id == client_id) {
                Some(m) => {
                    m.options = options;
                    m.id = id;
                }
                None => group.members.push(Member {
                    client_id: client_id.clone(),
                    options,
                    id,
                }),
            }
            group.members.len() == 1
        };
        if !first || self.mesh.count() == 1 {
            return None;
        }
        let (token, wait) = self.barriers.borrow_mut().open(self.mesh.count() - 1);
        self.broadcast_shared_interest(filter, true, Some(token));
        Some(wait)
    }

    /// Removes a member; tells the other shards when the group has no member here any more.
    pub(super) fn remove_shared_member(&self, filter: &TopicFilter, client_id: &MqttString) {
        let mut emptied = false;
        self.state
            .borrow_mut()
            .shared
            .update_remove(filter.filter(), |groups| {
                if let Some(g) = groups.iter_mut().find(|g| &g.filter == filter) {
                    let before = g.members.len();
                    g.members.retain(|m| &m.client_id != client_id);
                    emptied = before > 0 && g.members.is_empty();
                }
                groups.retain(|g| !g.members.is_empty());
                groups.is_empty()
            });
        if emptied {
            self.broadcast_shared_interest(filter, false, None);
            self.forget_shared_cursor(filter);
        }
    }

    /// Drops a group's rotation cursor once no shard has members of it: the cursors are keyed by
    /// group, and a broker that sees many short-lived groups must not keep one (nor the read
    /// buffer its key is a slice of) for each.
    fn forget_shared_cursor(&self, group: &TopicFilter) {
        if self.group_shards(group) == 0 {
            self.state
                .borrow_mut()
                .shared_cursor
                .remove(group.as_mqtt_str());
        }
    }

    fn broadcast_shared_interest(&self, filter: &TopicFilter, add: bool, ack: Option<AckToken>) {
        for peer in self.mesh.peers() {
            self.mesh.send(
                peer,
                MeshMsg::SharedInterest {
                    group: filter.clone(),
                    from: self.id(),
                    add,
                    ack,
                },
            );
        }
    }

    /// Another shard gained or lost its members of a group.
    pub(super) fn on_shared_interest(
        &self,
        group: TopicFilter,
        from: ShardId,
        add: bool,
        ack: Option<AckToken>,
    ) {
        let bit = 1u64 << from.0;
        {
            let mut state = self.state.borrow_mut();
            if add {
                let groups = state.shared_remote.entry(group.filter(), Vec::new);
                match groups.iter_mut().find(|(g, _)| g == &group) {
                    Some((_, bits)) => *bits |= bit,
                    None => groups.push((group.clone(), bit)),
                }
            } else {
                state
                    .shared_remote
                    .update_remove(group.filter(), |groups: &mut RemoteGroups| {
                        for (g, bits) in groups.iter_mut() {
                            if g == &group {
                                *bits &= !bit;
                            }
                        }
                        groups.retain(|(_, bits)| *bits != 0);
                        groups.is_empty()
                    });
            }
        }
        if !add {
            self.forget_shared_cursor(&group);
        }
        if let Some(token) = ack {
            self.ack_to(from, token);
        }
    }

    /// Routes `message` to every shared group whose filter matches it: one member each.
    pub(super) fn route_shared(&self, message: &Message, now: Instant) -> bool {
        let mut groups: Vec<(TopicFilter, u64)> = Vec::new();
        {
            let state = self.state.borrow();
            // Most brokers have no shared subscriptions: skip the two trie walks.
            if state.shared.is_empty() && state.shared_remote.is_empty() {
                return false;
            }
            let own = 1u64 << self.id().0;
            state
                .shared
                .for_each_match(message.topic.as_str(), |local: &Vec<Group>| {
                    for g in local {
                        merge(&mut groups, &g.filter, own);
                    }
                });
            state
                .shared_remote
                .for_each_match(message.topic.as_str(), |remote: &RemoteGroups| {
                    for (g, bits) in remote {
                        merge(&mut groups, g, *bits);
                    }
                });
        }
        let matched = !groups.is_empty();
        for (group, candidates) in groups {
            self.dispatch_shared(group, message.clone(), candidates, 0, now);
        }
        matched
    }

    /// The shards known to have members of `group`, this one included when it has some.
    fn group_shards(&self, group: &TopicFilter) -> u64 {
        let state = self.state.borrow();
        let mut bits = 0;
        if let Some(groups) = state.shared.get(group.filter()) {
            if groups
                .iter()
                .any(|g| &g.filter == group && !g.members.is_empty())
            {
                bits |= 1u64 << self.id().0;
            }
        }
        if let Some(remote) = state.shared_remote.get(group.filter()) {
            for (g, b) in remote {
                if g == group {
                    bits |= b;
                }
            }
        }
        bits
    }

    /// Sends the message to one shard among `candidates` not yet `tried` (step 1 above).
    fn dispatch_shared(
        &self,
        group: TopicFilter,
        message: Message,
        candidates: u64,
        tried: u64,
        now: Instant,
    ) {
        let own = 1u64 << self.id().0;
        let open = candidates & !tried;
        let chosen = if open == 0 {
            None
        } else if open & own != 0 && self.config.shared_strategy == SharedStrategy::LocalFirst {
            Some(self.id())
        } else {
            let mut state = self.state.borrow_mut();
            let cursor = state
                .shared_cursor
                .entry(group.as_mqtt_str().clone())
                .or_insert(0);
            let shards: Vec<usize> = (0..64).filter(|i| open & (1u64 << i) != 0).collect();
            let pick = shards[*cursor % shards.len()];
            *cursor = cursor.wrapping_add(1);
            Some(ShardId(pick))
        };
        match chosen {
            Some(shard) if shard == self.id() => {
                self.deliver_shared_here(group, message, candidates, tried, now)
            }
            Some(shard) => self.mesh.send(
                shard,
                MeshMsg::SharedPublish {
                    group,
                    message,
                    tried,
                },
            ),
            None => {
                // Every shard with members was tried and none could take it even queued (the
                // group emptied meanwhile): nobody is left to receive it.
                crate::log!(Debug, "shared {:?}: no member left", group.as_str());
            }
        }
    }

    /// A message for `group` arrived from another shard.
    pub(super) fn on_shared_publish(&self, group: TopicFilter, message: Message, tried: u64) {
        let candidates = self.group_shards(&group);
        self.deliver_shared_here(group, message, candidates, tried, Instant::now());
    }

    /// Steps 2 and 3: a member here that can take it, else another shard, else queue here.
    fn deliver_shared_here(
        &self,
        group: TopicFilter,
        message: Message,
        candidates: u64,
        tried: u64,
        now: Instant,
    ) {
        let tried = tried | (1u64 << self.id().0);
        let last_resort = candidates & !tried == 0;
        let mut guard = self.state.borrow_mut();
        let state = &mut *guard;
        let Some(g) = state
            .shared
            .get_mut(group.filter())
            .and_then(|gs| gs.iter_mut().find(|g| g.filter == group))
            .filter(|g| !g.members.is_empty())
        else {
            drop(guard);
            return self.dispatch_shared(group, message, candidates, tried, now);
        };
        let n = g.members.len();
        // [ACL] members that may not read the topic are never chosen.
        let security = self.security();
        let readable = |m: &Member| {
            !security.checks_deliveries()
                || state.sessions.get(&m.client_id).is_some_and(|e| {
                    security.can_receive(
                        m.client_id.as_str(),
                        e.username.as_deref(),
                        message.topic.as_str(),
                    )
                })
        };
        let able = |m: &Member| {
            let qos = message.qos.min(m.options.qos);
            readable(m)
                && state
                    .sessions
                    .get(&m.client_id)
                    .is_some_and(|e| e.link(now) == Link::Online && e.session.has_room(qos))
        };
        let online = |m: &Member| {
            state
                .sessions
                .get(&m.client_id)
                .is_some_and(|e| e.conn.is_some() || e.parked.is_some())
        };
        let start = g.cursor;
        let pick = (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| able(&g.members[i]))
            .or_else(|| {
                let order = || (0..n).map(|k| (start + k) % n);
                last_resort
                    .then(|| {
                        order()
                            .find(|&i| readable(&g.members[i]) && online(&g.members[i]))
                            .or_else(|| order().find(|&i| readable(&g.members[i])))
                    })
                    .flatten()
            });
        let Some(i) = pick else {
            drop(guard);
            if last_resort {
                // No member here may read it, and every other shard was tried.
                return;
            }
            return self.dispatch_shared(group, message, candidates, tried, now);
        };
        g.cursor = i + 1;
        let m = &g.members[i];
        let delivery = Delivery {
            qos: message.qos.min(m.options.qos),
            retain: m.options.retain_as_published && message.retain,
            subscription_ids: m.id.into_iter().collect(),
            group: Some(group.clone()),
        };
        if let Some(entry) = state.sessions.get_mut(&m.client_id) {
            if let Some(p) = entry
                .session
                .deliver(&message, delivery, entry.link(now), now)
            {
                if entry.parked.is_some() {
                    self.unpark(entry, &mut state.parking, &mut state.conns);
                }
                if let Some(conn) = &entry.conn {
                    conn.send_publish(p);
                }
            }
        }
    }

    /// Gives the shared messages an ending session still held back to their groups.
    pub(super) fn reroute_shared(&self, pending: Vec<(TopicFilter, Message)>) {
        let now = Instant::now();
        for (group, message) in pending {
            let candidates = self.group_shards(&group);
            self.dispatch_shared(group, message, candidates, 0, now);
        }
    }
}

fn merge(groups: &mut Vec<(TopicFilter, u64)>, group: &TopicFilter, bits: u64) {
    match groups.iter_mut().find(|(g, _)| g == group) {
        Some((_, b)) => *b |= bits,
        None => groups.push((group.clone(), bits)),
    }
}
