//! The connection gate: the broker-wide counts a new TCP connection is checked against at accept,
//! before it costs a shard anything — COREMQ_MAX_CONNECTIONS (connections served at once),
//! COREMQ_MAX_CONNECTING (sockets that have not completed CONNECT: a half-open flood fills this,
//! not the whole broker), COREMQ_MAX_CONNECTIONS_PER_ADDRESS and COREMQ_CONNECTION_RATE_PER_ADDRESS
//! (a token bucket per source address).
//!
//! Shared by every shard's listener: atomics only (an `Arc` and a few atomic operations per
//! connection, never per message), no locks. Per-address counts and buckets live in a fixed
//! table indexed by a hash of the address, so memory stays bounded whatever addresses connect;
//! two addresses that share a slot share its limits (with 65,536 slots, rarely).
//!
//! A `ConnSlot` is one accepted connection's places (its count under COREMQ_MAX_CONNECTIONS and
//! under its address), freed when it is dropped; it travels with the connection (a hand-off, a
//! parked socket). A `Connecting` place is held only until the CONNECT phase ends.

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Slots of the per-address tables (a power of two, at most 2^16: `ConnSlot` keeps a `u16`).
const ADDRESS_SLOTS: usize = 1 << 16;
const _: () = assert!(ADDRESS_SLOTS <= 1 << 16);
/// Set in every bucket word that has been used (so that 0 can mean "never used").
const USED: u64 = 1 << 63;

/// The limits the gate enforces (from the configuration; 0 or `None` turns one off).
#[derive(Debug, Clone, Copy)]
pub struct GateLimits {
    pub max_connections: usize,
    pub max_connecting: usize,
    pub max_per_address: usize,
    /// New connections per address: tokens per `Duration`, which is also the burst.
    pub rate_per_address: Option<(u32, Duration)>,
}

/// Why a connection was closed at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateRefusal {
    /// COREMQ_MAX_CONNECTING sockets are in their CONNECT phase already.
    Connecting,
    /// Its address holds COREMQ_MAX_CONNECTIONS_PER_ADDRESS connections already.
    PerAddress,
    /// Its address opened connections faster than COREMQ_CONNECTION_RATE_PER_ADDRESS.
    Rate,
}

struct Inner {
    limits: GateLimits,
    active: AtomicUsize,
    connecting: AtomicUsize,
    per_address: Box<[AtomicU32]>,
    /// Per address slot: `USED`, tokens in thousandths (the next 31 bits) and the time of the last
    /// refill in milliseconds since `epoch`, wrapping (low 32 bits). 0: never used (full).
    buckets: Box<[AtomicU64]>,
    epoch: Instant,
    hasher: std::collections::hash_map::RandomState,
}

/// Shared by every shard's listener.
#[derive(Clone)]
pub struct ConnectionGate {
    inner: Arc<Inner>,
}

/// One accepted connection's places; dropping it frees them.
#[derive(Debug)]
pub struct ConnSlot {
    /// The gate (one shared `Arc`, not one allocated per connection: a parked connection keeps
    /// this record).
    inner: InnerRef,
    /// Its address's slot, when per-address counting is on (a `u16`: the slot count is 2^16,
    /// and a parked connection keeps this record, so it stays 16 bytes).
    address: Option<u16>,
    /// Whether it holds a place under COREMQ_MAX_CONNECTIONS (when the broker was full it does
    /// not, and its CONNECT is answered with "quota exceeded").
    admitted: bool,
}

/// A socket's place among those in their CONNECT phase; dropping it frees the place.
#[derive(Debug)]
pub struct Connecting(InnerRef);

/// `Inner` behind a `Debug` that shows nothing (its tables are large).
struct InnerRef(Arc<Inner>);

