//! One worker thread: pinned to a CPU, one epoll poller (mio) driving many non-blocking
//! connections, never a thread per connection. It connects its share of the plan's clients,
//! runs their roles, and talks to the coordinator only through channels: [`Cmd`]s in (with a
//! `mio::Waker` to interrupt the poll), [`Event`]s out.
//!
//! Life: connect everything (at most `HANDSHAKES` at a time) → `Ready` → wait for `Start` →
//! publish / subscribe / connect-loop until the window ends → `PublishingDone` once every
//! publisher is acknowledged (or the drain ran out) → keep receiving until `Finish` → DISCONNECT
//! everyone → `Done` with the final counts. Every step is bounded by the run's hard deadline.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use coremq::protocol::MqttString;
use crossbeam_channel::{Receiver, Sender};
use hdrhistogram::Histogram;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::connection::{Conn, ConnEvent, Login, State};
use crate::control::{Cmd, Config, Event, Setup, WorkerReport};
use crate::latency::{new_histogram, Pacer};
use crate::role::{Counters, Knobs, Pub, Sinks, Sub, Window};
use crate::scenario::Role;
use crate::timer::{tighten_timer_slack, Timer};

const WAKER: Token = Token(0);
const TIMER: Token = Token(1);
/// Concurrent TCP + MQTT handshakes per worker while setting up.
const HANDSHAKES: usize = 64;
/// A connection not ready (CONNACK, SUBACK) within this is a failure.
const SETUP_TIMEOUT_NS: u64 = 10_000_000_000;
/// How often counters and latency go to the coordinator.
const PROGRESS_EVERY_NS: u64 = 250_000_000;
/// `connect`: how long to wait for the broker to close after our DISCONNECT.
const CLOSE_WAIT_NS: u64 = 1_000_000_000;
/// Keep alive sent in CONNECT (seconds); a PINGREQ goes out after half of it without writes.
pub const KEEP_ALIVE: u16 = 60;
/// Errors kept verbatim per worker; the rest are only counted.
const MAX_ERRORS: usize = 20;

enum Kind {
    Pub(Pub),
    Sub(Sub),
    Hold,
    /// A connect/disconnect loop.
    Storm,
}

struct Client {
    client_id: String,
    kind: Kind,
    conn: Option<Conn>,
    /// Counted in set-up (ready or failed).
    counted: bool,
    /// `connect`: DISCONNECT sent at this time.
    closing_since: Option<u64>,
    /// `connect`: do not reopen before this.
    retry_at: u64,
    /// Storm loop counter for unique client ids.
    generation: u64,
}

struct Worker {
    index: usize,
    cfg: Arc<Config>,
    poll: Poll,
    timer: Option<Timer>,
    cmds: Receiver<Cmd>,
    events: Sender<Event>,
    clients: Vec<Client>,
    pending: VecDeque<usize>,
    /// How many clients set-up covers (all but the connect loops).
    pending_total: u64,
    /// Indices of publisher clients and of connect loops (the loops that run every turn).
    pubs: Vec<usize>,
    storms: Vec<usize>,
    handshakes: usize,
    setup_ok: u64,
    setup_failed: u64,
    ready_sent: bool,
    window: Option<Window>,
    storm_cap: Option<u64>,
    storm_opened: u64,
    counters: Counters,
    latency: Histogram<u64>,
    connect: Histogram<u64>,
    time_to_all: Vec<u64>,
    errors: Vec<String>,
    errors_suppressed: u64,
    scratch: Vec<u8>,
    next_progress_ns: u64,
    publishing_done: bool,
    finishing_since: Option<u64>,
}

