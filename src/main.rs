//! The `coremq` binary. Reads the configuration, starts the runtime, waits for a signal.
//! No broker logic lives here.

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    eprintln!(
        "coremq {}: the MQTT codec is built; the broker itself is not ready yet \
         (it lands with the thread-per-core broker work). Nothing is listening.",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(1);
}
