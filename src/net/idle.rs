//! The shard's idle watcher: the sockets of parked connections (`shard::park`) wait in one
//! epoll set per shard instead of each holding a glommio source and a task. One thread of the
//! shard's blocking pool waits on the set; when sockets become readable their sessions' slots
//! come back to the shard, which wakes those connections, and `serve_arrivals` (in `net`) starts
//! their tasks again. Each registration is one-shot and removed when the connection wakes,
//! whatever woke it.
//!
//! Lives on its shard's thread (`WATCHER`); only the epoll set's fd crosses to the pool thread.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use crate::shard::Shard;

/// The epoll data of the stop eventfd (session slots are `u32`).
const STOP: u64 = u64::MAX;
/// Events taken per wait.
const BATCH: usize = 256;

pub struct Watcher {
    epoll: OwnedFd,
    stop: OwnedFd,
}

thread_local! {
    /// This shard's watcher, while the shard runs.
    static WATCHER: RefCell<Option<Rc<Watcher>>> = const { RefCell::new(None) };
}

/// This shard's watcher (`None` before `start` or when parking is off).
pub fn watcher() -> Option<Rc<Watcher>> {
    WATCHER.with(|w| w.borrow().clone())
}

impl Watcher {
    fn new() -> io::Result<Self> {
        // SAFETY: plain syscalls; each fd is owned right after it is made.
        let epoll = unsafe { cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))? };
        let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
        let stop = unsafe { cvt(libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK))? };
        let stop = unsafe { OwnedFd::from_raw_fd(stop) };
        let w = Self { epoll, stop };
        w.ctl(
            libc::EPOLL_CTL_ADD,
            w.stop.as_raw_fd(),
            libc::EPOLLIN as u32,
            STOP,
        )?;
        Ok(w)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: data };
        // SAFETY: `ev` outlives the call; the kernel copies it.
        unsafe { cvt(libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut ev)) }.map(|_| ())
    }

    /// Watches a parked connection's socket; `key` is its session's slot.
    pub fn watch(&self, fd: RawFd, key: u32) -> io::Result<()> {
        let events = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT) as u32;
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, u64::from(key))
    }

    /// Watches a socket again whose one-shot registration fired (`watch` made it).
    fn rearm(&self, fd: RawFd, key: u32) -> io::Result<()> {
        let events = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT) as u32;
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, u64::from(key))
    }

    /// Stops watching a socket (a woken connection's).
    pub fn unwatch(&self, fd: RawFd) {
        let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0);
    }

    /// Ends `run`'s wait.
    pub fn stop(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd.
        unsafe { libc::write(self.stop.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// PINGREQ and PINGRESP on the wire: the same two bytes in every MQTT version.
const PINGREQ: [u8; 2] = [0xC0, 0x00];
const PINGRESP: [u8; 2] = [0xD0, 0x00];

/// If what waits on the socket is one PINGREQ and nothing else, answers it with PINGRESP and
/// takes it off the socket; true when it did. Anything else is left for the connection's task.
fn answer_ping(fd: RawFd) -> bool {
    let mut buf = [0u8; 3];
    let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT;
    // SAFETY: `buf` has room for the 3 bytes asked for.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) };
    if n != 2 || buf[..2] != PINGREQ {
        return false;
    }
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    // SAFETY: sends the 2 bytes of a constant.
    let sent = unsafe { libc::send(fd, PINGRESP.as_ptr().cast(), PINGRESP.len(), flags) };
    if sent == 1 {
        // Half an answer (a parked connection has nothing else in its send buffer, so this
        // does not happen in practice): the stream cannot go on; the woken task sees it end.
        // SAFETY: plain syscall on a socket we own.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    }
    if sent != 2 {
        return false;
    }
    // SAFETY: takes the 2 peeked bytes into `buf`.
    let taken = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), 2, libc::MSG_DONTWAIT) };
    taken == 2
}

/// Waits (on a blocking-pool thread) until some watched sockets are readable; their keys.
fn wait(epoll: RawFd) -> Vec<u64> {
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; BATCH];
    loop {
        // SAFETY: `events` has room for BATCH entries.
        let n = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), BATCH as libc::c_int, -1) };
        if n >= 0 {
            return events[..n as usize].iter().map(|e| e.u64).collect();
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            // The set is gone or broken: nothing more will come from it.
            return vec![STOP];
        }
    }
}

/// Starts this shard's watcher; the returned future runs it until `Watcher::stop`.
pub fn start(shard: Rc<Shard>) -> io::Result<impl std::future::Future<Output = ()>> {
    let watcher = Rc::new(Watcher::new()?);
    WATCHER.with(|w| *w.borrow_mut() = Some(watcher.clone()));
    Ok(async move {
        let epoll = watcher.epoll.as_raw_fd();
        loop {
            let keys = glommio::executor()
                .spawn_blocking(move || wait(epoll))
                .await;
            if keys.contains(&STOP) {
                break;
            }
            let now = std::time::Instant::now();
            for key in keys {
                let key = key as u32;
                // A lone PINGREQ is answered here and the connection stays parked.
                let mut watched = false;
                let answered = shard.ping_parked(key, now, |fd| {
                    let raw = fd.as_raw_fd();
                    let answered = answer_ping(raw);
                    watched = answered && watcher.rearm(raw, key).is_ok();
                    answered
                });
                if !answered || !watched {
                    shard.wake_key(key);
                }
            }
        }
        WATCHER.with(|w| w.borrow_mut().take());
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{decode, Packet, ProtocolVersion};
    use bytes::BytesMut;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn the_ping_bytes_are_the_codecs() {
        for v in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            let mut buf = BytesMut::from(&PINGREQ[..]);
            assert!(matches!(
                decode(&mut buf, v, 1 << 20),
                Ok(Some(Packet::PingReq))
            ));
            let mut out = BytesMut::new();
            Packet::PingResp.encode(v, &mut out).unwrap();
            assert_eq!(&out[..], &PINGRESP[..]);
        }
    }

    #[test]
    fn a_lone_pingreq_is_answered_and_taken_anything_else_is_left() {
        let (mut client, server) = UnixStream::pair().unwrap();
        server.set_nonblocking(true).unwrap();
        let fd = server.as_raw_fd();
        // Nothing there yet.
        assert!(!answer_ping(fd));
        client.write_all(&PINGREQ).unwrap();
        assert!(answer_ping(fd));
        let mut got = [0u8; 2];
        client.read_exact(&mut got).unwrap();
        assert_eq!(got, PINGRESP);
        // The PINGREQ was taken: nothing is left to answer.
        assert!(!answer_ping(fd));
        // A PINGREQ with more behind it, and half a PINGREQ, stay for the connection's task.
        client.write_all(&[0xC0, 0x00, 0xE0]).unwrap();
        assert!(!answer_ping(fd));
        let mut left = [0u8; 3];
        assert_eq!((&server).read(&mut left).unwrap(), 3);
        client.write_all(&[0xC0]).unwrap();
        assert!(!answer_ping(fd));
        assert_eq!((&server).read(&mut left).unwrap(), 1);
        // Two bytes that are not a PINGREQ (an empty PUBLISH header) stay too.
        client.write_all(&[0x30, 0x00]).unwrap();
        assert!(!answer_ping(fd));
        assert_eq!((&server).read(&mut left).unwrap(), 2);
        // Nothing was ever answered but the one PINGREQ.
        client.set_nonblocking(true).unwrap();
        assert!(client.read(&mut got).is_err());
    }
}