/// The thread body.
pub fn run(setup: Setup) {
    if let Some(core) = setup.core {
        core_affinity::set_for_current(core);
    }
    tighten_timer_slack();
    let mut w = Worker::new(setup);
    let mut events = Events::with_capacity(1024);
    loop {
        let now = w.cfg.now_ns();
        if now >= w.cfg.hard_deadline_ns {
            w.error("hard wall-clock limit reached".to_string());
            break;
        }
        let timeout = w.arm(now);
        if let Err(e) = w.poll.poll(&mut events, Some(timeout)) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                w.error(format!("poll: {e}"));
                break;
            }
        }
        for ev in events.iter() {
            match ev.token() {
                WAKER => {}
                TIMER => {
                    if let Some(t) = &w.timer {
                        t.clear();
                    }
                }
                Token(t) => w.on_ready(
                    t - 2,
                    ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                    ev.is_writable(),
                ),
            }
        }
        if w.commands() || w.tick() {
            break;
        }
    }
    let done = Event::Done {
        worker: w.index,
        report: Box::new(w.report()),
    };
    let _ = w.events.send(done);
}

/// The window before `Start`: nothing is measured.
const NEVER: Window = Window {
    start_ns: u64::MAX,
    measure_start_ns: u64::MAX,
    measure_end_ns: u64::MAX,
};

/// The knobs roles read.
fn knobs(cfg: &Config, window: Option<Window>) -> Knobs<'_> {
    Knobs {
        run: cfg.run,
        qos: cfg.qos,
        payload: &cfg.payload,
        inflight: cfg.inflight,
        window: window.unwrap_or(NEVER),
        streams: cfg.streams,
    }
}

impl Worker {
    fn new(s: Setup) -> Worker {
        let cfg = s.config;
        let mut clients = Vec::new();
        for spec in s.clients {
            let kind = match spec.role {
                Role::Publisher {
                    id,
                    topics,
                    retain,
                    cap,
                    marker,
                } => {
                    let mut p = Pub::new(id, topics, retain, cap);
                    if marker {
                        p.payload = Some(crate::payload::with_marker(&cfg.payload, id));
                    }
                    Kind::Pub(p)
                }
                Role::Subscriber {
                    id,
                    filter,
                    deferred,
                } => {
                    let mut sub = Sub::new(id, filter, deferred);
                    sub.expect_all = cfg.retained_total;
                    Kind::Sub(sub)
                }
                Role::Holder => Kind::Hold,
            };
            clients.push(Client::new(spec.client_id, kind));
        }
        let plan_clients = clients.len();
        let pubs = (0..plan_clients)
            .filter(|&i| matches!(clients[i].kind, Kind::Pub(_)))
            .collect();
        for n in 0..s.storm.0 {
            let id = format!("lt{:08x}-c{}-{n}", cfg.run, s.index);
            clients.push(Client::new(id, Kind::Storm));
        }
        let timer = Timer::new().ok();
        if let Some(t) = &timer {
            let fd = t.raw_fd();
            let _ = s
                .poll
                .registry()
                .register(&mut SourceFd(&fd), TIMER, Interest::READABLE);
        }
        Worker {
            index: s.index,
            poll: s.poll,
            timer,
            cmds: s.cmds,
            events: s.events,
            clients,
            pending: (0..plan_clients).collect(),
            pending_total: plan_clients as u64,
            pubs,
            storms: (plan_clients..plan_clients + s.storm.0 as usize).collect(),
            handshakes: 0,
            setup_ok: 0,
            setup_failed: 0,
            ready_sent: false,
            window: None,
            storm_cap: s.storm.1,
            storm_opened: 0,
            counters: Counters::default(),
            latency: new_histogram(),
            connect: new_histogram(),
            time_to_all: Vec::new(),
            errors: Vec::new(),
            errors_suppressed: 0,
            scratch: vec![0; 64 * 1024],
            next_progress_ns: cfg.now_ns() + PROGRESS_EVERY_NS,
            publishing_done: false,
            finishing_since: None,
            cfg,
        }
    }

