//! Topic names and topic filters, validated once when decoded or built.
//!
//! Worked example:
//! - `sport/tennis/player1` is a valid topic name and a valid filter.
//! - `sport/+/player1`, `sport/#`, `#`, `+`, `+/+` are valid filters but not topic names
//!   [MQTT-3.3.2-2].
//! - `sport/tennis#` and `sport/#/ranking` are invalid filters: `#` must be alone in the last level
//!   [MQTT-4.7.1-1]; `sport+` is invalid: `+` must be alone in its level [MQTT-4.7.1-2].
//! - `$share/group/sport/#` is a shared subscription: share name `group`, filter `sport/#`
//!   [MQTT-4.8.2-1]; `$share/group`, `$share//x` and `$share/g+/x` are invalid.
//!
//! The subscription trie (`crate::topic`, not part of the codec) builds on these types. Both are
//! `Bytes`-backed: a decoded topic is a slice of the frame, shared, never copied.

use std::fmt;

use bytes::Bytes;

use super::error::DecodeError;
use super::types::MqttString;

/// The prefix of a shared subscription filter.
pub const SHARE_PREFIX: &str = "$share/";

/// A topic name as carried by PUBLISH and wills: no wildcards. It is non-empty except in an MQTT 5
/// PUBLISH that uses a Topic Alias instead [MQTT-3.3.2-1..]; the broker resolves the alias.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TopicName(MqttString);

impl TopicName {
    /// Validates a non-empty topic name without wildcards.
    pub fn new(s: MqttString) -> Result<Self, DecodeError> {
        if s.is_empty() {
            return Err(DecodeError::EmptyTopicName);
        }
        Self::new_allow_empty(s)
    }

    /// Like `new`, but accepts the empty name (only meaningful with a Topic Alias).
    pub(crate) fn new_allow_empty(s: MqttString) -> Result<Self, DecodeError> {
        // [MQTT-3.3.2-2] the Topic Name MUST NOT contain wildcard characters.
        if s.as_bytes().iter().any(|&b| b == b'+' || b == b'#') {
            return Err(DecodeError::WildcardInTopicName);
        }
        Ok(Self(s))
    }

    /// Validates a copy of `s` (for names built by the broker or tests).
    pub fn copy_from(s: &str) -> Result<Self, DecodeError> {
        Self::new(MqttString::copy_from(s)?)
    }

