use super::*;
use crate::topic::matches;

/// The module docs' worked example.
const EXAMPLE: &str = "\
# anonymous clients:
topic read public/#
user alice
topic readwrite alice/#
topic read sensors/+/temperature
# counts before alice/#, though written after it:
topic deny alice/secret/#
pattern write devices/%c/status
pattern read devices/%c/config/#
";

fn acl(text: &str) -> Acl {
    Acl::parse(text, Path::new("acl.conf")).unwrap()
}

#[test]
fn worked_example() {
    let acl = acl(EXAMPLE);
    let alice = Some("alice");
    assert!(acl.can_publish("dev1", alice, "alice/x"));
    assert!(!acl.can_publish("dev1", alice, "alice/secret/k"));
    assert!(!acl.can_receive("dev1", alice, "alice/secret/k"));
    assert!(acl.can_publish("dev1", alice, "devices/dev1/status"));
    assert!(!acl.can_publish("dev1", alice, "devices/dev2/status"));
    assert!(!acl.can_receive("dev1", alice, "devices/dev1/status"));
    assert!(acl.can_receive("dev1", alice, "devices/dev1/config/a/b"));
    assert!(acl.can_receive("dev1", alice, "sensors/k/temperature"));
    assert!(!acl.can_publish("dev1", alice, "sensors/k/temperature"));

    use SubscribeAccess::*;
    for (filter, want) in [
        ("alice/x/+", Full),
        ("alice/#", Partial),
        ("sensors/#", Partial),
        ("sensors/+/temperature", Full),
        ("sensors/k/temperature", Full),
        ("sensors/k/humidity", Denied),
        ("alice/secret/#", Denied),
        ("alice/secret/x", Denied),
        ("$SYS/#", Denied),
        ("#", Partial),
        ("devices/dev1/config/#", Full),
        ("devices/dev1/status", Denied),
        ("devices/+/config/x", Partial),
        ("devices/dev2/config/#", Denied),
    ] {
        assert_eq!(
            acl.subscribe_access("dev1", alice, filter),
            want,
            "{filter}"
        );
    }

    // Anonymous client dev1.
    assert_eq!(acl.subscribe_access("dev1", None, "public/#"), Full);
    assert!(acl.can_receive("dev1", None, "public/x"));
    assert!(!acl.can_publish("dev1", None, "public/x"));
    assert!(acl.can_publish("dev1", None, "devices/dev1/status"));
    assert!(!acl.can_receive("dev1", None, "alice/x"));

    // A username without a section gets the patterns only.
    assert!(!acl.can_receive("dev1", Some("bob"), "public/x"));
    assert!(acl.can_publish("dev1", Some("bob"), "devices/dev1/status"));

    // Client ids with wildcards: pattern rules deny them everything, topic rules still apply.
    assert!(!acl.can_publish("dev+", None, "devices/dev+/status"));
    assert!(!acl.can_publish("#", alice, "devices/#/status"));
    assert!(acl.can_publish("dev+", alice, "alice/x"));
    assert_eq!(acl.subscribe_access("dev+", alice, "devices/#"), Denied);
}

#[test]
fn the_rest_of_the_line_is_the_filter_as_in_mosquitto() {
    let acl = acl("topic read a b/c\n");
    assert!(acl.can_receive("c", None, "a b/c"));
    assert!(!acl.can_receive("c", None, "a"));
    // So a trailing comment is part of the filter, here an invalid one.
    let err = Acl::parse("topic read a/#  # note\n", Path::new("x")).unwrap_err();
    assert!(
        err.reason.contains("invalid topic filter"),
        "{}",
        err.reason
    );
}