impl std::fmt::Debug for InnerRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionGate")
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let inner = &self.inner.0;
        if self.admitted {
            inner.active.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(i) = self.address {
            inner.per_address[usize::from(i)].fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Connecting {
    fn drop(&mut self) {
        self.0 .0.connecting.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnSlot {
    /// Whether the connection holds a place under COREMQ_MAX_CONNECTIONS.
    pub fn is_admitted(&self) -> bool {
        self.admitted
    }
}

impl ConnectionGate {
    pub fn new(limits: GateLimits) -> Self {
        let table = |_| AtomicU32::new(0);
        Self {
            inner: Arc::new(Inner {
                limits,
                active: AtomicUsize::new(0),
                connecting: AtomicUsize::new(0),
                per_address: (0..ADDRESS_SLOTS).map(table).collect(),
                buckets: (0..ADDRESS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
                epoch: Instant::now(),
                hasher: std::collections::hash_map::RandomState::new(),
            }),
        }
    }

    /// Checks a connection from `address` accepted at `now`: the CONNECT-phase cap, its address's
    /// rate and count. `Err` means: close the socket at once. Otherwise the connection's places
    /// (which may be over COREMQ_MAX_CONNECTIONS: see `ConnSlot::is_admitted`) and its place in
    /// the CONNECT phase.
    pub fn accept(
        &self,
        address: IpAddr,
        now: Instant,
    ) -> Result<(ConnSlot, Connecting), GateRefusal> {
        let inner = &self.inner;
        let limits = inner.limits;
        let before = inner.connecting.fetch_add(1, Ordering::Relaxed);
        let connecting = Connecting(InnerRef(inner.clone()));
        if limits.max_connecting > 0 && before >= limits.max_connecting {
            return Err(GateRefusal::Connecting);
        }
        let slot = inner.slot_of(address);
        if let Some((rate, per)) = limits.rate_per_address {
            if !inner.take_token(slot, rate, per, now) {
                return Err(GateRefusal::Rate);
            }
        }
        let address = (limits.max_per_address > 0).then_some(slot);
        let mut conn = ConnSlot {
            inner: InnerRef(inner.clone()),
            address: None,
            admitted: false,
        };
        if let Some(i) = address {
            let before = inner.per_address[i].fetch_add(1, Ordering::Relaxed);
            conn.address = Some(i as u16);
            if before as usize >= limits.max_per_address {
                return Err(GateRefusal::PerAddress);
            }
        }
        let before = inner.active.fetch_add(1, Ordering::Relaxed);
        conn.admitted = true;
        if before >= limits.max_connections {
            inner.active.fetch_sub(1, Ordering::Relaxed);
            conn.admitted = false;
        }
        Ok((conn, connecting))
    }

    /// The places of a connection the broker opens to itself (a bridge's local side): counted
    /// among the connections, never refused (the operator configured it).
    pub fn internal(&self) -> (ConnSlot, Connecting) {
        let inner = &self.inner;
        inner.connecting.fetch_add(1, Ordering::Relaxed);
        inner.active.fetch_add(1, Ordering::Relaxed);
        let connecting = Connecting(InnerRef(inner.clone()));
        let slot = ConnSlot {
            inner: InnerRef(inner.clone()),
            address: None,
            admitted: true,
        };
        (slot, connecting)
    }

    /// Connections currently holding a place under COREMQ_MAX_CONNECTIONS.
    pub fn active(&self) -> usize {
        self.inner.active.load(Ordering::Relaxed)
    }

    /// Sockets in their CONNECT phase.
    pub fn connecting(&self) -> usize {
        self.inner.connecting.load(Ordering::Relaxed)
    }
}

impl Inner {
    fn slot_of(&self, address: IpAddr) -> usize {
        let mut h = self.hasher.build_hasher();
        match address {
            IpAddr::V4(a) => h.write(&a.octets()),
            IpAddr::V6(a) => h.write(&a.octets()),
        }
        (h.finish() as usize) & (ADDRESS_SLOTS - 1)
    }

    /// Takes one token from slot `i`'s bucket (`rate` tokens per `per`, at most `rate` stored),
    /// refilling it for the time since its last use. False when it is empty.
    fn take_token(&self, i: usize, rate: u32, per: Duration, now: Instant) -> bool {
        let cap = u64::from(rate) * 1000;
        let per_ms = per.as_millis().max(1) as u64;
        let now_ms = now.saturating_duration_since(self.epoch).as_millis() as u32;
        let bucket = &self.buckets[i];
        let mut current = bucket.load(Ordering::Relaxed);
        loop {
            let (tokens, last) = if current == 0 {
                // Never used: full.
                (cap, now_ms)
            } else {
                ((current & !USED) >> 32, current as u32)
            };
            let elapsed = u64::from(now_ms.wrapping_sub(last));
            let refilled = (tokens + elapsed * cap / per_ms).min(cap);
            let Some(left) = refilled.checked_sub(1000) else {
                return false;
            };
            let next = USED | (left << 32) | u64::from(now_ms);
            match bucket.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_slot_stays_small_as_parked_connections_keep_one() {
        assert_eq!(std::mem::size_of::<ConnSlot>(), 16);
    }

    use super::*;

    fn limits() -> GateLimits {
        GateLimits {
            max_connections: 100,
            max_connecting: 0,
            max_per_address: 0,
            rate_per_address: None,
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn over_max_connections_a_socket_is_read_but_not_admitted() {
        let gate = ConnectionGate::new(GateLimits {
            max_connections: 2,
            ..limits()
        });
        let now = Instant::now();
        let a = gate.accept(ip(2), now).unwrap().0;
        let b = gate.accept(ip(2), now).unwrap().0;
        let c = gate.accept(ip(2), now).unwrap().0;
        assert!(a.is_admitted() && b.is_admitted() && !c.is_admitted());
        assert_eq!(gate.active(), 2);
        drop(a);
        assert_eq!(gate.active(), 1);
        drop(c);
        assert_eq!(gate.active(), 1, "a slot not admitted frees nothing");
    }

    #[test]
    fn the_connecting_cap_counts_sockets_until_their_place_is_dropped() {
        let gate = ConnectionGate::new(GateLimits {
            max_connecting: 2,
            ..limits()
        });
        let now = Instant::now();
        let (_a, pa) = gate.accept(ip(2), now).unwrap();
        let (_b, _pb) = gate.accept(ip(3), now).unwrap();
        assert_eq!(
            gate.accept(ip(4), now).unwrap_err(),
            GateRefusal::Connecting
        );
        drop(pa);
        let _c = gate.accept(ip(4), now).unwrap();
        assert_eq!(gate.connecting(), 2);
    }

    #[test]
    fn each_address_has_its_own_count() {
        let gate = ConnectionGate::new(GateLimits {
            max_per_address: 2,
            ..limits()
        });
        let now = Instant::now();
        let a1 = gate.accept(ip(2), now).unwrap();
        let _a2 = gate.accept(ip(2), now).unwrap();
        assert_eq!(
            gate.accept(ip(2), now).unwrap_err(),
            GateRefusal::PerAddress
        );
        assert!(gate.accept(ip(3), now).is_ok(), "another address");
        drop(a1);
        assert!(gate.accept(ip(2), now).is_ok(), "a place was freed");
    }

    #[test]
    fn the_rate_bucket_allows_a_burst_then_refills_with_time() {
        let gate = ConnectionGate::new(GateLimits {
            rate_per_address: Some((3, Duration::from_secs(1))),
            ..limits()
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(gate.accept(ip(2), t0).is_ok());
        }
        assert_eq!(gate.accept(ip(2), t0).unwrap_err(), GateRefusal::Rate);
        assert!(
            gate.accept(ip(3), t0).is_ok(),
            "another address has its own"
        );
        // A third of a second later: one token back.
        let t1 = t0 + Duration::from_millis(340);
        assert!(gate.accept(ip(2), t1).is_ok());
        assert_eq!(gate.accept(ip(2), t1).unwrap_err(), GateRefusal::Rate);
        // Long idle: full again, never more than the burst.
        let t2 = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(gate.accept(ip(2), t2).is_ok());
        }
        assert_eq!(gate.accept(ip(2), t2).unwrap_err(), GateRefusal::Rate);
    }
}