    /// Validates a static name.
    pub fn from_static(s: &'static str) -> Result<Self, DecodeError> {
        Self::new(MqttString::from_static(s)?)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn as_mqtt_str(&self) -> &MqttString {
        &self.0
    }

    pub fn as_bytes(&self) -> &Bytes {
        self.0.as_bytes()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Topics starting with `$` are not matched by filters starting with a wildcard
    /// [MQTT-4.7.2-1].
    pub fn is_system(&self) -> bool {
        self.0.as_bytes().first() == Some(&b'$')
    }

    /// The `$SYS` tree, which only the broker publishes to.
    pub fn is_broker_owned(&self) -> bool {
        let b = self.0.as_bytes();
        b.starts_with(b"$SYS") && (b.len() == 4 || b[4] == b'/')
    }

    /// The `/`-separated levels.
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.as_str().split('/')
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A topic filter as carried by SUBSCRIBE / UNSUBSCRIBE, possibly a shared subscription.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicFilter {
    full: MqttString,
    /// Byte offset of the filter proper inside `full`: 0 for a plain filter, the index after
    /// `$share/{group}/` for a shared one. Kept so `share_name`/`filter` never re-parse.
    filter_start: u16,
}

impl TopicFilter {
    /// Validates a topic filter [MQTT-4.7.1-1] [MQTT-4.7.1-2] [MQTT-4.7.3-1] and, when it starts
    /// with `$share/`, the shared subscription syntax [MQTT-4.8.2-1] [MQTT-4.8.2-2].
    pub fn new(full: MqttString) -> Result<Self, DecodeError> {
        let s = full.as_str();
        let mut filter_start = 0;
        if let Some(rest) = s.strip_prefix(SHARE_PREFIX) {
            // [MQTT-4.8.2-1] a ShareName is at least one character, without '/', '+' or '#';
            // [MQTT-4.8.2-2] it is followed by '/' and a Topic Filter.
            let slash = rest
                .find('/')
                .ok_or(DecodeError::InvalidSharedSubscription)?;
            let name = &rest[..slash];
            if name.is_empty() || name.contains(['+', '#']) || slash + 1 == rest.len() {
                return Err(DecodeError::InvalidSharedSubscription);
            }
            filter_start = SHARE_PREFIX.len() + slash + 1;
        }
        validate_filter(&s[filter_start..])?;
        Ok(Self {
            full,
            // The string is at most 65535 bytes, so the offset fits.
            filter_start: filter_start as u16,
        })
    }

    /// Validates a copy of `s`.
    pub fn copy_from(s: &str) -> Result<Self, DecodeError> {
        Self::new(MqttString::copy_from(s)?)
    }

    /// Validates a static filter.
    pub fn from_static(s: &'static str) -> Result<Self, DecodeError> {
        Self::new(MqttString::from_static(s)?)
    }

    /// The whole filter as sent, including any `$share/{group}/` prefix.
    pub fn as_str(&self) -> &str {
        self.full.as_str()
    }

    pub fn as_mqtt_str(&self) -> &MqttString {
        &self.full
    }

    /// The share name of a shared subscription.
    pub fn share_name(&self) -> Option<&str> {
        let start = self.filter_start as usize;
        (start > 0).then(|| &self.full.as_str()[SHARE_PREFIX.len()..start - 1])
    }

    pub fn is_shared(&self) -> bool {
        self.filter_start > 0
    }

    /// The filter that topics are matched against (without the `$share/{group}/` prefix).
    pub fn filter(&self) -> &str {
        &self.full.as_str()[self.filter_start as usize..]
    }

    /// Whether the filter (without share prefix) contains `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        self.filter().contains(['+', '#'])
    }
}

/// [MQTT-4.7.3-1] non-empty; [MQTT-4.7.1-1] `#` alone in the last level; [MQTT-4.7.1-2] `+` alone
/// in its level.
fn validate_filter(f: &str) -> Result<(), DecodeError> {
    if f.is_empty() {
        return Err(DecodeError::EmptyTopicFilter);
    }
    let mut levels = f.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        if level.contains('#') && (level != "#" || !is_last) {
            return Err(DecodeError::MultiLevelWildcardMisplaced);
        }
        if level.contains('+') && level != "+" {
            return Err(DecodeError::SingleLevelWildcardMisplaced);
        }
    }
    Ok(())
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_4_7_1_filter_validation_table() {
        let cases: &[(&str, Result<(), DecodeError>)] = &[
            ("sport/tennis/player1", Ok(())),
            ("sport/#", Ok(())),
            ("#", Ok(())),
            ("+", Ok(())),
            ("+/+", Ok(())),
            ("/+", Ok(())),
            ("sport/+/player1", Ok(())),
            ("/", Ok(())),
            ("", Err(DecodeError::EmptyTopicFilter)),
            (
                "sport/tennis#",
                Err(DecodeError::MultiLevelWildcardMisplaced),
            ),
            (
                "sport/#/ranking",
                Err(DecodeError::MultiLevelWildcardMisplaced),
            ),
            ("##", Err(DecodeError::MultiLevelWildcardMisplaced)),
            ("sport+", Err(DecodeError::SingleLevelWildcardMisplaced)),
            (
                "sport/+tennis",
                Err(DecodeError::SingleLevelWildcardMisplaced),
            ),
            ("$share/g/a/#", Ok(())),
            ("$share/g/#", Ok(())),
            ("$share/g", Err(DecodeError::InvalidSharedSubscription)),
            ("$share/g/", Err(DecodeError::InvalidSharedSubscription)),
            ("$share//a", Err(DecodeError::InvalidSharedSubscription)),
            ("$share/g+/a", Err(DecodeError::InvalidSharedSubscription)),
            ("$share/g#/a", Err(DecodeError::InvalidSharedSubscription)),
            (
                "$share/g/a+",
                Err(DecodeError::SingleLevelWildcardMisplaced),
            ),
            ("$sharex/g/a", Ok(())),
        ];
        for (filter, want) in cases {
            let got = TopicFilter::copy_from(filter).map(|_| ());
            assert_eq!(&got, want, "filter {filter:?}");
        }
    }

    #[test]
    fn mqtt_4_8_2_shared_filter_parts() {
        let f = TopicFilter::copy_from("$share/grp/a/+/c").unwrap();
        assert!(f.is_shared());
        assert_eq!(f.share_name(), Some("grp"));
        assert_eq!(f.filter(), "a/+/c");
        assert!(f.has_wildcards());
        let plain = TopicFilter::copy_from("a/b").unwrap();
        assert_eq!(plain.share_name(), None);
        assert_eq!(plain.filter(), "a/b");
        assert!(!plain.has_wildcards());
    }

    #[test]
    fn mqtt_3_3_2_2_topic_names_reject_wildcards() {
        assert_eq!(
            TopicName::copy_from("a/+").unwrap_err(),
            DecodeError::WildcardInTopicName
        );
        assert_eq!(
            TopicName::copy_from("a/#").unwrap_err(),
            DecodeError::WildcardInTopicName
        );
        assert_eq!(
            TopicName::copy_from("").unwrap_err(),
            DecodeError::EmptyTopicName
        );
        let t = TopicName::copy_from("$SYS/x").unwrap();
        assert!(t.is_system());
        assert_eq!(t.levels().collect::<Vec<_>>(), ["$SYS", "x"]);
    }
}
