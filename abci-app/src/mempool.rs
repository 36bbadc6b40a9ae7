//! CheckTx: admission against a copy of the last committed state.
//!
//! It runs on CometBFT's mempool connection, never on the consensus thread, and
//! reads only [`MempoolView`] — a snapshot the consensus thread replaces after each
//! commit — so it can neither see nor disturb a block being executed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use tendermint_proto::v0_38::abci::{RequestCheckTx, ResponseCheckTx};

use crate::account::{read_account, Account, Address};
use crate::codes::Code;
use crate::executor::{ProgramValidator, StateReader};
use crate::genesis::Limits;
use crate::tx::{self, Body, Refusal};

/// What CheckTx and the proposal checks may know: the committed process table
/// and the genesis limits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MempoolView {
    pub height: u64,
    pub live_pids: BTreeSet<u64>,
    pub limits: Limits,
    pub chain_id: String,
}

/// The view shared between the consensus thread (writer) and CheckTx (readers).
///
/// The lock guards only a pointer swap: readers clone the `Arc` and check against
/// it unlocked, the writer builds the new view before it takes the lock. CheckTx
/// never waits for a block being executed.
#[derive(Clone, Debug, Default)]
pub struct SharedView(Arc<RwLock<Arc<MempoolView>>>, Verified);

/// Transactions whose signature this node's CheckTx verified, by the SHA-256
/// of their bytes, so FinalizeBlock need not verify them again. Only valid
/// signatures are remembered, and a signature's validity is a function of the
/// bytes alone (the chain id is fixed), so a hit gives the answer a check
/// would: the cache changes how fast a block runs, never what it computes.
/// Bounded: the oldest are forgotten past [`Verified::CAPACITY`].
#[derive(Clone, Debug, Default)]
pub struct Verified(Arc<Mutex<VerifiedSet>>);

#[derive(Debug, Default)]
struct VerifiedSet {
    set: BTreeSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

impl Verified {
    /// Most remembered transactions (about 5 MiB).
    pub const CAPACITY: usize = 65_536;

    fn key(bytes: &[u8]) -> [u8; 32] {
        use sha2::Digest as _;
        sha2::Sha256::digest(bytes).into()
    }

    /// Remembers that `bytes` carry a valid signature.
    pub fn insert(&self, bytes: &[u8]) {
        let key = Verified::key(bytes);
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if v.set.insert(key) {
            v.order.push_back(key);
            while v.order.len() > Verified::CAPACITY {
                if let Some(old) = v.order.pop_front() {
                    v.set.remove(&old);
                }
            }
        }
    }

    /// Whether `bytes` were verified before.
    pub fn contains(&self, bytes: &[u8]) -> bool {
        let key = Verified::key(bytes);
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set
            .contains(&key)
    }
}

impl SharedView {
    /// Installs the state of a new commit.
    pub fn replace(&self, height: u64, pids: Vec<u64>, limits: Limits, chain_id: String) {
        let view = MempoolView {
            height,
            live_pids: pids.into_iter().collect(),
            limits,
            chain_id,
        };
        // A poisoned lock only means a reader panicked; the data is a plain value.
        let view = Arc::new(view);
        let mut guard = self.0.write().unwrap_or_else(|p| p.into_inner());
        *guard = view;
    }

