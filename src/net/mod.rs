//! The only socket code: each shard's SO_REUSEPORT listener and, per connection, a reader task
//! (frames in, parsed in place from one read buffer) and a writer task (one write per tick of
//! everything the shard queued in the connection's `Outbox`).
//!
//! A connection is served on its client id's *home shard*: the shard that accepted it reads the
//! CONNECT, and if the id hashes elsewhere it hands the socket (a duplicated fd), the CONNECT and
//! any bytes read after it to the home shard through the mesh. Why move the connection rather than
//! the session: every session operation — takeover [MQTT-3.1.4-2], resumption, QoS flows, queued
//! deliveries — then happens on one shard with no cross-shard session protocol, and the cost is
//! one fd hand-off per connection, paid once at CONNECT.

mod connection;

use std::rc::Rc;

use glommio::net::TcpListener;

pub use connection::adopt;

use crate::shard::Shard;

/// Accepts connections until the task is dropped.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                if shard.is_stopping() {
                    continue;
                }
                glommio::spawn_local(connection::serve(shard.clone(), stream)).detach();
            }
            Err(e) => {
                crate::log!(Warn, "shard {}: accept failed: {e}", shard.id().0);
                // Back off briefly (e.g. out of file descriptors) instead of spinning.
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
