//! Stream buffering for connections (shard-local, never crosses cores): reading into the shard's
//! read arena, and writing a connection's outbox. No MQTT meaning here.
//!
//! Reading. An idle connection should cost no read buffer, yet a busy one should read in large
//! gulps and parse frames in place. So every connection on a shard reads into the same arena, a
//! 64 KiB chunk: glommio's `poll_read` is a plain non-blocking `recv` into the slice it is given
//! (it keeps no buffer while it waits for readiness), so the arena is lent to one poll at a time.
//! What arrived is split off the front of the arena as the connection's buffer, frames are split
//! off that and frozen, and topic and payload stay slices of the arena. When the arena runs low a
//! fresh one replaces it; an old one is freed when its last slice is dropped.
//!
//! Worked example: a connection has 3 bytes of a 40-byte PUBLISH buffered. On the next poll the 3
//! bytes are copied to the front of the arena and `recv` fills the room after them; 120 bytes
//! arrive, so the buffer becomes the arena's first 123 bytes (three frames), and the arena moves
//! on by 123. Had no bytes been waiting, the 3 bytes would have been copied into a buffer of the
//! connection's own, so that a stalled partial frame never pins a whole arena.
//!
//! Frames larger than `ARENA_FRAME_MAX` are read into a buffer of their own, sized once from the
//! fixed header (the size limit was already checked by `decode`).

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures_lite::io::AsyncRead;

use super::stream::ByteStream;
use crate::protocol::wire;
use crate::shard::Outbox;

/// Size of a shard's read arena.
const ARENA: usize = 64 * 1024;
/// Room a read should have at least; below it (after the buffered partial frame) the arena is
/// replaced.
const MIN_ROOM: usize = 4 * 1024;
/// Frames up to this size are read through the arena; larger ones into their own buffer.
const ARENA_FRAME_MAX: usize = 16 * 1024;
/// A write buffer larger than this after a burst is given back.
const WRITE_KEEP: usize = 64 * 1024;

