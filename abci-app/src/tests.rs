//! The ABCI state machine driven directly against the in-memory executor.

use std::sync::Arc;

use prost::bytes::Bytes;
use tendermint_proto::google::protobuf::Timestamp;
use tendermint_proto::v0_38::abci::{
    RequestCheckTx, RequestFinalizeBlock, RequestInfo, RequestInitChain, RequestQuery,
    ResponseFinalizeBlock,
};

use crate::account::Signer;
use crate::codes::Code;
use crate::consensus::Core;
use crate::executor::Executor as _;
use crate::info::paths;
use crate::memory::{MagicValidator, MemoryExecutor};
use crate::mempool::{Mempool, SharedView};
use crate::result::TxOutput;
use crate::tx::{Body, Install, Kill, Spawn, Stdin, Tx};

const WASM: &[u8] = b"\0asm\x01\0\0\0";

/// A fresh chain, its mempool, and the funded test account (sequence 0).
fn core() -> (Core<MemoryExecutor>, Mempool, Signer) {
    let view = SharedView::default();
    let validator = Arc::new(MagicValidator);
    let exec = MemoryExecutor::default();
    let reader = exec.reader();
    let core = Core::new(exec, validator.clone(), view.clone()).expect("core");
    (core, Mempool::new(view, validator, reader), signer())
}

/// The test account: funded by every genesis of these tests.
fn signer() -> Signer {
    Signer::from_seed(1, "test")
}

/// `app_state` with the test account funded with `FUNDS`.
fn funded(app_state: &[u8]) -> Vec<u8> {
    let mut state: serde_json::Value = serde_json::from_slice(app_state).expect("test genesis");
    state["accounts"] = serde_json::json!([{"address": signer().address(), "fuel": FUNDS}]);
    serde_json::to_vec(&state).expect("json")
}

const FUNDS: u64 = 1 << 40;

fn genesis(core: &mut Core<MemoryExecutor>) -> Vec<u8> {
    genesis_with(
        core,
        br#"{"limits":{"fuel_per_tx":1000,"memory_bytes":1048576,"storage_quota_bytes":1048576,"max_processes":4}}"#,
    )
}

fn genesis_with(core: &mut Core<MemoryExecutor>, app_state: &[u8]) -> Vec<u8> {
    let res = core
        .init_chain(RequestInitChain {
            app_state_bytes: Bytes::from(funded(app_state)),
            initial_height: 1,
            chain_id: "test".into(),
            ..Default::default()
        })
        .expect("init chain");
    res.app_hash.to_vec()
}

fn block(core: &mut Core<MemoryExecutor>, height: i64, txs: Vec<Vec<u8>>) -> ResponseFinalizeBlock {
    let res = core
        .finalize_block(RequestFinalizeBlock {
            txs: txs.into_iter().map(Bytes::from).collect(),
            height,
            hash: Bytes::from(vec![height as u8; 32]),
            time: Some(Timestamp {
                seconds: 1_700_000_000 + height,
                nanos: 0,
            }),
            ..Default::default()
        })
        .expect("finalize");
    core.commit().expect("commit");
    res
}

fn tx(s: &mut Signer, body: Body) -> Vec<u8> {
    s.sign_bytes(Tx::new(body))
}

fn install(s: &mut Signer) -> Vec<u8> {
    tx(
        s,
        Body::Install(Install {
            path: "/bin/echo".into(),
            wasm: WASM.to_vec(),
        }),
    )
}

fn spawn(s: &mut Signer) -> Vec<u8> {
    tx(
        s,
        Body::Spawn(Spawn {
            path: "/bin/echo".into(),
            args: vec![],
            env: vec![],
            public: false,
        }),
    )
}

fn stdin(s: &mut Signer, pid: u64, data: &[u8]) -> Vec<u8> {
    tx(
        s,
        Body::Stdin(Stdin {
            pid,
            data: data.to_vec(),
            eof: false,
        }),
    )
}

