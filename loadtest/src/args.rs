//! The command line: the only place that reads flags. Produces an immutable [`Args`] with every
//! scenario default filled in, or an [`ArgError`] naming the flag, the value and what it accepts
//! (exit status 2). No I/O beyond reading `std::env::args` in `main`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use coremq::protocol::{ProtocolVersion, QoS};

use crate::payload::{FILTER_MARKER_LEN, HEADER_LEN};

pub const USAGE: &str = "\
coremq-loadtest: drive an MQTT 3.1.1 / 5 broker and report throughput, latency and losses

usage: coremq-loadtest --scenario NAME [options]

scenarios:
  fan-out    P publishers -> S subscribers on one topic (or --topics N independent groups)
  fan-in     P publishers on distinct topics -> S subscribers on a wildcard filter
  pairs      N publisher/subscriber pairs on distinct topics (--pairs)
  shared     P publishers -> S subscribers in one $share/lt/... group
  connect    connection storm: --connections concurrent connect/disconnect loops
  idle       hold --connections connections for --duration (RSS with --broker-pid); with
             --subscribe each holds one subscription of its own (QoS --qos)
  retained   publish --topics retained messages, then S subscribers fetch them all
  filtered   P publishers -> S subscribers on one topic, each with a content filter
             ($filter/payload contains \"~pK~\"/...) that passes publisher K = s % P only:
             every subscriber gets 1/P of the messages (needs a coremq broker)

target:
  --host ADDR           broker address (default 127.0.0.1; loopback only, see --allow-remote)
  --port PORT           default 1883
  --sub-host ADDR       subscribers (and idle holders) connect here instead (e.g. another
  --sub-port PORT       node of a cluster); defaults: --host and --port
  --username U          --password P
  --mqtt-version 3|5    3 = MQTT 3.1.1 (default), 5 = MQTT 5
  --allow-remote        allow a non-loopback target (refused by default)
  --tls                 connect over TLS (the broker's TLS or WSS listener); needs --cafile
  --cafile FILE         PEM CA certificate(s) the broker's certificate must chain to
  --server-name NAME    the name the broker's certificate must carry (default: --host)
  --ws                  MQTT over WebSocket (subprotocol mqtt), over TLS too with --tls
  --ws-path PATH        the WebSocket path (default /mqtt)

load:
  --qos 0|1|2           QoS of publishes and subscriptions (default 0)
  --payload BYTES       payload size, at least 28 (the stamp); default 64
  --topics N            topics (fan-out groups, shared topics, retained messages)
  --publishers N        --subscribers N     --pairs N     --connections N
  --inflight N          closed loop: unacknowledged messages per publisher (default 16)
  --placement same|cross  pairs against coremq: each pair's two clients on the same shard, or on
                        different ones (client ids chosen by coremq's home-shard hash)
  --shards N            the coremq broker's shard count, for --placement (default: CPUs here)
  --rate MSGS_PER_SEC   open loop: fixed total rate, latency from the intended send time
  --max-messages N      stop publishing after N messages in total (connects for `connect`)
  --threads N           pinned worker threads (default: one per CPU)
  --no-pin              do not pin worker threads to CPUs
  --persistent          persistent sessions (3.1.1 Clean Session 0; MQTT 5 Clean Start 0 and a
                        Session Expiry Interval of 300 s), e.g. to load a broker's store

time (seconds, or with a unit: 500ms, 10s, 2m):
  --duration D          measured period (default 10s)
  --warmup D            unmeasured period before it (default 1s)
  --drain D             wait for in-flight messages after publishing stops (default 5s)
  --max-runtime D       hard wall-clock limit of the whole run (default: all of the above + 60s)

output:
  --json FILE           one JSON document with parameters, throughput, percentiles, losses
  --report FILE.svg     latency percentile plot
  --broker-pid PID      report the broker's RSS (VmRSS) before and after

exit status: 0 ok; 1 losses at QoS 1/2, duplicates at QoS 2, errors or an aborted run; 2 bad flags
";

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    FanOut,
    FanIn,
    Pairs,
    Shared,
    Connect,
    Idle,
    Retained,
    Filtered,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::FanOut => "fan-out",
            Scenario::FanIn => "fan-in",
            Scenario::Pairs => "pairs",
            Scenario::Shared => "shared",
            Scenario::Connect => "connect",
            Scenario::Idle => "idle",
            Scenario::Retained => "retained",
            Scenario::Filtered => "filtered",
        }
    }

    /// Whether the scenario publishes a continuous stream of messages.
    pub fn streams(self) -> bool {
        matches!(
            self,
            Scenario::FanOut
                | Scenario::FanIn
                | Scenario::Pairs
                | Scenario::Shared
                | Scenario::Filtered
        )
    }
}

