//! coremq-loadtest: drives any MQTT broker with pinned worker threads and reports latency
//! percentiles. Placeholder until the load tester issue builds it.

fn main() {
    eprintln!("coremq-loadtest: not built yet; see the README's roadmap.");
    std::process::exit(1);
}