    /// The current view (shared, immutable).
    pub fn get(&self) -> Arc<MempoolView> {
        Arc::clone(&self.0.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The signatures CheckTx has verified.
    pub fn verified(&self) -> &Verified {
        &self.1
    }
}

/// What this mempool admitted that has not committed yet, per account: the
/// fuel each pending transaction reserved, in sequence order from `first`.
///
/// CometBFT keeps admitted transactions in its mempool across blocks and
/// (with `recheck = false`, see `node/src/home.rs`) does not ask again, so
/// this is kept in step with commits instead: at each check, the pending
/// transactions the committed sequence has passed are dropped, and the next
/// sequence is the committed one plus those still pending. A pending run
/// older than [`PENDING_TTL_BLOCKS`] is dropped whole — its transactions were
/// lost (e.g. CometBFT refused them after CheckTx for a full mempool), and
/// the account must not stay stuck behind them.
#[derive(Default)]
struct Pending {
    first: u64,
    fuel: VecDeque<u64>,
    /// Committed height when the oldest pending transaction was admitted.
    since: u64,
}

/// Blocks a pending transaction may wait before its account's run is
/// forgotten (a client then resends from the committed sequence).
pub const PENDING_TTL_BLOCKS: u64 = 20;

impl Pending {
    /// The account as the next transaction must find it.
    fn account(&mut self, committed: Account, height: u64) -> Account {
        let passed = committed.sequence.saturating_sub(self.first);
        for _ in 0..passed.min(self.fuel.len() as u64) {
            self.fuel.pop_front();
            self.since = height;
        }
        self.first = committed.sequence;
        if self.fuel.is_empty() || height > self.since + PENDING_TTL_BLOCKS {
            self.fuel.clear();
            self.since = height;
        }
        let reserved = self.fuel.iter().fold(0u64, |a, f| a.saturating_add(*f));
        Account {
            sequence: committed.sequence + self.fuel.len() as u64,
            fuel: committed.fuel.saturating_sub(reserved),
        }
    }
}

/// The CheckTx handler.
#[derive(Clone)]
pub struct Mempool {
    view: SharedView,
    validator: Arc<dyn ProgramValidator>,
    reader: Arc<dyn StateReader>,
    pending: Arc<Mutex<BTreeMap<Address, Pending>>>,
}

impl Mempool {
    pub fn new(
        view: SharedView,
        validator: Arc<dyn ProgramValidator>,
        reader: Arc<dyn StateReader>,
    ) -> Self {
        Mempool {
            view,
            validator,
            reader,
            pending: Arc::default(),
        }
    }

    /// Accepts or refuses a transaction; never mutates anything.
    pub fn check_tx(&self, req: &RequestCheckTx) -> ResponseCheckTx {
        match self.check(&req.tx) {
            Ok(fuel) => ResponseCheckTx {
                code: Code::Ok.value(),
                gas_wanted: i64::try_from(fuel).unwrap_or(i64::MAX),
                ..Default::default()
            },
            Err(refusal) => ResponseCheckTx {
                code: refusal.code.value(),
                log: refusal.reason,
                codespace: "replicode".into(),
                ..Default::default()
            },
        }
    }

    /// The checks of FinalizeBlock that need no execution, against the last
    /// commit plus what this mempool admitted since: signature, sequence (the
    /// account's next after the ones already admitted), fuel, program
    /// validity, a live target pid. An outsider without fuel costs one
    /// signature check.
    fn check(&self, bytes: &[u8]) -> Result<u64, Refusal> {
        let (tx, body) = tx::decode(bytes)?;
        let view = self.view.get();
        let caller = tx::authenticate(&tx, &view.chain_id)?;
        self.view.verified().insert(bytes);
        let fuel = tx::fuel_wanted(&tx, &body, &view.limits)?;
        match &body {
            Body::Install(install) => self.validator.validate(&install.wasm).map_err(|reason| {
                Refusal::new(Code::InvalidProgram, format!("{}: {reason}", install.path))
            })?,
            Body::Stdin(tx::Stdin { pid, .. }) | Body::Kill(tx::Kill { pid }) => {
                if !view.live_pids.contains(pid) {
                    return Err(Refusal::new(
                        Code::UnknownPid,
                        format!("pid {pid} is not a live process at height {}", view.height),
                    ));
                }
            }
            // Whether the program exists is decided at execution: an install of it
            // may be ahead in the same block.
            Body::Spawn(_) | Body::Uninstall(_) => {}
        }
        // One lock for read-admit-write, so two concurrent checks cannot both
        // take the same sequence.
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let height = self.reader.committed().map_err(unavailable)?.height;
        let committed = read_account(
            self.reader
                .app_record(&caller.record_key())
                .map_err(unavailable)?,
            &caller,
        )
        .map_err(unavailable)?;
        // Only accounts with something pending are kept (the funded ones:
        // genesis bounds them), so refused keys cost no memory.
        let mut run = pending.remove(&caller).unwrap_or_default();
        let admitted = run
            .account(committed, height)
            .admit(&caller, tx.sequence, fuel);
        if admitted.is_ok() {
            run.fuel.push_back(fuel);
        }
        if !run.fuel.is_empty() {
            pending.insert(caller, run);
        }
        admitted?;
        Ok(fuel)
    }

    /// The committed view (limits for the proposal checks).
    pub fn view(&self) -> Arc<MempoolView> {
        self.view.get()
    }
}

/// A committed-state read that failed: the transaction is not admitted now
/// (CometBFT drops it from this mempool; the client may resend).
fn unavailable(e: crate::executor::ExecError) -> Refusal {
    tracing::error!(error = %e, "CheckTx could not read committed state");
    Refusal::new(
        Code::Unavailable,
        format!("this node could not read committed state: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_follows_commits_and_expires() {
        let mut run = Pending::default();
        let committed = |sequence, fuel| Account { sequence, fuel };
        assert_eq!(run.account(committed(0, 100), 1), committed(0, 100));
        run.fuel.extend([10, 20, 30]);
        assert_eq!(run.account(committed(0, 100), 1), committed(3, 40));
        // Two of them committed (and paid): one is still pending.
        assert_eq!(run.account(committed(2, 70), 2), committed(3, 40));
        // Lost for longer than the TTL: forgotten, the committed state rules.
        let late = 2 + PENDING_TTL_BLOCKS + 1;
        assert_eq!(run.account(committed(2, 70), late), committed(2, 70));
        assert!(run.fuel.is_empty());
    }

    #[test]
    fn verified_signatures_are_remembered_within_capacity() {
        let v = Verified::default();
        v.insert(b"first");
        assert!(v.contains(b"first"));
        assert!(!v.contains(b"firsT"), "keyed by the exact bytes");
        for i in 0..Verified::CAPACITY as u64 {
            v.insert(&i.to_be_bytes());
        }
        assert!(!v.contains(b"first"), "the oldest is forgotten");
        assert!(v.contains(&0u64.to_be_bytes()));
    }
}