#[test]
fn deny_wins_over_allow_in_any_order_for_any_access() {
    for text in [
        "topic readwrite a/#\ntopic deny a/b\n",
        "topic deny a/b\ntopic readwrite a/#\n",
    ] {
        let acl = acl(text);
        assert!(!acl.can_publish("c", None, "a/b"), "{text}");
        assert!(!acl.can_receive("c", None, "a/b"), "{text}");
        assert!(acl.can_publish("c", None, "a/c"), "{text}");
    }
    // A deny pattern beats an allow pattern written before it, but not a user's topic rule,
    // which is decided first.
    let acl = acl(
        "user u\ntopic read x/#\npattern read %c/#\npattern deny %c/private/#\npattern deny x/#\n",
    );
    assert!(acl.can_receive("c1", Some("u"), "c1/a"));
    assert!(!acl.can_receive("c1", Some("u"), "c1/private/a"));
    assert!(acl.can_receive("c1", Some("u"), "x/y"));
}

#[test]
fn read_and_write_are_separate() {
    let acl = acl("topic read r/#\ntopic write w/#\ntopic r/rw\ntopic readwrite both\n");
    assert!(acl.can_receive("c", None, "r/x") && !acl.can_publish("c", None, "r/x"));
    assert!(acl.can_publish("c", None, "w/x") && !acl.can_receive("c", None, "w/x"));
    assert!(acl.can_publish("c", None, "r/rw") && acl.can_receive("c", None, "r/rw"));
    assert!(acl.can_publish("c", None, "both") && acl.can_receive("c", None, "both"));
    assert_eq!(
        acl.subscribe_access("c", None, "w/#"),
        SubscribeAccess::Denied
    );
    // A write rule on a topic does not stop a read rule elsewhere from matching it.
    let acl = Acl::parse("topic write a/b\ntopic read a/#\n", Path::new("x")).unwrap();
    assert!(acl.can_receive("c", None, "a/b"));
}

#[test]
fn sections_anonymous_users_and_repeats() {
    let acl = acl("topic anon\nuser a\ntopic one\nuser b\ntopic two\nuser a\ntopic three\n");
    assert!(acl.can_publish("c", None, "anon"));
    assert!(!acl.can_publish("c", Some(""), "anon"));
    assert!(acl.can_publish("c", Some("a"), "one") && acl.can_publish("c", Some("a"), "three"));
    assert!(!acl.can_publish("c", Some("a"), "two") && !acl.can_publish("c", Some("a"), "anon"));
    assert!(acl.can_publish("c", Some("b"), "two"));
    // User names may contain spaces.
    let acl = Acl::parse("user John Smith\ntopic j\n", Path::new("x")).unwrap();
    assert!(acl.can_publish("c", Some("John Smith"), "j"));
}

#[test]
fn an_empty_file_denies_everything() {
    let acl = acl("# nothing\n\n");
    assert!(!acl.can_publish("c", None, "a"));
    assert!(!acl.can_receive("c", Some("u"), "a"));
    assert_eq!(
        acl.subscribe_access("c", None, "#"),
        SubscribeAccess::Denied
    );
}

#[test]
fn access_word_is_optional() {
    // `topic read` alone is the topic "read", with readwrite access (Mosquitto's reading).
    let acl = acl("topic read\ntopic x/#\n");
    assert!(acl.can_publish("c", None, "read") && acl.can_receive("c", None, "read"));
    assert!(acl.can_publish("c", None, "x/y"));
}

#[test]
fn dollar_topics_need_dollar_rules() {
    let acl = acl("topic #\ntopic read $SYS/broker/#\npattern +/%c\n");
    assert!(acl.can_publish("c", None, "a/b"));
    assert!(!acl.can_receive("c", None, "$SYS/x"));
    assert!(acl.can_receive("c", None, "$SYS/broker/load"));
    assert!(!acl.can_publish("c", None, "$SYS/broker/load"));
    assert!(acl.can_publish("c", Some("u"), "x/c"));
    assert!(!acl.can_publish("c", Some("u"), "$x/c"));
    assert_eq!(
        acl.subscribe_access("c", None, "$SYS/#"),
        SubscribeAccess::Partial
    );
    assert_eq!(acl.subscribe_access("c", None, "#"), SubscribeAccess::Full);
}

