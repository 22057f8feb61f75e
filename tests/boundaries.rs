//! Module boundaries from STYLE.md, checked by reading the sources:
//! - `src/protocol/` depends on `std` and `bytes` only: no other crate, no other module of coremq,
//!   no I/O, no async, no threads or locks;
//! - `src/shard/`, `src/session/`, `src/topic/` hold no `Arc`, `Mutex`, `RwLock` or atomics.
//!
//! Each rule is a list of forbidden patterns; a self-test proves the scanner catches them.

use std::fs;
use std::path::{Path, PathBuf};

/// The one external crate the codec may use.
const PROTOCOL_ALLOWED_CRATES: &[&str] = &["bytes"];

/// Text that must not appear (outside comments) in `src/protocol/`.
const PROTOCOL_FORBIDDEN: &[&str] = &[
    "async ",
    ".await",
    "std::net",
    "std::fs",
    "std::thread",
    "std::sync",
    "std::io::Read",
    "std::io::Write",
    "std::time",
    "std::env",
    "Mutex",
    "RwLock",
    "Atomic",
    "Arc<",
    "Rc<",
    "RefCell",
];

/// Text that must not appear (outside comments) in the shard-local modules.
const SHARD_LOCAL_FORBIDDEN: &[&str] = &["Arc<", "Arc::", "Mutex", "RwLock", "Atomic", "std::sync"];

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

/// The code of one line, without its `//` comment (doc comments included).
fn code_of(line: &str) -> &str {
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

/// Whether `code` names `krate` as the root of a path (`krate::…`, `::krate::…`, `extern crate`).
fn mentions_path_root(code: &str, krate: &str) -> bool {
    let needle = format!("{krate}::");
    let mut start = 0;
    while let Some(i) = code[start..].find(&needle) {
        let at = start + i;
        let before = code[..at].chars().next_back();
        if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            return true;
        }
        start = at + needle.len();
    }
    code.contains(&format!("extern crate {krate}"))
}

/// Every crate the package may link: its dependencies and dev-dependencies from Cargo.toml,
/// plus well-known runtimes that must never reach the codec even if added later.
fn known_crates() -> Vec<String> {
    let manifest =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let mut crates: Vec<String> = [
        "glommio",
        "tokio",
        "async_std",
        "smol",
        "mio",
        "libc",
        "nix",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut in_deps = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]" || line == "[dev-dependencies]";
        } else if in_deps {
            if let Some((key, _)) = line.split_once('=') {
                crates.push(key.trim().replace('-', "_"));
            }
        }
    }
    crates
}

/// Violations of the protocol rules in one file's text.
fn protocol_violations(name: &str, text: &str, crates: &[String]) -> Vec<String> {
    let mut v = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = code_of(line);
        for bad in PROTOCOL_FORBIDDEN {
            if code.contains(bad) {
                v.push(format!("{name}:{}: `{bad}` in the codec", n + 1));
            }
        }
        for krate in crates {
            if PROTOCOL_ALLOWED_CRATES.contains(&krate.as_str()) {
                continue;
            }
            if mentions_path_root(code, krate) {
                v.push(format!("{name}:{}: codec uses crate `{krate}`", n + 1));
            }
        }
        // `crate::` may only reach into the codec itself.
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            if !after.starts_with("protocol") {
                v.push(format!(
                    "{name}:{}: codec reaches `crate::{}`",
                    n + 1,
                    after
                ));
            }
            rest = after;
        }
    }
    v
}

fn shard_local_violations(name: &str, text: &str) -> Vec<String> {
    let mut v = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = code_of(line);
        for bad in SHARD_LOCAL_FORBIDDEN {
            if code.contains(bad) {
                v.push(format!("{name}:{}: `{bad}` in shard-local code", n + 1));
            }
        }
    }
    v
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn protocol_depends_on_std_and_bytes_only() {
    // `src/protocol/tests/` is `#[cfg(test)]` and may use dev-dependencies (proptest); the rule
    // is about the codec that ships.
    let tests_dir = src().join("protocol").join("tests");
    let files: Vec<PathBuf> = rust_files(&src().join("protocol"))
        .into_iter()
        .filter(|f| !f.starts_with(&tests_dir))
        .collect();
    assert!(files.len() >= 5, "src/protocol/ should hold the codec");
    let crates = known_crates();
    assert!(
        crates.iter().any(|c| c == "mimalloc"),
        "Cargo.toml deps not read"
    );
    let mut violations = Vec::new();
    for f in files {
        let text = fs::read_to_string(&f).unwrap();
        violations.extend(protocol_violations(
            &f.display().to_string(),
            &text,
            &crates,
        ));
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn shard_session_topic_hold_no_locks_or_atomics() {
    let mut violations = Vec::new();
    for dir in ["shard", "session", "topic"] {
        for f in rust_files(&src().join(dir)) {
            let text = fs::read_to_string(&f).unwrap();
            violations.extend(shard_local_violations(&f.display().to_string(), &text));
        }
        let single = src().join(format!("{dir}.rs"));
        if let Ok(text) = fs::read_to_string(&single) {
            violations.extend(shard_local_violations(&single.display().to_string(), &text));
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn scanner_catches_each_kind_of_violation() {
    let crates = known_crates();
    let cases = [
        "use glommio::net::TcpStream;",
        "use tokio::io;",
        "use crate::shard::Shard;",
        "fn f() { crate::config::Config::load(); }",
        "use std::sync::Arc;",
        "async fn f() {}",
        "let m = std::sync::Mutex::new(0);",
        "pub use mimalloc::MiMalloc;",
        "let x = ::glommio::executor();",
        "use {crate::config, bytes::Bytes};",
    ];
    for case in cases {
        assert!(
            !protocol_violations("case", case, &crates).is_empty(),
            "not caught: {case}"
        );
    }
    let fine = "use bytes::Bytes;\nuse super::wire::Reader;\nuse crate::protocol::QoS;\n// glommio in a comment is fine\nuse std::fmt;\nlet s = my_glommio::x();";
    assert_eq!(
        protocol_violations("fine", fine, &crates),
        Vec::<String>::new()
    );
    for case in [
        "let a: Arc<u8>;",
        "use std::sync::atomic::AtomicU64;",
        "Mutex::new(1)",
    ] {
        assert!(
            !shard_local_violations("case", case).is_empty(),
            "not caught: {case}"
        );
    }
    assert!(shard_local_violations("fine", "let r: Rc<RefCell<u8>>;").is_empty());
}
