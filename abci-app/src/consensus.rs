//! InitChain, FinalizeBlock and Commit: the state machine, run strictly in order
//! on the driver thread.

use std::sync::Arc;

use prost::bytes::Bytes;
use tendermint_proto::v0_38::abci::{
    Event, EventAttribute, ExecTxResult, RequestFinalizeBlock, RequestInitChain, ResponseCommit,
    ResponseFinalizeBlock, ResponseInitChain,
};

use crate::account::{self, read_account, Account, Address};
use crate::codes::Code;
use crate::context::block_context;
use crate::error::AppError;
use crate::executor::{ExecError, Executor, Input, Outcome, ProgramValidator, Status};
use crate::genesis::{GenesisState, Limits};
use crate::limits::{LOG_BUDGET_BYTES, MAX_BLOCK_RESULTS_BYTES, MAX_LOG_BYTES};
use crate::mempool::SharedView;
use crate::result::TxOutput;
use crate::tx::{self, Body, Refusal};

/// The consensus-side state: the executor plus what the app derives from it.
pub struct Core<E: Executor> {
    pub(crate) exec: E,
    pub(crate) validator: Arc<dyn ProgramValidator>,
    pub(crate) view: SharedView,
    limits: Limits,
    /// The chain id signatures must cover (from state; empty before genesis).
    chain_id: String,
    /// Height of the block finalized but not yet committed.
    pending: Option<u64>,
}

impl<E: Executor> Core<E> {
    /// Wraps an executor opened on its store; publishes its committed pids to the mempool.
    pub fn new(
        exec: E,
        validator: Arc<dyn ProgramValidator>,
        view: SharedView,
    ) -> Result<Self, AppError> {
        let limits = exec.limits()?;
        let chain_id = match exec.reader().app_record(account::CHAIN_ID_KEY)? {
            Some(bytes) => String::from_utf8(bytes)
                .map_err(|_| ExecError::new("read chain id", "the stored chain id is not UTF-8"))?,
            None => String::new(),
        };
        let core = Core {
            exec,
            validator,
            view,
            limits,
            chain_id,
            pending: None,
        };
        core.publish_view()?;
        Ok(core)
    }

    fn publish_view(&self) -> Result<(), AppError> {
        let committed = self.exec.committed()?;
        let pids = self.exec.live_pids()?;
        self.view.replace(
            committed.height,
            pids,
            self.limits.clone(),
            self.chain_id.clone(),
        );
        Ok(())
    }

    /// Applies genesis; its root is the app hash CometBFT puts in block 1.
    pub fn init_chain(&mut self, req: RequestInitChain) -> Result<ResponseInitChain, AppError> {
        let genesis = GenesisState::from_bytes(&req.app_state_bytes)?;
        // Validate every entry before touching the executor, so a bad genesis
        // fails loudly with the entry's name.
        for program in genesis.programs()? {
            self.validator.validate(&program.bytes).map_err(|reason| {
                crate::genesis::GenesisError::Entry {
                    what: "program",
                    path: program.path.clone(),
                    reason,
                }
            })?;
        }
        genesis.files()?;
        genesis.spawns()?;
        let ctx = block_context(
            req.initial_height.saturating_sub(1),
            req.time.as_ref(),
            req.chain_id.as_bytes(),
        );
        let mut records = vec![(
            account::CHAIN_ID_KEY.to_vec(),
            req.chain_id.as_bytes().to_vec(),
        )];
        for funded in &genesis.accounts {
            let account = Account {
                sequence: 0,
                fuel: funded.fuel,
            };
            records.push((funded.address.record_key(), account.to_record().to_vec()));
        }
        let app_hash = self.exec.init_chain(&genesis, &ctx, &records)?;
        self.limits = genesis.limits.clone();
        self.chain_id = req.chain_id.clone();
        // Proposals for the first block are checked against these limits.
        self.view
            .replace(0, Vec::new(), self.limits.clone(), self.chain_id.clone());
        Ok(ResponseInitChain {
            app_hash: Bytes::from(app_hash),
            ..Default::default()
        })
    }

