//! Target 1: transaction bytes → decode → CheckTx → FinalizeBlock on a real
//! `Core<Machine>`.
//!
//! Each input becomes one transaction: raw bytes, or (mostly) a structured
//! envelope — any body, fuel, signer (funded or not), sequence (right, off by
//! one, arbitrary), chain id and version — possibly mutated after signing. It
//! is checked by the node's CheckTx and then executed alone in the next block.
//!
//! Oracles (each a [`Finding`] when it fails):
//! - nothing panics, FinalizeBlock and Commit never fail (only host failures
//!   may, and this disk is fine);
//! - CheckTx and FinalizeBlock agree on refusals decided before payment: the
//!   stateless ones (malformed, version, size, signature) have the same code;
//!   a sequence or fuel refusal on either side is a refusal before payment on
//!   the other (the block's state is the committed state CheckTx read; the two
//!   may meet a dead pid and a wrong sequence in either order). So CheckTx
//!   never admits what a block would refuse unpaid;
//! - a transaction refused before payment (`gas_wanted` 0) leaves the app
//!   hash unchanged;
//! - a paid one changes its account by exactly one sequence and its
//!   `gas_wanted` of fuel.

use arbitrary::Unstructured;
use prost::bytes::Bytes;
use replicode_abci::account::{read_account, Account, Address, Signer};
use replicode_abci::codes::Code;
use replicode_abci::consensus::Core;
use replicode_abci::executor::{Executor as _, StateReader};
use replicode_abci::machine::Machine;
use replicode_abci::mempool::{Mempool, SharedView};
use replicode_abci::tx::{self, Body, EnvVar, Install, Kill, Spawn, Stdin, Tx, Uninstall};
use tendermint_proto::google::protobuf::Timestamp;
use tendermint_proto::v0_38::abci::{
    ExecTxResult, RequestCheckTx, RequestFinalizeBlock, RequestInitChain,
};

use crate::Finding;

/// The chain every case runs on.
pub const CHAIN_ID: &str = "fuzz";

/// Seed of the funded key; [`UNFUNDED_SEED`] signs validly but has no fuel.
const FUNDED_SEED: u8 = 1;
const UNFUNDED_SEED: u8 = 2;
const GENESIS_SECONDS: i64 = 1_700_000_000;

/// The smallest program the validator accepts: an empty `_start` and one page
/// of exported memory.
pub const TINY_WASM: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03, 0x02,
    0x01, 0x00, 0x05, 0x03, 0x01, 0x00, 0x01, 0x07, 0x13, 0x02, 0x06, b'_', b's', b't', b'a', b'r',
    b't', 0x00, 0x00, 0x06, b'm', b'e', b'm', b'o', b'r', b'y', 0x02, 0x00, 0x0a, 0x04, 0x01, 0x02,
    0x00, 0x0b,
];

/// Refusals that need no state: CheckTx and FinalizeBlock give the same code.
const STATELESS: [Code; 4] = [
    Code::Malformed,
    Code::UnsupportedVersion,
    Code::TooLarge,
    Code::BadSignature,
];

/// Refusals by the signer's account, before payment.
const BY_ACCOUNT: [Code; 2] = [Code::WrongSequence, Code::InsufficientFuel];

/// A fresh single-validator chain: genesis funds one key, block 1 is committed
/// (CheckTx reads committed state), blocks keep the genesis time.
pub struct Chain {
    core: Core<Machine>,
    mempool: Mempool,
    reader: std::sync::Arc<dyn StateReader>,
    height: i64,
    _dir: tempfile::TempDir,
}

