//! Reconnect delays: exponential backoff with full jitter between a minimum and a maximum.
//!
//! Shared machinery: every protocol's connection loop asks a [`Backoff`] how long to wait.
//! Jitter spreads reconnects of many clients after a server restart (pusher-js retries
//! every client after a flat second, so they all arrive together).
//!
//! ```
//! use std::time::Duration;
//! let mut backoff = switchboard::Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
//! let first = backoff.next_delay();
//! assert_eq!(first, Duration::from_secs(1));
//! ```

use std::time::Duration;

/// How long a connection must last before a client's reconnect backoff starts again from its
/// first step (both protocols' `healthy_after` default).
pub(crate) const HEALTHY_AFTER: Duration = Duration::from_secs(10);

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
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut b = switchboard::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    /// assert!(b.next_delay() <= Duration::from_millis(100)); // the first wait is the minimum
    /// ```
    pub fn new(min: Duration, max: Duration) -> Self {
        Self { min, max: max.max(min), multiplier: 2.0, attempt: 0 }
    }

    /// Change the growth factor (default 2).
    ///
    /// ```
    /// use std::time::Duration;
    /// // Never grows: every delay is the minimum.
    /// let mut b = switchboard::Backoff::new(Duration::from_secs(1), Duration::from_secs(30)).with_multiplier(1.0);
    /// assert!((0..5).all(|_| b.next_delay() == Duration::from_secs(1)));
    /// ```
    pub fn with_multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier.max(1.0);
        self
    }

    /// The delay before the next attempt; each call grows the ceiling.
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut b = switchboard::Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
    /// let delays: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
    /// assert!(delays.iter().all(|d| *d >= Duration::from_secs(1) && *d <= Duration::from_secs(8)));
    /// ```
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
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut b = switchboard::Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    /// b.next_delay();
    /// b.next_delay();
    /// assert_eq!(b.attempts(), 2);
    /// ```
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Start over after a successful connection.
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut b = switchboard::Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    /// b.next_delay();
    /// b.reset();
    /// assert_eq!(b.attempts(), 0);
    /// ```
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}
