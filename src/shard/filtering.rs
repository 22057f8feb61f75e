//! Content- and type-based filters on this shard (see `crate::filter`): a subscription's
//! expression is compiled here, on the subscriber's home shard, when it subscribes (or when its
//! durable session is restored), and evaluated here, after the trie match, for each message this
//! shard delivers. One `Schema` per shard collects the JSON paths its filters read, so each
//! message's payload is scanned at most once on this shard whatever the number of filters.
//!
//! A session keys a filtered subscription as `$filter/<expression>/<topic filter>` (the
//! expression in its canonical encoding, `filter::subscription_key`), whichever form the client
//! used; `Spec` takes such a key (or a SUBSCRIBE's filter and User Property) apart again.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::rc::Rc;

use super::Shard;
use bytes::Bytes;

use crate::filter::{self, Filter, FilterError, Found, Limits, Subject};
use crate::message::Message;
use crate::protocol::{MqttString, ReasonCode, TopicFilter, UserProperty};

/// A subscription taken apart.
pub(super) struct Spec {
    /// The topic filter proper (with its `$share/{group}/` prefix, if shared).
    pub topic: TopicFilter,
    /// The expression, decoded, if the subscription has one.
    pub expression: Option<String>,
    /// What the session stores it under.
    pub key: MqttString,
}

/// Why a subscription's filter was refused: the SUBACK reason code and the Reason String.
pub(super) type Refusal = (ReasonCode, String);

fn malformed(why: impl Into<String>) -> Refusal {
    (ReasonCode::TOPIC_FILTER_INVALID, why.into())
}

impl Spec {
    /// A SUBSCRIBE's (or UNSUBSCRIBE's) topic filter with the packet's `filter` User Property,
    /// if any; also a key the session stored (no property).
    pub fn parse(filter: &TopicFilter, property: Option<&str>) -> Result<Self, Refusal> {
        // `$share/{group}/$filter/{expression}/{filter}` is the same subscription as
        // `$filter/{expression}/$share/{group}/{filter}`.
        let prefixed = match filter.share_name() {
            Some(group) => filter::split_prefix(filter.filter())
                .map(|r| r.map(|(e, rest)| (e, Cow::Owned(format!("$share/{group}/{rest}"))))),
            None => filter::split_prefix(filter.as_str())
                .map(|r| r.map(|(e, rest)| (e, Cow::Borrowed(rest)))),
        };
        let (expression, topic) = match prefixed {
            None => match property {
                None => {
                    return Ok(Self {
                        topic: filter.clone(),
                        expression: None,
                        key: filter.as_mqtt_str().clone(),
                    })
                }
                Some(e) => (e.to_owned(), filter.clone()),
            },
            Some(_) if property.is_some() => {
                return Err(malformed(
                    "both a $filter/ prefix and a `filter` user property",
                ))
            }
            Some(Err(e)) => return Err(malformed(e.to_string())),
            Some(Ok((e, rest))) => {
                let topic = TopicFilter::copy_from(&rest)
                    .map_err(|_| malformed("invalid topic filter after the $filter/ prefix"))?;
                (e, topic)
            }
        };
        let key = filter::subscription_key(&expression, topic.as_str());
        let key = MqttString::copy_from(&key)
            .map_err(|_| malformed("filter expression and topic filter too long together"))?;
        Ok(Self {
            topic,
            expression: Some(expression),
            key,
        })
    }

    /// `parse` with what `property_expression` made of the packet's User Properties (an error
    /// there refuses every filter of the packet).
    pub fn parse_with(
        filter: &TopicFilter,
        property: &Result<Option<&str>, Refusal>,
    ) -> Result<Self, Refusal> {
        match property {
            Ok(p) => Self::parse(filter, *p),
            Err(e) => Err(e.clone()),
        }
    }

    /// A key the session stored (always valid: it was made by `parse`).
    pub fn of_key(key: &MqttString) -> Option<Self> {
        Self::parse(&TopicFilter::new(key.clone()).ok()?, None).ok()
    }
}

/// The `filter` User Property of a SUBSCRIBE or UNSUBSCRIBE: `Ok(None)` without one, an error
/// with more than one.
pub(super) fn property_expression(props: &[UserProperty]) -> Result<Option<&str>, Refusal> {
    let mut found = props
        .iter()
        .filter(|(k, _)| k.as_str() == filter::FILTER_PROPERTY)
        .map(|(_, v)| v.as_str());
    let first = found.next();
    if found.next().is_some() {
        return Err(malformed("more than one `filter` user property"));
    }
    Ok(first)
}

