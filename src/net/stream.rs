//! The byte-stream seam: what the connection code reads frames from and writes packets to.
//! Plain TCP (`glommio::net::TcpStream`) is one implementation; `Layered` is the other: TLS
//! (rustls), WebSocket framing (`ws`), or WebSocket over TLS, on the same socket, under the same
//! connection code.
//!
//! A connection parks in the shard's idle watcher or moves to another shard as its socket's file
//! descriptor. A layered stream's state (the TLS session, the WebSocket framing) travels with it
//! as `Carried` (a `Send` box the shard and mesh hold without looking inside) and the stream is
//! rebuilt around the descriptor where the connection goes on (`Layered::resume`).

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use super::tls::Tls;
use super::ws::{self, Framing, Unframed};
pub use crate::mesh::Carried;

/// A stream that cannot park or move now: bytes of ours are still to be sent.
#[derive(Debug)]
pub struct Busy;

/// A connection's bytes in both directions.
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + 'static {
    /// The socket under the stream.
    fn socket(&self) -> BorrowedFd<'_>;

    /// Takes out what must travel with the socket when the connection parks or moves to another
    /// shard: `Ok(None)` for a bare socket; `Err(Busy)` when it cannot go now.
    fn carry(&mut self) -> Result<Option<Carried>, Busy>;

    /// Puts back what `carry` took (the connection did not go after all).
    fn put_back(&mut self, carried: Option<Carried>);

    /// Says goodbye the stream's way where that costs no waiting (a WebSocket close frame, a
    /// TLS close_notify, sent if the socket takes them now), then shuts both directions down
    /// (the peer sees the end, our reader wakes with end of stream).
    fn shutdown_now(&mut self, cx: Option<&mut Context<'_>>) -> io::Result<()>;
}

impl ByteStream for TcpStream {
    fn socket(&self) -> BorrowedFd<'_> {
        // SAFETY: the stream owns this fd and outlives the borrow.
        unsafe { BorrowedFd::borrow_raw(self.as_raw_fd()) }
    }

    fn carry(&mut self) -> Result<Option<Carried>, Busy> {
        Ok(None)
    }

    fn put_back(&mut self, _: Option<Carried>) {}

    fn shutdown_now(&mut self, _: Option<&mut Context<'_>>) -> io::Result<()> {
        // glommio's own shutdown is synchronous too, behind an `async fn`.
        socket2::SockRef::from(&*self).shutdown(Shutdown::Both)
    }
}

/// The TCP stream of a socket this shard now owns alone (handed over, or parked and woken).
pub fn tcp_stream(fd: OwnedFd) -> TcpStream {
    // SAFETY: the fd is a connected TCP socket we own exclusively.
    unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) }
}

/// What a layered connection keeps beside its socket.
#[derive(Default)]
pub struct Layers {
    tls: Option<Tls>,
    ws: Option<Framing>,
}

/// TLS, WebSocket, or WebSocket over TLS, over a TCP socket.
pub struct Layered {
    tcp: TcpStream,
    layers: Box<Layers>,
}

/// Largest buffer of WebSocket frames kept between writes.
const WS_OUT_KEEP: usize = 16 * 1024;
/// Replies (pongs, the close) waiting for a socket that takes nothing, beyond which reading
/// stops until they are out: a client flooding pings without reading costs no more than this.
const REPLIES_MAX: usize = 64 * 1024;
/// Reads in one `poll_read` that gave no MQTT bytes (only frame headers or control frames)
/// before the task lets the shard's other tasks run.
const EMPTY_READS_MAX: usize = 16;

impl Layered {
    pub fn new(tcp: TcpStream) -> Self {
        Self {
            tcp,
            layers: Box::default(),
        }
    }

    /// Rebuilds a stream around its socket with the state `carry` took out.
    pub fn resume(tcp: TcpStream, carried: Carried) -> Self {
        let layers = carried.downcast::<Layers>().unwrap_or_default();
        Self { tcp, layers }
    }

    /// Starts TLS as the server: `poll_handshake` then drives the handshake.
    pub fn start_tls(&mut self, tls: Tls) {
        self.layers.tls = Some(tls);
    }

    /// Starts WebSocket framing (after the upgrade was answered).
    pub fn start_ws(&mut self, framing: Framing) {
        self.layers.ws = Some(framing);
    }