#[test]
fn block_executes_in_order_with_codes_and_output() {
    let (mut core, _, mut s) = core();
    genesis(&mut core);
    let res = block(
        &mut core,
        1,
        vec![
            install(&mut s),
            spawn(&mut s),
            stdin(&mut s, 1, b"hi"),
            vec![0xff, 0x01],
            stdin(&mut s, 9, b"x"),
        ],
    );
    let codes: Vec<u32> = res.tx_results.iter().map(|r| r.code).collect();
    assert_eq!(
        codes,
        vec![
            Code::Ok.value(),
            Code::Ok.value(),
            Code::Ok.value(),
            Code::Malformed.value(),
            Code::UnknownPid.value()
        ]
    );
    let out = TxOutput::from_bytes(&res.tx_results[2].data).expect("output decodes");
    assert_eq!(out.stdout_of(1), b"HI");
    assert_eq!(res.tx_results[2].gas_used, 2);
    assert!(
        res.tx_results[4].log.contains("9"),
        "log names the pid: {}",
        res.tx_results[4].log
    );
    let kinds: Vec<&str> = res
        .tx_results
        .iter()
        .map(|r| r.events[0].attributes[0].value.as_str())
        .collect();
    assert_eq!(kinds, vec!["install", "spawn", "stdin", "invalid", "stdin"]);
}

#[test]
fn same_blocks_same_app_hash_different_blocks_different() {
    let run = |data: &[u8]| {
        let (mut core, _, mut s) = core();
        genesis(&mut core);
        block(&mut core, 1, vec![install(&mut s), spawn(&mut s)]);
        block(&mut core, 2, vec![stdin(&mut s, 1, data)])
            .app_hash
            .to_vec()
    };
    assert_eq!(run(b"a"), run(b"a"));
    assert_ne!(run(b"a"), run(b"bb"));
}

#[test]
fn info_reports_last_commit() {
    let (mut core, _, mut s) = core();
    genesis(&mut core);
    let info = core.info(RequestInfo::default()).expect("info");
    assert_eq!(info.last_block_height, 0);
    let res = block(&mut core, 1, vec![install(&mut s)]);
    let info = core.info(RequestInfo::default()).expect("info");
    assert_eq!(info.last_block_height, 1);
    assert_eq!(info.last_block_app_hash, res.app_hash);
}

#[test]
fn commit_without_finalize_is_a_protocol_error() {
    let (mut core, _, _) = core();
    genesis(&mut core);
    assert!(core.commit().is_err());
}

#[test]
fn out_of_fuel_is_reported_and_the_process_keeps_answering() {
    let (mut core, _, mut s) = core();
    genesis(&mut core);
    block(&mut core, 1, vec![install(&mut s), spawn(&mut s)]);
    let res = block(
        &mut core,
        2,
        vec![stdin(&mut s, 1, b"loop"), stdin(&mut s, 1, b"next")],
    );
    assert_eq!(res.tx_results[0].code, Code::OutOfFuel.value());
    assert_eq!(res.tx_results[0].gas_used, 1000);
    assert_eq!(res.tx_results[1].code, Code::Ok.value());
}

#[test]
fn check_tx_uses_committed_state_only() {
    let (mut core, mempool, mut s) = core();
    genesis(&mut core);
    // CheckTx reads committed state only: genesis accounts exist from block 1.
    block(&mut core, 1, vec![]);
    let check = |bytes: Vec<u8>| {
        mempool.check_tx(&RequestCheckTx {
            tx: Bytes::from(bytes),
            ..Default::default()
        })
    };
    // Refused by CheckTx: none of these takes a sequence.
    let mut probe = signer();
    assert_eq!(
        check(stdin(&mut probe, 1, b"x")).code,
        Code::UnknownPid.value()
    );
    let mut probe = signer();
    let bad = tx(
        &mut probe,
        Body::Install(Install {
            path: "/bin/x".into(),
            wasm: b"nope".to_vec(),
        }),
    );
    let res = check(bad);
    assert_eq!(res.code, Code::InvalidProgram.value());
    assert!(res.log.contains("/bin/x"), "{}", res.log);
    assert_eq!(check(vec![1, 2, 3]).code, Code::Malformed.value());
    block(&mut core, 2, vec![install(&mut s), spawn(&mut s)]);
    assert_eq!(check(stdin(&mut s, 1, b"x")).code, Code::Ok.value());
    // The mempool admitted sequence 2: the same sequence again is a replay,
    // the next one is welcome.
    let mut replay = signer();
    replay.sequence = 2;
    assert_eq!(
        check(stdin(&mut replay, 1, b"y")).code,
        Code::WrongSequence.value()
    );
    // Blocks hold what they hold: a kill with sequence 2 commits, and the
    // mempool starts over from the new committed state.
    let mut killer = signer();
    killer.sequence = 2;
    block(
        &mut core,
        3,
        vec![tx(&mut killer, Body::Kill(Kill { pid: 1 }))],
    );
    assert_eq!(check(stdin(&mut s, 1, b"x")).code, Code::UnknownPid.value());
}

