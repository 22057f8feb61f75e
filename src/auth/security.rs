//! A shard's access policy: who may connect (anonymous access, the password file, the ban list)
//! and what each client may publish and receive (the ACL file), plus a cache of recent successful
//! logins.
//!
//! Files are read once per (re)load by the starting thread (`SecurityFiles::read`, which also
//! parses them so a bad file is refused before anything changes); each shard then parses the
//! same text into its own `Security` — no locks, nothing shared. A reload (SIGHUP) replaces a
//! shard's `Security` whole; connected clients meet the new rules on their next publish,
//! subscribe or delivery, and the login cache starts empty.
//!
//! Password checks are slow on purpose (PBKDF2, 210,000 rounds by default): `check_login`
//! returns the check as a closure for the shard to run on its blocking thread pool, so a storm of
//! bad passwords never stalls a shard. A successful login is remembered as a keyed SHA-256 of
//! user and password (key random per shard, in memory only), so reconnects of the same device
//! skip the slow check.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::acl::{Acl, SubscribeAccess};
use super::banlist::BanList;
use super::password::PasswordStore;
use super::FileError;
use crate::config::Config;

/// The files' text, read and validated on the starting thread, sent to every shard.
#[derive(Debug, Clone, Default)]
pub struct SecurityFiles {
    passwords: Option<(PathBuf, String)>,
    acl: Option<(PathBuf, String)>,
    bans: Option<(PathBuf, String)>,
}

impl SecurityFiles {
    /// Reads the password, ACL and ban files named by `config` and checks that they parse.
    pub fn read(config: &Config) -> Result<Self, FileError> {
        let read = |path: &Option<PathBuf>| -> Result<Option<(PathBuf, String)>, FileError> {
            match path {
                None => Ok(None),
                Some(p) => std::fs::read_to_string(p)
                    .map(|text| Some((p.clone(), text)))
                    .map_err(|e| FileError::io(p, &e)),
            }
        };
        let files = Self {
            passwords: read(&config.password_file)?,
            acl: read(&config.acl_file)?,
            bans: read(&config.ban_file)?,
        };
        Security::build(config, &files)?;
        Ok(files)
    }

    /// Whether a password file is configured.
    pub fn has_passwords(&self) -> bool {
        self.passwords.is_some()
    }
}

/// The outcome of checking a CONNECT's credentials.
pub enum Login {
    Allowed,
    /// Refused without a password check: anonymous access is off.
    NotAuthorized,
    /// Run this (slow) check off the event loop; true means the password is right.
    Verify(Box<dyn FnOnce() -> bool + Send>),
}

/// `COREMQ_ALLOW_ANONYMOUS`: `auto` allows anonymous clients only while every listener (MQTT,
/// TLS, WebSocket) is on a loopback address and no password file is configured (as Mosquitto 2 does without a listener setting).
pub fn anonymous_allowed(config: &Config, has_passwords: bool) -> bool {
    config
        .allow_anonymous
        .unwrap_or(!has_passwords && config.exposed().is_none())
}

/// Why anonymous clients are or are not allowed, for the start-up log.
pub fn anonymous_policy(config: &Config, has_passwords: bool) -> String {
    let allowed = anonymous_allowed(config, has_passwords);
    let verdict = if allowed { "allowed" } else { "refused" };
    let why = match config.allow_anonymous {
        Some(_) => "COREMQ_ALLOW_ANONYMOUS is set".to_string(),
        None if has_passwords => "COREMQ_ALLOW_ANONYMOUS=auto and a password file is set".into(),
        None => match config.exposed() {
            None => "COREMQ_ALLOW_ANONYMOUS=auto and every listener is on a loopback address"
                .to_string(),
            Some(addr) => format!(
                "COREMQ_ALLOW_ANONYMOUS=auto and {} is not a loopback address; set \
                 COREMQ_PASSWORD_FILE, or COREMQ_ALLOW_ANONYMOUS=true to open it to anyone",
                addr.ip()
            ),
        },
    };
    let on: Vec<String> = config.listeners().map(|a| a.to_string()).collect();
    format!("anonymous clients {verdict} on {} ({why})", on.join(", "))
}

/// One shard's policy. Lives on one shard.
pub struct Security {
    passwords: Option<PasswordStore>,
    acl: Option<Acl>,
    bans: BanList,
    allow_anonymous: bool,
    /// Keyed digests of user + password of successful logins.
    logins: RefCell<HashMap<String, [u8; 32]>>,
    cache_key: [u8; 32],
}

