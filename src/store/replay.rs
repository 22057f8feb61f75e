//! From records to state and back: `Replay` applies a log's records in order and yields the
//! sessions (`session::Image`) and retained messages they describe; `snapshot` writes state as
//! the shortest list of records that rebuilds it (a compacted log).
//!
//! Worked example: `Session c`, `Subscribe c a/#`, `Entered c #1`, `Entered c #2`, `Done c #1`
//! replays to one session `c` subscribed to `a/#` keeping message #2; its snapshot is `Session c`,
//! `Subscribe c a/#`, `Entered c #2`. A `SessionEnd c` anywhere after them forgets all of it.
//!
//! Pure: records in, images out; time comes in as a `Clock`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::num::NonZeroU32;
use std::time::Duration;

use super::record::{encode, Clock, Record, Stored};
use crate::message::{Delivery, Message};
use crate::protocol::{ClientId, MqttString, PacketId, ProtocolVersion, SubscriptionOptions};
use crate::session::{Image, Kept};

/// One session's records so far.
#[derive(Default)]
struct Building {
    /// Version, user name, lifetime and wall-clock expiry (`None` until a `Session` record).
    meta: Option<Meta>,
    subscriptions: BTreeMap<String, (MqttString, SubscriptionOptions, Option<NonZeroU32>)>,
    messages: BTreeMap<u64, KeptStored>,
    inbound: BTreeSet<u16>,
    will: Option<(Stored, u32, u64)>,
}

/// A `Session` record's fields: version, user name, lifetime, wall-clock expiry.
type Meta = (
    ProtocolVersion,
    Option<MqttString>,
    Option<u32>,
    Option<u64>,
);

struct KeptStored {
    id: Option<PacketId>,
    released: bool,
    message: Stored,
    delivery: Delivery,
}

/// What a replay found, for the start-up log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub records: u64,
    pub sessions: u64,
    pub messages: u64,
    pub retained: u64,
    /// Sessions, messages and retained messages dropped because they expired meanwhile.
    pub expired: u64,
}

/// State rebuilt from records, applied in log order.
#[derive(Default)]
pub struct Replay {
    sessions: HashMap<ClientId, Building>,
    retained: BTreeMap<String, Stored>,
    records: u64,
}

impl Replay {
    pub fn apply(&mut self, record: Record) {
        self.records += 1;
        match record {
            Record::Header { .. } | Record::Closed => {}
            Record::Session {
                client,
                version,
                username,
                lifetime,
                expires_at,
            } => {
                let b = self.sessions.entry(client).or_default();
                b.meta = Some((version, username, lifetime, expires_at));
                b.will = None;
            }
            Record::SessionEnd { client } => {
                self.sessions.remove(&client);
            }
            Record::Subscribe {
                client,
                filter,
                options,
                id,
            } => {
                let b = self.sessions.entry(client).or_default();
                b.subscriptions
                    .insert(filter.as_str().to_owned(), (filter, options, id));
            }
            Record::Unsubscribe { client, filter } => {
                if let Some(b) = self.sessions.get_mut(&client) {
                    b.subscriptions.remove(filter.as_str());
                }
            }
            Record::Entered {
                client,
                seq,
                id,
                message,
                delivery,
            } => {
                let b = self.sessions.entry(client).or_default();
                b.messages.insert(
                    seq,
                    KeptStored {
                        id,
                        released: false,
                        message,
                        delivery,
                    },
                );
            }
            Record::Sent { client, seq, id } => {
                if let Some(m) = self.message(&client, seq) {
                    m.id = Some(id);
                }
            }
            Record::Released { client, seq } => {
                if let Some(m) = self.message(&client, seq) {
                    m.released = true;
                }
            }
            Record::Done { client, seq } => {
                if let Some(b) = self.sessions.get_mut(&client) {
                    b.messages.remove(&seq);
                }
            }
            Record::Inbound { client, id, add } => {
                let b = self.sessions.entry(client).or_default();
                if add {
                    b.inbound.insert(id.get());
                } else {
                    b.inbound.remove(&id.get());
                }
            }
            Record::Will { client, will } => {
                self.sessions.entry(client).or_default().will = will;
            }
            Record::Retain { message } => {
                let topic = message.topic.as_str().to_owned();
                if message.payload.is_empty() {
                    self.retained.remove(&topic);
                } else {
                    self.retained.insert(topic, message);
                }
            }
        }
    }

    fn message(&mut self, client: &ClientId, seq: u64) -> Option<&mut KeptStored> {
        self.sessions.get_mut(client)?.messages.get_mut(&seq)
    }