#[test]
fn invalid_program_in_a_block_is_refused_deterministically() {
    let (mut core, _, mut s) = core();
    genesis(&mut core);
    let bad = tx(
        &mut s,
        Body::Install(Install {
            path: "/bin/x".into(),
            wasm: b"nope".to_vec(),
        }),
    );
    let res = block(&mut core, 1, vec![bad]);
    assert_eq!(res.tx_results[0].code, Code::InvalidProgram.value());
}

#[test]
fn file_query_at_height_with_proof() {
    let (mut core, _, mut s) = core();
    genesis(&mut core);
    block(&mut core, 1, vec![install(&mut s)]);
    block(&mut core, 2, vec![]);
    let q = |path: &str, height: i64, prove: bool| {
        core.query(RequestQuery {
            data: Bytes::from(path.as_bytes().to_vec()),
            path: paths::FILE.into(),
            height,
            prove,
        })
    };
    let res = q("/bin/echo", 1, true);
    assert_eq!(res.code, paths::CODE_OK);
    assert_eq!(res.value.as_ref(), WASM);
    assert_eq!(res.height, 1);
    assert_eq!(
        res.proof_ops.expect("proof").ops[0].r#type,
        paths::FILE_PROOF_TYPE
    );
    assert_eq!(q("/bin/none", 0, false).code, paths::CODE_NOT_FOUND);
    assert_eq!(q("relative", 0, false).code, paths::CODE_BAD_REQUEST);
    assert_eq!(q("/bin/echo", 99, false).code, paths::CODE_BAD_REQUEST);
}

#[test]
fn process_queries_are_json() {
    let (mut core, _, mut s) = core();
    genesis(&mut core);
    block(
        &mut core,
        1,
        vec![install(&mut s), spawn(&mut s), stdin(&mut s, 1, b"abc")],
    );
    let res = core.query(RequestQuery {
        data: Bytes::from_static(b"1"),
        path: paths::PROC.into(),
        ..Default::default()
    });
    let info: crate::executor::ProcessInfo = serde_json::from_slice(&res.value).expect("json");
    assert_eq!(info.pid, 1);
    assert_eq!(info.recent_output, b"ABC");
    let res = core.query(RequestQuery {
        data: Bytes::from_static(b"7"),
        path: paths::PROC.into(),
        ..Default::default()
    });
    assert_eq!(res.code, paths::CODE_NOT_FOUND);
}

/// Issue 11: `/procs` once answered every process at once (over 4 MiB at
/// height 3 under a spawn flood); an answer now holds at most a page.
#[test]
fn process_list_queries_are_paginated() {
    let (mut core, _, mut s) = core();
    genesis(&mut core);
    let count = paths::PROCS_PAGE + 6;
    let mut txs = vec![install(&mut s)];
    txs.extend((0..count).map(|_| spawn(&mut s)));
    block(&mut core, 1, txs);
    let page = |from: &'static [u8]| {
        let res = core.query(RequestQuery {
            data: Bytes::from_static(from),
            path: paths::PROCS.into(),
            ..Default::default()
        });
        assert_eq!(res.code, paths::CODE_OK, "{}", res.log);
        let list: Vec<crate::executor::ProcessInfo> =
            serde_json::from_slice(&res.value).expect("json");
        list.iter().map(|p| p.pid).collect::<Vec<_>>()
    };
    let first = page(b"");
    assert_eq!(first, (1..=paths::PROCS_PAGE as u64).collect::<Vec<_>>());
    let rest = page(b"65");
    assert_eq!(rest, (65..=count as u64).collect::<Vec<_>>());
    let bad = core.query(RequestQuery {
        data: Bytes::from_static(b"x"),
        path: paths::PROCS.into(),
        ..Default::default()
    });
    assert_eq!(bad.code, paths::CODE_BAD_REQUEST);
}

