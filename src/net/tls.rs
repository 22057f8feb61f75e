//! TLS for the TLS and WSS listeners, with rustls (ring provider; TLS 1.2 and 1.3 only).
//!
//! `TlsBoard` holds the server configuration every shard's handshakes start from: built at
//! start-up from COREMQ_TLS_CERT / _KEY / _CLIENT_CA / _CLIENT_AUTH / _CRL, and replaced on SIGHUP
//! (`reload`) only when the new files load, so a bad file keeps the old ones. A handshake reads
//! the board once (a lock taken once per new connection, never per message); connections already
//! up keep the configuration they started with.
//!
//! `Tls` is one connection's record layer: rustls' *unbuffered* server connection, whose caller
//! owns every buffer. Ciphertext is read into a per-shard scratch buffer and decrypted there, and
//! a connection keeps only what must wait between polls (a partial record, plaintext the reader
//! had no room for, ciphertext the socket did not take), so an idle or parked TLS connection holds
//! its session state and no buffers. `stream::Layered` puts it under the connection code.

use std::cell::RefCell;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{ready, Context, Poll};

use futures_lite::io::{AsyncRead, AsyncWrite};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection, WebPkiClientVerifier};
use rustls::unbuffered::{ConnectionState, EncodeError, EncodeTlsData, EncryptError, WriteTraffic};
use rustls::{RootCertStore, ServerConfig};

use crate::config::{ClientAuth, Config};

/// The TLS server configuration new connections use; replaced on reload.
pub struct TlsBoard {
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsBoard {
    /// Loads the certificate, key and client CA named in `config`. `Ok(None)` when no TLS
    /// listener is configured; an error names the flag and the file.
    pub fn start(config: &Config) -> Result<Option<TlsBoard>, String> {
        if config.tls_listen.is_none() && config.wss_listen.is_none() {
            return Ok(None);
        }
        if config.tls_identity_as_username && config.tls_client_ca.is_none() {
            return Err(
                "COREMQ_TLS_IDENTITY_AS_USERNAME=true needs COREMQ_TLS_CLIENT_CA (the CA \
                        client certificates are verified against): without it no client has a \
                        certificate, and every TLS client would be refused"
                    .into(),
            );
        }
        if config.tls_identity_as_username
            && config.wss_listen.is_some()
            && config.ws_origins.is_empty()
        {
            // Browsers present client certificates on their own: any page could connect as the
            // certificate's user.
            crate::log!(
                Warn,
                "COREMQ_TLS_IDENTITY_AS_USERNAME on the WSS listener with any origin allowed: \
                 any web page a certificate holder opens can connect as that user; set \
                 COREMQ_WS_ORIGINS to the pages that may"
            );
        }
        let loaded = server_config(config)?;
        Ok(Some(TlsBoard {
            current: RwLock::new(loaded),
        }))
    }

    /// Re-reads certificate, key and client CA (SIGHUP). On error the old ones stay.
    pub fn reload(&self, config: &Config) -> Result<(), String> {
        let loaded = server_config(config)?;
        if let Ok(mut current) = self.current.write() {
            *current = loaded;
        }
        Ok(())
    }

    /// A server side for one new connection.
    pub fn accept(&self) -> io::Result<Tls> {
        let config = match self.current.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let conn = UnbufferedServerConnection::new(config).map_err(io::Error::other)?;
        Ok(Tls::new(conn))
    }
}

/// Builds the server configuration from the files `config` names.
fn server_config(config: &Config) -> Result<Arc<ServerConfig>, String> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Err(
            "COREMQ_TLS_LISTEN / COREMQ_WSS_LISTEN need COREMQ_TLS_CERT and COREMQ_TLS_KEY \
             (PEM files: the certificate chain and its private key)"
                .into(),
        );
    };
    let chain = read_certs(cert).map_err(|e| format!("COREMQ_TLS_CERT: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("COREMQ_TLS_KEY: cannot read a private key from {key:?}: {e}"))?;
    // ring (deprecated in rustls 0.23.48 only because it has no post-quantum key exchange):
    // it builds with a C compiler alone, where aws-lc-rs needs cmake. X25519, P-256, P-384.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match &config.tls_client_ca {
        None if config.tls_crl.is_some() => {
            return Err(
                "COREMQ_TLS_CRL needs COREMQ_TLS_CLIENT_CA (the CA whose client \
                        certificates it revokes)"
                    .into(),
            )
        }
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in read_certs(ca).map_err(|e| format!("COREMQ_TLS_CLIENT_CA: {e}"))? {
                roots
                    .add(c)
                    .map_err(|e| format!("COREMQ_TLS_CLIENT_CA: {ca:?}: {e}"))?;
            }
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if let Some(crl) = &config.tls_crl {
                verifier = verifier.with_crls(read_crls(crl)?);
            }
            let verifier = match config.tls_client_auth {
                ClientAuth::Required => verifier,
                ClientAuth::Optional => verifier.allow_unauthenticated(),
            };
            let verifier = verifier
                .build()
                .map_err(|e| format!("COREMQ_TLS_CLIENT_CA: {ca:?}: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let server = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("COREMQ_TLS_CERT / COREMQ_TLS_KEY: {e}"))?;
    Ok(Arc::new(server))
}

/// Every CRL in a PEM file (at least one).
fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let crls = CertificateRevocationListDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("COREMQ_TLS_CRL: cannot read CRLs from {path:?}: {e}"))?;
    if crls.is_empty() {
        return Err(format!("COREMQ_TLS_CRL: no CRL in {path:?}"));
    }
    Ok(crls)
}

/// Every certificate in a PEM file (at least one).
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificates from {path:?}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {path:?}"));
    }
    Ok(certs)
}

