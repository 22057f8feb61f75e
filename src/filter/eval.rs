//! Evaluating a compiled filter against one message. A `Subject` is the message as filters see
//! it; what is costly to learn about it (whether the payload is UTF-8, whether it is JSON and the
//! values at the shard's registered paths) is learnt once, on first use, and shared by every filter
//! evaluated against the same `Subject`.
//!
//! Semantics: a condition reading something the message does not have (a missing JSON field, a
//! payload that is not JSON, an absent Content Type or User Property) is false, whatever the
//! operator — including `!=`; `!` of it is true. Values of different types are never equal and
//! never ordered. Numbers compare as f64, strings by bytes.

use std::cell::OnceCell;
use std::rc::Rc;

use super::json::{lookup, Found, JsonValue, Schema};
#[cfg(test)]
use super::parse::Glob;
use super::parse::{Cmp, Literal, Node, Operand};
use crate::protocol::UserProperty;

/// One message as filters see it.
pub struct Subject<'m> {
    pub topic: &'m str,
    pub qos: u8,
    pub retain: bool,
    pub payload: &'m [u8],
    pub content_type: Option<&'m str>,
    pub payload_format: Option<bool>,
    pub user_properties: &'m [UserProperty],
    schema: &'m Schema,
    /// The topic's levels, split once for every `topic[n]`.
    levels: OnceCell<Vec<&'m str>>,
    text: OnceCell<Option<&'m str>>,
    json: OnceCell<Option<Rc<Found<'m>>>>,
}

impl<'m> Subject<'m> {
    /// A message with no MQTT 5 properties; set the public fields for the rest.
    pub fn new(topic: &'m str, payload: &'m [u8], schema: &'m Schema) -> Self {
        Self {
            topic,
            qos: 0,
            retain: false,
            payload,
            content_type: None,
            payload_format: None,
            user_properties: &[],
            schema,
            levels: OnceCell::new(),
            text: OnceCell::new(),
            json: OnceCell::new(),
        }
    }

    fn level(&self, n: u32) -> Option<&'m str> {
        let levels = self.levels.get_or_init(|| self.topic.split('/').collect());
        levels.get(n as usize).copied()
    }

    /// The payload as text, if it is UTF-8.
    fn text(&self) -> Option<&'m str> {
        *self
            .text
            .get_or_init(|| std::str::from_utf8(self.payload).ok())
    }

    /// The registered paths' values, if the payload is JSON (scanned at most once).
    fn json(&self) -> Option<&[(u32, JsonValue<'m>)]> {
        self.json
            .get_or_init(|| {
                self.text()
                    .and_then(|t| self.schema.extract(t))
                    .map(Rc::new)
            })
            .as_deref()
            .map(Vec::as_slice)
    }

    /// Gives this subject the result of an earlier scan of the same payload with the same
    /// schema (see `Schema::version`), so it is not scanned again.
    pub fn seed(&self, scan: Option<Rc<Found<'m>>>) {
        let _ = self.json.set(scan);
    }

    /// What scanning found, if this subject's payload was scanned, as an owned copy that outlives
    /// the payload borrow (`None`: not scanned; `Some(None)`: not JSON).
    pub fn scan_result(&self) -> Option<Option<Rc<Found<'static>>>> {
        let scan = self.json.get()?;
        Some(scan.as_ref().map(|found| {
            Rc::new(
                found
                    .iter()
                    .map(|(id, v)| (*id, v.clone().into_owned()))
                    .collect(),
            )
        }))
    }

    fn kind(&self) -> &'static str {
        if self.json().is_some() {
            "json"
        } else if self.text().is_some() {
            "text"
        } else {
            "binary"
        }
    }
}

