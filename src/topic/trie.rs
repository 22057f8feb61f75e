//! A topic-filter trie: filters are inserted level by level, a topic is matched by walking its
//! levels once, following the exact child, the `+` child and any `#` value at each node.
//!
//! Worked example, filters `a/b`, `a/+`, `a/#`, `#`, `+/b` and topic `a/b`:
//! ```text
//! root ─ "a" ─ "b"  (value: a/b)
//!      │     ├ "+"  (value: a/+)
//!      │     └ #    (value on node "a": a/#, also matches topic "a" itself)
//!      ├ "+" ─ "b"  (value: +/b)
//!      └ #          (value on root: matches everything not starting with '$')
//! ```
//! Walking `a`,`b`: root's `#` matches; exact "a" → its `#` matches, then exact "b" matches and
//! "+" matches; root's "+" → "b" matches. All five filters match.
//! [MQTT-4.7.2-1]: at the root, a topic starting with `$` skips the `+` child and the `#` value.
//!
//! Generic over the value so one structure serves both the local subscriber table and the
//! replicated "which shards are interested" table. Shard-local: no locks.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

thread_local! {
    /// Per-thread random start value, so nobody can precompute colliding level names.
    static SEED: u64 = {
        use std::hash::BuildHasher;
        std::collections::hash_map::RandomState::new().hash_one(0u64) | 1
    };
}

/// Seeded FNV-1a for level names: short strings, hashed on every publish, where SipHash costs
/// a large share of the match time (see `benches/trie.rs`). The random seed keeps collisions
/// from being crafted offline.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(SEED.with(|s| *s))
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
}

type Children<V> = HashMap<Box<str>, Node<V>, BuildHasherDefault<Fnv>>;

/// Filter → `V`, matched against topic names.
#[derive(Debug)]
pub struct Trie<V> {
    root: Node<V>,
    len: usize,
}

/// One filter per connection is the common case of a large fleet (`devices/<id>/cmd`), so most
/// nodes are leaves with a value and nothing else, and a node is what every bucket of its
/// parent's map holds (a map keeps a third or more of its buckets free). Hence the layout: the
/// exact children and the rarer `+` child and `/#` value sit behind one pointer each (8 bytes
/// apiece while absent, instead of an empty map's 32 and two more slots).
#[derive(Debug)]
struct Node<V> {
    /// Children by exact level name; `None` while there are none.
    children: Option<Box<Children<V>>>,
    /// Value of the filter that ends here.
    value: Option<V>,
    /// The `+` child and the `/#` value; `None` while it has neither.
    wild: Option<Box<Wild<V>>>,
}

#[derive(Debug)]
struct Wild<V> {
    plus: Option<Node<V>>,
    /// Value of the filter that ends with `/#` here (or `#` at the root).
    hash: Option<V>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Self {
            children: None,
            value: None,
            wild: None,
        }
    }
}

impl<V> Node<V> {
    fn is_empty(&self) -> bool {
        self.children.is_none() && self.value.is_none() && self.wild.is_none()
    }

    fn child(&self, level: &str) -> Option<&Node<V>> {
        self.children.as_ref()?.get(level)
    }

    fn child_mut(&mut self, level: &str) -> Option<&mut Node<V>> {
        self.children.as_mut()?.get_mut(level)
    }

    fn plus(&self) -> Option<&Node<V>> {
        self.wild.as_ref()?.plus.as_ref()
    }

    fn plus_mut(&mut self) -> Option<&mut Node<V>> {
        self.wild.as_mut()?.plus.as_mut()
    }

    fn hash(&self) -> Option<&V> {
        self.wild.as_ref()?.hash.as_ref()
    }

    fn wild_mut(&mut self) -> &mut Wild<V> {
        self.wild.get_or_insert_with(|| {
            Box::new(Wild {
                plus: None,
                hash: None,
            })
        })
    }

    /// Drops the boxes that became empty (after a removal below this node).
    fn prune(&mut self) {
        if self.children.as_ref().is_some_and(|c| c.is_empty()) {
            self.children = None;
        }
        if self
            .wild
            .as_ref()
            .is_some_and(|w| w.plus.is_none() && w.hash.is_none())
        {
            self.wild = None;
        }
    }
}

