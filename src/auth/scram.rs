//! SCRAM-SHA-256 (RFC 5802, RFC 7677), server side, as the MQTT 5 enhanced-authentication method
//! `"SCRAM-SHA-256"`: the client proves it knows the password without sending it, and the server
//! proves in return that it holds the user's verifier.
//!
//! Pure: no I/O beyond the OS random source for nonces; the user store is a lookup closure.
//!
//! # The exchange over MQTT 5
//! ```text
//! CONNECT  method "SCRAM-SHA-256", data  n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL        client-first
//! AUTH 0x18 (server → client), data      r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,
//!                                          s=QSXCR+Q6sek8bf92,i=4096                  server-first
//! AUTH 0x18 (client → server), data      c=biws,r=fyko…VVs7j,p=<ClientProof>        client-final
//! CONNACK 0x00, data                     v=<ServerSignature>                         server-final
//! ```
//! With `AuthMessage = client-first-bare "," server-first "," client-final-without-proof`, the
//! server checks `H(ClientProof XOR HMAC(StoredKey, AuthMessage)) == StoredKey` (constant time)
//! and answers `HMAC(ServerKey, AuthMessage)`. A wrong proof, an unknown user or any malformed
//! message ends in `AuthStep::Fail` (CONNACK 0x87).
//!
//! # Where the verifier comes from
//! SCRAM needs, per user, `salt`, `iterations`, `StoredKey = SHA-256(HMAC(SaltedPassword,
//! "Client Key"))` and `ServerKey = HMAC(SaltedPassword, "Server Key")`, with `SaltedPassword =
//! PBKDF2-HMAC-SHA-256(password, salt, iterations)`. None of that can be computed from a
//! Mosquitto `$6$`/`$7$` hash (different function, different salt use), and the broker never
//! stores passwords, so the verifier is derived once, when the password is set: `coremq passwd
//! --scram FILE USER` writes it as an optional third field of the user's line (see
//! [`ScramVerifier`]'s text form and [`super::password`]). Users without it cannot use SCRAM;
//! they still log in with username and password.
//!
//! # Unknown users
//! A user without a verifier gets a normal-looking challenge whose salt is derived from the
//! username with a secret `mock_key` (RFC 5802 §5.1), so the challenge does not tell an attacker
//! which users exist; the exchange then fails at the proof. The key must be the same on every
//! shard (make it once, outside the per-shard factory) or the salt of a missing user would
//! change from one connection to the next.
//!
//! # Not supported
//! Channel binding (`p=` in the GS2 header: refused; `y` and `n` are accepted), an authorization
//! identity other than the user itself, and SASLprep: user names are compared byte for byte and
//! passwords are used as the UTF-8 bytes given, which is what SASLprep yields for ASCII.

use std::fmt;
use std::rc::Rc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{random_bytes, AuthExchange, AuthStep, Authenticator};

/// The method name carried in the CONNECT's Authentication Method property.
pub const METHOD: &str = "SCRAM-SHA-256";

/// Prefix of a verifier's text form.
const PREFIX: &str = "scram-sha-256$";

/// Salt length for new verifiers, in bytes.
const SALT_LEN: usize = 16;

/// Random bytes in a server nonce (base64: 24 characters).
const NONCE_LEN: usize = 18;

