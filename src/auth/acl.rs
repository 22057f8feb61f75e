//! The ACL file (Mosquitto's `acl_file` syntax), compiled once into an [`Acl`] that answers, per
//! client and topic, whether it may publish, receive, or subscribe. Pure: parsing and checks,
//! no I/O beyond reading the file, no shard state; immutable, so every shard shares one
//! (a reload builds a new one).
//!
//! # Syntax
//! ```text
//! # comment (a line whose first non-blank character is '#')
//! topic [read|write|readwrite|deny] FILTER     rule for the current user section
//! user NAME                                    rules below are NAME's (until the next `user`)
//! pattern [read|write|readwrite|deny] FILTER   rule for every client, wherever it appears;
//!                                              %c is the client id, %u the username
//! ```
//! The access word is optional (`readwrite` when absent; as in Mosquitto, `topic read` alone is
//! the topic `read`). FILTER is the rest of the line, so it may contain spaces. Topic rules
//! before the first `user` line belong to anonymous clients (no username in CONNECT); a `user`
//! section that appears twice is one section. A client with a username that has no section gets
//! only the pattern rules.
//!
//! # Semantics (Mosquitto 2.0's `acl_check_default`)
//! A check of `topic` for reading (delivery to the client) or writing (its PUBLISH):
//! 1. the client's topic rules: a matching `deny` rule denies — deny rules count first,
//!    wherever they are in the section; otherwise a matching rule that grants the access
//!    allows;
//! 2. then, if the file has any pattern rules: a client id or username containing `+` or `#`
//!    is denied (it could widen a pattern into a wildcard); otherwise the same two steps over
//!    the pattern rules with `%c`/`%u` substituted (patterns with `%u` do not apply to
//!    anonymous clients);
//! 3. anything else is denied — including everything, when the file has no rules at all.
//!
//! A rule whose filter starts with a wildcard does not match `$` topics [MQTT-4.7.2-1].
//!
//! Stricter than Mosquitto 2.0, on purpose: a substituted `%c`/`%u` must match within one topic
//! level (a client id `a/b` cannot reach into client `a`'s `devices/%c/#` tree), and cannot
//! turn a pattern into a `$` topic (a client named `$SYS` does not get `$SYS/#` from `%c/#`).
//!
//! Subscriptions: Mosquitto 2.0 grants every SUBSCRIBE and filters each delivered message by
//! read access. coremq does the same per message but also classifies the filter when it is
//! subscribed ([`SubscribeAccess`]): `Denied` when no topic it matches is readable (SUBACK
//! 0x80 / 0x87), `Full` when every one is (deliveries need no per-message check), `Partial`
//! otherwise (each message is checked with [`Acl::can_receive`]). The classification is exact
//! except where only several rules together cover a filter; it then says `Partial`, which
//! delivers the same messages (see `shape`).
//!
//! # Worked example
//! ```text
//! # anonymous clients:
//! topic read public/#
//! user alice
//! topic readwrite alice/#
//! topic read sensors/+/temperature
//! # counts before alice/#, though written after it:
//! topic deny alice/secret/#
//! pattern write devices/%c/status
//! pattern read devices/%c/config/#
//! ```
//! (Comments take whole lines: `#` is also a filter character.) Alice connecting as client
//! `dev1`: publish `alice/x` — allowed (`alice/#`); publish
//! `alice/secret/k` — denied; publish `devices/dev1/status` — allowed by the pattern, but not
//! `devices/dev2/status`. Subscribe `alice/x/+` — Full; `alice/#` — Partial (all but
//! `alice/secret/…`); `sensors/#` — Partial (only `sensors/+/temperature`); `alice/secret/#` or
//! `$SYS/#` — Denied. An anonymous client `dev1`: subscribe `public/#` — Full, publish
//! `public/x` — denied (read only), publish `devices/dev1/status` — allowed (patterns apply to
//! everyone). Client `dev+`: every pattern rule denies it.
//!
//! Cost: topic rules are a [`Trie`] per user (one walk per check, like routing); pattern rules
//! are matched level by level against the topic with the substitutions in place, without
//! allocating. Subscribe classification allocates; it runs once per SUBSCRIBE.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use super::FileError;
use crate::topic::{TopicFilter, Trie};

