//! A wake-up a thread outside the shards (the cluster's link thread) rings for a shard: a socket
//! pair whose shard end a glommio task waits on, and whose other end the thread writes one byte
//! to. Rung only when the shard said it sleeps, so at most once per wait.

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use bytes::BytesMut;

use super::io as reading;
use super::stream::tcp_stream;

/// The shard's end, waited on by `Bell::wait` (made into a glommio stream on the shard).
pub struct BellFd(OwnedFd);

/// The ringing end (any thread).
pub struct Ringer(UnixStream);

impl Ringer {
    /// Writes one byte; a full socket already holds a wake-up, so that is fine too.
    pub fn ring(&self) {
        let _ = (&self.0).write(&[1]);
    }
}

/// A bell and its ringer.
pub fn pair() -> io::Result<(BellFd, Ringer)> {
    let (bell, ringer) = super::dial::socket_pair()?;
    Ok((BellFd(bell), Ringer(UnixStream::from(ringer))))
}

/// The shard's end, on its executor.
pub struct Bell {
    stream: glommio::net::TcpStream,
    buf: BytesMut,
}

impl Bell {
    pub fn new(fd: BellFd) -> Self {
        Self {
            stream: tcp_stream(fd.0),
            buf: BytesMut::new(),
        }
    }

    /// Waits until rung (returns at once if it rang meanwhile); `false` once the ringer is gone.
    pub async fn wait(&mut self) -> bool {
        self.buf.clear();
        matches!(reading::fill(&mut self.stream, &mut self.buf).await, Ok(n) if n > 0)
    }
}