    fn error(&mut self, msg: String) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(msg);
        } else {
            self.errors_suppressed += 1;
        }
    }

    /// Arms the timer for the next deadline and returns the poll timeout (a fallback bound).
    fn arm(&mut self, now: u64) -> Duration {
        let mut deadline = self.next_progress_ns;
        if let Some(w) = self.window {
            for t in [w.start_ns, w.measure_end_ns] {
                if t > now {
                    deadline = deadline.min(t);
                }
            }
        }
        for &i in &self.pubs {
            if let Kind::Pub(Pub {
                wake_ns: Some(t), ..
            }) = self.clients[i].kind
            {
                deadline = deadline.min(t);
            }
        }
        if self.storm_active(now) {
            for &i in &self.storms {
                let c = &self.clients[i];
                if c.conn.is_none() {
                    deadline = deadline.min(c.retry_at.max(now));
                }
            }
        }
        if deadline <= now {
            return Duration::ZERO;
        }
        let wait = Duration::from_nanos(deadline - now);
        match &self.timer {
            Some(t) if t.arm(wait).is_ok() => wait + Duration::from_millis(5),
            _ => wait,
        }
    }

    fn login(&self, i: usize) -> (String, Option<MqttString>, Option<Bytes>) {
        let c = &self.clients[i];
        let id = match c.kind {
            Kind::Storm => format!("{}-{}", c.client_id, c.generation),
            _ => c.client_id.clone(),
        };
        (id, self.cfg.username.clone(), self.cfg.password.clone())
    }

    /// Starts client `i`'s connection.
    fn open(&mut self, i: usize, now: u64) -> Result<(), String> {
        let (id, user, pass) = self.login(i);
        let login = Login {
            client_id: &id,
            username: user.as_ref(),
            password: pass.as_ref(),
            keep_alive: KEEP_ALIVE,
            persistent: self.cfg.persistent,
        };
        let layers = self.cfg.layers.as_ref();
        let addr = match self.clients[i].kind {
            Kind::Sub(_) | Kind::Hold => self.cfg.sub_addr,
            _ => self.cfg.addr,
        };
        let mut conn = Conn::open(addr, self.cfg.version, &login, layers, now)
            .map_err(|e| format!("{id}: connect: {e}"))?;
        self.poll
            .registry()
            .register(
                conn.stream_mut(),
                Token(i + 2),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| format!("{id}: register: {e}"))?;
        self.clients[i].conn = Some(conn);
        Ok(())
    }

    fn on_ready(&mut self, i: usize, readable: bool, writable: bool) {
        let now = self.cfg.now_ns();
        let mut evs = Vec::new();
        let Some(conn) = self.clients.get_mut(i).and_then(|c| c.conn.as_mut()) else {
            return;
        };
        if writable {
            conn.on_writable();
        }
        if readable {
            conn.on_readable(&mut self.scratch, now, &mut evs);
            conn.flush();
        }
        for ev in evs {
            self.on_conn_event(i, ev, now);
        }
        self.reap(i, now);
    }

    /// Accounts for and drops client `i`'s connection if it closed.
    fn reap(&mut self, i: usize, now: u64) {
        let Some(conn) = self.clients[i].conn.as_ref() else {
            return;
        };
        if conn.state != State::Closed {
            return;
        }
        let why = conn.closed_why().unwrap_or("closed").to_string();
        self.on_closed(i, why, now);
        let c = &mut self.clients[i];
        if let (Kind::Pub(p), Some(conn)) = (&mut c.kind, &c.conn) {
            p.lost_connection(conn, now);
        }
        c.conn = None;
        c.closing_since = None;
    }

    fn reap_all(&mut self, now: u64) {
        for i in 0..self.clients.len() {
            self.reap(i, now);
        }
    }

    /// Counts client `i` as set up (ok or failed) once.
    fn counted(&mut self, i: usize, ok: bool) {
        let c = &mut self.clients[i];
        if c.counted || matches!(c.kind, Kind::Storm) {
            return;
        }
        c.counted = true;
        self.handshakes = self.handshakes.saturating_sub(1);
        if ok {
            self.setup_ok += 1;
        } else {
            self.setup_failed += 1;
        }
    }

    fn on_conn_event(&mut self, i: usize, ev: ConnEvent, now: u64) {
        match ev {
            ConnEvent::Connected => self.on_connected(i, now),
            ConnEvent::Subscribed => self.counted(i, true),
            ConnEvent::SubscribeRefused(code) => {
                let id = self.clients[i].client_id.clone();
                self.error(format!("{id}: SUBACK refused the filter: {code:?}"));
                self.counters.disconnects += u64::from(self.window.is_some());
                self.counted(i, false);
            }
            ConnEvent::Message(payload) => {
                let window = self.window.unwrap_or(NEVER);
                if let Kind::Sub(sub) = &mut self.clients[i].kind {
                    let mut sinks = Sinks {
                        counters: &mut self.counters,
                        latency: &mut self.latency,
                        time_to_all: &mut self.time_to_all,
                    };
                    sub.on_message(&payload, now, self.cfg.run, &window, &mut sinks);
                }
            }
            ConnEvent::Confirmed => self.counters.confirmed += 1,
            ConnEvent::PingResp => {}
            ConnEvent::Rejected(seq, _code) => {
                self.counters.rejected += 1;
                if let Kind::Pub(p) = &mut self.clients[i].kind {
                    p.uncertain.push(seq);
                }
            }
        }
    }

    fn on_connected(&mut self, i: usize, now: u64) {
        let qos = self.cfg.qos;
        let c = &mut self.clients[i];
        let Some(conn) = c.conn.as_mut() else {
            return;
        };
        let took_us = (now - conn.opened_ns) / 1_000;
        self.counters.connects_ok += 1;
        self.counters.conns_up += 1;
        match &mut c.kind {
            Kind::Storm => {
                if let Some(w) = self.window {
                    if w.contains(conn.opened_ns) && now < w.measure_end_ns {
                        self.counters.connects_in_window += 1;
                        self.connect.saturating_record(took_us);
                    }
                }
                conn.disconnect(now);
                c.closing_since = Some(now);
                conn.flush();
                return;
            }
            Kind::Sub(sub) if !sub.deferred => {
                conn.subscribe(&sub.filter, qos, now);
                sub.subscribed_ns = Some(now);
                conn.flush();
            }
            _ => {}
        }
        self.connect.saturating_record(took_us);
        let waits_for_suback = matches!(&c.kind, Kind::Sub(s) if !s.deferred);
        if !waits_for_suback {
            self.counted(i, true);
        }
    }

    fn on_closed(&mut self, i: usize, why: String, now: u64) {
        let c = &mut self.clients[i];
        let was_up = c.conn.as_ref().is_some_and(Conn::was_connected);
        let id = c.client_id.clone();
        if let Kind::Storm = c.kind {
            let expected = c.closing_since.is_some();
            if was_up {
                self.counters.conns_up -= 1;
            }
            c.generation += 1;
            if !expected {
                c.retry_at = now + 10_000_000;
                self.counters.connects_failed += 1;
                self.error(format!("{id}: {why}"));
            }
            return;
        }
        if was_up {
            self.counters.conns_up -= 1;
        }
        if !self.clients[i].counted {
            self.counters.connects_failed += u64::from(!was_up);
            self.counted(i, false);
            self.error(format!("{id}: {why}"));
        } else if self.finishing_since.is_none() {
            self.counters.disconnects += 1;
            self.error(format!("{id}: {why}"));
        }
    }

    /// Handles pending commands; true when the worker should stop.
    fn commands(&mut self) -> bool {
        while let Ok(cmd) = self.cmds.try_recv() {
            let now = self.cfg.now_ns();
            match cmd {
                Cmd::Start(w) => {
                    self.window = Some(w);
                    let (rate, pubs) = (self.cfg.rate, self.cfg.publishers);
                    for c in &mut self.clients {
                        if let (Kind::Pub(p), Some(rate)) = (&mut c.kind, rate) {
                            p.pacer = Some(Pacer::new(
                                w.start_ns,
                                rate,
                                u64::from(pubs),
                                u64::from(p.id),
                            ));
                        }
                    }
                }
                Cmd::SubscribeNow => {
                    let qos = self.cfg.qos;
                    for c in &mut self.clients {
                        if let (Kind::Sub(s), Some(conn)) = (&mut c.kind, c.conn.as_mut()) {
                            conn.subscribe(&s.filter, qos, now);
                            s.subscribed_ns = Some(now);
                            conn.flush();
                        }
                    }
                    self.reap_all(now);
                }
                Cmd::Finish => {
                    self.finishing_since = Some(now);
                    for c in &mut self.clients {
                        let Some(conn) = c.conn.as_mut() else {
                            continue;
                        };
                        if let Kind::Pub(p) = &c.kind {
                            if p.retain {
                                for t in &p.topics {
                                    conn.clear_retained(t, now);
                                }
                            }
                        }
                        if conn.state == State::Ready && c.closing_since.is_none() {
                            conn.disconnect(now);
                        }
                        conn.flush();
                    }
                    self.reap_all(now);
                }
            }
        }
        false
    }

    fn storm_active(&self, now: u64) -> bool {
        let Some(w) = self.window else {
            return false;
        };
        !self.storms.is_empty()
            && self.finishing_since.is_none()
            && now >= w.start_ns
            && now < w.measure_end_ns
            && self.storm_cap.is_none_or(|cap| self.storm_opened < cap)
    }

    /// Time-driven work; true when the worker is done.
    fn tick(&mut self) -> bool {
        let now = self.cfg.now_ns();
        if let Some(since) = self.finishing_since {
            let flushed = self
                .clients
                .iter()
                .all(|c| c.conn.as_ref().is_none_or(|c| c.pending_write() == 0));
            return flushed || now >= since + 1_000_000_000;
        }
        // Set-up: open connections a few at a time.
        while self.handshakes < HANDSHAKES {
            let Some(i) = self.pending.pop_front() else {
                break;
            };
            self.handshakes += 1;
            if let Err(e) = self.open(i, now) {
                self.counters.connects_failed += 1;
                self.counted(i, false);
                self.error(e);
            }
        }
        if !self.ready_sent && self.setup_ok + self.setup_failed == self.pending_total {
            self.ready_sent = true;
            let _ = self.events.send(Event::Ready {
                worker: self.index,
                connected: self.setup_ok,
                failed: self.setup_failed,
            });
        }
        if self.window.is_some_and(|w| now >= w.start_ns) {
            self.publish(now);
            self.storm(now);
            self.check_publishing_done(now);
        }
        if now >= self.next_progress_ns {
            self.next_progress_ns = now + PROGRESS_EVERY_NS;
            self.housekeeping(now);
            self.progress();
        }
        false
    }

    fn publish(&mut self, now: u64) {
        let cfg = Arc::clone(&self.cfg);
        let knobs = knobs(&cfg, self.window);
        let clock = || cfg.now_ns();
        for k in 0..self.pubs.len() {
            let i = self.pubs[k];
            let c = &mut self.clients[i];
            if let (Kind::Pub(p), Some(conn)) = (&mut c.kind, c.conn.as_mut()) {
                if conn.state == State::Ready {
                    p.produce(conn, &knobs, &mut self.counters, &clock);
                    conn.flush();
                }
            }
            self.reap(i, now);
        }
    }

    fn storm(&mut self, now: u64) {
        for k in 0..self.storms.len() {
            let i = self.storms[k];
            let active = self.storm_active(now);
            let c = &mut self.clients[i];
            if let (Some(since), Some(_)) = (c.closing_since, &c.conn) {
                if now >= since + CLOSE_WAIT_NS {
                    c.conn = None;
                    c.closing_since = None;
                    c.generation += 1;
                    self.counters.conns_up -= 1;
                }
                continue;
            }
            if c.conn.is_none() && c.retry_at <= now && active {
                self.storm_opened += 1;
                if let Err(e) = self.open(i, now) {
                    self.counters.connects_failed += 1;
                    self.clients[i].retry_at = now + 10_000_000;
                    self.error(e);
                }
            }
        }
    }

    fn check_publishing_done(&mut self, now: u64) {
        if self.publishing_done {
            return;
        }
        let drain = self.cfg.drain_ns;
        let mut last_send_ns = 0;
        let mut capped =
            self.storms.is_empty() || self.storm_cap.is_some_and(|cap| self.storm_opened >= cap);
        for &i in &self.pubs {
            let c = &self.clients[i];
            if let Kind::Pub(p) = &c.kind {
                if !p.settled(c.conn.as_ref(), now, drain) {
                    return;
                }
                last_send_ns = last_send_ns.max(p.last_send_ns);
                capped &= p.next_seq >= p.cap;
            }
        }
        let storming =
            self.storm_active(now) || self.storms.iter().any(|&i| self.clients[i].conn.is_some());
        if storming {
            return;
        }
        self.publishing_done = true;
        let publishers = self
            .clients
            .iter()
            .filter_map(|c| match &c.kind {
                Kind::Pub(p) => Some((p.id, p.outcome(c.conn.as_ref()))),
                _ => None,
            })
            .collect();
        let _ = self.events.send(Event::PublishingDone {
            worker: self.index,
            publishers,
            last_send_ns,
            capped: (!(self.pubs.is_empty() && self.storms.is_empty())).then_some(capped),
        });
    }

    /// Set-up timeouts, connect-loop close timeouts and keep alive.
    fn housekeeping(&mut self, now: u64) {
        let keep_alive_ns = u64::from(KEEP_ALIVE) * 500_000_000;
        let mut timed_out = Vec::new();
        for (i, c) in self.clients.iter_mut().enumerate() {
            let Some(conn) = c.conn.as_mut() else {
                continue;
            };
            if !c.counted
                && !matches!(c.kind, Kind::Storm)
                && now > conn.opened_ns + SETUP_TIMEOUT_NS
            {
                timed_out.push(i);
            } else if conn.state == State::Ready && now > conn.last_write_ns + keep_alive_ns {
                conn.ping(now);
                conn.flush();
            }
        }
        self.reap_all(now);
        for i in timed_out {
            let id = self.clients[i].client_id.clone();
            if let Some(conn) = self.clients[i].conn.take() {
                self.counters.conns_up -= u64::from(conn.was_connected());
            }
            self.counters.connects_failed += 1;
            self.counted(i, false);
            self.error(format!("{id}: not ready after 10 s"));
        }
    }

    fn progress(&mut self) {
        let take = |h: &mut Histogram<u64>| {
            (!h.is_empty()).then(|| Box::new(std::mem::replace(h, new_histogram())))
        };
        let _ = self.events.send(Event::Progress {
            worker: self.index,
            counters: self.counters,
            latency: take(&mut self.latency),
            connect: take(&mut self.connect),
        });
    }

    fn report(&mut self) -> WorkerReport {
        let mut trackers = Vec::new();
        for c in &mut self.clients {
            if let Kind::Sub(s) = &mut c.kind {
                for (p, t) in s.trackers.drain() {
                    trackers.push(((s.id, p), t));
                }
            }
        }
        WorkerReport {
            counters: self.counters,
            trackers,
            latency: std::mem::replace(&mut self.latency, new_histogram()),
            connect: std::mem::replace(&mut self.connect, new_histogram()),
            time_to_all_us: std::mem::take(&mut self.time_to_all),
            errors: std::mem::take(&mut self.errors),
            errors_suppressed: self.errors_suppressed,
        }
    }
}

impl Client {
    fn new(client_id: String, kind: Kind) -> Client {
        Client {
            client_id,
            kind,
            conn: None,
            counted: false,
            closing_since: None,
            retry_at: 0,
            generation: 0,
        }
    }
}