    /// Executes the block's transactions in order.
    pub fn finalize_block(
        &mut self,
        req: RequestFinalizeBlock,
    ) -> Result<ResponseFinalizeBlock, AppError> {
        if let Some(pending) = self.pending {
            return Err(AppError::Protocol {
                request: "FinalizeBlock",
                reason: format!("block {pending} was finalized but never committed"),
            });
        }
        let ctx = block_context(req.height, req.time.as_ref(), &req.hash);
        self.exec.begin_block(&ctx)?;
        let decoded: Vec<Result<(tx::Tx, Body), Refusal>> =
            req.txs.iter().map(|bytes| tx::decode(bytes)).collect();
        // Signatures this node's CheckTx already verified are not checked
        // again (see `mempool::Verified`); the rest are, in batches.
        let verified = self.view.verified();
        let known: Vec<Option<Address>> = req
            .txs
            .iter()
            .zip(&decoded)
            .map(|(bytes, d)| match d {
                Ok((tx, _)) if verified.contains(bytes) => tx.signer_address(),
                _ => None,
            })
            .collect();
        let signed: Vec<Option<&tx::Tx>> = decoded
            .iter()
            .zip(&known)
            .map(|(d, known)| match known {
                Some(_) => None,
                None => d.as_ref().ok().map(|(tx, _)| tx),
            })
            .collect();
        let signers: Vec<Option<Result<Address, Refusal>>> =
            tx::authenticate_all(&signed, &self.chain_id)
                .into_iter()
                .zip(known)
                .map(|(checked, known)| known.map(Ok).or(checked))
                .collect();
        let mut tx_results = Vec::with_capacity(req.txs.len());
        let mut block_fuel = 0u64;
        for (decoded, signer) in decoded.into_iter().zip(signers) {
            tx_results.push(self.deliver(decoded, signer, &mut block_fuel)?);
        }
        let dropped = fit_results(&mut tx_results, MAX_BLOCK_RESULTS_BYTES);
        if dropped > 0 {
            tracing::warn!(
                height = ctx.height,
                dropped,
                "outputs dropped: the block's results exceed {MAX_BLOCK_RESULTS_BYTES} bytes"
            );
        }
        let app_hash = self.exec.end_block()?;
        self.pending = Some(ctx.height);
        Ok(ResponseFinalizeBlock {
            tx_results,
            app_hash: Bytes::from(app_hash),
            ..Default::default()
        })
    }

    /// Makes the finalized block durable; a failure here stops the node.
    pub fn commit(&mut self) -> Result<ResponseCommit, AppError> {
        let Some(height) = self.pending.take() else {
            return Err(AppError::Protocol {
                request: "Commit",
                reason: "no block was finalized".into(),
            });
        };
        let committed = self.exec.commit()?;
        if committed.height != height {
            return Err(AppError::Protocol {
                request: "Commit",
                reason: format!(
                    "executor committed height {} for block {height}",
                    committed.height
                ),
            });
        }
        self.publish_view()?;
        Ok(ResponseCommit { retain_height: 0 })
    }

    /// One transaction: refusals and guest failures become codes; host failures
    /// propagate. `block_fuel` is what the block's earlier transactions wanted:
    /// one that would take it past `max_block_fuel` is refused unexecuted
    /// (ProcessProposal rejects such blocks; this holds the bound regardless).
    ///
    /// Before anything runs, the signer pays: the signature must verify for
    /// this chain, the sequence must be the account's next, and the account
    /// must hold the fuel the transaction wants. Past that point the sequence
    /// is used and the fuel spent, whatever the input's outcome — so no
    /// transaction runs twice, and none runs unpaid.
    ///
    /// `decoded` is [`tx::decode`] of the transaction's bytes and `signer`
    /// its [`tx::authenticate_all`] answer (the block's signatures are checked
    /// together).
    fn deliver(
        &mut self,
        decoded: Result<(tx::Tx, Body), Refusal>,
        signer: Option<Result<Address, Refusal>>,
        block_fuel: &mut u64,
    ) -> Result<ExecTxResult, AppError> {
        let (tx, body) = match decoded {
            Ok(decoded) => decoded,
            Err(refusal) => return Ok(refused(&refusal, "invalid")),
        };
        // Every decoded transaction has its answer; `None` cannot happen,
        // and would only mean checking it alone.
        let signer = signer.unwrap_or_else(|| tx::authenticate(&tx, &self.chain_id));
        let caller = match signer {
            Ok(address) => address,
            Err(refusal) => return Ok(refused(&refusal, tx.kind())),
        };
        let fuel = match tx::fuel_wanted(&tx, &body, &self.limits) {
            Ok(fuel) => fuel,
            Err(refusal) => return Ok(refused(&refusal, tx.kind())),
        };
        let after = block_fuel.saturating_add(fuel);
        if after > self.limits.max_block_fuel {
            let refusal = Refusal::new(
                Code::LimitExceeded,
                format!(
                    "the block's transactions want {after} fuel, the block limit is {}",
                    self.limits.max_block_fuel
                ),
            );
            return Ok(refused(&refusal, tx.kind()));
        }
        let account = self.account(&caller)?;
        let paid = match account.admit(&caller, tx.sequence, fuel) {
            Ok(paid) => paid,
            Err(refusal) => return Ok(refused(&refusal, tx.kind())),
        };
        self.exec
            .put_app_record(&caller.record_key(), &paid.to_record())?;
        *block_fuel = after;
        if let Body::Install(install) = &body {
            if let Err(reason) = self.validator.validate(&install.wasm) {
                let refusal =
                    Refusal::new(Code::InvalidProgram, format!("{}: {reason}", install.path));
                // Paid for: the result says what it cost.
                return Ok(ExecTxResult {
                    gas_wanted: i64::try_from(fuel).unwrap_or(i64::MAX),
                    ..refused(&refusal, "install")
                });
            }
        }
        let env: Vec<(String, String)> = match &body {
            Body::Spawn(s) => s
                .env
                .iter()
                .map(|v| (v.key.clone(), v.value.clone()))
                .collect(),
            _ => Vec::new(),
        };
        let input = match &body {
            Body::Install(i) => Input::Install {
                path: &i.path,
                wasm: &i.wasm,
            },
            Body::Spawn(s) => Input::Spawn {
                path: &s.path,
                args: &s.args,
                env: &env,
                public: s.public,
            },
            Body::Stdin(s) => Input::Stdin {
                pid: s.pid,
                data: &s.data,
                eof: s.eof,
            },
            Body::Kill(k) => Input::Kill { pid: k.pid },
            Body::Uninstall(u) => Input::Uninstall { path: &u.path },
        };
        let outcome = self.exec.execute(&input, &caller, fuel)?;
        Ok(executed(tx.kind(), outcome, fuel))
    }

