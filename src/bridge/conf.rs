//! The bridge file (COREMQ_BRIDGE_FILE): the bridge blocks of a `mosquitto.conf`, in Mosquitto's
//! syntax, so that a Mosquitto user's bridge works as it is.
//!
//! ```text
//! connection to-cloud                 # starts a bridge; the options below belong to it
//! address 10.0.0.7:1883 10.0.0.8      # one or more host[:port] (default port 1883)
//! topic sensors/# out 1 site-a/ ""    # pattern, direction, QoS, local prefix, remote prefix
//! remote_username bridge-a
//! remote_password secret
//! ```
//!
//! Every line is either blank, a `#` comment, or an option this parser knows; anything else stops
//! start-up (or a reload) with the file, the line and the reason. Options Mosquitto has and
//! coremq does not implement are refused by name, never silently ignored.

use std::path::Path;
use std::time::Duration;

use crate::protocol::{ProtocolVersion, QoS, TopicFilter};

/// Which way a `topic` line forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Local publishes go to the remote broker.
    Out,
    /// Remote publishes come to this broker.
    In,
    Both,
}

impl Direction {
    pub fn outward(self) -> bool {
        matches!(self, Direction::Out | Direction::Both)
    }

    pub fn inward(self) -> bool {
        matches!(self, Direction::In | Direction::Both)
    }
}

/// One `topic` line: `topic PATTERN [DIRECTION [QOS [LOCAL_PREFIX REMOTE_PREFIX]]]`. A topic
/// `T` under the pattern is `LOCAL_PREFIX` + `T` here and `REMOTE_PREFIX` + `T` on the remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRule {
    /// May be empty when a prefix is the whole topic.
    pub pattern: String,
    pub direction: Direction,
    pub qos: QoS,
    pub local_prefix: String,
    pub remote_prefix: String,
}

impl TopicRule {
    /// The filter this rule subscribes to on the local broker.
    pub fn local_filter(&self) -> String {
        format!("{}{}", self.local_prefix, self.pattern)
    }

    /// The filter this rule subscribes to on the remote broker.
    pub fn remote_filter(&self) -> String {
        format!("{}{}", self.remote_prefix, self.pattern)
    }
}

/// TLS toward the remote broker (`bridge_cafile` and friends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeTls {
    /// PEM certificates the remote's chain must lead to.
    pub cafile: std::path::PathBuf,
    /// Client certificate and key, for a remote that asks for one.
    pub certfile: Option<std::path::PathBuf>,
    pub keyfile: Option<std::path::PathBuf>,
    /// `bridge_insecure true`: the certificate's host name is not checked (its chain still is).
    pub insecure: bool,
}

/// One `connection` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConf {
    pub name: String,
    /// Where the block started (for messages).
    pub line: usize,
    /// host:port, tried in order (`round_robin` rotates the start after each failure).
    pub addresses: Vec<(String, u16)>,
    pub round_robin: bool,
    pub topics: Vec<TopicRule>,
    pub remote_clientid: String,
    pub remote_username: Option<String>,
    pub remote_password: Option<String>,
    pub local_clientid: String,
    pub local_username: Option<String>,
    /// Clean session toward the remote broker (Mosquitto's default: false, so the remote keeps
    /// what arrives for us while the link is down).
    pub cleansession: bool,
    /// Clean session toward this broker; false (the default, as `cleansession`) keeps the
    /// local session — and the QoS 1/2 messages for the remote — while the remote is down.
    pub local_cleansession: bool,
    /// `local_cleansession` as given (otherwise it follows `cleansession`, wherever that is).
    local_cleansession_set: Option<bool>,
    pub protocol: ProtocolVersion,
    /// Mosquitto's bridge flag in CONNECT (protocol level | 0x80) for MQTT 3.1/3.1.1 remotes, so
    /// that a Mosquitto remote does not send back what came from us.
    pub try_private: bool,
    pub keepalive: Duration,
    /// Backoff between attempts: from `base`, doubling up to `cap` (equal: constant).
    pub restart_base: Duration,
    pub restart_cap: Duration,
    pub notifications: bool,
    pub notification_topic: String,
    /// `bridge_outgoing_retain false` clears the retain flag of what goes out.
    pub outgoing_retain: bool,
    pub tls: Option<BridgeTls>,
}

/// Why a bridge file was refused: file, line, reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeFileError {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for BridgeFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "COREMQ_BRIDGE_FILE {}: {}", self.file, self.reason)
        } else {
            write!(
                f,
                "COREMQ_BRIDGE_FILE {}:{}: {}",
                self.file, self.line, self.reason
            )
        }
    }
}

