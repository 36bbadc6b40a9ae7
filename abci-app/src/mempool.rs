//! CheckTx: admission against a copy of the last committed state.
//!
//! It runs on CometBFT's mempool connection, never on the consensus thread, and
//! reads only [`MempoolView`] — a snapshot the consensus thread replaces after each
//! commit — so it can neither see nor disturb a block being executed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};

use tendermint_proto::v0_38::abci::{RequestCheckTx, ResponseCheckTx};

use crate::account::{Account, Address};
use crate::codes::Code;
use crate::consensus::read_account;
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
pub struct SharedView(Arc<RwLock<Arc<MempoolView>>>);

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
}

/// The accounts as the mempool has them after what it admitted since the
/// commit at `height`: each admitted transaction used a sequence and reserved
/// its fuel. A new commit starts it over from committed state, and CometBFT's
/// recheck of the transactions still waiting (in their order) rebuilds it.
#[derive(Default)]
struct Admitted {
    height: u64,
    accounts: BTreeMap<Address, Account>,
}

/// The CheckTx handler.
#[derive(Clone)]
pub struct Mempool {
    view: SharedView,
    validator: Arc<dyn ProgramValidator>,
    reader: Arc<dyn StateReader>,
    admitted: Arc<Mutex<Admitted>>,
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
            admitted: Arc::default(),
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
        let mut admitted = self.admitted.lock().unwrap_or_else(|p| p.into_inner());
        let height = self.reader.committed().map_err(unavailable)?.height;
        if admitted.height != height {
            *admitted = Admitted {
                height,
                accounts: BTreeMap::new(),
            };
        }
        let account = match admitted.accounts.get(&caller) {
            Some(account) => *account,
            None => read_account(
                self.reader
                    .app_record(&caller.record_key())
                    .map_err(unavailable)?,
                &caller,
            )
            .map_err(unavailable)?,
        };
        let paid = account.admit(&caller, tx.sequence, fuel)?;
        admitted.accounts.insert(caller, paid);
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
