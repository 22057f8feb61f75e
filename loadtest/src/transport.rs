//! What lies between a connection's MQTT bytes and its socket when the broker is reached over TLS
//! (`--tls`, rustls) or WebSocket (`--ws`, RFC 6455 client side), or both: so users can load-test
//! the listener they deploy. Plain TCP has no transport (the connection writes its buffer
//! straight to the socket).
//!
//! Outgoing: MQTT bytes become one masked binary frame per flush (WebSocket), then TLS records.
//! Incoming: TLS records are decrypted, frames are stripped, MQTT bytes land in the connection's
//! read buffer. Lives on one worker thread with its connection.

use std::io::{self, Read, Write};
use std::sync::Arc;

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

/// How every connection of a run reaches the broker.
#[derive(Clone)]
pub struct Layers {
    /// TLS: the client configuration (trusting --cafile) and the name the certificate must carry.
    pub tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    /// WebSocket: the Host header and the path.
    pub ws: Option<(String, String)>,
}

/// The layers `--tls` / `--ws` ask for (`None`: plain TCP); reads the CA file.
pub fn layers(args: &crate::args::Args) -> Result<Option<Layers>, String> {
    if args.tls.is_none() && args.ws.is_none() {
        return Ok(None);
    }
    let tls = match &args.tls {
        None => None,
        Some((cafile, name)) => {
            use rustls::pki_types::pem::PemObject;
            use rustls::pki_types::CertificateDer;
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(cafile)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("--cafile {cafile:?}: {e}"))?;
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| format!("--cafile {cafile:?}: {e}"))?;
            }
            // ring, as the broker (rustls deprecates it only for lacking post-quantum groups).
            #[allow(deprecated)]
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("tls: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = ServerName::try_from(name.clone())
                .map_err(|e| format!("--server-name {name:?}: {e}"))?;
            Some((Arc::new(config), name))
        }
    };
    let ws = args
        .ws
        .as_ref()
        .map(|path| (format!("{}:{}", args.host, args.addr.port()), path.clone()));
    Ok(Some(Layers { tls, ws }))
}

pub struct Transport {
    tls: Option<Box<ClientConnection>>,
    ws: Option<Ws>,
    /// Bytes for the socket when there is no TLS to hold them.
    wire: Vec<u8>,
}

/// The client side of one WebSocket.
struct Ws {
    /// The 101 response has been read and checked.
    upgraded: bool,
    /// The response head so far (before the upgrade).
    head: Vec<u8>,
    /// The Sec-WebSocket-Accept the 101 must carry.
    accept: String,
    /// The header of the frame being read, and how much of it has arrived.
    header: [u8; 10],
    header_len: usize,
    /// Payload bytes of the current frame still to come, and its opcode.
    remaining: u64,
    opcode: u8,
    /// The payload of a control frame as it arrives.
    control: Vec<u8>,
    /// Masking keys: a cheap generator (the mask is no secret here).
    seed: u32,
}

