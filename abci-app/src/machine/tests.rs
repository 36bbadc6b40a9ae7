//! The real machine through the ABCI state machine: the genesis app hash and the
//! crash window between FinalizeBlock and Commit.

use std::path::Path;

use prost::bytes::Bytes;
use tendermint_proto::google::protobuf::Timestamp;
use tendermint_proto::v0_38::abci::{
    RequestFinalizeBlock, RequestInfo, RequestInitChain, RequestQuery,
};

use merkle_fs::FsRead as _;

use super::{Machine, MetaRead as _};
use crate::account::Signer;
use crate::codes::Code;
use crate::consensus::Core;
use crate::executor::Executor;
use crate::mempool::SharedView;
use crate::tx::{Body, Install, Spawn, Tx};

/// The smallest program the validator accepts: `_start` (empty) and one page of
/// exported memory.
const TINY_WASM: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type: () -> ()
    0x03, 0x02, 0x01, 0x00, // function 0 has type 0
    0x05, 0x03, 0x01, 0x00, 0x01, // memory: min 1 page
    0x07, 0x13, 0x02, // exports: 2
    0x06, b'_', b's', b't', b'a', b'r', b't', 0x00, 0x00, // "_start" func 0
    0x06, b'm', b'e', b'm', b'o', b'r', b'y', 0x02, 0x00, // "memory" memory 0
    0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // code: empty body
];

const GENESIS_SECONDS: i64 = 1_700_000_000;

fn open(dir: &Path) -> Core<Machine> {
    let machine = Machine::open(dir).expect("open machine");
    Core::new(machine, Machine::validator(), SharedView::default()).expect("core")
}

fn app_state(motd: &str) -> Vec<u8> {
    format!(
        r#"{{"limits":{{"fuel_per_tx":1000000,"memory_bytes":1048576,"storage_quota_bytes":1048576,"max_processes":4}},"files":[{{"path":"/etc/motd","text":"{motd}"}}],"accounts":[{{"address":"{}","fuel":{FUNDS}}},{{"address":"{}","fuel":{FUNDS}}}]}}"#,
        signer(0).address(),
        Signer::from_seed(2, "test").address()
    )
    .into_bytes()
}

/// Fuel the test account has at genesis.
const FUNDS: u64 = 1 << 60;

/// The test account, about to sign with `sequence`.
fn signer(sequence: u64) -> Signer {
    let mut s = Signer::from_seed(1, "test");
    s.sequence = sequence;
    s
}

/// `tx` signed by the test account with `sequence`.
fn signed(tx: Tx, sequence: u64) -> Vec<u8> {
    signer(sequence).sign_bytes(tx)
}

fn init(core: &mut Core<Machine>, motd: &str) -> Vec<u8> {
    core.init_chain(RequestInitChain {
        app_state_bytes: Bytes::from(app_state(motd)),
        initial_height: 1,
        chain_id: "test".into(),
        time: Some(Timestamp {
            seconds: GENESIS_SECONDS,
            nanos: 0,
        }),
        ..Default::default()
    })
    .expect("init chain")
    .app_hash
    .to_vec()
}

/// Finalizes block `height` (block time = genesis time, so the clock does not move)
/// and returns its app hash; does not commit.
fn finalize(core: &mut Core<Machine>, height: i64, txs: Vec<Vec<u8>>) -> Vec<u8> {
    let (results, app_hash) = finalize_results(core, height, txs);
    for r in &results {
        assert_eq!(r.code, Code::Ok.value(), "tx refused: {}", r.log);
    }
    app_hash
}

fn install(path: &str, sequence: u64) -> Vec<u8> {
    install_bytes(path, TINY_WASM, sequence)
}

fn info(core: &Core<Machine>) -> (i64, Vec<u8>) {
    let info = core.info(RequestInfo::default()).expect("info");
    (info.last_block_height, info.last_block_app_hash.to_vec())
}

