//! The byte-stream seam: what the connection code reads frames from and writes packets to. Plain
//! TCP implements it today; a TLS or WebSocket stream is another implementation under the same
//! connection code, not another connection type.

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, BorrowedFd};

use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

/// A connection's bytes in both directions.
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + 'static {
    /// The socket under the stream, when the stream keeps no state of its own beyond it: such a
    /// connection can be parked in the shard's idle watcher or handed to another shard as a bare
    /// file descriptor. `None` for streams that carry state (a TLS session).
    fn socket(&self) -> Option<BorrowedFd<'_>>;

    /// Shuts both directions down at once (the peer sees the end, our reader wakes with end of
    /// stream).
    fn shutdown_now(&self) -> io::Result<()>;
}

impl ByteStream for TcpStream {
    fn socket(&self) -> Option<BorrowedFd<'_>> {
        // SAFETY: the stream owns this fd and outlives the borrow.
        Some(unsafe { BorrowedFd::borrow_raw(self.as_raw_fd()) })
    }

    fn shutdown_now(&self) -> io::Result<()> {
        // glommio's own shutdown is synchronous too, behind an `async fn`.
        socket2::SockRef::from(self).shutdown(Shutdown::Both)
    }
}