    /// Runs the TLS handshake to its end (our last flight sent). Errors include the peer's
    /// certificate being refused and bytes that are not TLS.
    pub fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.layers.tls.as_mut() {
            Some(tls) => {
                let done = ready!(tls.poll_handshake(&mut self.tcp, cx));
                if done.is_err() {
                    // The alert saying why, if the socket takes it now.
                    let _ = tls.poll_flush(&mut self.tcp, cx);
                }
                Poll::Ready(done)
            }
            None => Poll::Ready(Ok(())),
        }
    }

    /// The client certificate's subject common name, when it presented one.
    pub fn peer_common_name(&self) -> Option<String> {
        let cert = self.layers.tls.as_ref()?.peer_certificate()?;
        crate::auth::cert::subject_common_name(cert)
    }

    /// Bytes that arrived with the upgrade request after its headers: frames to unframe.
    /// Returns how many MQTT bytes now lead `buf`; `Err` when they broke the framing.
    pub fn unframe_early(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.layers.ws.as_mut().map(|ws| ws.unframe(buf)) {
            None => Ok(buf.len()),
            Some(Ok(Unframed::Data(n) | Unframed::Closed(n))) => Ok(n),
            Some(Err(e)) => Err(io::Error::new(io::ErrorKind::InvalidData, e.what)),
        }
    }

    /// Reads application bytes under any WebSocket framing: decrypted with TLS, else as they come.
    fn poll_read_inner(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.layers.tls.as_mut() {
            Some(tls) => tls.poll_read(&mut self.tcp, cx, buf),
            None => Pin::new(&mut self.tcp).poll_read(cx, buf),
        }
    }

    /// Bytes queued below the caller and not yet sent.
    fn unsent(&self) -> usize {
        self.layers.ws.as_ref().map_or(0, |w| w.out.len())
            + self.layers.tls.as_ref().map_or(0, Tls::unsent)
    }

    /// Sends what is queued below the caller: WebSocket control frames, then TLS records.
    fn poll_flush_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let layers = &mut *self.layers;
        if let Some(ws) = layers.ws.as_mut().filter(|ws| !ws.out.is_empty()) {
            if let Some(tls) = layers.tls.as_mut() {
                tls.encrypt(&[&ws.out])?;
                ws.out.clear();
            } else {
                while !ws.out.is_empty() {
                    let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &ws.out))?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    ws.out.drain(..n);
                }
            }
            if ws.out.capacity() > WS_OUT_KEEP {
                ws.out = Vec::new();
            }
        }
        match layers.tls.as_mut() {
            Some(tls) => tls.poll_flush(&mut self.tcp, cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncRead for Layered {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut empty_reads = 0;
        loop {
            // Pongs or a close queued by an earlier read go first; while too many wait for a
            // socket that takes nothing, nothing more is read (the flush registered the waker).
            let flushed = this.poll_flush_out(cx);
            if this.unsent() > REPLIES_MAX {
                ready!(flushed)?;
            }
            if this.layers.ws.as_ref().is_some_and(Framing::is_closed) {
                return Poll::Ready(Ok(0));
            }
            if empty_reads == EMPTY_READS_MAX {
                // Only frame headers and control frames so far: let the others run.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let n = ready!(this.poll_read_inner(cx, buf))?;
            let Some(ws) = this.layers.ws.as_mut() else {
                return Poll::Ready(Ok(n));
            };
            if n == 0 {
                return Poll::Ready(Ok(0));
            }
            let unframed = ws.unframe(&mut buf[..n]);
            // Replies (a pong, the close) go out now if the socket takes them.
            let _ = this.poll_flush_out(cx);
            match unframed {
                // Only headers or control frames: read on.
                Ok(Unframed::Data(0)) => empty_reads += 1,
                Ok(Unframed::Data(m) | Unframed::Closed(m)) => return Poll::Ready(Ok(m)),
                Err(e) => {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e.what)))
                }
            }
        }
    }
}

impl AsyncWrite for Layered {
    /// Takes all of `buf` (one WebSocket frame, TLS records) once what an earlier write queued
    /// has gone; what the socket does not take now waits for the next write or `poll_flush`.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_flush_out(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let layers = &mut *this.layers;
        match (layers.ws.as_mut(), layers.tls.as_mut()) {
            (None, None) => return Pin::new(&mut this.tcp).poll_write(cx, buf),
            // [RFC 6455 5.5.1] nothing after our Close frame: the bytes are dropped.
            (Some(ws), _) if ws.is_closed() => {}
            (Some(ws), tls) => {
                let mut head = [0; 10];
                let h = ws::frame_header(ws::BINARY, buf.len(), &mut head);
                match tls {
                    Some(tls) => tls.encrypt(&[&head[..h], buf])?,
                    None => {
                        ws.out.extend_from_slice(&head[..h]);
                        ws.out.extend_from_slice(buf);
                    }
                }
            }
            (None, Some(tls)) => tls.encrypt(&[buf])?,
        }
        // Start sending; what the socket does not take now goes on the next write or flush.
        let _ = this.poll_flush_out(cx);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_flush_out(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_flush_out(cx))?;
        Pin::new(&mut this.tcp).poll_close(cx)
    }
}

impl ByteStream for Layered {
    fn socket(&self) -> BorrowedFd<'_> {
        self.tcp.socket()
    }

    fn carry(&mut self) -> Result<Option<Carried>, Busy> {
        let layers = &*self.layers;
        if layers.tls.as_ref().is_some_and(|t| t.unsent() > 0)
            || layers.ws.as_ref().is_some_and(|w| !w.out.is_empty())
        {
            return Err(Busy);
        }
        // The send buffers kept between writes are empty: they do not go along.
        if let Some(tls) = self.layers.tls.as_mut() {
            tls.shed();
        }
        if let Some(ws) = self.layers.ws.as_mut() {
            ws.out = Vec::new();
        }
        let layers: Box<Layers> = std::mem::take(&mut self.layers);
        Ok(Some(layers))
    }

    fn put_back(&mut self, carried: Option<Carried>) {
        if let Some(layers) = carried.and_then(|c| c.downcast::<Layers>().ok()) {
            self.layers = layers;
        }
    }

    fn shutdown_now(&mut self, cx: Option<&mut Context<'_>>) -> io::Result<()> {
        if let Some(ws) = self.layers.ws.as_mut() {
            ws.close_with(ws::close::NORMAL);
        }
        if let Some(cx) = cx {
            // The close frame inside TLS, then close_notify.
            let _ = self.poll_flush_out(cx);
            if let Some(tls) = self.layers.tls.as_mut() {
                tls.close_notify();
                let _ = tls.poll_flush(&mut self.tcp, cx);
            }
        }
        self.tcp.shutdown_now(None)
    }
}