thread_local! {
    /// This shard's read arena (each shard is one thread). Always fully initialised: it is
    /// zero-filled once when allocated and only ever shrinks from the front.
    static ARENA_BUF: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// Reads more bytes into `buf` (see the module docs); `Ready(Ok(0))` at end of stream.
pub fn poll_fill<S: AsyncRead + Unpin>(
    stream: &mut S,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    let frame = match wire::parse_fixed_header(buf, u32::MAX) {
        Ok(Some(h)) => h.frame_len(),
        _ => 0,
    };
    if frame > ARENA_FRAME_MAX && frame > buf.len() {
        return poll_fill_own(stream, cx, buf, frame);
    }
    let kept = buf.len();
    let polled = ARENA_BUF.with(|arena| {
        let mut arena = arena.borrow_mut();
        if arena.len() < kept + MIN_ROOM {
            *arena = BytesMut::zeroed(ARENA);
        }
        arena[..kept].copy_from_slice(buf);
        match Pin::new(&mut *stream).poll_read(cx, &mut arena[kept..]) {
            Poll::Ready(Ok(n)) if n > 0 => {
                *buf = arena.split_to(kept + n);
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    });
    if polled.is_pending() {
        // Waiting: hold no part of the arena.
        *buf = if buf.is_empty() {
            BytesMut::new()
        } else {
            BytesMut::from(&buf[..])
        };
    }
    polled
}

/// Reads part of a large frame (`frame` bytes in all) into a buffer of the connection's own.
fn poll_fill_own<S: AsyncRead + Unpin>(
    stream: &mut S,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
    frame: usize,
) -> Poll<io::Result<usize>> {
    buf.reserve(frame - buf.len());
    let start = buf.len();
    buf.resize(buf.capacity(), 0);
    let polled = Pin::new(&mut *stream).poll_read(cx, &mut buf[start..]);
    let n = match &polled {
        Poll::Ready(Ok(n)) => *n,
        _ => 0,
    };
    buf.truncate(start + n);
    polled
}

/// Reads more bytes into `buf`; `Ok(0)` at end of stream.
pub async fn fill<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut BytesMut) -> io::Result<usize> {
    std::future::poll_fn(|cx| poll_fill(stream, cx, buf)).await
}

/// Writes a connection's outbox to its socket: what queued up is swapped out and written in one
/// `send` per wake-up (everything the shard produced for the connection since the last one).
/// Lives in the connection's task; holds no buffer while there is nothing to write.
#[derive(Default)]
pub struct Writer {
    spare: BytesMut,
    written: usize,
    done: bool,
}

impl Writer {
    /// Writes until the socket or the outbox has to be waited for (`Pending`, with this task's
    /// waker registered with whichever it is). `Ready` once writing is over: the outbox was
    /// closed and everything before the close was written, or the socket failed (the outbox is
    /// then marked failed). Either way the stream is shut down, which ends the reading too.
    /// `drained` is called when the outbox emptied after deliveries were held back for a slow
    /// reader (what was held back can go now).
    pub fn poll<S: ByteStream>(
        &mut self,
        cx: &mut Context<'_>,
        stream: &RefCell<S>,
        conn: &Outbox,
        mut drained: impl FnMut(),
    ) -> Poll<()> {
        if self.done {
            return Poll::Ready(());
        }
        loop {
            if self.written == self.spare.len() {
                self.spare.clear();
                self.written = 0;
                // Drained after deliveries were held back for a slow reader: they can go now.
                if conn.pending() == 0 && conn.take_held_back() {
                    drained();
                }
                if conn.pending() == 0 {
                    // What the stream itself still holds (TLS records, a WebSocket frame)
                    // goes before anything else happens.
                    // (The borrow ends here: `finish` borrows the stream again.)
                    let flushed = Pin::new(&mut *stream.borrow_mut()).poll_flush(cx);
                    match flushed {
                        // Everything is out: the socket is taking bytes again.
                        Poll::Ready(Ok(())) => conn.note_flushed(),
                        Poll::Ready(Err(_)) => return self.fail(cx, stream, conn),
                        Poll::Pending => return stalled(cx, conn),
                    }
                    if conn.is_closing() {
                        return self.finish(cx, stream);
                    }
                    if conn.poll_ready(cx).is_pending() {
                        // Idle: keep no write buffers, ours nor the outbox's.
                        self.spare = BytesMut::new();
                        conn.shed();
                        return Poll::Pending;
                    }
                    continue;
                }
                if self.spare.capacity() > WRITE_KEEP {
                    self.spare = BytesMut::new();
                }
                conn.take_into(&mut self.spare);
            }
            let mut s = stream.borrow_mut();
            match Pin::new(&mut *s).poll_write(cx, &self.spare[self.written..]) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    self.written += n;
                    conn.note_written(n, self.spare.len() - self.written);
                }
                Poll::Ready(_) => {
                    drop(s);
                    return self.fail(cx, stream, conn);
                }
                Poll::Pending => return stalled(cx, conn),
            }
        }
    }

    /// Nothing being written, and writing not over.
    pub fn is_idle(&self) -> bool {
        self.spare.is_empty() && !self.done
    }

    /// The socket failed: the outbox is marked failed and writing is over.
    fn fail<S: ByteStream>(
        &mut self,
        cx: &mut Context<'_>,
        stream: &RefCell<S>,
        conn: &Outbox,
    ) -> Poll<()> {
        conn.fail();
        self.finish(cx, stream)
    }

    fn finish<S: ByteStream>(&mut self, cx: &mut Context<'_>, stream: &RefCell<S>) -> Poll<()> {
        self.done = true;
        self.spare = BytesMut::new();
        // Wakes our own reader (end of stream) and tells the client we are done.
        let _ = stream.borrow_mut().shutdown_now(Some(cx));
        Poll::Ready(())
    }
}

/// The socket takes nothing now: the clock of a slow reader starts, and the writer waits for
/// the socket — still woken by a close meanwhile (the reader may be waiting too).
fn stalled(cx: &mut Context<'_>, conn: &Outbox) -> Poll<()> {
    conn.note_stalled();
    conn.watch(cx);
    Poll::Pending
}