/// One user's SCRAM-SHA-256 verifier: what the server stores instead of the password. Lives in
/// the password store (every shard reads it); copied into an exchange.
///
/// Text form (the optional third field of a password-file line):
/// `scram-sha-256$ITERATIONS$SALT$STOREDKEY$SERVERKEY`, binary parts in standard base64. It has
/// no `:`, so Mosquitto, which reads only the first two fields of a line, ignores it.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl ScramVerifier {
    /// Iterations for new verifiers: RFC 7677's minimum, and what PostgreSQL, Kafka and
    /// RabbitMQ use. The client pays them on every login (IoT devices included), which is why
    /// SCRAM is opt-in: a stolen file's cheapest guess is then this PBKDF2-SHA-256 count rather
    /// than the `$7$` hash's.
    pub const DEFAULT_ITERATIONS: u32 = 4096;

    /// The verifier for `password` with this salt and iteration count.
    pub fn derive(password: &[u8], salt: &[u8], iterations: u32) -> Option<Self> {
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut salted);
        let client_key = hmac(&salted, &[b"Client Key"])?;
        let server_key = hmac(&salted, &[b"Server Key"])?;
        Some(ScramVerifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&client_key),
            server_key,
        })
    }

    /// A verifier for `password` with a fresh random salt.
    pub fn generate(password: &[u8], iterations: u32) -> std::io::Result<Self> {
        let mut salt = [0u8; SALT_LEN];
        random_bytes(&mut salt)?;
        Self::derive(password, &salt, iterations)
            .ok_or_else(|| std::io::Error::other("HMAC-SHA-256 refused its key"))
    }

    /// Parses the text form; the error says what is wrong.
    pub fn parse(s: &str) -> Result<Self, String> {
        let rest = s
            .strip_prefix(PREFIX)
            .ok_or_else(|| format!("expected {PREFIX}ITERATIONS$SALT$STOREDKEY$SERVERKEY"))?;
        let parts: Vec<&str> = rest.split('$').collect();
        let [iterations, salt, stored, server] = parts[..] else {
            return Err(format!(
                "expected {PREFIX}ITERATIONS$SALT$STOREDKEY$SERVERKEY"
            ));
        };
        let iterations = match iterations.parse::<u32>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("bad SCRAM iteration count {iterations:?}")),
        };
        let salt = B64
            .decode(salt)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or("bad SCRAM salt (expected base64)")?;
        let key = |k: &str, what: &str| -> Result<[u8; 32], String> {
            B64.decode(k)
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .ok_or_else(|| format!("bad SCRAM {what} (expected 32 bytes in base64)"))
        };
        Ok(ScramVerifier {
            iterations,
            salt,
            stored_key: key(stored, "StoredKey")?,
            server_key: key(server, "ServerKey")?,
        })
    }
}

impl fmt::Display for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}{}${}${}${}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

impl fmt::Debug for ScramVerifier {
    /// Keys are secret: never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// Finds a user's verifier; `None` for unknown users and users without one.
pub type VerifierLookup = Rc<dyn Fn(&str) -> Option<ScramVerifier>>;

/// The SCRAM-SHA-256 method, one per shard (shard-local: `Rc`).
pub struct ScramSha256 {
    lookup: VerifierLookup,
    mock_key: [u8; 32],
}

impl ScramSha256 {
    /// `lookup` reads the current user store (so a reload is seen by the next exchange);
    /// `mock_key` is a secret shared by all shards (see the module docs), e.g. from
    /// [`ScramSha256::random_mock_key`] called once at start-up.
    pub fn new(
        lookup: impl Fn(&str) -> Option<ScramVerifier> + 'static,
        mock_key: [u8; 32],
    ) -> Self {
        ScramSha256 {
            lookup: Rc::new(lookup),
            mock_key,
        }
    }

    /// A fresh random key for mock salts.
    pub fn random_mock_key() -> std::io::Result<[u8; 32]> {
        let mut key = [0u8; 32];
        random_bytes(&mut key)?;
        Ok(key)
    }

