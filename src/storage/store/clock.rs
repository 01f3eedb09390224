//! The hybrid clock: timestamps are milliseconds shifted left by
//! `LOGICAL_BITS` plus a logical counter, so they order every write of a
//! process and stay above every timestamp the store has seen.

use crate::storage::format::manifest::{self};
use std::sync::atomic::{AtomicU64, Ordering};

/// Bits of the hybrid timestamp that hold the logical counter.
const LOGICAL_BITS: u32 = 18;

/// Monotonic hybrid clock: `physical_ms << 18 | logical`. Never goes
/// backwards, also across restarts (it starts above every committed `_ts`).
#[derive(Debug, Default)]
pub struct Clock {
    last: AtomicU64,
}

impl Clock {
    pub fn observe(&self, ts: u64) {
        self.last.fetch_max(ts, Ordering::SeqCst);
    }

    /// Takes `n` consecutive values of the clock, never handed out again,
    /// and returns the first: the generated keys of a write's rows. The
    /// write's timestamp, taken after, is above all of them, so a restart
    /// (whose clock starts above every committed or logged `_ts`) never
    /// numbers a row the same again.
    pub fn reserve(&self, n: u64) -> u64 {
        let physical = manifest::now_ms() << LOGICAL_BITS;
        let mut prev = self.last.load(Ordering::SeqCst);
        loop {
            let first = physical.max(prev + 1);
            let last = first + n.max(1) - 1;
            match self
                .last
                .compare_exchange(prev, last, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return first,
                Err(p) => prev = p,
            }
        }
    }

    pub fn now(&self) -> u64 {
        let physical = manifest::now_ms() << LOGICAL_BITS;
        let mut prev = self.last.load(Ordering::SeqCst);
        loop {
            let next = physical.max(prev + 1);
            match self
                .last
                .compare_exchange(prev, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return next,
                Err(p) => prev = p,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_monotonic_and_respects_observed() {
        let c = Clock::default();
        let a = c.now();
        let b = c.now();
        assert!(b > a);
        c.observe(u64::MAX / 2);
        assert!(c.now() > u64::MAX / 2);
    }

    #[test]
    fn reserved_keys_are_below_every_later_timestamp_and_never_reused() {
        let c = Clock::default();
        let first = c.reserve(1000);
        let ts = c.now();
        assert!(ts >= first + 1000, "the write's ts is above its keys");
        let again = c.reserve(5);
        assert!(again > ts);
        // A restarted clock observes the committed ts and numbers above it.
        let restarted = Clock::default();
        restarted.observe(ts);
        assert!(restarted.reserve(1) > first + 999);
    }
}