#[test]
fn init_chain_app_hash_is_the_genesis_root_and_equals_what_a_fresh_node_computes() {
    let a_dir = tempfile::tempdir().expect("tempdir");
    let b_dir = tempfile::tempdir().expect("tempdir");
    let c_dir = tempfile::tempdir().expect("tempdir");
    let mut a = open(a_dir.path());
    let genesis = init(&mut a, "hello");
    assert_eq!(
        genesis.len(),
        32,
        "the genesis app hash is a merkle-fs root"
    );
    assert_eq!(genesis, init(&mut open(b_dir.path()), "hello"));
    assert_ne!(
        genesis,
        init(&mut open(c_dir.path()), "other"),
        "the genesis hash must cover the genesis files"
    );
    // Nothing is durable yet: a restart reports height 0 (CometBFT repeats
    // InitChain), and repeating it gives the same hash.
    assert_eq!(info(&a), (0, Vec::new()));
    drop(a);
    let mut a = open(a_dir.path());
    assert_eq!(info(&a), (0, Vec::new()));
    assert_eq!(init(&mut a, "hello"), genesis);
    // An empty block at the genesis time changes nothing: block 1's committed root
    // is exactly the genesis root, and holds the genesis file.
    assert_eq!(finalize(&mut a, 1, vec![]), genesis);
    a.commit().expect("commit");
    assert_eq!(info(&a), (1, genesis.clone()));
    let motd = a
        .exec
        .reader()
        .read_file("/etc/motd", Some(1), false)
        .expect("read");
    assert_eq!(motd.contents.as_deref(), Some(&b"hello"[..]));
}

#[test]
fn finalize_without_commit_then_restart_gives_the_same_hash_after_re_executing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut core = open(dir.path());
    init(&mut core, "hello");
    let h1 = finalize(&mut core, 1, vec![install("/bin/a", 0)]);
    core.commit().expect("commit 1");
    let h2 = finalize(&mut core, 2, vec![install("/bin/b", 1)]);
    assert_ne!(h1, h2);
    // Killed between FinalizeBlock and Commit: nothing of block 2 is durable.
    drop(core);
    let mut core = open(dir.path());
    assert_eq!(info(&core), (1, h1.clone()));
    let absent = core
        .exec
        .reader()
        .read_file("/bin/b", None, false)
        .expect("read");
    assert_eq!(
        absent.contents, None,
        "block 2 must not be visible after restart"
    );
    // CometBFT replays block 2; re-executing gives the same app hash.
    assert_eq!(finalize(&mut core, 2, vec![install("/bin/b", 1)]), h2);
    core.commit().expect("commit 2");
    assert_eq!(info(&core), (2, h2.clone()));

    // A node that never crashed agrees.
    let other_dir = tempfile::tempdir().expect("tempdir");
    let mut other = open(other_dir.path());
    init(&mut other, "hello");
    assert_eq!(finalize(&mut other, 1, vec![install("/bin/a", 0)]), h1);
    other.commit().expect("commit 1");
    assert_eq!(finalize(&mut other, 2, vec![install("/bin/b", 1)]), h2);
    other.commit().expect("commit 2");
    assert_eq!(info(&other), (2, h2));
}

#[test]
fn finalize_reports_the_root_commit_then_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut core = open(dir.path());
    init(&mut core, "hello");
    let h1 = finalize(&mut core, 1, vec![install("/bin/a", 0)]);
    assert_eq!(
        core.exec.committed().expect("committed").height,
        0,
        "FinalizeBlock must not write"
    );
    core.commit().expect("commit");
    let committed = core.exec.committed().expect("committed");
    assert_eq!((committed.height, committed.app_hash), (1, h1));
}

