//! Reconnect delays: exponential backoff with full jitter between a minimum and a maximum.
//!
//! Shared machinery: every protocol's connection loop asks a [`Backoff`] how long to wait.
//! Jitter spreads reconnects of many clients after a server restart (pusher-js retries
//! every client after a flat second, so they all arrive together).

use std::time::Duration;

/// Exponential backoff with jitter.
///
/// The n-th delay is drawn uniformly from `[min, min(max, min * multiplier^n)]`.
///
/// ```
/// use std::time::Duration;
/// use switchboard::Backoff;
/// let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
/// for _ in 0..20 {
///     let d = b.next_delay();
///     assert!(d >= Duration::from_secs(1) && d <= Duration::from_secs(30));
/// }
/// b.reset();
/// assert!(b.next_delay() <= Duration::from_secs(1));
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    multiplier: f64,
    attempt: u32,
}

impl Backoff {
    /// Backoff between `min` and `max`, doubling each attempt.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self { min, max: max.max(min), multiplier: 2.0, attempt: 0 }
    }

    /// Change the growth factor (default 2).
    pub fn with_multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier.max(1.0);
        self
    }

    /// The delay before the next attempt; each call grows the ceiling.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.min.as_secs_f64() * self.multiplier.powi(self.attempt.min(64) as i32);
        let ceiling = ceiling.min(self.max.as_secs_f64());
        self.attempt = self.attempt.saturating_add(1);
        let low = self.min.as_secs_f64();
        if ceiling <= low {
            return self.min;
        }
        Duration::from_secs_f64(low + rand::random::<f64>() * (ceiling - low))
    }

    /// Attempts made since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Start over after a successful connection.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}
