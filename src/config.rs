//! The broker's configuration: the only reader of the environment.
//!
//! One table, `FLAGS`, lists every `COREMQ_*` flag with its default, what it accepts and what it
//! does. The same table parses the environment, prints `coremq --help` and renders the README's
//! flag table (`markdown_table`, checked by a test), so the three cannot drift.
//!
//! Conventions: booleans are `true`/`false`; durations are seconds unless a unit is given
//! (`500ms`, `10s`, `2m`, `1h`); sizes are bytes unless a unit is given (`64KiB`, `1MiB`, `1GiB`,
//! also `KB`/`MB`/`GB` as powers of 1000). A bad value is a `ConfigError` naming the flag, the value
//! and what it accepts; `main` prints it and exits with status 2.
//!
//! `Config` is immutable after start-up and shared read-only by every shard.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Most shards a broker can have (the mesh's `ShardSet` is one 64-bit word).
pub const MAX_SHARDS: usize = 64;

/// Everything configurable. Field names are the flag names without `COREMQ_`, in snake case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Address every shard listens on (SO_REUSEPORT).
    pub listen: SocketAddr,
    /// Address of the MQTT over TLS listener (`None`: off).
    pub tls_listen: Option<SocketAddr>,
    /// The server's certificate chain and private key (PEM), for the TLS and WSS listeners.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// CA certificates client certificates are verified against (`None`: no client certificates).
    pub tls_client_ca: Option<PathBuf>,
    /// Whether a client certificate is required (with `tls_client_ca`).
    pub tls_client_auth: ClientAuth,
    /// Certificate revocation lists client certificates are checked against.
    pub tls_crl: Option<PathBuf>,
    /// A client certificate's subject common name is the client's user name.
    pub tls_identity_as_username: bool,
    /// Addresses of the MQTT over WebSocket listeners, plain and over TLS (`None`: off).
    pub ws_listen: Option<SocketAddr>,
    pub wss_listen: Option<SocketAddr>,
    /// The HTTP path WebSocket clients upgrade on.
    pub ws_path: String,
    /// Origins browsers may connect from (empty: any).
    pub ws_origins: Vec<String>,
    /// Number of shards (pinned executors); 0 means one per online CPU.
    pub shards: usize,
    /// Pin each shard to a CPU.
    pub pin: bool,
    /// Largest packet accepted, fixed header included.
    pub max_packet_size: u32,
    /// Longest keep alive a client may ask for, in seconds.
    pub max_keepalive: u16,
    /// Unacknowledged QoS 1/2 messages in flight to one client.
    pub max_inflight: u16,
    /// Messages queued for one session (offline, or beyond the inflight window).
    pub max_queued_messages: usize,
    /// Queue QoS 0 messages for offline persistent sessions.
    pub queue_qos0: bool,
    /// Time a new TCP connection has to complete its CONNECT.
    pub connect_timeout: Duration,
    /// Time a closing connection has to take what was queued for it before the socket is dropped.
    pub close_timeout: Duration,
    /// Silence after which a connection's socket is parked with the shard's idle watcher and its
    /// task and buffers are freed (zero: never).
    pub park_idle_after: Duration,
    /// Log level: error, warn, info or debug.
    pub log: LogLevel,
    /// Spin this long before parking an idle shard (0 = off): lower latency, burns the core.
    pub spin_before_park: Duration,
    /// Topic aliases an MQTT 5 client may use towards the broker (0 = none).
    pub topic_alias_maximum: u16,
    /// QoS 2 messages a client may have unreleased (awaiting PUBREL) at once.
    pub receive_maximum: u16,
    /// Highest QoS the broker accepts and grants.
    pub max_qos: u8,
    /// Whether retained messages are supported.
    pub retain_available: bool,
    /// Response Information prefix for MQTT 5 clients that request it (empty = off).
    pub response_information: String,
    /// How shared subscription messages are spread over the group's members.
    pub shared_strategy: SharedStrategy,
    /// Connections served at once, across all shards.
    pub max_connections: usize,
    /// Bytes of topic and payload queued per session.
    pub max_queued_bytes: usize,
    /// Bytes waiting to be written to one connection, at most (beyond: congested).
    pub max_outbound_buffer: usize,
    /// How long a connection's socket may take nothing before the client is a slow reader.
    pub slow_reader_timeout: Duration,
    /// Subscriptions per client.
    pub max_subscriptions: usize,
    /// Longest content filter expression, in bytes.
    pub filter_max_length: usize,
    /// Deepest nesting of a content filter expression (and longest JSON path).
    pub filter_max_depth: usize,
    /// Most evaluation cost units in one content filter expression.
    pub filter_max_cost: usize,
    /// Longest topic name or filter, in bytes.
    pub max_topic_length: usize,
    /// Most levels in a topic name or filter.
    pub max_topic_levels: usize,
    /// Anonymous clients (no user name): `None` = allowed only without a password file.
    pub allow_anonymous: Option<bool>,
    /// Mosquitto-style password file (`username:hash` lines).
    pub password_file: Option<PathBuf>,
    /// Mosquitto-style ACL file.
    pub acl_file: Option<PathBuf>,
    /// Bridges to other brokers, in Mosquitto's bridge syntax.
    pub bridge_file: Option<PathBuf>,
    /// NATS server URLs of the cluster (empty: a single node).
    pub cluster_nats: Vec<String>,
    /// This node's name in the cluster.
    pub node_id: String,
    /// Pause publishers while a live subscriber of theirs falls behind (see `shard::flow`).
    pub flow_control: bool,
    /// Sockets that may be in their CONNECT phase at once, broker-wide (0 = no cap).
    pub max_connecting: usize,
    /// Connections one source address may hold (0 = no limit).
    pub max_connections_per_address: usize,
    /// New connections one source address may open: count per duration, also the burst.
    pub connection_rate_per_address: Option<(u32, Duration)>,
    /// Failed logins from one address allowed per window before it is banned.
    pub login_failures: Option<(u32, Duration)>,
    /// Failed logins of one user name allowed per window before it is banned.
    pub login_failures_per_user: Option<(u32, Duration)>,
    /// First ban for failed logins; each repeat doubles it, up to `login_ban_max`.
    pub login_ban: Duration,
    pub login_ban_max: Duration,
    /// Connects of one client id allowed per window before it is refused as flapping.
    pub flapping: Option<(u32, Duration)>,
    /// How long a flapping client id is refused.
    pub flapping_ban: Duration,
    /// Addresses, client ids and user names that may not connect.
    pub ban_file: Option<PathBuf>,
    /// Address of the HTTP metrics endpoint (`None`: off).
    pub metrics_listen: Option<SocketAddr>,
    /// How often the `$SYS` topics are published (zero: never).
    pub sys_interval: Duration,
    /// Where sessions, queued and in-flight messages and retained messages are kept across
    /// restarts (`None`: in memory only).
    pub data_dir: Option<PathBuf>,
    /// When what the store wrote reaches the disk, and whether acknowledgements wait for it.
    pub fsync: Fsync,
    /// With `Fsync::Batch`: how long records gather before one sync covers them all.
    pub fsync_interval: Duration,
}

