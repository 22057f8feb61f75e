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
//! so the hook needs no locks; the methods themselves (SCRAM, …) come with access control.

use bytes::Bytes;

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
}

/// A shard's authentication methods.
pub trait Authenticator {
    /// Starts an exchange for `method`, or `None` when the method is not supported.
    fn start(&self, method: &str, client_id: &str) -> Option<Box<dyn AuthExchange>>;
}

/// Makes one `Authenticator` per shard.
pub type AuthenticatorFactory = std::sync::Arc<dyn Fn() -> Box<dyn Authenticator> + Send + Sync>;
