//! The password file: one `username:hash` per line, read into a [`PasswordStore`] that checks a
//! CONNECT's username and password. Pure apart from reading the file; the `coremq passwd`
//! subcommand that writes it is in `password/passwd.rs` (re-exported here).
//!
//! # Format
//! ```text
//! # comments and blank lines are ignored
//! alice:$7$210000$ZGVtb3NhbHQxMjM0$<64 bytes of PBKDF2-HMAC-SHA-512, base64>
//! bob:$6$NYwBKmpEwRa3lr4F$<64 bytes of SHA-512, base64>
//! carol:$7$210000$…$…:scram-sha-256$4096$…$…$…
//! ```
//! Hashes are Mosquitto 2.x's, computed exactly as Mosquitto does, so its files work unchanged
//! and coremq's files work in Mosquitto:
//! - `$6$SALT$HASH`: `SHA-512(password ‖ salt)`, Mosquitto ≤ 1.6's default (weak: one fast hash).
//! - `$7$ITERATIONS$SALT$HASH`: `PBKDF2-HMAC-SHA-512(password, salt, iterations, 64 bytes)`,
//!   Mosquitto 2.x's default (with only 101 iterations there).
//!
//! SALT and HASH are standard base64 of the raw bytes (the salt is used decoded; Mosquitto 2.0
//! writes 12-byte salts and insists on them, coremq accepts any non-empty salt). HASH must be
//! 64 bytes. The optional third field is a SCRAM-SHA-256 verifier ([`ScramVerifier`]); Mosquitto
//! reads only the first two fields, so it ignores it.
//!
//! coremq writes `$7$` with [`DEFAULT_ITERATIONS`] (210,000, OWASP's figure for PBKDF2-SHA-512)
//! and a 12-byte salt. PBKDF2 rather than argon2id: Mosquitto can read it (migration works both
//! ways), it needs no new primitive beyond SHA-2, and its cost is CPU only — argon2id's memory
//! hardness is stronger against GPU cracking of a stolen file, but each verification would also
//! take ~19 MiB, which a storm of bad CONNECTs multiplies on the broker.
//!
//! # Verification
//! Hash comparison is constant-time. A `$7$` check costs its iteration count in HMAC-SHA-512
//! — about a quarter of a second of one core at 210,000 (OpenSSL takes 0.27 s on the 2-core
//! development machine) — so callers must run it off the shard's event loop, and it bounds
//! logins per second per core (a mass reconnect of many devices included: `coremq passwd
//! --iterations=N` trades strength for that). An unknown user costs
//! the same as a known one (a dummy hash with the first entry's parameters is checked), so
//! response time does not reveal which users exist.
//!
//! Stricter than Mosquitto, which logs and skips bad lines: any malformed line, unknown hash
//! type, or repeated user is an error naming the file, line and reason, so a typo never
//! silently locks a user out (or, on reload, keeps the old file in force with a log line).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use super::scram::ScramVerifier;
use super::{random_bytes, FileError};

mod passwd;

pub use passwd::{passwd_command, passwd_delete, passwd_main, Change, PasswdError};
pub use passwd::{PasswdOptions, PasswordSource};

/// PBKDF2 iterations for hashes coremq writes (OWASP 2023 for PBKDF2-HMAC-SHA-512).
pub const DEFAULT_ITERATIONS: u32 = 210_000;

/// Salt length of hashes coremq writes: Mosquitto 2.0 accepts only 12-byte salts.
const SALT_LEN: usize = 12;

/// Both Mosquitto hashes are 64 bytes (SHA-512 output).
const HASH_LEN: usize = 64;

/// One stored password hash.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// `$6$`: SHA-512 of the password followed by the salt.
    Sha512 { salt: Vec<u8>, hash: [u8; HASH_LEN] },
    /// `$7$`: PBKDF2-HMAC-SHA-512 with `iterations`.
    Pbkdf2Sha512 {
        iterations: u32,
        salt: Vec<u8>,
        hash: [u8; HASH_LEN],
    },
}

