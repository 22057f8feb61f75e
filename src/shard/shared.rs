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

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::rc::Rc;
use std::time::Instant;

use super::barrier::Barrier;
use super::filtering::same_expression;
use super::Shard;
use crate::config::SharedStrategy;
use crate::filter::Filter;
use crate::mesh::{AckToken, MeshMsg, ShardId, ShardSet, SyncAck};
use crate::message::{Delivery, Message};
use crate::protocol::{ClientId, MqttString, SubscriptionOptions, TopicFilter};
use crate::session::Link;
use crate::topic::Trie;

/// This shard's members of one group.
#[derive(Debug)]
struct Group {
    /// `$share/{group}/{filter}` as subscribed.
    filter: TopicFilter,
    members: Vec<Member>,
    /// Where the next member search starts (round-robin).
    cursor: usize,
}

#[derive(Debug)]
struct Member {
    client_id: ClientId,
    options: SubscriptionOptions,
    id: Option<NonZeroU32>,
    /// The member's content filter: it is chosen only for messages that pass it.
    content: Option<Rc<Filter>>,
}

/// What other shards have members of a group: the group and those shards.
type RemoteGroups = Vec<(TopicFilter, ShardSet)>;

/// The shared subscription groups this shard knows.
#[derive(Default)]
pub(super) struct SharedGroups {
    /// Groups with members on this shard, by filter.
    local: Trie<Vec<Group>>,
    /// Groups with members on other shards, by filter.
    remote: Trie<RemoteGroups>,
    /// Per group, the shard rotation cursor of messages published here.
    cursor: HashMap<MqttString, usize>,
    /// Groups with members here (for the metrics).
    groups: usize,
}

impl SharedGroups {
    /// Groups with members on this shard.
    pub fn local_groups(&self) -> usize {
        self.groups
    }
}

impl SharedGroups {
    /// The shards known to have members of `group`, `me` included when it has some.
    fn shards_of(&self, group: &TopicFilter, me: ShardId) -> ShardSet {
        let mut set = ShardSet::EMPTY;
        if let Some(groups) = self.local.get(group.filter()) {
            if groups
                .iter()
                .any(|g| &g.filter == group && !g.members.is_empty())
            {
                set = set.union(ShardSet::of(me));
            }
        }
        if let Some(remote) = self.remote.get(group.filter()) {
            for (g, shards) in remote {
                if g == group {
                    set = set.union(*shards);
                }
            }
        }
        set
    }

    /// The groups whose filter matches `topic`, with the shards that have members.
    fn matching(&self, topic: &str, me: ShardId) -> Vec<(TopicFilter, ShardSet)> {
        let mut groups = Vec::new();
        let own = ShardSet::of(me);
        self.local.for_each_match(topic, |local: &Vec<Group>| {
            for g in local {
                merge(&mut groups, &g.filter, own);
            }
        });
        self.remote.for_each_match(topic, |remote: &RemoteGroups| {
            for (g, shards) in remote {
                merge(&mut groups, g, *shards);
            }
        });
        groups
    }
}

impl Shard {
    /// Adds a member on this shard; tells the other shards when it is the group's first member
    /// here. Returns the barrier to wait for before SUBACK.
    pub(super) fn add_shared_member(
        &self,
        filter: &TopicFilter,
        client_id: &ClientId,
        options: SubscriptionOptions,
        id: Option<NonZeroU32>,
        content: Option<Rc<Filter>>,
    ) -> Option<Barrier> {
        let first = {
            let mut guard = self.shared.borrow_mut();
            let shared = &mut *guard;
            let groups = shared.local.entry(filter.filter(), Vec::new);
            let pos = match groups.iter().position(|g| &g.filter == filter) {
                Some(p) => p,
                None => {
                    groups.push(Group {
                        filter: filter.clone(),
                        members: Vec::new(),
                        cursor: 0,
                    });
                    shared.groups += 1;
                    groups.len() - 1
                }
            };
            let group = &mut groups[pos];
            let expression = content.as_ref().map(|f| f.source());
            match group.members.iter_mut().find(|m| {
                &m.client_id == client_id && same_expression(m.content.as_ref(), expression)
            }) {
                Some(m) => {
                    m.options = options;
                    m.id = id;
                }
                None => group.members.push(Member {
                    client_id: client_id.clone(),
                    options,
                    id,
                    content,
                }),
            }
            group.members.len() == 1
        };
        if !first {
            return None;
        }
        self.export_shared(filter, true);
        let (token, barrier) = self.barrier_to_peers()?;
        self.broadcast_shared_interest(filter, true, Some(token));
        Some(barrier)
    }