impl Shard {
    fn filter_limits(&self) -> Limits {
        Limits {
            max_length: self.config.filter_max_length,
            max_depth: self.config.filter_max_depth,
            max_cost: self.config.filter_max_cost,
        }
    }

    /// Compiles a subscription's expression for this shard: malformed → 0x8F, beyond the
    /// COREMQ_FILTER_MAX_* limits → 0x83, with the position and the problem.
    pub(super) fn compile_filter(&self, spec: &Spec) -> Result<Option<Rc<Filter>>, Refusal> {
        let Some(expression) = &spec.expression else {
            return Ok(None);
        };
        Filter::compile(expression, &self.filter_limits(), &self.schema)
            .map(|f| Some(Rc::new(f)))
            .map_err(|e: FilterError| {
                let code = if e.is_too_complex() {
                    ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR
                } else {
                    ReasonCode::TOPIC_FILTER_INVALID
                };
                (code, e.to_string())
            })
    }

    /// Whether `message` passes `filter`; `subject` is the message as filters see it, built by
    /// the first filter that needs it. Kept out of line: the unfiltered delivery loop around it
    /// stays as tight as before filters existed.
    #[inline(never)]
    pub(super) fn passes<'m>(
        &'m self,
        filter: &Filter,
        message: &'m Message,
        subject: &OnceCell<Subject<'m>>,
    ) -> bool {
        self.evaluate(filter, subject.get_or_init(|| self.subject(message)))
    }

    /// Evaluates `filter` on `subject`, counted in the metrics.
    pub(super) fn evaluate(&self, filter: &Filter, subject: &Subject<'_>) -> bool {
        let passed = filter.matches(subject);
        self.counters().filtered(passed);
        passed
    }

    /// `message` as this shard's filters see it; with the last scan's result when it was of the
    /// same payload (see `remember_scan`).
    pub(super) fn subject<'m>(&'m self, message: &'m Message) -> Subject<'m> {
        let mut s = Subject::new(message.topic.as_str(), &message.payload, &self.schema);
        s.qos = message.qos as u8;
        s.retain = message.retain;
        s.content_type = message.properties.content_type.as_ref().map(|c| c.as_str());
        s.payload_format = message.properties.payload_format_indicator;
        s.user_properties = &message.properties.user_properties;
        if let Some(last) = &*self.last_scan.borrow() {
            if last.is_of(&message.payload, self.schema.version()) {
                s.seed(last.found.clone());
            }
        }
        s
    }

    /// Keeps what `subject`'s scan found, if it scanned, for the shared groups this shard will
    /// choose members of for the same message (a step of its own, after the local deliveries):
    /// so the payload is scanned once per shard however many subscriptions and groups test it.
    /// Only when this shard has shared groups: nothing else asks again.
    pub(super) fn remember_scan(&self, message: &Message, subject: &Subject<'_>) {
        if self.shared.borrow().local_groups() == 0 {
            return;
        }
        if self
            .last_scan
            .borrow()
            .as_ref()
            .is_some_and(|last| last.is_of(&message.payload, self.schema.version()))
        {
            return;
        }
        if let Some(found) = subject.scan_result() {
            *self.last_scan.borrow_mut() = Some(LastScan {
                payload: message.payload.clone(),
                version: self.schema.version(),
                found,
            });
        }
    }
}

/// The last payload a shard scanned for its filters and what the scan found (`None`: not
/// JSON). Holds a reference to the payload, which is how it is recognised.
pub(super) struct LastScan {
    payload: Bytes,
    version: u64,
    found: Option<Rc<Found<'static>>>,
}

impl LastScan {
    fn is_of(&self, payload: &Bytes, version: u64) -> bool {
        self.version == version
            && self.payload.as_ptr() == payload.as_ptr()
            && self.payload.len() == payload.len()
    }
}

/// Whether two subscriptions' expressions are the same (so one replaces the other).
pub(super) fn same_expression(a: Option<&Rc<Filter>>, b: Option<&str>) -> bool {
    a.map(|f| f.source()) == b
}

impl Shard {
    /// Removes the subscription a session holds under `key` from the trie or its shared group.
    pub(super) fn detach_subscription(
        &self,
        key: &MqttString,
        client_id: &crate::protocol::ClientId,
    ) {
        let Some(spec) = Spec::of_key(key) else {
            return;
        };
        let expression = spec.expression.as_deref();
        if spec.topic.is_shared() {
            self.remove_shared_member(&spec.topic, client_id, expression);
        } else {
            self.remove_subscriber(spec.topic.as_mqtt_str(), client_id, expression);
        }
    }
}
