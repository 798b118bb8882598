//! The pace a request body must keep: slow-POST ("R-U-Dead-Yet") protection, the same for
//! HTTP/1.1 and HTTP/2.

use std::time::Duration;

use tokio::time::timeout;

use super::h1::H1Error;

/// The pace a request body must keep, as Apache's `mod_reqtimeout` sets it (`body=20,MinRate=500`):
/// the client may keep moat waiting for its body `allowance` in all, plus one second for every
/// `min_rate` bytes it has sent. Only time spent waiting for the client counts (not time moat
/// spends passing the body on), so a slow upstream never makes a client too slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyPace {
    /// The waiting a body may cause before it has earned more (`http.body_timeout`).
    pub allowance: Duration,
    /// Bytes per second that earn one more second (`http.min_body_rate`); 0: no pace, only the
    /// idle timeout.
    pub min_rate: u64,
}

/// One body's account under its pace.
#[derive(Debug)]
pub struct BodyClock {
    pace: BodyPace,
    /// Time spent waiting for the client's body so far.
    waited: Duration,
}

impl BodyClock {
    /// A body that has just begun.
    pub fn new(pace: BodyPace) -> Self {
        Self {
            pace,
            waited: Duration::ZERO,
        }
    }

    /// How much more waiting the body is allowed, `None` without a pace.
    fn left(&self, received: u64) -> Option<Duration> {
        if self.pace.min_rate == 0 {
            return None;
        }
        let earned = Duration::from_secs(received / self.pace.min_rate);
        Some((self.pace.allowance + earned).saturating_sub(self.waited))
    }

    /// Waits for `read`, the client's next body bytes, after `received` bytes: at most `idle`
    /// (then [`H1Error::BodyTimeout`]) and no longer than the pace allows (then
    /// [`H1Error::BodyTooSlow`]).
    pub async fn wait<T>(
        &mut self,
        received: u64,
        idle: Duration,
        read: impl std::future::Future<Output = T>,
    ) -> Result<T, H1Error> {
        let left = self.left(received);
        let too_slow = H1Error::BodyTooSlow {
            min_rate: self.pace.min_rate,
        };
        let wait = match left {
            Some(l) if l.is_zero() => return Err(too_slow),
            Some(l) => l.min(idle),
            None => idle,
        };
        let started = tokio::time::Instant::now();
        let out = timeout(wait, read).await;
        self.waited += started.elapsed();
        match out {
            Ok(v) => Ok(v),
            Err(_) if left.is_some_and(|l| l <= idle) => Err(too_slow),
            Err(_) => Err(H1Error::BodyTimeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{BodyClock, BodyPace, H1Error};

    const PACE: BodyPace = BodyPace {
        allowance: Duration::from_secs(20),
        min_rate: 500,
    };
    const IDLE: Duration = Duration::from_secs(60);

    /// A read that never completes, as from a client that sends nothing more.
    async fn silent() {
        std::future::pending::<()>().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_is_cut_off_when_its_allowance_is_spent() {
        let mut clock = BodyClock::new(PACE);
        let started = tokio::time::Instant::now();
        let r = clock.wait(0, IDLE, silent()).await;
        assert!(
            matches!(r, Err(H1Error::BodyTooSlow { min_rate: 500 })),
            "{r:?}"
        );
        assert_eq!(started.elapsed(), PACE.allowance);
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_received_earn_time_and_only_waiting_is_counted() {
        let mut clock = BodyClock::new(PACE);
        // 15 s of waiting, then a piece.
        let got = clock
            .wait(0, IDLE, tokio::time::sleep(Duration::from_secs(15)))
            .await;
        assert!(got.is_ok());
        // Time spent elsewhere (passing the body on) is not the client's.
        tokio::time::sleep(Duration::from_secs(100)).await;
        // 5,000 bytes earned 10 s: 5 + 10 s of waiting are left.
        let started = tokio::time::Instant::now();
        let r = clock.wait(5_000, IDLE, silent()).await;
        assert!(matches!(r, Err(H1Error::BodyTooSlow { .. })), "{r:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(15));
        // Spent: the next read is refused at once.
        let r = clock.wait(5_000, IDLE, async {}).await;
        assert!(matches!(r, Err(H1Error::BodyTooSlow { .. })), "{r:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_pace_only_the_idle_timeout_applies() {
        let mut clock = BodyClock::new(BodyPace {
            allowance: Duration::from_secs(1),
            min_rate: 0,
        });
        let started = tokio::time::Instant::now();
        let r = clock.wait(0, IDLE, silent()).await;
        assert!(matches!(r, Err(H1Error::BodyTimeout)), "{r:?}");
        assert_eq!(started.elapsed(), IDLE);
        // With a pace, a stall shorter than what is left is still the idle timeout's.
        let mut clock = BodyClock::new(PACE);
        let r = clock.wait(1_000_000, IDLE, silent()).await;
        assert!(matches!(r, Err(H1Error::BodyTimeout)), "{r:?}");
    }
}