    /// Removes a member; tells the other shards when the group has no member here any more.
    pub(super) fn remove_shared_member(
        &self,
        filter: &TopicFilter,
        client_id: &ClientId,
        expression: Option<&str>,
    ) {
        let mut emptied = false;
        self.shared
            .borrow_mut()
            .local
            .update_remove(filter.filter(), |groups| {
                if let Some(g) = groups.iter_mut().find(|g| &g.filter == filter) {
                    let before = g.members.len();
                    g.members.retain(|m| {
                        !(&m.client_id == client_id
                            && same_expression(m.content.as_ref(), expression))
                    });
                    emptied = before > 0 && g.members.is_empty();
                }
                groups.retain(|g| !g.members.is_empty());
                groups.is_empty()
            });
        if emptied {
            let mut shared = self.shared.borrow_mut();
            shared.groups = shared.groups.saturating_sub(1);
            drop(shared);
            self.export_shared(filter, false);
            self.broadcast_shared_interest(filter, false, None);
            self.forget_shared_cursor(filter);
        }
    }

    /// Drops a group's rotation cursor once no shard has members of it: the cursors are keyed by
    /// group, and a broker that sees many short-lived groups must not keep one (nor the read
    /// buffer its key is a slice of) for each.
    fn forget_shared_cursor(&self, group: &TopicFilter) {
        let mut shared = self.shared.borrow_mut();
        if shared.shards_of(group, self.id()).is_empty() {
            shared.cursor.remove(group.as_mqtt_str());
        }
    }

    fn broadcast_shared_interest(&self, filter: &TopicFilter, add: bool, ack: Option<AckToken>) {
        let from = self.id();
        self.mesh.broadcast(|| MeshMsg::SharedInterest {
            group: filter.clone(),
            from,
            add,
            ack,
        });
    }

    /// Another shard gained or lost its members of a group.
    pub(super) fn set_shared_interest(&self, group: TopicFilter, from: ShardId, add: bool) {
        let bit = ShardSet::of(from);
        {
            let mut shared = self.shared.borrow_mut();
            if add {
                let groups = shared.remote.entry(group.filter(), Vec::new);
                match groups.iter_mut().find(|(g, _)| g == &group) {
                    Some((_, shards)) => *shards = shards.union(bit),
                    None => groups.push((group.clone(), bit)),
                }
            } else {
                shared
                    .remote
                    .update_remove(group.filter(), |groups: &mut RemoteGroups| {
                        for (g, shards) in groups.iter_mut() {
                            if g == &group {
                                *shards = shards.without(bit);
                            }
                        }
                        groups.retain(|(_, shards)| !shards.is_empty());
                        groups.is_empty()
                    });
            }
        }
        if !add {
            self.forget_shared_cursor(&group);
        }
    }

    /// Routes `message` to every shared group whose filter matches it: one member each. With
    /// `sync`, each group's copy carries one part of that barrier to wherever it ends up.
    pub(super) fn route_shared(&self, message: &Message, sync: SyncAck) -> bool {
        let groups = {
            let shared = self.shared.borrow();
            // Most brokers have no shared subscriptions: skip the two trie walks.
            if shared.local.is_empty() && shared.remote.is_empty() {
                return false;
            }
            shared.matching(message.topic.as_str(), self.id())
        };
        let matched = !groups.is_empty();
        if let Some((_, token)) = sync {
            self.barriers.borrow_mut().expect(token, groups.len());
        }
        for (group, candidates) in groups {
            self.dispatch_shared(group, message.clone(), candidates, ShardSet::EMPTY, sync);
        }
        matched
    }

