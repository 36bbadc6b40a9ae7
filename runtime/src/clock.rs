//! Logical time for guests.
//!
//! A guest never reads the host clock. Time is whatever the caller supplies — the block
//! time for a validator, `--time` for `replicode run` — and moves only in ways that are a
//! function of the guest's own actions: a fixed tick per clock read (so a guest that
//! polls the clock in a loop still sees time pass) and explicit jumps when a guest
//! sleeps through `poll_oneoff`. Every validator therefore reads the same values.

/// The clocks of WASI preview1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockId {
    /// Wall-clock time: nanoseconds since the Unix epoch.
    Realtime,
    /// Time since an arbitrary fixed point; never goes backwards.
    Monotonic,
    /// CPU time of the process (reported as logical monotonic time).
    ProcessCpu,
    /// CPU time of the thread (reported as logical monotonic time).
    ThreadCpu,
}

impl ClockId {
    /// The clock for a raw preview1 `clockid`, or `None` for an unknown id.
    pub fn from_raw(raw: u32) -> Option<ClockId> {
        match raw {
            0 => Some(ClockId::Realtime),
            1 => Some(ClockId::Monotonic),
            2 => Some(ClockId::ProcessCpu),
            3 => Some(ClockId::ThreadCpu),
            _ => None,
        }
    }
}

/// A source of logical time. Implementations must be deterministic functions of the
/// calls made on them.
pub trait Clock: Send {
    /// Reads `clock` (may advance logical time by a fixed tick).
    fn now_ns(&mut self, clock: ClockId) -> u64;
    /// Reads `clock` without advancing it (used for file timestamps and poll deadlines).
    fn peek_ns(&self, clock: ClockId) -> u64;
    /// The resolution reported for `clock`.
    fn resolution_ns(&self, clock: ClockId) -> u64;
    /// Moves logical time forward by `ns` (a guest slept).
    fn advance(&mut self, ns: u64);
}

/// The standard logical clock: a realtime base plus elapsed logical nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalClock {
    realtime_base_ns: u64,
    elapsed_ns: u64,
    tick_ns: u64,
}

impl LogicalClock {
    /// Default tick per clock read: 1 µs, so busy-waiting guests make progress.
    pub const DEFAULT_TICK_NS: u64 = 1_000;

    /// A clock whose realtime starts at `realtime_ns` and monotonic time at 0.
    pub fn new(realtime_ns: u64) -> LogicalClock {
        LogicalClock {
            realtime_base_ns: realtime_ns,
            elapsed_ns: 0,
            tick_ns: Self::DEFAULT_TICK_NS,
        }
    }

    /// Sets how far each read advances time (0 freezes time between sleeps).
    pub fn with_tick(mut self, tick_ns: u64) -> LogicalClock {
        self.tick_ns = tick_ns;
        self
    }

    /// Logical nanoseconds elapsed since the clock was created.
    pub fn elapsed_ns(&self) -> u64 {
        self.elapsed_ns
    }
}

impl Clock for LogicalClock {
    fn now_ns(&mut self, clock: ClockId) -> u64 {
        let now = self.peek_ns(clock);
        self.elapsed_ns = self.elapsed_ns.saturating_add(self.tick_ns);
        now
    }

    fn peek_ns(&self, clock: ClockId) -> u64 {
        match clock {
            ClockId::Realtime => self.realtime_base_ns.saturating_add(self.elapsed_ns),
            ClockId::Monotonic | ClockId::ProcessCpu | ClockId::ThreadCpu => self.elapsed_ns,
        }
    }

    fn resolution_ns(&self, _clock: ClockId) -> u64 {
        self.tick_ns.max(1)
    }

    fn advance(&mut self, ns: u64) {
        self.elapsed_ns = self.elapsed_ns.saturating_add(ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tick_and_sleeps_advance_deterministically() {
        let mut c = LogicalClock::new(1_000_000_000);
        assert_eq!(c.now_ns(ClockId::Realtime), 1_000_000_000);
        assert_eq!(c.now_ns(ClockId::Monotonic), 1_000);
        c.advance(5_000);
        assert_eq!(c.peek_ns(ClockId::Monotonic), 7_000);
        assert_eq!(c.peek_ns(ClockId::Realtime), 1_000_007_000);
        let frozen = LogicalClock::new(7).with_tick(0);
        assert_eq!(frozen.peek_ns(ClockId::Realtime), 7);
        assert_eq!(frozen.resolution_ns(ClockId::Monotonic), 1);
        assert_eq!(ClockId::from_raw(4), None);
    }
}