/// Reads and checks the bridge file.
pub fn read(path: &Path) -> Result<Vec<BridgeConf>, BridgeFileError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| BridgeFileError {
        file: file.clone(),
        line: 0,
        reason: format!("cannot read: {e}"),
    })?;
    parse(&text).map_err(|(line, reason)| BridgeFileError { file, line, reason })
}

/// Options Mosquitto has for bridges that coremq does not carry out.
const UNSUPPORTED: &[&str] = &[
    "bridge_attempt_unsubscribe",
    "bridge_bind_address",
    "bridge_capath",
    "bridge_identity",
    "bridge_psk",
    "bridge_require_ocsp",
    "bridge_alpn",
    "bridge_max_packet_size",
    "bridge_max_topic_alias",
    "bridge_receive_maximum",
    "bridge_session_expiry_interval",
    "idle_timeout",
    "threshold",
    "notifications_local_only",
];

/// Parses the file's text; `Err((line, reason))`.
pub fn parse(text: &str) -> Result<Vec<BridgeConf>, (usize, String)> {
    let mut bridges: Vec<BridgeConf> = Vec::new();
    // Options given in the current block (each at most once, `topic` and `address` aside).
    let mut seen: Vec<&str> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let words = split_words(trimmed).map_err(|r| (line, r))?;
        let (key, args) = words
            .split_first()
            .ok_or((line, "empty line".to_string()))?;
        let key = key.as_str();
        if key == "connection" {
            let [name] = args else {
                return Err((line, "connection takes one name".into()));
            };
            if name.is_empty() || bridges.iter().any(|b| &b.name == name) {
                return Err((
                    line,
                    format!("connection name {name:?} empty or used twice"),
                ));
            }
            check_finished(bridges.last_mut())?;
            bridges.push(new_bridge(name, line));
            seen.clear();
            continue;
        }
        let Some(b) = bridges.last_mut() else {
            return Err((
                line,
                format!(
                    "{key:?} before any `connection` line (this file holds bridge blocks only)"
                ),
            ));
        };
        if UNSUPPORTED.contains(&key) {
            return Err((line, format!("{key} is not supported by coremq")));
        }
        let repeatable = matches!(key, "topic" | "address" | "addresses");
        if !repeatable {
            let canonical = known_key(key).ok_or((line, format!("unknown option {key:?}")))?;
            if seen.contains(&canonical) {
                return Err((line, format!("{key} given twice in connection {}", b.name)));
            }
            seen.push(canonical);
        }
        apply(b, key, args).map_err(|r| (line, r))?;
    }
    check_finished(bridges.last_mut())?;
    Ok(bridges)
}

/// The option's name as a `'static` str, when it is one this parser knows (Mosquitto's older
/// aliases under the name they stand for, so an option and its alias count as one).
fn known_key(key: &str) -> Option<&'static str> {
    match key {
        "clientid" => return Some("remote_clientid"),
        "username" => return Some("remote_username"),
        "password" => return Some("remote_password"),
        _ => {}
    }
    const KEYS: &[&str] = &[
        "remote_clientid",
        "clientid",
        "remote_username",
        "username",
        "remote_password",
        "password",
        "local_clientid",
        "local_username",
        "local_password",
        "cleansession",
        "local_cleansession",
        "bridge_protocol_version",
        "try_private",
        "keepalive_interval",
        "restart_timeout",
        "round_robin",
        "notifications",
        "notification_topic",
        "bridge_outgoing_retain",
        "bridge_cafile",
        "bridge_certfile",
        "bridge_keyfile",
        "bridge_insecure",
        "bridge_tls_version",
        "start_type",
    ];
    KEYS.iter().copied().find(|k| *k == key)
}

fn new_bridge(name: &str, line: usize) -> BridgeConf {
    let host = hostname();
    BridgeConf {
        name: name.to_string(),
        line,
        addresses: Vec::new(),
        round_robin: false,
        topics: Vec::new(),
        // Mosquitto's defaults: "<hostname>.<connection>" and "local.<remote id>" (fixed below).
        remote_clientid: format!("{host}.{name}"),
        remote_username: None,
        remote_password: None,
        local_clientid: String::new(),
        local_username: None,
        cleansession: false,
        local_cleansession: false,
        local_cleansession_set: None,
        protocol: ProtocolVersion::V3_1_1,
        try_private: true,
        keepalive: Duration::from_secs(60),
        restart_base: Duration::from_secs(5),
        restart_cap: Duration::from_secs(30),
        notifications: true,
        notification_topic: String::new(),
        outgoing_retain: true,
        tls: None,
    }
}

