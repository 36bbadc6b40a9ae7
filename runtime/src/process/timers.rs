//! Waking sleepers when consensus time moves: one input per process, a bounded
//! number per block.
//!
//! Why not one input for all of them: an input is atomic, so when the sleepers
//! woken by a block shared one input, one sleeper that ran out of fuel or
//! trapped rejected the whole input — and with it the clock advance. Time then
//! stood still, and every later block woke the same sleepers and paid for the
//! same failure again. Here time always advances first; then due processes,
//! earliest deadline first (ties by pid), each get an input of their own with a
//! full budget, while every other due sleeper is held back so it cannot spend
//! it. A process whose wake-up input is rejected is killed: left asleep with a
//! passed deadline it would be due again at the next block, and at every block
//! after.
//!
//! Why a bound per block: wake-ups are work no transaction pays for, so a
//! block does at most `max_wakes` of them (a genesis limit), which keeps the
//! block's worst case at `max_wakes` × the per-input fuel. Sleepers past the
//! bound stay held for the rest of the block — not even a transaction's input
//! runs them, so no client pays for another's timer — and, having the
//! earliest deadlines, go first at the next block.

use super::error::ProcessError;
use super::host::ProcessHost;
use super::table::{InputOutcome, InputStatus, Pid, ProcState, ProcessTable};
use super::txn::Txn;

/// What waking one sleeper did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerWake {
    /// The process whose deadline passed.
    pub pid: Pid,
    /// Its wake-up input (rejected inputs have no outputs).
    pub outcome: InputOutcome,
    /// When the wake-up was rejected: the outcome of killing the process.
    pub killed: Option<InputOutcome>,
}

impl<H: ProcessHost> ProcessTable<H> {
    /// Sets logical time to `now_ns` (never backwards) and wakes at most
    /// `max_wakes` processes whose deadline passed, each as its own input with
    /// `fuel`; the rest stay held until the next call. See the module docs.
    pub fn wake_timers(
        &mut self,
        now_ns: u64,
        fuel: u64,
        max_wakes: usize,
    ) -> Result<Vec<TimerWake>, ProcessError> {
        self.held.clear();
        self.now_ns = self.now_ns.max(now_ns);
        let mut due: Vec<(u64, Pid)> = self
            .procs
            .iter()
            .filter(|(_, p)| p.live.is_some())
            .filter_map(|(pid, p)| match p.info.state {
                ProcState::Blocked(w) => w
                    .deadline_ns
                    .filter(|&d| d <= self.now_ns)
                    .map(|d| (d, *pid)),
                _ => None,
            })
            .collect();
        due.sort_unstable();
        let due: Vec<Pid> = due.into_iter().map(|(_, pid)| pid).collect();
        self.held = due.iter().copied().collect();
        let mut wakes = Vec::new();
        for &pid in &due {
            if wakes.len() == max_wakes {
                break;
            }
            self.held.remove(&pid);
            // Earlier wake-ups may have ended it or run it already (a pipe).
            if !self.is_runnable(pid) {
                continue;
            }
            let mut txn = Txn::begin(self);
            let status = self.run_until_quiet(&mut txn, fuel)?;
            let outcome = match status {
                InputStatus::Ok => txn.commit(self),
                rejected => txn.rollback(self, rejected)?,
            };
            let killed = if outcome.status == InputStatus::Ok {
                None
            } else {
                Some(self.kill(pid, fuel)?)
            };
            wakes.push(TimerWake {
                pid,
                outcome,
                killed,
            });
        }
        Ok(wakes)
    }

    /// Sleepers whose deadline passed but that the last [`Self::wake_timers`]
    /// left for the next one.
    pub fn deferred_wakes(&self) -> usize {
        self.held.len()
    }
}
