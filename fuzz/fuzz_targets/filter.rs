//! Arbitrary bytes into the content-filter language: the first line is an expression, the rest
//! a payload. The parser, the evaluator and the one-pass JSON scan must never panic or hang, and
//! the invariants of `coremq::filter::fuzz_check` (shared with the corpus replay test,
//! `tests/fuzz_corpus.rs`) must hold.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = coremq::filter::fuzz_check::check(data) {
        panic!("{broken}");
    }
});