#[test]
fn pruning_keeps_the_last_heights_readable_and_never_changes_a_root() {
    let pruned_dir = tempfile::tempdir().expect("tempdir");
    let full_dir = tempfile::tempdir().expect("tempdir");
    let mut pruned = {
        let mut machine = Machine::open(pruned_dir.path()).expect("open machine");
        machine.set_keep_heights(Some(2));
        Core::new(machine, Machine::validator(), SharedView::default()).expect("core")
    };
    let mut full = open(full_dir.path());
    assert_eq!(init(&mut pruned, "hello"), init(&mut full, "hello"));
    for height in 1..=5 {
        let txs = vec![install(&format!("/bin/p{height}"), height as u64 - 1)];
        let h = finalize(&mut pruned, height, txs.clone());
        assert_eq!(h, finalize(&mut full, height, txs), "root at {height}");
        pruned.commit().expect("commit");
        full.commit().expect("commit");
    }
    for height in 4..=5 {
        let read = pruned
            .exec
            .reader()
            .read_file("/bin/p4", Some(height), true)
            .expect("a kept height is readable");
        assert_eq!(read.contents.as_deref(), Some(TINY_WASM));
        assert!(read.proof.is_some());
    }
    for height in 1..=3 {
        let refused = pruned
            .exec
            .reader()
            .read_file("/etc/motd", Some(height), false)
            .expect_err("a pruned height is not readable");
        assert!(
            refused.to_string().contains("retained"),
            "the error names the retention: {refused}"
        );
        full.exec
            .reader()
            .read_file("/etc/motd", Some(height), false)
            .expect("the unpruned node still reads it");
        // Through ABCI Query: an answer with a code, never a fatal error.
        let answer = pruned.query(RequestQuery {
            path: crate::info::paths::FILE.into(),
            data: Bytes::from_static(b"/etc/motd"),
            height: height as i64,
            prove: true,
        });
        assert_eq!(answer.code, crate::info::paths::CODE_HEIGHT_PRUNED);
        assert!(answer.log.contains("keeps heights 4..=5"), "{}", answer.log);
    }
}

#[test]
fn process_queries_show_committed_state_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut core = open(dir.path());
    init(&mut core, "hello");
    let spawn = signed(
        Tx::new(Body::Spawn(Spawn {
            path: "/bin/a".into(),
            args: vec!["a".into()],
            env: Vec::new(),
            public: false,
        })),
        1,
    );
    finalize(&mut core, 1, vec![install("/bin/a", 0), spawn]);
    assert_eq!(
        core.exec.reader().processes().expect("processes"),
        Vec::new(),
        "a finalized but uncommitted block must not show in queries"
    );
    core.commit().expect("commit");
    let listed = core.exec.reader().processes().expect("processes");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].program, "/bin/a");
    drop(core);
    // A restarted node lists the same committed processes.
    assert_eq!(
        open(dir.path())
            .exec
            .reader()
            .processes()
            .expect("processes"),
        listed
    );
}

/// Finalizes block `height` (block time = genesis time) and returns every
/// result (codes unchecked) and the app hash; does not commit.
fn finalize_results(
    core: &mut Core<Machine>,
    height: i64,
    txs: Vec<Vec<u8>>,
) -> (Vec<tendermint_proto::v0_38::abci::ExecTxResult>, Vec<u8>) {
    let res = core
        .finalize_block(RequestFinalizeBlock {
            txs: txs.into_iter().map(Bytes::from).collect(),
            height,
            hash: Bytes::from(vec![height as u8; 32]),
            time: Some(Timestamp {
                seconds: GENESIS_SECONDS,
                nanos: 0,
            }),
            ..Default::default()
        })
        .expect("finalize must not fail on anything a transaction does");
    (res.tx_results, res.app_hash.to_vec())
}

fn spawn_tx(path: &str, sequence: u64) -> Vec<u8> {
    signed(
        Tx::new(Body::Spawn(Spawn {
            path: path.into(),
            args: vec![],
            env: Vec::new(),
            public: false,
        })),
        sequence,
    )
}

fn install_bytes(path: &str, wasm: &[u8], sequence: u64) -> Vec<u8> {
    signed(
        Tx::new(Body::Install(Install {
            path: path.into(),
            wasm: wasm.to_vec(),
        })),
        sequence,
    )
}

/// Regression (issue 11): a guest ran `symlink("kv_server", "/bin/evil")`, and
/// `spawn /bin/evil` made merkle-fs's `Invalid` a host error: FinalizeBlock
/// failed on every validator, and again at every replay. Spawn now resolves
/// paths through install records only.
#[test]
fn spawn_of_a_symlink_does_not_halt_the_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut core = open(dir.path());
    init(&mut core, "hello");
    finalize(&mut core, 1, vec![install("/bin/a", 0)]);
    core.commit().expect("commit 1");
    // What the guest did, straight into the next block's working set.
    core.exec.ensure_working_set();
    core.exec
        .ws_do("test symlink", |ws| {
            let bin = ws.lookup(merkle_fs::ROOT_INO, b"bin")?;
            ws.symlink(bin, b"evil", b"a", 0)?;
            ws.symlink(bin, b"loop", b"loop", 0)?;
            Ok(())
        })
        .expect("symlinks");
    let (results, _) = finalize_results(
        &mut core,
        2,
        vec![
            spawn_tx("/bin/evil", 1),
            spawn_tx("/bin/loop", 2),
            spawn_tx("/bin/a", 3),
        ],
    );
    let codes: Vec<u32> = results.iter().map(|r| r.code).collect();
    assert_eq!(
        codes,
        vec![
            Code::ProgramNotFound.value(),
            Code::ProgramNotFound.value(),
            Code::Ok.value()
        ],
        "{results:?}"
    );
    core.commit().expect("commit 2");
}

