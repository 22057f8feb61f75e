//! MQTT topics and filters as NATS subjects, and as JetStream KV keys. Pure.
//!
//! A topic's levels become a subject's tokens under the prefix `cmq.t`: `a/b` is `cmq.t.a.b`.
//! NATS reserves `.` (the separator), `*` and `>` (wildcards) and whitespace, and has no empty
//! tokens, while an MQTT level may hold any of them or be empty. So each level is escaped:
//! bytes outside `A-Z a-z 0-9 _ -` become `%` and two upper-case hex digits (`%` itself too, so
//! the mapping is one-to-one), and an empty level is the token `%` alone. A filter's `+` becomes
//! `*`, and `#` becomes `>` — and since MQTT's `a/#` also matches `a` itself while NATS's `a.>`
//! does not, a filter ending in `/#` maps to two subjects (`cmq.t.a` and `cmq.t.a.>`).
//!
//! Topics starting with `$` (`$SYS/...`) are each node's own and never cross the cluster.
//!
//! KV keys allow fewer characters (`A-Z a-z 0-9 - _ / = .`): the same escaping with `=` as the
//! escape character, levels joined by `.`.

/// Prefix of every subject that carries application messages.
pub const TOPIC_PREFIX: &str = "cmq.t";

fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn escape_level(level: &str, escape: u8, out: &mut String) {
    if level.is_empty() {
        out.push(escape as char);
        return;
    }
    for &b in level.as_bytes() {
        if plain(b) {
            out.push(b as char);
        } else {
            out.push(escape as char);
            out.push_str(&format!("{b:02X}"));
        }
    }
}

