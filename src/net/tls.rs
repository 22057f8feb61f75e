//! TLS for the TLS and WSS listeners, with rustls (ring provider; TLS 1.2 and 1.3 only).
//!
//! `TlsBoard` holds the server configuration every shard's handshakes start from: built at
//! start-up from COREMQ_TLS_CERT / _KEY / _CLIENT_CA / _CLIENT_AUTH, and replaced on SIGHUP
//! (`reload`) only when the new files load, so a bad file keeps the old ones. A handshake reads
//! the board once (a lock taken once per new connection, never per message); connections already
//! up keep the configuration they started with.
//!
//! The record layer itself lives in `stream::Layered`, which drives a `rustls::ServerConnection`
//! over the connection's glommio socket.

use std::io;
use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};

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
    pub fn accept(&self) -> io::Result<ServerConnection> {
        let config = match self.current.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let mut conn = ServerConnection::new(config).map_err(io::Error::other)?;
        // The connection's writer hands over a whole batch at once and flushes it before the
        // next (`stream::Layered::poll_write`), so what is buffered is bounded by the batch.
        conn.set_buffer_limit(None);
        Ok(conn)
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
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in read_certs(ca).map_err(|e| format!("COREMQ_TLS_CLIENT_CA: {e}"))? {
                roots
                    .add(c)
                    .map_err(|e| format!("COREMQ_TLS_CLIENT_CA: {ca:?}: {e}"))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
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