    /// The sessions and retained messages as of `clock`: expired ones left out, sessions that
    /// were online at the crash (no expiry time yet) counted as disconnected now.
    pub fn finish(self, clock: &Clock) -> (Vec<Image>, Vec<Message>, Found) {
        let now = clock.wall_ms();
        let mut found = Found {
            records: self.records,
            ..Found::default()
        };
        let mut images = Vec::with_capacity(self.sessions.len());
        for (client_id, b) in self.sessions {
            // Records of a session whose `Session` record was lost with a damaged tail.
            let Some((version, username, lifetime, expires_at)) = b.meta else {
                continue;
            };
            let expires_at = expires_at
                .or_else(|| lifetime.map(|secs| now.saturating_add(u64::from(secs) * 1000)));
            if expires_at.is_some_and(|t| t <= now) {
                found.expired += 1;
                continue;
            }
            let mut messages = Vec::with_capacity(b.messages.len());
            for (seq, k) in b.messages {
                if k.message.expires_at.is_some_and(|t| t <= now) && k.id.is_none() {
                    // Queued and expired: never sent. (In flight ones finish their flow.)
                    found.expired += 1;
                    continue;
                }
                messages.push(Kept {
                    seq,
                    id: k.id,
                    released: k.released,
                    message: clock.load(k.message),
                    delivery: k.delivery,
                });
            }
            // In flight first (in order), then queued, as a session keeps them.
            messages.sort_by_key(|k| (k.id.is_none(), k.seq));
            found.sessions += 1;
            found.messages += messages.len() as u64;
            images.push(Image {
                client_id,
                version,
                username,
                lifetime,
                expires_at: expires_at.map(|t| clock.to_instant(t)),
                subscriptions: b.subscriptions.into_values().collect(),
                messages,
                inbound: b.inbound.into_iter().filter_map(PacketId::new).collect(),
                will: b.will.map(|(m, delay, due)| {
                    (
                        clock.load(m),
                        Duration::from_secs(u64::from(delay)),
                        clock.to_instant(due),
                    )
                }),
            });
        }
        images.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        let mut retained = Vec::with_capacity(self.retained.len());
        for m in self.retained.into_values() {
            if m.expires_at.is_some_and(|t| t <= now) {
                found.expired += 1;
                continue;
            }
            retained.push(clock.load(m));
        }
        found.retained = retained.len() as u64;
        (images, retained, found)
    }
}

/// Appends the records that rebuild `image` to `out`.
pub fn snapshot_session(image: &Image, clock: &Clock, out: &mut Vec<u8>) {
    let client = &image.client_id;
    encode(
        &Record::Session {
            client: client.clone(),
            version: image.version,
            username: image.username.clone(),
            lifetime: image.lifetime,
            expires_at: image.expires_at.map(|t| clock.to_wall(t)),
        },
        out,
    );
    for (filter, options, id) in &image.subscriptions {
        encode(
            &Record::Subscribe {
                client: client.clone(),
                filter: filter.clone(),
                options: *options,
                id: *id,
            },
            out,
        );
    }
    for k in &image.messages {
        encode(
            &Record::Entered {
                client: client.clone(),
                seq: k.seq,
                id: k.id,
                message: clock.store(&k.message),
                delivery: k.delivery.clone(),
            },
            out,
        );
        if k.released {
            encode(
                &Record::Released {
                    client: client.clone(),
                    seq: k.seq,
                },
                out,
            );
        }
    }
    for id in &image.inbound {
        encode(
            &Record::Inbound {
                client: client.clone(),
                id: *id,
                add: true,
            },
            out,
        );
    }
    if let Some((m, delay, due)) = &image.will {
        encode(
            &Record::Will {
                client: client.clone(),
                will: Some((
                    clock.store(m),
                    u32::try_from(delay.as_secs()).unwrap_or(u32::MAX),
                    clock.to_wall(*due),
                )),
            },
            out,
        );
    }
}

