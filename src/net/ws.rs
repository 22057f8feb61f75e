//! MQTT over WebSocket (RFC 6455; MQTT 5.0 section 6): the HTTP upgrade and the framing, both
//! pure (bytes in, bytes out); `stream::Layered` runs them over the socket or TLS.
//!
//! MQTT bytes travel in binary frames, split across frames or packed into them any way the
//! client likes, so the framing is a byte pipe: `Framing::unframe` strips frame headers and
//! unmasks payload *in place* in the buffer the bytes were read into (the shard's read arena),
//! and the MQTT decoder never sees a frame boundary. Each write of the connection's batch goes
//! out as one binary frame. Pings are answered, a close is echoed, and anything else (text
//! frames, unmasked frames, reserved bits, frames longer than COREMQ_MAX_PACKET_SIZE) closes the
//! connection with the RFC's close code.

use sha1::{Digest, Sha1};

/// The GUID of RFC 6455 section 1.3, for Sec-WebSocket-Accept.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Longest upgrade request read (request line and headers).
pub const MAX_REQUEST: usize = 8 * 1024;
/// Subprotocols accepted, in order of preference ([MQTT-6.0.0-3]: "mqtt"; "mqttv3.1" is what
/// MQTT 3.1 clients ask for).
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// What a WebSocket listener checks in an upgrade request.
#[derive(Debug, Clone)]
pub struct UpgradeRules {
    /// The request path (COREMQ_WS_PATH).
    pub path: String,
    /// Allowed `Origin` values (COREMQ_WS_ORIGINS); empty: any. Requests without an Origin
    /// header (not from a browser) are always allowed.
    pub origins: Vec<String>,
}

/// How an upgrade request ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Upgrade {
    /// Not all of the request has arrived yet.
    Partial,
    /// Accepted: send `response` (101 Switching Protocols); the request took `consumed` bytes.
    Accept { response: Vec<u8>, consumed: usize },
    /// Refused: send `response` (an HTTP error), then close.
    Refuse { response: Vec<u8>, status: u16 },
}

/// Reads an upgrade request from `buf` (everything read so far).
pub fn upgrade(buf: &[u8], rules: &UpgradeRules) -> Upgrade {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let consumed = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST => return Upgrade::Partial,
        Ok(httparse::Status::Partial) => return refuse(431, "request headers too large", &[]),
        Err(_) => return refuse(400, "malformed HTTP request", &[]),
    };
    if req.method != Some("GET") {
        return refuse(405, "only GET upgrades to a WebSocket", &[("Allow", "GET")]);
    }
    let path = req.path.unwrap_or("");
    let path = path.split('?').next().unwrap_or(path);
    if path != rules.path {
        return refuse(404, "no WebSocket endpoint at this path", &[]);
    }
    let headers: &[httparse::Header<'_>] = req.headers;
    let header = |name: &'static str| values(headers, name);
    let has_token = |name: &'static str, token: &str| {
        header(name).any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    let upgrade_required: &[(&str, &str)] = &[("Upgrade", "websocket"), ("Connection", "Upgrade")];
    if !has_token("Upgrade", "websocket") || !has_token("Connection", "upgrade") {
        return refuse(
            426,
            "this endpoint speaks MQTT over WebSocket only",
            upgrade_required,
        );
    }
    if !header("Sec-WebSocket-Version").any(|v| v.trim() == "13") {
        return refuse(
            426,
            "unsupported WebSocket version",
            &[("Sec-WebSocket-Version", "13")],
        );
    }
    if let Some(origin) = header("Origin").next() {
        if !rules.origins.is_empty() && !rules.origins.iter().any(|o| o == origin.trim()) {
            return refuse(403, "origin not allowed (COREMQ_WS_ORIGINS)", &[]);
        }
    }
    let Some(key) = header("Sec-WebSocket-Key").next().map(str::trim) else {
        return refuse(400, "no Sec-WebSocket-Key", &[]);
    };
    let offered: Vec<&str> = header("Sec-WebSocket-Protocol")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let Some(protocol) = offered.iter().find(|p| SUBPROTOCOLS.contains(p)) else {
        return refuse(
            400,
            "no MQTT subprotocol offered (Sec-WebSocket-Protocol: mqtt)",
            &[],
        );
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n",
        accept_key(key)
    );
    Upgrade::Accept {
        response: response.into_bytes(),
        consumed,
    }
}

