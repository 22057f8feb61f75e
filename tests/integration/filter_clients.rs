//! The README's content-filter examples, run with the clients a user would type them into:
//! Mosquitto's `mosquitto_sub` / `mosquitto_pub` (Debian `mosquitto-clients`) with the 3.1.1
//! `$filter/` prefix and with MQTT 5's `-D subscribe user-property filter …`, Eclipse paho's
//! Python client (`paho_filter.py`) and MQTT.js (`mqttjs_filter.js`, the README's JavaScript
//! example) with both forms. All of them are installed by `scripts/test` (the README's test
//! command); without them these tests fail and name it — they never skip.

use std::time::Duration;

use crate::common::TestBroker;
use crate::run_script;
use crate::tools::{lines_until, mosquitto_pub, mosquitto_sub, require};

/// How long a client script may run.
const SCRIPT_LIMIT: Duration = Duration::from_secs(20);

const MESSAGES: [&str; 5] = [
    r#"{"temp": 31, "site": "north"}"#,
    r#"{"temp": 12, "site": "north"}"#,
    "temp 40",
    r#"{"temp": 33, "site": "south"}"#,
    r#"{"temp": 35, "site": "north", "end": 1}"#,
];

/// The README's two mosquitto_sub examples: `$filter/` with 3.1.1, the user property with v5.
#[test]
fn mosquitto_clients_subscribe_with_both_forms() {
    let broker = TestBroker::start(2);
    let port = broker.port();
    let v3 = broker.id_on(0, "msub3");
    let v5 = broker.id_on(1, "msub5");
    let (_a, prefix) = mosquitto_sub(
        port,
        &[
            "-V",
            "311",
            "-i",
            &v3,
            "-t",
            r#"$filter/temp > 30 && site == "north"/sensors/#"#,
        ],
    );
    let (_b, property) = mosquitto_sub(
        port,
        &[
            "-V",
            "5",
            "-i",
            &v5,
            "-t",
            "sensors/#",
            "-D",
            "subscribe",
            "user-property",
            "filter",
            r#"temp > 30 && site == "north""#,
        ],
    );
    for m in MESSAGES {
        mosquitto_pub(port, "311", "sensors/x", m, &[]);
    }
    let want = vec![MESSAGES[0].to_owned(), MESSAGES[4].to_owned()];
    assert_eq!(lines_until(&prefix, MESSAGES[4]), want);
    assert_eq!(lines_until(&property, MESSAGES[4]), want);
    // A type filter on MQTT 5's Content Type, with the glob.
    let (_c, typed) = mosquitto_sub(
        port,
        &[
            "-V",
            "5",
            "-i",
            &broker.id_on(0, "msubt"),
            "-t",
            "$filter/content_type matches \"application/*\"/docs/#",
        ],
    );
    mosquitto_pub(
        port,
        "5",
        "docs/1",
        "plain",
        &["-D", "publish", "content-type", "text/plain"],
    );
    mosquitto_pub(
        port,
        "5",
        "docs/2",
        "{}",
        &["-D", "publish", "content-type", "application/json"],
    );
    assert_eq!(lines_until(&typed, "{}"), vec!["{}".to_owned()]);
}

const PAHO_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/integration/paho_filter.py"
);

/// What both scripts print: each subscriber got the two passing messages, in order.
const BOTH_FORMS: &str = r#"{"v311":["{\"temp\": 31, \"site\": \"north\"}","{\"temp\": 35, \"site\": \"north\", \"end\": 1}"],"v5":["{\"temp\": 31, \"site\": \"north\"}","{\"temp\": 35, \"site\": \"north\", \"end\": 1}"]"#;

/// MQTT.js (npm `mqtt`, under target/npm): the README's example, both forms.
#[test]
fn mqttjs_subscribes_with_both_forms() {
    let module = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target/npm/node_modules/mqtt/package.json"
    );
    assert!(
        std::path::Path::new(module).exists(),
        "MQTT.js is missing: scripts/test (the README's test command) installs it under target/npm"
    );
    require("node");
    let broker = TestBroker::start(2);
    let out = run_script(
        "node",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/integration/mqttjs_filter.js"
        ),
        &[
            broker.port().to_string(),
            broker.id_on(0, "jsub5"),
            broker.id_on(0, "jsub3"),
            broker.id_on(1, "jpub"),
        ],
        SCRIPT_LIMIT,
    );
    assert_eq!(out.trim(), format!("{BOTH_FORMS}}}"));
}

/// paho-mqtt (Python): a v5 subscriber with the `filter` user property and a 3.1.1 one with the
/// prefix, on different shards from the publisher; the script prints what each received.
#[test]
fn paho_subscribes_with_both_forms() {
    crate::paho::require_paho();
    let broker = TestBroker::start(2);
    let out = run_script(
        "python3",
        PAHO_SCRIPT,
        &[
            broker.port().to_string(),
            broker.id_on(0, "psub5"),
            broker.id_on(0, "psub3"),
            broker.id_on(1, "ppub"),
        ],
        SCRIPT_LIMIT,
    );
    assert_eq!(out.trim(), format!(r#"{BOTH_FORMS},"v5_suback":[1]}}"#));
}