/// Regression (issue 11): a spawn refused after the process's host was built
/// (here: instantiation fails, the module's initial memory is above the genesis
/// limit) left the root directory's open count changed, so a refused input
/// changed the app hash.
#[test]
fn a_refused_spawn_leaves_the_app_hash_unchanged() {
    // TINY_WASM with an initial memory of 17 pages (1 MiB + 64 KiB): above
    // the genesis `memory_bytes` of 1 MiB, so instantiation is refused.
    let mut big_memory = TINY_WASM.to_vec();
    let at = big_memory
        .windows(5)
        .position(|w| w == [0x05, 0x03, 0x01, 0x00, 0x01])
        .expect("memory section");
    big_memory[at + 4] = 17;
    let run = |with_refused_spawn: bool| {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut core = open(dir.path());
        init(&mut core, "hello");
        finalize(
            &mut core,
            1,
            vec![install_bytes("/bin/big", &big_memory, 0)],
        );
        core.commit().expect("commit 1");
        // Both blocks hold one transaction that pays the same and is refused:
        // the spawn, or input to a pid that does not exist. The roots agree
        // only if the refused spawn changed nothing but the payment.
        let txs = if with_refused_spawn {
            vec![spawn_tx("/bin/big", 1)]
        } else {
            vec![signed(
                Tx::new(Body::Stdin(crate::tx::Stdin {
                    pid: 99,
                    data: vec![],
                    eof: false,
                })),
                1,
            )]
        };
        let (results, hash) = finalize_results(&mut core, 2, txs);
        if with_refused_spawn {
            assert_eq!(results[0].code, Code::InvalidProgram.value(), "{results:?}");
        } else {
            assert_eq!(results[0].code, Code::UnknownPid.value(), "{results:?}");
        }
        hash
    };
    assert_eq!(run(true), run(false));
}

#[test]
fn install_is_charged_by_size_and_refused_before_any_work_when_its_fuel_is_short() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut core = open(dir.path());
    init(&mut core, "hello");
    let limits = crate::genesis::Limits::default();
    let cost = limits.install_fuel(TINY_WASM.len());
    let short = signed(
        Tx::new(Body::Install(Install {
            path: "/bin/b".into(),
            wasm: TINY_WASM.to_vec(),
        }))
        .with_fuel(cost - 1),
        1,
    );
    let (results, hash) = finalize_results(
        &mut core,
        1,
        vec![install_bytes("/bin/a", TINY_WASM, 0), short],
    );
    assert_eq!(results[0].code, Code::Ok.value(), "{}", results[0].log);
    assert_eq!(
        results[0].gas_wanted, cost as i64,
        "an install wants its cost"
    );
    assert_eq!(results[0].gas_used, cost as i64);
    // An install's fuel is its price or 0: less is refused up front (CheckTx
    // the same way), before any work.
    assert_eq!(
        results[1].code,
        Code::InvalidField.value(),
        "{}",
        results[1].log
    );
    assert_eq!(results[1].gas_used, 0, "refused before any work");
    core.commit().expect("commit");
    assert_eq!(
        core.exec
            .reader()
            .read_file("/bin/b", None, false)
            .expect("read")
            .contents,
        None,
        "a refused install leaves nothing"
    );
    // The same state without the refused install has the same root.
    let other_dir = tempfile::tempdir().expect("tempdir");
    let mut other = open(other_dir.path());
    init(&mut other, "hello");
    let (_, other_hash) =
        finalize_results(&mut other, 1, vec![install_bytes("/bin/a", TINY_WASM, 0)]);
    assert_eq!(hash, other_hash);
}