    /// Whether a shared group of this node (members on any shard) matches `topic`.
    pub(super) fn has_shared_group(&self, topic: &str) -> bool {
        let shared = self.shared.borrow();
        if shared.local.is_empty() && shared.remote.is_empty() {
            return false;
        }
        !shared.matching(topic, self.id()).is_empty()
    }

    /// Like `route_shared`, for one group only: the cluster chose this node for it.
    pub(super) fn route_shared_group(&self, group: &TopicFilter, message: &Message) {
        let chosen = {
            let shared = self.shared.borrow();
            shared
                .matching(message.topic.as_str(), self.id())
                .into_iter()
                .find(|(g, _)| g == group)
        };
        if let Some((group, candidates)) = chosen {
            self.dispatch_shared(group, message.clone(), candidates, ShardSet::EMPTY, None);
        }
    }

    /// Sends the message to one shard among `candidates` not yet `tried` (step 1 above).
    fn dispatch_shared(
        &self,
        group: TopicFilter,
        message: Message,
        candidates: ShardSet,
        tried: ShardSet,
        sync: SyncAck,
    ) {
        let open = candidates.without(tried);
        if open.is_empty() {
            // Every shard with members was tried and none could take it even queued (the group
            // emptied meanwhile): nobody is left to receive it.
            crate::log!(Debug, "shared {:?}: no member left", group.as_str());
            self.sync_done(sync);
            return;
        }
        let me = self.id();
        let chosen =
            if open.contains(me) && self.config.shared_strategy == SharedStrategy::LocalFirst {
                me
            } else {
                let mut shared = self.shared.borrow_mut();
                let cursor = shared
                    .cursor
                    .entry(group.as_mqtt_str().clone())
                    .or_insert(0);
                let pick = open.nth(*cursor % open.len()).unwrap_or(me);
                *cursor = cursor.wrapping_add(1);
                pick
            };
        // On this shard or another, the chosen shard's `on_shared_publish` takes it from here.
        if chosen != me {
            self.note_routed(ShardSet::of(chosen));
        }
        self.post(
            chosen,
            MeshMsg::SharedPublish {
                group,
                message,
                tried,
                sync,
            },
        );
    }

    /// This shard's part of a shared delivery's `sync` is over: nothing was stored here, or what
    /// was is on disk.
    fn sync_done(&self, sync: SyncAck) {
        if let Some((to, token)) = sync {
            self.ack_after_sync(to, token);
        }
    }

    /// A message for one member of `group` here (from this shard or another).
    pub(super) fn deliver_shared_here(
        &self,
        group: TopicFilter,
        message: Message,
        tried: ShardSet,
        sync: SyncAck,
        now: Instant,
    ) {
        let candidates = self.shared.borrow().shards_of(&group, self.id());
        self.deliver_shared_among(group, message, candidates, tried, sync, now);
    }

    /// Steps 2 and 3: a member here that can take it, else another shard, else queue here.
    fn deliver_shared_among(
        &self,
        group: TopicFilter,
        message: Message,
        candidates: ShardSet,
        tried: ShardSet,
        sync: SyncAck,
        now: Instant,
    ) {
        let tried = tried.union(ShardSet::of(self.id()));
        let last_resort = candidates.without(tried).is_empty();
        match self.pick_member(&group, &message, last_resort, now) {
            Some((client_id, delivery)) => {
                self.deliver_shared_to(&client_id, &message, delivery, now);
                self.sync_done(sync);
            }
            // No member here may read it, and every other shard was tried.
            None if last_resort => self.sync_done(sync),
            None => self.dispatch_shared(group, message, candidates, tried, sync),
        }
    }