    /// `address`'s account in the block's working state.
    fn account(&self, address: &Address) -> Result<Account, AppError> {
        Ok(read_account(
            self.exec.app_record(&address.record_key())?,
            address,
        )?)
    }
}

/// What a result says when its output was dropped for space.
pub const OUTPUT_DROPPED: &str = "output dropped: block results size limit";

/// Each result is a length-delimited field of ResponseFinalizeBlock: a tag
/// byte and a varint length of at most 5 bytes.
const RESULT_FRAMING: usize = 6;

/// `result` without its output: no data, `info` = [`OUTPUT_DROPPED`], only the
/// first (`replicode.tx`) event.
fn strip(result: &mut ExecTxResult) {
    result.data = Bytes::new();
    result.info = OUTPUT_DROPPED.into();
    result.events.truncate(1);
}

/// Cuts `log` to at most `max` bytes at a character boundary.
fn cut_log(log: &mut String, max: usize) {
    let mut cut = max.min(log.len());
    while !log.is_char_boundary(cut) {
        cut -= 1;
    }
    log.truncate(cut);
}

/// How many log bytes each result of a block of `count` may keep: logs share
/// [`LOG_BUDGET_BYTES`], at most [`MAX_LOG_BYTES`] each.
pub fn log_allowance(count: usize) -> usize {
    (LOG_BUDGET_BYTES / count.max(1)).min(MAX_LOG_BYTES)
}

/// Keeps the block's results within `budget` encoded bytes.
///
/// Every log is first cut to [`log_allowance`] (a function of the number of
/// results only). Sizes are then reckoned with each log counted at that
/// allowance, never at its actual length: CometBFT does not hash logs, so a
/// log that differed between validators must not change which outputs are
/// kept (`data` *is* hashed). In block order a result keeps its output only if
/// it fits together with the stripped form of every later result (see
/// [`strip`]); otherwise it is stripped. The total stays within `budget` as
/// long as the stripped forms alone fit, which [`crate::limits::MAX_BLOCK_TXS`]
/// × [`crate::limits::MAX_STRIPPED_RESULT_BYTES`] guarantees. Returns how many
/// results lost their output.
pub fn fit_results(results: &mut [ExecTxResult], budget: usize) -> usize {
    let allowance = log_allowance(results.len());
    // Field tag plus a varint length of at most 2 bytes (allowance < 16 KiB).
    let log_cost = allowance + 3;
    for result in results.iter_mut() {
        cut_log(&mut result.log, allowance);
    }
    let stripped_len: Vec<usize> = results
        .iter()
        .map(|r| stripped_len(r) + log_cost + RESULT_FRAMING)
        .collect();
    let mut rest: usize = stripped_len.iter().sum();
    let mut used = 0usize;
    let mut dropped = 0;
    for (result, stripped) in results.iter_mut().zip(stripped_len) {
        rest -= stripped;
        let full = len_without_log(result) + log_cost + RESULT_FRAMING;
        if used + full + rest <= budget {
            used += full;
        } else {
            strip(result);
            used += stripped;
            dropped += 1;
        }
    }
    dropped
}

