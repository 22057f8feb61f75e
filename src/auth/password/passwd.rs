//! `coremq passwd [--delete] [--iterations=N] [--scram[=ITERATIONS]] FILE USER`: adds, updates
//! or deletes one user's line in a password file.
//!
//! The password is read from standard input: on a terminal it is prompted for twice with echo
//! off (termios), otherwise the first line is taken (so `echo "$PW" | coremq passwd …` works in
//! scripts). The file is rewritten atomically — a temporary file in the same directory, mode
//! 0600, synced, then renamed over the old one — so a running broker reloading it never sees a
//! half-written file. Other lines, comments included, are kept as they were. A file that does
//! not parse is left untouched and the error names its line.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::{fmt, mem};

use super::{parse_line, valid_username, PasswordHash, PasswordStore, UserEntry};
use super::{FileError, DEFAULT_ITERATIONS};
use crate::auth::scram::ScramVerifier;

const USAGE: &str =
    "usage: coremq passwd [--delete] [--iterations=N] [--scram[=ITERATIONS]] FILE USER";

/// Where the new password comes from.
#[derive(Debug, Clone, Copy)]
pub enum PasswordSource<'a> {
    /// Standard input: prompted for (twice, echo off) on a terminal, else its first line.
    Stdin,
    /// Given by the caller (tests, tools).
    Value(&'a str),
}

/// How new entries are hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdOptions {
    /// PBKDF2 iterations of the `$7$` hash.
    pub iterations: u32,
    /// Also store a SCRAM-SHA-256 verifier with this many iterations.
    pub scram_iterations: Option<u32>,
}

impl Default for PasswdOptions {
    fn default() -> Self {
        PasswdOptions {
            iterations: DEFAULT_ITERATIONS,
            scram_iterations: None,
        }
    }
}

/// What happened to the user's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Updated,
    Deleted,
}

/// Why `coremq passwd` did nothing.
#[derive(Debug)]
pub enum PasswdError {
    /// Bad command line; exit status 2.
    Usage(String),
    /// The username cannot be stored (see `valid_username`).
    InvalidUsername(String),
    /// Standard input ended before a password.
    NoPassword,
    EmptyPassword,
    /// The two passwords typed on the terminal differ.
    Mismatch,
    /// `--delete` of a user not in the file.
    UnknownUser(String),
    /// The existing file does not parse (it is left as it was).
    File(FileError),
    Io {
        file: PathBuf,
        error: io::Error,
    },
}

impl fmt::Display for PasswdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswdError::Usage(msg) => write!(f, "{msg}\n{USAGE}"),
            PasswdError::InvalidUsername(u) => write!(
                f,
                "invalid username {u:?}: it must be non-empty, without ':', control characters \
                 or surrounding blanks, and not start with '#'"
            ),
            PasswdError::NoPassword => f.write_str("no password on standard input"),
            PasswdError::EmptyPassword => f.write_str("empty password refused"),
            PasswdError::Mismatch => f.write_str("passwords do not match"),
            PasswdError::UnknownUser(u) => write!(f, "user {u:?} is not in the file"),
            PasswdError::File(e) => write!(f, "{e} (file left unchanged)"),
            PasswdError::Io { file, error } => write!(f, "{}: {error}", file.display()),
        }
    }
}

impl std::error::Error for PasswdError {}

/// Sets `user`'s password in `file` (created if missing), hashed as `options` says.
pub fn passwd_command(
    file: &Path,
    user: &str,
    source: PasswordSource<'_>,
    options: &PasswdOptions,
) -> Result<Change, PasswdError> {
    if !valid_username(user) {
        return Err(PasswdError::InvalidUsername(user.to_string()));
    }
    let text = read_existing(file)?;
    let password = match source {
        PasswordSource::Value(p) => p.to_string(),
        PasswordSource::Stdin => read_password_stdin()?,
    };
    if password.is_empty() {
        return Err(PasswdError::EmptyPassword);
    }
    let io_err = |error| PasswdError::Io {
        file: file.to_path_buf(),
        error,
    };
    let hash = PasswordHash::generate(password.as_bytes(), options.iterations).map_err(io_err)?;
    let scram = match options.scram_iterations {
        Some(i) => Some(ScramVerifier::generate(password.as_bytes(), i).map_err(io_err)?),
        None => None,
    };
    let line = UserEntry { hash, scram }.line(user);
    let (new_text, found) = replace_user_line(&text, user, Some(&line));
    write_atomically(file, &new_text).map_err(io_err)?;
    Ok(if found {
        Change::Updated
    } else {
        Change::Added
    })
}