impl Transport {
    /// The transport for a new connection; the upgrade request (WebSocket) is queued at once.
    pub fn new(layers: &Layers, seed: u32) -> io::Result<Self> {
        let tls = match &layers.tls {
            Some((config, name)) => {
                let mut c = ClientConnection::new(config.clone(), name.clone())
                    .map_err(io::Error::other)?;
                // Bounded by the caller instead: it hands over a batch only once the last one is
                // out (`Conn::flush`).
                c.set_buffer_limit(None);
                Some(Box::new(c))
            }
            None => None,
        };
        let mut t = Transport {
            tls,
            ws: None,
            wire: Vec::new(),
        };
        if let Some((host, path)) = &layers.ws {
            let key = base64_key(seed);
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Protocol: mqtt\r\n\r\n"
            );
            t.ws = Some(Ws {
                upgraded: false,
                head: Vec::new(),
                accept: coremq::net::ws::accept_key(&key),
                header: [0; 10],
                header_len: 0,
                remaining: 0,
                opcode: 0,
                control: Vec::new(),
                seed: seed | 1,
            });
            t.push_wire(request.as_bytes())?;
        }
        Ok(t)
    }

    /// Takes the MQTT bytes in `app` when they can go (after the WebSocket upgrade).
    pub fn send(&mut self, app: &mut BytesMut) -> io::Result<()> {
        if app.is_empty() {
            return Ok(());
        }
        match &mut self.ws {
            Some(ws) if !ws.upgraded => return Ok(()),
            Some(ws) => {
                let framed = ws.frame(0x2, app);
                self.push_wire(&framed)?;
            }
            None => self.push_wire(app)?,
        }
        app.clear();
        Ok(())
    }

    /// Bytes below TLS (or for the socket without TLS).
    fn push_wire(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.tls {
            Some(tls) => tls.writer().write_all(bytes),
            None => {
                self.wire.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    /// Writes what waits for the socket until it is all out (`Ok(true)`) or the socket would
    /// block (`Ok(false)`).
    pub fn write_to(&mut self, socket: &mut impl Write) -> io::Result<bool> {
        if let Some(tls) = &mut self.tls {
            while tls.wants_write() {
                match tls.write_tls(socket) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) => return Err(e),
                }
            }
            return Ok(true);
        }
        while !self.wire.is_empty() {
            match socket.write(&self.wire) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.wire.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Bytes read from the socket: MQTT bytes go to `rbuf`. `Err` when the broker's bytes are
    /// not what the transport expects (a TLS error, a refused upgrade, a close frame).
    pub fn receive(&mut self, mut data: &[u8], rbuf: &mut BytesMut) -> Result<(), String> {
        let Some(tls) = &mut self.tls else {
            return self.unframe(data, rbuf);
        };
        let mut plain = Vec::new();
        while !data.is_empty() {
            tls.read_tls(&mut data).map_err(|e| format!("tls: {e}"))?;
            tls.process_new_packets().map_err(|e| format!("tls: {e}"))?;
            match tls.reader().read_to_end(&mut plain) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("tls: {e}")),
            }
        }
        self.unframe(&plain, rbuf)
    }

    fn unframe(&mut self, data: &[u8], rbuf: &mut BytesMut) -> Result<(), String> {
        let Some(ws) = &mut self.ws else {
            rbuf.extend_from_slice(data);
            return Ok(());
        };
        let mut replies = Vec::new();
        let result = ws.receive(data, rbuf, &mut replies);
        if !replies.is_empty() {
            self.push_wire(&replies).map_err(|e| e.to_string())?;
        }
        result
    }
}

impl Ws {
    /// One masked frame of `payload`.
    fn frame(&mut self, opcode: u8, payload: &[u8]) -> Vec<u8> {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 17;
        self.seed ^= self.seed << 5;
        coremq::net::ws::client_frame(true, opcode, payload, self.seed.to_be_bytes())
    }

    fn receive(
        &mut self,
        mut data: &[u8],
        rbuf: &mut BytesMut,
        replies: &mut Vec<u8>,
    ) -> Result<(), String> {
        if !self.upgraded {
            self.head.extend_from_slice(data);
            let Some(end) = self.head.windows(4).position(|w| w == b"\r\n\r\n") else {
                if self.head.len() > 8192 {
                    return Err("websocket: no end to the upgrade response".into());
                }
                return Ok(());
            };
            let head = String::from_utf8_lossy(&self.head[..end]).into_owned();
            if !head.starts_with("HTTP/1.1 101") {
                let line = head.lines().next().unwrap_or("");
                return Err(format!("websocket: upgrade refused: {line}"));
            }
            if !head.contains(&format!("Sec-WebSocket-Accept: {}", self.accept)) {
                return Err("websocket: wrong Sec-WebSocket-Accept".into());
            }
            self.upgraded = true;
            let rest = self.head.split_off(end + 4);
            self.head = Vec::new();
            return self.frames(&rest, rbuf, replies);
        }
        self.frames(std::mem::take(&mut data), rbuf, replies)
    }