impl PasswordHash {
    /// Parses `$6$SALT$HASH` or `$7$ITERATIONS$SALT$HASH`; the error says what is wrong.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parts = s.split('$');
        if parts.next() != Some("") {
            return Err("hash must start with $6$ or $7$".into());
        }
        let kind = parts.next().unwrap_or_default();
        let iterations = match kind {
            "6" => None,
            "7" => match parts.next().map(str::parse::<u32>) {
                Some(Ok(n)) if n > 0 => Some(n),
                _ => return Err("bad $7$ iteration count (expected 1 or more)".into()),
            },
            _ => {
                return Err(format!(
                    "unknown hash type ${}$ (expected $6$ or $7$)",
                    kind.escape_debug()
                ))
            }
        };
        let (Some(salt), Some(hash), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("malformed ${kind}$ hash: expected salt and hash"));
        };
        let salt = B64
            .decode(salt)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or("bad salt (expected base64)")?;
        let hash = B64
            .decode(hash)
            .ok()
            .and_then(|h| <[u8; HASH_LEN]>::try_from(h).ok())
            .ok_or("bad hash (expected 64 bytes in base64)")?;
        Ok(match iterations {
            None => PasswordHash::Sha512 { salt, hash },
            Some(iterations) => PasswordHash::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            },
        })
    }

    /// A `$7$` hash of `password` with a fresh 12-byte salt.
    pub fn generate(password: &[u8], iterations: u32) -> std::io::Result<Self> {
        let mut salt = [0u8; SALT_LEN];
        random_bytes(&mut salt)?;
        Ok(Self::pbkdf2_with_salt(password, &salt, iterations))
    }

    /// A `$7$` hash of `password` with the given salt.
    pub fn pbkdf2_with_salt(password: &[u8], salt: &[u8], iterations: u32) -> Self {
        let mut hash = [0u8; HASH_LEN];
        pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut hash);
        PasswordHash::Pbkdf2Sha512 {
            iterations,
            salt: salt.to_vec(),
            hash,
        }
    }

    /// Whether `password` matches, compared in constant time.
    pub fn verify(&self, password: &[u8]) -> bool {
        let (computed, stored) = match self {
            PasswordHash::Sha512 { salt, hash } => {
                let mut h = Sha512::new();
                h.update(password);
                h.update(salt);
                let digest: [u8; HASH_LEN] = h.finalize().into();
                (digest, hash)
            }
            PasswordHash::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => {
                let mut out = [0u8; HASH_LEN];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut out);
                (out, hash)
            }
        };
        computed.ct_eq(stored).into()
    }

    /// The same scheme and cost with an all-zero salt and hash: checked for unknown users so
    /// they take as long as known ones (and never match).
    fn dummy(&self) -> Self {
        match self {
            PasswordHash::Sha512 { .. } => PasswordHash::Sha512 {
                salt: vec![0; SALT_LEN],
                hash: [0; HASH_LEN],
            },
            PasswordHash::Pbkdf2Sha512 { iterations, .. } => PasswordHash::Pbkdf2Sha512 {
                iterations: *iterations,
                salt: vec![0; SALT_LEN],
                hash: [0; HASH_LEN],
            },
        }
    }
}

impl fmt::Display for PasswordHash {
    /// The file form: `$6$SALT$HASH` or `$7$ITERATIONS$SALT$HASH`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordHash::Sha512 { salt, hash } => {
                write!(f, "$6${}${}", B64.encode(salt), B64.encode(hash))
            }
            PasswordHash::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => write!(
                f,
                "$7${iterations}${}${}",
                B64.encode(salt),
                B64.encode(hash)
            ),
        }
    }
}

impl fmt::Debug for PasswordHash {
    /// Scheme and cost only: hashes stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordHash::Sha512 { .. } => f.write_str("PasswordHash($6$)"),
            PasswordHash::Pbkdf2Sha512 { iterations, .. } => {
                write!(f, "PasswordHash($7$, {iterations} iterations)")
            }
        }
    }
}

/// One line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    pub hash: PasswordHash,
    /// For SCRAM-SHA-256 logins; absent unless written with `coremq passwd --scram`.
    pub scram: Option<ScramVerifier>,
}

impl UserEntry {
    /// The line for `user`, as written to the file (without newline).
    pub fn line(&self, user: &str) -> String {
        match &self.scram {
            Some(v) => format!("{user}:{}:{v}", self.hash),
            None => format!("{user}:{}", self.hash),
        }
    }
}

/// The parsed password file: username → entry. Immutable once loaded; a reload builds a new one.
/// Shared read-only by every shard (behind an `Arc`) and by the threads that verify passwords.
pub struct PasswordStore {
    users: HashMap<String, UserEntry>,
    /// Checked for unknown users, so they cost what a known user costs.
    dummy: PasswordHash,
}

