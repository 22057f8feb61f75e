//! The only socket code: each shard's SO_REUSEPORT listener and, per connection, one task that
//! reads frames (parsed in place from the shard's read arena, `io`) and, whenever reading has to
//! wait, writes everything the shard queued in the connection's `Outbox` with one `send`.
//!
//! A connection is served on its client id's *home shard*: the shard that accepted it reads the
//! CONNECT, and if the id hashes elsewhere it hands the socket (a duplicated fd), the CONNECT and
//! any bytes read after it to the home shard through the mesh. Why move the connection rather than
//! the session: every session operation — takeover [MQTT-3.1.4-2], resumption, QoS flows, queued
//! deliveries — then happens on one shard with no cross-shard session protocol, and the cost is
//! one fd hand-off per connection, paid once at CONNECT.
//!
//! Listeners: plain MQTT, and (when configured) MQTT over TLS, over WebSocket and over WebSocket
//! over TLS. Each is a `Protocol` on the same accept loop; a TLS handshake and a WebSocket upgrade
//! (`connection::open`) turn the socket into a `stream::Layered` before the CONNECT phase, and the
//! same connection code runs over it. The layers' state (`stream::Carried`) moves with the fd in a
//! hand-off and waits beside it while the connection is parked.

mod connection;
pub mod dial;
pub mod doorbell;
pub mod idle;
mod io;
mod live;
pub mod stream;
pub mod tls;
pub mod ws;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use std::os::fd::AsRawFd;

use glommio::net::TcpListener;

use crate::gate::{ConnectionGate, GateRefusal};
use crate::metrics::Listener;
use crate::shard::{Arrival, Refusal, Shard};

/// What a listener speaks under MQTT: TLS, WebSocket, both, or neither (plain MQTT over TCP).
pub struct Protocol {
    pub listener: Listener,
    /// The TLS configuration new connections take (TLS and WSS listeners).
    pub tls: Option<Arc<tls::TlsBoard>>,
    /// The upgrade's rules (WS and WSS listeners).
    pub ws: Option<ws::UpgradeRules>,
    /// COREMQ_TLS_IDENTITY_AS_USERNAME: the client certificate's common name is the user name.
    pub identity_as_username: bool,
}

impl Protocol {
    /// Plain MQTT over TCP.
    pub fn mqtt() -> Self {
        Self {
            listener: Listener::Mqtt,
            tls: None,
            ws: None,
            identity_as_username: false,
        }
    }

    fn is_plain(&self) -> bool {
        self.tls.is_none() && self.ws.is_none()
    }
}

/// Accepts connections until the task is dropped. The gate's broker-wide checks (sockets in
/// their CONNECT phase, connections and new connections per source address) run first: a
/// connection over them is closed at once, before it costs the shard anything.
pub async fn accept_loop(
    shard: Rc<Shard>,
    listener: TcpListener,
    gate: ConnectionGate,
    protocol: Rc<Protocol>,
) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                if shard.is_stopping() {
                    continue;
                }
                let Ok(peer) = stream.peer_addr() else {
                    continue;
                };
                let now = Instant::now();
                // A banned address (the ban list, or too many failed logins) is closed at
                // once: it costs an accept, nothing more.
                if let Some(why) = shard.address_refused(peer.ip(), now) {
                    shard.count_refusal(why);
                    continue;
                }
                match gate.accept(peer.ip(), now) {
                    // Over COREMQ_MAX_CONNECTIONS the connection is still read, to answer its
                    // CONNECT with "quota exceeded" instead of a bare close.
                    Ok((slot, connecting)) => {
                        let _ = stream.set_nodelay(true);
                        shard.counters().accepted(protocol.listener);
                        let serve = connection::serve(
                            shard.clone(),
                            stream,
                            slot,
                            connecting,
                            peer.ip(),
                            protocol.clone(),
                        );
                        glommio::spawn_local(serve).detach();
                    }
                    Err(why) => shard.count_refusal(match why {
                        GateRefusal::Connecting => Refusal::Connecting,
                        GateRefusal::PerAddress => Refusal::PerAddress,
                        GateRefusal::Rate => Refusal::ConnectionRate,
                    }),
                }
            }
            Err(e) => {
                crate::log!(Warn, "shard {}: accept failed: {e}", shard.id().0);
                // Back off briefly (e.g. out of file descriptors) instead of spinning.
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// Starts serving the connections that arrive on this shard other than through its listener —
/// parked connections the shard woke, and connections other shards handed over — until dropped.
pub async fn serve_arrivals(shard: Rc<Shard>) {
    loop {
        let arrivals = std::future::poll_fn(|cx| shard.poll_arrivals(cx)).await;
        for arrival in arrivals {
            match arrival {
                Arrival::Woken(w) => {
                    if let Some(watcher) = idle::watcher() {
                        watcher.unwatch(w.fd.as_raw_fd());
                    }
                    live::resume(shard.clone(), w.fd, w.carried, w.client, w.slot, w.deadline);
                }
                Arrival::Handoff(h) => connection::adopt(shard.clone(), h),
            }
        }
    }
}
