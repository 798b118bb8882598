//! Connection caps: how many client connections a listener holds at once, in all and from one
//! address. A connection over either cap is closed at once, before TLS starts (nothing is spent
//! on a handshake), counted in `moat_connections_refused_total` and logged at most once a second
//! per listener.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Whole seconds since the first call: the clock refusal logging is rate-limited by.
pub fn clock_secs() -> u64 {
    static START: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(tokio::time::Instant::now)
        .elapsed()
        .as_secs()
        + 1
}

/// A log line allowed at most once a second, so that what a client can repeat at will (a broken
/// connection, one over a cap) cannot flood the log; each case is still counted and recorded.
#[derive(Debug, Default)]
pub struct OncePerSecond(AtomicU64);

impl OncePerSecond {
    /// A limiter that allows its first line.
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// Whether a line may be logged now.
    pub fn ready(&self) -> bool {
        self.ready_at(clock_secs())
    }

    fn ready_at(&self, now_secs: u64) -> bool {
        let last = self.0.load(Ordering::Relaxed);
        now_secs > last
            && self
                .0
                .compare_exchange(last, now_secs, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }
}

/// The caps in force (a reload may change them; the counts carry on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections the listener holds at once (`max_connections`).
    pub total: usize,
    /// Connections from one client address at once (`max_connections_per_ip`).
    pub per_ip: usize,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// The listener's cap.
    Total,
    /// The cap per client address.
    PerIp,
}

impl Over {
    /// The metric's `reason` label.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Total => "max_connections",
            Self::PerIp => "max_connections_per_ip",
        }
    }
}

/// One listener's open connections.
#[derive(Debug, Default)]
pub struct Counts {
    open: AtomicUsize,
    by_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Refusals logged.
    pub logged: OncePerSecond,
}

/// A connection counted against the caps, until dropped.
#[derive(Debug)]
pub struct Admitted {
    counts: Arc<Counts>,
    ip: Option<IpAddr>,
}

impl Counts {
    /// Counts a new connection against the listener's cap.
    pub fn admit(self: &Arc<Self>, limits: Limits) -> Result<Admitted, Over> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= limits.total {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Over::Total);
        }
        Ok(Admitted {
            counts: self.clone(),
            ip: None,
        })
    }

    fn by_ip(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.by_ip.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Admitted {
    /// Counts the connection against its client address's cap, once the address is known (after
    /// a PROXY header, the client it names).
    pub fn from_ip(&mut self, ip: IpAddr, limits: Limits) -> Result<(), Over> {
        let mut by_ip = self.counts.by_ip();
        let n = by_ip.entry(ip).or_insert(0);
        if *n >= limits.per_ip {
            if *n == 0 {
                by_ip.remove(&ip);
            }
            return Err(Over::PerIp);
        }
        *n += 1;
        self.ip = Some(ip);
        Ok(())
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.counts.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.ip {
            let mut by_ip = self.counts.by_ip();
            if let Some(n) = by_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    by_ip.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        total: 3,
        per_ip: 2,
    };

    #[test]
    fn caps_hold_per_listener_and_per_address_and_free_on_drop() {
        let counts = Arc::new(Counts::default());
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let mut first = counts.admit(LIMITS).expect("first");
        first.from_ip(a, LIMITS).expect("a 1");
        let mut second = counts.admit(LIMITS).expect("second");
        second.from_ip(a, LIMITS).expect("a 2");
        let mut third = counts.admit(LIMITS).expect("third");
        assert_eq!(third.from_ip(a, LIMITS), Err(Over::PerIp));
        third.from_ip(b, LIMITS).expect("another address");
        assert_eq!(counts.admit(LIMITS).err(), Some(Over::Total));
        drop(first);
        let mut again = counts.admit(LIMITS).expect("a place came free");
        again.from_ip(a, LIMITS).expect("and one for the address");
        drop((second, third, again));
        assert_eq!(counts.open.load(Ordering::Acquire), 0);
        assert!(counts.by_ip().is_empty(), "no address left behind");
    }

    #[test]
    fn lines_are_logged_at_most_once_a_second() {
        let limit = OncePerSecond::new();
        assert!(limit.ready_at(10));
        assert!(!limit.ready_at(10));
        assert!(limit.ready_at(11));
    }
}
