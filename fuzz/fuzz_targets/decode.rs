//! Arbitrary bytes into `coremq::protocol::decode`, for every protocol version, with a small and
//! a huge maximum packet size; every decoded packet must survive re-encoding. The invariants live
//! in `coremq::protocol::fuzz_check`, shared with the corpus replay test (`tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = coremq::protocol::fuzz_check::check(data) {
        panic!("{broken}");
    }
});