/// Encoded length of `r` without its `log` field (computed, not re-encoded).
fn len_without_log(r: &ExecTxResult) -> usize {
    use prost::Message as _;
    let log = if r.log.is_empty() {
        0
    } else {
        prost::encoding::string::encoded_len(3, &r.log)
    };
    r.encoded_len() - log
}

/// Encoded length of [`strip`]`(r)` without its `log` field, computed field by
/// field so that no result is cloned.
fn stripped_len(r: &ExecTxResult) -> usize {
    use prost::encoding::{int64, message, string, uint32};
    let mut len = prost::encoding::key_len(4)
        + prost::encoding::encoded_len_varint(OUTPUT_DROPPED.len() as u64)
        + OUTPUT_DROPPED.len();
    if r.code != 0 {
        len += uint32::encoded_len(1, &r.code);
    }
    if r.gas_wanted != 0 {
        len += int64::encoded_len(5, &r.gas_wanted);
    }
    if r.gas_used != 0 {
        len += int64::encoded_len(6, &r.gas_used);
    }
    if let Some(event) = r.events.first() {
        len += message::encoded_len(7, event);
    }
    if !r.codespace.is_empty() {
        len += string::encoded_len(8, &r.codespace);
    }
    len
}

fn refused(refusal: &Refusal, kind: &str) -> ExecTxResult {
    ExecTxResult {
        code: refusal.code.value(),
        log: refusal.reason.clone(),
        events: vec![tx_event(kind, 0, refusal.code)],
        ..Default::default()
    }
}

fn executed(kind: &str, outcome: Outcome, fuel_limit: u64) -> ExecTxResult {
    let (code, log) = match &outcome.status {
        Status::Ok => (Code::Ok, String::new()),
        Status::OutOfFuel => (
            Code::OutOfFuel,
            format!(
                "pid {} ran out of fuel ({fuel_limit} per transaction)",
                outcome.pid
            ),
        ),
        Status::Trap(reason) => (Code::Trap, format!("pid {} trapped: {reason}", outcome.pid)),
        Status::Refused(code, reason) => (*code, reason.clone()),
    };
    let mut events = vec![tx_event(kind, outcome.pid, code)];
    events.extend(outcome.exits.iter().map(|exit| Event {
        r#type: "replicode.exit".into(),
        attributes: vec![
            attr("pid", exit.pid.to_string()),
            attr("status", exit.code.to_string()),
        ],
    }));
    let data = TxOutput {
        pid: outcome.pid,
        writes: outcome.writes,
        exits: outcome.exits,
    }
    .to_bytes();
    ExecTxResult {
        code: code.value(),
        data: Bytes::from(data),
        log,
        gas_wanted: i64::try_from(fuel_limit).unwrap_or(i64::MAX),
        gas_used: i64::try_from(outcome.fuel_used).unwrap_or(i64::MAX),
        events,
        ..Default::default()
    }
}

fn tx_event(kind: &str, pid: u64, code: Code) -> Event {
    Event {
        r#type: "replicode.tx".into(),
        attributes: vec![
            attr("kind", kind.into()),
            attr("pid", pid.to_string()),
            attr("code", code.name().into()),
        ],
    }
}

fn attr(key: &str, value: String) -> EventAttribute {
    EventAttribute {
        key: key.into(),
        value,
        index: true,
    }
}

#[cfg(test)]
mod fit_tests {
    use super::*;
    use prost::Message as _;

    fn result(code: u32, gas: i64, events: usize, codespace: &str) -> ExecTxResult {
        ExecTxResult {
            code,
            data: Bytes::from(vec![1u8; 300]),
            log: "some log".into(),
            info: "info".into(),
            gas_wanted: gas,
            gas_used: gas / 2,
            events: (0..events as u64)
                .map(|pid| tx_event("stdin", pid, Code::Ok))
                .collect(),
            codespace: codespace.into(),
        }
    }

    #[test]
    fn computed_lengths_equal_the_encoding() {
        for r in [
            result(0, 0, 0, ""),
            result(5, 1 << 40, 1, ""),
            result(u32::MAX, i64::MAX, 3, "space"),
        ] {
            let mut stripped = r.clone();
            strip(&mut stripped);
            stripped.log.clear();
            assert_eq!(stripped_len(&r), stripped.encoded_len(), "{r:?}");
            let mut no_log = r.clone();
            no_log.log.clear();
            assert_eq!(len_without_log(&r), no_log.encoded_len(), "{r:?}");
        }
    }
}