/// Largest TLS record on the wire (header, 16 KiB of plaintext, padding and tag).
const MAX_RECORD: usize = 5 + 16 * 1024 + 2048;

thread_local! {
    /// This shard's scratch for ciphertext: a connection's partial record is copied to its front,
    /// the socket read lands behind it, the records are decrypted there, and only a partial record
    /// left at the end is copied back to the connection. So a TLS connection keeps no receive
    /// buffer between reads (rustls' unbuffered API: the caller owns the buffers).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// What `Tls::drive` stopped at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// No complete record left: read more.
    Input,
    /// The peer sent close_notify, or the connection is closed.
    Closed,
}

/// Where decrypted bytes go: the reader's buffer while it has room, then `Tls::plain`.
struct Sink<'a> {
    dest: &'a mut [u8],
    written: usize,
}

impl Sink<'_> {
    fn put(&mut self, payload: &[u8], plain: &mut Vec<u8>) {
        let n = payload.len().min(self.dest.len() - self.written);
        self.dest[self.written..self.written + n].copy_from_slice(&payload[..n]);
        self.written += n;
        plain.extend_from_slice(&payload[n..]);
    }
}

/// One connection's TLS: rustls' unbuffered server side plus the few bytes that must wait
/// between polls. `Send`, so it moves with the connection to its home shard or into the idle
/// watcher. A quiet connection (nothing half-read, nothing to send) holds no buffer at all.
pub struct Tls {
    conn: UnbufferedServerConnection,
    /// The start of a record whose rest has not arrived.
    partial: Vec<u8>,
    /// Plaintext decrypted and not yet taken by the reader (`plain_at` onwards).
    plain: Vec<u8>,
    plain_at: usize,
    /// Ciphertext to send (`out_at` onwards).
    out: Vec<u8>,
    out_at: usize,
    /// The handshake is done.
    ready: bool,
    /// close_notify received, or a fatal error: reads end.
    closed: bool,
}

/// Ciphertext kept between writes; more is given back once sent.
const OUT_KEEP: usize = 64 * 1024;

impl Tls {
    pub fn new(conn: UnbufferedServerConnection) -> Self {
        Self {
            conn,
            partial: Vec::new(),
            plain: Vec::new(),
            plain_at: 0,
            out: Vec::new(),
            out_at: 0,
            ready: false,
            closed: false,
        }
    }

    /// Bytes of ours waiting to be sent.
    pub fn unsent(&self) -> usize {
        self.out.len() - self.out_at
    }

    /// Gives back the send buffer kept between writes (nothing waits in it): for a connection
    /// that parks or moves.
    pub fn shed(&mut self) {
        if self.unsent() == 0 {
            self.out = Vec::new();
            self.out_at = 0;
        }
    }

