//! Admission: what happens between a CONNECT and its CONNACK, on the shard that accepted the TCP
//! connection — the CONNECT's checks, the password check or the MQTT 5 enhanced-authentication
//! exchange [MQTT-4.12.0], and the choice of the client id's home shard.
//!
//! A state machine without I/O: `Shard::admit` starts it and each step returns an `Admit` saying
//! what the connection must do next (send a packet and read the client's next one, run a check
//! off the event loop, refuse, close, or go to the home shard). `net` carries the steps out, so
//! it stays sockets and framing only.
//!
//! Worked example, SCRAM: CONNECT with method `SCRAM-SHA-256` and the client-first message →
//! `Admit::Send(AUTH 0x18 server-first)`; the client's AUTH 0x18 client-final → `on_packet` →
//! `Admit::Accept` with the server-final data for the CONNACK. A password login instead →
//! `Admit::Verify(hash check)` → `on_verified(true)` → `Admit::Accept`.

use std::net::IpAddr;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;

use super::guard::Refusal;
use super::Shard;
use crate::auth::security::{Login, Security};
use crate::auth::{AuthExchange, AuthStep};
use crate::mesh::ShardId;
use crate::protocol::{
    Auth, AuthProperties, ClientId, ConnAck, Connect, DecodeError, MqttString, Packet,
    ProtocolVersion, ReasonCode,
};

/// What the connection does next during admission.
pub enum Admit {
    /// Send this packet to the client (AUTH 0x18) and hand its next packet to
    /// `Admission::on_packet`.
    Send(Box<Packet>),
    /// Run this check off the event loop (a password hash, slow on purpose) and hand its result
    /// to `Admission::on_verified`.
    Verify(Box<dyn FnOnce() -> bool + Send>),
    /// Refuse: send this CONNACK (in `Admission::version`), then close [MQTT-3.2.2-5].
    Refuse(Box<ConnAck>),
    /// The client gave up (DISCONNECT during the exchange): close without an answer.
    Close,
    /// Accepted: serve the connection on its client id's home shard.
    Accept(Admitted),
}

/// An accepted CONNECT, for its home shard (`Shard::handle_connect`).
pub struct Admitted {
    pub connect: Box<Connect>,
    /// The server assigned the client id (it goes back in CONNACK).
    pub assigned: bool,
    /// Enhanced authentication succeeded with this final data (it goes back in CONNACK).
    pub auth_data: Option<Bytes>,
    pub home: ShardId,
}

/// The user name a client certificate gives its connection (COREMQ_TLS_IDENTITY_AS_USERNAME,
/// Mosquitto's `use_identity_as_username`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertUser {
    /// Not in use on this listener: CONNECT's user name and password count.
    NotUsed,
    /// In use, but the client presented no certificate or one without a common name: refused
    /// (not authorized).
    Missing,
    /// The certificate's subject common name: the client's user name, whatever CONNECT says;
    /// the certificate (verified against COREMQ_TLS_CLIENT_CA) stands in for the password.
    Name(String),
    /// Not a certificate: a connection the broker opened to itself (a bridge's local side).
    /// CONNECT's user name stands (the ACL applies to it) and no password is checked.
    Trusted,
}

/// One CONNECT being admitted.
pub struct Admission {
    connect: Option<Box<Connect>>,
    /// The source address of the connection.
    peer: IpAddr,
    version: ProtocolVersion,
    assigned: bool,
    /// The enhanced-authentication exchange, when the CONNECT named a method.
    exchange: Option<(MqttString, Box<dyn AuthExchange>)>,
    /// The policy the password was checked against (to remember a good login in).
    security: Option<Rc<Security>>,
}