    /// A new exchange (what `start` returns for [`METHOD`]).
    pub fn exchange(&self) -> ScramExchange {
        ScramExchange {
            lookup: self.lookup.clone(),
            mock_key: self.mock_key,
            server_nonce: None,
            state: State::AwaitClientFirst,
        }
    }
}

impl Authenticator for ScramSha256 {
    fn start(&self, method: &str, _client_id: &str) -> Option<Box<dyn AuthExchange>> {
        (method == METHOD).then(|| Box::new(self.exchange()) as Box<dyn AuthExchange>)
    }
}

/// One client's SCRAM exchange, owned by its connection for the few round trips it lasts.
pub struct ScramExchange {
    lookup: VerifierLookup,
    mock_key: [u8; 32],
    /// Fixed server nonce (tests replaying RFC vectors); random otherwise.
    server_nonce: Option<String>,
    state: State,
}

enum State {
    AwaitClientFirst,
    AwaitClientFinal(Box<Challenge>),
    Done(String),
    Failed,
}

/// What the server remembers between its challenge and the client's proof.
struct Challenge {
    user: String,
    /// `None` for an unknown user: the exchange runs on with a mock salt and then fails.
    verifier: Option<ScramVerifier>,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl ScramExchange {
    #[cfg(test)]
    fn with_server_nonce(mut self, nonce: &str) -> Self {
        self.server_nonce = Some(nonce.to_string());
        self
    }

    fn on_client_first(&mut self, msg: &str) -> Option<String> {
        let first = parse_client_first(msg)?;
        let server_nonce = match &self.server_nonce {
            Some(n) => n.clone(),
            None => {
                let mut raw = [0u8; NONCE_LEN];
                random_bytes(&mut raw).ok()?;
                B64.encode(raw)
            }
        };
        let nonce = format!("{}{}", first.client_nonce, server_nonce);
        let verifier = (self.lookup)(&first.user);
        let (salt, iterations) = match &verifier {
            Some(v) => (v.salt.clone(), v.iterations),
            None => {
                let mock = hmac(&self.mock_key, &[b"mock salt ", first.user.as_bytes()])?;
                (mock[..SALT_LEN].to_vec(), ScramVerifier::DEFAULT_ITERATIONS)
            }
        };
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(salt));
        self.state = State::AwaitClientFinal(Box::new(Challenge {
            user: first.user,
            verifier,
            gs2_header: first.gs2_header.to_string(),
            client_first_bare: first.bare.to_string(),
            server_first: server_first.clone(),
            nonce,
        }));
        Some(server_first)
    }
}

impl AuthExchange for ScramExchange {
    fn step(&mut self, data: Option<&[u8]>) -> AuthStep {
        let msg = data.and_then(|d| std::str::from_utf8(d).ok());
        match (std::mem::replace(&mut self.state, State::Failed), msg) {
            (State::AwaitClientFirst, Some(msg)) => match self.on_client_first(msg) {
                Some(server_first) => AuthStep::Continue(Some(Bytes::from(server_first))),
                None => AuthStep::Fail,
            },
            (State::AwaitClientFinal(ch), Some(msg)) => match verify_client_final(&ch, msg) {
                Some(server_final) => {
                    self.state = State::Done(ch.user);
                    AuthStep::Success(Some(Bytes::from(server_final)))
                }
                None => AuthStep::Fail,
            },
            // Missing data, data after the end, or data after a failure.
            _ => AuthStep::Fail,
        }
    }

    fn authenticated_user(&self) -> Option<&str> {
        match &self.state {
            State::Done(user) => Some(user),
            _ => None,
        }
    }
}

/// The parts of a client-first message the server uses.
struct ClientFirst<'a> {
    gs2_header: &'a str,
    bare: &'a str,
    user: String,
    client_nonce: &'a str,
}

/// `gs2-header client-first-message-bare` (RFC 5802 §7).
fn parse_client_first(msg: &str) -> Option<ClientFirst<'_>> {
    let (cbind, rest) = msg.split_once(',')?;
    // "n": client does not support channel binding; "y": it does but thinks we do not (we do
    // not advertise -PLUS, so that is right). "p=…" asks for binding we cannot do.
    if cbind != "n" && cbind != "y" {
        return None;
    }
    let (authzid, bare) = rest.split_once(',')?;
    let gs2_header = &msg[..msg.len() - bare.len()];
    let mut attrs = bare.split(',');
    // A leading "m=" is a mandatory extension we do not know: fail (RFC 5802 §5.1).
    let user = decode_saslname(attrs.next()?.strip_prefix("n=")?)?;
    let client_nonce = attrs.next()?.strip_prefix("r=")?;
    if user.is_empty() || !valid_nonce(client_nonce) {
        return None;
    }
    if !authzid.is_empty() && decode_saslname(authzid.strip_prefix("a=")?)? != user {
        return None;
    }
    Some(ClientFirst {
        gs2_header,
        bare,
        user,
        client_nonce,
    })
}

