//! Arbitrary strings (the input split at `\n`) into the topic name and filter validators and the
//! subscription trie: the validators must follow the spec's rules and the trie must agree with
//! `coremq::topic::matches`. The invariants live in `coremq::topic::fuzz_check`, shared with the
//! corpus replay test (`tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = coremq::topic::fuzz_check::check(data) {
        panic!("{broken}");
    }
});