#[test]
fn substitutions_stay_inside_one_level_and_out_of_dollar_topics() {
    let acl =
        acl("pattern readwrite devices/%c/#\npattern readwrite %u/#\npattern read in/x%cy%u/z\n");
    // Plain use.
    assert!(acl.can_publish("d1", None, "devices/d1/a"));
    assert!(acl.can_publish("d1", Some("bob"), "bob/a"));
    assert!(acl.can_receive("d1", Some("bob"), "in/xd1ybob/z"));
    assert!(!acl.can_receive("d1", Some("bob"), "in/xd1yalice/z"));
    // %u patterns do not apply without a username.
    assert!(!acl.can_publish("d1", None, "d1/a"));
    // A client id with '/' cannot reach into another client's tree (Mosquitto 2.0 would let
    // client "d1/sub" publish to devices/d1/sub/...).
    assert!(!acl.can_publish("d1/sub", None, "devices/d1/sub/x"));
    assert!(!acl.can_publish("d1/sub", None, "devices/d1/x"));
    assert_eq!(
        acl.subscribe_access("d1/sub", None, "devices/d1/sub/#"),
        SubscribeAccess::Denied
    );
    // A username "$SYS" does not turn %u/# into $SYS/#.
    assert!(!acl.can_receive("c", Some("$SYS"), "$SYS/broker/load"));
    assert_eq!(
        acl.subscribe_access("c", Some("$SYS"), "$SYS/#"),
        SubscribeAccess::Denied
    );
    // '%' not followed by c or u is literal; a client id "%u" is not substituted again.
    let acl = Acl::parse("pattern read a/%x/%c\n", Path::new("x")).unwrap();
    assert!(acl.can_receive("%u", Some("bob"), "a/%x/%u"));
    assert!(!acl.can_receive("%u", Some("bob"), "a/%x/bob"));
}

