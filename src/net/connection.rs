//! A connection's CONNECT phase: read the CONNECT (within COREMQ_CONNECT_TIMEOUT), carry out the
//! steps the shard's admission asks for (`shard::login`: send a packet and read the answer, run a
//! password check off the event loop, refuse), then start the connection's task (`live`) on its
//! client id's home shard — here, or on another shard after a hand-off through the mesh.

use std::net::IpAddr;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;

use bytes::BytesMut;
use futures_lite::future;
use futures_lite::io::AsyncWriteExt;
use glommio::net::TcpStream;

use super::io;
use super::live;
use super::stream::ByteStream;
use crate::gate::{ConnSlot, Connecting};
use crate::mesh::Handoff;
use crate::protocol::{
    connect_protocol_version, decode, ConnAck, Connect, DecodeError, Packet, ProtocolVersion,
    ReasonCode,
};
use crate::shard::{Admit, Admitted, Shard};

/// How the CONNECT phase ended.
enum Outcome {
    Accept(Admitted),
    /// Send this CONNACK (in this version), then close.
    Refuse(Box<ConnAck>, ProtocolVersion),
    Close,
}

/// Reads until the first complete packet, which must be CONNECT [MQTT-3.1.0-1].
/// `has_slot` and `peer` as for `Shard::admit`.
async fn read_connect<S: ByteStream>(
    shard: &Shard,
    stream: &mut S,
    buf: &mut BytesMut,
    has_slot: bool,
    peer: IpAddr,
) -> Outcome {
    loop {
        // Peeked before `decode`, which consumes a whole frame even when it refuses it: a
        // refused MQTT 5 CONNECT is still answered in MQTT 5.
        let version = connect_protocol_version(buf);
        match decode(buf, ProtocolVersion::V5, shard.config.max_packet_size) {
            Ok(Some(Packet::Connect(c))) => {
                return admit(shard, stream, buf, c, has_slot, peer).await
            }
            Ok(Some(_)) => return Outcome::Close,
            Ok(None) => {}
            Err(e) => return refusal_for(e, version),
        }
        match io::fill(stream, buf).await {
            Ok(0) | Err(_) => return Outcome::Close,
            Ok(_) => {}
        }
    }
}

/// The CONNACK a CONNECT that does not decode gets: MQTT 5 clients the error's reason code; an
/// unsupported protocol level the 3.1.1 return code 1 [MQTT-3.1.2-2]; other 3.1.1 errors just a
/// close.
fn refusal_for(e: DecodeError, version: Option<ProtocolVersion>) -> Outcome {
    let ack = |code| Box::new(ConnAck::refusal(code));
    match (e, version) {
        (DecodeError::UnsupportedProtocolVersion(_), _) => Outcome::Refuse(
            ack(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION),
            ProtocolVersion::V3_1_1,
        ),
        (_, Some(ProtocolVersion::V5)) => {
            Outcome::Refuse(ack(e.reason_code()), ProtocolVersion::V5)
        }
        _ => Outcome::Close,
    }
}

/// Carries out the admission of `connect` step by step. Waits for the client (the AUTH
/// exchange) are bounded by COREMQ_CONNECT_TIMEOUT; a password check runs on the shard's
/// blocking pool, never on its event loop.
async fn admit<S: ByteStream>(
    shard: &Shard,
    stream: &mut S,
    buf: &mut BytesMut,
    connect: Box<Connect>,
    has_slot: bool,
    peer: IpAddr,
) -> Outcome {
    let (mut admission, mut next) = shard.admit(connect, has_slot, peer);
    loop {
        next = match next {
            Admit::Accept(a) => return Outcome::Accept(a),
            Admit::Refuse(ack) => return Outcome::Refuse(ack, admission.version()),
            Admit::Close => return Outcome::Close,
            Admit::Verify(check) => {
                let ok = glommio::executor().spawn_blocking(check).await;
                admission.on_verified(shard, ok)
            }
            Admit::Send(packet) => {
                let answer = future::or(exchange(shard, stream, buf, &packet), async {
                    glommio::timer::sleep(shard.config.connect_timeout).await;
                    None
                });
                match answer.await {
                    Some(Ok(p)) => admission.on_packet(shard, p),
                    Some(Err(e)) => admission.on_decode_error(e),
                    None => return Outcome::Close,
                }
            }
        }
    }
}

