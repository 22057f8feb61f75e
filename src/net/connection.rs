//! A connection's CONNECT phase: open the listener's layers (TLS handshake, WebSocket upgrade),
//! read the CONNECT (all within COREMQ_CONNECT_TIMEOUT), carry out the steps the shard's
//! admission asks for (`shard::login`: send a packet and read the answer, run a password check
//! off the event loop, refuse), then start the connection's task (`live`) on its client id's home
//! shard — here, or on another shard after a hand-off through the mesh.

use std::net::IpAddr;
use std::rc::Rc;
use std::time::Instant;

use bytes::BytesMut;
use futures_lite::future;
use futures_lite::io::AsyncWriteExt;
use glommio::net::TcpStream;

use super::io;
use super::live;
use super::stream::{tcp_stream, ByteStream, Layered};
use super::ws::{self, Framing, Upgrade};
use super::Protocol;
use crate::gate::{ConnSlot, Connecting};
use crate::mesh::Handoff;
use crate::protocol::{
    connect_protocol_version, decode, ConnAck, Connect, DecodeError, Packet, ProtocolVersion,
    ReasonCode,
};
use crate::shard::{Admit, Admitted, CertUser, Shard};

/// How the CONNECT phase ended.
enum Outcome {
    Accept(Admitted),
    /// Send this CONNACK (in this version), then close.
    Refuse(Box<ConnAck>, ProtocolVersion),
    Close,
}

/// Who is connecting: the source address and what its certificate says (`Shard::admit`).
struct Peer {
    addr: IpAddr,
    cert_user: CertUser,
}

