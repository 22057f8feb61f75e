//! Connections this broker opens itself, for its bridges: outbound TCP (optionally TLS, rustls'
//! client side) to another broker, and the in-process connection a bridge makes to this broker
//! (a socket pair whose other end is served like any accepted connection, as a trusted local
//! client).

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::future;
use futures_lite::io::AsyncWriteExt;
use glommio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore};

use super::io as reading;
use super::stream::tcp_stream;
use crate::gate::ConnectionGate;
use crate::shard::{CertUser, Shard};

/// TLS toward a remote broker, as the bridge file sets it.
pub struct ClientTls {
    pub config: Arc<ClientConfig>,
}

/// Builds the client side of TLS: the remote's chain must lead to `cafile`; `cert`/`key` are
/// presented when the remote asks; `insecure` skips the host name check (the chain still counts).
pub fn client_tls(
    cafile: &Path,
    cert: Option<(&Path, &Path)>,
    insecure: bool,
) -> Result<ClientTls, String> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(cafile)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("bridge_cafile {cafile:?}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("bridge_cafile {cafile:?}: no certificate"));
    }
    for c in certs {
        roots
            .add(c)
            .map_err(|e| format!("bridge_cafile {cafile:?}: {e}"))?;
    }
    // ring, as the listeners (see net::tls).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?;
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| format!("bridge_cafile {cafile:?}: {e}"))?;
    let builder = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyName(webpki)))
    } else {
        builder.with_webpki_verifier(webpki)
    };
    let config = match cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("bridge_certfile {cert:?}: {e}"))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("bridge_keyfile {key:?}: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("bridge_certfile / bridge_keyfile: {e}"))?
        }
    };
    Ok(ClientTls {
        config: Arc::new(config),
    })
}

/// `bridge_insecure true`: WebPKI verification except the host name.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::{CertificateError, Error};
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A connection to another broker: plain TCP, or TLS over it.
pub struct Outbound {
    tcp: TcpStream,
    tls: Option<Box<ClientConnection>>,
    /// Decrypted bytes not yet handed to the caller (TLS only): rustls' own plaintext buffer is
    /// drained after every record, so it never fills.
    plain: Vec<u8>,
    /// Ciphertext not yet written (TLS only): written bytes leave it only once the socket took
    /// them, so a cancelled write loses nothing.
    out: Vec<u8>,
    /// The peer sent close_notify.
    closed: bool,
}