/// Checks `c=…,r=…[,ext…],p=…` against the challenge; the server-final message on success.
fn verify_client_final(ch: &Challenge, msg: &str) -> Option<String> {
    let (without_proof, proof) = msg.rsplit_once(",p=")?;
    let mut attrs = without_proof.split(',');
    let binding = B64.decode(attrs.next()?.strip_prefix("c=")?).ok()?;
    let nonce = attrs.next()?.strip_prefix("r=")?;
    // The channel-binding echo must be the GS2 header exactly (no binding data), and the nonce
    // the combined one we sent.
    if binding != ch.gs2_header.as_bytes() || nonce != ch.nonce {
        return None;
    }
    let proof = <[u8; 32]>::try_from(B64.decode(proof).ok()?).ok()?;
    let auth_message = format!(
        "{},{},{}",
        ch.client_first_bare, ch.server_first, without_proof
    );
    // An unknown user is checked against all-zero keys, the same work as a real check, and
    // then refused whatever the proof.
    let mock = ScramVerifier {
        iterations: 0,
        salt: Vec::new(),
        stored_key: [0; 32],
        server_key: [0; 32],
    };
    let (verifier, known) = match &ch.verifier {
        Some(v) => (v, true),
        None => (&mock, false),
    };
    let client_signature = hmac(&verifier.stored_key, &[auth_message.as_bytes()])?;
    let mut client_key = [0u8; 32];
    for (k, (p, s)) in client_key
        .iter_mut()
        .zip(proof.iter().zip(client_signature.iter()))
    {
        *k = p ^ s;
    }
    if !(bool::from(sha256(&client_key).ct_eq(&verifier.stored_key)) && known) {
        return None;
    }
    let server_signature = hmac(&verifier.server_key, &[auth_message.as_bytes()])?;
    Some(format!("v={}", B64.encode(server_signature)))
}