mod shape;

const DENY: u8 = 1;
const READ: u8 = 2;
const WRITE: u8 = 4;

/// A rule's access word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Access {
    fn bits(self) -> u8 {
        match self {
            Access::Read => READ,
            Access::Write => WRITE,
            Access::ReadWrite => READ | WRITE,
            Access::Deny => DENY,
        }
    }
}

/// What a SUBSCRIBE filter may receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeAccess {
    /// No topic it matches is readable: refuse it (SUBACK 0x80, or 0x87 in MQTT 5).
    Denied,
    /// Every topic it matches is readable: deliver without further checks.
    Full,
    /// Some topics are readable: deliver only messages whose topic passes `can_receive`.
    Partial,
}

/// One `topic` rule as written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    access: Access,
    filter: String,
}

/// The topic rules of one user section (or of anonymous clients).
#[derive(Debug, Default)]
struct RuleSet {
    /// Filter → OR of the access bits of the rules on it.
    trie: Trie<u8>,
    /// In file order, for subscribe classification.
    rules: Vec<Rule>,
}

impl RuleSet {
    fn add(&mut self, access: Access, filter: &str) {
        *self.trie.entry(filter, || 0) |= access.bits();
        self.rules.push(Rule {
            access,
            filter: filter.to_string(),
        });
    }
}

/// One `pattern` rule, split into levels with the substitutions marked.
#[derive(Debug)]
struct Pattern {
    access: Access,
    /// As written, `%c`/`%u` included.
    text: String,
    levels: Vec<PatternLevel>,
}

#[derive(Debug)]
enum PatternLevel {
    Plus,
    Hash,
    Parts(Vec<Part>),
}

#[derive(Debug)]
enum Part {
    Lit(String),
    ClientId,
    Username,
}

impl Pattern {
    fn compile(access: Access, text: &str) -> Self {
        let levels = text
            .split('/')
            .map(|level| match level {
                "+" => PatternLevel::Plus,
                "#" => PatternLevel::Hash,
                _ => PatternLevel::Parts(parts(level)),
            })
            .collect();
        Pattern {
            access,
            text: text.to_string(),
            levels,
        }
    }

    /// Whether the pattern, substituted for this client, matches `topic`.
    fn matches(&self, topic: &str, client_id: &str, username: Option<&str>) -> bool {
        // Covers [MQTT-4.7.2-1] for a leading wildcard, and keeps a substitution from making a
        // `$` topic out of a pattern that does not start with `$`.
        if topic.starts_with('$') && !self.text.starts_with('$') {
            return false;
        }
        let mut topic_levels = topic.split('/');
        for level in &self.levels {
            match level {
                PatternLevel::Hash => return true,
                PatternLevel::Plus => {
                    if topic_levels.next().is_none() {
                        return false;
                    }
                }
                PatternLevel::Parts(parts) => match topic_levels.next() {
                    Some(t) if parts_match(parts, t, client_id, username) => {}
                    _ => return false,
                },
            }
        }
        topic_levels.next().is_none()
    }

    /// The pattern as a plain filter for this client, or `None` when it can match nothing for
    /// it (anonymous with `%u`; a substituted value with `/`; a `$` topic made by substitution).
    fn substitute(&self, client_id: &str, username: Option<&str>) -> Option<String> {
        let mut out = String::with_capacity(self.text.len() + client_id.len());
        for (n, level) in self.levels.iter().enumerate() {
            if n > 0 {
                out.push('/');
            }
            match level {
                PatternLevel::Plus => out.push('+'),
                PatternLevel::Hash => out.push('#'),
                PatternLevel::Parts(parts) => {
                    for part in parts {
                        let s = match part {
                            Part::Lit(s) => s.as_str(),
                            Part::ClientId => client_id,
                            Part::Username => username?,
                        };
                        if !matches!(part, Part::Lit(_)) && s.contains('/') {
                            return None;
                        }
                        out.push_str(s);
                    }
                }
            }
        }
        (!out.starts_with('$') || self.text.starts_with('$')).then_some(out)
    }
}