impl Chain {
    pub fn new() -> Result<Chain, Finding> {
        let setup = |e: &dyn std::fmt::Display| Finding::new("setup", e.to_string());
        let dir = tempfile::tempdir().map_err(|e| setup(&e))?;
        let machine = Machine::open(dir.path()).map_err(|e| setup(&e))?;
        let reader = machine.reader();
        let view = SharedView::default();
        let validator = Machine::validator();
        let mut core =
            Core::new(machine, validator.clone(), view.clone()).map_err(|e| setup(&e))?;
        let mempool = Mempool::new(view, validator, reader.clone());
        let funded = Signer::from_seed(FUNDED_SEED, CHAIN_ID).genesis_account(1 << 50);
        let app_state = format!(
            r#"{{"limits":{{"fuel_per_tx":2000000,"memory_bytes":1048576,"storage_quota_bytes":4194304,"max_processes":8,"max_block_fuel":100000000000}},"accounts":[{{"address":"{}","fuel":{}}}]}}"#,
            funded.address, funded.fuel
        );
        core.init_chain(RequestInitChain {
            app_state_bytes: Bytes::from(app_state),
            initial_height: 1,
            chain_id: CHAIN_ID.into(),
            time: Some(timestamp()),
            ..Default::default()
        })
        .map_err(|e| setup(&e))?;
        let mut chain = Chain {
            core,
            mempool,
            reader,
            height: 0,
            _dir: dir,
        };
        chain.block(vec![])?;
        Ok(chain)
    }

    /// Finalizes and commits the next block; a failure is a finding.
    fn block(&mut self, txs: Vec<Vec<u8>>) -> Result<Vec<ExecTxResult>, Finding> {
        self.height += 1;
        let res = self
            .core
            .finalize_block(RequestFinalizeBlock {
                txs: txs.into_iter().map(Bytes::from).collect(),
                height: self.height,
                hash: Bytes::from(vec![self.height as u8; 32]),
                time: Some(timestamp()),
                ..Default::default()
            })
            .map_err(|e| Finding::new("FinalizeBlock failed", e.to_string()))?;
        self.core
            .commit()
            .map_err(|e| Finding::new("Commit failed", e.to_string()))?;
        Ok(res.tx_results)
    }

    fn root(&self) -> Result<Vec<u8>, Finding> {
        self.reader
            .committed()
            .map(|c| c.app_hash)
            .map_err(|e| Finding::new("read root", e.to_string()))
    }

    fn account(&self, address: &Address) -> Result<Account, Finding> {
        let record = self
            .reader
            .app_record(&address.record_key())
            .map_err(|e| Finding::new("read account", e.to_string()))?;
        read_account(record, address).map_err(|e| Finding::new("read account", e.to_string()))
    }

    /// One case: generate, check, execute, judge.
    pub fn run(&mut self, data: &[u8]) -> Result<(), Finding> {
        let mut u = Unstructured::new(data);
        let bytes = self.generate(&mut u).unwrap_or_default();
        let check = self.mempool.check_tx(&RequestCheckTx {
            tx: Bytes::from(bytes.clone()),
            ..Default::default()
        });
        let signer = tx::decode(&bytes)
            .ok()
            .and_then(|(t, _)| t.signer_address());
        let before_root = self.root()?;
        let before_account = signer.map(|a| self.account(&a)).transpose()?;
        let results = self.block(vec![bytes])?;
        let result = results
            .first()
            .ok_or_else(|| Finding::new("no result", "a block of one tx has no result"))?;
        let code = Code::from_value(result.code);
        let check_code = Code::from_value(check.code);
        let is = |c: Option<Code>, set: &[Code]| c.is_some_and(|c| set.contains(&c));
        let unpaid_in_block = result.code != 0 && result.gas_wanted == 0;
        let disagree = ((is(check_code, &STATELESS) || is(code, &STATELESS))
            && check.code != result.code)
            || (is(check_code, &BY_ACCOUNT) && !unpaid_in_block)
            || (is(code, &BY_ACCOUNT) && check.code == 0);
        if disagree {
            return Err(Finding::new(
                "CheckTx and FinalizeBlock disagree",
                format!(
                    "CheckTx {} ({}), FinalizeBlock {} ({})",
                    check.code, check.log, result.code, result.log
                ),
            ));
        }
        if unpaid_in_block {
            if self.root()? != before_root {
                return Err(Finding::new(
                    "a refused transaction changed the state",
                    format!("code {}: {}", result.code, result.log),
                ));
            }
            return Ok(());
        }
        let (Some(address), Some(before)) = (signer, before_account) else {
            return Err(Finding::new(
                "a paid transaction has no signer",
                format!("code {}", result.code),
            ));
        };
        let after = self.account(&address)?;
        let paid = u64::try_from(result.gas_wanted).unwrap_or(u64::MAX);
        if after.sequence != before.sequence + 1 || after.fuel != before.fuel.wrapping_sub(paid) {
            return Err(Finding::new(
                "a paid transaction did not pay exactly once",
                format!(
                    "code {}: account {before:?} -> {after:?}, gas_wanted {paid}",
                    result.code
                ),
            ));
        }
        Ok(())
    }