/// A value a condition compares.
#[derive(Debug, Clone, Copy)]
enum Val<'a> {
    Null,
    Bool(bool),
    Num(f64),
    Str(&'a str),
    Bytes(&'a [u8]),
    Composite,
}

impl<'a> Val<'a> {
    fn of_json(v: &'a JsonValue<'_>) -> Self {
        match v {
            JsonValue::Null => Val::Null,
            JsonValue::Bool(b) => Val::Bool(*b),
            JsonValue::Num(n) => Val::Num(*n),
            JsonValue::Str(s) => Val::Str(s),
            JsonValue::Composite => Val::Composite,
        }
    }

    fn of_literal(l: &'a Literal) -> Self {
        match l {
            Literal::Null => Val::Null,
            Literal::Bool(b) => Val::Bool(*b),
            Literal::Num(n) => Val::Num(*n),
            Literal::Str(s) => Val::Str(s),
        }
    }

    fn bytes(self) -> Option<&'a [u8]> {
        match self {
            Val::Str(s) => Some(s.as_bytes()),
            Val::Bytes(b) => Some(b),
            _ => None,
        }
    }

    fn equals(self, other: Val<'_>) -> bool {
        match (self, other) {
            (Val::Null, Val::Null) => true,
            (Val::Bool(a), Val::Bool(b)) => a == b,
            (Val::Num(a), Val::Num(b)) => a == b,
            (Val::Composite, _) | (_, Val::Composite) => false,
            (a, b) => match (a.bytes(), b.bytes()) {
                (Some(a), Some(b)) => a == b,
                _ => false,
            },
        }
    }

    fn order(self, other: Val<'_>) -> Option<std::cmp::Ordering> {
        match (self, other) {
            (Val::Num(a), Val::Num(b)) => a.partial_cmp(&b),
            (Val::Str(a), Val::Str(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
            _ => None,
        }
    }
}

/// Whether `node` holds for `s`.
pub(super) fn eval(node: &Node, s: &Subject<'_>) -> bool {
    match node {
        Node::Or(items) => items.iter().any(|n| eval(n, s)),
        Node::And(items) => items.iter().all(|n| eval(n, s)),
        Node::Not(inner) => !eval(inner, s),
        Node::Cmp(a, op, b) => {
            let (Some(a), Some(b)) = (value(a, s), value(b, s)) else {
                return false;
            };
            use std::cmp::Ordering::*;
            match op {
                Cmp::Eq => a.equals(b),
                Cmp::Ne => !a.equals(b),
                Cmp::Lt => a.order(b) == Some(Less),
                Cmp::Le => matches!(a.order(b), Some(Less | Equal)),
                Cmp::Gt => a.order(b) == Some(Greater),
                Cmp::Ge => matches!(a.order(b), Some(Greater | Equal)),
            }
        }
        Node::In(a, list) => {
            value(a, s).is_some_and(|a| list.iter().any(|l| a.equals(Val::of_literal(l))))
        }
        Node::Contains(a, needle) => value(a, s)
            .and_then(Val::bytes)
            .is_some_and(|hay| memchr::memmem::find(hay, needle.as_bytes()).is_some()),
        Node::Matches(a, glob) => match value(a, s) {
            Some(Val::Str(text)) => glob.matches(text.as_bytes()),
            _ => false,
        },
        Node::Exists(a) => value(a, s).is_some(),
        Node::Truthy(a) => matches!(value(a, s), Some(Val::Bool(true))),
    }
}

fn value<'a>(op: &'a Operand, s: &'a Subject<'_>) -> Option<Val<'a>> {
    Some(match op {
        Operand::Lit(l) => Val::of_literal(l),
        Operand::Topic => Val::Str(s.topic),
        Operand::TopicLevel(n) => Val::Str(s.level(*n)?),
        Operand::Qos => Val::Num(f64::from(s.qos)),
        Operand::Retain => Val::Bool(s.retain),
        Operand::Size => Val::Num(s.payload.len() as f64),
        Operand::Payload => match s.text() {
            Some(t) => Val::Str(t),
            None => Val::Bytes(s.payload),
        },
        Operand::ContentType => Val::Str(s.content_type?),
        Operand::Format => Val::Num(if s.payload_format == Some(true) {
            1.0
        } else {
            0.0
        }),
        Operand::Kind => Val::Str(s.kind()),
        Operand::User(name) => Val::Str(
            s.user_properties
                .iter()
                .find(|(k, _)| k.as_str() == &**name)
                .map(|(_, v)| v.as_str())?,
        ),
        Operand::Field(id) => Val::of_json(lookup(s.json()?, *id)?),
        // Resolved to `Field` when compiled.
        Operand::Json(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_cases() {
        for (p, t, want) in [
            ("application/*", "application/json", true),
            ("application/*", "text/plain", false),
            ("*", "", true),
            ("a*c", "abc", true),
            ("a*c", "ac", true),
            ("a*c", "ab", false),
            ("*json", "application/json", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("a*b*b", "ab", false),
            ("ab*ba", "aba", false),
            ("**", "x", true),
            ("", "", true),
            ("", "x", false),
            ("x", "x", true),
            ("é*", "éa", true),
        ] {
            assert_eq!(Glob::new(p).matches(t.as_bytes()), want, "{p:?} ~ {t:?}");
        }
    }

    /// Linear in the text whatever the pattern: a pattern that would make a backtracking
    /// matcher take ~10^9 steps on 1 MiB is one pass here (a regression guard, not a timing).
    #[test]
    fn glob_on_a_large_text_is_one_pass() {
        let text = vec![b'a'; 1 << 20];
        let pattern = format!("*{}b", "a".repeat(1000));
        assert!(!Glob::new(&pattern).matches(&text));
        let pattern = format!("*{}*{}", "a".repeat(500), "a".repeat(500));
        assert!(Glob::new(&pattern).matches(&text));
    }
}
