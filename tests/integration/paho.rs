//! Interop with Eclipse paho-mqtt (Python): `paho_interop.py` runs an MQTT 3.1.1 and then an
//! MQTT 5 subscriber/publisher pair, homed on different shards, against an in-process broker and
//! prints what it saw as one JSON line (sorted keys, no spaces), compared here as a whole.
//!
//! Needs `python3` with paho-mqtt 2.x, which `scripts/test` (the README's test command) installs;
//! without them the test fails and names that script — it never skips.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::TestBroker;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/integration/paho_interop.py"
);

/// How long the script may run (it gives up by itself after 5 s per step).
const SCRIPT_LIMIT: Duration = Duration::from_secs(20);

fn require_paho() {
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

/// Runs the script and returns its standard output; panics with its stderr if it fails or
/// overruns `SCRIPT_LIMIT` (then it is killed — only this child, by its pid).
fn run_script(args: &[String]) -> String {
    let mut child = Command::new("python3")
        .arg(SCRIPT)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 starts");
    let deadline = Instant::now() + SCRIPT_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for python3") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("paho_interop.py did not finish within {SCRIPT_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        status.success(),
        "paho_interop.py failed ({status}):\n{err}"
    );
    out
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
    let out = run_script(&[
        broker.port().to_string(),
        broker.id_on(0, "paho-sub"),
        broker.id_on(1, "paho-pub"),
    ]);
    let want = format!("{{{},{}}}", expected("v311", false), expected("v5", true));
    assert_eq!(out.trim(), want);
}