/// The checks a block can only make once it is complete, and the defaults that depend on
/// other options.
fn check_finished(b: Option<&mut BridgeConf>) -> Result<(), (usize, String)> {
    let Some(b) = b else { return Ok(()) };
    if b.local_clientid.is_empty() {
        b.local_clientid = format!("local.{}", b.remote_clientid);
    }
    b.local_cleansession = b.local_cleansession_set.unwrap_or(b.cleansession);
    if b.notification_topic.is_empty() {
        b.notification_topic = format!("$SYS/broker/connection/{}/state", b.remote_clientid);
    }
    let fail = |r: String| Err((b.line, r));
    let topic = crate::protocol::MqttString::copy_from(&b.notification_topic)
        .and_then(crate::protocol::TopicName::new);
    if b.notifications && topic.is_err() {
        return fail(format!(
            "connection {}: the notification topic {:?} is not a topic name (set \
             notification_topic, or notifications false)",
            b.name, b.notification_topic
        ));
    }
    if b.addresses.is_empty() {
        return fail(format!("connection {} has no address", b.name));
    }
    if b.topics.is_empty() {
        return fail(format!("connection {} has no topic", b.name));
    }
    if let Some(t) = &b.tls {
        if t.cafile.as_os_str().is_empty() {
            return fail(format!(
                "connection {}: TLS options need bridge_cafile",
                b.name
            ));
        }
        if t.certfile.is_some() != t.keyfile.is_some() {
            return fail(format!(
                "connection {}: bridge_certfile and bridge_keyfile go together",
                b.name
            ));
        }
    }
    if b.remote_password.is_some() && b.remote_username.is_none() {
        return fail(format!(
            "connection {}: remote_password needs remote_username",
            b.name
        ));
    }
    Ok(())
}

fn apply(b: &mut BridgeConf, key: &str, args: &[String]) -> Result<(), String> {
    let one = || match args {
        [v] => Ok(v.as_str()),
        _ => Err(format!("{key} takes one value")),
    };
    match key {
        "address" | "addresses" => {
            if args.is_empty() {
                return Err(format!("{key} takes host[:port] values"));
            }
            for a in args {
                b.addresses.push(parse_address(a)?);
            }
        }
        "topic" => b.topics.push(parse_topic(args)?),
        "remote_clientid" | "clientid" => {
            b.remote_clientid = client_id(one()?)?;
        }
        "local_clientid" => b.local_clientid = client_id(one()?)?,
        "remote_username" | "username" => b.remote_username = Some(one()?.to_string()),
        "remote_password" | "password" => b.remote_password = Some(one()?.to_string()),
        "local_username" => b.local_username = Some(one()?.to_string()),
        // The local connection is in-process and trusted: no password is checked.
        "local_password" => {
            one()?;
        }
        "cleansession" => b.cleansession = parse_bool(one()?)?,
        "local_cleansession" => b.local_cleansession_set = Some(parse_bool(one()?)?),
        "bridge_protocol_version" => {
            b.protocol = match one()? {
                "mqttv31" => ProtocolVersion::V3_1,
                "mqttv311" => ProtocolVersion::V3_1_1,
                "mqttv50" => ProtocolVersion::V5,
                v => {
                    return Err(format!(
                        "bridge_protocol_version {v:?}: use mqttv31, mqttv311 or mqttv50"
                    ))
                }
            }
        }
        "try_private" => b.try_private = parse_bool(one()?)?,
        "keepalive_interval" => {
            let s = parse_u64(one()?, key)?;
            if !(5..=65535).contains(&s) {
                return Err("keepalive_interval takes 5 to 65535 seconds".into());
            }
            b.keepalive = Duration::from_secs(s);
        }
        "restart_timeout" => {
            let (base, cap) = match args {
                [base] => (parse_u64(base, key)?, parse_u64(base, key)?),
                [base, cap] => (parse_u64(base, key)?, parse_u64(cap, key)?),
                _ => return Err("restart_timeout takes BASE [CAP] seconds".into()),
            };
            if base == 0 || cap < base {
                return Err("restart_timeout: BASE at least 1 second, CAP not below BASE".into());
            }
            b.restart_base = Duration::from_secs(base);
            b.restart_cap = Duration::from_secs(cap);
        }
        "round_robin" => b.round_robin = parse_bool(one()?)?,
        "notifications" => b.notifications = parse_bool(one()?)?,
        "notification_topic" => {
            let t = one()?;
            crate::protocol::MqttString::copy_from(t)
                .and_then(crate::protocol::TopicName::new)
                .map_err(|_| format!("notification_topic {t:?} is not a topic name"))?;
            b.notification_topic = t.to_string();
        }
        "bridge_outgoing_retain" => b.outgoing_retain = parse_bool(one()?)?,
        "bridge_cafile" => tls_of(b).cafile = one()?.into(),
        "bridge_certfile" => tls_of(b).certfile = Some(one()?.into()),
        "bridge_keyfile" => tls_of(b).keyfile = Some(one()?.into()),
        "bridge_insecure" => tls_of(b).insecure = parse_bool(one()?)?,
        "bridge_tls_version" => match one()? {
            "tlsv1.2" | "tlsv1.3" => {}
            v => {
                return Err(format!(
                    "bridge_tls_version {v:?}: coremq speaks tlsv1.2 and tlsv1.3"
                ))
            }
        },
        "start_type" => match one()? {
            "automatic" => {}
            v => return Err(format!("start_type {v:?}: coremq supports automatic only")),
        },
        _ => return Err(format!("unknown option {key:?}")),
    }
    Ok(())
}

