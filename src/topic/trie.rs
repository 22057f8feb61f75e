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

#[derive(Debug)]
struct Node<V> {
    children: Children<V>,
    plus: Option<Box<Node<V>>>,
    /// Value of the filter that ends here.
    value: Option<V>,
    /// Value of the filter that ends with `/#` here (or `#` at the root).
    hash: Option<V>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Self {
            children: Children::default(),
            plus: None,
            value: None,
            hash: None,
        }
    }
}

impl<V> Node<V> {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.value.is_none()
            && self.hash.is_none()
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
            &mut node.hash
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
                node.plus.get_or_insert_with(Default::default)
            } else {
                node.children.entry(level.into()).or_default()
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
                return node.hash.as_ref();
            }
            node = if level == "+" {
                node.plus.as_deref()?
            } else {
                node.children.get(level)?
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
                return node.hash.as_mut();
            }
            node = if level == "+" {
                node.plus.as_deref_mut()?
            } else {
                node.children.get_mut(level)?
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
        if level == "#" && rest.is_empty() {
            return Self::take_if(&mut node.hash, f);
        }
        if level == "+" {
            let Some(child) = node.plus.as_deref_mut() else {
                return false;
            };
            let removed = Self::remove_rec(child, rest, f);
            if child.is_empty() {
                node.plus = None;
            }
            removed
        } else {
            let Some(child) = node.children.get_mut(level) else {
                return false;
            };
            let removed = Self::remove_rec(child, rest, f);
            if child.is_empty() {
                node.children.remove(level);
            }
            removed
        }
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
            if let Some(v) = &node.hash {
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
        if let Some(child) = node.children.get(*level) {
            Self::match_rec(child, rest, false, system, f);
        }
        if wildcards {
            if let Some(child) = node.plus.as_deref() {
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
