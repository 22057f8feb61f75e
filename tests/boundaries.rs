//! Module boundaries from STYLE.md, checked by reading the sources:
//! - `src/protocol/` depends on `std` and `bytes` only: no other crate, no other module of coremq,
//!   no I/O, no async, no threads or locks;
//! - `src/shard/`, `src/session/`, `src/topic/` hold no `Arc`, `Mutex`, `RwLock` or atomics;
//! - imports point down only: no cycle between the crate's top-level modules, none between the
//!   codec's files, and the floors the architecture names: `mesh` imports neither `shard` nor
//!   `net`, `shard` imports no `net`, the pure layers (`protocol`, `topic`, `session`, `message`)
//!   import nothing that runs.
//!
//! Each rule is a list of forbidden patterns or a graph built from `crate::` and `super::` paths;
//! self-tests prove the scanners catch what they look for.

use std::collections::{BTreeMap, BTreeSet};
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
    for dir in ["shard", "session", "topic", "filter"] {
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

/// The crate module paths a line of code names: every `crate::a::b…` (also inside
/// `crate::{a::x, b}`), as segment lists.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        let after = &rest[i + "crate::".len()..];
        rest = after;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = after.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                out.push(segments(item.trim()));
            }
        } else {
            out.push(segments(after));
        }
    }
    out.retain(|p| !p.is_empty());
    out
}

/// `a::b::C` (up to the first character that cannot be in a path) as segments.
fn segments(path: &str) -> Vec<String> {
    let end = path
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(path.len());
    path[..end]
        .split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The code of a file without comments and without its `#[cfg(test)]` tail (tests may reach
/// anywhere).
fn shipped_code(text: &str) -> String {
    let cut = text.find("#[cfg(test)]").unwrap_or(text.len());
    text[..cut]
        .lines()
        .map(code_of)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level module a source file belongs to (`src/shard/client.rs` → `shard`).
fn top_module(file: &Path) -> String {
    let rel = file.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Top-level module → the top-level modules its shipped code names through `crate::`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in rust_files(&src()) {
        let module = top_module(&f);
        if module == "lib" || module == "main" {
            continue;
        }
        let text = fs::read_to_string(&f).unwrap();
        let deps = graph.entry(module.clone()).or_default();
        for path in crate_paths(&shipped_code(&text)) {
            if path[0] != module {
                deps.insert(path[0].clone());
            }
        }
    }
    graph
}

/// One cycle of `graph`, if it has any.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(c) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn top_level_modules_import_each_other_in_one_direction_only() {
    let graph = module_graph();
    assert!(
        graph.contains_key("shard")
            && graph.contains_key("mesh")
            && graph.contains_key("store")
            && graph.contains_key("filter")
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle between modules: {}", cycle.join(" -> "));
    }
    let forbidden: &[(&str, &[&str])] = &[
        ("mesh", &["shard", "net", "runtime"]),
        ("shard", &["net", "runtime"]),
        ("net", &["runtime"]),
        ("session", &["shard", "net", "mesh", "runtime", "auth"]),
        ("topic", &["shard", "net", "mesh", "runtime", "session"]),
        ("message", &["shard", "net", "mesh", "runtime", "session"]),
        // Pure, like the codec: the language, its evaluator and the JSON scan; the shard holds
        // the compiled filters and calls in.
        (
            "filter",
            &[
                "shard", "net", "mesh", "runtime", "session", "store", "auth", "metrics", "config",
                "message", "topic",
            ],
        ),
        // Records and files only: the shard decides what to keep and drives the writes.
        (
            "store",
            &[
                "shard", "net", "mesh", "runtime", "auth", "metrics", "config",
            ],
        ),
        // Counters and renderers only: the shards feed them, they reach into nothing.
        (
            "metrics",
            &["shard", "net", "mesh", "runtime", "session", "auth"],
        ),
        (
            "protocol",
            &[
                "shard", "net", "mesh", "runtime", "session", "topic", "message",
            ],
        ),
    ];
    let mut violations = Vec::new();
    for (module, never) in forbidden {
        for dep in graph.get(*module).into_iter().flatten() {
            if never.contains(&dep.as_str()) {
                violations.push(format!("{module} imports {dep}"));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn codec_files_import_each_other_in_one_direction_only() {
    // File → the sibling files it names through `super::` (mod.rs, which declares and re-exports
    // them all, and the tests are left out).
    let dir = src().join("protocol");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()) {
        let name = f.file_stem().unwrap().to_string_lossy().to_string();
        if f.is_dir() || name == "mod" {
            continue;
        }
        let code = shipped_code(&fs::read_to_string(&f).unwrap());
        let deps = graph.entry(name.clone()).or_default();
        let mut rest = code.as_str();
        while let Some(i) = rest.find("super::") {
            rest = &rest[i + "super::".len()..];
            let seg = segments(rest);
            if let Some(first) = seg.first() {
                if dir.join(format!("{first}.rs")).exists() && *first != name {
                    deps.insert(first.clone());
                }
            }
        }
    }
    assert!(graph.len() >= 8, "the codec's files: {graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle in src/protocol/: {}", cycle.join(" -> "));
    }
}

#[test]
fn graph_scanners_catch_paths_and_cycles() {
    assert_eq!(
        crate_paths("use crate::shard::{Shard, Stats}; let x = crate::net::adopt(h);"),
        vec![
            vec!["shard".to_string()],
            vec!["net".into(), "adopt".into()]
        ]
    );
    assert_eq!(
        crate_paths("use crate::{mesh::Mesh, gate};"),
        vec![vec!["mesh".to_string(), "Mesh".into()], vec!["gate".into()]]
    );
    assert!(crate_paths("use my_crate::x;").is_empty());
    let shipped = shipped_code("use crate::a;\n// crate::b\n#[cfg(test)]\nuse crate::c;");
    assert_eq!(crate_paths(&shipped), vec![vec!["a".to_string()]]);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&g), None);
    g.entry("c".into()).or_default().insert("a".into());
    assert!(
        find_cycle(&g).is_some_and(|c| c.len() == 4),
        "{:?}",
        find_cycle(&g)
    );
}
