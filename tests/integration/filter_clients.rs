//! The README's content-filter examples, run with the clients a user would type them into:
//! Mosquitto's `mosquitto_sub` / `mosquitto_pub` (Debian `mosquitto-clients`) with the 3.1.1
//! `$filter/` prefix and with MQTT 5's `-D subscribe user-property filter …`, Eclipse paho's
//! Python client (`paho_filter.py`) and MQTT.js (`mqttjs_filter.js`, the README's JavaScript
//! example) with both forms. All of them are installed by `scripts/test` (the README's test
//! command); without them these tests fail and name it — they never skip.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::TestBroker;
use crate::run_script;

/// How long a client script may run.
const SCRIPT_LIMIT: Duration = Duration::from_secs(20);

/// A child process this test started, killed (by its own pid) if still running when dropped.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

fn require(program: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{program} is missing: scripts/test (the README's test command) installs it \
         (Debian package mosquitto-clients)"
    );
}

/// Starts `mosquitto_sub` with `args`, waits until it has its SUBACK (its `-d` output says so),
/// and returns it with a channel of the payload lines it prints.
fn mosquitto_sub(port: u16, args: &[&str]) -> (Spawned, mpsc::Receiver<String>) {
    require("mosquitto_sub");
    // Line-buffered (its stdout is a pipe), so each line is seen when printed.
    let mut child = Command::new("stdbuf")
        .args(["-oL", "mosquitto_sub"])
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-d", "-W", "10"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub starts");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            // `-d` output ("Client … received SUBACK", "Subscribed (mid: 1): 0") is not a payload.
            if line.starts_with("Subscribed (mid") {
                continue;
            }
            if line.starts_with("Client ") {
                if line.contains("received SUBACK") {
                    let _ = ready_tx.send(());
                }
                continue;
            }
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let child = Spawned(child);
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("mosquitto_sub got its SUBACK");
    (child, rx)
}

fn mosquitto_pub(port: u16, version: &str, topic: &str, message: &str, extra: &[&str]) {
    require("mosquitto_pub");
    let status = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", version])
        .args(["-q", "1", "-t", topic, "-m", message])
        .args(extra)
        .status()
        .expect("mosquitto_pub runs");
    assert!(status.success(), "mosquitto_pub {topic} {message}");
}

/// Lines from `rx` until `end` (included), or panics after 5 s.
fn lines_until(rx: &mpsc::Receiver<String>, end: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while got.last().map(String::as_str) != Some(end) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => got.push(l),
            Err(_) => panic!("{end:?} did not arrive; got {got:?}"),
        }
    }
    got
}

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
