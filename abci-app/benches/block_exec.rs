//! Block execution driven directly (no network, no CometBFT): transactions per
//! second for small stdin inputs to the kv server, through the whole app path —
//! decode, Core::finalize_block, the runtime process table, merkle-fs commit.
//!
//! Run: `cargo bench -p replicode-abci --bench block_exec` (needs
//! `make -C wasm_programs`). Prints one line per block size; not a timed test.
//! Timed: FinalizeBlock + Commit of each block (transaction encoding excluded).

use std::time::Instant;

use prost::bytes::Bytes;
use replicode_abci::account::Signer;
use replicode_abci::consensus::Core;
use replicode_abci::machine::Machine;
use replicode_abci::mempool::SharedView;
use replicode_abci::tx::{Body, Install, Spawn, Stdin, Tx};
use tendermint_proto::google::protobuf::Timestamp;
use tendermint_proto::v0_38::abci::{RequestFinalizeBlock, RequestInitChain};

/// Fuel each kv input asks for: a SET uses far less, and 5,000 of them fit
/// the default `max_block_fuel` (5e9).
const KV_INPUT_FUEL: u64 = 400_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = std::fs::read(root.join("wasm_programs/build/kv_server.wasm")).map_err(|e| {
        format!("wasm_programs/build/kv_server.wasm: {e} (run make -C wasm_programs)")
    })?;
    let dir = tempfile::tempdir()?;
    let machine = Machine::open(dir.path())?;
    let mut core = Core::new(machine, Machine::validator(), SharedView::default())?;
    let mut signer = Signer::from_seed(1, "bench");
    let genesis = serde_json::json!({"accounts": [signer.genesis_account(u64::MAX / 2)]});
    core.init_chain(RequestInitChain {
        app_state_bytes: Bytes::from(serde_json::to_vec(&genesis)?),
        initial_height: 1,
        chain_id: "bench".into(),
        ..Default::default()
    })?;
    let mut height = 0i64;
    let mut run = |core: &mut Core<Machine>,
                   txs: Vec<Vec<u8>>|
     -> Result<Vec<u32>, Box<dyn std::error::Error>> {
        height += 1;
        let res = core.finalize_block(RequestFinalizeBlock {
            txs: txs.into_iter().map(Bytes::from).collect(),
            height,
            hash: Bytes::from(vec![height as u8; 32]),
            time: Some(Timestamp {
                seconds: 1_700_000_000 + height,
                nanos: 0,
            }),
            ..Default::default()
        })?;
        core.commit()?;
        if let Some((i, bad)) = res.tx_results.iter().enumerate().find(|(_, r)| r.code != 0) {
            eprintln!(
                "block_exec: height {height} tx {i} failed with code {}: {}",
                bad.code, bad.log
            );
        }
        Ok(res.tx_results.iter().map(|r| r.code).collect())
    };
    let install = signer.sign_bytes(Tx::new(Body::Install(Install {
        path: "/bin/kv".into(),
        wasm,
    })));
    run(&mut core, vec![install])?;
    let spawn = signer.sign_bytes(Tx::new(Body::Spawn(Spawn {
        path: "/bin/kv".into(),
        args: vec!["/kv.log".into()],
        env: vec![],
        public: false,
    })));
    let codes = run(&mut core, vec![spawn])?;
    if codes != [0] {
        return Err(format!("spawn failed: {codes:?}").into());
    }
    println!("block_exec: kv server, SET k<i> v<i> per tx, merkle-fs commit per block");
    let mut nonce = 10u64;
    for block_size in [100usize, 1000, 5000] {
        let blocks = 3;
        let mut total = 0usize;
        let mut busy = 0f64;
        let mut slowest = 0f64;
        for _ in 0..blocks {
            // Transactions are encoded before the clock starts: only the app is timed.
            let txs: Vec<Vec<u8>> = (0..block_size)
                .map(|i| {
                    nonce += 1;
                    let data = format!("SET k{nonce} v{i}\n").into_bytes();
                    // What one SET needs, so 5,000 fit the block fuel limit.
                    signer.sign_bytes(
                        Tx::new(Body::Stdin(Stdin {
                            pid: 1,
                            data,
                            eof: false,
                        }))
                        .with_fuel(KV_INPUT_FUEL),
                    )
                })
                .collect();
            let start = Instant::now();
            let codes = run(&mut core, txs)?;
            let secs = start.elapsed().as_secs_f64();
            if let Some(bad) = codes.iter().find(|c| **c != 0) {
                return Err(format!("a kv input failed with code {bad}").into());
            }
            total += block_size;
            busy += secs;
            slowest = slowest.max(secs);
        }
        println!(
            "block_exec: {block_size:>5} tx/block  {:>9.0} tx/s  ({total} txs in {busy:.2}s, \
             slowest block {:.0} ms)",
            total as f64 / busy,
            slowest * 1000.0
        );
    }
    Ok(())
}