/// Appends a retained message's record to `out`.
pub fn snapshot_retained(message: &Message, clock: &Clock, out: &mut Vec<u8>) {
    encode(
        &Record::Retain {
            message: clock.store(message),
        },
        out,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{QoS, TopicName};
    use crate::store::record::decode_all;
    use bytes::Bytes;

    fn stored(payload: &'static str, expires_at: Option<u64>) -> Stored {
        Stored {
            topic: TopicName::copy_from("a/b").unwrap(),
            payload: Bytes::from_static(payload.as_bytes()),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
            publisher: ClientId::copy_from("p").unwrap(),
            expires_at,
        }
    }

    fn c() -> ClientId {
        ClientId::copy_from("c").unwrap()
    }

    fn session(lifetime: Option<u32>, expires_at: Option<u64>) -> Record {
        Record::Session {
            client: c(),
            version: ProtocolVersion::V5,
            username: None,
            lifetime,
            expires_at,
        }
    }

    fn entered(seq: u64, payload: &'static str) -> Record {
        Record::Entered {
            client: c(),
            seq,
            id: None,
            message: stored(payload, None),
            delivery: Delivery {
                qos: QoS::AtLeastOnce,
                ..Delivery::default()
            },
        }
    }

    fn replay(records: Vec<Record>, clock: &Clock) -> (Vec<Image>, Vec<Message>, Found) {
        let mut r = Replay::default();
        for record in records {
            r.apply(record);
        }
        r.finish(clock)
    }

    #[test]
    fn the_worked_example_replays_and_snapshots_to_the_same_state() {
        let clock = Clock::now();
        let records = vec![
            session(None, None),
            Record::Subscribe {
                client: c(),
                filter: MqttString::copy_from("a/#").unwrap(),
                options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
                id: None,
            },
            entered(1, "one"),
            entered(2, "two"),
            Record::Done {
                client: c(),
                seq: 1,
            },
        ];
        let (images, _, found) = replay(records, &clock);
        assert_eq!(found.sessions, 1);
        assert_eq!(images[0].messages.len(), 1);
        assert_eq!(images[0].messages[0].seq, 2);
        assert_eq!(&images[0].messages[0].message.payload[..], b"two");
        let mut snap = Vec::new();
        snapshot_session(&images[0], &clock, &mut snap);
        let decoded = decode_all(&snap);
        assert_eq!(decoded.records.len(), 3, "Session, Subscribe, Entered #2");
        let (again, _, _) = replay(decoded.records, &clock);
        assert_eq!(again[0].messages, images[0].messages);
        assert_eq!(again[0].subscriptions, images[0].subscriptions);
    }

    #[test]
    fn a_session_end_forgets_everything_before_it() {
        let clock = Clock::now();
        let records = vec![
            session(None, None),
            entered(1, "x"),
            Record::SessionEnd { client: c() },
        ];
        let (images, _, _) = replay(records, &clock);
        assert!(images.is_empty());
    }

    #[test]
    fn sent_and_released_put_a_message_in_flight_at_its_stage() {
        let clock = Clock::now();
        let records = vec![
            session(None, None),
            entered(1, "x"),
            entered(2, "y"),
            Record::Sent {
                client: c(),
                seq: 1,
                id: PacketId::new(10).unwrap(),
            },
            Record::Released {
                client: c(),
                seq: 1,
            },
            Record::Inbound {
                client: c(),
                id: PacketId::new(4).unwrap(),
                add: true,
            },
        ];
        let (images, _, _) = replay(records, &clock);
        let m = &images[0].messages;
        assert_eq!(
            (m[0].seq, m[0].id, m[0].released),
            (1, PacketId::new(10), true)
        );
        assert_eq!((m[1].seq, m[1].id), (2, None));
        assert_eq!(images[0].inbound, vec![PacketId::new(4).unwrap()]);
    }

    #[test]
    fn expired_sessions_queued_messages_and_retained_are_left_out() {
        let clock = Clock::now();
        let past = clock.wall_ms() - 1;
        let future = clock.wall_ms() + 60_000;
        let mut expired_session = session(Some(10), Some(past));
        if let Record::Session { client, .. } = &mut expired_session {
            *client = ClientId::copy_from("gone").unwrap();
        }
        let records = vec![
            expired_session,
            session(Some(100), None),
            Record::Entered {
                client: c(),
                seq: 1,
                id: None,
                message: stored("old", Some(past)),
                delivery: Delivery::default(),
            },
            entered(2, "fresh"),
            Record::Retain {
                message: stored("r-old", Some(past)),
            },
            Record::Retain {
                message: Stored {
                    topic: TopicName::copy_from("r/2").unwrap(),
                    ..stored("r-new", Some(future))
                },
            },
        ];
        let (images, retained, found) = replay(records, &clock);
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].client_id, c());
        assert_eq!(images[0].messages.len(), 1);
        assert_eq!(retained.len(), 1);
        assert_eq!(&retained[0].payload[..], b"r-new");
        assert_eq!(found.expired, 3);
        // Online at the crash: it went offline at recovery, and expires a lifetime later.
        let left = images[0].expires_at.unwrap() - clock.now_instant();
        assert_eq!(left, Duration::from_secs(100));
    }

    #[test]
    fn an_empty_retained_payload_deletes_the_topic() {
        let clock = Clock::now();
        let records = vec![
            Record::Retain {
                message: stored("v", None),
            },
            Record::Retain {
                message: stored("", None),
            },
        ];
        let (_, retained, _) = replay(records, &clock);
        assert!(retained.is_empty());
    }
}
