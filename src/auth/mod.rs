//! The authentication hook for MQTT 5 enhanced authentication (CONNECT with an Authentication
//! Method, then AUTH packets until the server accepts or refuses) [MQTT-4.12].
//!
//! The broker routes the exchange through an `Authenticator`: the CONNECT's method and data
//! start an `AuthExchange`, each AUTH from the client continues it, and its answers become AUTH
//! 0x18 (continue), CONNACK 0x00 (success) or CONNACK 0x87 (refused). After CONNECT a client may
//! re-authenticate (AUTH 0x19) with the same method; a refusal then ends the connection with
//! DISCONNECT 0x87. With no authenticator, or one that does not know the method, CONNECT gets
//! 0x8C Bad authentication method.
//!
//! Each shard owns its own `Authenticator`, made by the factory given to `Broker::start_with`,
//! so the hook needs no locks.
//!
//! The building blocks of authentication and authorization live in the submodules, each pure
//! (no sockets, no shard state, no clock) so they can be tested alone and shared read-only by
//! every shard:
//! - [`password`]: the password file (`username:hash`, Mosquitto 2.x `$6$`/`$7$` hashes), its
//!   verification, and the `coremq passwd` subcommand that writes it;
//! - [`acl`]: the ACL file (Mosquitto's acl_file syntax) compiled into per-topic checks;
//! - [`scram`]: SCRAM-SHA-256, an [`Authenticator`] method for MQTT 5 enhanced authentication;
//! - [`cert`]: the user name a client certificate carries (COREMQ_TLS_IDENTITY_AS_USERNAME).

use std::fmt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

pub mod acl;
pub mod banlist;
pub mod cert;
pub mod password;
pub mod scram;
pub mod security;

/// One step's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStep {
    /// Send AUTH 0x18 with this Authentication Data and wait for the client's next AUTH.
    Continue(Option<Bytes>),
    /// Authenticated; the data (if any) goes in the CONNACK or final AUTH.
    Success(Option<Bytes>),
    /// Not authenticated: CONNACK 0x87, or DISCONNECT 0x87 when re-authenticating.
    Fail,
}

/// One authentication exchange of one client.
pub trait AuthExchange {
    /// Takes the client's Authentication Data (from CONNECT, then from each AUTH).
    fn step(&mut self, data: Option<&[u8]>) -> AuthStep;

    /// The user this exchange proved, once `step` has returned `Success`; `None` before, after a
    /// failure, or for methods that authenticate no user name. The broker uses it as the
    /// client's username for access control (and checks a re-authentication proves the same).
    fn authenticated_user(&self) -> Option<&str> {
        None
    }
}

/// A shard's authentication methods.
pub trait Authenticator {
    /// Starts an exchange for `method`, or `None` when the method is not supported.
    fn start(&self, method: &str, client_id: &str) -> Option<Box<dyn AuthExchange>>;
}

/// Makes one `Authenticator` per shard.
pub type AuthenticatorFactory = std::sync::Arc<dyn Fn() -> Box<dyn Authenticator> + Send + Sync>;

/// A password or ACL file that cannot be used: which file, which line (when the problem is on
/// one) and why. Values quoted in `reason` are escaped (`{:?}`), so a hostile file cannot forge
/// log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub file: PathBuf,
    /// 1-based line number; `None` when the file as a whole failed (cannot be read).
    pub line: Option<usize>,
    pub reason: String,
}

impl FileError {
    pub(crate) fn at(file: &Path, line: usize, reason: impl Into<String>) -> Self {
        FileError {
            file: file.to_path_buf(),
            line: Some(line),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(file: &Path, err: &std::io::Error) -> Self {
        FileError {
            file: file.to_path_buf(),
            line: None,
            reason: format!("cannot read: {err}"),
        }
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.reason),
            None => write!(f, "{}: {}", self.file.display(), self.reason),
        }
    }
}

impl std::error::Error for FileError {}

/// Fills `buf` from the operating system's random source (salts, nonces).
pub(crate) fn random_bytes(buf: &mut [u8]) -> std::io::Result<()> {
    getrandom::fill(buf).map_err(|e| std::io::Error::other(format!("random source: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loaded once and shared read-only by every shard and by verifier threads.
    #[test]
    fn stores_can_be_shared_across_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<password::PasswordStore>();
        shared::<acl::Acl>();
        shared::<scram::ScramVerifier>();
    }

    #[test]
    fn file_errors_show_file_line_and_reason() {
        let e = FileError::at(Path::new("/etc/coremq/acl"), 7, "bad");
        assert_eq!(e.to_string(), "/etc/coremq/acl:7: bad");
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = FileError::io(Path::new("pw"), &io);
        assert_eq!(e.line, None);
        assert!(e.to_string().starts_with("pw: cannot read: "));
    }
}