#[test]
fn bad_genesis_is_refused_with_the_entry_named() {
    let (mut core, _, _) = core();
    let err = core
        .init_chain(RequestInitChain {
            app_state_bytes: Bytes::from_static(
                br#"{"programs":[{"path":"/bin/p","wasm_hex":"00"}]}"#,
            ),
            ..Default::default()
        })
        .expect_err("invalid program");
    assert!(err.to_string().contains("/bin/p"), "{err}");
}

#[test]
fn outputs_that_do_not_fit_the_block_results_limit_are_dropped_in_order() {
    use prost::Message as _;
    let (mut first, _, mut s) = core();
    genesis(&mut first);
    block(&mut first, 1, vec![install(&mut s), spawn(&mut s)]);
    // 60 answers of 64 KiB (3.75 MiB) do not fit in 3 MiB; small ones still do.
    let big = vec![b'a'; 64 * 1024];
    let mut txs: Vec<Vec<u8>> = (0..60).map(|_| stdin(&mut s, 1, &big)).collect();
    txs.push(stdin(&mut s, 1, b"small"));
    let res = block(&mut first, 2, txs);
    assert!(
        res.encoded_len() <= crate::limits::MAX_BLOCK_RESULTS_BYTES + 1024,
        "{} bytes",
        res.encoded_len()
    );
    let kept: Vec<bool> = res.tx_results.iter().map(|r| !r.data.is_empty()).collect();
    let first_dropped = kept.iter().position(|k| !k).expect("some output dropped");
    assert!(
        first_dropped >= 40,
        "outputs are kept while they fit: {first_dropped}"
    );
    assert!(
        kept[first_dropped..60].iter().all(|k| !k),
        "later big ones dropped"
    );
    assert!(kept[60], "a small answer after them still fits");
    for r in &res.tx_results[first_dropped..60] {
        assert_eq!(r.code, Code::Ok.value(), "the input itself was executed");
        assert_eq!(r.info, crate::consensus::OUTPUT_DROPPED);
    }
    // The same block on another validator drops exactly the same outputs.
    let (mut other, _, mut s) = core();
    genesis(&mut other);
    block(&mut other, 1, vec![install(&mut s), spawn(&mut s)]);
    let mut txs: Vec<Vec<u8>> = (0..60).map(|_| stdin(&mut s, 1, &big)).collect();
    txs.push(stdin(&mut s, 1, b"small"));
    assert_eq!(block(&mut other, 2, txs), res);
}

#[test]
fn proposals_are_cut_to_the_transaction_limit_and_larger_ones_rejected() {
    use tendermint_abci::Application as _;
    use tendermint_proto::v0_38::abci::{
        response_process_proposal::ProposalStatus, RequestPrepareProposal, RequestProcessProposal,
    };
    let (core, mempool, _) = core();
    let reader = core.exec.reader();
    let (driver, commands) = crate::driver::Driver::new(core);
    drop(driver);
    let app = crate::app::App::new(commands, mempool, reader, Arc::new(|_| {}));
    let limit = crate::limits::MAX_BLOCK_TXS;
    let txs: Vec<Bytes> = (0..limit + 5)
        .map(|i| Bytes::from(vec![1u8; 1 + i % 3]))
        .collect();
    let prepared = app.prepare_proposal(RequestPrepareProposal {
        txs: txs.clone(),
        max_tx_bytes: 1 << 30,
        ..Default::default()
    });
    assert_eq!(prepared.txs[..], txs[..limit]);
    let by_bytes = app.prepare_proposal(RequestPrepareProposal {
        txs: txs.clone(),
        max_tx_bytes: 10,
        ..Default::default()
    });
    assert_eq!(
        by_bytes.txs[..],
        txs[..5],
        "1+2+3+1+2 bytes fit in 10, the next does not"
    );
    let status = |n: usize| {
        app.process_proposal(RequestProcessProposal {
            txs: txs[..n].to_vec(),
            ..Default::default()
        })
        .status
    };
    assert_eq!(status(limit), ProposalStatus::Accept as i32);
    assert_eq!(status(limit + 1), ProposalStatus::Reject as i32);
    // Bytes: four 1 MiB transactions would make PrepareProposal's own answer
    // larger than CometBFT's gRPC client accepts; three fit.
    let big: Vec<Bytes> = (0..4).map(|_| Bytes::from(vec![2u8; 1 << 20])).collect();
    let prepared = app.prepare_proposal(RequestPrepareProposal {
        txs: big.clone(),
        max_tx_bytes: 1 << 30,
        ..Default::default()
    });
    assert_eq!(
        prepared.txs.len(),
        2,
        "3 MiB of transactions including framing"
    );
    let verdict = app.process_proposal(RequestProcessProposal {
        txs: big,
        ..Default::default()
    });
    assert_eq!(verdict.status, ProposalStatus::Reject as i32);
}

