//! Arbitrary client bytes into coremq's WebSocket layer: the upgrade request parser and the
//! in-place unframing, fed in pieces of a size the input picks. Must never panic, and must agree
//! with a whole-buffer reference parser (`coremq::net::ws::fuzz_check`, shared with the corpus
//! replay test, `tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = coremq::net::ws::fuzz_check::check(data) {
        panic!("{broken}");
    }
});