/// `COREMQ_FSYNC`: when the store's writes reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// Sync as soon as a record waits and no sync is running (records that arrive during a sync
    /// share the next one); PUBACK / PUBREC / PUBCOMP wait for it.
    Always,
    /// Like `Always`, but a sync starts `COREMQ_FSYNC_INTERVAL` after the first record waiting
    /// for it, so that one sync covers more records.
    Batch,
    /// Write every tick and leave syncing to the operating system: acknowledgements do not wait.
    /// Survives the broker's crash (the page cache has it), not the host's.
    Never,
}

/// `COREMQ_TLS_CLIENT_AUTH`: whether TLS clients must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every TLS client presents a certificate signed by COREMQ_TLS_CLIENT_CA.
    Required,
    /// A client may present one (it is then verified) or not.
    Optional,
}

/// `COREMQ_SHARED_STRATEGY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedStrategy {
    /// Rotate over the shards with members, then over each shard's members.
    RoundRobin,
    /// Prefer a member on the publisher's shard (no cross-core hop); rotate otherwise.
    LocalFirst,
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

/// A flag whose value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub flag: String,
    pub value: String,
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid value {:?} for {}: expected {}",
            self.value, self.flag, self.expected
        )
    }
}

impl std::error::Error for ConfigError {}

/// One row of the flag table.
pub struct Flag {
    /// Full environment variable name.
    pub name: &'static str,
    /// Default value, in the flag's own syntax.
    pub default: &'static str,
    /// What the flag accepts (used in errors and help).
    pub accepts: &'static str,
    pub help: &'static str,
    /// Parses a value into the config; `Err(())` means "not what `accepts` says".
    set: fn(&mut Config, &str) -> Result<(), ()>,
}