/// Where a pair's two clients land on a coremq broker's shards (`--placement`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Same,
    Cross,
}

/// The validated command line, with scenario defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    pub scenario: Scenario,
    /// Host as given (for the report).
    pub host: String,
    /// Where to connect: loopback unless `--allow-remote`.
    pub addr: SocketAddr,
    /// Where subscribers (and `idle` holders) connect: `--sub-host` / `--sub-port`, else `addr`
    /// (e.g. another node of a cluster than the publishers').
    pub sub_addr: SocketAddr,
    pub username: Option<String>,
    pub password: Option<String>,
    pub version: ProtocolVersion,
    pub qos: QoS,
    pub payload: usize,
    pub topics: u32,
    pub publishers: u32,
    pub subscribers: u32,
    /// `pairs` scenario: publisher/subscriber pairs.
    pub pairs: u32,
    /// `pairs` against coremq: put each pair's publisher and subscriber on the same shard or on
    /// different ones, for a broker with `shards` shards (client ids are chosen to hash so).
    pub placement: Option<(Placement, usize)>,
    /// `connect`: concurrent connect loops; `idle`: connections held.
    pub connections: u32,
    pub inflight: u32,
    /// Open loop when set: total messages per second across publishers.
    pub rate: Option<u64>,
    pub max_messages: Option<u64>,
    pub threads: usize,
    pub pin: bool,
    /// Persistent sessions (`--persistent`).
    pub persistent: bool,
    /// `idle`: each connection subscribes to a topic of its own.
    pub subscribe: bool,
    pub duration: Duration,
    pub warmup: Duration,
    pub drain: Duration,
    pub max_runtime: Duration,
    pub json: Option<PathBuf>,
    pub report: Option<PathBuf>,
    pub broker_pid: Option<u32>,
    /// `--tls`: the CA file and the name the broker's certificate must carry.
    pub tls: Option<(PathBuf, String)>,
    /// `--ws`: the path to upgrade on.
    pub ws: Option<String>,
    /// The invocation, for the JSON report.
    pub command_line: String,
}

/// A rejected command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError {
    /// `--help` / `-h`: print the usage and exit 0.
    Help,
    UnknownFlag(String),
    MissingValue(&'static str),
    Invalid {
        flag: &'static str,
        value: String,
        expected: &'static str,
    },
    Required(&'static str),
    /// A flag that makes no sense with the scenario or another flag.
    Conflict(String),
    /// A target outside 127.0.0.0/8 and ::1 without `--allow-remote`.
    NotLoopback(String),
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::Help => f.write_str("help requested"),
            ArgError::UnknownFlag(s) => write!(f, "unknown flag {s} (see --help)"),
            ArgError::MissingValue(flag) => write!(f, "{flag} needs a value"),
            ArgError::Invalid {
                flag,
                value,
                expected,
            } => write!(f, "{flag} {value:?}: expected {expected}"),
            ArgError::Required(flag) => write!(f, "{flag} is required (see --help)"),
            ArgError::Conflict(s) => f.write_str(s),
            ArgError::NotLoopback(host) => write!(
                f,
                "--host {host}: not a loopback address; pass --allow-remote to load a remote broker"
            ),
        }
    }
}

/// Flags as typed, before defaults.
#[derive(Default)]
struct Raw {
    scenario: Option<Scenario>,
    host: Option<String>,
    port: Option<u16>,
    sub_host: Option<String>,
    sub_port: Option<u16>,
    username: Option<String>,
    password: Option<String>,
    version: Option<ProtocolVersion>,
    qos: Option<QoS>,
    payload: Option<usize>,
    topics: Option<u32>,
    publishers: Option<u32>,
    subscribers: Option<u32>,
    pairs: Option<u32>,
    placement: Option<Placement>,
    shards: Option<usize>,
    connections: Option<u32>,
    inflight: Option<u32>,
    rate: Option<u64>,
    max_messages: Option<u64>,
    threads: Option<usize>,
    no_pin: bool,
    persistent: bool,
    allow_remote: bool,
    duration: Option<Duration>,
    warmup: Option<Duration>,
    drain: Option<Duration>,
    max_runtime: Option<Duration>,
    json: Option<PathBuf>,
    report: Option<PathBuf>,
    broker_pid: Option<u32>,
    subscribe: bool,
    tls: bool,
    cafile: Option<PathBuf>,
    server_name: Option<String>,
    ws: bool,
    ws_path: Option<String>,
}