/// `saslname`: `=2C` is `,`, `=3D` is `=`, any other `=` is malformed.
fn decode_saslname(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3)?;
        out.push(match esc {
            "=2C" => ',',
            "=3D" => '=',
            _ => return None,
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// `printable` in RFC 5802: %x21-2B / %x2D-7E (no comma), at least one.
fn valid_nonce(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// HMAC-SHA-256 over the concatenated `parts`. HMAC takes keys of any length, so this is
/// `None` only if the crate ever changes that; callers then fail closed.
fn hmac(key: &[u8], parts: &[&[u8]]) -> Option<[u8; 32]> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).ok()?;
    for p in parts {
        mac.update(p);
    }
    Some(mac.finalize().into_bytes().into())
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3: user "user", password "pencil".
    const RFC_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const RFC_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
    const RFC_SERVER_FIRST: &str = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                    s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const RFC_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                    p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc_verifier() -> ScramVerifier {
        ScramVerifier::derive(b"pencil", &B64.decode(RFC_SALT).unwrap(), 4096).unwrap()
    }

    fn method(users: Vec<(&'static str, ScramVerifier)>) -> ScramSha256 {
        ScramSha256::new(
            move |u| users.iter().find(|(n, _)| *n == u).map(|(_, v)| v.clone()),
            [7; 32],
        )
    }

    fn data(s: &str) -> Option<Bytes> {
        Some(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn rfc_7677_exchange() {
        let m = method(vec![("user", rfc_verifier())]);
        let mut ex = m.exchange().with_server_nonce(RFC_SERVER_NONCE);
        assert_eq!(ex.authenticated_user(), None);
        let step = ex.step(Some(RFC_CLIENT_FIRST.as_bytes()));
        assert_eq!(step, AuthStep::Continue(data(RFC_SERVER_FIRST)));
        let step = ex.step(Some(RFC_CLIENT_FINAL.as_bytes()));
        assert_eq!(step, AuthStep::Success(data(RFC_SERVER_FINAL)));
        assert_eq!(ex.authenticated_user(), Some("user"));
        // Nothing follows the end.
        assert_eq!(ex.step(Some(b"again")), AuthStep::Fail);
    }

    /// The verifier, proof and server signature below come from an independent client written in
    /// Python 3.11 (hashlib + hmac only), run once by hand and pasted here:
    /// ```text
    /// b64 = lambda b: base64.b64encode(b).decode(); salt = b'coremq-test-salt'
    /// salted = hashlib.pbkdf2_hmac('sha256', b'hunter2', salt, 4096)
    /// ck = hmac.new(salted, b'Client Key', 'sha256').digest()
    /// sk = hmac.new(salted, b'Server Key', 'sha256').digest()
    /// stored = hashlib.sha256(ck).digest()
    /// cfb = 'n=al=2Cice,r=clientnonce123'
    /// sf = 'r=clientnonce123SERVERNONCE,s=' + b64(salt) + ',i=4096'
    /// cfwp = 'c=biws,r=clientnonce123SERVERNONCE'
    /// am = (cfb + ',' + sf + ',' + cfwp).encode()
    /// proof = bytes(a ^ b for a, b in zip(ck, hmac.new(stored, am, 'sha256').digest()))
    /// print(b64(stored), b64(sk), b64(proof), b64(hmac.new(sk, am, 'sha256').digest()))
    /// ```
    #[test]
    fn independent_python_client_with_escaped_username() {
        let v = ScramVerifier::derive(b"hunter2", b"coremq-test-salt", 4096).unwrap();
        assert_eq!(
            v.to_string(),
            "scram-sha-256$4096$Y29yZW1xLXRlc3Qtc2FsdA==$\
             eSheHKZY2emgo+B6NwYZycKMR+9MuQrXlvoNYsv9UxU=$\
             7fENBGuZsbuxBNkedkWzpOlAid4KMLyUin/xSAbAAHs="
        );
        let m = method(vec![("al,ice", v)]);
        let mut ex = m.exchange().with_server_nonce("SERVERNONCE");
        assert_eq!(
            ex.step(Some(b"n,,n=al=2Cice,r=clientnonce123")),
            AuthStep::Continue(data(
                "r=clientnonce123SERVERNONCE,s=Y29yZW1xLXRlc3Qtc2FsdA==,i=4096"
            ))
        );
        assert_eq!(
            ex.step(Some(
                b"c=biws,r=clientnonce123SERVERNONCE,\
                  p=hpsVgdNMQ/izFRJN7h9e7Wr/ftLhGSzuk5VKG/PyRJg="
            )),
            AuthStep::Success(data("v=TgK4YSm9tvbNQOEUO3lEsHagsXNWB7QeTE44oMPCZTk="))
        );
        assert_eq!(ex.authenticated_user(), Some("al,ice"));
    }

    #[test]
    fn wrong_proof_fails() {
        let m = method(vec![("user", rfc_verifier())]);
        let mut ex = m.exchange().with_server_nonce(RFC_SERVER_NONCE);
        ex.step(Some(RFC_CLIENT_FIRST.as_bytes()));
        let bad = RFC_CLIENT_FINAL.replace("p=dHzb", "p=dHzc");
        assert_eq!(ex.step(Some(bad.as_bytes())), AuthStep::Fail);
        assert_eq!(ex.authenticated_user(), None);
    }

    #[test]
    fn wrong_password_verifier_fails() {
        let wrong = ScramVerifier::derive(b"pencil2", &B64.decode(RFC_SALT).unwrap(), 4096);
        let m = method(vec![("user", wrong.unwrap())]);
        let mut ex = m.exchange().with_server_nonce(RFC_SERVER_NONCE);
        ex.step(Some(RFC_CLIENT_FIRST.as_bytes()));
        assert_eq!(ex.step(Some(RFC_CLIENT_FINAL.as_bytes())), AuthStep::Fail);
    }

    #[test]
    fn unknown_user_gets_a_stable_mock_challenge_then_fails() {
        let m = method(vec![]);
        let challenge = |m: &ScramSha256| {
            let mut ex = m.exchange().with_server_nonce(RFC_SERVER_NONCE);
            let AuthStep::Continue(Some(c)) = ex.step(Some(RFC_CLIENT_FIRST.as_bytes())) else {
                panic!("no challenge");
            };
            (ex, c)
        };
        let (mut ex, first) = challenge(&m);
        let (_, second) = challenge(&m);
        // Same salt each time, as for a real user, and the same shape.
        assert_eq!(first, second);
        let text = std::str::from_utf8(&first).unwrap();
        assert!(text.starts_with("r=rOprNGfwEbeRWgbNEkqO%hvYD") && text.ends_with(",i=4096"));
        assert_eq!(ex.step(Some(RFC_CLIENT_FINAL.as_bytes())), AuthStep::Fail);
        // Another mock key gives another salt.
        let other = ScramSha256::new(|_| None, [8; 32]);
        assert_ne!(challenge(&other).1, first);
    }

    #[test]
    fn malformed_client_first_fails() {
        let m = method(vec![("user", rfc_verifier())]);
        for msg in [
            "",
            "n,,",
            "p=tls-unique,,n=user,r=abc",
            "x,,n=user,r=abc",
            "n,,m=ext,n=user,r=abc",
            "n,,n=,r=abc",
            "n,,n=us=3Xer,r=abc",
            "n,,n=user",
            "n,,n=user,r=",
            "n,,r=abc,n=user",
            "n,a=other,n=user,r=abc",
        ] {
            let mut ex = m.exchange();
            assert_eq!(ex.step(Some(msg.as_bytes())), AuthStep::Fail, "{msg:?}");
        }
        assert_eq!(m.exchange().step(None), AuthStep::Fail);
        assert_eq!(m.exchange().step(Some(&[0xff, 0xfe])), AuthStep::Fail);
    }

    #[test]
    fn malformed_or_mismatched_client_final_fails() {
        let m = method(vec![("user", rfc_verifier())]);
        let nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let proof = "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        for msg in [
            // channel binding echo of "y,," where "n,," was sent
            format!("c=eSws,r={nonce},{proof}"),
            // nonce changed
            format!("c=biws,r={nonce}x,{proof}"),
            // no proof
            format!("c=biws,r={nonce}"),
            // proof too short
            format!("c=biws,r={nonce},p=AAAA"),
            format!("r={nonce},c=biws,{proof}"),
        ] {
            let mut ex = m.exchange().with_server_nonce(RFC_SERVER_NONCE);
            ex.step(Some(RFC_CLIENT_FIRST.as_bytes()));
            assert_eq!(ex.step(Some(msg.as_bytes())), AuthStep::Fail, "{msg}");
        }
        // Data missing from the second step.
        let mut ex = m.exchange().with_server_nonce(RFC_SERVER_NONCE);
        ex.step(Some(RFC_CLIENT_FIRST.as_bytes()));
        assert_eq!(ex.step(None), AuthStep::Fail);
    }

    #[test]
    fn authorization_identity_equal_to_the_user_and_y_flag_are_accepted() {
        let m = method(vec![("user", rfc_verifier())]);
        let mut ex = m.exchange().with_server_nonce("S");
        let step = ex.step(Some(b"y,a=user,n=user,r=abc"));
        assert_eq!(
            step,
            AuthStep::Continue(data(&format!("r=abcS,s={RFC_SALT},i=4096")))
        );
    }

    #[test]
    fn authenticator_knows_only_its_method_and_uses_random_nonces() {
        let m = method(vec![("user", rfc_verifier())]);
        assert!(m.start("SCRAM-SHA-1", "c").is_none());
        let mut a = m.start(METHOD, "c").unwrap();
        let mut b = m.start(METHOD, "c").unwrap();
        let first = Some(RFC_CLIENT_FIRST.as_bytes());
        assert_ne!(a.step(first), b.step(first));
    }

    #[test]
    fn verifier_text_round_trip_and_errors() {
        let v = rfc_verifier();
        let text = v.to_string();
        assert!(text.starts_with("scram-sha-256$4096$W22ZaJ0SNY7soEsUEjb6gQ==$"));
        assert!(!text.contains(':'));
        assert_eq!(ScramVerifier::parse(&text).unwrap(), v);
        assert!(!format!("{v:?}").contains(&B64.encode(v.stored_key)));
        for bad in [
            "scram-sha-1$4096$c2FsdA==$AAAA$AAAA",
            "scram-sha-256$0$c2FsdA==$",
            "scram-sha-256$4096$c2FsdA==$AAAA$AAAA",
            "scram-sha-256$4096$!!$AAAA$AAAA",
            "scram-sha-256$x$c2FsdA==$AAAA$AAAA",
        ] {
            assert!(ScramVerifier::parse(bad).is_err(), "{bad}");
        }
        let g = ScramVerifier::generate(b"pw", 4096).unwrap();
        assert_eq!(g.salt.len(), SALT_LEN);
        assert_eq!(ScramVerifier::derive(b"pw", &g.salt, 4096).unwrap(), g);
    }
}
