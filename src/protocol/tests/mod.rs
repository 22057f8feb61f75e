//! Codec tests: golden frames, round trips, decode-error paths.