/// The values of the headers called `name`.
fn values<'a>(
    headers: &'a [httparse::Header<'a>],
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
}

/// An HTTP error response that closes the connection.
fn refuse(status: u16, why: &str, extra: &[(&str, &str)]) -> Upgrade {
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        _ => "Request Header Fields Too Large",
    };
    let mut head = format!("HTTP/1.1 {status} {reason}\r\n");
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = format!("{why}\n");
    head.push_str(&format!(
        "Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    Upgrade::Refuse {
        response: head.into_bytes(),
        status,
    }
}

/// Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 section 4.2.2).
pub fn accept_key(key: &str) -> String {
    use base64::Engine;
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// RFC 6455 close codes used here.
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const TOO_BIG: u16 = 1009;
}

/// Why the framing ended the connection: the close code sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsError {
    pub code: u16,
    pub what: &'static str,
}

/// What `unframe` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unframed {
    /// This many MQTT bytes now lead the buffer.
    Data(usize),
    /// This many MQTT bytes lead the buffer, then the client closed (its close was echoed).
    Closed(usize),
}

const OP_CONTINUATION: u8 = 0;
const OP_TEXT: u8 = 1;
const OP_BINARY: u8 = 2;
const OP_CLOSE: u8 = 8;
const OP_PING: u8 = 9;
const OP_PONG: u8 = 10;

/// Longest control frame payload (RFC 6455 section 5.5).
const MAX_CONTROL: usize = 125;

/// One connection's WebSocket framing state: where in which frame the bytes read so far ended,
/// and what is to be sent back (pongs, the close). Small and `Send`: it moves with a connection
/// that changes shard or parks.
#[derive(Debug)]
pub struct Framing {
    /// Longest data frame accepted.
    max_frame: u64,
    /// The header being read (at most 2 + 8 + 4 bytes) and how much of it has arrived.
    header: [u8; 14],
    header_len: u8,
    /// Payload bytes of the current frame still to come (0: between frames).
    remaining: u64,
    /// The current frame's masking key and how far into it the payload is.
    mask: [u8; 4],
    mask_at: u8,
    opcode: u8,
    /// A fragmented binary message is under way (continuation frames expected).
    fragmented: bool,
    /// The payload of a control frame, as it arrives.
    control: Vec<u8>,
    /// Frames to send back before anything else.
    pub out: Vec<u8>,
    /// A close was received or sent.
    closed: bool,
    /// A violation found after MQTT bytes in the same buffer: those go up first, the error with
    /// the next call.
    failed: Option<WsError>,
}

impl Framing {
    pub fn new(max_frame: u64) -> Self {
        Self {
            max_frame,
            header: [0; 14],
            header_len: 0,
            remaining: 0,
            mask: [0; 4],
            mask_at: 0,
            opcode: 0,
            fragmented: false,
            control: Vec::new(),
            out: Vec::new(),
            closed: false,
            failed: None,
        }
    }