/// Every flag coremq reads.
pub static FLAGS: &[Flag] = &[
    Flag {
        name: "COREMQ_LISTEN",
        default: "127.0.0.1:1883",
        accepts: "an IP address and port, e.g. 0.0.0.0:1883 or [::]:1883",
        help: "Address every shard listens on (SO_REUSEPORT: the kernel spreads connections). \
               The default serves this host only, as Mosquitto 2 does; 0.0.0.0:1883 serves the \
               network (then anonymous clients are refused unless COREMQ_ALLOW_ANONYMOUS=true).",
        set: |c, v| {
            c.listen = v.parse().map_err(|_| ())?;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_TLS_LISTEN",
        default: "",
        accepts: "an IP address and port, e.g. 0.0.0.0:8883, or empty for none",
        help: "Address of the MQTT over TLS listener (TLS 1.2 and 1.3, rustls; 8883 is the \
               convention). Needs COREMQ_TLS_CERT and COREMQ_TLS_KEY. Everything the plain \
               listener does works here too.",
        set: |c, v| {
            c.tls_listen = optional_address(v)?;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_TLS_CERT",
        default: "",
        accepts: "a PEM file path (the server certificate first, then its chain), or empty",
        help: "The server's certificate for the TLS and WSS listeners. SIGHUP re-reads it and \
               the key (new connections get the new ones; a file that does not load keeps the \
               old ones, and the log says why).",
        set: |c, v| {
            c.tls_cert = optional_path(v);
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_TLS_KEY",
        default: "",
        accepts: "a PEM file path (PKCS#8, PKCS#1 or SEC1 private key), or empty",
        help: "The private key of COREMQ_TLS_CERT.",
        set: |c, v| {
            c.tls_key = optional_path(v);
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_TLS_CLIENT_CA",
        default: "",
        accepts: "a PEM file path (one or more CA certificates), or empty for no client certificates",
        help: "Mutual TLS: client certificates are verified against these CAs (chain, validity \
               dates, client-auth usage). SIGHUP re-reads it.",
        set: |c, v| {
            c.tls_client_ca = optional_path(v);
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_TLS_CLIENT_AUTH",
        default: "required",
        accepts: "required or optional",
        help: "With COREMQ_TLS_CLIENT_CA: whether every TLS client must present a valid \
               certificate (required: others fail the handshake) or may connect without one \
               (optional: a certificate presented is still verified).",
        set: |c, v| {
            c.tls_client_auth = match v {
                "required" => ClientAuth::Required,
                "optional" => ClientAuth::Optional,
                _ => return Err(()),
            };
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_TLS_CRL",
        default: "",
        accepts: "a PEM file path (one or more X.509 CRLs), or empty for none",
        help: "With COREMQ_TLS_CLIENT_CA: client certificates are also checked against these \
               certificate revocation lists (Mosquitto's crlfile); a revoked certificate fails the \
               handshake. SIGHUP re-reads it, so revoking a lost device needs no restart.",
        set: |c, v| {
            c.tls_crl = optional_path(v);
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_TLS_IDENTITY_AS_USERNAME",
        default: "false",
        accepts: "true or false",
        help: "On the TLS and WSS listeners, the client certificate's subject common name (CN) \
               is the client's user name for the ACL, whatever CONNECT says, and stands in for \
               the password (Mosquitto's use_identity_as_username). A client without a \
               certificate, or with one without a CN, is refused as not authorized. Needs \
               COREMQ_TLS_CLIENT_CA.",
        set: |c, v| {
            c.tls_identity_as_username = parse_bool(v)?;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_WS_LISTEN",
        default: "",
        accepts: "an IP address and port, e.g. 0.0.0.0:8080, or empty for none",
        help: "Address of the MQTT over WebSocket listener (binary frames, subprotocol mqtt or \
               mqttv3.1, at COREMQ_WS_PATH).",
        set: |c, v| {
            c.ws_listen = optional_address(v)?;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_WSS_LISTEN",
        default: "",
        accepts: "an IP address and port, e.g. 0.0.0.0:8081, or empty for none",
        help: "Address of the MQTT over WebSocket over TLS listener (COREMQ_TLS_CERT and _KEY, \
               and client certificates as on the TLS listener).",
        set: |c, v| {
            c.wss_listen = optional_address(v)?;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_WS_PATH",
        default: "/mqtt",
        accepts: "an HTTP path starting with /",
        help: "The path WebSocket clients connect to (ws://host:port/mqtt); other paths get \
               HTTP 404.",
        set: |c, v| {
            if !v.starts_with('/') || v.contains(|ch: char| ch.is_whitespace() || ch == '?') {
                return Err(());
            }
            c.ws_path = v.to_string();
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_WS_ORIGINS",
        default: "",
        accepts: "comma-separated origins, e.g. https://app.example.com, or empty for any",
        help: "Browsers' Origin values allowed to open WebSocket connections (others get HTTP \
               403). Clients that send no Origin (not browsers) are not affected.",
        set: |c, v| {
            c.ws_origins = v
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(|o| o.trim_end_matches('/').to_string())
                .collect();
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_SHARDS",
        default: "0",
        accepts: "an integer from 0 to 64 (0 = one per online CPU)",
        help: "Number of shards: pinned executors, each owning its connections and sessions.",
        set: |c, v| {
            c.shards = parse_int(v, 0, MAX_SHARDS)?;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_PIN",
        default: "true",
        accepts: "true or false",
        help: "Pin shard i to CPU i (modulo the online CPUs).",
        set: |c, v| {
            c.pin = parse_bool(v)?;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_MAX_PACKET_SIZE",
        default: "1MiB",
        accepts: "a size from 16 bytes to 256MiB, e.g. 65536, 64KiB, 1MiB",
        help: "Largest packet accepted (checked on the fixed header, before buffering); MQTT 5 \
               clients are told in CONNACK and get reason 0x95 when they exceed it.",
        set: |c, v| {
            c.max_packet_size = parse_size(v, 16, 268_435_460)? as u32;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_MAX_KEEPALIVE",
        default: "65535",
        accepts: "a duration from 1s to 65535s",
        help: "Longest keep alive a client may use. MQTT 5 clients asking for more (or for \
               none, when this is below 65535) are told this value as Server Keep Alive; MQTT \
               3.1/3.1.1 clients asking for more are refused (CONNACK return code 2).",
        set: |c, v| {
            let d = parse_duration(v)?;
            if d < Duration::from_secs(1) || d > Duration::from_secs(65535) {
                return Err(());
            }
            c.max_keepalive = d.as_secs() as u16;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_MAX_INFLIGHT",
        default: "20",
        accepts: "an integer from 1 to 65535",
        help: "Unacknowledged QoS 1 and 2 messages sent to one client at a time; further \
               messages wait in the session's queue.",
        set: |c, v| {
            c.max_inflight = parse_int(v, 1, 65535)? as u16;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_MAX_QUEUED_MESSAGES",
        default: "1000",
        accepts: "an integer from 0 to 10000000",
        help: "Messages queued per session (offline, or waiting for the inflight window); \
               messages beyond it are dropped and counted.",
        set: |c, v| {
            c.max_queued_messages = parse_int(v, 0, 10_000_000)?;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_QUEUE_QOS0",
        default: "false",
        accepts: "true or false",
        help: "Also queue QoS 0 messages for offline persistent sessions (as Mosquitto's \
               queue_qos0_messages).",
        set: |c, v| {
            c.queue_qos0 = parse_bool(v)?;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_CONNECT_TIMEOUT",
        default: "10s",
        accepts: "a duration from 100ms to 1h",
        help: "A TCP connection that has not sent a complete CONNECT within this time is closed.",
        set: |c, v| {
            let d = parse_duration(v)?;
            if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
                return Err(());
            }
            c.connect_timeout = d;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_CLOSE_TIMEOUT",
        default: "5s",
        accepts: "a duration from 10ms to 1h",
        help: "When a connection ends (DISCONNECT, takeover, protocol error, shutdown), what was \
               already queued for the client is still written; a client that does not read it \
               within this time is cut off, so a closing connection never lingers.",
        set: |c, v| {
            let d = parse_duration(v)?;
            if d < Duration::from_millis(10) || d > Duration::from_secs(3600) {
                return Err(());
            }
            c.close_timeout = d;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_PARK_IDLE_AFTER",
        default: "2s",
        accepts: "0 (never), or a duration from 10ms to 1h",
        help: "A connection with nothing to read or write for this long is parked: its socket \
               waits in the shard's shared idle watcher (one epoll set) and its task, timers and \
               buffers are freed, so an idle connection costs little more than its session. The \
               next packet from the client, a delivery for it, its keep alive running out, a \
               takeover or shutdown brings it back at once.",
        set: |c, v| {
            let d = parse_duration(v)?;
            if !d.is_zero() && (d < Duration::from_millis(10) || d > Duration::from_secs(3600)) {
                return Err(());
            }
            c.park_idle_after = d;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_LOG",
        default: "info",
        accepts: "error, warn, info or debug",
        help: "Log verbosity (to standard error).",
        set: |c, v| {
            c.log = match v {
                "error" => LogLevel::Error,
                "warn" => LogLevel::Warn,
                "info" => LogLevel::Info,
                "debug" => LogLevel::Debug,
                _ => return Err(()),
            };
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_SPIN_BEFORE_PARK",
        default: "0",
        accepts: "a duration from 0 to 1s, e.g. 100us",
        help: "Spin this long before an idle shard parks: lower wake-up latency for a busy \
               core. Off by default.",
        set: |c, v| {
            let d = parse_duration(v)?;
            if d > Duration::from_secs(1) {
                return Err(());
            }
            c.spin_before_park = d;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_TOPIC_ALIAS_MAXIMUM",
        default: "10",
        accepts: "an integer from 0 to 65535",
        help: "Topic aliases an MQTT 5 client may define towards the broker (told in CONNACK; \
               misuse gets DISCONNECT 0x94). Aliases towards clients follow each client's own \
               Topic Alias Maximum.",
        set: |c, v| {
            c.topic_alias_maximum = parse_int(v, 0, 65535)? as u16;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_RECEIVE_MAXIMUM",
        default: "1024",
        accepts: "an integer from 1 to 65535",
        help: "QoS 2 messages an MQTT 5 client may have unreleased (awaiting PUBREL) at once; \
               told in CONNACK, exceeding it gets DISCONNECT 0x93.",
        set: |c, v| {
            c.receive_maximum = parse_int(v, 1, 65535)? as u16;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_MAX_QOS",
        default: "2",
        accepts: "0, 1 or 2",
        help: "Highest QoS accepted and granted. Subscriptions are granted at most this; MQTT 5 \
               clients are told in CONNACK and a PUBLISH above it gets DISCONNECT 0x9B; MQTT \
               3.1.1 connections publishing above it are closed.",
        set: |c, v| {
            c.max_qos = parse_int(v, 0, 2)? as u8;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_RETAIN_AVAILABLE",
        default: "true",
        accepts: "true or false",
        help: "Whether retained messages are supported. When false, MQTT 5 clients are told in \
               CONNACK and a retained PUBLISH gets DISCONNECT 0x9A; 3.1.1 connections are closed.",
        set: |c, v| {
            c.retain_available = parse_bool(v)?;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_RESPONSE_INFORMATION",
        default: "",
        accepts: "a topic prefix without wildcards, or empty for none",
        help: "MQTT 5 clients that set Request Response Information get Response Information \
               PREFIX/CLIENT_ID/ in CONNACK, a topic base for their request/response replies.",
        set: |c, v| {
            if v.contains(['+', '#']) {
                return Err(());
            }
            c.response_information = v.to_string();
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_SHARED_STRATEGY",
        default: "round-robin",
        accepts: "round-robin or local-first",
        help: "How a $share/{group}/{filter} group's messages are spread: round-robin over the \
               shards with members and then over each shard's members; local-first keeps a \
               message on the publisher's shard when a member there can take it. Either way a \
               member that is offline or has a full window is skipped.",
        set: |c, v| {
            c.shared_strategy = match v {
                "round-robin" => SharedStrategy::RoundRobin,
                "local-first" => SharedStrategy::LocalFirst,
                _ => return Err(()),
            };
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_MAX_CONNECTIONS",
        default: "100000",
        accepts: "an integer from 1 to 10000000",
        help: "Connections served at once across all shards. Beyond it a CONNECT gets CONNACK \
               0x97 (MQTT 5) or return code 3 (3.1.1) and the connection is closed. Each \
               connection uses a file descriptor: raise `ulimit -n` to match.",
        set: |c, v| {
            c.max_connections = parse_int(v, 1, 10_000_000)?;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_MAX_QUEUED_BYTES",
        default: "64MiB",
        accepts: "a size from 1KiB to 64GiB",
        help: "Topic and payload bytes queued per session (with COREMQ_MAX_QUEUED_MESSAGES, \
               whichever is reached first); messages beyond it are dropped and counted.",
        set: |c, v| {
            c.max_queued_bytes = parse_size(v, 1 << 10, 64 << 30)? as usize;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_MAX_OUTBOUND_BUFFER",
        default: "8MiB",
        accepts: "a size from 4KiB to 1GiB",
        help: "Most bytes waiting to be written to one connection. A client that keeps reading \
               may fall this far behind (a pause of its own, a burst) and lose nothing; beyond \
               it, as for a slow reader, QoS 0 messages to it are dropped (counted) and QoS 1/2 \
               messages wait in its session queue until the buffer drains. Other subscribers are \
               never held up.",
        set: |c, v| {
            c.max_outbound_buffer = parse_size(v, 4 << 10, 1 << 30)? as usize;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_SLOW_READER_TIMEOUT",
        default: "1s",
        accepts: "a duration from 0 to 1h (0: a full socket makes a slow reader at once)",
        help: "A connection whose socket has taken no bytes for this long while something waits \
               to be written is a slow reader: QoS 0 messages to it are dropped (counted) and \
               QoS 1/2 messages wait in its session queue until it reads again. A client that \
               took bytes more recently is keeping up, however far behind it is (up to \
               COREMQ_MAX_OUTBOUND_BUFFER).",
        set: |c, v| {
            let d = parse_duration(v)?;
            if d > Duration::from_secs(3600) {
                return Err(());
            }
            c.slow_reader_timeout = d;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_MAX_SUBSCRIPTIONS",
        default: "10000",
        accepts: "an integer from 1 to 10000000",
        help: "Subscriptions per client; a SUBSCRIBE beyond it gets 0x97 (MQTT 5) or 0x80 \
               (3.1.1) for the filters over the limit.",
        set: |c, v| {
            c.max_subscriptions = parse_int(v, 1, 10_000_000)?;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_FILTER_MAX_LENGTH",
        default: "1024",
        accepts: "an integer from 1 to 65535",
        help: "Longest content filter expression ($filter/ prefix or the MQTT 5 `filter` user \
               property), in bytes; a longer one gets SUBACK 0x83 (MQTT 5) or 0x80 (3.1.1).",
        set: |c, v| {
            c.filter_max_length = parse_int(v, 1, 65_535)?;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_FILTER_MAX_DEPTH",
        default: "16",
        accepts: "an integer from 1 to 64",
        help: "Deepest nesting of parentheses and `!` in a content filter expression, and the \
               longest JSON field path; deeper gets SUBACK 0x83 (MQTT 5) or 0x80 (3.1.1).",
        set: |c, v| {
            c.filter_max_depth = parse_int(v, 1, 64)?;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_FILTER_MAX_COST",
        default: "128",
        accepts: "an integer from 1 to 100000",
        help: "Most evaluation cost units in one content filter expression (one per condition, \
               operand, path step and list item): bounds the time a filter takes per message; \
               beyond it SUBACK 0x83 (MQTT 5) or 0x80 (3.1.1).",
        set: |c, v| {
            c.filter_max_cost = parse_int(v, 1, 100_000)?;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_MAX_TOPIC_LENGTH",
        default: "65535",
        accepts: "an integer from 1 to 65535",
        help: "Longest topic name or filter in bytes. A longer topic in PUBLISH ends the \
               connection (DISCONNECT 0x90 in MQTT 5); a longer filter gets SUBACK 0x8F / 0x80.",
        set: |c, v| {
            c.max_topic_length = parse_int(v, 1, 65535)?;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_MAX_TOPIC_LEVELS",
        default: "128",
        accepts: "an integer from 1 to 65535",
        help: "Most levels ('/'-separated) in a topic name or filter, with the same answers as \
               COREMQ_MAX_TOPIC_LENGTH.",
        set: |c, v| {
            c.max_topic_levels = parse_int(v, 1, 65535)?;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_ALLOW_ANONYMOUS",
        default: "auto",
        accepts: "auto, true or false",
        help: "Whether clients without a user name may connect (else CONNACK 0x87 / return code \
               5). auto: only while every listener (MQTT, TLS, WebSocket) is on a loopback \
               address (127.0.0.0/8, ::1) and no password file is configured; true must be set to allow them on any other \
               address. Start-up says which applies and why.",
        set: |c, v| {
            c.allow_anonymous = match v {
                "auto" => None,
                other => Some(parse_bool(other)?),
            };
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_PASSWORD_FILE",
        default: "",
        accepts: "a file path, or empty for none",
        help:
            "Password file: username:hash lines, Mosquitto 2.x $6$/$7$ hashes as they are; write \
               it with `coremq passwd FILE USER`. Wrong credentials get CONNACK 0x86 / return \
               code 4. SIGHUP re-reads it.",
        set: |c, v| {
            c.password_file = (!v.is_empty()).then(|| PathBuf::from(v));
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_ACL_FILE",
        default: "",
        accepts: "a file path, or empty for none",
        help: "ACL file in Mosquitto's acl_file syntax (user, topic, pattern with %c and %u). \
               Denied SUBSCRIBE filters get 0x80 / 0x87, denied PUBLISH is not routed (MQTT 5 \
               PUBACK/PUBREC 0x87). SIGHUP re-reads it.",
        set: |c, v| {
            c.acl_file = (!v.is_empty()).then(|| PathBuf::from(v));
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_BRIDGE_FILE",
        default: "",
        accepts: "a file path, or empty for none",
        help: "Bridges to other MQTT brokers: the `connection` blocks of a mosquitto.conf \
               (address, topic PATTERN in|out|both QOS LOCAL_PREFIX REMOTE_PREFIX, \
               remote_clientid, remote_username, remote_password, cleansession, \
               bridge_protocol_version, bridge_cafile, keepalive_interval, restart_timeout, ...). \
               An unknown or malformed line stops start-up naming file and line. SIGHUP re-reads \
               it.",
        set: |c, v| {
            c.bridge_file = (!v.is_empty()).then(|| PathBuf::from(v));
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_CLUSTER_NATS",
        default: "",
        accepts: "comma-separated NATS URLs (nats://host:port or host:port), or empty for a single node",
        help: "Join a cluster of coremq nodes through these NATS servers (nats-server 2.9+ with \
               JetStream): messages, shared subscriptions, client ids and retained messages span \
               the nodes. See \"Running a cluster\" in the README.",
        set: |c, v| {
            c.cluster_nats = Vec::new();
            for url in v.split(',').map(str::trim).filter(|u| !u.is_empty()) {
                let rest = url.strip_prefix("nats://").unwrap_or(url);
                let ok = match rest.rsplit_once(':') {
                    Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
                    None => false,
                };
                if !ok {
                    return Err(());
                }
                c.cluster_nats.push(url.to_string());
            }
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_NODE_ID",
        default: "",
        accepts: "1 to 64 characters of A-Z a-z 0-9 _ -, or empty for the host name",
        help: "This node's name in the cluster (COREMQ_CLUSTER_NATS); unique per node. Empty: the \
               host name.",
        set: |c, v| {
            if v.len() > 64 || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                return Err(());
            }
            c.node_id = v.to_string();
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_FLOW_CONTROL",
        default: "true",
        accepts: "true or false",
        help: "When a connected subscriber that keeps acknowledging falls behind (its queue \
               holding more than 5 ms of what it acknowledges per second: at least 64 messages, \
               at most half of COREMQ_MAX_QUEUED_MESSAGES), stop reading from the publishers \
               feeding it until it is back under half that, so acknowledged QoS 1/2 messages are \
               not dropped (meanwhile only COREMQ_MAX_QUEUED_BYTES bounds its queue). A subscriber that \
               acknowledges nothing for 1 s is a slow consumer: it holds nobody back and its \
               queue overflows (counted drops) instead. false: never slow publishers down; queues \
               overflow.",
        set: |c, v| {
            c.flow_control = parse_bool(v)?;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_MAX_CONNECTING",
        default: "10000",
        accepts: "an integer from 0 to 10000000 (0 = no cap)",
        help: "Sockets that may be in their CONNECT phase at once, across the broker. Beyond it \
               a new connection is closed at once, so sockets that never complete CONNECT (a \
               half-open flood) cannot take the places under COREMQ_MAX_CONNECTIONS.",
        set: |c, v| {
            c.max_connecting = parse_int(v, 0, 10_000_000)?;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_MAX_CONNECTIONS_PER_ADDRESS",
        default: "1000",
        accepts: "an integer from 0 to 10000000 (0 = no limit)",
        help: "Connections one source address may hold. Beyond it a new connection from that \
               address is closed at once.",
        set: |c, v| {
            c.max_connections_per_address = parse_int(v, 0, 10_000_000)?;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_CONNECTION_RATE_PER_ADDRESS",
        default: "100/1s",
        accepts: "0 (no limit), or a count and a duration, e.g. 100/1s or 600/1m",
        help: "New connections one source address may open: a token bucket that holds the count \
               (the burst) and refills it over the duration. A connection over the rate is closed \
               at once.",
        set: |c, v| {
            c.connection_rate_per_address = parse_rate(v)?;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_LOGIN_FAILURES",
        default: "5/1m",
        accepts: "0 (never ban), or a count and a duration, e.g. 5/1m",
        help: "Failed logins (wrong user name or password, failed enhanced authentication) one \
               source address may make within the duration; the next one bans the address for \
               COREMQ_LOGIN_BAN. While banned, its CONNECTs get 0x8A Banned (3.1.1: return code \
               5) without a password check.",
        set: |c, v| {
            c.login_failures = parse_rate(v)?;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_LOGIN_FAILURES_PER_USER",
        default: "20/1m",
        accepts: "0 (never ban), or a count and a duration, e.g. 20/1m",
        help: "Failed logins of one user name within the duration, from any address; the next \
               one bans the user name for COREMQ_LOGIN_BAN (against guessing from many addresses; \
               while banned, that user cannot log in either).",
        set: |c, v| {
            c.login_failures_per_user = parse_rate(v)?;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_LOGIN_BAN",
        default: "10s",
        accepts: "a duration from 1s to 1h",
        help: "The first ban for failed logins. Each further ban of the same address or user name \
               (while it is still remembered) doubles it, up to COREMQ_LOGIN_BAN_MAX.",
        set: |c, v| {
            let d = parse_duration(v)?;
            if d < Duration::from_secs(1) || d > Duration::from_secs(3600) {
                return Err(());
            }
            c.login_ban = d;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_LOGIN_BAN_MAX",
        default: "1h",
        accepts: "a duration from 1s to 24h",
        help: "The longest ban for failed logins.",
        set: |c, v| {
            let d = parse_duration(v)?;
            if d < Duration::from_secs(1) || d > Duration::from_secs(86_400) {
                return Err(());
            }
            c.login_ban_max = d;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_FLAPPING",
        default: "15/1m",
        accepts: "0 (off), or a count and a duration, e.g. 15/1m",
        help: "Connections of one client id that may end within the duration; its next connect \
               is refused (0x8A Banned, 3.1.1: return code 5), and so is every connect for \
               COREMQ_FLAPPING_BAN, so a device in a reconnect loop cannot churn its session.",
        set: |c, v| {
            c.flapping = parse_rate(v)?;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_FLAPPING_BAN",
        default: "5m",
        accepts: "a duration from 1s to 24h",
        help: "How long a flapping client id is refused.",
        set: |c, v| {
            let d = parse_duration(v)?;
            if d < Duration::from_secs(1) || d > Duration::from_secs(86_400) {
                return Err(());
            }
            c.flapping_ban = d;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_BAN_FILE",
        default: "",
        accepts: "a file path, or empty for none",
        help:
            "Ban list: `address IP` or `address IP/PREFIX`, `client_id ID`, `username NAME`, one a \
               line, # comments. A banned address is refused 0x8A Banned (3.1.1: return code 5), \
               as are banned client ids and user names. SIGHUP re-reads it.",
        set: |c, v| {
            c.ban_file = (!v.is_empty()).then(|| PathBuf::from(v));
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_METRICS_LISTEN",
        default: "",
        accepts: "an IP address and port, e.g. 127.0.0.1:9883, or empty for none",
        help: "Address of the HTTP endpoint serving GET /metrics (Prometheus text format) and GET \
               /healthz (200 while every shard runs, 503 while starting or stopping). Off by \
               default; 127.0.0.1:9883 is coremq's conventional port.",
        set: |c, v| {
            c.metrics_listen = if v.is_empty() {
                None
            } else {
                Some(v.parse().map_err(|_| ())?)
            };
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_SYS_INTERVAL",
        default: "10s",
        accepts: "0 (never), or a duration from 1s to 1h",
        help: "How often the $SYS/broker/... topics (Mosquitto's names: clients, messages, bytes, \
               load averages, uptime, version) are published, retained. The ACL applies to them \
               like to any topic.",
        set: |c, v| {
            let d = parse_duration(v)?;
            if !d.is_zero() && (d < Duration::from_secs(1) || d > Duration::from_secs(3600)) {
                return Err(());
            }
            c.sys_interval = d;
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_DATA_DIR",
        default: "",
        accepts: "a directory path (created if missing), or empty for memory only",
        help: "Keep sessions (subscriptions, queued and in-flight QoS 1/2 messages, inbound QoS 2 \
               ids, delayed wills) and retained messages in this directory, one log per shard, \
               and recover them at start-up. Empty: nothing survives a restart. The systemd unit \
               uses /var/lib/coremq.",
        set: |c, v| {
            c.data_dir = (!v.is_empty()).then(|| PathBuf::from(v));
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_FSYNC",
        default: "batch",
        accepts: "always, batch or never",
        help: "With COREMQ_DATA_DIR: always = PUBACK/PUBREC/PUBCOMP go out only once the message \
               is on disk, one fdatasync per group of records; batch = the same promise, each \
               sync waiting COREMQ_FSYNC_INTERVAL to cover more records; never = no sync and no \
               waiting (survives a broker crash, not a power loss).",
        set: |c, v| {
            c.fsync = match v {
                "always" => Fsync::Always,
                "batch" => Fsync::Batch,
                "never" => Fsync::Never,
                _ => return Err(()),
            };
            Ok(())
        },
    },
    Flag {
        name: "COREMQ_FSYNC_INTERVAL",
        default: "2ms",
        accepts: "a duration from 0 to 1s",
        help: "With COREMQ_FSYNC=batch: how long records gather before one sync covers them.",
        set: |c, v| {
            let d = parse_duration(v)?;
            if d > Duration::from_secs(1) {
                return Err(());
            }
            c.fsync_interval = d;
            Ok(())
        },
    },
];

impl Default for Config {
    /// Every flag at its default. Built by parsing the defaults, so the table is the only source.
    fn default() -> Self {
        let mut c = Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 1883)),
            tls_listen: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tls_client_auth: ClientAuth::Required,
            tls_crl: None,
            tls_identity_as_username: false,
            ws_listen: None,
            wss_listen: None,
            ws_path: String::new(),
            ws_origins: Vec::new(),
            shards: 0,
            pin: true,
            max_packet_size: 0,
            max_keepalive: 0,
            max_inflight: 0,
            max_queued_messages: 0,
            queue_qos0: false,
            connect_timeout: Duration::ZERO,
            close_timeout: Duration::ZERO,
            park_idle_after: Duration::ZERO,
            log: LogLevel::Info,
            spin_before_park: Duration::ZERO,
            topic_alias_maximum: 0,
            receive_maximum: 0,
            max_qos: 2,
            retain_available: true,
            response_information: String::new(),
            shared_strategy: SharedStrategy::RoundRobin,
            max_connections: 0,
            max_queued_bytes: 0,
            max_outbound_buffer: 0,
            slow_reader_timeout: Duration::ZERO,
            max_subscriptions: 0,
            filter_max_length: 0,
            filter_max_depth: 0,
            filter_max_cost: 0,
            max_topic_length: 0,
            max_topic_levels: 0,
            allow_anonymous: None,
            password_file: None,
            acl_file: None,
            bridge_file: None,
            cluster_nats: Vec::new(),
            node_id: String::new(),
            flow_control: true,
            max_connecting: 0,
            max_connections_per_address: 0,
            connection_rate_per_address: None,
            login_failures: None,
            login_failures_per_user: None,
            login_ban: Duration::ZERO,
            login_ban_max: Duration::ZERO,
            flapping: None,
            flapping_ban: Duration::ZERO,
            ban_file: None,
            metrics_listen: None,
            sys_interval: Duration::ZERO,
            data_dir: None,
            fsync: Fsync::Batch,
            fsync_interval: Duration::ZERO,
        };
        for flag in FLAGS {
            // A default that does not parse is a bug in this table; `defaults_parse` tests it.
            let _ = (flag.set)(&mut c, flag.default);
        }
        c
    }
}

impl Config {
    /// Reads every `COREMQ_*` flag through `get` (the environment, in `from_env`).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        for flag in FLAGS {
            if let Some(value) = get(flag.name) {
                (flag.set)(&mut c, value.trim()).map_err(|()| ConfigError {
                    flag: flag.name.to_string(),
                    value: value.clone(),
                    expected: flag.accepts.to_string(),
                })?;
            }
        }
        Ok(c)
    }

    /// Reads the process environment. Unknown `COREMQ_*` variables are reported as errors too, so
    /// a typo never silently leaves a default in place.
    pub fn from_env() -> Result<Config, ConfigError> {
        for (key, value) in std::env::vars() {
            if key.starts_with("COREMQ_") && !FLAGS.iter().any(|f| f.name == key) {
                return Err(ConfigError {
                    flag: key,
                    value,
                    expected: "no value: this is not a coremq flag (see coremq --help)".into(),
                });
            }
        }
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Every address a listener is configured on: MQTT, then TLS, WebSocket, WebSocket over TLS.
    pub fn listeners(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        std::iter::once(self.listen).chain(
            [self.tls_listen, self.ws_listen, self.wss_listen]
                .into_iter()
                .flatten(),
        )
    }

    /// The first listener address that is not a loopback address, if any: the broker serves
    /// the network there.
    pub fn exposed(&self) -> Option<SocketAddr> {
        self.listeners().find(|a| !a.ip().is_loopback())
    }

    /// The number of shards to run: `shards`, or the number of online CPUs when 0.
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 {
            self.shards
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(64)
        }
    }
}

/// `coremq --help`.
pub fn help_text() -> String {
    let mut s = String::from(
        "coremq: a thread-per-core MQTT 3.1 / 3.1.1 / 5.0 broker\n\n\
         Usage: coremq [--help | --version]\n\
         \x20      coremq passwd [--delete] [--iterations=N] [--scram[=ITERATIONS]] FILE USER\n\n\
         Configuration is read from the environment:\n\n",
    );
    for f in FLAGS {
        s.push_str(&format!(
            "  {}  (default: {})\n      {}\n      Accepts {}.\n",
            f.name, f.default, f.help, f.accepts
        ));
    }
    s.push_str(
        "\nDurations are seconds unless a unit is given (100us, 500ms, 10s, 2m, 1h); sizes are bytes \
         unless a unit is given (64KiB, 1MiB).\n",
    );
    s.push_str("\ncoremq passwd [--delete] [--iterations=N] [--scram[=ITERATIONS]] FILE USER\n");
    s.push_str(PASSWD_HELP);
    s
}

/// What `coremq passwd` does: part of `coremq --help`, and `coremq passwd --help`.
pub const PASSWD_HELP: &str = concat!(
    "      Sets USER's password in the password file FILE (created if missing), read from\n",
    "      standard input: prompted for twice with echo off on a terminal, else its first line.\n",
    "      Writes a Mosquitto-compatible $7$ hash (PBKDF2-SHA512, 210000 iterations) and\n",
    "      replaces the file atomically with mode 0600, keeping the other lines.\n",
    "      --delete              remove USER instead\n",
    "      --iterations=N        PBKDF2 iterations (default 210000, at least 1000): each login\n",
    "                            costs the broker this much; lower it for fleets that reconnect\n",
    "                            all at once\n",
    "      --scram[=ITERATIONS]  also store a SCRAM-SHA-256 verifier (default and minimum 4096\n",
    "                            iterations) so USER can log in with MQTT 5 enhanced authentication\n",
);

/// The README's flag table.
pub fn markdown_table() -> String {
    let mut s = String::from("| flag | default | accepts | what it does |\n|---|---|---|---|\n");
    for f in FLAGS {
        s.push_str(&format!(
            "| `{}` | `{}` | {} | {} |\n",
            f.name,
            f.default,
            f.accepts,
            f.help.split_whitespace().collect::<Vec<_>>().join(" ")
        ));
    }
    s
}

/// An address, or `None` for the empty string.
fn optional_address(v: &str) -> Result<Option<SocketAddr>, ()> {
    if v.is_empty() {
        return Ok(None);
    }
    v.parse().map(Some).map_err(|_| ())
}

/// A path, or `None` for the empty string.
fn optional_path(v: &str) -> Option<PathBuf> {
    (!v.is_empty()).then(|| PathBuf::from(v))
}

fn parse_bool(v: &str) -> Result<bool, ()> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(()),
    }
}

fn parse_int(v: &str, min: usize, max: usize) -> Result<usize, ()> {
    let n: usize = v.parse().map_err(|_| ())?;
    if n < min || n > max {
        return Err(());
    }
    Ok(n)
}

/// `10`, `10s`, `500ms`, `100us`, `2m`, `1h`.
fn parse_duration(v: &str) -> Result<Duration, ()> {
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().map_err(|_| ())?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "us" => Duration::from_micros(n),
        "m" => Duration::from_secs(n.checked_mul(60).ok_or(())?),
        "h" => Duration::from_secs(n.checked_mul(3600).ok_or(())?),
        _ => return Err(()),
    };
    Ok(d)
}

/// `0` (off), or `COUNT/DURATION` such as `5/1m`: a count from 1 to 1,000,000 within a duration
/// from 1ms to 24h.
fn parse_rate(v: &str) -> Result<Option<(u32, Duration)>, ()> {
    if v == "0" {
        return Ok(None);
    }
    let (count, per) = v.split_once('/').ok_or(())?;
    let count: u32 = count.parse().map_err(|_| ())?;
    let per = parse_duration(per)?;
    if !(1..=1_000_000).contains(&count)
        || per < Duration::from_millis(1)
        || per > Duration::from_secs(86_400)
    {
        return Err(());
    }
    Ok(Some((count, per)))
}

/// `65536`, `64KiB`, `1MiB`, `1GiB`, `64KB`, `1MB`, `1GB`, within `min..=max`.
fn parse_size(v: &str, min: u64, max: u64) -> Result<u64, ()> {
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().map_err(|_| ())?;
    let mult: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(()),
    };
    let size = n.checked_mul(mult).ok_or(())?;
    if size < min || size > max {
        return Err(());
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_parse() {
        let mut c = Config::default();
        for flag in FLAGS {
            assert_eq!((flag.set)(&mut c, flag.default), Ok(()), "{}", flag.name);
        }
        assert_eq!(c.listen, "127.0.0.1:1883".parse().unwrap());
        assert_eq!(c.max_packet_size, 1 << 20);
        assert_eq!(c.connect_timeout, Duration::from_secs(10));
        assert_eq!(c.max_keepalive, 65535);
        assert!(!c.queue_qos0);
    }

    #[test]
    fn every_flag_is_coremq_prefixed_and_unique() {
        let mut names: Vec<_> = FLAGS.iter().map(|f| f.name).collect();
        assert!(names.iter().all(|n| n.starts_with("COREMQ_")));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), FLAGS.len());
    }

    #[test]
    fn values_with_units() {
        let c = Config::from_lookup(lookup(&[
            ("COREMQ_MAX_PACKET_SIZE", "64KiB"),
            ("COREMQ_CONNECT_TIMEOUT", "500ms"),
            ("COREMQ_CLOSE_TIMEOUT", "250ms"),
            ("COREMQ_PARK_IDLE_AFTER", "30s"),
            ("COREMQ_SPIN_BEFORE_PARK", "100us"),
            ("COREMQ_MAX_KEEPALIVE", "2m"),
            ("COREMQ_SHARDS", "3"),
            ("COREMQ_QUEUE_QOS0", "true"),
            ("COREMQ_LISTEN", "127.0.0.1:0"),
            ("COREMQ_SLOW_READER_TIMEOUT", "250ms"),
            ("COREMQ_MAX_OUTBOUND_BUFFER", "2MiB"),
            ("COREMQ_LOGIN_FAILURES", "3/30s"),
            ("COREMQ_FLAPPING", "0"),
            ("COREMQ_CONNECTION_RATE_PER_ADDRESS", "600/1m"),
        ]))
        .unwrap();
        assert_eq!(c.login_failures, Some((3, Duration::from_secs(30))));
        assert_eq!(c.flapping, None);
        assert_eq!(
            c.connection_rate_per_address,
            Some((600, Duration::from_secs(60)))
        );
        assert_eq!(c.slow_reader_timeout, Duration::from_millis(250));
        assert_eq!(c.max_outbound_buffer, 2 << 20);
        assert_eq!(c.max_packet_size, 65536);
        assert_eq!(c.connect_timeout, Duration::from_millis(500));
        assert_eq!(c.close_timeout, Duration::from_millis(250));
        assert_eq!(c.park_idle_after, Duration::from_secs(30));
        assert_eq!(c.spin_before_park, Duration::from_micros(100));
        assert_eq!(c.max_keepalive, 120);
        assert_eq!(c.shards, 3);
        assert_eq!(c.shard_count(), 3);
        assert!(c.queue_qos0);
    }

    #[test]
    fn bad_values_name_the_flag_and_what_it_accepts() {
        for (flag, value) in [
            ("COREMQ_LISTEN", "localhost"),
            ("COREMQ_SHARDS", "-1"),
            ("COREMQ_SHARDS", "65"),
            ("COREMQ_PIN", "yes"),
            ("COREMQ_MAX_PACKET_SIZE", "1TiB"),
            ("COREMQ_MAX_PACKET_SIZE", "8"),
            ("COREMQ_MAX_KEEPALIVE", "0"),
            ("COREMQ_MAX_INFLIGHT", "0"),
            ("COREMQ_CONNECT_TIMEOUT", "10x"),
            ("COREMQ_PARK_IDLE_AFTER", "5ms"),
            ("COREMQ_PARK_IDLE_AFTER", "2h"),
            ("COREMQ_LOG", "verbose"),
            ("COREMQ_SLOW_READER_TIMEOUT", "2h"),
            ("COREMQ_SLOW_READER_TIMEOUT", "soon"),
            ("COREMQ_MAX_OUTBOUND_BUFFER", "1KiB"),
            ("COREMQ_LOGIN_FAILURES", "5"),
            ("COREMQ_LOGIN_FAILURES", "0/1m"),
            ("COREMQ_LOGIN_FAILURES", "5/0s"),
            ("COREMQ_FLAPPING", "x/1m"),
            ("COREMQ_LOGIN_BAN", "0"),
            ("COREMQ_CLUSTER_NATS", "nats://host"),
            ("COREMQ_CLUSTER_NATS", "a:4222,:4222"),
            ("COREMQ_NODE_ID", "node 1"),
            ("COREMQ_NODE_ID", "n.1"),
        ] {
            let err = Config::from_lookup(lookup(&[(flag, value)])).unwrap_err();
            assert_eq!(err.flag, flag);
            assert_eq!(err.value, value);
            let accepts = FLAGS.iter().find(|f| f.name == flag).unwrap().accepts;
            assert_eq!(err.expected, accepts);
            assert!(err.to_string().contains(flag));
        }
    }

    #[test]
    fn the_shard_limit_is_the_meshs() {
        let flag = FLAGS.iter().find(|f| f.name == "COREMQ_SHARDS").unwrap();
        let max = MAX_SHARDS.to_string();
        assert!(
            flag.accepts.contains(&format!("to {max} ")),
            "{}",
            flag.accepts
        );
        let ok = Config::from_lookup(lookup(&[("COREMQ_SHARDS", max.as_str())])).unwrap();
        assert_eq!(ok.shards, MAX_SHARDS);
        let over = (MAX_SHARDS + 1).to_string();
        assert!(Config::from_lookup(lookup(&[("COREMQ_SHARDS", over.as_str())])).is_err());
    }

    #[test]
    fn help_and_table_list_every_flag() {
        let help = help_text();
        let table = markdown_table();
        assert!(help.contains("coremq passwd [--delete]"));
        for f in FLAGS {
            assert!(help.contains(f.name), "{} missing from --help", f.name);
            assert!(table.contains(f.name), "{} missing from the table", f.name);
        }
    }

    #[test]
    fn readme_flag_table_is_current() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        assert!(
            readme.contains(&markdown_table()),
            "README.md's flag table is out of date; paste this in:\n{}",
            markdown_table()
        );
    }
}