impl Shard {
    /// Starts admitting `connect` from `peer`; `has_slot` is false when COREMQ_MAX_CONNECTIONS is
    /// reached; `cert_user` is what the client's certificate says about its user name.
    pub fn admit(
        &self,
        mut connect: Box<Connect>,
        has_slot: bool,
        peer: IpAddr,
        cert_user: &CertUser,
    ) -> (Admission, Admit) {
        let mut admission = Admission {
            peer,
            version: connect.protocol,
            connect: None,
            assigned: false,
            exchange: None,
            security: None,
        };
        if !has_slot {
            // COREMQ_MAX_CONNECTIONS: 0x97 Quota exceeded (return code 3 in 3.1.1).
            crate::log!(
                Warn,
                "COREMQ_MAX_CONNECTIONS reached: refusing a connection"
            );
            self.count_refusal(Refusal::Quota);
            return (admission, refuse(ReasonCode::QUOTA_EXCEEDED));
        }
        match self.check_connect(&mut connect) {
            Ok(assigned) => admission.assigned = assigned,
            Err(code) => return (admission, refuse(code)),
        }
        match cert_user {
            CertUser::NotUsed | CertUser::Trusted => {}
            CertUser::Missing => {
                crate::log!(
                    Debug,
                    "refusing a TLS client without a certificate common name \
                     (COREMQ_TLS_IDENTITY_AS_USERNAME)"
                );
                self.count_refusal(Refusal::NotAuthorized);
                return (admission, refuse(ReasonCode::NOT_AUTHORIZED));
            }
            CertUser::Name(name) => {
                let Ok(user) = MqttString::copy_from(name) else {
                    self.count_refusal(Refusal::NotAuthorized);
                    return (admission, refuse(ReasonCode::NOT_AUTHORIZED));
                };
                connect.username = Some(user);
                connect.password = None;
            }
        }
        if let Some(why) = self.banned(&connect, peer) {
            // 0x8A Banned (3.1.1: return code 5), with no credential check at all.
            self.count_refusal(why);
            return (admission, refuse(ReasonCode::BANNED));
        }
        let checked = match (cert_user, connect.properties.authentication_method.clone()) {
            (CertUser::Name(_) | CertUser::Trusted, _) => Checked::Done(None),
            (_, Some(method)) => admission.start_exchange(self, &connect, method),
            (_, None) => admission.check_password(self, &connect),
        };
        admission.connect = Some(connect);
        let next = admission.proceed(self, checked);
        (admission, next)
    }

    /// Whether the ban list, or a ban for failed logins, refuses this CONNECT from `peer`.
    fn banned(&self, connect: &Connect, peer: IpAddr) -> Option<Refusal> {
        let username = connect.username.as_ref();
        let id = connect.client_id.as_str();
        if self
            .security()
            .is_banned(peer, id, username.map(|u| u.as_str()))
        {
            return Some(Refusal::Banned);
        }
        self.login_banned(peer, username, Instant::now())
            .then_some(Refusal::LoginBanned)
    }