/// Splits one pattern level into literals and `%c`/`%u` (any other `%` is literal).
fn parts(level: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut chars = level.chars().peekable();
    while let Some(c) = chars.next() {
        let sub = match (c, chars.peek()) {
            ('%', Some('c')) => Part::ClientId,
            ('%', Some('u')) => Part::Username,
            _ => {
                lit.push(c);
                continue;
            }
        };
        chars.next();
        if !lit.is_empty() {
            parts.push(Part::Lit(std::mem::take(&mut lit)));
        }
        parts.push(sub);
    }
    if !lit.is_empty() || parts.is_empty() {
        parts.push(Part::Lit(lit));
    }
    parts
}

/// Whether topic level `t` is exactly the concatenation of `parts` for this client.
fn parts_match(parts: &[Part], t: &str, client_id: &str, username: Option<&str>) -> bool {
    let mut rest = t;
    for part in parts {
        let s = match part {
            Part::Lit(s) => s.as_str(),
            Part::ClientId => client_id,
            Part::Username => match username {
                Some(u) => u,
                None => return false,
            },
        };
        match rest.strip_prefix(s) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

/// A client id or username that pattern rules refuse outright (as Mosquitto does).
fn dangerous(s: &str) -> bool {
    s.contains(['+', '#'])
}

/// The compiled ACL file. Immutable; shared read-only by every shard (behind an `Arc`).
pub struct Acl {
    /// Topic rules before the first `user` line: for clients without a username.
    anonymous: RuleSet,
    users: HashMap<String, RuleSet>,
    /// Deny patterns first, then the others in file order (Mosquitto's order).
    patterns: Vec<Pattern>,
}

impl Acl {
    /// Reads and compiles `file`.
    pub fn load(file: &Path) -> Result<Self, FileError> {
        let text = std::fs::read_to_string(file).map_err(|e| FileError::io(file, &e))?;
        Self::parse(&text, file)
    }

    /// Compiles the file's text; `file` names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Self, FileError> {
        let mut acl = Acl {
            anonymous: RuleSet::default(),
            users: HashMap::new(),
            patterns: Vec::new(),
        };
        let mut user: Option<String> = None;
        let mut deny_patterns = 0;
        for (i, line) in text.lines().enumerate() {
            let err = |reason: String| FileError::at(file, i + 1, reason);
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (keyword, rest) = split_word(line);
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err(err("missing username after \"user\"".into()));
                    }
                    user = Some(rest.to_string());
                }
                "topic" | "pattern" => {
                    let (first, after) = split_word(rest);
                    let (access, filter) = match (first, after) {
                        ("", _) => {
                            return Err(err(format!("missing topic filter after {keyword:?}")))
                        }
                        (f, "") => (Access::ReadWrite, f),
                        (a, f) => (parse_access(a).map_err(&err)?, f),
                    };
                    validate_filter(filter).map_err(&err)?;
                    if keyword == "pattern" {
                        let p = Pattern::compile(access, filter);
                        if access == Access::Deny {
                            acl.patterns.insert(deny_patterns, p);
                            deny_patterns += 1;
                        } else {
                            acl.patterns.push(p);
                        }
                    } else {
                        let set = match &user {
                            None => &mut acl.anonymous,
                            Some(u) => acl.users.entry(u.clone()).or_default(),
                        };
                        set.add(access, filter);
                    }
                }
                other => {
                    return Err(err(format!(
                        "unknown keyword {other:?} (expected user, topic or pattern)"
                    )))
                }
            }
        }
        Ok(acl)
    }

    /// Whether the client may publish to `topic` (a valid topic name).
    pub fn can_publish(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        self.check(client_id, username, topic, WRITE)
    }

    /// Whether a message on `topic` may be delivered to the client.
    pub fn can_receive(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        self.check(client_id, username, topic, READ)
    }

    /// What a subscription to `filter` (validated, without any `$share/{group}/` prefix) may
    /// receive.
    pub fn subscribe_access(
        &self,
        client_id: &str,
        username: Option<&str>,
        filter: &str,
    ) -> SubscribeAccess {
        // The read decision as an ordered first-match list: (filter, allows?).
        let mut rules: Vec<(Cow<'_, str>, bool)> = Vec::new();
        if let Some(set) = self.rule_set(username) {
            let denies = set.rules.iter().filter(|r| r.access == Access::Deny);
            let reads = set.rules.iter().filter(|r| r.access.bits() & READ != 0);
            rules.extend(denies.map(|r| (Cow::from(r.filter.as_str()), false)));
            rules.extend(reads.map(|r| (Cow::from(r.filter.as_str()), true)));
        }
        if self.patterns_apply(client_id, username) {
            for p in &self.patterns {
                let allows = p.access.bits() & READ != 0;
                if p.access != Access::Deny && !allows {
                    continue;
                }
                if let Some(f) = p.substitute(client_id, username) {
                    rules.push((Cow::from(f), allows));
                }
            }
        }
        classify(filter, &rules)
    }

    fn rule_set(&self, username: Option<&str>) -> Option<&RuleSet> {
        match username {
            None => Some(&self.anonymous),
            Some(u) => self.users.get(u),
        }
    }

    /// Whether pattern rules are consulted for this client at all.
    fn patterns_apply(&self, client_id: &str, username: Option<&str>) -> bool {
        !self.patterns.is_empty() && !dangerous(client_id) && !username.is_some_and(dangerous)
    }

    fn check(&self, client_id: &str, username: Option<&str>, topic: &str, want: u8) -> bool {
        if let Some(set) = self.rule_set(username) {
            let mut bits = 0;
            set.trie.for_each_match(topic, |b| bits |= *b);
            if bits & DENY != 0 {
                return false;
            }
            if bits & want != 0 {
                return true;
            }
        }
        if !self.patterns_apply(client_id, username) {
            return false;
        }
        for p in &self.patterns {
            if p.matches(topic, client_id, username) {
                if p.access == Access::Deny {
                    return false;
                }
                if p.access.bits() & want != 0 {
                    return true;
                }
            }
        }
        false
    }
}