/// Successful logins remembered per shard before the cache starts over.
const LOGIN_CACHE: usize = 100_000;

impl Security {
    /// Parses the files for one shard.
    pub fn build(config: &Config, files: &SecurityFiles) -> Result<Self, FileError> {
        let passwords = match &files.passwords {
            Some((path, text)) => Some(PasswordStore::parse(text, path)?),
            None => None,
        };
        let acl = match &files.acl {
            Some((path, text)) => Some(Acl::parse(text, path)?),
            None => None,
        };
        let bans = match &files.bans {
            Some((path, text)) => BanList::parse(text, path)?,
            None => BanList::default(),
        };
        let mut cache_key = [0u8; 32];
        // A key only for this process's in-memory cache; fall back to the address-space
        // randomness of a fresh hasher if the OS source fails.
        if super::random_bytes(&mut cache_key).is_err() {
            use std::hash::BuildHasher;
            let r = std::collections::hash_map::RandomState::new().hash_one(0u64);
            cache_key[..8].copy_from_slice(&r.to_le_bytes());
        }
        Ok(Self {
            allow_anonymous: anonymous_allowed(config, passwords.is_some()),
            passwords,
            acl,
            bans,
            logins: RefCell::new(HashMap::new()),
            cache_key,
        })
    }

    /// No files: everyone may connect and do anything.
    pub fn open(config: &Config) -> Self {
        // `build` without files cannot fail.
        Self::build(config, &SecurityFiles::default()).unwrap_or_else(|_| Self {
            passwords: None,
            acl: None,
            bans: BanList::default(),
            allow_anonymous: anonymous_allowed(config, false),
            logins: RefCell::new(HashMap::new()),
            cache_key: [0; 32],
        })
    }

    pub fn allow_anonymous(&self) -> bool {
        self.allow_anonymous
    }

    pub fn has_passwords(&self) -> bool {
        self.passwords.is_some()
    }

    pub fn passwords(&self) -> Option<&PasswordStore> {
        self.passwords.as_ref()
    }

    /// Checks a CONNECT's user name and password. A user name is checked against the password
    /// file when there is one; without a user name the client is anonymous.
    pub fn check_login(&self, username: Option<&str>, password: Option<&[u8]>) -> Login {
        let Some(user) = username else {
            return if self.allow_anonymous {
                Login::Allowed
            } else {
                Login::NotAuthorized
            };
        };
        let Some(store) = &self.passwords else {
            // No password file: a user name is just a name (for ACL patterns).
            return if self.allow_anonymous {
                Login::Allowed
            } else {
                Login::NotAuthorized
            };
        };
        let password = password.unwrap_or_default().to_vec();
        if self.logins.borrow().get(user) == Some(&self.digest(user, &password)) {
            return Login::Allowed;
        }
        let (hash, _known) = store.hash_for(user);
        Login::Verify(Box::new(move || hash.verify(&password)))
    }

    /// Remembers a login that `Login::Verify` accepted.
    pub fn remember(&self, username: &str, password: &[u8]) {
        let mut logins = self.logins.borrow_mut();
        if logins.len() >= LOGIN_CACHE {
            logins.clear();
        }
        logins.insert(username.to_string(), self.digest(username, password));
    }