    /// A transaction from the input's bytes.
    fn generate(&self, u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<u8>> {
        if u.ratio(1, 10)? {
            return u.arbitrary();
        }
        let mut tx = Tx::new(body(u)?);
        tx.fuel = match u.int_in_range(0..=3)? {
            0 => 0,
            1 => u.int_in_range(0..=5_000_000)?,
            2 => u.arbitrary()?,
            _ => 2_000_000,
        };
        if u.ratio(1, 20)? {
            tx.version = u.arbitrary()?;
        }
        let seed = if u.ratio(1, 5)? {
            UNFUNDED_SEED
        } else {
            FUNDED_SEED
        };
        let chain_id = if u.ratio(1, 20)? { "other" } else { CHAIN_ID };
        let signer = Signer::from_seed(seed, chain_id);
        let next = self
            .account(&signer.address())
            .map(|a| a.sequence)
            .unwrap_or(0);
        let sequence = match u.int_in_range(0..=7)? {
            0 => next.wrapping_add(1),
            1 => next.wrapping_sub(1),
            2 => u.arbitrary()?,
            _ => next,
        };
        let mut bytes = if u.ratio(1, 20)? {
            tx.to_bytes()
        } else {
            signer.sign_with(tx, sequence).to_bytes()
        };
        if u.ratio(1, 8)? && !bytes.is_empty() {
            match u.int_in_range(0..=2)? {
                0 => {
                    let at = u.choose_index(bytes.len())?;
                    bytes[at] ^= u.int_in_range(1..=255)?;
                }
                1 => bytes.truncate(u.choose_index(bytes.len())?),
                _ => bytes.extend(u.arbitrary::<Vec<u8>>()?),
            }
        }
        Ok(bytes)
    }
}

impl Chain {
    /// Runs the cases of `inputs` in order on this chain.
    pub fn run_all<'a>(
        &mut self,
        inputs: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(), Finding> {
        inputs.into_iter().try_for_each(|data| self.run(data))
    }
}

fn timestamp() -> Timestamp {
    Timestamp {
        seconds: GENESIS_SECONDS,
        nanos: 0,
    }
}

fn path(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    const PATHS: [&str; 9] = [
        "/bin/a",
        "/bin/b",
        "/bin/a/b",
        "/",
        "bin/a",
        "/bin/../a",
        "/etc/motd",
        "/bin/",
        "/x",
    ];
    if u.ratio(1, 6)? {
        return u.arbitrary();
    }
    Ok(PATHS[u.choose_index(PATHS.len())?].to_string())
}

fn body(u: &mut Unstructured<'_>) -> arbitrary::Result<Body> {
    Ok(match u.int_in_range(0..=5)? {
        0 => Body::Install(Install {
            path: path(u)?,
            wasm: match u.int_in_range(0..=2)? {
                0 => TINY_WASM.to_vec(),
                1 => {
                    let mut w = TINY_WASM.to_vec();
                    let at = u.choose_index(w.len())?;
                    w[at] = u.arbitrary()?;
                    w
                }
                _ => u.arbitrary()?,
            },
        }),
        1 | 2 => Body::Spawn(Spawn {
            path: path(u)?,
            args: u
                .arbitrary_iter::<String>()?
                .take(4)
                .collect::<Result<_, _>>()?,
            env: (0..u.int_in_range(0..=2)?)
                .map(|_| {
                    Ok(EnvVar {
                        key: u.arbitrary()?,
                        value: u.arbitrary()?,
                    })
                })
                .collect::<arbitrary::Result<_>>()?,
            public: u.arbitrary()?,
        }),
        3 => Body::Stdin(Stdin {
            pid: u.int_in_range(0..=6)?,
            data: u.arbitrary()?,
            eof: u.arbitrary()?,
        }),
        4 => Body::Kill(Kill {
            pid: u.int_in_range(0..=6)?,
        }),
        _ => Body::Uninstall(Uninstall { path: path(u)? }),
    })
}