#[test]
fn subscribe_classification_table() {
    use SubscribeAccess::*;
    let acl = acl("\
topic read a/#
topic deny a/secret
topic read b/+/c
topic read b/x/#
topic deny d/#
topic read d/e
topic read #
");
    for (filter, want) in [
        ("a/x", Full),
        ("a/secret", Denied),
        // `#` reads everything but the denied parts.
        ("a/#", Partial),
        ("a/+", Partial),
        ("b/x/c", Full),
        ("b/+/c", Full),
        ("d/e", Denied),
        ("d/#", Denied),
        ("e/#", Full),
        ("+/secret", Partial),
        ("$SYS/#", Denied),
    ] {
        assert_eq!(acl.subscribe_access("c", None, filter), want, "{filter}");
    }
}

/// Whatever the classification says must hold for every sample topic the filter matches:
/// `Full` → all readable, `Denied` → none, `Partial` → (usually) some of each.
#[test]
fn classification_agrees_with_per_topic_checks() {
    let files = [
        EXAMPLE,
        "topic read #\ntopic deny +/b/#\n",
        "topic read a/+\ntopic read a/+/+\ntopic deny a/b/+\npattern read %c/#\n",
        "pattern deny %u/x\npattern read +/+\n",
    ];
    let topics = [
        "a",
        "a/b",
        "a/c",
        "a/b/c",
        "x/b/c",
        "alice/x",
        "alice/secret/k",
        "public/x",
        "dev1/x",
        "bob/x",
        "sensors/k/temperature",
        "devices/dev1/config/a",
        "$SYS/x",
        "dev1",
        "bob",
    ];
    let filters = [
        "#",
        "+",
        "a/#",
        "a/+",
        "a/b",
        "a/b/#",
        "+/b/#",
        "alice/#",
        "public/+",
        "dev1/#",
        "bob/#",
        "+/x",
        "sensors/#",
        "devices/+/config/#",
        "$SYS/#",
        "+/+/+",
    ];
    for text in files {
        let acl = Acl::parse(text, Path::new("x")).unwrap();
        for (client, user) in [("dev1", None), ("dev1", Some("alice")), ("c", Some("bob"))] {
            for filter in filters {
                let verdict = acl.subscribe_access(client, user, filter);
                for topic in topics.iter().filter(|t| matches(filter, t)) {
                    let readable = acl.can_receive(client, user, topic);
                    let ok = match verdict {
                        SubscribeAccess::Full => readable,
                        SubscribeAccess::Denied => !readable,
                        SubscribeAccess::Partial => true,
                    };
                    assert!(
                        ok,
                        "{text:?} {client} {user:?} {filter} {verdict:?} {topic}"
                    );
                }
            }
        }
    }
}

#[test]
fn parse_errors_name_file_line_and_reason() {
    for (text, line, reason) in [
        ("topic a\nuser\n", 2, "missing username"),
        ("\n\ntopic\n", 3, "missing topic filter"),
        ("pattern\n", 1, "missing topic filter"),
        ("topic readonly a/b\n", 1, "invalid access \"readonly\""),
        ("topic read a/#/b\n", 1, "invalid topic filter \"a/#/b\""),
        ("topic read a+/b\n", 1, "invalid topic filter"),
        ("pattern read %c#\n", 1, "invalid topic filter"),
        ("topic read $share/g/a\n", 1, "$share/GROUP/"),
        ("# ok\nallow a\n", 2, "unknown keyword \"allow\""),
    ] {
        let err = Acl::parse(text, Path::new("acl.conf")).unwrap_err();
        assert_eq!(err.line, Some(line), "{text:?}");
        assert!(err.reason.contains(reason), "{text:?}: {}", err.reason);
        assert!(err.to_string().starts_with(&format!("acl.conf:{line}: ")));
    }
    let err = Acl::load(Path::new("/nonexistent/coremq-acl")).unwrap_err();
    assert_eq!(err.line, None);
}

#[test]
fn comments_blanks_tabs_and_crlf() {
    let acl = acl("# top\r\n   # indented\r\n\r\ntopic\tread\t  a/b  \r\n\tuser   u \r\ntopic w\n");
    assert!(acl.can_receive("c", None, "a/b") && !acl.can_publish("c", None, "a/b"));
    assert!(acl.can_publish("c", Some("u"), "w"));
    assert!(format!("{acl:?}").contains("users: 1"));
}

/// Mosquitto's own answers: a Mosquitto 2.0.11 broker (Debian package 2.0.11-1.2+deb12u2) was
/// run with this acl_file (and a password file written by `coremq passwd`, which it accepted);
/// a Python paho-mqtt 2.2 script connected as each (client id, username) over MQTT 3.1.1 and
/// 1. published to each topic at QoS 1 while user `observer` (`topic read #`) was subscribed
///    to `#` — delivered means writable;
/// 2. subscribed to `#` while user `pub` (`topic write #`) published each topic — received
///    means readable.
///
/// The rows are its output (usernames then wrapped in `Some`): (client id, username, topic,
/// writable, readable).
const MOSQUITTO_ACL: &str = "\
# anonymous
topic read public/#
user alice
topic readwrite alice/#
topic read sensors/+/temperature
topic deny alice/secret/#
user observer
topic read #
user pub
topic write #
pattern write devices/%c/status
pattern read devices/%c/config/#
pattern readwrite users/%u/#
pattern deny devices/%c/config/locked
";

#[rustfmt::skip]
const MOSQUITTO_ANSWERS: &[(&str, Option<&str>, &str, bool, bool)] = &[
    ("dev1", Some("alice"), "alice/x", true, true),
    ("dev1", Some("alice"), "alice/secret/k", false, false),
    ("dev1", Some("alice"), "public/x", false, false),
    ("dev1", Some("alice"), "sensors/k/temperature", false, true),
    ("dev1", Some("alice"), "sensors/k/humidity", false, false),
    ("dev1", Some("alice"), "devices/dev1/status", true, false),
    ("dev1", Some("alice"), "devices/dev2/status", false, false),
    ("dev1", Some("alice"), "devices/dev1/config/a", false, true),
    ("dev1", Some("alice"), "devices/dev1/config/locked", false, false),
    ("dev1", Some("alice"), "users/alice/x", true, true),
    ("dev1", Some("alice"), "users/bob/x", false, false),
    ("dev1", Some("alice"), "read", false, false),
    ("dev1", None, "alice/x", false, false),
    ("dev1", None, "alice/secret/k", false, false),
    ("dev1", None, "public/x", false, true),
    ("dev1", None, "sensors/k/temperature", false, false),
    ("dev1", None, "sensors/k/humidity", false, false),
    ("dev1", None, "devices/dev1/status", true, false),
    ("dev1", None, "devices/dev2/status", false, false),
    ("dev1", None, "devices/dev1/config/a", false, true),
    ("dev1", None, "devices/dev1/config/locked", false, false),
    ("dev1", None, "users/alice/x", false, false),
    ("dev1", None, "users/bob/x", false, false),
    ("dev1", None, "read", false, false),
    ("dev1", Some("bob"), "alice/x", false, false),
    ("dev1", Some("bob"), "alice/secret/k", false, false),
    ("dev1", Some("bob"), "public/x", false, false),
    ("dev1", Some("bob"), "sensors/k/temperature", false, false),
    ("dev1", Some("bob"), "sensors/k/humidity", false, false),
    ("dev1", Some("bob"), "devices/dev1/status", true, false),
    ("dev1", Some("bob"), "devices/dev2/status", false, false),
    ("dev1", Some("bob"), "devices/dev1/config/a", false, true),
    ("dev1", Some("bob"), "devices/dev1/config/locked", false, false),
    ("dev1", Some("bob"), "users/alice/x", false, false),
    ("dev1", Some("bob"), "users/bob/x", true, true),
    ("dev1", Some("bob"), "read", false, false),
    ("dev+", Some("alice"), "alice/x", true, true),
    ("dev+", Some("alice"), "alice/secret/k", false, false),
    ("dev+", Some("alice"), "public/x", false, false),
    ("dev+", Some("alice"), "sensors/k/temperature", false, true),
    ("dev+", Some("alice"), "sensors/k/humidity", false, false),
    ("dev+", Some("alice"), "devices/dev1/status", false, false),
    ("dev+", Some("alice"), "devices/dev2/status", false, false),
    ("dev+", Some("alice"), "devices/dev1/config/a", false, false),
    ("dev+", Some("alice"), "devices/dev1/config/locked", false, false),
    ("dev+", Some("alice"), "users/alice/x", false, false),
    ("dev+", Some("alice"), "users/bob/x", false, false),
    ("dev+", Some("alice"), "read", false, false),
    ("dev1", Some("carol"), "alice/x", false, false),
    ("dev1", Some("carol"), "alice/secret/k", false, false),
    ("dev1", Some("carol"), "public/x", false, false),
    ("dev1", Some("carol"), "sensors/k/temperature", false, false),
    ("dev1", Some("carol"), "sensors/k/humidity", false, false),
    ("dev1", Some("carol"), "devices/dev1/status", true, false),
    ("dev1", Some("carol"), "devices/dev2/status", false, false),
    ("dev1", Some("carol"), "devices/dev1/config/a", false, true),
    ("dev1", Some("carol"), "devices/dev1/config/locked", false, false),
    ("dev1", Some("carol"), "users/alice/x", false, false),
    ("dev1", Some("carol"), "users/bob/x", false, false),
    ("dev1", Some("carol"), "read", false, false),
];

#[test]
fn same_answers_as_mosquitto_2_0_11() {
    let acl = acl(MOSQUITTO_ACL);
    for &(client, user, topic, write, read) in MOSQUITTO_ANSWERS {
        assert_eq!(
            acl.can_publish(client, user, topic),
            write,
            "publish {client} {user:?} {topic}"
        );
        assert_eq!(
            acl.can_receive(client, user, topic),
            read,
            "receive {client} {user:?} {topic}"
        );
    }
}