/// The TLS part of a block, created (with no CA yet) by its first TLS option.
fn tls_of(b: &mut BridgeConf) -> &mut BridgeTls {
    b.tls.get_or_insert_with(|| BridgeTls {
        cafile: Default::default(),
        certfile: None,
        keyfile: None,
        insecure: false,
    })
}

fn parse_topic(args: &[String]) -> Result<TopicRule, String> {
    let (pattern, rest) = args
        .split_first()
        .ok_or("topic takes PATTERN [in|out|both [QOS [LOCAL_PREFIX REMOTE_PREFIX]]]")?;
    let direction = match rest.first().map(String::as_str) {
        None | Some("out") => Direction::Out,
        Some("in") => Direction::In,
        Some("both") => Direction::Both,
        Some(d) => return Err(format!("topic direction {d:?}: use in, out or both")),
    };
    let qos = match rest.get(1).map(String::as_str) {
        None | Some("0") => QoS::AtMostOnce,
        Some("1") => QoS::AtLeastOnce,
        Some("2") => QoS::ExactlyOnce,
        Some(q) => return Err(format!("topic QoS {q:?}: use 0, 1 or 2")),
    };
    let (local_prefix, remote_prefix) = match &rest[rest.len().min(2)..] {
        [] => (String::new(), String::new()),
        [l, r] => (l.clone(), r.clone()),
        _ => return Err("topic takes both prefixes or neither".into()),
    };
    for prefix in [&local_prefix, &remote_prefix] {
        if prefix.contains(['+', '#']) {
            return Err(format!("topic prefix {prefix:?} may not hold wildcards"));
        }
    }
    let rule = TopicRule {
        pattern: pattern.clone(),
        direction,
        qos,
        local_prefix,
        remote_prefix,
    };
    if rule.pattern.is_empty() && (rule.local_prefix.is_empty() || rule.remote_prefix.is_empty()) {
        return Err("an empty topic pattern needs both prefixes (each then a whole topic)".into());
    }
    for filter in [rule.local_filter(), rule.remote_filter()] {
        crate::protocol::MqttString::copy_from(&filter)
            .and_then(TopicFilter::new)
            .map_err(|_| format!("topic {filter:?} is not a valid topic filter"))?;
    }
    Ok(rule)
}

fn parse_address(a: &str) -> Result<(String, u16), String> {
    let bad = || format!("address {a:?}: use host[:port]");
    // [v6]:port, v6 alone, host:port, host.
    if let Some(rest) = a.strip_prefix('[') {
        let (host, tail) = rest.split_once(']').ok_or_else(bad)?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if tail.is_empty() => 1883,
            None => return Err(bad()),
        };
        return Ok((host.to_string(), port));
    }
    match a.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            let port: u16 = port.parse().map_err(|_| bad())?;
            if host.is_empty() || port == 0 {
                return Err(bad());
            }
            Ok((host.to_string(), port))
        }
        _ if a.is_empty() => Err(bad()),
        _ => Ok((a.to_string(), 1883)),
    }
}

fn client_id(v: &str) -> Result<String, String> {
    if v.is_empty() || v.len() > 65535 {
        return Err("a client id may not be empty".into());
    }
    Ok(v.to_string())
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{v:?}: use true or false")),
    }
}