/// Parses `argv` (without the program name). `cpus` is the default thread count.
pub fn parse(argv: &[String], cpus: usize) -> Result<Args, ArgError> {
    let mut raw = Raw::default();
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        // Switches take no value.
        match name {
            "-h" | "--help" => return Err(ArgError::Help),
            "--no-pin" => {
                raw.no_pin = true;
                continue;
            }
            "--allow-remote" => {
                raw.allow_remote = true;
                continue;
            }
            "--persistent" => {
                raw.persistent = true;
                continue;
            }
            "--tls" => {
                raw.tls = true;
                continue;
            }
            "--subscribe" => {
                raw.subscribe = true;
                continue;
            }
            "--ws" => {
                raw.ws = true;
                continue;
            }
            _ => {}
        }
        let flag = known_flag(name).ok_or_else(|| ArgError::UnknownFlag(arg.clone()))?;
        let value = match inline {
            Some(v) => v,
            None => it.next().cloned().ok_or(ArgError::MissingValue(flag))?,
        };
        apply(&mut raw, flag, value)?;
    }
    resolve(raw, argv, cpus)
}

fn known_flag(name: &str) -> Option<&'static str> {
    const FLAGS: &[&str] = &[
        "--scenario",
        "--host",
        "--port",
        "--sub-host",
        "--sub-port",
        "--username",
        "--password",
        "--mqtt-version",
        "--qos",
        "--payload",
        "--topics",
        "--publishers",
        "--subscribers",
        "--pairs",
        "--placement",
        "--shards",
        "--connections",
        "--inflight",
        "--rate",
        "--max-messages",
        "--threads",
        "--duration",
        "--warmup",
        "--drain",
        "--max-runtime",
        "--json",
        "--report",
        "--broker-pid",
        "--cafile",
        "--server-name",
        "--ws-path",
    ];
    FLAGS.iter().copied().find(|f| *f == name)
}

fn invalid(flag: &'static str, value: &str, expected: &'static str) -> ArgError {
    ArgError::Invalid {
        flag,
        value: value.to_string(),
        expected,
    }
}

/// An integer in `min..=max`.
fn int<T>(
    flag: &'static str,
    v: &str,
    min: T,
    max: T,
    expected: &'static str,
) -> Result<T, ArgError>
where
    T: std::str::FromStr + PartialOrd,
{
    match v.trim().replace('_', "").parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(invalid(flag, v, expected)),
    }
}

/// Seconds, or a number with `ms`, `s` or `m`.
fn duration(flag: &'static str, v: &str, max: Duration) -> Result<Duration, ArgError> {
    const EXPECTED: &str = "a duration such as 10, 10s, 500ms or 2m (at most 1h)";
    let (num, unit_ms) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60_000)
    } else {
        (v, 1_000)
    };
    let n: u64 = num.trim().parse().map_err(|_| invalid(flag, v, EXPECTED))?;
    let d = Duration::from_millis(n.saturating_mul(unit_ms));
    if d > max {
        return Err(invalid(flag, v, EXPECTED));
    }
    Ok(d)
}