    /// The checks of a CONNECT that need no credentials: shutdown, keep alive (3.1.1), the will
    /// against the server's limits, and the client id (assigned when the client sent none and
    /// may). `Ok(assigned)`, or the code to refuse with.
    fn check_connect(&self, connect: &mut Connect) -> Result<bool, ReasonCode> {
        // A shard that is shutting down accepts no new sessions: return code 3 / reason 0x88.
        if self.is_stopping() {
            return Err(ReasonCode::SERVER_UNAVAILABLE);
        }
        // MQTT 3.1.1 clients asking for a longer keep alive than allowed are refused; MQTT 5
        // clients are told the server's value instead (see `connack`).
        if !connect.protocol.is_v5() && connect.keep_alive > self.config.max_keepalive {
            return Err(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
        }
        if let Some(will) = &connect.will {
            if !self.topic_within_limits(will.topic.as_str()) {
                return Err(ReasonCode::TOPIC_NAME_INVALID);
            }
            // [MQTT-3.2.2-12] [MQTT-3.2.2-13] a will above the server's limits is refused.
            if will.qos as u8 > self.config.max_qos {
                return Err(ReasonCode::QOS_NOT_SUPPORTED);
            }
            if will.retain && !self.config.retain_available {
                return Err(ReasonCode::RETAIN_NOT_SUPPORTED);
            }
        }
        if !connect.client_id.is_empty() {
            return Ok(false);
        }
        // [MQTT-3.1.3-8] 3.1.1 without clean session, and MQTT 3.1 always, must send an id;
        // [MQTT-3.1.3-6] otherwise the server assigns one.
        let may_assign = match connect.protocol {
            ProtocolVersion::V3_1 => false,
            ProtocolVersion::V3_1_1 => connect.clean_start,
            ProtocolVersion::V5 => true,
        };
        if !may_assign {
            return Err(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
        }
        connect.client_id = ClientId::copy_from(&self.assign_client_id())
            .map_err(|_| ReasonCode::SERVER_UNAVAILABLE)?;
        Ok(true)
    }
}

fn refuse(code: ReasonCode) -> Admit {
    Admit::Refuse(Box::new(ConnAck::refusal(code)))
}

/// Where checking the credentials stands.
enum Checked {
    /// Accepted, with the last data of an enhanced authentication (for the CONNACK).
    Done(Option<Bytes>),
    /// The credentials are wrong: a failed login, refused with this code.
    Failed(ReasonCode),
    /// Not yet (or refused for another reason): what the connection does next.
    Next(Admit),
}

impl Admission {
    /// The protocol version of the CONNECT (a refusal is encoded in it).
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// A packet the client sent during the enhanced-authentication exchange.
    pub fn on_packet(&mut self, shard: &Shard, packet: Packet) -> Admit {
        let Some((method, exchange)) = self.exchange.as_mut() else {
            return refuse(ReasonCode::PROTOCOL_ERROR);
        };
        let checked = match packet {
            // [MQTT-4.12.0-4] the client continues with AUTH 0x18 and the same method.
            Packet::Auth(a)
                if a.reason_code == ReasonCode::CONTINUE_AUTHENTICATION
                    && a.properties.authentication_method.as_ref() == Some(method) =>
            {
                step(method, exchange.as_mut(), a.properties.authentication_data)
            }
            Packet::Disconnect(_) => Checked::Next(Admit::Close),
            _ => Checked::Next(refuse(ReasonCode::PROTOCOL_ERROR)),
        };
        self.proceed(shard, checked)
    }

    /// A frame the client sent during the exchange that does not decode.
    pub fn on_decode_error(&mut self, e: DecodeError) -> Admit {
        refuse(e.reason_code())
    }

    /// The result of an `Admit::Verify` check.
    pub fn on_verified(&mut self, shard: &Shard, ok: bool) -> Admit {
        let connect = self.connect.as_ref();
        let user = connect.and_then(|c| c.username.as_ref());
        if !ok {
            crate::log!(
                Debug,
                "bad user name or password for client {:?}",
                connect.map(|c| c.client_id.as_str()).unwrap_or_default()
            );
            return self.proceed(
                shard,
                Checked::Failed(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
            );
        }
        if let (Some(security), Some(user)) = (&self.security, user) {
            let password = connect.and_then(|c| c.password.as_deref());
            security.remember(user.as_str(), password.unwrap_or_default());
        }
        self.accept(shard, None)
    }

    /// Starts the exchange of `method` with the CONNECT's Authentication Data.
    fn start_exchange(&mut self, shard: &Shard, connect: &Connect, method: MqttString) -> Checked {
        let Some(mut exchange) = shard
            .authenticator_for(method.as_str())
            .and_then(|a| a.start(method.as_str(), connect.client_id.as_str()))
        else {
            return Checked::Next(refuse(ReasonCode::BAD_AUTHENTICATION_METHOD));
        };
        let next = step(
            &method,
            exchange.as_mut(),
            connect.properties.authentication_data.clone(),
        );
        self.exchange = Some((method, exchange));
        next
    }

    /// The password file (or anonymous access) decides; a real check runs off the event loop
    /// (PBKDF2 is slow on purpose), so a storm of bad passwords slows nobody else down.
    fn check_password(&mut self, shard: &Shard, connect: &Connect) -> Checked {
        let security = shard.security();
        let user = connect.username.as_ref().map(|u| u.as_str());
        match security.check_login(user, connect.password.as_deref()) {
            Login::Allowed => Checked::Done(None),
            Login::NotAuthorized => {
                shard.count_refusal(Refusal::NotAuthorized);
                Checked::Next(refuse(ReasonCode::NOT_AUTHORIZED))
            }
            Login::Verify(check) => {
                self.security = Some(security);
                Checked::Next(Admit::Verify(check))
            }
        }
    }

    fn proceed(&mut self, shard: &Shard, checked: Checked) -> Admit {
        match checked {
            Checked::Done(auth_data) => self.accept(shard, auth_data),
            Checked::Failed(code) => {
                let username = self.connect.as_ref().and_then(|c| c.username.as_ref());
                shard.login_failed(self.peer, username);
                refuse(code)
            }
            Checked::Next(next) => next,
        }
    }

    /// Accepted: the user an exchange proved is checked against the CONNECT's, and the home
    /// shard chosen.
    fn accept(&mut self, shard: &Shard, auth_data: Option<Bytes>) -> Admit {
        let Some(mut connect) = self.connect.take() else {
            return Admit::Close;
        };
        if let Some((_, exchange)) = &self.exchange {
            // The exchange proved a user: it is the client's user name from now on, and a user
            // name in CONNECT must be the same one.
            if let Some(user) = exchange
                .authenticated_user()
                .and_then(|u| MqttString::copy_from(u).ok())
            {
                if connect.username.as_ref().is_some_and(|u| u != &user) {
                    return refuse(ReasonCode::NOT_AUTHORIZED);
                }
                connect.username = Some(user);
            }
        }
        let home = shard.home_of(connect.client_id.as_bytes());
        Admit::Accept(Admitted {
            connect,
            assigned: self.assigned,
            auth_data,
            home,
        })
    }
}

/// One step of an exchange with the client's `data`: AUTH 0x18 to send, success (with the final
/// data) or a refusal.
fn step(method: &MqttString, exchange: &mut dyn AuthExchange, data: Option<Bytes>) -> Checked {
    match exchange.step(data.as_deref()) {
        AuthStep::Success(d) => Checked::Done(d),
        AuthStep::Fail => Checked::Failed(ReasonCode::NOT_AUTHORIZED),
        AuthStep::Continue(d) => Checked::Next(Admit::Send(Box::new(Packet::Auth(Auth {
            reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: AuthProperties {
                authentication_method: Some(method.clone()),
                authentication_data: d,
                ..Default::default()
            },
        })))),
    }
}
