//! A wake-up a thread outside the shards (the cluster's link thread) rings for a shard: a socket
//! pair whose shard end a glommio task waits on, and whose other end the thread writes one byte
//! to. Rung only when the shard said it sleeps, so at most once per wait.

use std::io::{self, Write};
use std::os::fd::{FromRawFd, OwnedFd};
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
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two descriptors into `fds`, which we then own.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and ours alone.
    let (bell, ringer) = unsafe {
        (
            OwnedFd::from_raw_fd(fds[0]),
            UnixStream::from_raw_fd(fds[1]),
        )
    };
    Ok((BellFd(bell), Ringer(ringer)))
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