impl<V> Default for Trie<V> {
    fn default() -> Self {
        Self {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<V> Trie<V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of filters holding a value.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value slot for `filter` (a validated filter, without `$share/` prefix), created with
    /// `make` if absent.
    pub fn entry(&mut self, filter: &str, make: impl FnOnce() -> V) -> &mut V {
        let (node, is_hash) = Self::walk_create(&mut self.root, filter);
        let slot = if is_hash {
            &mut node.wild_mut().hash
        } else {
            &mut node.value
        };
        if slot.is_none() {
            self.len += 1;
        }
        slot.get_or_insert_with(make)
    }

    fn walk_create<'a>(mut node: &'a mut Node<V>, filter: &str) -> (&'a mut Node<V>, bool) {
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                return (node, true);
            }
            node = if level == "+" {
                node.wild_mut().plus.get_or_insert_with(Default::default)
            } else {
                node.children
                    .get_or_insert_with(Default::default)
                    .entry(level.into())
                    .or_default()
            };
        }
        (node, false)
    }

    /// The value for `filter`, if present.
    pub fn get(&self, filter: &str) -> Option<&V> {
        let mut node = &self.root;
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                return node.hash();
            }
            node = if level == "+" {
                node.plus()?
            } else {
                node.child(level)?
            };
        }
        node.value.as_ref()
    }

    /// The value for `filter`, if present, mutably.
    pub fn get_mut(&mut self, filter: &str) -> Option<&mut V> {
        let mut node = &mut self.root;
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                return node.wild.as_mut()?.hash.as_mut();
            }
            node = if level == "+" {
                node.plus_mut()?
            } else {
                node.child_mut(level)?
            };
        }
        node.value.as_mut()
    }

    /// Applies `f` to the value of `filter`; removes it (pruning empty nodes) when `f` returns
    /// true. Returns whether a value was removed.
    pub fn update_remove(&mut self, filter: &str, f: impl FnOnce(&mut V) -> bool) -> bool {
        let levels: Vec<&str> = filter.split('/').collect();
        let removed = Self::remove_rec(&mut self.root, &levels, f);
        if removed {
            self.len -= 1;
        }
        removed
    }

    fn remove_rec(node: &mut Node<V>, levels: &[&str], f: impl FnOnce(&mut V) -> bool) -> bool {
        let Some((&level, rest)) = levels.split_first() else {
            return Self::take_if(&mut node.value, f);
        };
        let removed = if level == "#" && rest.is_empty() {
            let Some(wild) = node.wild.as_mut() else {
                return false;
            };
            Self::take_if(&mut wild.hash, f)
        } else if level == "+" {
            let Some(wild) = node.wild.as_mut() else {
                return false;
            };
            let Some(child) = wild.plus.as_mut() else {
                return false;
            };
            let removed = Self::remove_rec(child, rest, f);
            if child.is_empty() {
                wild.plus = None;
            }
            removed
        } else {
            let Some(children) = node.children.as_mut() else {
                return false;
            };
            let Some(child) = children.get_mut(level) else {
                return false;
            };
            let removed = Self::remove_rec(child, rest, f);
            if child.is_empty() {
                children.remove(level);
            }
            removed
        };
        node.prune();
        removed
    }

    fn take_if(slot: &mut Option<V>, f: impl FnOnce(&mut V) -> bool) -> bool {
        let remove = slot.as_mut().is_some_and(f);
        if remove {
            *slot = None;
        }
        remove
    }

    /// Calls `f` with the value of every filter matching `topic` (a validated topic name).
    pub fn for_each_match<'a>(&'a self, topic: &str, mut f: impl FnMut(&'a V)) {
        let system = topic.starts_with('$');
        let levels: smallvec_levels::Levels = smallvec_levels::Levels::new(topic);
        Self::match_rec(&self.root, levels.as_slice(), true, system, &mut f);
    }

    fn match_rec<'a>(
        node: &'a Node<V>,
        levels: &[&str],
        at_root: bool,
        system: bool,
        f: &mut impl FnMut(&'a V),
    ) {
        // [MQTT-4.7.2-1] wildcards at the first level do not match `$` topics.
        let wildcards = !(at_root && system);
        if wildcards {
            if let Some(v) = node.hash() {
                // `a/#` matches `a` and everything below it [MQTT-4.7.1-1 note].
                f(v);
            }
        }
        let Some((level, rest)) = levels.split_first() else {
            if let Some(v) = &node.value {
                f(v);
            }
            return;
        };
        if let Some(child) = node.child(level) {
            Self::match_rec(child, rest, false, system, f);
        }
        if wildcards {
            if let Some(child) = node.plus() {
                Self::match_rec(child, rest, false, system, f);
            }
        }
    }
}

/// Splits a topic into levels without allocating for typical depths.
mod smallvec_levels {
    pub struct Levels<'a> {
        inline: [&'a str; 16],
        len: usize,
        spill: Vec<&'a str>,
    }

    impl<'a> Levels<'a> {
        pub fn new(topic: &'a str) -> Self {
            let mut l = Levels {
                inline: [""; 16],
                len: 0,
                spill: Vec::new(),
            };
            for level in topic.split('/') {
                if l.len < 16 && l.spill.is_empty() {
                    l.inline[l.len] = level;
                    l.len += 1;
                } else {
                    if l.spill.is_empty() {
                        l.spill.extend_from_slice(&l.inline[..l.len]);
                    }
                    l.spill.push(level);
                }
            }
            l
        }