    /// The member of `group` on this shard that gets `message`: the next in rotation that can
    /// take it now; as a last resort (every other shard tried) one that is online, else any that
    /// may read it, so that it queues rather than being lost. [ACL] members that may not read
    /// the topic are never chosen.
    fn pick_member(
        &self,
        group: &TopicFilter,
        message: &Message,
        last_resort: bool,
        now: Instant,
    ) -> Option<(ClientId, Delivery)> {
        let security = self.security();
        let clients = self.clients.borrow();
        let mut shared = self.shared.borrow_mut();
        let g = shared
            .local
            .get_mut(group.filter())
            .and_then(|gs| gs.iter_mut().find(|g| &g.filter == group))
            .filter(|g| !g.members.is_empty())?;
        let entry = |m: &Member| clients.sessions.get(&m.client_id);
        let subject = std::cell::OnceCell::new();
        // [ACL] first; then the member's content filter, if any.
        let readable = |m: &Member| {
            (!security.checks_deliveries()
                || entry(m).is_some_and(|e| {
                    security.can_receive(
                        m.client_id.as_str(),
                        e.session.username.as_deref(),
                        message.topic.as_str(),
                    )
                }))
                && m.content
                    .as_ref()
                    .is_none_or(|f| self.passes(f, message, &subject))
        };
        let able = |m: &Member| {
            let qos = message.qos.min(m.options.qos);
            readable(m)
                && entry(m).is_some_and(|e| e.link(now) == Link::Online && e.session.has_room(qos))
        };
        let online = |m: &Member| entry(m).is_some_and(|e| e.is_online());
        let n = g.members.len();
        let order = || (0..n).map(|k| (g.cursor + k) % n);
        let i = order().find(|&i| able(&g.members[i])).or_else(|| {
            last_resort
                .then(|| {
                    order()
                        .find(|&i| readable(&g.members[i]) && online(&g.members[i]))
                        .or_else(|| order().find(|&i| readable(&g.members[i])))
                })
                .flatten()
        })?;
        g.cursor = i + 1;
        let m = &g.members[i];
        let delivery = Delivery {
            qos: message.qos.min(m.options.qos),
            retain: m.options.retain_as_published && message.retain,
            subscription_ids: m.id.into_iter().collect(),
            group: Some(group.clone()),
        };
        let picked = (m.client_id.clone(), delivery);
        drop((shared, clients));
        if let Some(subject) = subject.get() {
            // Another group may test the same message next: one scan per shard.
            self.remember_scan(message, subject);
        }
        Some(picked)
    }

    /// Delivers a shared message to the member chosen for it.
    fn deliver_shared_to(
        &self,
        client_id: &ClientId,
        message: &Message,
        delivery: Delivery,
        now: Instant,
    ) {
        let mut guard = self.clients.borrow_mut();
        let clients = &mut *guard;
        let Some(entry) = clients.sessions.get_mut(client_id) else {
            return;
        };
        let link = entry.link(now);
        let sent = entry.session.deliver(message, delivery, link, now);
        self.keep(&mut entry.session);
        if let Some(p) = sent {
            if entry.parked.is_some() {
                self.unpark(entry, &mut clients.parking, &mut clients.conns);
            }
            if let Some(conn) = &entry.conn {
                self.send_delivery(conn, p);
            }
        }
    }

    /// Gives the shared messages an ending session still held back to their groups.
    pub(super) fn reroute_shared(&self, pending: Vec<(TopicFilter, Message)>) {
        for (group, message) in pending {
            let candidates = self.shared.borrow().shards_of(&group, self.id());
            self.dispatch_shared(group, message, candidates, ShardSet::EMPTY, None);
        }
    }
}

fn merge(groups: &mut Vec<(TopicFilter, ShardSet)>, group: &TopicFilter, shards: ShardSet) {
    match groups.iter_mut().find(|(g, _)| g == group) {
        Some((_, s)) => *s = s.union(shards),
        None => groups.push((group.clone(), shards)),
    }
}