#[test]
fn a_replaced_program_keeps_running_processes_and_its_module_is_collected_when_unused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut core = open(dir.path());
    init(&mut core, "hello");
    let mut other = TINY_WASM.to_vec();
    other.extend_from_slice(&[0x00, 0x02, 0x01, b'y']);
    finalize(&mut core, 1, vec![install("/bin/a", 0)]);
    core.commit().expect("commit 1");
    let modules = |core: &Core<Machine>| {
        core.exec
            .store
            .latest()
            .list_meta_bytes(super::keys::MODULE_PREFIX)
            .expect("list")
            .len()
    };
    assert_eq!(modules(&core), 1);
    finalize(&mut core, 2, vec![install_bytes("/bin/a", &other, 1)]);
    core.commit().expect("commit 2");
    assert_eq!(
        modules(&core),
        1,
        "the replaced module is unused and collected"
    );
    assert_eq!(core.exec.programs.installed(), 1);
    drop(core);
    // A restart loads exactly the installed program.
    let mut core = open(dir.path());
    let (results, _) = finalize_results(&mut core, 3, vec![spawn_tx("/bin/a", 2)]);
    assert_eq!(results[0].code, Code::Ok.value(), "{}", results[0].log);
}

#[test]
fn a_chain_may_start_at_any_initial_height() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut core = open(dir.path());
    let genesis = core
        .init_chain(RequestInitChain {
            app_state_bytes: Bytes::from(app_state("hello")),
            initial_height: 100,
            chain_id: "test".into(),
            time: Some(Timestamp {
                seconds: GENESIS_SECONDS,
                nanos: 0,
            }),
            ..Default::default()
        })
        .expect("init chain")
        .app_hash
        .to_vec();
    assert_eq!(finalize(&mut core, 100, vec![]), genesis);
    core.commit().expect("commit 100");
    assert_eq!(info(&core), (100, genesis));
    finalize(&mut core, 101, vec![install("/bin/a", 0)]);
    core.commit().expect("commit 101");
    drop(core);
    let core = open(dir.path());
    assert_eq!(info(&core).0, 101);
}

#[test]
fn a_restart_reuses_the_prepared_and_compiled_module_caches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = tempfile::tempdir().expect("tempdir");
    let open_cached = |dir: &Path| {
        let machine = Machine::open_with_cache(dir, Some(cache.path())).expect("open machine");
        Core::new(machine, Machine::validator(), SharedView::default()).expect("core")
    };
    let mut core = open_cached(dir.path());
    init(&mut core, "hello");
    finalize(&mut core, 1, vec![install("/bin/a", 0)]);
    core.commit().expect("commit");
    drop(core);
    let prepared: Vec<_> = std::fs::read_dir(cache.path().join("prepared"))
        .expect("the prepared cache exists")
        .collect();
    assert_eq!(prepared.len(), 1, "one installed program, one entry");
    let mut core = open_cached(dir.path());
    let (results, _) = finalize_results(&mut core, 2, vec![spawn_tx("/bin/a", 1)]);
    assert_eq!(results[0].code, Code::Ok.value(), "{}", results[0].log);
}

/// Writes "bye\n" to stdout and exits.
const BYE_WAT: &str = r#"
    (module
      (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 33000) "bye\n")
      (func (export "_start")
        (i32.store (i32.const 32784) (i32.const 33000))
        (i32.store (i32.const 32788) (i32.const 4))
        (drop (call $fd_write (i32.const 1) (i32.const 32784) (i32.const 1) (i32.const 32792)))))
"#;

fn meta_keys(core: &Core<Machine>, prefix: &[u8]) -> Vec<String> {
    core.exec
        .store
        .latest()
        .list_meta_bytes(prefix)
        .expect("list")
        .into_iter()
        .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
        .collect()
}