/// Reads until the first complete packet, which must be CONNECT [MQTT-3.1.0-1].
/// `has_slot` as for `Shard::admit`.
async fn read_connect<S: ByteStream>(
    shard: &Shard,
    stream: &mut S,
    buf: &mut BytesMut,
    has_slot: bool,
    peer: &Peer,
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
    peer: &Peer,
) -> Outcome {
    let (mut admission, mut next) = shard.admit(connect, has_slot, peer.addr, &peer.cert_user);
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
/// `connecting` is its place among sockets in the CONNECT phase, freed when that ends. The
/// listener's layers are opened first; COREMQ_CONNECT_TIMEOUT bounds that and the CONNECT
/// together.
pub async fn serve(
    shard: Rc<Shard>,
    tcp: TcpStream,
    slot: ConnSlot,
    connecting: Connecting,
    peer: IpAddr,
    protocol: Rc<Protocol>,
) {
    let deadline = Instant::now() + shard.config.connect_timeout;
    if protocol.is_plain() {
        let peer = Peer {
            addr: peer,
            cert_user: CertUser::NotUsed,
        };
        let buf = BytesMut::new();
        return serve_connect(shard, tcp, buf, slot, connecting, peer, deadline).await;
    }
    let opened = future::or(open(&shard, tcp, &protocol), async {
        sleep_until(deadline).await;
        None
    });
    let Some((stream, buf, cert_user)) = opened.await else {
        shard.counters().layer_failed(protocol.listener);
        return;
    };
    let peer = Peer {
        addr: peer,
        cert_user,
    };
    serve_connect(shard, stream, buf, slot, connecting, peer, deadline).await
}

/// Serves a connection the broker opened to itself (`dial::local_connection`): plain bytes,
/// admitted as `cert_user` says.
pub async fn serve_trusted(
    shard: Rc<Shard>,
    tcp: TcpStream,
    slot: ConnSlot,
    connecting: Connecting,
    peer: IpAddr,
    cert_user: CertUser,
) {
    let deadline = Instant::now() + shard.config.connect_timeout;
    let peer = Peer {
        addr: peer,
        cert_user,
    };
    serve_connect(
        shard,
        tcp,
        BytesMut::new(),
        slot,
        connecting,
        peer,
        deadline,
    )
    .await
}

async fn sleep_until(deadline: Instant) {
    glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
}

/// Opens a listener's layers: the TLS handshake, then the WebSocket upgrade. Gives the stream,
/// the MQTT bytes that came with the upgrade request, and the certificate's user name; `None`
/// when the peer failed (an HTTP refusal was sent, a TLS alert if the socket took it).
async fn open(
    shard: &Shard,
    tcp: TcpStream,
    protocol: &Protocol,
) -> Option<(Layered, BytesMut, CertUser)> {
    let mut stream = Layered::new(tcp);
    let mut cert_user = CertUser::NotUsed;
    if let Some(board) = &protocol.tls {
        stream.start_tls(board.accept().ok()?);
        let done = std::future::poll_fn(|cx| stream.poll_handshake(cx)).await;
        if let Err(e) = done {
            crate::log!(
                Debug,
                "{} listener: TLS handshake failed: {e}",
                protocol.listener.name()
            );
            return None;
        }
        if protocol.identity_as_username {
            cert_user = match stream.peer_common_name() {
                Some(name) => CertUser::Name(name),
                None => CertUser::Missing,
            };
        }
    }
    let mut buf = BytesMut::new();
    if let Some(rules) = &protocol.ws {
        loop {
            match ws::upgrade(&buf, rules) {
                Upgrade::Partial => match io::fill(&mut stream, &mut buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                },
                Upgrade::Refuse { response, status } => {
                    crate::log!(
                        Debug,
                        "{} listener: HTTP {status} to an upgrade request",
                        protocol.listener.name()
                    );
                    if stream.write_all(&response).await.is_ok() {
                        let _ = stream.flush().await;
                    }
                    let _ = stream.shutdown_now(None);
                    return None;
                }
                Upgrade::Accept { response, consumed } => {
                    stream.write_all(&response).await.ok()?;
                    stream.flush().await.ok()?;
                    let _ = buf.split_to(consumed);
                    let max = u64::from(shard.config.max_packet_size);
                    stream.start_ws(Framing::new(max));
                    // Frames sent right behind the request.
                    let n = stream.unframe_early(&mut buf).ok()?;
                    buf.truncate(n);
                    break;
                }
            }
        }
    }
    Some((stream, buf, cert_user))
}

/// The CONNECT phase proper on an open stream, then the connection's task.
async fn serve_connect<S: ByteStream>(
    shard: Rc<Shard>,
    mut stream: S,
    mut buf: BytesMut,
    slot: ConnSlot,
    connecting: Connecting,
    peer: Peer,
    deadline: Instant,
) {
    let read = read_connect(&shard, &mut stream, &mut buf, slot.is_admitted(), &peer);
    let phase = future::or(read, async {
        sleep_until(deadline).await;
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
    // What the stream still holds of ours (a pong answered during the CONNECT phase) goes before
    // the socket moves: its state can only move with nothing left to send.
    let flushed = future::or(async { stream.flush().await.is_ok() }, async {
        glommio::timer::sleep(shard.config.close_timeout).await;
        false
    });
    if !flushed.await {
        return;
    }
    hand_off(&shard, stream, admitted, buf, slot);
}

/// Sends the connection to its home shard: the socket (a duplicate of its fd: ours closes with
/// `stream`, the home shard's keeps the socket open) with the stream's state, the CONNECT and
/// what came after it.
fn hand_off<S: ByteStream>(
    shard: &Shard,
    mut stream: S,
    admitted: Admitted,
    buf: BytesMut,
    slot: ConnSlot,
) {
    let fd = match stream.socket().try_clone_to_owned() {
        Ok(fd) => fd,
        Err(e) => {
            crate::log!(Warn, "handoff failed (dup: {e}); closing the connection");
            return;
        }
    };
    let Ok(carried) = stream.carry() else {
        crate::log!(
            Warn,
            "handoff failed (bytes still to send); closing the connection"
        );
        return;
    };
    drop(stream);
    shard.hand_over(
        admitted.home,
        Handoff {
            fd,
            carried,
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
    let admitted = Admitted {
        home: shard.id(),
        connect: h.connect,
        assigned: h.assigned,
        auth_data: h.auth_data,
    };
    let tcp = tcp_stream(h.fd);
    match h.carried {
        None => live::start(shard, tcp, admitted, h.buf, h.slot),
        Some(c) => live::start(shard, Layered::resume(tcp, c), admitted, h.buf, h.slot),
    }
}