fn apply(raw: &mut Raw, flag: &'static str, v: String) -> Result<(), ArgError> {
    const COUNT: &str = "an integer from 1 to 100000";
    const HOUR: Duration = Duration::from_secs(3600);
    match flag {
        "--scenario" => {
            raw.scenario = Some(match v.as_str() {
                "fan-out" => Scenario::FanOut,
                "fan-in" => Scenario::FanIn,
                "pairs" => Scenario::Pairs,
                "shared" => Scenario::Shared,
                "connect" => Scenario::Connect,
                "idle" => Scenario::Idle,
                "retained" => Scenario::Retained,
                "filtered" => Scenario::Filtered,
                _ => {
                    return Err(invalid(
                        flag,
                        &v,
                        "fan-out, fan-in, pairs, shared, connect, idle or retained",
                    ))
                }
            })
        }
        "--host" => raw.host = Some(v),
        "--sub-host" => raw.sub_host = Some(v),
        "--sub-port" => raw.sub_port = Some(int(flag, &v, 1, u16::MAX, "a port from 1 to 65535")?),
        "--port" => raw.port = Some(int(flag, &v, 1, u16::MAX, "a port from 1 to 65535")?),
        "--username" => raw.username = Some(v),
        "--password" => raw.password = Some(v),
        "--mqtt-version" => {
            raw.version = Some(match v.as_str() {
                "3" | "3.1.1" | "4" => ProtocolVersion::V3_1_1,
                "5" | "5.0" => ProtocolVersion::V5,
                _ => return Err(invalid(flag, &v, "3 (MQTT 3.1.1) or 5")),
            })
        }
        "--qos" => {
            raw.qos = Some(match v.as_str() {
                "0" => QoS::AtMostOnce,
                "1" => QoS::AtLeastOnce,
                "2" => QoS::ExactlyOnce,
                _ => return Err(invalid(flag, &v, "0, 1 or 2")),
            })
        }
        "--payload" => {
            raw.payload = Some(int(
                flag,
                &v,
                HEADER_LEN,
                16 << 20,
                "a size from 28 (the stamp: run, publisher, sequence, timestamp) to 16777216",
            )?)
        }
        "--topics" => raw.topics = Some(int(flag, &v, 1, 100_000, COUNT)?),
        "--publishers" => raw.publishers = Some(int(flag, &v, 1, 100_000, COUNT)?),
        "--subscribers" => raw.subscribers = Some(int(flag, &v, 1, 100_000, COUNT)?),
        "--pairs" => raw.pairs = Some(int(flag, &v, 1, 100_000, COUNT)?),
        "--placement" => {
            raw.placement = Some(match v.as_str() {
                "same" => Placement::Same,
                "cross" => Placement::Cross,
                _ => return Err(invalid(flag, &v, "same or cross")),
            })
        }
        "--shards" => raw.shards = Some(int(flag, &v, 1, 1024, "an integer from 1 to 1024")?),
        "--connections" => raw.connections = Some(int(flag, &v, 1, 100_000, COUNT)?),
        "--inflight" => {
            raw.inflight = Some(int(flag, &v, 1, 65_535, "an integer from 1 to 65535")?)
        }
        "--rate" => {
            raw.rate = Some(int(
                flag,
                &v,
                1,
                100_000_000,
                "messages per second, from 1 to 100000000",
            )?)
        }
        "--max-messages" => {
            raw.max_messages = Some(int(flag, &v, 1, u64::MAX / 2, "a positive integer")?)
        }
        "--threads" => raw.threads = Some(int(flag, &v, 1, 256, "an integer from 1 to 256")?),
        "--duration" => raw.duration = Some(duration(flag, &v, HOUR)?),
        "--warmup" => raw.warmup = Some(duration(flag, &v, HOUR)?),
        "--drain" => raw.drain = Some(duration(flag, &v, HOUR)?),
        "--max-runtime" => raw.max_runtime = Some(duration(flag, &v, 2 * HOUR)?),
        "--json" => raw.json = Some(PathBuf::from(v)),
        "--report" => raw.report = Some(PathBuf::from(v)),
        "--broker-pid" => raw.broker_pid = Some(int(flag, &v, 1, u32::MAX, "a process id")?),
        "--cafile" => raw.cafile = Some(PathBuf::from(v)),
        "--server-name" => raw.server_name = Some(v),
        "--ws-path" => {
            if !v.starts_with('/') {
                return Err(invalid(flag, &v, "a path starting with /"));
            }
            raw.ws_path = Some(v);
        }
        _ => return Err(ArgError::UnknownFlag(flag.to_string())),
    }
    Ok(())
}

/// Loopback check and address parsing. Host names other than `localhost` are not resolved
/// unless `--allow-remote` (resolving could itself send traffic off the machine).
fn target(host: &str, port: u16, allow_remote: bool) -> Result<SocketAddr, ArgError> {
    let ip = if host == "localhost" {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        match host.trim_start_matches('[').trim_end_matches(']').parse() {
            Ok(ip) => ip,
            Err(_) if allow_remote => {
                use std::net::ToSocketAddrs;
                return (host, port)
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| invalid("--host", host, "a resolvable host or an IP address"));
            }
            Err(_) => return Err(ArgError::NotLoopback(host.to_string())),
        }
    };
    if !ip.is_loopback() && !allow_remote {
        return Err(ArgError::NotLoopback(host.to_string()));
    }
    Ok(SocketAddr::new(ip, port))
}