/// The worst a result can be once stripped: longest log, many exit events,
/// largest numbers and names.
fn worst_result(data: usize) -> tendermint_proto::v0_38::abci::ExecTxResult {
    use tendermint_proto::v0_38::abci::{Event, EventAttribute, ExecTxResult};
    let attr = |k: &str, v: String| EventAttribute {
        key: k.into(),
        value: v,
        index: true,
    };
    let tx_event = Event {
        r#type: "replicode.tx".into(),
        attributes: vec![
            attr("kind", "install".into()),
            attr("pid", u64::MAX.to_string()),
            attr("code", "duplicate_install_target".into()),
        ],
    };
    let exit = Event {
        r#type: "replicode.exit".into(),
        attributes: vec![
            attr("pid", u64::MAX.to_string()),
            attr("status", "-2147483648".into()),
        ],
    };
    ExecTxResult {
        code: u32::MAX,
        data: Bytes::from(vec![7u8; data]),
        log: "é".repeat(600),
        info: "x".repeat(300),
        gas_wanted: i64::MAX,
        gas_used: i64::MAX,
        events: std::iter::once(tx_event)
            .chain(std::iter::repeat_n(exit, 64))
            .collect(),
        codespace: "c".repeat(40),
    }
}

#[test]
fn a_full_block_of_worst_case_results_fits_the_results_limit() {
    use crate::limits::{MAX_BLOCK_RESULTS_BYTES, MAX_BLOCK_TXS};
    use prost::Message as _;
    use tendermint_proto::v0_38::abci::ResponseFinalizeBlock;
    // Three 1 MiB outputs first, then the most and largest results a block can
    // have: without the reservation for later results this ends near 6 MiB.
    let mut results: Vec<_> = (0..MAX_BLOCK_TXS)
        .map(|i| worst_result(if i < 3 { 1 << 20 } else { 64 }))
        .collect();
    let dropped = crate::consensus::fit_results(&mut results, MAX_BLOCK_RESULTS_BYTES);
    assert!(dropped > 0);
    let response = ResponseFinalizeBlock {
        tx_results: results,
        app_hash: Bytes::from(vec![0u8; 32]),
        ..Default::default()
    };
    let len = response.encoded_len();
    assert!(len <= MAX_BLOCK_RESULTS_BYTES + 64, "{len} bytes");
    assert!(len < 4 << 20, "under CometBFT's gRPC limit");
}

#[test]
fn a_stripped_result_in_a_full_block_is_within_its_bound() {
    use prost::Message as _;
    let mut results: Vec<_> = (0..crate::limits::MAX_BLOCK_TXS)
        .map(|_| {
            let mut r = worst_result(1 << 10);
            // `codespace` is never set by the app; the bound covers what it sets.
            r.codespace.clear();
            r.info.clear();
            r
        })
        .collect();
    crate::consensus::fit_results(&mut results, 0);
    let r = &results[0];
    assert!(r.data.is_empty());
    assert_eq!(r.info, crate::consensus::OUTPUT_DROPPED);
    let len = r.encoded_len() + 6;
    assert!(
        len <= crate::limits::MAX_STRIPPED_RESULT_BYTES,
        "{len} bytes"
    );
}

