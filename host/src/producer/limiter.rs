//! Rate limiting per shard, as the KPL does it: a token bucket for records and one for
//! bytes, each refilled at a share (default 150 %) of the shard's write limits — 1,000
//! records and 1 MiB per second. Above 100 % the producer lets Kinesis throttle a little
//! (the rest is retried) instead of leaving throughput unused; far above it, a hot shard
//! would burn requests on `ProvisionedThroughputExceededException`s.
//!
//! A bucket holds at most one second of tokens. A record larger than the bucket is let
//! through once the bucket is full, so nothing waits forever.

use std::time::{Duration, Instant};

/// Kinesis write limits of one shard, per second.
pub const SHARD_RECORDS_PER_SEC: f64 = 1_000.0;
pub const SHARD_BYTES_PER_SEC: f64 = 1_048_576.0;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket refilling `rate` tokens per second, holding at most one second's worth.
    pub fn new(rate: f64, now: Instant) -> Self {
        Self {
            rate,
            capacity: rate,
            tokens: rate,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.capacity);
        self.last = self.last.max(now);
    }

    /// How long until `n` tokens are there (zero if they are now).
    pub fn wait(&mut self, n: f64, now: Instant) -> Duration {
        self.refill(now);
        let need = n.min(self.capacity);
        if self.tokens >= need {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((need - self.tokens) / self.rate)
        }
    }

    /// Takes `n` tokens, which [`wait`](Self::wait) said are there. A request larger than
    /// the capacity empties the bucket below zero, delaying the next one accordingly.
    pub fn take(&mut self, n: f64) {
        self.tokens -= n;
    }
}

/// Both buckets of one shard.
#[derive(Debug, Clone)]
pub struct ShardLimiter {
    records: TokenBucket,
    bytes: TokenBucket,
}

impl ShardLimiter {
    /// Limits at `percent` of a shard's write limits.
    pub fn new(percent: u32, now: Instant) -> Self {
        let share = f64::from(percent.max(1)) / 100.0;
        Self {
            records: TokenBucket::new(SHARD_RECORDS_PER_SEC * share, now),
            bytes: TokenBucket::new(SHARD_BYTES_PER_SEC * share, now),
        }
    }

    /// Takes one record of `bytes` bytes if both buckets allow it now; otherwise says how
    /// long to wait and takes nothing.
    pub fn try_take(&mut self, bytes: usize, now: Instant) -> Result<(), Duration> {
        let wait = self
            .records
            .wait(1.0, now)
            .max(self.bytes.wait(bytes as f64, now));
        if wait.is_zero() {
            self.records.take(1.0);
            self.bytes.take(bytes as f64);
            Ok(())
        } else {
            Err(wait)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records let through in `secs` seconds when offering one every `step`.
    fn admitted(l: &mut ShardLimiter, bytes: usize, secs: u64, step: Duration) -> u64 {
        let t0 = Instant::now();
        let mut now = t0;
        let mut n = 0;
        while now < t0 + Duration::from_secs(secs) {
            match l.try_take(bytes, now) {
                Ok(()) => n += 1,
                Err(w) => now += w.max(step),
            }
        }
        n
    }

    #[test]
    fn records_per_second_follow_the_share() {
        // 10 s at 150 %: a full first bucket (1,500) plus 1,500/s refill.
        let mut l = ShardLimiter::new(150, Instant::now());
        let n = admitted(&mut l, 10, 10, Duration::from_micros(10));
        assert!((16_400..=16_600).contains(&n), "{n}");
        let mut l = ShardLimiter::new(100, Instant::now());
        let n = admitted(&mut l, 10, 10, Duration::from_micros(10));
        assert!((10_900..=11_100).contains(&n), "{n}");
    }

    #[test]
    fn bytes_per_second_follow_the_share() {
        // 100 KiB records: 1.5 MiB/s is 15.36 a second, plus a full first bucket.
        let mut l = ShardLimiter::new(150, Instant::now());
        let n = admitted(&mut l, 100 * 1024, 10, Duration::from_micros(10));
        assert!((166..=170).contains(&n), "{n}");
    }

    #[test]
    fn a_record_larger_than_the_bucket_passes_when_it_is_full() {
        let now = Instant::now();
        let mut l = ShardLimiter::new(50, now); // 512 KiB bucket
        assert!(l.try_take(1_000_000, now).is_ok());
        // the bucket went negative: the next byte waits for the debt to be repaid
        let w = l.try_take(1, now).unwrap_err();
        assert!(w > Duration::from_millis(900), "{w:?}");
        assert!(l.try_take(1, now + w).is_ok());
    }

    #[test]
    fn nothing_is_taken_when_refused() {
        let now = Instant::now();
        let mut l = ShardLimiter::new(100, now);
        for _ in 0..1000 {
            l.try_take(1, now).unwrap();
        }
        let w = l.try_take(1, now).unwrap_err();
        assert!(w <= Duration::from_millis(1) + Duration::from_micros(10));
        // refused attempts did not consume anything: exactly one more fits after 1 ms
        let later = now + Duration::from_millis(1);
        assert!(l.try_take(1, later).is_ok());
        assert!(l.try_take(1, later).is_err());
    }
}