    /// Between frames with nothing to send: the connection may park or move as a bare socket
    /// plus this state.
    pub fn is_quiet(&self) -> bool {
        self.header_len == 0 && self.remaining == 0 && self.out.is_empty()
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Strips frame headers from `buf` (bytes as read from the client) and unmasks the payload
    /// of binary frames to the front of it; control frames are handled (replies queued in
    /// `out`). On an error a close frame with its code is queued.
    pub fn unframe(&mut self, buf: &mut [u8]) -> Result<Unframed, WsError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let mut read = 0;
        let mut written = 0;
        while read < buf.len() {
            if self.closed {
                return Ok(Unframed::Closed(written));
            }
            if self.remaining == 0 && self.header_len == 0 {
                self.header[0] = buf[read];
                self.header_len = 1;
                read += 1;
                continue;
            }
            if self.header_len > 0 {
                let need = self.header_need();
                let have = usize::from(self.header_len);
                if have < need {
                    let take = (need - have).min(buf.len() - read);
                    self.header[have..have + take].copy_from_slice(&buf[read..read + take]);
                    self.header_len += take as u8;
                    read += take;
                    // The length bytes may raise what the header needs.
                    if usize::from(self.header_len) < self.header_need() {
                        continue;
                    }
                }
                self.header_len = 0;
                if let Err(e) = self.start_frame() {
                    let e = self.fail(e);
                    if written > 0 {
                        // The MQTT bytes before the violation still count.
                        self.failed = Some(e);
                        return Ok(Unframed::Data(written));
                    }
                    return Err(e);
                }
                if self.remaining == 0 {
                    if let Some(done) = self.end_frame() {
                        return Ok(done(written));
                    }
                }
                continue;
            }
            // Payload.
            let take =
                (buf.len() - read).min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
            let chunk = &mut buf[read..read + take];
            let mut m = usize::from(self.mask_at);
            for b in chunk.iter_mut() {
                *b ^= self.mask[m & 3];
                m += 1;
            }
            self.mask_at = (m & 3) as u8;
            if self.opcode >= OP_CLOSE {
                self.control.extend_from_slice(chunk);
            } else {
                buf.copy_within(read..read + take, written);
                written += take;
            }
            read += take;
            self.remaining -= take as u64;
            if self.remaining == 0 {
                if let Some(done) = self.end_frame() {
                    return Ok(done(written));
                }
            }
        }
        Ok(if self.closed {
            Unframed::Closed(written)
        } else {
            Unframed::Data(written)
        })
    }

    /// Bytes the header being read needs, as far as its known bytes tell.
    fn header_need(&self) -> usize {
        if self.header_len < 2 {
            return 2;
        }
        let ext = match self.header[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
        2 + ext + mask
    }

    /// Checks a complete header and starts its frame.
    fn start_frame(&mut self) -> Result<(), WsError> {
        let h = self.header;
        let fin = h[0] & 0x80 != 0;
        let opcode = h[0] & 0x0f;
        if h[0] & 0x70 != 0 {
            return Err(err(close::PROTOCOL_ERROR, "reserved bits set"));
        }
        // [RFC 6455 5.1] a client masks every frame.
        if h[1] & 0x80 == 0 {
            return Err(err(close::PROTOCOL_ERROR, "unmasked frame from a client"));
        }
        let (len, at) = match h[1] & 0x7f {
            126 => (u64::from(u16::from_be_bytes([h[2], h[3]])), 4),
            127 => (
                u64::from_be_bytes(h[2..10].try_into().unwrap_or_default()),
                10,
            ),
            n => (u64::from(n), 2),
        };
        self.mask.copy_from_slice(&h[at..at + 4]);
        self.mask_at = 0;
        match opcode {
            OP_BINARY | OP_CONTINUATION => {
                if (opcode == OP_BINARY) == self.fragmented {
                    return Err(err(close::PROTOCOL_ERROR, "bad fragmentation"));
                }
                if len > self.max_frame {
                    return Err(err(
                        close::TOO_BIG,
                        "frame longer than COREMQ_MAX_PACKET_SIZE",
                    ));
                }
                self.fragmented = !fin;
            }
            OP_TEXT => {
                // [MQTT-6.0.0-1] MQTT control packets travel in binary frames only.
                return Err(err(close::UNSUPPORTED_DATA, "text frame ([MQTT-6.0.0-1])"));
            }
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin || len > MAX_CONTROL as u64 {
                    return Err(err(close::PROTOCOL_ERROR, "bad control frame"));
                }
            }
            _ => return Err(err(close::PROTOCOL_ERROR, "unknown opcode")),
        }
        self.opcode = opcode;
        self.remaining = len;
        Ok(())
    }

