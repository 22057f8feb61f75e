//! Interop with Eclipse paho-mqtt (Python): `paho_interop.py` runs an MQTT 3.1.1 and then an
//! MQTT 5 subscriber/publisher pair, homed on different shards, against an in-process broker and
//! prints what it saw as one JSON line (sorted keys, no spaces), compared here as a whole.
//!
//! Needs `python3` with paho-mqtt 2.x, which `scripts/test` (the README's test command) installs;
//! without them the test fails and names that script — it never skips.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::TestBroker;
use crate::run_script;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/integration/paho_interop.py"
);

/// How long the script may run (it gives up by itself after 5 s per step).
const SCRIPT_LIMIT: Duration = Duration::from_secs(20);

pub fn require_paho() {
    let status = Command::new("python3")
        .args(["-c", "import paho.mqtt.client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(_) => panic!(
            "the paho interop test needs Python's paho-mqtt, which scripts/test installs \
             (run the suite with scripts/test, or `python3 -m pip install paho-mqtt`; \
             python3 -c 'import paho.mqtt.client' failed)"
        ),
        Err(e) => panic!(
            "the paho interop test needs python3 with paho-mqtt, which scripts/test installs: {e}"
        ),
    }
}

/// The JSON the script prints when everything works, for one protocol version. Keys are sorted;
/// MQTT 5 messages carry the publisher's content type and user properties, in order.
fn expected(version: &str, v5: bool) -> String {
    let (content_type, user_properties) = if v5 {
        (
            r#""content_type":"text/plain","#,
            r#","user_properties":[["k","1"],["a","2"],["k","3"]]"#,
        )
    } else {
        ("", "")
    };
    let message = |topic: &str, payload: &str, qos: u8, retain: bool| {
        format!(
            r#"{{{content_type}"payload":"{payload}","qos":{qos},"retain":{retain},"topic":"paho/{version}/{topic}"{user_properties}}}"#
        )
    };
    let messages = [
        message("q0", "qos 0", 0, false),
        message("q1", "qos 1", 1, false),
        message("q2", "qos 2", 2, false),
        // Forwarded live with RETAIN cleared [MQTT-3.3.1-9], then sent on the new subscription
        // with it set [MQTT-3.3.1-8].
        message("retained", "kept", 1, false),
        message("retained", "kept", 1, true),
    ];
    format!(
        r#""{version}":{{"acked":[true,true,true,true],"granted":[2,1],"messages":[{}]}}"#,
        messages.join(",")
    )
}

#[test]
fn paho_mqtt_3_1_1_and_5_interop_across_shards() {
    require_paho();
    let broker = TestBroker::start(2);
    let out = run_script(
        "python3",
        SCRIPT,
        &[
            broker.port().to_string(),
            broker.id_on(0, "paho-sub"),
            broker.id_on(1, "paho-pub"),
        ],
        SCRIPT_LIMIT,
    );
    let want = format!("{{{},{}}}", expected("v311", false), expected("v5", true));
    assert_eq!(out.trim(), want);
}
