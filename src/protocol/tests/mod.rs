//! Codec tests: golden frames, round trips, decode-error paths.

mod errors;
mod golden;
mod roundtrip;
