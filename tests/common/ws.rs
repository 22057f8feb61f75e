//! A WebSocket client for exact-frame tests (RFC 6455 by hand: what browsers send, and what
//! they never would): the upgrade request, masked frames of any kind and split, and MQTT packets
//! carried in binary frames. Real clients (MQTT.js in Node and in Chromium) are in
//! tests/integration/websocket.rs.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use bytes::BytesMut;
use coremq::protocol::{decode, Packet, ProtocolVersion};

use super::PATIENCE;

pub const BINARY: u8 = 2;
pub const TEXT: u8 = 1;
pub const CONTINUATION: u8 = 0;
pub const CLOSE: u8 = 8;
pub const PING: u8 = 9;
pub const PONG: u8 = 10;

pub struct WsClient {
    pub stream: TcpStream,
    /// Bytes read and not yet taken as a frame.
    read: Vec<u8>,
    /// MQTT bytes from binary frames not yet decoded.
    mqtt: BytesMut,
    version: ProtocolVersion,
}

/// An upgrade request for `path` offering `protocol` (none when `None`), plus `extra` header
/// lines.
pub fn request(path: &str, protocol: Option<&str>, extra: &str) -> String {
    let proto = protocol
        .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
        .unwrap_or_default();
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{proto}{extra}\r\n"
    )
}

/// Sends `request` to `addr` and reads the response head: (status, head).
pub fn send_request(addr: SocketAddr, request: &str) -> (TcpStream, u16, String) {
    send_request_on(TcpStream::connect(addr).unwrap(), request)
}

/// `send_request` on a connected stream.
pub fn send_request_on(mut stream: TcpStream, request: &str) -> (TcpStream, u16, String) {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (stream, status, head)
}

impl WsClient {
    /// Upgrades a connection to `addr` at /mqtt with subprotocol `mqtt`.
    pub fn connect(addr: SocketAddr, version: ProtocolVersion) -> Self {
        Self::upgrade_stream(TcpStream::connect(addr).unwrap(), version)
    }

    /// Upgrades a connected stream.
    pub fn upgrade_stream(stream: TcpStream, version: ProtocolVersion) -> Self {
        let (stream, status, head) = send_request_on(stream, &request("/mqtt", Some("mqtt"), ""));
        assert_eq!(status, 101, "{head}");
        assert!(head.contains("Sec-WebSocket-Protocol: mqtt\r\n"), "{head}");
        Self {
            stream,
            read: Vec::new(),
            mqtt: BytesMut::new(),
            version,
        }
    }

    /// A masked frame.
    pub fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        coremq::net::ws::client_frame(fin, opcode, payload, [0x37, 0xfa, 0x21, 0x3d])
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        self.send_raw(&Self::frame(fin, opcode, payload));
    }

    /// An MQTT packet's bytes.
    pub fn encode(&self, packet: &Packet) -> Vec<u8> {
        let mut out = BytesMut::new();
        packet.encode(self.version, &mut out).unwrap();
        out.to_vec()
    }

    /// Sends `packet` in one binary frame.
    pub fn send(&mut self, packet: &Packet) {
        let bytes = self.encode(packet);
        self.send_frame(true, BINARY, &bytes);
    }

    /// The next frame from the broker: (opcode, payload); `None` at end of stream.
    pub fn recv_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.read.len() >= 2 {
                let (b0, b1) = (self.read[0], self.read[1]);
                assert_eq!(b1 & 0x80, 0, "server frames are not masked");
                let (len, head) = match b1 & 0x7f {
                    126 if self.read.len() >= 4 => {
                        (u16::from_be_bytes([self.read[2], self.read[3]]) as usize, 4)
                    }
                    127 if self.read.len() >= 10 => (
                        u64::from_be_bytes(self.read[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if head > 0 && self.read.len() >= head + len {
                    let payload = self.read[head..head + len].to_vec();
                    self.read.drain(..head + len);
                    return Some((b0 & 0x0f, payload));
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.read.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next MQTT packet, from however many binary frames it took.
    pub fn recv(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = decode(&mut self.mqtt, self.version, u32::MAX).unwrap() {
                return Some(p);
            }
            match self.recv_frame()? {
                (BINARY | CONTINUATION, payload) => self.mqtt.extend_from_slice(&payload),
                (op, payload) => panic!("expected a binary frame, got opcode {op}: {payload:?}"),
            }
        }
    }

    pub fn expect_packet(&mut self) -> Packet {
        self.recv().expect("a packet before the end of the stream")
    }
}