/// Removes `user`'s line from `file`.
pub fn passwd_delete(file: &Path, user: &str) -> Result<Change, PasswdError> {
    let text = read_existing(file)?;
    let (new_text, found) = replace_user_line(&text, user, None);
    if !found {
        return Err(PasswdError::UnknownUser(user.to_string()));
    }
    write_atomically(file, &new_text).map_err(|error| PasswdError::Io {
        file: file.to_path_buf(),
        error,
    })?;
    Ok(Change::Deleted)
}

/// The subcommand: `args` are the words after `passwd`. Returns the exit status (0 done, 1
/// failed, 2 bad command line) after printing what happened on standard error.
pub fn passwd_main(args: &[String]) -> i32 {
    let result = parse_args(args).and_then(|cmd| match cmd {
        Command::Help => {
            println!("{USAGE}\n\n{}", crate::config::PASSWD_HELP);
            Ok(None)
        }
        Command::Set {
            file,
            user,
            options,
        } => passwd_command(&file, &user, PasswordSource::Stdin, &options)
            .map(|c| Some((c, file, user))),
        Command::Delete { file, user } => {
            passwd_delete(&file, &user).map(|c| Some((c, file, user)))
        }
    });
    match result {
        Ok(None) => 0,
        Ok(Some((change, file, user))) => {
            let what = match change {
                Change::Added => "added",
                Change::Updated => "updated",
                Change::Deleted => "deleted",
            };
            eprintln!("coremq passwd: {what} user {user:?} in {}", file.display());
            0
        }
        Err(e) => {
            eprintln!("coremq passwd: {e}");
            if matches!(e, PasswdError::Usage(_)) {
                2
            } else {
                1
            }
        }
    }
}

enum Command {
    Help,
    Set {
        file: PathBuf,
        user: String,
        options: PasswdOptions,
    },
    Delete {
        file: PathBuf,
        user: String,
    },
}

fn parse_args(args: &[String]) -> Result<Command, PasswdError> {
    let mut delete = false;
    let mut options = PasswdOptions::default();
    let mut positional = Vec::new();
    for arg in args {
        match arg.as_str() {
            "--help" | "-h" => return Ok(Command::Help),
            "--delete" | "-D" => delete = true,
            "--scram" => options.scram_iterations = Some(ScramVerifier::DEFAULT_ITERATIONS),
            a if a.starts_with("--iterations=") => {
                match a["--iterations=".len()..].parse::<u32>() {
                    Ok(n) if n >= 1000 => options.iterations = n,
                    _ => {
                        return Err(PasswdError::Usage(format!(
                            "bad {a:?}: PBKDF2 iterations must be a number from 1000 up"
                        )))
                    }
                }
            }
            a if a.starts_with("--scram=") => match a["--scram=".len()..].parse::<u32>() {
                // RFC 7677: at least 4096.
                Ok(n) if n >= 4096 => options.scram_iterations = Some(n),
                _ => {
                    return Err(PasswdError::Usage(format!(
                        "bad {a:?}: SCRAM iterations must be a number from 4096 up"
                    )))
                }
            },
            a if a.starts_with('-') && a.len() > 1 => {
                return Err(PasswdError::Usage(format!("unknown option {a:?}")))
            }
            _ => positional.push(arg.clone()),
        }
    }
    let [file, user] = <[String; 2]>::try_from(positional)
        .map_err(|_| PasswdError::Usage("expected FILE and USER".into()))?;
    let file = PathBuf::from(file);
    if !delete {
        return Ok(Command::Set {
            file,
            user,
            options,
        });
    }
    if options != PasswdOptions::default() {
        return Err(PasswdError::Usage(
            "--delete takes no hashing options".into(),
        ));
    }
    Ok(Command::Delete { file, user })
}