        pub fn as_slice(&self) -> &[&'a str] {
            if self.spill.is_empty() {
                &self.inline[..self.len]
            } else {
                &self.spill
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (filter, topic, matches?) — [MQTT-4.7.1-1] [MQTT-4.7.1-2] [MQTT-4.7.2-1] [MQTT-4.7.3-?].
    const TABLE: &[(&str, &str, bool)] = &[
        ("sport/tennis/player1", "sport/tennis/player1", true),
        ("sport/tennis/player1", "sport/tennis/player2", false),
        ("sport/tennis/player1/#", "sport/tennis/player1", true),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking",
            true,
        ),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon",
            true,
        ),
        ("sport/#", "sport", true),
        ("#", "sport/tennis", true),
        ("#", "/", true),
        ("sport/tennis/+", "sport/tennis/player1", true),
        ("sport/tennis/+", "sport/tennis/player1/tranking", false),
        ("sport/+", "sport", false),
        ("sport/+", "sport/", true),
        ("+/+", "/finance", true),
        ("/+", "/finance", true),
        ("+", "/finance", false),
        ("+", "finance", true),
        ("+/tennis/#", "sport/tennis", true),
        ("a//b", "a//b", true),
        ("a/+/b", "a//b", true),
        ("/", "/", true),
        ("#", "$SYS/broker", false),
        ("+/monitor/Clients", "$SYS/monitor/Clients", false),
        ("$SYS/#", "$SYS/monitor/Clients", true),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
        ("a/#", "b", false),
        ("A", "a", false),
    ];

    #[test]
    fn mqtt_4_7_matching_table() {
        for (filter, topic, want) in TABLE {
            let mut t = Trie::new();
            *t.entry(filter, || 0) += 1;
            let mut hits = 0;
            t.for_each_match(topic, |v| hits += *v);
            assert_eq!(hits == 1, *want, "filter {filter:?} topic {topic:?}");
        }
    }

    #[test]
    fn all_filters_in_one_trie_match_independently() {
        let mut t = Trie::new();
        for (i, (filter, _, _)) in TABLE.iter().enumerate() {
            t.entry(filter, Vec::new).push(i);
        }
        for (i, (_, topic, want)) in TABLE.iter().enumerate() {
            let mut got = Vec::new();
            t.for_each_match(topic, |v: &Vec<usize>| got.extend_from_slice(v));
            assert_eq!(got.contains(&i), *want, "case {i}");
        }
    }

    #[test]
    fn remove_prunes_and_counts() {
        let mut t: Trie<u32> = Trie::new();
        *t.entry("a/+/c", || 0) += 1;
        *t.entry("a/#", || 0) += 1;
        *t.entry("a/b/c", || 0) += 1;
        assert_eq!(t.len(), 3);
        assert_eq!(t.get_mut("a/+/c"), Some(&mut 1));
        assert!(!t.update_remove("a/+/x", |_| true));
        assert!(!t.update_remove("a/+/c", |_| false));
        assert!(t.update_remove("a/+/c", |_| true));
        assert!(t.update_remove("a/#", |_| true));
        assert_eq!(t.get_mut("a/+/c"), None);
        assert_eq!(t.len(), 1);
        assert!(t.update_remove("a/b/c", |_| true));
        assert!(t.is_empty());
        assert!(t.root.is_empty(), "empty nodes were pruned");
    }

    #[test]
    fn removal_drops_the_wildcard_and_children_boxes_it_emptied() {
        let mut t: Trie<u32> = Trie::new();
        *t.entry("a/b", || 0) += 1;
        *t.entry("a/+", || 0) += 1;
        *t.entry("a/#", || 0) += 1;
        *t.entry("a/c/d", || 0) += 1;
        let a = |t: &Trie<u32>| {
            t.root
                .child("a")
                .map(|n| (n.wild.is_some(), n.children.is_some()))
        };
        assert_eq!(a(&t), Some((true, true)));
        assert!(t.update_remove("a/+", |_| true));
        assert_eq!(
            a(&t),
            Some((true, true)),
            "the `/#` value still needs the box"
        );
        assert!(t.update_remove("a/#", |_| true));
        assert_eq!(a(&t), Some((false, true)));
        assert!(t.update_remove("a/c/d", |_| true));
        assert!(t.update_remove("a/b", |_| true));
        assert_eq!(a(&t), None, "node `a` itself went");
        assert!(t.root.children.is_none());
    }

    /// A leaf holding a subscriber list costs its key and this much in its parent's map: the
    /// layout above is what keeps it small (a plain map and two inline slots made it 88 bytes).
    #[test]
    fn a_node_is_two_pointers_and_its_value() {
        assert_eq!(std::mem::size_of::<Node<Vec<u64>>>(), 8 + 8 + 24);
        assert_eq!(std::mem::size_of::<Node<u64>>(), 8 + 8 + 16);
    }

    #[test]
    fn deep_topics_beyond_inline_levels() {
        let deep: Vec<String> = (0..40).map(|i| i.to_string()).collect();
        let topic = deep.join("/");
        let mut t = Trie::new();
        *t.entry(&topic, || 0) += 1;
        *t.entry("0/+/2/#", || 0) += 10;
        let mut hits = 0;
        t.for_each_match(&topic, |v| hits += *v);
        assert_eq!(hits, 11);
    }
}