#[test]
fn which_outputs_are_kept_does_not_depend_on_log_text() {
    // CometBFT does not hash logs: two validators whose logs differ (even in
    // length) must still keep and drop exactly the same outputs.
    let block = |log: &str| {
        let mut results: Vec<_> = (0..40)
            .map(|i| {
                let mut r = worst_result(100 * 1024 + i);
                r.events.truncate(1);
                r.info.clear();
                r.codespace.clear();
                r.log = log.repeat(i % 7);
                r
            })
            .collect();
        crate::consensus::fit_results(&mut results, crate::limits::MAX_BLOCK_RESULTS_BYTES);
        results.into_iter().map(|r| r.data).collect::<Vec<_>>()
    };
    let short = block("x");
    let long = block(&"y".repeat(500));
    assert_eq!(short, long);
    assert!(short.iter().any(|d| d.is_empty()), "some outputs dropped");
    assert!(short.iter().any(|d| !d.is_empty()), "some outputs kept");
}

/// Issue 11: a block may hold at most `max_block_fuel` of wanted fuel, so its
/// execution time has a known bound; a transaction names its own fuel (at
/// most `fuel_per_tx`).
#[test]
fn block_fuel_limit_cuts_proposals_rejects_larger_ones_and_finalize_refuses_the_excess() {
    use tendermint_abci::Application as _;
    use tendermint_proto::v0_38::abci::{
        response_process_proposal::ProposalStatus, RequestPrepareProposal, RequestProcessProposal,
    };
    let (mut chain, mempool, mut s) = core();
    let app_state = br#"{"limits":{"fuel_per_tx":1000,"max_block_fuel":2500}}"#;
    genesis_with(&mut chain, app_state);
    block(&mut chain, 1, vec![]);
    let mut with_fuel =
        |fuel: u64| s.sign_bytes(Tx::new(Body::Kill(Kill { pid: 1 })).with_fuel(fuel));
    // Two at the default 1000 and one at 500 want 2500; one more does not fit.
    let txs: Vec<Vec<u8>> = vec![with_fuel(0), with_fuel(0), with_fuel(500), with_fuel(1)];
    let spawn_with_fuel = |fuel: u64| {
        let mut other = signer();
        other.sign_bytes(
            Tx::new(Body::Spawn(Spawn {
                path: "/bin/echo".into(),
                args: vec![],
                env: vec![],
                public: false,
            }))
            .with_fuel(fuel),
        )
    };
    let check = mempool.check_tx(&RequestCheckTx {
        tx: Bytes::from(spawn_with_fuel(700)),
        ..Default::default()
    });
    assert_eq!(check.code, Code::Ok.value(), "{}", check.log);
    assert_eq!(
        check.gas_wanted, 700,
        "CheckTx reports the fuel the tx names"
    );
    let greedy = mempool.check_tx(&RequestCheckTx {
        tx: Bytes::from(spawn_with_fuel(1001)),
        ..Default::default()
    });
    assert_eq!(greedy.code, Code::TooLarge.value(), "{}", greedy.log);

    let reader = chain.exec.reader();
    let (driver, commands) = crate::driver::Driver::new(chain);
    let app = crate::app::App::new(commands, mempool, reader, Arc::new(|_| {}));
    let bytes: Vec<Bytes> = txs.iter().cloned().map(Bytes::from).collect();
    let prepared = app.prepare_proposal(RequestPrepareProposal {
        txs: bytes.clone(),
        max_tx_bytes: 1 << 30,
        ..Default::default()
    });
    assert_eq!(prepared.txs[..], bytes[..3]);
    let status = |n: usize| {
        app.process_proposal(RequestProcessProposal {
            txs: bytes[..n].to_vec(),
            ..Default::default()
        })
        .status
    };
    assert_eq!(status(3), ProposalStatus::Accept as i32);
    assert_eq!(status(4), ProposalStatus::Reject as i32);
    drop(app);
    drop(driver);

    // A block decided anyway executes no transaction past the bound.
    let (mut chain, _, _) = core();
    genesis_with(&mut chain, app_state);
    block(&mut chain, 1, vec![]);
    let res = block(&mut chain, 2, txs);
    let codes: Vec<u32> = res.tx_results.iter().map(|r| r.code).collect();
    assert_eq!(
        codes,
        vec![
            Code::UnknownPid.value(),
            Code::UnknownPid.value(),
            Code::UnknownPid.value(),
            Code::LimitExceeded.value()
        ],
        "{res:?}"
    );
    let wanted: Vec<i64> = res.tx_results.iter().map(|r| r.gas_wanted).collect();
    assert_eq!(&wanted[..3], &[1000, 1000, 500]);
}