/// Regression (issue 11): ended processes stayed in the table and its store
/// forever (with their recent output), so the table, the per-block write and
/// `/procs` grew with every spawn. At most `max_processes` (4 here) ended
/// ones are kept; the rest go with their records.
#[test]
fn ended_processes_past_max_processes_are_reaped_with_their_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut core = open(dir.path());
    init(&mut core, "hello");
    let bye = wat::parse_str(BYE_WAT).expect("wat");
    finalize(&mut core, 1, vec![install_bytes("/bin/bye", &bye, 0)]);
    core.commit().expect("commit 1");
    let mut nonce = 0;
    for height in 2..12 {
        let txs = (0..4)
            .map(|_| {
                nonce += 1;
                spawn_tx("/bin/bye", nonce)
            })
            .collect();
        finalize(&mut core, height, txs);
        core.commit().expect("commit");
        let kept: Vec<u64> = core.exec.table.list().iter().map(|p| p.pid).collect();
        let first = (height as u64 - 1) * 4 - 3;
        assert_eq!(
            kept,
            (first..first + 4).collect::<Vec<_>>(),
            "height {height}"
        );
        let recent: Vec<String> = kept
            .iter()
            .map(|pid| String::from_utf8_lossy(&super::keys::recent(*pid)).into_owned())
            .collect();
        assert_eq!(meta_keys(&core, b"replicode/recent/"), recent);
        assert_eq!(meta_keys(&core, b"replicode/proc/").len(), 4);
    }
    let listed = core.exec.reader().processes().expect("processes");
    assert_eq!(listed.len(), 4);
    assert_eq!(listed[0].recent_output, b"bye\n");
    drop(core);
    assert_eq!(
        open(dir.path())
            .exec
            .reader()
            .processes()
            .expect("processes"),
        listed,
        "a restarted node reads the same table back"
    );
}

/// Regression (issue 11): a spawn's arguments and environment are stored
/// twice in its process record and were bounded only per item (64 × 4 KiB),
/// so large spawns grew the table by hundreds of KiB each. Past 64 KiB in
/// all, the spawn is refused (`too_large`, already by CheckTx's checks; the
/// runtime refuses it again as `limit_exceeded`) and changes nothing.
#[test]
fn a_spawn_with_more_than_64_kib_of_arguments_is_refused_and_changes_no_hash() {
    let run = |with_refused: bool| {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut core = open(dir.path());
        init(&mut core, "hello");
        finalize(&mut core, 1, vec![install("/bin/a", 0)]);
        core.commit().expect("commit 1");
        let big = signed(
            Tx::new(Body::Spawn(Spawn {
                path: "/bin/a".into(),
                args: vec!["a".repeat(4000); 17],
                env: Vec::new(),
                public: false,
            })),
            1,
        );
        let txs = if with_refused { vec![big] } else { vec![] };
        let (results, hash) = finalize_results(&mut core, 2, txs);
        if with_refused {
            assert_eq!(results[0].code, Code::TooLarge.value(), "{results:?}");
        }
        hash
    };
    assert_eq!(run(true), run(false));
}

/// Unread stdin past `MAX_PENDING_STDIN` is a refusal (code 9), not a host
/// failure. (A WASI guest that is alive between inputs always waits on its
/// stdin, so the bound is reached through pipes or held sleepers; the runtime
/// tests drive it end to end.)
#[test]
fn unread_stdin_past_the_bound_is_refused_as_limit_exceeded() {
    use replicode_runtime::process::{ProcessError, MAX_PENDING_STDIN};
    let out = super::refusal(
        7,
        ProcessError::StdinFull {
            pid: 7,
            pending: MAX_PENDING_STDIN,
            bytes: 1,
            max: MAX_PENDING_STDIN,
        },
    )
    .expect("an answer, not a host failure");
    assert!(
        matches!(
            &out.status,
            crate::executor::Status::Refused(Code::LimitExceeded, _)
        ),
        "{:?}",
        out.status
    );
}

/// Regression (review of issue 11's registry): a program replaced while an
/// ended process of the old one was still in the table had its module record
/// deleted, and a restarted validator could not resolve that table entry, so
/// it never started again.
#[test]
fn replacing_a_program_whose_ended_process_is_still_listed_keeps_restarts_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut core = open(dir.path());
    init(&mut core, "hello");
    let mut other = TINY_WASM.to_vec();
    other.extend_from_slice(&[0x00, 0x02, 0x01, b'z']);
    // TINY_WASM's _start returns at once: the process ends in its spawn.
    let (results, hash) = finalize_results(
        &mut core,
        1,
        vec![
            install("/bin/a", 0),
            spawn_tx("/bin/a", 1),
            install_bytes("/bin/a", &other, 2),
        ],
    );
    assert!(results.iter().all(|r| r.code == 0), "{results:?}");
    core.commit().expect("commit");
    drop(core);
    let core = open(dir.path());
    assert_eq!(
        info(&core),
        (1, hash),
        "the restarted node opens and agrees"
    );
}