impl PasswordStore {
    /// Reads and parses `file`.
    pub fn load(file: &Path) -> Result<Self, FileError> {
        let text = std::fs::read_to_string(file).map_err(|e| FileError::io(file, &e))?;
        Self::parse(&text, file)
    }

    /// Parses the file's text; `file` names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Self, FileError> {
        let mut users = HashMap::new();
        let mut dummy = None;
        for (i, line) in text.lines().enumerate() {
            let Some((user, entry)) =
                parse_line(line).map_err(|r| FileError::at(file, i + 1, r))?
            else {
                continue;
            };
            dummy.get_or_insert_with(|| entry.hash.dummy());
            if users.insert(user.to_string(), entry).is_some() {
                return Err(FileError::at(
                    file,
                    i + 1,
                    format!("user {:?} appears twice", user),
                ));
            }
        }
        Ok(PasswordStore {
            users,
            dummy: dummy.unwrap_or_else(|| PasswordHash::Pbkdf2Sha512 {
                iterations: DEFAULT_ITERATIONS,
                salt: vec![0; SALT_LEN],
                hash: [0; HASH_LEN],
            }),
        })
    }

    /// Whether `username` may log in with `password`. Slow by design (see the module docs):
    /// call it off the shard's event loop.
    pub fn verify(&self, username: &str, password: &[u8]) -> bool {
        match self.users.get(username) {
            Some(entry) => entry.hash.verify(password),
            None => {
                // Same work as a real check, result ignored.
                let _ = self.dummy.verify(password);
                false
            }
        }
    }

    /// The hash to check `username`'s password against, cloned so the slow check can run on
    /// another thread: the user's own, or for unknown users a dummy of the same cost that never
    /// matches.
    pub fn hash_for(&self, username: &str) -> (PasswordHash, bool) {
        match self.users.get(username) {
            Some(entry) => (entry.hash.clone(), true),
            None => (self.dummy.clone(), false),
        }
    }

    /// The entry of `username`.
    pub fn get(&self, username: &str) -> Option<&UserEntry> {
        self.users.get(username)
    }

    /// `username`'s SCRAM-SHA-256 verifier, if it has one.
    pub fn scram_verifier(&self, username: &str) -> Option<&ScramVerifier> {
        self.users.get(username)?.scram.as_ref()
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

impl fmt::Debug for PasswordStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordStore")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

/// One line: `Ok(None)` for blank lines and comments.
fn parse_line(line: &str) -> Result<Option<(&str, UserEntry)>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let mut fields = line.split(':');
    let user = fields.next().unwrap_or_default().trim();
    let Some(hash) = fields.next() else {
        return Err("expected username:hash".into());
    };
    if user.is_empty() {
        return Err("empty username".into());
    }
    let hash = PasswordHash::parse(hash.trim())?;
    let scram = match fields.next() {
        None => None,
        Some(v) => Some(ScramVerifier::parse(v.trim())?),
    };
    if fields.next().is_some() {
        return Err("too many ':' fields (expected username:hash[:scram-verifier])".into());
    }
    Ok(Some((user, UserEntry { hash, scram })))
}

