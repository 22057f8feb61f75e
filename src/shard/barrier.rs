//! Barriers: "tell every shard, continue once they all confirmed". Used where MQTT promises an
//! effect once an acknowledgement is sent: a SUBACK means publishes from any shard now reach the
//! new subscription; a PUBACK for a retained message means a subscriber on any shard now sees it.
//!
//! The origin shard opens a barrier expecting `n` acks and puts its token in the mesh messages;
//! each receiving shard answers `MeshMsg::Ack(token)` after applying the change.
//!
//! Shard-local: `Rc`/`Cell` only.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::task::{Context, Poll};

use crate::mesh::AckToken;
use crate::notify::Notify;

#[derive(Default)]
pub struct Barriers {
    next: AckToken,
    pending: HashMap<AckToken, Rc<Countdown>>,
}

/// Acks still expected, and the task to wake when none are.
struct Countdown {
    remaining: Cell<usize>,
    done: Notify,
    /// A part reported that what it waited for could not be stored.
    failed: Cell<bool>,
}

/// One barrier: completes when every expected ack arrived.
pub struct Barrier(Rc<Countdown>);

impl Barrier {
    pub async fn wait(self) {
        std::future::poll_fn(|cx| self.poll_done(cx)).await
    }

    /// Whether a part failed (see `Barriers::fail`): meaningful once done.
    pub fn failed(&self) -> bool {
        self.0.failed.get()
    }

    /// `Ready` once every ack arrived; otherwise registers the task to be woken.
    pub fn poll_done(&self, cx: &mut Context<'_>) -> Poll<()> {
        while self.0.remaining.get() > 0 {
            if self.0.done.poll_wait(cx).is_pending() {
                return Poll::Pending;
            }
        }
        Poll::Ready(())
    }
}

impl Barriers {
    /// Opens a barrier expecting `n` acks (`n` > 0).
    pub fn open(&mut self, n: usize) -> (AckToken, Barrier) {
        self.next += 1;
        let state = Rc::new(Countdown {
            remaining: Cell::new(n),
            done: Notify::new(),
            failed: Cell::new(false),
        });
        self.pending.insert(self.next, state.clone());
        (self.next, Barrier(state))
    }

    /// Expects `n` more acks for `token` (a barrier whose parts are found as it goes: its own
    /// part keeps it open meanwhile).
    pub fn expect(&mut self, token: AckToken, n: usize) {
        if let Some(s) = self.pending.get(&token) {
            s.remaining.set(s.remaining.get() + n);
        }
    }

    /// One ack for `token` from a part that failed to store what it waited for.
    pub fn fail(&mut self, token: AckToken) {
        if let Some(s) = self.pending.get(&token) {
            s.failed.set(true);
        }
        self.ack(token);
    }

    /// One ack for `token`; unknown tokens are ignored.
    pub fn ack(&mut self, token: AckToken) {
        let finished = match self.pending.get(&token) {
            Some(s) => {
                let left = s.remaining.get().saturating_sub(1);
                s.remaining.set(left);
                if left == 0 {
                    s.done.notify();
                }
                left == 0
            }
            None => false,
        };
        if finished {
            self.pending.remove(&token);
        }
    }
}