    /// The client certificate, if it presented one.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        self.conn.peer_certificates()?.first().map(|c| c.as_ref())
    }

    /// Runs the handshake to its end, our last flight sent.
    pub fn poll_handshake<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_flush(io, cx))?;
            if self.ready {
                return Poll::Ready(Ok(()));
            }
            // Plaintext that comes with the client's last flight waits in `plain`.
            match ready!(self.poll_records(io, cx, &mut []))?.0 {
                Some(Stop::Closed) | None => {
                    return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()))
                }
                Some(Stop::Input) => {}
            }
        }
    }

    /// Reads plaintext into `buf`; `Ok(0)` at the end (close_notify or the socket's end).
    pub fn poll_read<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            if self.plain_at < self.plain.len() {
                let n = (self.plain.len() - self.plain_at).min(buf.len());
                buf[..n].copy_from_slice(&self.plain[self.plain_at..self.plain_at + n]);
                self.plain_at += n;
                if self.plain_at == self.plain.len() {
                    self.plain_at = 0;
                    self.plain = Vec::new();
                }
                return Poll::Ready(Ok(n));
            }
            if self.closed {
                return Poll::Ready(Ok(0));
            }
            // Key updates and alerts rustls answers go out as they come.
            let _ = self.poll_flush(io, cx);
            let (stop, written) = ready!(self.poll_records(io, cx, buf))?;
            if matches!(stop, None | Some(Stop::Closed)) {
                self.closed = true;
            }
            if written > 0 {
                return Poll::Ready(Ok(written));
            }
        }
    }

    /// Reads from the socket once and processes every complete record, decrypting into `dest`
    /// as far as it has room (the rest waits in `plain`): where processing stopped (`None` at
    /// the socket's end) and how many bytes of `dest` it filled. Pending when the socket has
    /// nothing.
    fn poll_records<S: AsyncRead + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
        dest: &mut [u8],
    ) -> Poll<io::Result<(Option<Stop>, usize)>> {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let kept = self.partial.len();
            if scratch.len() < kept + MAX_RECORD {
                scratch.resize(kept + MAX_RECORD, 0);
            }
            scratch[..kept].copy_from_slice(&self.partial);
            let n = match Pin::new(&mut *io).poll_read(cx, &mut scratch[kept..]) {
                Poll::Pending => {
                    // Waiting: a quiet connection keeps no buffer.
                    if self.partial.is_empty() {
                        self.partial = Vec::new();
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok((None, 0))),
                Poll::Ready(Ok(n)) => n,
            };
            let filled = &mut scratch[..kept + n];
            let mut sink = Sink { dest, written: 0 };
            let (stop, used) = guarded(|| self.drive(filled, &mut sink), |e| (Err(e), kept + n));
            let left = &filled[used..];
            self.partial.clear();
            self.partial.extend_from_slice(left);
            if self.partial.is_empty() {
                self.partial = Vec::new();
            }
            Poll::Ready(stop.map(|s| (Some(s), sink.written)))
        })
    }

    /// Processes the records in `incoming`: plaintext to `sink`, what rustls wants sent to
    /// `out`. Returns where it stopped and how many bytes of `incoming` it consumed.
    fn drive(&mut self, incoming: &mut [u8], sink: &mut Sink<'_>) -> (io::Result<Stop>, usize) {
        let mut used = 0;
        loop {
            let Tls {
                conn, plain, out, ..
            } = self;
            let status = conn.process_tls_records(&mut incoming[used..]);
            let discard = status.discard;
            let next = match status.state {
                Ok(ConnectionState::ReadTraffic(mut r)) => {
                    while let Some(record) = r.next_record() {
                        match record {
                            Ok(record) => sink.put(record.payload, plain),
                            Err(e) => return (Err(invalid(e)), used + discard),
                        }
                    }
                    None
                }
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    if let Err(e) = encode(&mut e, out) {
                        return (Err(e), used + discard);
                    }
                    None
                }
                // Sent by `poll_flush`, in order, whenever the socket takes it.
                Ok(ConnectionState::TransmitTlsData(t)) => {
                    t.done();
                    None
                }
                Ok(ConnectionState::BlockedHandshake) => Some(Ok(Stop::Input)),
                Ok(ConnectionState::WriteTraffic(_)) => {
                    self.ready = true;
                    Some(Ok(Stop::Input))
                }
                // Closed by the peer; or early data, which the server configuration never
                // accepts (rustls would hand out the same state again: not worth a loop here).
                Ok(_) => {
                    self.closed = true;
                    Some(Ok(Stop::Closed))
                }
                Err(e) => {
                    self.closed = true;
                    used += discard;
                    // The alert saying why is queued: encode it for a last flush.
                    self.encode_pending(&mut incoming[used..]);
                    return (Err(invalid(e)), used);
                }
            };
            used += discard;
            if let Some(stop) = next {
                return (stop, used);
            }
        }
    }

    /// Encodes whatever rustls has queued to send (an alert after an error). `incoming` is what
    /// is left of the buffer the error came from: rustls may still point into it, so it is
    /// always called with the bytes not yet discarded, never with another buffer.
    fn encode_pending(&mut self, incoming: &mut [u8]) {
        for _ in 0..4 {
            let Tls { conn, out, .. } = self;
            match conn.process_tls_records(incoming).state {
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    if encode(&mut e, out).is_err() {
                        return;
                    }
                }
                Ok(ConnectionState::TransmitTlsData(t)) => t.done(),
                _ => return,
            }
        }
    }

    /// Encrypts `parts` (one after the other) into the bytes to send. (rustls hands out its
    /// writer only from `process_tls_records`, which is always given the bytes not yet
    /// discarded: here the partial record kept between reads. It holds no complete record, so
    /// nothing is consumed; a discard is applied all the same.)
    pub fn encrypt(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        guarded(|| self.encrypt_unguarded(parts), Err)
    }

    fn encrypt_unguarded(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        loop {
            let Tls {
                conn,
                plain,
                out,
                partial,
                ..
            } = self;
            let status = conn.process_tls_records(partial);
            let discard = status.discard;
            let state = status.state;
            let done = match state {
                Ok(ConnectionState::WriteTraffic(mut w)) => Some(encrypt_all(&mut w, parts, out)),
                Ok(ConnectionState::EncodeTlsData(mut e)) => encode(&mut e, out).err().map(Err),
                Ok(ConnectionState::TransmitTlsData(t)) => {
                    t.done();
                    None
                }
                Ok(ConnectionState::ReadTraffic(mut r)) => {
                    while let Some(Ok(record)) = r.next_record() {
                        plain.extend_from_slice(record.payload);
                    }
                    None
                }
                Ok(other) => Some(Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    format!("TLS cannot send now: {other:?}"),
                ))),
                Err(e) => Some(Err(invalid(e))),
            };
            partial.drain(..discard.min(partial.len()));
            if let Some(result) = done {
                return result;
            }
        }
    }

    /// Queues close_notify (once the handshake is done).
    pub fn close_notify(&mut self) {
        let Tls {
            conn, out, partial, ..
        } = self;
        let status = conn.process_tls_records(partial);
        if let Ok(ConnectionState::WriteTraffic(mut w)) = status.state {
            let start = out.len();
            out.resize(start + 64, 0);
            match w.queue_close_notify(&mut out[start..]) {
                Ok(n) => out.truncate(start + n),
                Err(_) => out.truncate(start),
            }
        }
    }

    /// Sends what is queued; `Pending` while the socket takes no more.
    pub fn poll_flush<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.out_at < self.out.len() {
            let n = ready!(Pin::new(&mut *io).poll_write(cx, &self.out[self.out_at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_at += n;
        }
        self.out_at = 0;
        if self.out.capacity() > OUT_KEEP || self.out.is_empty() {
            self.out = Vec::new();
        } else {
            self.out.clear();
        }
        Poll::Ready(Ok(()))
    }
}

/// Encrypts `parts` one after the other into `out`.
fn encrypt_all(
    w: &mut WriteTraffic<'_, ServerConnectionData>,
    parts: &[&[u8]],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    for part in parts.iter().filter(|p| !p.is_empty()) {
        let start = out.len();
        let mut room = part.len() + 64 * (part.len() / (16 * 1024) + 1);
        loop {
            out.resize(start + room, 0);
            match w.encrypt(part, &mut out[start..]) {
                Ok(n) => {
                    out.truncate(start + n);
                    break;
                }
                Err(EncryptError::InsufficientSize(s)) => room = s.required_size,
                Err(e) => {
                    out.truncate(start);
                    return Err(io::Error::other(e.to_string()));
                }
            }
        }
    }
    Ok(())
}

/// Encodes a handshake message rustls hands over into `out`.
fn encode(e: &mut EncodeTlsData<'_, ServerConnectionData>, out: &mut Vec<u8>) -> io::Result<()> {
    let start = out.len();
    let mut room = 4096;
    loop {
        out.resize(start + room, 0);
        match e.encode(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(s)) => room = s.required_size,
            Err(EncodeError::AlreadyEncoded) => {
                out.truncate(start);
                return Ok(());
            }
        }
    }
}

/// Runs `f`; should rustls panic (a bug there, or in how it is driven here), the connection
/// fails with `failed` instead of the shard's thread dying with it.
fn guarded<T>(f: impl FnOnce() -> T, failed: impl FnOnce(io::Error) -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(t) => t,
        Err(_) => {
            crate::log!(Error, "the TLS layer panicked; closing the connection");
            failed(io::Error::other("TLS layer panicked"))
        }
    }
}

fn invalid(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}