/// Sends `packet` (MQTT 5: only AUTH is sent before CONNACK) and reads the client's next one.
/// `None` when the client went away.
async fn exchange<S: ByteStream>(
    shard: &Shard,
    stream: &mut S,
    buf: &mut BytesMut,
    packet: &Packet,
) -> Option<Result<Packet, DecodeError>> {
    let mut out = BytesMut::new();
    packet.encode(ProtocolVersion::V5, &mut out).ok()?;
    stream.write_all(&out).await.ok()?;
    loop {
        match decode(buf, ProtocolVersion::V5, shard.config.max_packet_size) {
            Ok(Some(p)) => return Some(Ok(p)),
            Ok(None) => {}
            Err(e) => return Some(Err(e)),
        }
        match io::fill(stream, buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Serves a connection the listener accepted on this shard from `peer`. `slot` holds its places
/// (when not admitted under COREMQ_MAX_CONNECTIONS, the CONNECT is refused with 0x97);
/// `connecting` is its place among sockets in the CONNECT phase, freed when that ends.
pub async fn serve(
    shard: Rc<Shard>,
    mut stream: TcpStream,
    slot: ConnSlot,
    connecting: Connecting,
    peer: IpAddr,
) {
    let mut buf = BytesMut::new();
    let read = read_connect(&shard, &mut stream, &mut buf, slot.is_admitted(), peer);
    let phase = future::or(read, async {
        glommio::timer::sleep(shard.config.connect_timeout).await;
        Outcome::Close
    });
    let outcome = phase.await;
    drop(connecting);
    let admitted = match outcome {
        Outcome::Accept(a) => a,
        Outcome::Refuse(ack, version) => return live::refuse(&*shard, stream, ack, version).await,
        Outcome::Close => return,
    };
    // Bytes that came after CONNECT: copied, so that they pin no part of the read arena.
    let buf = BytesMut::from(&buf[..]);
    if admitted.home == shard.id() {
        // A task of its own: this one's state (CONNECT phase, authentication) is large and
        // would otherwise stay allocated for the connection's whole life.
        live::start(shard, stream, admitted, buf, slot);
        return;
    }
    hand_off(&shard, stream, admitted, buf, slot);
}

/// Sends the connection to its home shard: the socket (a duplicate of its fd: ours closes with
/// `stream`, the home shard's keeps the socket open), the CONNECT and what came after it.
fn hand_off<S: ByteStream>(
    shard: &Shard,
    stream: S,
    admitted: Admitted,
    buf: BytesMut,
    slot: ConnSlot,
) {
    let fd = match stream.socket().map(|s| s.try_clone_to_owned()) {
        Some(Ok(fd)) => fd,
        Some(Err(e)) => {
            crate::log!(Warn, "handoff failed (dup: {e}); closing the connection");
            return;
        }
        None => {
            crate::log!(
                Warn,
                "a stream with state of its own cannot move to another shard; closing it"
            );
            return;
        }
    };
    drop(stream);
    shard.hand_over(
        admitted.home,
        Handoff {
            fd,
            connect: admitted.connect,
            assigned: admitted.assigned,
            auth_data: admitted.auth_data,
            slot,
            buf,
        },
    );
}

/// Serves a connection handed over by another shard.
pub fn adopt(shard: Rc<Shard>, h: Handoff) {
    let stream = stream_of(h.fd);
    let admitted = Admitted {
        home: shard.id(),
        connect: h.connect,
        assigned: h.assigned,
        auth_data: h.auth_data,
    };
    live::start(shard, stream, admitted, h.buf, h.slot);
}

/// The TCP stream of a socket this shard now owns alone (handed over, or parked and woken).
pub fn stream_of(fd: OwnedFd) -> TcpStream {
    // SAFETY: the fd is a connected TCP socket we own exclusively.
    unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) }
}
