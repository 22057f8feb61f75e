//! The coordinator: builds the plan, starts the pinned workers, steps every worker through the
//! run's phases (set-up, warm-up + measure, drain, finish), prints a progress line every second,
//! and merges what the workers report. It never touches a socket; workers never share state
//! except the read-only [`Config`].
//!
//! Every phase has a deadline inside `--max-runtime`, so the run always ends by itself: set-up
//! 60 s, publishing until the window ends (plus `--drain` for acknowledgements), the drain
//! `--drain` (`retained`: `--duration` for the fetch), finishing 5 s.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use coremq::protocol::{MqttString, QoS};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use hdrhistogram::Histogram;
use mio::{Poll, Token, Waker};

use crate::args::{Args, Scenario};
use crate::control::{Cmd, Config, Event, Setup, WorkerReport};
use crate::latency::{merge, new_histogram, Percentiles};
use crate::payload::template;
use crate::role::{Counters, Window};
use crate::scenario::Plan;
use crate::tally::{account, Correctness, PublisherOutcome, SeqTracker};
use crate::worker;

const SETUP_LIMIT: Duration = Duration::from_secs(60);
const FINISH_LIMIT: Duration = Duration::from_secs(5);
/// `retained`: pause between the last acknowledged retained publish and the subscriptions, so a
/// broker that stores retained messages asynchronously has them in place.
const RETAINED_SETTLE: Duration = Duration::from_millis(200);
/// QoS 0 drain: stop waiting after this long without a new delivery.
const QOS0_QUIET: Duration = Duration::from_secs(1);

/// Everything measured, merged over workers.
pub struct Outcome {
    pub run: u32,
    pub threads: usize,
    /// Length of the measured window actually used for rates (s).
    pub window_s: f64,
    pub counters: Counters,
    pub latency: Histogram<u64>,
    pub connect: Histogram<u64>,
    pub correctness: Correctness,
    /// `retained`: per subscriber, SUBSCRIBE to complete set (µs).
    pub time_to_all_us: Vec<u64>,
    pub rss_before_kb: Option<u64>,
    pub rss_after_kb: Option<u64>,
    /// Clients of the plan that connected (and subscribed) / failed to.
    pub set_up: u64,
    pub set_up_failed: u64,
    pub errors: Vec<String>,
    /// Why the run stopped early, if it did.
    pub aborted: Option<String>,
    /// Whether the measured phase started (set-up succeeded).
    pub measured: bool,
    pub elapsed_s: f64,
}

/// A run tag that differs between invocations (topics and payload stamps carry it).
fn run_tag() -> u32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos ^ (u64::from(std::process::id()) << 32);
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (x ^ (x >> 31)) as u32
}

/// The broker's resident set size in KiB, from `/proc/PID/status`.
pub fn rss_kb(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("{path}: no VmRSS line"))
}

/// Raises the open-files soft limit to the hard limit; errors if `needed` still does not fit.
fn raise_fd_limit(needed: u64) -> Result<(), String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Ok(());
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    let wanted = needed + 64;
    if lim.rlim_cur < wanted {
        return Err(format!(
            "{needed} connections need {wanted} file descriptors; the limit is {} (ulimit -n)",
            lim.rlim_cur
        ));
    }
    Ok(())
}

/// The coordinator's view of the workers.
struct Collect {
    started: Instant,
    epoch: Instant,
    progress: Vec<Counters>,
    latency: Histogram<u64>,
    connect: Histogram<u64>,
    ready: Vec<Option<(u64, u64)>>,
    publishing_done: Vec<bool>,
    outcomes: HashMap<u32, PublisherOutcome>,
    last_send_ns: u64,
    /// When the last worker reported `PublishingDone` (ns since the epoch).
    all_published_ns: Option<u64>,
    /// Some worker had publishers or connect loops, and all of them stopped at their cap.
    capped: Option<bool>,
    reports: Vec<Option<WorkerReport>>,
    /// For the progress line: totals and time at the last print.
    last_print: (Instant, Counters),
    phase: &'static str,
    show_connect: bool,
    /// Last time the distinct-delivery count grew.
    last_growth: (Instant, u64),
}