fn unescape_level(token: &str, escape: u8) -> Option<String> {
    let bytes = token.as_bytes();
    if bytes == [escape] {
        return Some(String::new());
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == escape {
            let hex = token.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether a topic stays on its node (`$SYS/...` and every other `$` topic).
pub fn node_local(topic: &str) -> bool {
    topic.starts_with('$')
}

/// The subject a message on `topic` is published to.
pub fn topic_subject(topic: &str) -> String {
    let mut s = String::with_capacity(TOPIC_PREFIX.len() + topic.len() + 8);
    s.push_str(TOPIC_PREFIX);
    for level in topic.split('/') {
        s.push('.');
        escape_level(level, b'%', &mut s);
    }
    s
}

/// The topic a subject from `topic_subject` stands for (the tests' proof that the mapping is
/// one-to-one; nodes route by the topic carried inside the message).
#[cfg(test)]
pub fn subject_topic(subject: &str) -> Option<String> {
    let rest = subject.strip_prefix(TOPIC_PREFIX)?.strip_prefix('.')?;
    let levels: Option<Vec<String>> = rest.split('.').map(|t| unescape_level(t, b'%')).collect();
    Some(levels?.join("/"))
}

/// The subjects whose union matches exactly the topics `filter` matches (no `$share/` prefix).
pub fn filter_subjects(filter: &str) -> Vec<String> {
    let mut s = String::from(TOPIC_PREFIX);
    let mut parent = None;
    for level in filter.split('/') {
        match level {
            "#" => {
                // `a/#` matches `a` too; `#` alone matches every topic (each has a level).
                if s != TOPIC_PREFIX {
                    parent = Some(s.clone());
                }
                s.push_str(".>");
            }
            "+" => s.push_str(".*"),
            l => {
                s.push('.');
                escape_level(l, b'%', &mut s);
            }
        }
    }
    parent.into_iter().chain(std::iter::once(s)).collect()
}

/// A KV key for `text` (a client id, a topic): its `/`-separated parts escaped, joined by `.`.
pub fn kv_key(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 4);
    for (i, level) in text.split('/').enumerate() {
        if i > 0 {
            s.push('.');
        }
        escape_level(level, b'=', &mut s);
    }
    s
}

/// The text a key from `kv_key` stands for.
pub fn kv_text(key: &str) -> Option<String> {
    let levels: Option<Vec<String>> = key.split('.').map(|t| unescape_level(t, b'=')).collect();
    Some(levels?.join("/"))
}

/// A NATS queue group name for the MQTT shared subscription `$share/GROUP/FILTER`: the same for
/// the same group and filter on every node, different for different filters (NATS picks one
/// member among all queue subscribers of one name).
pub fn queue_group(group: &str, filter: &str) -> String {
    let mut s = String::from("cmq_");
    escape_level(group, b'%', &mut s);
    s.push('_');
    // FNV-1a of the filter: short, stable across nodes and builds.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in filter.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    s.push_str(&format!("{h:016x}"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip_through_subjects_whatever_their_levels_hold() {
        for topic in [
            "a/b/c",
            "a//b",
            "/",
            "",
            "sensor.1/temp*/>x",
            "with space/tab\t",
            "100%/é/ü",
            "a-b_c/D",
        ] {
            let subject = topic_subject(topic);
            assert!(
                subject.split('.').all(|t| !t.is_empty()
                    && t != "*"
                    && t != ">"
                    && !t.contains([' ', '\t', '*', '>'])),
                "{topic:?} -> {subject:?}"
            );
            assert_eq!(subject_topic(&subject).as_deref(), Some(topic), "{subject}");
        }
        assert_eq!(topic_subject("a/b"), "cmq.t.a.b");
        assert_eq!(topic_subject("a//b"), "cmq.t.a.%.b");
        assert_eq!(topic_subject("a.b/%"), "cmq.t.a%2Eb.%25");
    }

    #[test]
    fn filters_map_to_wildcard_subjects_with_the_parent_of_a_trailing_hash() {
        assert_eq!(filter_subjects("a/+/c"), vec!["cmq.t.a.*.c"]);
        assert_eq!(filter_subjects("a/#"), vec!["cmq.t.a", "cmq.t.a.>"]);
        assert_eq!(filter_subjects("#"), vec!["cmq.t.>"]);
        assert_eq!(filter_subjects("+"), vec!["cmq.t.*"]);
        assert_eq!(
            filter_subjects("a//+/#"),
            vec!["cmq.t.a.%.*", "cmq.t.a.%.*.>"]
        );
    }

    /// NATS's matching rules, for checking the mapping against MQTT's.
    fn nats_matches(pattern: &str, subject: &str) -> bool {
        let mut s = subject.split('.');
        for p in pattern.split('.') {
            match (p, s.next()) {
                (">", Some(_)) => return true,
                ("*", Some(_)) => {}
                (p, Some(t)) if p == t => {}
                _ => return false,
            }
        }
        s.next().is_none()
    }

    fn mqtt_matches(filter: &str, topic: &str) -> bool {
        let mut t = topic.split('/');
        for f in filter.split('/') {
            match (f, t.next()) {
                ("#", _) => return true,
                ("+", Some(_)) => {}
                (f, Some(l)) if f == l => {}
                _ => return false,
            }
        }
        t.next().is_none()
    }

    #[test]
    fn a_filter_matches_the_same_topics_as_its_subjects() {
        let topics = [
            "a", "a/b", "a/b/c", "a//c", "b", "a/b/c/d", "/", "/a", "a.b/c",
        ];
        let filters = [
            "a/#", "#", "+", "a/+", "a/+/c", "+/+", "/+", "a.b/#", "+/#", "a//c",
        ];
        for f in filters {
            let subjects = filter_subjects(f);
            for t in topics {
                let by_nats = subjects.iter().any(|s| nats_matches(s, &topic_subject(t)));
                assert_eq!(by_nats, mqtt_matches(f, t), "filter {f:?} topic {t:?}");
            }
        }
    }

    #[test]
    fn kv_keys_use_only_the_characters_nats_allows() {
        for text in ["client-1", "a b", "x/y", "é", "", "a.b=c"] {
            let key = kv_key(text);
            assert!(
                !key.is_empty()
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_/=.".contains(&b)),
                "{text:?} -> {key:?}"
            );
            assert_eq!(kv_text(&key).as_deref(), Some(text));
        }
    }

    #[test]
    fn queue_groups_differ_by_filter_and_agree_across_calls() {
        assert_eq!(queue_group("g", "a/#"), queue_group("g", "a/#"));
        assert_ne!(queue_group("g", "a/#"), queue_group("g", "b/#"));
        assert_ne!(queue_group("g", "a/#"), queue_group("h", "a/#"));
    }
}