impl fmt::Debug for Acl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acl")
            .field("anonymous_rules", &self.anonymous.rules.len())
            .field("users", &self.users.len())
            .field("patterns", &self.patterns.len())
            .finish()
    }
}

/// Read access of `filter` under the first-match list `rules` (default: denied).
fn classify(filter: &str, rules: &[(Cow<'_, str>, bool)]) -> SubscribeAccess {
    // Full: an allow covers the filter and no deny before it touches the filter.
    let mut denied_before = false;
    for (rule, allows) in rules {
        if !allows {
            denied_before |= shape::intersect(rule, filter).is_some();
        } else if !denied_before && shape::covers(rule, filter) {
            return SubscribeAccess::Full;
        }
    }
    // Denied: whatever each allow shares with the filter, an earlier deny takes first.
    for (i, (rule, allows)) in rules.iter().enumerate() {
        if !allows {
            continue;
        }
        if let Some(common) = shape::intersect(rule, filter) {
            let shadowed = rules[..i]
                .iter()
                .any(|(d, allows)| !allows && shape::covers(d, &common));
            if !shadowed {
                return SubscribeAccess::Partial;
            }
        }
    }
    SubscribeAccess::Denied
}

fn parse_access(word: &str) -> Result<Access, String> {
    match word {
        "read" => Ok(Access::Read),
        "write" => Ok(Access::Write),
        "readwrite" => Ok(Access::ReadWrite),
        "deny" => Ok(Access::Deny),
        other => Err(format!(
            "invalid access {other:?} (expected read, write, readwrite or deny)"
        )),
    }
}

fn validate_filter(filter: &str) -> Result<(), String> {
    match TopicFilter::copy_from(filter) {
        Ok(f) if f.is_shared() => Err(format!(
            "invalid topic filter {filter:?}: rules take the filter without $share/GROUP/"
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("invalid topic filter {filter:?}: {e}")),
    }
}

/// The first blank-separated word and the rest, without the blanks between.
fn split_word(s: &str) -> (&str, &str) {
    match s.find(|c: char| c.is_ascii_whitespace()) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

#[cfg(test)]
mod tests;