impl Collect {
    fn new(threads: usize, started: Instant, show_connect: bool) -> Collect {
        Collect {
            started,
            epoch: started,
            progress: vec![Counters::default(); threads],
            latency: new_histogram(),
            connect: new_histogram(),
            ready: vec![None; threads],
            publishing_done: vec![false; threads],
            outcomes: HashMap::new(),
            last_send_ns: 0,
            all_published_ns: None,
            capped: None,
            reports: (0..threads).map(|_| None).collect(),
            last_print: (started, Counters::default()),
            phase: "set-up",
            show_connect,
            last_growth: (started, 0),
        }
    }

    fn total(&self) -> Counters {
        let mut t = Counters::default();
        for c in &self.progress {
            t.sent += c.sent;
            t.sent_in_window += c.sent_in_window;
            t.received += c.received;
            t.received_in_window += c.received_in_window;
            t.distinct += c.distinct;
            t.foreign += c.foreign;
            t.confirmed += c.confirmed;
            t.behind += c.behind;
            t.rejected += c.rejected;
            t.conns_up += c.conns_up;
            t.connects_ok += c.connects_ok;
            t.connects_failed += c.connects_failed;
            t.connects_in_window += c.connects_in_window;
            t.disconnects += c.disconnects;
        }
        t
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Ready {
                worker,
                connected,
                failed,
            } => self.ready[worker] = Some((connected, failed)),
            Event::Progress {
                worker,
                counters,
                latency,
                connect,
            } => {
                self.progress[worker] = counters;
                if let Some(h) = latency {
                    merge(&mut self.latency, &h);
                }
                if let Some(h) = connect {
                    merge(&mut self.connect, &h);
                }
            }
            Event::PublishingDone {
                worker,
                publishers,
                last_send_ns,
                capped,
            } => {
                if let Some(capped) = capped {
                    self.capped = Some(self.capped.unwrap_or(true) && capped);
                }
                self.publishing_done[worker] = true;
                self.outcomes.extend(publishers);
                self.last_send_ns = self.last_send_ns.max(last_send_ns);
                if self.publishing_done.iter().all(|d| *d) {
                    self.all_published_ns = Some(self.now_ns());
                }
            }
            Event::Done { worker, report } => {
                self.progress[worker] = report.counters;
                merge(&mut self.latency, &report.latency);
                merge(&mut self.connect, &report.connect);
                self.reports[worker] = Some(*report);
            }
        }
        let distinct = self.total().distinct;
        if distinct > self.last_growth.1 {
            self.last_growth = (Instant::now(), distinct);
        }
    }

    /// The live line on stderr, at most once a second.
    fn maybe_print(&mut self) {
        let now = Instant::now();
        let dt = now.duration_since(self.last_print.0).as_secs_f64();
        if dt < 1.0 {
            return;
        }
        let t = self.total();
        let prev = self.last_print.1;
        let rate = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / dt;
        let p99 = |h: &Histogram<u64>| fmt_us(Percentiles::of(h).p99);
        let line = if self.show_connect {
            format!(
                "connects {:>9.0}/s  failed {:>6}  p99 {:>9}  conns {}",
                rate(t.connects_ok, prev.connects_ok),
                t.connects_failed,
                p99(&self.connect),
                t.conns_up
            )
        } else {
            format!(
                "sent {:>9.0}/s  recv {:>9.0}/s  p99 {:>9}  conns {}",
                rate(t.sent, prev.sent),
                rate(t.received, prev.received),
                p99(&self.latency),
                t.conns_up
            )
        };
        eprintln!(
            "[{:>6.1}s] {:<9} {line}",
            self.started.elapsed().as_secs_f64(),
            self.phase
        );
        self.last_print = (now, t);
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

/// Human-friendly microseconds.
pub fn fmt_us(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.2}s", us as f64 / 1e6)
    } else if us >= 1_000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{us}µs")
    }
}