/// The file's text ("" when it does not exist yet), checked to parse.
fn read_existing(file: &Path) -> Result<String, PasswdError> {
    let text = match fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(error) => {
            return Err(PasswdError::Io {
                file: file.to_path_buf(),
                error,
            })
        }
    };
    PasswordStore::parse(&text, file).map_err(PasswdError::File)?;
    Ok(text)
}

/// `text` with `user`'s line replaced by `new` (or removed when `None`, or appended when
/// absent); other lines byte for byte. Also says whether the user was there.
fn replace_user_line(text: &str, user: &str, new: Option<&str>) -> (String, bool) {
    let mut out = String::with_capacity(text.len() + new.map_or(0, |l| l.len() + 1));
    let mut found = false;
    for raw in text.split_inclusive('\n') {
        let is_user = matches!(parse_line(raw), Ok(Some((u, _))) if u == user);
        if !is_user {
            out.push_str(raw);
            continue;
        }
        found = true;
        if let Some(line) = new {
            out.push_str(line);
            out.push('\n');
        }
    }
    if let (false, Some(line)) = (found, new) {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    (out, found)
}

/// Writes `text` to a temporary file beside `file` (mode 0600, and the old file's owner and group
/// when it existed and we may: a broker running as its own user keeps reading it), syncs it and
/// renames it over `file`, so readers see the old file or the new one, never a mix.
fn write_atomically(file: &Path, text: &str) -> io::Result<()> {
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = file
        .file_name()
        .ok_or_else(|| io::Error::other("not a file name"))?;
    let tmp = dir.join(format!(
        ".{}.coremq-tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    // Left over from a crashed run that had our pid: ours to replace.
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        // Exactly 0600 whatever the umask.
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        if let Ok(old) = fs::metadata(file) {
            use std::os::unix::fs::MetadataExt;
            // Only root may give a file away; others keep their own.
            let _ = std::os::unix::fs::fchown(&f, Some(old.uid()), Some(old.gid()));
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, file)?;
        // Make the rename itself durable.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Prompts twice with echo off on a terminal; otherwise reads one line.
fn read_password_stdin() -> Result<String, PasswdError> {
    let stdin = io::stdin();
    let mut input = stdin.lock();
    // SAFETY: isatty only inspects the descriptor.
    if unsafe { libc::isatty(libc::STDIN_FILENO) } != 1 {
        return read_password_line(&mut input);
    }
    let _echo_off = EchoOff::new(libc::STDIN_FILENO);
    eprint!("Password: ");
    let first = read_password_line(&mut input)?;
    eprint!("Reenter password: ");
    let second = read_password_line(&mut input)?;
    if first != second {
        return Err(PasswdError::Mismatch);
    }
    Ok(first)
}

/// One line without its line ending.
fn read_password_line(input: &mut impl BufRead) -> Result<String, PasswdError> {
    let mut line = String::new();
    match input.read_line(&mut line) {
        Ok(0) => Err(PasswdError::NoPassword),
        Ok(_) => {
            if line.ends_with('\n') {
                line.pop();
                if line.ends_with('\r') {
                    line.pop();
                }
            }
            Ok(line)
        }
        Err(error) => Err(PasswdError::Io {
            file: PathBuf::from("<stdin>"),
            error,
        }),
    }
}

/// Terminal echo switched off (the typed newline still shows) until dropped.
struct EchoOff {
    fd: libc::c_int,
    saved: libc::termios,
}

impl EchoOff {
    fn new(fd: libc::c_int) -> Option<Self> {
        // SAFETY: termios is plain data; tcgetattr fills it for a terminal descriptor and we
        // only use it when that succeeded.
        unsafe {
            let mut t: libc::termios = mem::zeroed();
            if libc::tcgetattr(fd, &mut t) != 0 {
                return None;
            }
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            t.c_lflag |= libc::ECHONL;
            if libc::tcsetattr(fd, libc::TCSANOW, &t) != 0 {
                return None;
            }
            Some(EchoOff { fd, saved })
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `new` on the same descriptor.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Cheap hashes: debug-build PBKDF2 is slow and the cost is not under test here.
    fn fast() -> PasswdOptions {
        PasswdOptions {
            iterations: 1000,
            scram_iterations: None,
        }
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "coremq-passwd-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn load(file: &Path) -> PasswordStore {
        PasswordStore::load(file).unwrap()
    }

    #[test]
    fn creates_the_file_with_mode_0600_and_a_mosquitto_hash() {
        let dir = TempDir::new();
        let file = dir.0.join("pw");
        let change = passwd_command(&file, "alice", PasswordSource::Value("s3cret"), &fast());
        assert_eq!(change.unwrap(), Change::Added);
        let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("alice:$7$1000$") && text.ends_with("==\n"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1);
        let store = load(&file);
        assert!(store.verify("alice", b"s3cret"));
        assert!(!store.verify("alice", b"s3cret2"));
        // No temporary file left behind.
        assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 1);
    }

    #[test]
    fn updates_in_place_keeping_other_lines_and_comments() {
        let dir = TempDir::new();
        let file = dir.0.join("pw");
        let bob = PasswordHash::pbkdf2_with_salt(b"b", b"saltsaltsalt", 2);
        let old = PasswordHash::pbkdf2_with_salt(b"old", b"saltsaltsalt", 2);
        fs::write(
            &file,
            format!("# team\nbob:{bob}\n\nalice:{old}\n# end, no newline:\ncarol:{bob}"),
        )
        .unwrap();
        let change = passwd_command(&file, "alice", PasswordSource::Value("new"), &fast());
        assert_eq!(change.unwrap(), Change::Updated);
        let text = fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[..3], ["# team", &format!("bob:{bob}"), ""]);
        assert!(lines[3].starts_with("alice:$7$1000$"));
        assert_eq!(lines[4..], ["# end, no newline:", &format!("carol:{bob}")]);
        let store = load(&file);
        assert!(store.verify("alice", b"new") && !store.verify("alice", b"old"));
        assert!(store.verify("bob", b"b"));

        // A new user is appended, after a newline the old file lacked.
        let change = passwd_command(&file, "dave", PasswordSource::Value("d"), &fast());
        assert_eq!(change.unwrap(), Change::Added);
        let text = fs::read_to_string(&file).unwrap();
        assert!(text.contains(&format!("carol:{bob}\ndave:$7$")));
        assert_eq!(load(&file).len(), 4);
    }

    #[test]
    fn scram_option_stores_a_verifier_that_matches_the_password() {
        let dir = TempDir::new();
        let file = dir.0.join("pw");
        let options = PasswdOptions {
            iterations: 1000,
            scram_iterations: Some(4096),
        };
        passwd_command(&file, "erin", PasswordSource::Value("pencil"), &options).unwrap();
        let store = load(&file);
        let v = store.scram_verifier("erin").unwrap();
        assert_eq!(v.iterations, 4096);
        assert_eq!(
            ScramVerifier::derive(b"pencil", &v.salt, 4096).as_ref(),
            Some(v)
        );
        // Setting the password again without --scram drops the now stale verifier.
        passwd_command(&file, "erin", PasswordSource::Value("other"), &fast()).unwrap();
        assert_eq!(load(&file).scram_verifier("erin"), None);
    }

    #[test]
    fn delete_removes_only_that_user() {
        let dir = TempDir::new();
        let file = dir.0.join("pw");
        for u in ["a", "b", "c"] {
            passwd_command(&file, u, PasswordSource::Value("pw"), &fast()).unwrap();
        }
        assert_eq!(passwd_delete(&file, "b").unwrap(), Change::Deleted);
        let store = load(&file);
        assert_eq!(store.len(), 2);
        assert!(store.get("b").is_none() && store.get("a").is_some() && store.get("c").is_some());
        assert!(matches!(
            passwd_delete(&file, "b"),
            Err(PasswdError::UnknownUser(u)) if u == "b"
        ));
        assert!(matches!(
            passwd_delete(&dir.0.join("missing"), "a"),
            Err(PasswdError::UnknownUser(_))
        ));
    }

    #[test]
    fn a_broken_file_is_left_untouched() {
        let dir = TempDir::new();
        let file = dir.0.join("pw");
        fs::write(&file, "# ok\nalice:$9$x\n").unwrap();
        let err = passwd_command(&file, "bob", PasswordSource::Value("pw"), &fast()).unwrap_err();
        let shown = err.to_string();
        assert!(shown.contains("pw:2: unknown hash type $9$"), "{shown}");
        assert!(shown.ends_with("(file left unchanged)"), "{shown}");
        assert_eq!(fs::read_to_string(&file).unwrap(), "# ok\nalice:$9$x\n");
        assert!(matches!(
            passwd_delete(&file, "alice"),
            Err(PasswdError::File(_))
        ));
    }

    #[test]
    fn refuses_bad_usernames_and_empty_passwords() {
        let dir = TempDir::new();
        let file = dir.0.join("pw");
        for user in ["", "a:b", "#a", " a"] {
            assert!(matches!(
                passwd_command(&file, user, PasswordSource::Value("pw"), &fast()),
                Err(PasswdError::InvalidUsername(_))
            ));
        }
        assert!(matches!(
            passwd_command(&file, "a", PasswordSource::Value(""), &fast()),
            Err(PasswdError::EmptyPassword)
        ));
        assert!(!file.exists());
    }

    #[test]
    fn password_lines_lose_only_their_line_ending() {
        let mut input = io::Cursor::new(&b"p w \r\nsecond\n"[..]);
        assert_eq!(read_password_line(&mut input).unwrap(), "p w ");
        assert_eq!(read_password_line(&mut input).unwrap(), "second");
        assert!(matches!(
            read_password_line(&mut input),
            Err(PasswdError::NoPassword)
        ));
        let mut last = io::Cursor::new(&b"no newline"[..]);
        assert_eq!(read_password_line(&mut last).unwrap(), "no newline");
    }

    #[test]
    fn command_line() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(matches!(
            parse_args(&args(&["pw", "alice"])),
            Ok(Command::Set { options, .. }) if options == PasswdOptions::default()
        ));
        assert!(matches!(
            parse_args(&args(&["--scram", "pw", "alice"])),
            Ok(Command::Set { options, .. }) if options.scram_iterations == Some(4096)
        ));
        assert!(matches!(
            parse_args(&args(&["pw", "--scram=10000", "alice"])),
            Ok(Command::Set { options, .. }) if options.scram_iterations == Some(10000)
        ));
        assert!(matches!(
            parse_args(&args(&["--delete", "pw", "alice"])),
            Ok(Command::Delete { user, .. }) if user == "alice"
        ));
        assert!(matches!(
            parse_args(&args(&["--iterations=5000", "pw", "alice"])),
            Ok(Command::Set { options, .. }) if options.iterations == 5000
        ));
        assert!(matches!(parse_args(&args(&["-h"])), Ok(Command::Help)));
        for bad in [
            &["pw"][..],
            &["pw", "a", "b"],
            &["--scram=100", "pw", "a"],
            &["--frobnicate", "pw", "a"],
            &["--delete", "--scram", "pw", "a"],
            &["--delete", "--iterations=5000", "pw", "a"],
            &["--iterations=999", "pw", "a"],
            &["--iterations", "pw", "a"],
        ] {
            assert!(
                matches!(parse_args(&args(bad)), Err(PasswdError::Usage(_))),
                "{bad:?}"
            );
        }
        assert_eq!(passwd_main(&args(&["pw"])), 2);
    }
}
