//! A session's subscriptions: filter (as sent, `$share/…` included) → options and subscription
//! identifier.
//!
//! Most clients of a large fleet hold one to a few subscriptions, and a session is kept per
//! client, so the small case sets the cost: a hash map holding one entry allocates four buckets
//! (about 180 bytes here) where a list holding one allocates one (48). So the filters sit in a
//! short list, searched in order, until there are more than `FEW`; then in a hash map, so a
//! client with thousands of subscriptions (up to COREMQ_MAX_SUBSCRIPTIONS) is not searched
//! linearly on every SUBSCRIBE.
//!
//! Worked example: subscribing `a`, `b`, `a` again keeps the list `[a, b]` with `a`'s options
//! replaced; a 17th distinct filter moves all of them into a map (and they stay there).

use std::collections::HashMap;
use std::num::NonZeroU32;

use crate::protocol::{MqttString, SubscriptionOptions};

/// What a session keeps per filter: the options granted and the Subscription Identifier.
pub type Granted = (SubscriptionOptions, Option<NonZeroU32>);

/// Most entries kept as a list.
const FEW: usize = 16;

#[derive(Debug, Default)]
pub struct Subscriptions(Repr);

#[derive(Debug)]
enum Repr {
    Few(Vec<(MqttString, Granted)>),
    /// Boxed so the list form (the common one) sets the size: 24 bytes, not an empty map's 48.
    #[allow(clippy::box_collection)]
    Many(Box<HashMap<MqttString, Granted>>),
}

impl Default for Repr {
    fn default() -> Self {
        Repr::Few(Vec::new())
    }
}

impl Subscriptions {
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Few(v) => v.len(),
            Repr::Many(m) => m.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, filter: &MqttString) -> Option<&Granted> {
        match &self.0 {
            Repr::Few(v) => v.iter().find(|(f, _)| f == filter).map(|(_, g)| g),
            Repr::Many(m) => m.get(filter),
        }
    }

    pub fn contains_key(&self, filter: &MqttString) -> bool {
        self.get(filter).is_some()
    }

    /// Adds or replaces the entry for `filter`; returns what it replaced.
    pub fn insert(&mut self, filter: MqttString, granted: Granted) -> Option<Granted> {
        match &mut self.0 {
            Repr::Few(v) => {
                if let Some((_, g)) = v.iter_mut().find(|(f, _)| *f == filter) {
                    return Some(std::mem::replace(g, granted));
                }
                if v.len() < FEW {
                    // Grow one step at a time from one: `push` would start at four.
                    if v.len() == v.capacity() {
                        v.reserve_exact(v.len().max(1));
                    }
                    v.push((filter, granted));
                } else {
                    let mut m: HashMap<_, _> = v.drain(..).collect();
                    m.insert(filter, granted);
                    self.0 = Repr::Many(Box::new(m));
                }
                None
            }
            Repr::Many(m) => m.insert(filter, granted),
        }
    }

    pub fn remove(&mut self, filter: &MqttString) -> Option<Granted> {
        match &mut self.0 {
            Repr::Few(v) => {
                let at = v.iter().position(|(f, _)| f == filter)?;
                let (_, g) = v.swap_remove(at);
                if v.is_empty() {
                    // An unsubscribed session keeps nothing.
                    *v = Vec::new();
                }
                Some(g)
            }
            Repr::Many(m) => m.remove(filter),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&MqttString, &Granted)> {
        let (few, many) = match &self.0 {
            Repr::Few(v) => (Some(v.iter().map(|(f, g)| (f, g))), None),
            Repr::Many(m) => (None, Some(m.iter())),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }
}

impl FromIterator<(MqttString, Granted)> for Subscriptions {
    fn from_iter<I: IntoIterator<Item = (MqttString, Granted)>>(iter: I) -> Self {
        let mut s = Subscriptions::default();
        for (f, g) in iter {
            s.insert(f, g);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::QoS;

    fn filter(i: usize) -> MqttString {
        MqttString::copy_from(&format!("f/{i}")).unwrap()
    }

    fn granted(qos: QoS, id: u32) -> Granted {
        (SubscriptionOptions::with_qos(qos), NonZeroU32::new(id))
    }

    #[test]
    fn insert_replaces_and_remove_takes_in_both_forms() {
        let mut s = Subscriptions::default();
        for n in [1, FEW, FEW + 1, 3 * FEW] {
            for i in 0..n {
                assert_eq!(s.insert(filter(i), granted(QoS::AtMostOnce, 0)), None);
            }
            assert_eq!(s.len(), n);
            // Re-subscribing replaces the options and identifier, never adds an entry.
            let old = s.insert(filter(0), granted(QoS::ExactlyOnce, 7));
            assert_eq!(old, Some(granted(QoS::AtMostOnce, 0)));
            assert_eq!(s.len(), n);
            assert_eq!(s.get(&filter(0)), Some(&granted(QoS::ExactlyOnce, 7)));
            assert!(s.contains_key(&filter(n - 1)));
            assert!(!s.contains_key(&filter(n)));
            let mut seen: Vec<String> = s.iter().map(|(f, _)| f.as_str().to_owned()).collect();
            seen.sort();
            let mut want: Vec<String> = (0..n).map(|i| format!("f/{i}")).collect();
            want.sort();
            assert_eq!(seen, want, "{n} filters");
            for i in 0..n {
                assert!(s.remove(&filter(i)).is_some());
                assert!(s.remove(&filter(i)).is_none());
            }
            assert!(s.is_empty());
        }
    }

    #[test]
    fn a_few_filters_are_a_list_sized_to_fit_and_many_a_map() {
        let mut s = Subscriptions::default();
        s.insert(filter(0), granted(QoS::AtLeastOnce, 0));
        match &s.0 {
            Repr::Few(v) => assert_eq!(v.capacity(), 1, "one subscription, one slot"),
            Repr::Many(_) => panic!("one filter went into a map"),
        }
        for i in 1..=FEW {
            s.insert(filter(i), granted(QoS::AtLeastOnce, 0));
        }
        assert!(
            matches!(s.0, Repr::Many(_)),
            "{} filters stayed a list",
            FEW + 1
        );
        let back: Subscriptions = s.iter().map(|(f, g)| (f.clone(), *g)).collect();
        assert_eq!(back.len(), FEW + 1);
    }
}