    /// A frame's payload is complete: acts on a control frame. `Some` when the client closed.
    fn end_frame(&mut self) -> Option<fn(usize) -> Unframed> {
        match self.opcode {
            OP_PING => {
                let payload = std::mem::take(&mut self.control);
                push_frame(&mut self.out, OP_PONG, &payload);
            }
            OP_PONG => self.control.clear(),
            OP_CLOSE => {
                // Echo the status code (RFC 6455 5.5.1), then the connection ends.
                let payload = std::mem::take(&mut self.control);
                let code = payload.get(..2).unwrap_or(&[]);
                push_frame(&mut self.out, OP_CLOSE, code);
                self.closed = true;
                return Some(Unframed::Closed);
            }
            _ => {}
        }
        None
    }

    /// Queues a close frame for `e` and marks the framing closed.
    fn fail(&mut self, e: WsError) -> WsError {
        self.close_with(e.code);
        e
    }

    /// Queues a close frame with `code` (once).
    pub fn close_with(&mut self, code: u16) {
        if !self.closed {
            push_frame(&mut self.out, OP_CLOSE, &code.to_be_bytes());
            self.closed = true;
        }
    }
}

fn err(code: u16, what: &'static str) -> WsError {
    WsError { code, what }
}

/// The header of an unmasked server frame carrying `len` bytes (`buf` must hold 10); returns
/// its length.
pub fn frame_header(opcode: u8, len: usize, buf: &mut [u8; 10]) -> usize {
    buf[0] = 0x80 | opcode;
    if len < 126 {
        buf[1] = len as u8;
        2
    } else if len <= usize::from(u16::MAX) {
        buf[1] = 126;
        buf[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        buf[1] = 127;
        buf[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// Opcode of the frames MQTT bytes go out in.
pub const BINARY: u8 = OP_BINARY;

/// A frame as a client sends it: masked with `mask` (the load tester and tests speak the client
/// side).
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let len = payload.len();
    let mut f = Vec::with_capacity(len + 14);
    f.push(if fin { 0x80 } else { 0 } | opcode);
    if len < 126 {
        f.push(0x80 | len as u8);
    } else if len <= usize::from(u16::MAX) {
        f.push(0x80 | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    f
}

fn push_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    let mut h = [0; 10];
    let n = frame_header(opcode, payload.len(), &mut h);
    out.extend_from_slice(&h[..n]);
    out.extend_from_slice(payload);
}

/// What the fuzz target `websocket` checks (and `tests/fuzz_corpus.rs` replays): client bytes
/// fed to `Framing::unframe` in pieces of any size give exactly what a whole-buffer reference
/// parser gives (the MQTT bytes, the replies, how it ended), and `upgrade` never panics.
pub mod fuzz_check {
    use super::*;

    /// How the bytes ended.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum End {
        Open,
        Closed,
        Failed(u16),
    }

    /// Input: the first byte picks the piece size (1 to 64 bytes, 0 = all at once), the second
    /// the largest data frame (its value x 16 bytes), the rest is the client's bytes.
    pub fn check(data: &[u8]) -> Result<(), String> {
        let [step, max, wire @ ..] = data else {
            return Ok(());
        };
        let _ = upgrade(
            wire,
            &UpgradeRules {
                path: "/mqtt".into(),
                origins: vec!["https://a.example".into()],
            },
        );
        let max = u64::from(*max) * 16;
        let step = match step % 65 {
            0 => wire.len().max(1),
            n => usize::from(n),
        };
        let mut f = Framing::new(max);
        let mut got = Vec::new();
        let mut end = End::Open;
        // A last empty call collects an error found after MQTT bytes in the last piece.
        for piece in wire.chunks(step).chain(std::iter::once(&[][..])) {
            let mut buf = piece.to_vec();
            match f.unframe(&mut buf) {
                Ok(Unframed::Data(n)) => got.extend_from_slice(&buf[..n]),
                Ok(Unframed::Closed(n)) => {
                    got.extend_from_slice(&buf[..n]);
                    end = End::Closed;
                    break;
                }
                Err(e) => {
                    end = End::Failed(e.code);
                    break;
                }
            }
        }
        let (want, replies, want_end) = reference(wire, max);
        if (&got, &end) != (&want, &want_end) {
            return Err(format!(
                "pieces of {step}: got {} bytes, {end:?}; the reference {} bytes, {want_end:?}",
                got.len(),
                want.len()
            ));
        }
        if f.out != replies {
            return Err(format!(
                "replies differ: {:02x?} vs {:02x?}",
                f.out, replies
            ));
        }
        Ok(())
    }

    /// The whole buffer at once: MQTT bytes, replies, end.
    fn reference(wire: &[u8], max: u64) -> (Vec<u8>, Vec<u8>, End) {
        let (mut data, mut out) = (Vec::new(), Vec::new());
        let mut fragmented = false;
        let mut at = 0;
        let fail = |out: &mut Vec<u8>, code: u16| {
            push_frame(out, OP_CLOSE, &code.to_be_bytes());
            End::Failed(code)
        };
        loop {
            let h = &wire[at..];
            if h.len() < 2 {
                return (data, out, End::Open);
            }
            let masked = h[1] & 0x80 != 0;
            let (len, mut head) = match h[1] & 0x7f {
                126 if h.len() >= 4 => (u64::from(u16::from_be_bytes([h[2], h[3]])), 4),
                127 if h.len() >= 10 => (
                    u64::from_be_bytes(h[2..10].try_into().unwrap_or_default()),
                    10,
                ),
                126 | 127 => return (data, out, End::Open),
                n => (u64::from(n), 2),
            };
            if masked {
                head += 4;
            }
            if h.len() < head {
                return (data, out, End::Open);
            }
            let (fin, opcode) = (h[0] & 0x80 != 0, h[0] & 0x0f);
            if h[0] & 0x70 != 0 || !masked {
                let e = fail(&mut out, close::PROTOCOL_ERROR);
                return (data, out, e);
            }
            match opcode {
                OP_BINARY | OP_CONTINUATION => {
                    if (opcode == OP_BINARY) == fragmented {
                        let e = fail(&mut out, close::PROTOCOL_ERROR);
                        return (data, out, e);
                    }
                    if len > max {
                        let e = fail(&mut out, close::TOO_BIG);
                        return (data, out, e);
                    }
                    fragmented = !fin;
                }
                OP_TEXT => {
                    let e = fail(&mut out, close::UNSUPPORTED_DATA);
                    return (data, out, e);
                }
                OP_CLOSE | OP_PING | OP_PONG if fin && len <= MAX_CONTROL as u64 => {}
                OP_CLOSE | OP_PING | OP_PONG => {
                    let e = fail(&mut out, close::PROTOCOL_ERROR);
                    return (data, out, e);
                }
                _ => {
                    let e = fail(&mut out, close::PROTOCOL_ERROR);
                    return (data, out, e);
                }
            }
            let mask = &h[head - 4..head];
            let body = &h[head..];
            let complete = (body.len() as u64) >= len;
            let take = body.len().min(usize::try_from(len).unwrap_or(usize::MAX));
            let payload: Vec<u8> = body[..take]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            if opcode < OP_CLOSE {
                data.extend_from_slice(&payload);
            }
            if !complete {
                return (data, out, End::Open);
            }
            match opcode {
                OP_PING => push_frame(&mut out, OP_PONG, &payload),
                OP_CLOSE => {
                    push_frame(&mut out, OP_CLOSE, payload.get(..2).unwrap_or(&[]));
                    return (data, out, End::Closed);
                }
                _ => {}
            }
            at += head + take;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` in pieces of `step` bytes; returns the MQTT bytes and how it ended.
    fn feed(framing: &mut Framing, wire: &[u8], step: usize) -> (Vec<u8>, Result<bool, WsError>) {
        let mut data = Vec::new();
        for piece in wire.chunks(step.max(1)).chain(std::iter::once(&[][..])) {
            let mut buf = piece.to_vec();
            match framing.unframe(&mut buf) {
                Ok(Unframed::Data(n)) => data.extend_from_slice(&buf[..n]),
                Ok(Unframed::Closed(n)) => {
                    data.extend_from_slice(&buf[..n]);
                    return (data, Ok(true));
                }
                Err(e) => return (data, Err(e)),
            }
        }
        (data, Ok(false))
    }

    #[test]
    fn frames_in_any_split_give_the_same_bytes() {
        let big: Vec<u8> = (0..70_000u32).map(|i| (i * 7) as u8).collect();
        let mut wire = client_frame(true, OP_BINARY, b"\x10\x0c\x00\x04MQTT", [1, 2, 3, 4]);
        wire.extend(client_frame(false, OP_BINARY, &big[..300], [9, 8, 7, 6]));
        wire.extend(client_frame(true, OP_PING, b"hi", [5, 5, 5, 5]));
        wire.extend(client_frame(
            true,
            OP_CONTINUATION,
            &big[300..],
            [0xff, 0, 0xff, 0],
        ));
        wire.extend(client_frame(true, OP_BINARY, b"", [1, 1, 1, 1]));
        let mut expect = b"\x10\x0c\x00\x04MQTT".to_vec();
        expect.extend_from_slice(&big);
        for step in [1, 2, 3, 7, 13, 100, 4096, wire.len()] {
            let mut f = Framing::new(1 << 20);
            let (data, end) = feed(&mut f, &wire, step);
            assert_eq!(end, Ok(false), "step {step}");
            assert_eq!(data, expect, "step {step}");
            // The ping was answered with a pong carrying its payload.
            assert_eq!(f.out, [0x8a, 2, b'h', b'i'], "step {step}");
            assert!(!f.is_quiet());
            f.out.clear();
            assert!(f.is_quiet(), "between frames after the last one");
        }
    }

    #[test]
    fn close_is_echoed_and_ends_the_stream() {
        let mut wire = client_frame(true, OP_BINARY, b"\xc0\x00", [1, 2, 3, 4]);
        wire.extend(client_frame(
            true,
            OP_CLOSE,
            &1000u16.to_be_bytes(),
            [7, 7, 7, 7],
        ));
        wire.extend(client_frame(true, OP_BINARY, b"after", [1, 2, 3, 4]));
        let mut f = Framing::new(1024);
        let (data, end) = feed(&mut f, &wire, 5);
        assert_eq!(data, b"\xc0\x00");
        assert_eq!(end, Ok(true));
        assert_eq!(f.out, [0x88, 2, 0x03, 0xe8]);
        assert!(f.is_closed());
    }

    #[test]
    fn violations_close_with_the_rfc_code() {
        let cases: [(Vec<u8>, u16); 6] = [
            (
                client_frame(true, OP_TEXT, b"\x10", [1, 2, 3, 4]),
                close::UNSUPPORTED_DATA,
            ),
            (vec![0x82, 0x02, 0xc0, 0x00], close::PROTOCOL_ERROR), // unmasked
            (
                client_frame(true, OP_BINARY | 0x40, b"x", [1; 4]),
                close::PROTOCOL_ERROR,
            ), // RSV1
            (
                client_frame(true, OP_BINARY, &[0; 2000], [1; 4]),
                close::TOO_BIG,
            ),
            (
                client_frame(false, OP_PING, b"", [1; 4]),
                close::PROTOCOL_ERROR,
            ), // fragmented ping
            (
                client_frame(true, OP_CONTINUATION, b"x", [1; 4]),
                close::PROTOCOL_ERROR,
            ),
        ];
        for (wire, code) in cases {
            let mut f = Framing::new(1024);
            let (_, end) = feed(&mut f, &wire, 3);
            assert_eq!(end.map_err(|e| e.code), Err(code), "{wire:02x?}");
            let mut close = vec![0x88, 2];
            close.extend_from_slice(&code.to_be_bytes());
            assert_eq!(f.out, close);
        }
        // A frame that declares 2^63 bytes is refused from its header alone.
        let mut f = Framing::new(1024);
        let mut wire = vec![0x82, 0xff];
        wire.extend_from_slice(&(1u64 << 63).to_be_bytes());
        wire.extend_from_slice(&[0; 4]);
        assert_eq!(
            feed(&mut f, &wire, 1).1.map_err(|e| e.code),
            Err(close::TOO_BIG)
        );
    }

    #[test]
    fn pieces_of_any_size_agree_with_the_reference() {
        let mut wire = client_frame(true, OP_BINARY, b"\x10\x0c\x00\x04MQTT", [1, 2, 3, 4]);
        wire.extend(client_frame(false, OP_BINARY, &[7; 300], [9, 8, 7, 6]));
        wire.extend(client_frame(true, OP_PING, b"hi", [5, 5, 5, 5]));
        wire.extend(client_frame(
            true,
            OP_CONTINUATION,
            &[8; 70_000],
            [0xff, 0, 0xff, 0],
        ));
        wire.extend(client_frame(
            true,
            OP_CLOSE,
            &1000u16.to_be_bytes(),
            [1, 1, 1, 1],
        ));
        for step in 0..=64u8 {
            for max in [0u8, 20, 255] {
                let mut input = vec![step, max];
                input.extend_from_slice(&wire);
                fuzz_check::check(&input).unwrap();
                // Cut anywhere: still the same as the reference.
                for cut in [1, 7, 40, 500, wire.len() - 3] {
                    fuzz_check::check(&input[..cut.min(input.len())]).unwrap();
                }
            }
        }
    }

    #[test]
    fn server_frame_headers() {
        let mut h = [0; 10];
        let n = frame_header(BINARY, 5, &mut h);
        assert_eq!(&h[..n], [0x82, 5]);
        let n = frame_header(BINARY, 300, &mut h);
        assert_eq!(&h[..n], [0x82, 126, 1, 44]);
        let n = frame_header(BINARY, 70_000, &mut h);
        assert_eq!(&h[..n], [0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
    }

    fn rules() -> UpgradeRules {
        UpgradeRules {
            path: "/mqtt".into(),
            origins: vec!["https://ok.example".into()],
        }
    }

    fn request(path: &str, extra: &str) -> Vec<u8> {
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
        .into_bytes()
    }

    fn status(u: &Upgrade) -> u16 {
        match u {
            Upgrade::Accept { .. } => 101,
            Upgrade::Refuse { status, .. } => *status,
            Upgrade::Partial => 0,
        }
    }

    #[test]
    fn upgrade_accepts_mqtt_and_answers_the_rfc_key() {
        // The example of RFC 6455 section 1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let req = request("/mqtt?x=1", "Sec-WebSocket-Protocol: foo, mqtt\r\n");
        let Upgrade::Accept { response, consumed } = upgrade(&req, &rules()) else {
            panic!("refused");
        };
        assert_eq!(consumed, req.len());
        let text = String::from_utf8(response).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 "), "{text}");
        assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(text.contains("Sec-WebSocket-Protocol: mqtt\r\n"));
        let v31 = request("/mqtt", "Sec-WebSocket-Protocol: mqttv3.1\r\n");
        assert_eq!(status(&upgrade(&v31, &rules())), 101);
        assert_eq!(status(&upgrade(&req[..20], &rules())), 0, "partial");
    }

    #[test]
    fn upgrade_refusals() {
        let proto = "Sec-WebSocket-Protocol: mqtt\r\n";
        let plain = b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        let cases: [(Vec<u8>, u16); 7] = [
            (plain, 426),
            (request("/mqtt", ""), 400), // no subprotocol
            (request("/other", proto), 404),
            (
                request("/mqtt", &format!("{proto}Origin: https://evil.example\r\n")),
                403,
            ),
            (
                b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00".to_vec(),
                400,
            ), // MQTT on the WS port
            (b"POST /mqtt HTTP/1.1\r\n\r\n".to_vec(), 405),
            (vec![b'a'; MAX_REQUEST + 1], 431),
        ];
        for (req, want) in cases {
            let got = upgrade(&req, &rules());
            assert_eq!(status(&got), want, "{:?}", String::from_utf8_lossy(&req));
        }
        let ok = request("/mqtt", &format!("{proto}Origin: https://ok.example\r\n"));
        assert_eq!(status(&upgrade(&ok, &rules())), 101);
        let old = String::from_utf8(request("/mqtt", proto))
            .unwrap()
            .replace("Version: 13", "Version: 8");
        assert_eq!(status(&upgrade(old.as_bytes(), &rules())), 426);
    }
}