    fn digest(&self, user: &str, password: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.cache_key);
        h.update((user.len() as u64).to_le_bytes());
        h.update(user.as_bytes());
        h.update(password);
        h.finalize().into()
    }

    /// Whether the client may publish to `topic` (always, without an ACL file).
    pub fn can_publish(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        self.acl
            .as_ref()
            .is_none_or(|acl| acl.can_publish(client_id, username, topic))
    }

    /// Whether the client may receive a message on `topic`.
    pub fn can_receive(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        self.acl
            .as_ref()
            .is_none_or(|acl| acl.can_receive(client_id, username, topic))
    }

    /// Whether the client may subscribe to `filter` (without a `$share/` prefix); a partly
    /// allowed filter is granted, and deliveries are checked one by one.
    pub fn may_subscribe(&self, client_id: &str, username: Option<&str>, filter: &str) -> bool {
        self.acl.as_ref().is_none_or(|acl| {
            acl.subscribe_access(client_id, username, filter) != SubscribeAccess::Denied
        })
    }

    /// Whether the ban list names `address` (or a range holding it).
    pub fn bans_address(&self, address: IpAddr) -> bool {
        !self.bans.is_empty() && self.bans.bans_address(address)
    }

    /// Whether the ban list refuses a client from `address` with this client id and user name.
    pub fn is_banned(&self, address: IpAddr, client_id: &str, username: Option<&str>) -> bool {
        !self.bans.is_empty()
            && (self.bans.bans_address(address)
                || self.bans.bans_client_id(client_id)
                || username.is_some_and(|u| self.bans.bans_username(u)))
    }

    /// Whether deliveries must be checked one by one (an ACL is configured).
    pub fn checks_deliveries(&self) -> bool {
        self.acl.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn security(passwords: Option<&str>, acl: Option<&str>, anonymous: Option<bool>) -> Security {
        let config = Config {
            allow_anonymous: anonymous,
            ..Config::default()
        };
        let files = SecurityFiles {
            passwords: passwords.map(|t| (PathBuf::from("pw"), t.to_string())),
            acl: acl.map(|t| (PathBuf::from("acl"), t.to_string())),
            bans: None,
        };
        Security::build(&config, &files).unwrap()
    }

    fn verify(login: Login) -> Option<bool> {
        match login {
            Login::Allowed => Some(true),
            Login::NotAuthorized => None,
            Login::Verify(f) => Some(f()),
        }
    }

    #[test]
    fn anonymous_is_allowed_by_default_only_on_loopback_without_a_password_file() {
        assert!(security(None, None, None).allow_anonymous());
        for (listen, auto) in [
            ("127.0.0.1:1883", true),
            ("127.0.0.2:1883", true),
            ("[::1]:1883", true),
            ("0.0.0.0:1883", false),
            ("[::]:1883", false),
            ("192.0.2.1:1883", false),
        ] {
            let config = |anonymous| Config {
                listen: listen.parse().unwrap(),
                allow_anonymous: anonymous,
                ..Config::default()
            };
            assert_eq!(anonymous_allowed(&config(None), false), auto, "{listen}");
            assert!(anonymous_allowed(&config(Some(true)), false), "{listen}");
            assert!(!anonymous_allowed(&config(Some(false)), false), "{listen}");
            let why = anonymous_policy(&config(None), false);
            assert!(
                why.contains(if auto { "allowed" } else { "refused" }),
                "{why}"
            );
        }
        // One listener on the network is enough to refuse them, whichever kind it is.
        let tls_out = Config {
            listen: "127.0.0.1:1883".parse().unwrap(),
            wss_listen: Some("0.0.0.0:8081".parse().unwrap()),
            ..Config::default()
        };
        assert!(!anonymous_allowed(&tls_out, false));
        let why = anonymous_policy(&tls_out, false);
        assert!(why.contains("0.0.0.0 is not a loopback address"), "{why}");
        let line = super::super::password::PasswordHash::pbkdf2_with_salt(b"pw", b"salt", 1000);
        let text = format!("alice:{line}\n");
        let s = security(Some(&text), None, None);
        assert!(!s.allow_anonymous());
        assert!(matches!(s.check_login(None, None), Login::NotAuthorized));
        assert!(security(Some(&text), None, Some(true)).allow_anonymous());
        assert!(!security(None, None, Some(false)).allow_anonymous());
    }

    #[test]
    fn passwords_are_checked_then_cached() {
        let line = super::super::password::PasswordHash::pbkdf2_with_salt(b"pw", b"salt", 1000);
        let s = security(Some(&format!("alice:{line}\n")), None, None);
        assert_eq!(
            verify(s.check_login(Some("alice"), Some(b"pw"))),
            Some(true)
        );
        assert_eq!(
            verify(s.check_login(Some("alice"), Some(b"nope"))),
            Some(false)
        );
        assert_eq!(verify(s.check_login(Some("bob"), Some(b"pw"))), Some(false));
        s.remember("alice", b"pw");
        assert!(matches!(
            s.check_login(Some("alice"), Some(b"pw")),
            Login::Allowed
        ));
        // A different password is never served from the cache.
        assert!(matches!(
            s.check_login(Some("alice"), Some(b"pw2")),
            Login::Verify(_)
        ));
    }

    #[test]
    fn acl_checks() {
        let s = security(
            None,
            Some("topic read public/#\nuser alice\ntopic readwrite a/#\n"),
            None,
        );
        assert!(s.checks_deliveries());
        assert!(s.can_publish("c", Some("alice"), "a/b"));
        assert!(!s.can_publish("c", Some("alice"), "public/x"));
        assert!(s.can_receive("c", None, "public/x"));
        assert!(!s.may_subscribe("c", None, "a/#"));
        let open = security(None, None, None);
        assert!(open.can_publish("c", None, "anything") && !open.checks_deliveries());
    }
}
