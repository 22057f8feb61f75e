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
            for key in keys {
                shard.wake_key(key as u32);
            }
        }
        WATCHER.with(|w| w.borrow_mut().take());
    })
}
