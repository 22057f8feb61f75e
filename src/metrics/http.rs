//! The metrics endpoint (COREMQ_METRICS_LISTEN): plain HTTP/1.1, `GET /metrics` (the Prometheus
//! text format) and `GET /healthz` (200 while every shard runs, 503 while starting or stopping),
//! one request per connection.
//!
//! It runs on threads of its own, outside every shard, and distrusts its clients: a request must
//! arrive whole within `REQUEST_DEADLINE` (slowloris) and within `MAX_REQUEST` bytes (huge
//! headers get 431); at most `MAX_CLIENTS` are served at once (more get 503 and a close). So a bad
//! client costs one thread of this endpoint for a few seconds at most, never a shard.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest request (request line and headers) accepted.
const MAX_REQUEST: usize = 8 << 10;
/// Time a client has to send its whole request.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Clients served at once.
const MAX_CLIENTS: usize = 16;
/// How often the accept loop looks for a stop request.
const POLL: Duration = Duration::from_millis(20);

/// What the endpoint serves.
pub trait Source: Send + Sync + 'static {
    /// The `/metrics` body; `None` when the shards did not answer in time.
    fn metrics(&self) -> Option<String>;
    /// Whether every shard runs (and no shutdown began).
    fn healthy(&self) -> bool;
}

/// A running endpoint; dropping it stops it.
pub struct Endpoint {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Endpoint {
    /// Serves `source` on `listener` (already bound, so that a bad address stops start-up).
    pub fn start(listener: TcpListener, source: Arc<dyn Source>) -> io::Result<Endpoint> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let accept = std::thread::Builder::new()
            .name("coremq-metrics".into())
            .spawn(move || accept_loop(listener, source, flag))?;
        Ok(Endpoint {
            addr,
            stop,
            accept: Some(accept),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn accept_loop(listener: TcpListener, source: Arc<dyn Source>, stop: Arc<AtomicBool>) {
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                if active.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
                    active.fetch_sub(1, Ordering::SeqCst);
                    let mut stream = stream;
                    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
                    let _ = respond(&mut stream, 503, "text/plain", "busy\n");
                    continue;
                }
                let (source, serving) = (source.clone(), active.clone());
                let spawned = std::thread::Builder::new()
                    .name("coremq-metrics-client".into())
                    .spawn(move || {
                        serve(stream, &*source);
                        serving.fetch_sub(1, Ordering::SeqCst);
                    });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::SeqCst);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// One request, one answer, then the connection closes.
fn serve(mut stream: TcpStream, source: &dyn Source) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(REQUEST_DEADLINE));
    let (status, kind, body) = match read_request(&mut stream) {
        Ok(head) => answer(&head, source),
        Err(Refusal::TooLarge) => (
            431,
            "text/plain",
            "request header fields too large\n".into(),
        ),
        Err(Refusal::Malformed) => (400, "text/plain", "bad request\n".into()),
        Err(Refusal::Gone) => return,
    };
    let _ = respond(&mut stream, status, kind, &body);
}

enum Refusal {
    TooLarge,
    Malformed,
    /// Closed, failed or too slow: nothing to answer.
    Gone,
}

/// Reads the request line and headers (the endpoint takes no body).
fn read_request(stream: &mut TcpStream) -> Result<String, Refusal> {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(end);
            return String::from_utf8(head).map_err(|_| Refusal::Malformed);
        }
        if head.len() > MAX_REQUEST {
            return Err(Refusal::TooLarge);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Refusal::Gone);
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return Err(Refusal::Gone),
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The status, content type and body for a request head.
fn answer(head: &str, source: &dyn Source) -> (u16, &'static str, String) {
    let mut parts = head.lines().next().unwrap_or("").split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        return (400, "text/plain", "bad request\n".into());
    };
    if !version.starts_with("HTTP/1.") {
        return (400, "text/plain", "bad request\n".into());
    }
    if method != "GET" {
        return (405, "text/plain", "only GET\n".into());
    }
    let path = target.split('?').next().unwrap_or(target);
    match path {
        "/metrics" => match source.metrics() {
            Some(text) => (200, "text/plain; version=0.0.4; charset=utf-8", text),
            None => (
                503,
                "text/plain",
                "the shards did not answer in time\n".into(),
            ),
        },
        "/healthz" if source.healthy() => (200, "text/plain", "ok\n".into()),
        "/healthz" => (503, "text/plain", "not serving\n".into()),
        _ => (
            404,
            "text/plain",
            "not found: try /metrics or /healthz\n".into(),
        ),
    }
}

fn respond(stream: &mut TcpStream, status: u16, kind: &str, body: &str) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    impl Source for Fixed {
        fn metrics(&self) -> Option<String> {
            Some("coremq_up 1\n".into())
        }
        fn healthy(&self) -> bool {
            true
        }
    }

    #[test]
    fn routes_methods_and_paths() {
        let ok = |h: &str| answer(h, &Fixed).0;
        assert_eq!(ok("GET /metrics HTTP/1.1\r\nHost: x"), 200);
        assert_eq!(ok("GET /metrics?x=1 HTTP/1.0"), 200);
        assert_eq!(ok("GET /healthz HTTP/1.1"), 200);
        assert_eq!(ok("POST /metrics HTTP/1.1"), 405);
        assert_eq!(ok("GET /other HTTP/1.1"), 404);
        assert_eq!(ok("GET /metrics SPDY/3"), 400);
        assert_eq!(ok("garbage"), 400);
        assert_eq!(ok(""), 400);
    }
}