    /// Server frames (unmasked) in `data`.
    fn frames(
        &mut self,
        mut data: &[u8],
        rbuf: &mut BytesMut,
        replies: &mut Vec<u8>,
    ) -> Result<(), String> {
        while !data.is_empty() {
            if self.remaining > 0 {
                let take = (data.len() as u64).min(self.remaining) as usize;
                if self.opcode >= 8 {
                    self.control.extend_from_slice(&data[..take]);
                } else {
                    rbuf.extend_from_slice(&data[..take]);
                }
                data = &data[take..];
                self.remaining -= take as u64;
                if self.remaining == 0 {
                    self.end_frame(replies)?;
                }
                continue;
            }
            // A header: 2 bytes, then the extended length if any (server frames are unmasked).
            let need = match (self.header_len, self.header[1] & 0x7f) {
                (0 | 1, _) => 2,
                (_, 126) => 4,
                (_, 127) => 10,
                _ => 2,
            };
            if self.header_len < need {
                let take = (need - self.header_len).min(data.len());
                self.header[self.header_len..self.header_len + take].copy_from_slice(&data[..take]);
                self.header_len += take;
                data = &data[take..];
                if self.header_len < need || need == 2 && self.header[1] & 0x7f >= 126 {
                    continue;
                }
            }
            let h = self.header;
            self.opcode = h[0] & 0x0f;
            self.remaining = match need {
                4 => u64::from(u16::from_be_bytes([h[2], h[3]])),
                10 => u64::from_be_bytes(h[2..10].try_into().unwrap_or_default()),
                _ => u64::from(h[1] & 0x7f),
            };
            self.header_len = 0;
            if self.remaining == 0 {
                self.end_frame(replies)?;
            }
        }
        Ok(())
    }

    fn end_frame(&mut self, replies: &mut Vec<u8>) -> Result<(), String> {
        match self.opcode {
            0x9 => {
                let payload = std::mem::take(&mut self.control);
                let pong = self.frame(0xa, &payload);
                replies.extend_from_slice(&pong);
            }
            0x8 => return Err("websocket: closed by the broker".into()),
            _ => self.control.clear(),
        }
        Ok(())
    }
}

/// A Sec-WebSocket-Key: 16 bytes from `seed`, base64.
fn base64_key(seed: u32) -> String {
    use base64::Engine;
    let mut bytes = [0u8; 16];
    let mut s = seed | 1;
    for b in &mut bytes {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        *b = s as u8;
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use crate::args;
    use crate::report::failures;
    use crate::run::run;

    /// A coremq broker in this process with TLS, WS and WSS listeners (certificate for
    /// 127.0.0.1 made here), and a short QoS 1 pairs run over each: nothing lost, everything
    /// confirmed.
    #[test]
    fn pairs_over_tls_ws_and_wss_against_coremq() {
        let dir = std::env::temp_dir().join(format!("coremq-lt-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let any = || Some("127.0.0.1:0".parse().unwrap());
        let broker = coremq::Broker::start(coremq::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls_listen: any(),
            ws_listen: any(),
            wss_listen: any(),
            tls_cert: Some(cert_path.clone()),
            tls_key: Some(key_path),
            shards: 2,
            pin: false,
            connection_rate_per_address: None,
            max_connections_per_address: 0,
            log: coremq::config::LogLevel::Warn,
            ..coremq::Config::default()
        })
        .unwrap();
        let ca = cert_path.to_str().unwrap().to_owned();
        let port = |a: Option<std::net::SocketAddr>| a.unwrap().port().to_string();
        let modes: [(&str, String, Vec<&str>); 3] = [
            (
                "tls",
                port(broker.tls_addr()),
                vec!["--tls", "--cafile", &ca],
            ),
            ("ws", port(broker.ws_addr()), vec!["--ws"]),
            (
                "wss",
                port(broker.wss_addr()),
                vec!["--ws", "--tls", "--cafile", &ca],
            ),
        ];
        for (name, port, extra) in modes {
            let mut argv: Vec<String> = [
                "--scenario",
                "pairs",
                "--pairs",
                "4",
                "--qos",
                "1",
                "--payload",
                "3000",
                "--duration",
                "1",
                "--warmup",
                "0",
                "--drain",
                "2",
                "--threads",
                "1",
                "--no-pin",
                "--port",
                &port,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            argv.extend(extra.iter().map(|s| s.to_string()));
            let a = args::parse(&argv, 1).unwrap();
            let outcome = run(&a).unwrap();
            assert!(
                failures(&a, &outcome).is_empty(),
                "{name}: {:?}",
                failures(&a, &outcome)
            );
            assert!(
                outcome.counters.received > 100,
                "{name}: {:?}",
                outcome.counters
            );
            assert_eq!(outcome.set_up, 8, "{name}");
        }
        drop(broker);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