/// Issue 11: guests run on the consensus thread, which must have the native
/// stack the runtime promises guests (`RuntimeConfig::guest_thread_stack`, what
/// `server::serve` gives it): unbounded recursion is then a deterministic trap
/// at the logical limit, never a crash of the validator.
#[test]
fn unbounded_recursion_on_the_consensus_thread_is_a_trap_not_a_crash() {
    let stack = super::machine_config().guest_thread_stack();
    let wasm = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../wasm_programs/build/recursion.wasm"),
    )
    .expect("wasm_programs/build/recursion.wasm (make -C wasm_programs)");
    let results = std::thread::Builder::new()
        .name("consensus".into())
        .stack_size(stack)
        .spawn(move || {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut core = open(dir.path());
            init(&mut core, "hello");
            let (results, _) = finalize_results(
                &mut core,
                1,
                vec![
                    install_bytes("/bin/recursion", &wasm, 0),
                    spawn_tx("/bin/recursion", 1),
                ],
            );
            results
        })
        .expect("thread")
        .join()
        .expect("the validator's thread did not crash");
    assert_eq!(results[0].code, Code::Ok.value(), "{}", results[0].log);
    // (The process path reports the logical limit as the counter's
    // `unreachable`; only `replicode run` names it a stack overflow.)
    assert_eq!(results[1].code, Code::Trap.value(), "{}", results[1].log);
}

/// Issue 12: the signer of an install owns the program, the signer of a spawn
/// the process; other accounts get `unauthorized` and change nothing but their
/// own sequence and fuel.
#[test]
fn programs_and_processes_belong_to_their_signers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut core = open(dir.path());
    init(&mut core, "hello");
    let mut alice = signer(0);
    let mut bob = Signer::from_seed(2, "test");
    let install_as = |s: &mut Signer, wasm: &[u8]| {
        s.sign_bytes(Tx::new(Body::Install(Install {
            path: "/bin/a".into(),
            wasm: wasm.to_vec(),
        })))
    };
    let uninstall_as = |s: &mut Signer| {
        s.sign_bytes(Tx::new(Body::Uninstall(crate::tx::Uninstall {
            path: "/bin/a".into(),
        })))
    };
    let mut other = TINY_WASM.to_vec();
    other.extend_from_slice(&[0x00, 0x02, 0x01, b'b']);
    let installed = install_as(&mut alice, TINY_WASM);
    let spawn = alice.sign_bytes(Tx::new(Body::Spawn(Spawn {
        path: "/bin/a".into(),
        args: vec![],
        env: Vec::new(),
        public: true,
    })));
    let txs = vec![
        installed,
        spawn,
        install_as(&mut bob, &other),
        uninstall_as(&mut bob),
        bob.sign_bytes(Tx::new(Body::Kill(crate::tx::Kill { pid: 1 }))),
    ];
    let (results, _) = finalize_results(&mut core, 1, txs);
    let codes: Vec<u32> = results.iter().map(|r| r.code).collect();
    let unauthorized = Code::Unauthorized.value();
    assert_eq!(
        codes,
        vec![0, 0, unauthorized, unauthorized, unauthorized],
        "{results:?}"
    );
    assert!(
        results[2].log.contains(&alice.address().to_string()),
        "{}",
        results[2].log
    );
    core.commit().expect("commit");
    let read = |core: &Core<Machine>| {
        core.exec
            .reader()
            .read_file("/bin/a", None, false)
            .expect("read")
            .contents
    };
    assert_eq!(
        read(&core).as_deref(),
        Some(TINY_WASM),
        "bob replaced nothing"
    );
    // The owner removes it; then the path is free for anyone.
    let (results, _) = finalize_results(
        &mut core,
        2,
        vec![uninstall_as(&mut alice), install_as(&mut bob, &other)],
    );
    assert!(results.iter().all(|r| r.code == 0), "{results:?}");
    core.commit().expect("commit");
    assert_eq!(read(&core).as_deref(), Some(&other[..]));
    drop(core);
    // A restart reads the owners back: alice may not replace bob's program.
    let mut core = open(dir.path());
    let (results, _) = finalize_results(&mut core, 3, vec![install_as(&mut alice, TINY_WASM)]);
    assert_eq!(results[0].code, unauthorized, "{}", results[0].log);
}
