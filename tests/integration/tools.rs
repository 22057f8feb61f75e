//! Third-party client programs the integration tests drive: Mosquitto's `mosquitto_sub` and
//! `mosquitto_pub` (Debian `mosquitto-clients`), started as child processes and killed by their
//! own pid when a test ends. `scripts/test` installs them; without them a test fails and says so.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// A child process this test started, killed (by its own pid) if still running when dropped.
pub struct Spawned(pub Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

pub fn require(program: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{program} is missing: scripts/test (the README's test command) installs it \
         (see its requirements list)"
    );
}

/// Starts `mosquitto_sub` with `args`, waits until it has its SUBACK (its `-d` output says so),
/// and returns it with a channel of the payload lines it prints.
pub fn mosquitto_sub(port: u16, args: &[&str]) -> (Spawned, mpsc::Receiver<String>) {
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

pub fn mosquitto_pub(port: u16, version: &str, topic: &str, message: &str, extra: &[&str]) {
    assert!(
        try_mosquitto_pub(port, version, topic, message, extra),
        "mosquitto_pub {topic} {message}"
    );
}

/// Runs `mosquitto_pub` (QoS 1, to 127.0.0.1:`port`); whether it succeeded.
pub fn try_mosquitto_pub(
    port: u16,
    version: &str,
    topic: &str,
    message: &str,
    extra: &[&str],
) -> bool {
    require("mosquitto_pub");
    Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", version])
        .args(["-q", "1", "-t", topic, "-m", message])
        .args(extra)
        .stderr(Stdio::null())
        .status()
        .expect("mosquitto_pub runs")
        .success()
}

/// Lines from `rx` until `end` (included), or panics after 5 s.
pub fn lines_until(rx: &mpsc::Receiver<String>, end: &str) -> Vec<String> {
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

/// Where Debian's `mosquitto` package puts the broker (outside a normal user's PATH).
const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// A Mosquitto broker (Debian `mosquitto`) on a free loopback port, with the configuration lines
/// a test gives, in a directory of its own; killed by its pid when dropped.
pub struct Mosquitto {
    child: Option<Spawned>,
    pub port: u16,
    pub dir: std::path::PathBuf,
    lines: String,
}

impl Mosquitto {
    /// Starts it and waits until it accepts connections.
    pub fn start(name: &str, lines: &str) -> Mosquitto {
        require("mosquitto_passwd");
        assert!(
            Path::new(MOSQUITTO).exists(),
            "{MOSQUITTO} is missing: scripts/test (the README's test command) installs it"
        );
        let dir = std::env::temp_dir().join(format!("coremq-mosq-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut m = Mosquitto {
            child: None,
            port,
            dir,
            lines: lines.to_string(),
        };
        m.restart();
        m
    }

    /// Stops it (SIGTERM: with `persistence true` it saves its sessions) and waits for the exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill with our own child's pid.
            unsafe { libc::kill(c.0.id() as i32, libc::SIGTERM) };
            let _ = c.0.wait();
        }
    }

    /// Starts it (again) on the same port with the same configuration.
    pub fn restart(&mut self) {
        self.stop();
        let conf = self.dir.join("mosquitto.conf");
        // `user root`: started as root (CI), Mosquitto would otherwise switch to its own user,
        // which cannot read the test's files.
        let text = format!(
            "listener {} 127.0.0.1\nuser root\npersistence_location {}/\n{}\n",
            self.port,
            self.dir.display(),
            self.lines
        );
        std::fs::write(&conf, text).unwrap();
        let log = std::fs::File::create(self.dir.join("mosquitto.log")).unwrap();
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("mosquitto starts");
        self.child = Some(Spawned(child));
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {}: {}",
                self.port,
                std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
