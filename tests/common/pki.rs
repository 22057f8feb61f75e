//! Test certificates, made in the test with rcgen (no fixtures): a CA, a server certificate for
//! `localhost` and 127.0.0.1 signed by it, client certificates (with a common name, expired,
//! from another CA), all written as PEM files into a temp dir, and rustls client configurations
//! that trust or present them.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::TempDir;

/// A certificate authority that signs server and client certificates.
pub struct Ca {
    cert: Certificate,
    key: KeyPair,
    /// Its certificate as a PEM file.
    pub pem: PathBuf,
}

/// A certificate and its key, as PEM files and in memory.
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: CertificateDer<'static>,
    key_der: Vec<u8>,
    /// SHA-256 of the public key (SubjectPublicKeyInfo), base64: what Chromium's
    /// --ignore-certificate-errors-spki-list takes.
    pub spki_sha256: String,
    /// The serial number (unique in the directory), for revocation lists.
    pub serial: u64,
}

impl Issued {
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// Validity of an issued certificate.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    Current,
    /// Valid in 2020 only.
    Expired,
}

/// A directory of test PEM files.
pub struct Pki {
    pub dir: TempDir,
}

impl Pki {
    pub fn new(name: &str) -> Self {
        Self {
            dir: TempDir::new(name),
        }
    }

    /// A new CA, `name`.pem in the directory.
    pub fn ca(&self, name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("coremq test CA {name}"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        let pem = self.dir.path.join(format!("{name}.pem"));
        std::fs::write(&pem, cert.pem()).unwrap();
        Ca { cert, key, pem }
    }

    /// A server certificate for `localhost` and 127.0.0.1, signed by `ca`.
    pub fn server(&self, ca: &Ca, name: &str) -> Issued {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        self.issue(
            ca,
            name,
            names,
            None,
            ExtendedKeyUsagePurpose::ServerAuth,
            Validity::Current,
        )
    }

    /// A client certificate with subject common name `cn` (if any), signed by `ca`.
    pub fn client(&self, ca: &Ca, name: &str, cn: Option<&str>, validity: Validity) -> Issued {
        let usage = ExtendedKeyUsagePurpose::ClientAuth;
        self.issue(ca, name, Vec::new(), cn, usage, validity)
    }

    fn issue(
        &self,
        ca: &Ca,
        name: &str,
        names: Vec<String>,
        cn: Option<&str>,
        usage: ExtendedKeyUsagePurpose,
        validity: Validity,
    ) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1000);
        let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial.to_be_bytes()));
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "coremq tests");
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if validity == Validity::Expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
        let cert_path = self.dir.path.join(format!("{name}.pem"));
        let key_path = self.dir.path.join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        use base64::Engine;
        use sha2::Digest;
        let spki = sha2::Sha256::digest(key.public_key_der());
        Issued {
            cert: cert_path,
            key: key_path,
            der: cert.der().clone(),
            key_der: key.serialize_der(),
            spki_sha256: base64::engine::general_purpose::STANDARD.encode(spki),
            serial,
        }
    }

    /// Writes `name`.crl.pem: a CRL signed by `ca` revoking `revoked`.
    pub fn crl(&self, ca: &Ca, name: &str, revoked: &[&Issued]) -> PathBuf {
        let now = rcgen::date_time_ymd(2026, 1, 1);
        let params = rcgen::CertificateRevocationListParams {
            this_update: now,
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: rcgen::SerialNumber::from_slice(&[1]),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|c| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from_slice(&c.serial.to_be_bytes()),
                    revocation_time: now,
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&ca.cert, &ca.key).unwrap();
        let path = self.dir.path.join(format!("{name}.crl.pem"));
        std::fs::write(&path, crl.pem().unwrap()).unwrap();
        path
    }
}

/// A rustls client configuration that trusts `ca` and presents `client` if given.
pub fn client_config(ca: &Ca, client: Option<&Issued>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(c) => builder
            .with_client_auth_cert(vec![c.der.clone()], c.key_der())
            .unwrap(),
    };
    Arc::new(config)
}

/// Connects to `addr` over TLS (server name `name`), sends an MQTT 3.1.1 CONNECT as
/// `client_id` and reads the CONNACK: `Ok(return code)`, or `Err` with why the handshake or
/// the connection failed (a refused client certificate shows up here: with TLS 1.3 the
/// server's alert arrives after the client's side of the handshake is done).
pub fn tls_mqtt_connect(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
    name: &str,
    client_id: &str,
) -> Result<u8, String> {
    use std::io::{Read, Write};
    let server = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(config, server).map_err(|e| e.to_string())?;
    let tcp = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(super::PATIENCE)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let connect = super::connect_packet(coremq::protocol::ProtocolVersion::V3_1_1, client_id, true);
    let mut out = bytes::BytesMut::new();
    coremq::protocol::Packet::Connect(Box::new(connect))
        .encode(coremq::protocol::ProtocolVersion::V3_1_1, &mut out)
        .unwrap();
    tls.write_all(&out).map_err(|e| e.to_string())?;
    let mut ack = [0u8; 4];
    tls.read_exact(&mut ack).map_err(|e| e.to_string())?;
    if ack[0] != 0x20 {
        return Err(format!("not a CONNACK: {ack:02x?}"));
    }
    Ok(ack[3])
}

/// An MQTT client over TLS on a socket the caller made (e.g. with a small receive buffer), for
/// exact-packet cases; blocking, with `PATIENCE` as the read timeout.
pub struct TlsRaw {
    pub tls: rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
    buf: bytes::BytesMut,
    version: coremq::protocol::ProtocolVersion,
}

impl TlsRaw {
    /// Handshakes over `tcp` (server name `localhost`), then CONNECT as `client_id`; panics
    /// unless CONNACK accepts.
    pub fn connect(
        tcp: std::net::TcpStream,
        config: Arc<rustls::ClientConfig>,
        client_id: &str,
    ) -> Self {
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(config, name).unwrap();
        tcp.set_read_timeout(Some(super::PATIENCE)).unwrap();
        let v = coremq::protocol::ProtocolVersion::V3_1_1;
        let mut c = Self {
            tls: rustls::StreamOwned::new(conn, tcp),
            buf: bytes::BytesMut::new(),
            version: v,
        };
        let connect = super::connect_packet(v, client_id, true);
        c.send(&coremq::protocol::Packet::Connect(Box::new(connect)));
        match c.recv() {
            Some(coremq::protocol::Packet::ConnAck(a)) => {
                assert_eq!(a.reason_code, coremq::protocol::ReasonCode::SUCCESS)
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
        c
    }

    pub fn send(&mut self, packet: &coremq::protocol::Packet) {
        use std::io::Write;
        let mut out = bytes::BytesMut::new();
        packet.encode(self.version, &mut out).unwrap();
        self.tls.write_all(&out).unwrap();
        self.tls.flush().unwrap();
    }

    /// The next packet; `None` at the end of the stream or on a read error.
    pub fn recv(&mut self) -> Option<coremq::protocol::Packet> {
        use std::io::Read;
        loop {
            if let Some(p) =
                coremq::protocol::decode(&mut self.buf, self.version, u32::MAX).unwrap()
            {
                return Some(p);
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.tls.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}