/// Receives worker events until `done` holds or `deadline` passes; false on the deadline.
fn pump(
    rx: &Receiver<Event>,
    c: &mut Collect,
    deadline: Instant,
    done: impl Fn(&Collect) -> bool,
) -> bool {
    loop {
        if done(c) {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        match rx.recv_timeout((deadline - now).min(Duration::from_millis(100))) {
            Ok(ev) => c.on_event(ev),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return done(c),
        }
        c.maybe_print();
    }
}

/// Runs the whole load test.
pub fn run(args: &Args) -> Result<Outcome, String> {
    let run = run_tag();
    let plan = Plan::build(args, run)?;
    raise_fd_limit(plan.sockets())?;
    let rss_before_kb = args.broker_pid.map(rss_kb).transpose()?;
    let started = Instant::now();
    let hard = started + args.max_runtime;
    let threads = args.threads.min(plan.sockets().max(1) as usize).max(1);
    let cores = if args.pin {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    };
    let retained_total = (args.scenario == Scenario::Retained).then_some(u64::from(args.topics));
    let layers = crate::transport::layers(args)?;
    let cfg = Arc::new(Config {
        addr: args.addr,
        sub_addr: args.sub_addr,
        layers,
        version: args.version,
        qos: args.qos,
        persistent: args.persistent,
        username: args
            .username
            .as_deref()
            .map(MqttString::copy_from)
            .transpose()
            .map_err(|e| format!("--username: {e:?}"))?,
        password: args.password.as_ref().map(|p| Bytes::from(p.clone())),
        payload: template(args.payload),
        run,
        epoch: started,
        inflight: args.inflight,
        rate: args.rate,
        publishers: plan.publishers,
        drain_ns: args.drain.as_nanos() as u64,
        hard_deadline_ns: args.max_runtime.as_nanos() as u64,
        streams: args.scenario.streams(),
        retained_total,
    });
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let mut workers = Vec::new();
    for w in 0..threads {
        let poll = Poll::new().map_err(|e| format!("epoll: {e}"))?;
        let waker = Arc::new(Waker::new(poll.registry(), Token(0)).map_err(|e| e.to_string())?);
        let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
        let setup = Setup {
            index: w,
            core: (!cores.is_empty()).then(|| cores[w % cores.len()]),
            poll,
            clients: plan.clients_of(w, threads),
            storm: plan.storm_of(w, threads),
            config: Arc::clone(&cfg),
            cmds: cmd_rx,
            events: ev_tx.clone(),
        };
        let handle = thread::Builder::new()
            .name(format!("lt-worker-{w}"))
            .spawn(move || worker::run(setup))
            .map_err(|e| format!("spawn worker: {e}"))?;
        workers.push((cmd_tx, waker, handle));
    }
    drop(ev_tx);
    let send = |cmd: Cmd| {
        for (tx, waker, _) in &workers {
            let _ = tx.send(cmd);
            let _ = waker.wake();
        }
    };
    let mut c = Collect::new(
        threads,
        started,
        matches!(args.scenario, Scenario::Connect | Scenario::Idle),
    );
    let mut aborted = None;
    let mut window = None;
    let mut rss_after_kb = None;

    // Set-up: every worker connected (and subscribed) its clients, or gave up on them.
    let all_ready = pump(&ev_rx, &mut c, (started + SETUP_LIMIT).min(hard), |c| {
        c.ready.iter().all(Option::is_some)
    });
    let (set_up, set_up_failed) = c
        .ready
        .iter()
        .flatten()
        .fold((0, 0), |(a, b), (ok, f)| (a + ok, b + f));
    if !all_ready {
        aborted = Some("set-up did not finish within 60 s".to_string());
    } else if set_up_failed > 0 && args.scenario != Scenario::Idle {
        aborted = Some(format!(
            "{set_up_failed} of {} clients failed to connect or subscribe",
            set_up + set_up_failed
        ));
    }

    if aborted.is_none() {
        let start_ns = c.now_ns() + 20_000_000;
        let (measure_start_ns, measure_end_ns) = match args.scenario {
            Scenario::Retained => (start_ns, u64::MAX),
            _ => {
                let ms = start_ns + args.warmup.as_nanos() as u64;
                (ms, ms + args.duration.as_nanos() as u64)
            }
        };
        let w = Window {
            start_ns,
            measure_start_ns,
            measure_end_ns,
        };
        window = Some(w);
        send(Cmd::Start(w));
        c.phase = if args.warmup.is_zero() {
            "measure"
        } else {
            "warm-up"
        };
        let at = |ns: u64| started + Duration::from_nanos(ns);
        if args.scenario == Scenario::Idle {
            pump(&ev_rx, &mut c, at(measure_start_ns).min(hard), |_| false);
            c.phase = "hold";
            pump(&ev_rx, &mut c, at(measure_end_ns).min(hard), |_| false);
            if let Some(pid) = args.broker_pid {
                rss_after_kb = rss_kb(pid).ok();
            }
        } else {
            if measure_start_ns > start_ns {
                pump(&ev_rx, &mut c, at(measure_start_ns).min(hard), |_| false);
            }
            c.phase = if args.scenario == Scenario::Retained {
                "publish"
            } else {
                "measure"
            };
            let published = pump(&ev_rx, &mut c, hard, |c| {
                c.publishing_done.iter().all(|d| *d)
            });
            if !published {
                aborted = Some("publishing did not finish before --max-runtime".to_string());
            }
            if published && args.scenario != Scenario::Connect {
                aborted = drain(args, &plan, &ev_rx, &mut c, hard, &send);
            }
        }
        if let (Some(pid), None) = (args.broker_pid, rss_after_kb) {
            rss_after_kb = rss_kb(pid).ok();
        }
    }

    c.phase = "finish";
    send(Cmd::Finish);
    let finished = pump(&ev_rx, &mut c, Instant::now() + FINISH_LIMIT, |c| {
        c.reports.iter().all(Option::is_some)
    });
    for (tx, _, handle) in workers {
        drop(tx);
        if finished {
            let _ = handle.join();
        }
    }
    if !finished && aborted.is_none() {
        aborted = Some("workers did not report within 5 s of finishing".to_string());
    }
    Ok(merge_outcome(
        args,
        &plan,
        c,
        window,
        aborted,
        rss_before_kb,
        rss_after_kb,
        set_up,
        set_up_failed,
    ))
}

/// After publishing: waits for in-flight deliveries (`retained`: subscribes, then waits for the
/// whole set). Returns an abort reason if the hard limit cut it short.
fn drain(
    args: &Args,
    plan: &Plan,
    rx: &Receiver<Event>,
    c: &mut Collect,
    hard: Instant,
    send: &dyn Fn(Cmd),
) -> Option<String> {
    let (expected, limit) = if args.scenario == Scenario::Retained {
        c.phase = "settle";
        pump(rx, c, (Instant::now() + RETAINED_SETTLE).min(hard), |_| {
            false
        });
        send(Cmd::SubscribeNow);
        c.phase = "fetch";
        (
            u64::from(args.topics) * u64::from(plan.subscribers),
            args.duration,
        )
    } else {
        c.phase = "drain";
        let sent: Vec<u64> = (0..plan.publishers)
            .map(|p| c.outcomes.get(&p).map_or(0, |o| o.sent))
            .collect();
        (plan.expected_deliveries(&sent), args.drain)
    };
    let begun = Instant::now();
    c.last_growth = (begun, c.total().distinct);
    let quiet = (args.qos == QoS::AtMostOnce).then_some(QOS0_QUIET);
    let complete = pump(rx, c, (begun + limit).min(hard), |c| {
        c.total().distinct >= expected || quiet.is_some_and(|q| c.last_growth.0.elapsed() >= q)
    });
    if !complete && Instant::now() >= hard {
        return Some("drain cut short by --max-runtime".to_string());
    }
    None
}

#[allow(clippy::too_many_arguments)]
fn merge_outcome(
    args: &Args,
    plan: &Plan,
    mut c: Collect,
    window: Option<Window>,
    aborted: Option<String>,
    rss_before_kb: Option<u64>,
    rss_after_kb: Option<u64>,
    set_up: u64,
    set_up_failed: u64,
) -> Outcome {
    let mut trackers: HashMap<(u32, u32), SeqTracker> = HashMap::new();
    let mut time_to_all_us = Vec::new();
    let mut errors = Vec::new();
    let mut suppressed = 0;
    for r in c.reports.iter_mut().flatten() {
        trackers.extend(r.trackers.drain(..));
        time_to_all_us.append(&mut r.time_to_all_us);
        errors.append(&mut r.errors);
        suppressed += r.errors_suppressed;
    }
    if suppressed > 0 {
        errors.push(format!("… and {suppressed} more errors"));
    }
    let publishers: Vec<PublisherOutcome> = (0..plan.publishers)
        .map(|p| c.outcomes.get(&p).cloned().unwrap_or_default())
        .collect();
    let correctness = account(
        &publishers,
        &plan.units,
        |p, u| plan.expects(p, u),
        &trackers,
    );
    // Rates run over the window, or up to the last send when every publisher (connect loop)
    // stopped at its --max-messages share first.
    let capped = c.capped == Some(true);
    let window_s = match (window, args.scenario) {
        (None, _) => 0.0,
        (Some(_), Scenario::Retained) => c.latency.max() as f64 / 1e6,
        (Some(w), Scenario::Idle) => {
            w.measure_end_ns
                .min(c.now_ns())
                .saturating_sub(w.measure_start_ns) as f64
                / 1e9
        }
        (Some(w), s) => {
            let end = match (capped, s) {
                (true, Scenario::Connect) => c.all_published_ns.unwrap_or(w.measure_end_ns),
                (true, _) => c.last_send_ns,
                (false, _) => w.measure_end_ns,
            };
            end.clamp(w.measure_start_ns, w.measure_end_ns)
                .saturating_sub(w.measure_start_ns) as f64
                / 1e9
        }
    };
    let counters = c.total();
    Outcome {
        run: plan.run,
        threads: c.progress.len(),
        window_s,
        counters,
        latency: c.latency,
        connect: c.connect,
        correctness,
        time_to_all_us,
        rss_before_kb,
        rss_after_kb,
        set_up,
        set_up_failed,
        errors,
        aborted,
        measured: window.is_some(),
        elapsed_s: c.started.elapsed().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_of_this_process_is_readable() {
        assert!(rss_kb(std::process::id()).unwrap() > 0);
        assert!(rss_kb(u32::MAX).is_err());
    }

    fn hist(values: impl IntoIterator<Item = u64>) -> Option<Box<Histogram<u64>>> {
        let mut h = new_histogram();
        for v in values {
            h.record(v).unwrap();
        }
        Some(Box::new(h))
    }

    #[test]
    fn worker_progress_and_reports_merge() {
        let mut c = Collect::new(2, Instant::now(), false);
        let counters = |sent, received| Counters {
            sent,
            received,
            distinct: received,
            ..Counters::default()
        };
        // Interval histograms add up; counters are cumulative per worker (latest wins).
        c.on_event(Event::Progress {
            worker: 0,
            counters: counters(10, 0),
            latency: hist(1..=50),
            connect: None,
        });
        c.on_event(Event::Progress {
            worker: 1,
            counters: counters(0, 5),
            latency: hist(51..=90),
            connect: hist([700]),
        });
        c.on_event(Event::Progress {
            worker: 0,
            counters: counters(20, 0),
            latency: None,
            connect: None,
        });
        let mut last = new_histogram();
        for v in 91..=100 {
            last.record(v).unwrap();
        }
        c.on_event(Event::Done {
            worker: 1,
            report: Box::new(WorkerReport {
                counters: counters(0, 30),
                trackers: vec![],
                latency: last,
                connect: new_histogram(),
                time_to_all_us: vec![],
                errors: vec![],
                errors_suppressed: 0,
            }),
        });
        let t = c.total();
        assert_eq!((t.sent, t.received, t.distinct), (20, 30, 30));
        assert_eq!(c.latency.len(), 100);
        assert!(c.latency.equivalent(c.latency.value_at_quantile(0.5), 50));
        assert_eq!(c.connect.len(), 1);
    }

    #[test]
    fn publishing_done_collects_outcomes_and_cap() {
        let mut c = Collect::new(2, Instant::now(), false);
        let outcome = |sent| PublisherOutcome {
            sent,
            uncertain: vec![],
        };
        c.on_event(Event::PublishingDone {
            worker: 0,
            publishers: vec![(0, outcome(5)), (2, outcome(7))],
            last_send_ns: 100,
            capped: Some(true),
        });
        assert_eq!(c.all_published_ns, None);
        // A worker with only subscribers does not decide.
        c.on_event(Event::PublishingDone {
            worker: 1,
            publishers: vec![],
            last_send_ns: 0,
            capped: None,
        });
        assert!(c.all_published_ns.is_some());
        assert_eq!(c.capped, Some(true));
        c.on_event(Event::PublishingDone {
            worker: 1,
            publishers: vec![(1, outcome(6))],
            last_send_ns: 90,
            capped: Some(false),
        });
        assert_eq!(c.capped, Some(false));
        assert_eq!(c.last_send_ns, 100);
        assert_eq!(c.outcomes[&1].sent, 6);
    }

    #[test]
    fn run_tags_differ() {
        let a = run_tag();
        thread::sleep(Duration::from_millis(1));
        assert_ne!(a, run_tag());
    }

    #[test]
    fn micros_format_with_units() {
        assert_eq!(fmt_us(950), "950µs");
        assert_eq!(fmt_us(1_500), "1.50ms");
        assert_eq!(fmt_us(2_500_000), "2.50s");
    }
}