fn resolve(raw: Raw, argv: &[String], cpus: usize) -> Result<Args, ArgError> {
    use Scenario::*;
    let scenario = raw.scenario.ok_or(ArgError::Required("--scenario"))?;
    let host = raw.host.unwrap_or_else(|| "127.0.0.1".to_string());
    let addr = target(&host, raw.port.unwrap_or(1883), raw.allow_remote)?;
    let sub_addr = match (&raw.sub_host, raw.sub_port) {
        (None, None) => addr,
        (h, p) => target(
            h.as_deref().unwrap_or(&host),
            p.unwrap_or(addr.port()),
            raw.allow_remote,
        )?,
    };
    let conflict = |flag: &str, why: &str| {
        Err(ArgError::Conflict(format!(
            "{flag} does not apply to --scenario {}: {why}",
            scenario.name()
        )))
    };
    if raw.pairs.is_some() && scenario != Pairs {
        return conflict("--pairs", "only `pairs` has pairs");
    }
    if (raw.placement.is_some() || raw.shards.is_some()) && scenario != Pairs {
        return conflict("--placement/--shards", "only `pairs` places pairs");
    }
    let shards = raw.shards.unwrap_or(cpus.max(1));
    if raw.placement == Some(Placement::Cross) && shards < 2 {
        return Err(ArgError::Conflict(
            "--placement cross needs --shards 2 or more".to_string(),
        ));
    }
    if raw.connections.is_some() && !matches!(scenario, Connect | Idle) {
        return conflict("--connections", "use --publishers / --subscribers");
    }
    if (raw.publishers.is_some() || raw.subscribers.is_some())
        && matches!(scenario, Pairs | Connect | Idle)
    {
        return conflict("--publishers/--subscribers", "it has its own count flag");
    }
    if raw.rate.is_some() && !scenario.streams() {
        return conflict("--rate", "it does not stream messages");
    }
    if raw.max_messages.is_some() && matches!(scenario, Retained | Idle) {
        return conflict("--max-messages", "it publishes a fixed set or nothing");
    }
    if raw.topics.is_some() && matches!(scenario, FanIn | Pairs | Connect | Idle | Filtered) {
        return conflict("--topics", "its topics follow from the client counts");
    }
    if raw.username.is_none() && raw.password.is_some() && raw.version != Some(ProtocolVersion::V5)
    {
        return Err(ArgError::Conflict(
            "--password needs --username in MQTT 3.1.1".to_string(),
        ));
    }
    let (publishers, subscribers, topics) = match scenario {
        FanOut => (1, 10, 1),
        FanIn => (10, 1, 1),
        Shared => (2, 4, 1),
        Retained => (1, 4, 1000),
        Filtered => (10, 100, 1),
        Pairs | Connect | Idle => (0, 0, 0),
    };
    if scenario == Filtered
        && raw
            .payload
            .is_some_and(|p| p < HEADER_LEN + FILTER_MARKER_LEN)
    {
        return Err(invalid(
            "--payload",
            &raw.payload.unwrap_or(0).to_string(),
            "at least 41 for `filtered` (the 28-byte stamp and a 13-byte publisher marker)",
        ));
    }
    let publishers = raw.publishers.unwrap_or(publishers);
    let topics = raw.topics.unwrap_or(topics);
    if scenario == FanOut && topics > publishers.max(raw.subscribers.unwrap_or(subscribers)) {
        return Err(ArgError::Conflict(format!(
            "--topics {topics}: fan-out groups need a publisher and a subscriber each"
        )));
    }
    if scenario == Retained && publishers > topics {
        return Err(ArgError::Conflict(format!(
            "--publishers {publishers} > --topics {topics}: each retained publisher needs a topic"
        )));
    }
    let duration = raw.duration.unwrap_or(Duration::from_secs(10));
    let warmup = raw.warmup.unwrap_or(Duration::from_secs(1));
    let drain = raw.drain.unwrap_or(Duration::from_secs(5));
    if raw.subscribe && scenario != Idle {
        return conflict("--subscribe", "only idle connections subscribe on request");
    }
    let tls = match (raw.tls, raw.cafile) {
        (true, Some(ca)) => Some((ca, raw.server_name.unwrap_or_else(|| host.clone()))),
        (true, None) => return Err(ArgError::Required("--cafile (with --tls)")),
        (false, Some(_)) => return Err(ArgError::Conflict("--cafile needs --tls".into())),
        (false, None) if raw.server_name.is_some() => {
            return Err(ArgError::Conflict("--server-name needs --tls".into()))
        }
        (false, None) => None,
    };
    let ws = match (raw.ws, raw.ws_path) {
        (true, path) => Some(path.unwrap_or_else(|| "/mqtt".into())),
        (false, Some(_)) => return Err(ArgError::Conflict("--ws-path needs --ws".into())),
        (false, None) => None,
    };
    if duration.is_zero() {
        return Err(invalid("--duration", "0", "more than 0"));
    }
    let max_runtime = raw
        .max_runtime
        .unwrap_or(duration + warmup + drain + Duration::from_secs(60));
    if max_runtime < duration + warmup {
        return Err(ArgError::Conflict(
            "--max-runtime is shorter than --warmup + --duration".to_string(),
        ));
    }
    Ok(Args {
        scenario,
        host,
        addr,
        sub_addr,
        username: raw.username,
        password: raw.password,
        version: raw.version.unwrap_or(ProtocolVersion::V3_1_1),
        qos: raw.qos.unwrap_or(QoS::AtMostOnce),
        payload: raw.payload.unwrap_or(64),
        topics,
        publishers,
        subscribers: raw.subscribers.unwrap_or(subscribers),
        pairs: raw.pairs.unwrap_or(if scenario == Pairs { 10 } else { 0 }),
        placement: raw.placement.map(|p| (p, shards)),
        connections: raw.connections.unwrap_or(match scenario {
            Connect => 50,
            Idle => 1000,
            _ => 0,
        }),
        inflight: raw
            .inflight
            .unwrap_or(if raw.rate.is_some() { 65_535 } else { 16 }),
        rate: raw.rate,
        max_messages: raw.max_messages,
        threads: raw.threads.unwrap_or(cpus.max(1)),
        pin: !raw.no_pin,
        persistent: raw.persistent,
        subscribe: raw.subscribe,
        duration,
        warmup,
        drain,
        max_runtime,
        json: raw.json,
        report: raw.report,
        broker_pid: raw.broker_pid,
        tls,
        ws,
        command_line: command_line(argv),
    })
}

