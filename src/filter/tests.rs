//! The language's semantics, table-driven: expression × message → passes or not.

use super::*;
use crate::protocol::MqttString;

fn s(v: &str) -> MqttString {
    MqttString::copy_from(v).unwrap()
}

/// Evaluates `expr` against a message on `topic` with `payload` (QoS 1, retained, with Content
/// Type "application/json", Payload Format 1 and User Property unit=C).
fn check(expr: &str, topic: &str, payload: &[u8]) -> bool {
    let schema = Schema::default();
    let f = Filter::compile(expr, &Limits::default(), &schema)
        .unwrap_or_else(|e| panic!("{expr}: {e}"));
    let user = vec![(s("unit"), s("C")), (s("unit"), s("F"))];
    let mut subject = Subject::new(topic, payload, &schema);
    subject.qos = 1;
    subject.retain = true;
    subject.content_type = Some("application/json");
    subject.payload_format = Some(true);
    subject.user_properties = &user;
    f.matches(&subject)
}

const DOC: &[u8] =
    br#"{"temp": 31.5, "site": "north", "status": "alarm", "battery": 0.1, "on": true, "n": null, "a": {"b": [{"c": 1}, {"c": 2}]}}"#;

#[test]
fn conditions_over_a_json_payload() {
    let cases: &[(&str, bool)] = &[
        ("temp > 30", true),
        ("temp > 31.5", false),
        ("temp >= 31.5 && temp <= 31.5", true),
        (r#"temp > 30 && site == "north""#, true),
        (r#"temp > 30 && site == "south""#, false),
        (r#"temp > 40 || site == "north""#, true),
        (r#"!(site == "north")"#, false),
        (r#"status in ["alarm", "fault"]"#, true),
        (r#"status in ["ok"]"#, false),
        ("exists(battery) && battery < 0.2", true),
        ("exists(missing)", false),
        ("!exists(missing)", true),
        ("on", true),
        ("!on", false),
        ("n == null", true),
        ("a.b[1].c == 2", true),
        (r#"a["b"][0]["c"] == 1"#, true),
        ("a.b[2].c == 3", false),
        ("exists(a.b)", true),
        // A missing field makes every comparison false, `!=` too.
        ("missing != 1", false),
        ("missing == null", false),
        // Different types are never equal or ordered.
        (r#"temp == "31.5""#, false),
        (r#"temp != "31.5""#, true),
        (r#"site > 1"#, false),
        ("a == 1", false),
        (r#"site < "o""#, true),
        (r#"payload contains "alarm""#, true),
        (r#"payload contains "ERR""#, false),
        (r#"site matches "no*""#, true),
        ("$.temp > 30", true),
        (r#"kind == "json""#, true),
    ];
    for (expr, want) in cases {
        assert_eq!(check(expr, "home/kitchen/temp", DOC), *want, "{expr}");
    }
}

#[test]
fn conditions_on_metadata_and_kind() {
    let cases: &[(&str, &[u8], bool)] = &[
        (r#"topic[1] == "kitchen""#, b"x", true),
        (r#"topic[0] == "kitchen""#, b"x", false),
        ("exists(topic[5])", b"x", false),
        (r#"topic == "home/kitchen/temp""#, b"x", true),
        (r#"topic matches "home/*/temp""#, b"x", true),
        ("qos == 1 && retain", b"x", true),
        ("qos >= 2", b"x", false),
        (r#"user["unit"] == "C""#, b"x", true),
        (r#"user["missing"] == "C""#, b"x", false),
        ("size == 3", b"abc", true),
        ("size > 3", b"abc", false),
        (r#"content_type == "application/json""#, b"x", true),
        (r#"content_type matches "application/*""#, b"x", true),
        (r#"content_type matches "text/*""#, b"x", false),
        ("format == 1", b"x", true),
        (r#"kind == "text""#, b"ERR: disk", true),
        (r#"kind == "json""#, b"ERR: disk", false),
        (r#"kind == "binary""#, b"\xff\x00", true),
        (r#"kind == "json""#, b"[1, 2]", true),
        (r#"payload contains "ERR""#, b"xx ERR yy", true),
        (r#"payload contains "ERR""#, b"\xff ERR \x00", true),
        (r#"payload == "on""#, b"on", true),
        // Not JSON: JSON conditions do not hold, whatever they say.
        ("temp > 30", b"temp=31", false),
        ("!(temp > 30)", b"temp=31", true),
        ("exists($)", b"temp=31", false),
        ("$ == 42", b" 42 ", true),
    ];
    for (expr, payload, want) in cases {
        assert_eq!(
            check(expr, "home/kitchen/temp", payload),
            *want,
            "{expr} on {payload:?}"
        );
    }
}

#[test]
fn without_properties_mqtt5_operands_are_absent() {
    let schema = Schema::default();
    let subject = Subject::new("t", b"{}", &schema);
    for (expr, want) in [
        ("exists(content_type)", false),
        (r#"content_type != "x""#, false),
        ("format == 0", true),
        ("qos == 0 && !retain", true),
    ] {
        let f = Filter::compile(expr, &Limits::default(), &schema).unwrap();
        assert_eq!(f.matches(&subject), want, "{expr}");
    }
}

#[test]
fn payload_is_scanned_once_for_many_filters_and_not_at_all_without_json_conditions() {
    let schema = Schema::default();
    let filters: Vec<Filter> = (0..50)
        .map(|i| {
            Filter::compile(
                &format!("temp > {i} && site == \"north\""),
                &Limits::default(),
                &schema,
            )
            .unwrap()
        })
        .collect();
    assert_eq!(schema.len(), 2, "two distinct paths, shared by 50 filters");
    let meta = Filter::compile("qos == 0", &Limits::default(), &schema).unwrap();
    let subject = Subject::new("t", DOC, &schema);
    assert!(meta.matches(&subject));
    assert_eq!(schema.scans(), 0, "metadata needs no scan");
    let passed = filters.iter().filter(|f| f.matches(&subject)).count();
    assert_eq!(passed, 32, "temp 31.5 > 0..=31");
    assert_eq!(schema.scans(), 1, "50 filters, one scan");
    drop(filters);
    assert_eq!(schema.len(), 0, "dropping the filters releases their paths");
}

#[test]
fn huge_and_deep_payloads_cost_one_bounded_scan() {
    let schema = Schema::default();
    let f = Filter::compile("deep == 1", &Limits::default(), &schema).unwrap();
    let deep = "[".repeat(100_000);
    assert!(!f.matches(&Subject::new("t", deep.as_bytes(), &schema)));
    let mut big = String::from("{\"items\": [");
    for i in 0..100_000 {
        big.push_str(&format!("{{\"k\": {i}, \"s\": \"v\\u00e9\"}},"));
    }
    big.push_str("0], \"deep\": 1}");
    assert!(f.matches(&Subject::new("t", big.as_bytes(), &schema)));
}

#[test]
fn prefix_round_trip_and_canonical_key() {
    let expr = r#"a/b == "x+y#z%" && topic[0] == "q""#;
    let key = subscription_key(expr, "$share/g/sensors/#");
    assert_eq!(
        key,
        r#"$filter/a%2Fb == %22x%2By%23z%25%22 && topic[0] == %22q%22/$share/g/sensors/#"#
    );
    let (decoded, rest) = split_prefix(&key).unwrap().unwrap();
    assert_eq!((decoded.as_str(), rest), (expr, "$share/g/sensors/#"));
    // Any encoding of the same expression gives the same key.
    let (d2, r2) = split_prefix("$filter/temp%20%3E%2030/s/#")
        .unwrap()
        .unwrap();
    assert_eq!(subscription_key(&d2, r2), "$filter/temp > 30/s/#");
    assert!(split_prefix("sensors/#").is_none());
    // A quote given encoded reads back the same from the key.
    let (d4, r4) = split_prefix("$filter/a == %22x/a/b").unwrap().unwrap();
    assert_eq!((d4.as_str(), r4), ("a == \"x", "a/b"));
    assert_eq!(
        split_prefix(&subscription_key(&d4, r4)).unwrap().unwrap(),
        (d4.clone(), r4)
    );
    // A `/` inside a quoted string does not end the expression; an escaped quote does not end
    // the string.
    let (d3, r3) = split_prefix(r#"$filter/ct matches "application/*" && s != "a\"/b"/docs/#"#)
        .unwrap()
        .unwrap();
    assert_eq!(
        (d3.as_str(), r3),
        (r#"ct matches "application/*" && s != "a\"/b""#, "docs/#")
    );
    assert_eq!(
        split_prefix(&subscription_key(&d3, r3)).unwrap().unwrap(),
        (d3.clone(), r3)
    );
    for bad in [
        "$filter/x",
        "$filter/x/",
        "$filter/%zz/a",
        "$filter/%ff/a",
        "$filter/%4/a",
    ] {
        assert!(split_prefix(bad).unwrap().is_err(), "{bad}");
    }
    let e = split_prefix("$filter/%/a").unwrap().unwrap_err();
    assert_eq!(e.problem, Problem::BadPercent);
}

#[test]
fn errors_read_well() {
    let e = Filter::compile("temp >", &Limits::default(), &Schema::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "filter expression: expected a value or field at position 6"
    );
    assert!(!e.is_too_complex());
    let deep = "!".repeat(40) + "a";
    let e = Filter::compile(&deep, &Limits::default(), &Schema::default()).unwrap_err();
    assert!(e.is_too_complex(), "{e}");
}