fn parse_u64(v: &str, key: &str) -> Result<u64, String> {
    v.parse()
        .map_err(|_| format!("{key}: {v:?} is not a whole number of seconds"))
}

/// Splits a line into words; `""` is an empty word (how Mosquitto writes an empty prefix).
fn split_words(line: &str) -> Result<Vec<String>, String> {
    line.split_whitespace()
        .map(|w| match w {
            "\"\"" => Ok(String::new()),
            w if w.contains('"') => Err(format!("{w:?}: quotes only as \"\" (an empty value)")),
            w => Ok(w.to_string()),
        })
        .collect()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "coremq".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mosquitto_bridge_block_parses_with_mosquittos_defaults() {
        let text = "# bridge to the cloud\n\
                    connection cloud\n\
                    address broker.example:8883 10.0.0.2\n\
                    topic sensors/# out 1 site/ \"\"\n\
                    topic cmd/+ in 2 \"\" site-a/\n\
                    topic \"\" both 0 local/state remote/state\n\
                    remote_username u\n\
                    remote_password p\n\
                    bridge_cafile /etc/ca.pem\n\
                    \n\
                    connection second\n\
                    addresses [::1]:1884\n\
                    topic # both\n\
                    cleansession true\n\
                    bridge_protocol_version mqttv50\n\
                    restart_timeout 2 20\n";
        let b = parse(text).unwrap();
        assert_eq!(b.len(), 2);
        let c = &b[0];
        assert_eq!(c.name, "cloud");
        assert_eq!(
            c.addresses,
            vec![("broker.example".into(), 8883), ("10.0.0.2".into(), 1883)]
        );
        assert_eq!(c.topics[0].local_filter(), "site/sensors/#");
        assert_eq!(c.topics[0].remote_filter(), "sensors/#");
        assert_eq!(c.topics[1].direction, Direction::In);
        assert_eq!(c.topics[1].qos, QoS::ExactlyOnce);
        assert_eq!(c.topics[2].local_filter(), "local/state");
        assert!(!c.cleansession && !c.local_cleansession && c.try_private && c.notifications);
        assert_eq!(c.local_clientid, format!("local.{}", c.remote_clientid));
        assert!(c.remote_clientid.ends_with(".cloud"));
        assert_eq!(c.keepalive, Duration::from_secs(60));
        assert_eq!(c.tls.as_ref().unwrap().cafile, Path::new("/etc/ca.pem"));
        let s = &b[1];
        assert_eq!(s.addresses, vec![("::1".into(), 1884)]);
        assert_eq!(s.topics[0].direction, Direction::Both);
        assert_eq!(s.topics[0].qos, QoS::AtMostOnce);
        assert!(s.cleansession && s.local_cleansession);
        assert_eq!(s.protocol, ProtocolVersion::V5);
        assert_eq!(
            (s.restart_base, s.restart_cap),
            (Duration::from_secs(2), Duration::from_secs(20))
        );
    }

    #[test]
    fn bad_lines_are_refused_with_their_line_number() {
        let cases = [
            ("address h\n", 1),
            ("connection a\nconnection a\n", 2),
            (
                "connection a\naddress h\ntopic x\nkeepalive_interval 1\n",
                4,
            ),
            ("connection a\naddress h\ntopic x\nrestart_timeout 5 1\n", 4),
            ("connection a\naddress h\ntopic x\ncleansession maybe\n", 4),
            (
                "connection a\naddress h\ntopic x\nremote_clientid a\nclientid b\n",
                5,
            ),
            ("connection a\naddress h\ntopic x out 1 onlyone\n", 3),
            ("connection a\naddress h\ntopic x out 1 a/+ b\n", 3),
            ("connection a\naddress h\ntopic \"\" out 1 \"\" b\n", 3),
            ("connection a\naddress h\ntopic x\nstart_type lazy\n", 4),
            ("connection a\naddress h\ntopic x\nremote_password p\n", 1),
            (
                "connection a\naddress h\ntopic x\nbridge_certfile c.pem\nbridge_cafile ca\n",
                1,
            ),
            ("connection a\naddress h\ntopic \"x y\"\n", 3),
            // The default notification topic holds the remote client id.
            ("connection a\naddress h\ntopic x\nremote_clientid a+b\n", 1),
        ];
        for (text, line) in cases {
            match parse(text) {
                Ok(b) => panic!("{text:?} parsed: {b:?}"),
                Err((l, reason)) => assert_eq!(l, line, "{text:?}: {reason}"),
            }
        }
    }
}