impl Outbound {
    /// Resolves `host` (blocking lookups run off the event loop), connects, and completes the
    /// TLS handshake, all within `timeout`.
    pub async fn connect(
        host: &str,
        port: u16,
        tls: Option<&ClientTls>,
        timeout: Duration,
    ) -> io::Result<Outbound> {
        let deadline = Instant::now() + timeout;
        let name = host.to_string();
        let addrs: Vec<_> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![(ip, port).into()],
            Err(_) => glommio::executor()
                .spawn_blocking(move || (name.as_str(), port).to_socket_addrs())
                .await?
                .collect(),
        };
        let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host}: no address"));
        for addr in addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            match TcpStream::connect_timeout(addr, left.max(Duration::from_millis(1))).await {
                Ok(tcp) => {
                    let _ = tcp.set_nodelay(true);
                    let mut out = Outbound {
                        tcp,
                        tls: None,
                        plain: Vec::new(),
                        out: Vec::new(),
                        closed: false,
                    };
                    if let Some(tls) = tls {
                        let name = ServerName::try_from(host.to_string())
                            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                        let conn = ClientConnection::new(tls.config.clone(), name)
                            .map_err(io::Error::other)?;
                        out.tls = Some(Box::new(conn));
                        let hs = future::or(out.handshake(), async {
                            sleep_until(deadline).await;
                            Err(io::Error::new(io::ErrorKind::TimedOut, "TLS handshake"))
                        });
                        hs.await?;
                    }
                    return Ok(out);
                }
                Err(e) => last = io::Error::other(e.to_string()),
            }
        }
        Err(last)
    }

    async fn handshake(&mut self) -> io::Result<()> {
        loop {
            self.flush_tls().await?;
            let Some(conn) = &self.tls else { return Ok(()) };
            if !conn.is_handshaking() {
                return Ok(());
            }
            if self.read_tls().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Sends everything rustls has for the socket.
    async fn flush_tls(&mut self) -> io::Result<()> {
        if let Some(conn) = self.tls.as_mut() {
            while conn.wants_write() {
                conn.write_tls(&mut self.out)?;
            }
        }
        while !self.out.is_empty() {
            let n = self.tcp.write(&self.out).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.out.drain(..n);
        }
        Ok(())
    }

    /// Reads ciphertext from the socket into rustls, record by record, moving what it decrypts
    /// to `plain`; 0 at end of stream.
    async fn read_tls(&mut self) -> io::Result<usize> {
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let n = reading::fill(&mut self.tcp, &mut buf).await?;
        let Some(conn) = self.tls.as_mut() else {
            return Ok(n);
        };
        let mut data = &buf[..n];
        while !data.is_empty() {
            let k = conn.read_tls(&mut data)?;
            conn.process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let mut chunk = [0u8; 8192];
            loop {
                match conn.reader().read(&mut chunk) {
                    Ok(0) => {
                        self.closed = true;
                        break;
                    }
                    Ok(m) => self.plain.extend_from_slice(&chunk[..m]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            if k == 0 {
                break;
            }
        }
        Ok(n)
    }

    /// Sends `bytes` (encrypted when TLS, a record's worth at a time).
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.tls.is_none() {
            return self.tcp.write_all(bytes).await;
        }
        for part in bytes.chunks(16 * 1024) {
            if let Some(conn) = self.tls.as_mut() {
                conn.writer().write_all(part)?;
            }
            self.flush_tls().await?;
        }
        Ok(())
    }

    /// Reads what arrives into `buf`; 0 at end of stream. Cancel-safe: dropped while waiting, it
    /// loses nothing (the socket read is a readiness wait; decrypted bytes wait in `plain`,
    /// unsent ciphertext in `out`).
    pub async fn recv(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        if self.tls.is_none() {
            return reading::fill(&mut self.tcp, buf).await;
        }
        loop {
            if !self.plain.is_empty() {
                let n = self.plain.len();
                buf.extend_from_slice(&self.plain);
                self.plain.clear();
                return Ok(n);
            }
            if self.closed {
                return Ok(0);
            }
            // Answers rustls owes the peer (key updates) go out before the next read.
            self.flush_tls().await?;
            if self.read_tls().await? == 0 {
                return Ok(0);
            }
        }
    }

    /// Closes the connection (TLS: close_notify first, if the socket takes it).
    pub async fn close(mut self) {
        if let Some(conn) = self.tls.as_mut() {
            conn.send_close_notify();
            let _ = future::or(self.flush_tls(), async {
                glommio::timer::sleep(Duration::from_millis(100)).await;
                Ok(())
            })
            .await;
        }
        let _ = self.tcp.close().await;
    }
}

async fn sleep_until(deadline: Instant) {
    glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
}

/// Opens an in-process connection to this broker on `shard`: a socket pair whose far end is
/// served as an accepted connection from 127.0.0.1 whose CONNECT is trusted (no password check;
/// its user name, if any, counts for the ACL). Gives the near end, for the caller to speak MQTT
/// on. It holds a place under COREMQ_MAX_CONNECTIONS like any connection.
pub fn local_connection(shard: &Rc<Shard>, gate: &ConnectionGate) -> io::Result<TcpStream> {
    let (near, far) = socket_pair()?;
    let (slot, connecting) = gate.internal();
    let serve = super::connection::serve_trusted(
        shard.clone(),
        tcp_stream(far),
        slot,
        connecting,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        CertUser::Trusted,
    );
    glommio::spawn_local(serve).detach();
    Ok(tcp_stream(near))
}

/// A connected pair of non-blocking Unix stream sockets (close-on-exec).
pub fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
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
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Reads what arrives on an in-process connection into `buf`; 0 at end of stream.
pub async fn read(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    reading::fill(stream, buf).await
}
