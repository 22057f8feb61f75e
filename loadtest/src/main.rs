//! coremq-loadtest: drives any MQTT 3.1.1 / 5 broker with pinned worker threads, each running
//! many non-blocking connections, and reports throughput, end-to-end latency percentiles and
//! message losses. See `loadtest/README.md` for scenarios and output.
//!
//! Module map (one responsibility each):
//! - `args`: the command line → `Args` (scenario defaults, loopback check);
//! - `scenario`: `Args` → `Plan` (clients, topics, who should receive whom);
//! - `payload`: the stamp in every payload (run, publisher, sequence, send time);
//! - `connection`: one MQTT client connection on a non-blocking socket (coremq's codec);
//! - `role`: publisher send loop (closed/open loop), subscriber bookkeeping;
//! - `worker`: one pinned thread, one poller, many connections; `control`: what workers and
//!   the coordinator tell each other;
//! - `timer`: timerfd for sub-millisecond pacing;
//! - `run`: the coordinator: phases, progress line, merging;
//! - `tally`: losses, duplicates, out-of-order; `latency`: histograms and the open-loop schedule;
//! - `report`: verdict, table, JSON; `svg`: the percentile plot.

mod args;
mod connection;
mod control;
mod latency;
mod payload;
mod report;
mod role;
mod run;
mod scenario;
mod svg;
mod tally;
mod timer;
mod transport;
mod worker;

use std::process::ExitCode;

use args::ArgError;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let cpus = core_affinity::get_core_ids()
        .map(|c| c.len())
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1);
    let args = match args::parse(&argv, cpus) {
        Ok(a) => a,
        Err(ArgError::Help) => {
            print!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("coremq-loadtest: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = match run::run(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("coremq-loadtest: {e}");
            return ExitCode::from(1);
        }
    };
    print!("{}", report::table(&args, &outcome));
    let mut ok = report::failures(&args, &outcome).is_empty();
    if let Some(path) = &args.json {
        if let Err(e) = std::fs::write(path, report::json(&args, &outcome)) {
            eprintln!("coremq-loadtest: {}: {e}", path.display());
            ok = false;
        }
    }
    if let Some(path) = &args.report {
        let (h, what) = if outcome.latency.is_empty() {
            (&outcome.connect, "connect latency")
        } else {
            (&outcome.latency, "end-to-end latency")
        };
        let title = format!("coremq-loadtest {}: {what}", args.scenario.name());
        let svg = svg::percentile_plot(h, &title, &args.command_line);
        if let Err(e) = std::fs::write(path, svg) {
            eprintln!("coremq-loadtest: {}: {e}", path.display());
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
