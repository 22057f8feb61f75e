//! A stateful target: arbitrary bytes as a sequence of session operations (deliveries on any
//! link, acknowledgements, drains, resumes, time passing, window changes, shared hand-backs)
//! driven through `coremq::session::Session`, checked against a model after every step: windows
//! and queues within their limits, and no QoS 1/2 message lost without being counted. Driving
//! decoded packets through a whole in-process broker is too slow for libFuzzer; the session is
//! where the per-client state lives. The invariants live in `coremq::session::fuzz_check`, shared
//! with the corpus replay test (`tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let start = std::time::Instant::now();
    if let Err(broken) = coremq::session::fuzz_check::check(data, start) {
        panic!("{broken}");
    }
});