/// Whether a username can be written to the file and read back as itself: not empty, no `:`,
/// no control characters, no surrounding blanks (trimmed on read), not starting with `#`.
pub fn valid_username(user: &str) -> bool {
    !user.is_empty()
        && !user.contains(':')
        && !user.chars().any(char::is_control)
        && user.trim() == user
        && !user.starts_with('#')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Genuine vectors: written by Mosquitto's own `mosquitto_passwd` 2.0.11 (Debian package
    /// `mosquitto` 2.0.11-1.2+deb12u2) with
    /// ```text
    /// mosquitto_passwd -c -b pw.txt alice 'correct horse'        # default: $7$, 101 iterations
    /// mosquitto_passwd -H sha512 -b pw.txt bob 'hunter2'         # $6$
    /// mosquitto_passwd -I 1000 -b pw.txt carol 'pässwörd €'      # $7$, 1000 iterations, UTF-8
    /// mosquitto_passwd -b pw.txt dave ''                         # empty password
    /// ```
    /// and cross-checked with a Python hashlib script mirroring Mosquitto's `pw__hash`
    /// (`sha512(password + salt)` / `pbkdf2_hmac('sha512', password, salt, iterations, 64)`).
    const MOSQUITTO_FILE: &str = "\
alice:$7$101$9ig2SqJQlvxwUh+o$Bkmn1bgvAe4yPY2MqdJOmsv8lzp0BgtfrL4egcGxnZKXk5H1YEgadRO157e8Jxxr7xVZjJ8FlHP+i9RuCayvQA==
bob:$6$NYwBKmpEwRa3lr4F$8/P3Ax7/3qBlaH8LmNEUMQxorO6RQ4nJEy7NBcDwzluaywUQf5U2W/HEnl6BEZwddtUMDuVwf2XJnh7dzcJ2lA==
carol:$7$1000$JHHkRu7UR0IpU8sx$wXi5e2dJf8JHYYwbIyY3A3Uo4DhQ1ohvLZlgzm/EyM9COhpBiGJDdlwy3939qLhiCzHG9VpJxGONZ4y/14clYA==
dave:$7$101$3lOV62/xz8Hcb0VG$Bx+CWP8b39qVz/x/5kDEpLeJq7f7JbEDHxfnetTMYS52rZwjUqhmZM0gs4w6du4qBc3Acymxx4OHSsCFbN59DA==
";

    fn parse(text: &str) -> Result<PasswordStore, FileError> {
        PasswordStore::parse(text, Path::new("pw.txt"))
    }

    #[test]
    fn mosquitto_passwd_vectors_verify() {
        let store = parse(MOSQUITTO_FILE).unwrap();
        assert_eq!(store.len(), 4);
        for (user, good, bad) in [
            ("alice", "correct horse", "correct horse "),
            ("bob", "hunter2", "hunter3"),
            ("carol", "pässwörd €", "passwörd €"),
            ("dave", "", " "),
        ] {
            assert!(store.verify(user, good.as_bytes()), "{user}");
            assert!(!store.verify(user, bad.as_bytes()), "{user}");
        }
        assert!(!store.verify("mallory", b"hunter2"));
        assert!(matches!(
            store.get("bob").unwrap().hash,
            PasswordHash::Sha512 { .. }
        ));
        assert!(matches!(
            store.get("carol").unwrap().hash,
            PasswordHash::Pbkdf2Sha512 {
                iterations: 1000,
                ..
            }
        ));
    }

    #[test]
    fn hashes_print_back_as_read() {
        for line in MOSQUITTO_FILE.lines() {
            let (user, hash) = line.split_once(':').unwrap();
            let parsed = PasswordHash::parse(hash).unwrap();
            assert_eq!(parsed.to_string(), hash);
            let entry = UserEntry {
                hash: parsed,
                scram: None,
            };
            assert_eq!(entry.line(user), line);
        }
    }

    /// What coremq writes, Mosquitto reads: same `$7$` format and 12-byte salt. (The same hash
    /// with the default 210,000 iterations was also checked by hand with a Mosquitto 2.0.11
    /// broker; here the count is low to keep debug-build tests fast.)
    #[test]
    fn generated_hashes_use_mosquitto_format() {
        let h = PasswordHash::generate(b"s3cret", 1000).unwrap();
        let text = h.to_string();
        let parts: Vec<&str> = text.split('$').collect();
        assert_eq!(parts[..3], ["", "7", "1000"]);
        assert_eq!(B64.decode(parts[3]).unwrap().len(), 12);
        assert_eq!(B64.decode(parts[4]).unwrap().len(), 64);
        assert!(h.verify(b"s3cret"));
        assert!(!h.verify(b"s3cre"));
        // HMAC pads short keys with zeros, so trailing NULs do not change a PBKDF2 hash (nor
        // Mosquitto's, which stops at the first NUL): a property of `$7$`, not a bug here.
        assert!(h.verify(b"s3cret\0"));
        assert_ne!(PasswordHash::generate(b"s3cret", 1000).unwrap(), h);
    }

    /// PBKDF2-HMAC-SHA-512 known answer, from Python:
    /// `hashlib.pbkdf2_hmac('sha512', b'password', b'saltsaltsalt', 3, 64)`.
    #[test]
    fn pbkdf2_known_answer() {
        let h = PasswordHash::pbkdf2_with_salt(b"password", b"saltsaltsalt", 3);
        assert_eq!(
            h.to_string(),
            "$7$3$c2FsdHNhbHRzYWx0$H3w86mt9t7f1adubAoW+kVipMh4kicthiQ3QrI9pr9v65SifA6hQer7rQW5IuwOb0+oxHH0911DjCXJwEM8Ddw=="
        );
    }

    #[test]
    fn comments_blank_lines_blanks_and_scram_field() {
        let scram = ScramVerifier::derive(b"pencil", b"salt", 4096).unwrap();
        let text = format!(
            "# users\n\n   \n  # indented comment\n erin : {} \r\nfrank:{}:{scram}\n",
            PasswordHash::pbkdf2_with_salt(b"pw", b"saltsaltsalt", 2),
            PasswordHash::pbkdf2_with_salt(b"pw2", b"saltsaltsalt", 2),
        );
        let store = parse(&text).unwrap();
        assert_eq!(store.len(), 2);
        assert!(store.verify("erin", b"pw"));
        assert!(store.verify("frank", b"pw2"));
        assert_eq!(store.scram_verifier("frank"), Some(&scram));
        assert_eq!(store.scram_verifier("erin"), None);
        assert_eq!(store.scram_verifier("nobody"), None);
    }

    #[test]
    fn errors_name_file_line_and_reason() {
        let good = PasswordHash::pbkdf2_with_salt(b"pw", b"saltsaltsalt", 2).to_string();
        let cases: Vec<(String, usize, &str)> = vec![
            ("# c\nalice\n".into(), 2, "expected username:hash"),
            (format!(":{good}"), 1, "empty username"),
            ("a:$5$abc$def".into(), 1, "unknown hash type $5$"),
            ("a:plaintext".into(), 1, "must start with $6$ or $7$"),
            ("a:$7$0$c2FsdA==$AAAA".into(), 1, "iteration count"),
            ("a:$7$x$c2FsdA==$AAAA".into(), 1, "iteration count"),
            ("a:$6$c2FsdA==".into(), 1, "expected salt and hash"),
            ("a:$6$c2FsdA==$AAAA$x".into(), 1, "expected salt and hash"),
            ("a:$6$!!$AAAA".into(), 1, "bad salt"),
            ("a:$6$c2FsdA==$AAAA".into(), 1, "expected 64 bytes"),
            (format!("a:{good}:scram"), 1, "scram-sha-256$"),
            (format!("a:{good}:x:y"), 1, "scram-sha-256$"),
            (
                format!("a:{good}\nb:{good}\na:{good}"),
                3,
                "\"a\" appears twice",
            ),
        ];
        for (text, line, reason) in cases {
            let err = parse(&text).unwrap_err();
            assert_eq!(err.line, Some(line), "{text}");
            assert!(err.reason.contains(reason), "{text}: {}", err.reason);
            let shown = err.to_string();
            assert!(shown.starts_with(&format!("pw.txt:{line}: ")), "{shown}");
        }
        let err = PasswordStore::load(Path::new("/nonexistent/coremq-pw")).unwrap_err();
        assert_eq!(err.line, None);
        assert!(err
            .to_string()
            .starts_with("/nonexistent/coremq-pw: cannot read"));
    }

    #[test]
    fn unknown_users_are_checked_against_a_dummy_of_the_same_cost() {
        let store = parse(MOSQUITTO_FILE).unwrap();
        assert_eq!(
            store.dummy,
            PasswordHash::Pbkdf2Sha512 {
                iterations: 101,
                salt: vec![0; 12],
                hash: [0; 64]
            }
        );
        let empty = parse("# nobody yet\n").unwrap();
        assert!(empty.is_empty());
        assert!(matches!(
            empty.dummy,
            PasswordHash::Pbkdf2Sha512 {
                iterations: DEFAULT_ITERATIONS,
                ..
            }
        ));
    }

    #[test]
    fn debug_output_hides_hashes() {
        let store = parse(MOSQUITTO_FILE).unwrap();
        let shown = format!("{store:?} {:?}", store.get("bob").unwrap());
        assert!(!shown.contains("NYwBKmpE"), "{shown}");
        assert!(shown.contains("PasswordHash($6$)"), "{shown}");
    }

    #[test]
    fn usernames_that_survive_the_file() {
        for ok in ["alice", "a b", "ünï", "a#b"] {
            assert!(valid_username(ok), "{ok}");
        }
        for bad in ["", "a:b", " a", "a ", "#a", "a\nb", "a\tb"] {
            assert!(!valid_username(bad), "{bad:?}");
        }
    }
}