/// `coremq-loadtest` followed by the arguments, quoted where a shell would need it.
fn command_line(argv: &[String]) -> String {
    let mut s = String::from("coremq-loadtest");
    for a in argv {
        s.push(' ');
        let plain = !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
        if plain {
            s.push_str(a);
        } else {
            s.push('\'');
            s.push_str(&a.replace('\'', r"'\''"));
            s.push('\'');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &str) -> Result<Args, ArgError> {
        let argv: Vec<String> = args.split_whitespace().map(String::from).collect();
        parse(&argv, 2)
    }

    #[test]
    fn defaults_per_scenario() {
        let a = p("--scenario fan-out").unwrap();
        assert_eq!((a.publishers, a.subscribers, a.topics), (1, 10, 1));
        assert_eq!(a.addr, "127.0.0.1:1883".parse().unwrap());
        assert_eq!(a.version, ProtocolVersion::V3_1_1);
        assert_eq!(
            (a.qos, a.payload, a.inflight, a.threads),
            (QoS::AtMostOnce, 64, 16, 2)
        );
        assert_eq!(a.duration, Duration::from_secs(10));
        assert_eq!(a.max_runtime, Duration::from_secs(76));
        assert_eq!(p("--scenario idle").unwrap().connections, 1000);
        assert_eq!(p("--scenario pairs").unwrap().pairs, 10);
        assert_eq!(p("--scenario retained").unwrap().topics, 1000);
    }

    #[test]
    fn full_command_line_with_inline_values() {
        let a = p(
            "--scenario=shared --host localhost --port=18831 --mqtt-version 5 --qos 2 \
                   --payload 128 --publishers 3 --subscribers 6 --rate 20_000 --duration 500ms \
                   --warmup 0 --drain 2s --threads 1 --no-pin --json out.json",
        )
        .unwrap();
        assert_eq!(a.scenario, Scenario::Shared);
        assert_eq!(a.addr, "127.0.0.1:18831".parse().unwrap());
        assert_eq!((a.version, a.qos), (ProtocolVersion::V5, QoS::ExactlyOnce));
        assert_eq!((a.publishers, a.subscribers, a.rate), (3, 6, Some(20_000)));
        assert_eq!(a.duration, Duration::from_millis(500));
        assert_eq!(a.warmup, Duration::ZERO);
        assert!(!a.pin);
        assert_eq!(a.inflight, 65_535);
        assert_eq!(a.json, Some(PathBuf::from("out.json")));
        assert!(a
            .command_line
            .starts_with("coremq-loadtest --scenario=shared --host"));
    }

    #[test]
    fn scenario_is_required() {
        assert_eq!(p("--qos 1"), Err(ArgError::Required("--scenario")));
    }

    #[test]
    fn unknown_flag_and_missing_value() {
        assert_eq!(
            p("--scenario fan-out --bogus 1"),
            Err(ArgError::UnknownFlag("--bogus".into()))
        );
        assert_eq!(
            p("--scenario fan-out --qos"),
            Err(ArgError::MissingValue("--qos"))
        );
        assert_eq!(p("-h"), Err(ArgError::Help));
    }

    #[test]
    fn invalid_values_name_flag_and_expectation() {
        for (args, flag) in [
            ("--scenario nope", "--scenario"),
            ("--scenario fan-out --qos 3", "--qos"),
            ("--scenario fan-out --mqtt-version 4.5", "--mqtt-version"),
            ("--scenario fan-out --port 0", "--port"),
            ("--scenario fan-out --port 70000", "--port"),
            ("--scenario fan-out --payload 27", "--payload"),
            ("--scenario fan-out --duration 10h", "--duration"),
            ("--scenario fan-out --duration abc", "--duration"),
            ("--scenario fan-out --duration 0", "--duration"),
            ("--scenario fan-out --inflight 0", "--inflight"),
            ("--scenario fan-out --threads 0", "--threads"),
            ("--scenario fan-out --publishers -1", "--publishers"),
        ] {
            match p(args) {
                Err(ArgError::Invalid { flag: f, .. }) => assert_eq!(f, flag, "{args}"),
                other => panic!("{args}: {other:?}"),
            }
        }
    }

    #[test]
    fn payload_error_mentions_the_stamp() {
        let err = p("--scenario fan-out --payload 10").unwrap_err();
        assert!(err.to_string().contains("28"), "{err}");
    }

    #[test]
    fn flags_that_do_not_fit_the_scenario() {
        for args in [
            "--scenario fan-out --pairs 3",
            "--scenario fan-out --connections 3",
            "--scenario pairs --publishers 3",
            "--scenario idle --rate 100",
            "--scenario retained --rate 100",
            "--scenario idle --max-messages 100",
            "--scenario fan-in --topics 4",
            "--scenario fan-out --topics 20",
            "--scenario retained --topics 2 --publishers 3",
            "--scenario fan-out --password x",
            "--scenario fan-out --duration 10 --max-runtime 5",
        ] {
            assert!(matches!(p(args), Err(ArgError::Conflict(_))), "{args}");
        }
        // MQTT 5 allows a password alone.
        assert!(p("--scenario fan-out --mqtt-version 5 --password x").is_ok());
    }

    #[test]
    fn non_loopback_targets_are_refused_without_opt_in() {
        assert_eq!(
            p("--scenario idle --host 10.0.0.1"),
            Err(ArgError::NotLoopback("10.0.0.1".into()))
        );
        assert_eq!(
            p("--scenario idle --host broker.example"),
            Err(ArgError::NotLoopback("broker.example".into()))
        );
        assert!(p("--scenario idle --host 127.0.0.2").is_ok());
        assert!(p("--scenario idle --host ::1").is_ok());
        assert!(p("--scenario idle --host [::1]").is_ok());
        // Parsing only: no traffic is sent by this test.
        let a = p("--scenario idle --host 10.0.0.1 --allow-remote").unwrap();
        assert_eq!(a.addr, "10.0.0.1:1883".parse().unwrap());
    }

    #[test]
    fn command_line_quotes_what_a_shell_would_split() {
        let argv = vec!["--username".to_string(), "a b".to_string()];
        assert_eq!(command_line(&argv), "coremq-loadtest --username 'a b'");
    }
}
