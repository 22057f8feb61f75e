//! A single-waiter wake-up flag for tasks on one shard: `notify()` sets it and wakes the waiter,
//! `wait().await` returns once it is set and clears it. Shard-local (`Cell`s, no atomics): used by
//! the mesh's flusher, connection outboxes and barriers. Several notifications before the waiter
//! runs collapse into one — exactly the "do the work once per tick" batching the writers and the
//! mesh flusher want.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub struct Notify {
    set: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Notify {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn notify(&self) {
        self.set.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    /// Registers the waker for the next notification, leaving the flag as it is.
    pub fn register(&self, cx: &mut Context<'_>) {
        self.waker.set(Some(cx.waker().clone()));
    }

    /// `Ready` when notified (clearing the flag); otherwise registers the waker.
    pub fn poll_wait(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.set.replace(false) {
            Poll::Ready(())
        } else {
            self.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        }
    }

    /// Completes when notified (immediately if already notified), clearing the flag.
    pub fn wait(&self) -> Notified<'_> {
        Notified { notify: self }
    }
}

/// The future of `Notify::wait`.
pub struct Notified<'a> {
    notify: &'a Notify,
}

impl Future for Notified<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.notify.poll_wait(cx)
    }
}
