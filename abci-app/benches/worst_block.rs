//! The worst block an attacker can build from each class of input at the
//! genesis limits, executed through the whole app path (decode, FinalizeBlock,
//! the runtime, merkle-fs commit) on one validator, with no network.
//!
//! Run: `cargo bench -p replicode-abci --bench worst_block` (needs
//! `make -C wasm_programs`). Prints one line per class: the block's
//! transactions, the fuel they used, FinalizeBlock + Commit wall time, and the
//! host time per million fuel (what calibrates the host-call and install
//! costs). Target: every class under 1 s (consensus timeouts never fire).
//! Not a timed test.

use std::time::Instant;

use ed25519_consensus::SigningKey;
use prost::bytes::Bytes;
use replicode_abci::account::Signer;
use replicode_abci::consensus::Core;
use replicode_abci::genesis::Limits;
use replicode_abci::machine::Machine;
use replicode_abci::mempool::SharedView;
use replicode_abci::tx::{Body, Install, Kill, Spawn, Stdin, Tx};
use tendermint_proto::google::protobuf::Timestamp;
use tendermint_proto::v0_38::abci::{RequestFinalizeBlock, RequestInitChain};

type Error = Box<dyn std::error::Error>;

struct Chain {
    core: Core<Machine>,
    height: i64,
    /// Seconds since genesis of the last block: each block adds `step`.
    clock: i64,
    _dir: tempfile::TempDir,
}

struct Block {
    secs: f64,
    fuel: u64,
    codes: Vec<u32>,
}

impl Chain {
    fn new() -> Result<Chain, Error> {
        let dir = tempfile::tempdir()?;
        let machine = Machine::open(dir.path())?;
        let mut core = Core::new(machine, Machine::validator(), SharedView::default())?;
        core.init_chain(RequestInitChain {
            app_state_bytes: funded_genesis(),
            initial_height: 1,
            chain_id: "bench".into(),
            time: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            ..Default::default()
        })?;
        Ok(Chain {
            core,
            height: 0,
            clock: 0,
            _dir: dir,
        })
    }

    /// Finalizes and commits one block `step_secs` after the last; times both.
    fn block(&mut self, txs: Vec<Vec<u8>>, step_secs: i64) -> Result<Block, Error> {
        self.height += 1;
        self.clock += step_secs;
        let start = Instant::now();
        let res = self.core.finalize_block(RequestFinalizeBlock {
            txs: txs.into_iter().map(Bytes::from).collect(),
            height: self.height,
            hash: Bytes::from(vec![self.height as u8; 32]),
            time: Some(Timestamp {
                seconds: 1_700_000_000 + self.clock,
                nanos: 0,
            }),
            ..Default::default()
        })?;
        self.core.commit()?;
        Ok(Block {
            secs: start.elapsed().as_secs_f64(),
            fuel: res
                .tx_results
                .iter()
                .map(|r| u64::try_from(r.gas_used).unwrap_or(0))
                .sum(),
            codes: res
                .tx_results
                .iter()
                .map(|r| r.code)
                .inspect(|code| {
                    // Every transaction must be admitted, or the block measures
                    // refusals instead of the attack.
                    assert_ne!(*code, 14, "a benchmark transaction had a wrong sequence");
                })
                .collect(),
        })
    }

    fn setup(&mut self, txs: Vec<Vec<u8>>) -> Result<(), Error> {
        let block = self.block(txs, 1)?;
        if let Some(bad) = block.codes.iter().find(|c| **c != 0) {
            return Err(format!("setup transaction failed with code {bad}").into());
        }
        Ok(())
    }
}

fn guest(name: &str) -> Result<Vec<u8>, Error> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = root.join(format!("wasm_programs/build/{name}.wasm"));
    std::fs::read(&path)
        .map_err(|e| format!("{}: {e} (run make -C wasm_programs)", path.display()).into())
}

thread_local! {
    /// The benchmark's funded account; every chain starts it at sequence 0.
    static SIGNER: std::cell::RefCell<Signer> = std::cell::RefCell::new(Signer::from_seed(1, "bench"));
}

/// A genesis app state that funds the benchmark's account, whose sequence
/// starts over (a new chain).
fn funded_genesis() -> Bytes {
    SIGNER.with(|s| {
        let mut s = s.borrow_mut();
        s.sequence = 0;
        let state = serde_json::json!({"accounts": [s.genesis_account(u64::MAX / 2)]});
        Bytes::from(serde_json::to_vec(&state).unwrap_or_default())
    })
}

/// Signed with the benchmark's account's next sequence (which also makes
/// repeated inputs distinct).
fn tx(body: Body) -> Vec<u8> {
    SIGNER.with(|s| s.borrow_mut().sign_bytes(Tx::new(body)))
}

fn install(path: &str, wasm: Vec<u8>) -> Vec<u8> {
    tx(Body::Install(Install {
        path: path.into(),
        wasm,
    }))
}

fn spawn(path: &str, args: Vec<String>) -> Vec<u8> {
    tx(Body::Spawn(Spawn {
        path: path.into(),
        args,
        env: vec![],
        public: false,
    }))
}

fn line(pid: u64, text: &str) -> Vec<u8> {
    tx(Body::Stdin(Stdin {
        pid,
        data: format!("{text}\n").into_bytes(),
        eof: false,
    }))
}

fn report(class: &str, block: &Block) {
    let refused = block.codes.iter().filter(|c| **c != 0).count();
    println!(
        "worst_block: {class:<34} {:>4} txs ({refused:>4} not ok) {:>13} fuel {:>8.1} ms  {:>7.2} ms/Mfuel",
        block.codes.len(),
        block.fuel,
        block.secs * 1000.0,
        if block.fuel > 0 {
            block.secs * 1000.0 / (block.fuel as f64 / 1e6)
        } else {
            0.0
        }
    );
}

fn main() -> Result<(), Error> {
    let limits = Limits::default();
    let per_block = (limits.max_block_fuel / limits.fuel_per_tx) as usize;
    println!(
        "worst_block: genesis defaults: fuel_per_tx {}, max_block_fuel {} ({per_block} full txs), \
         timer_wakes_per_block {}, install_fuel_per_byte {}",
        limits.fuel_per_tx,
        limits.max_block_fuel,
        limits.timer_wakes_per_block,
        limits.install_fuel_per_byte
    );

    // Guest compute: every transaction spins until its fuel is gone.
    let mut chain = Chain::new()?;
    chain.setup(vec![install("/bin/hostile", guest("hostile")?)])?;
    chain.setup(vec![spawn("/bin/hostile", vec![])])?;
    let spins = (0..per_block as u64).map(|_| line(1, "spin")).collect();
    report("spin (guest compute)", &chain.block(spins, 1)?);

    // Host calls: one writev of 1024 iovecs over 1 MiB, 16 MiB of random_get.
    let bombs = (0..per_block as u64)
        .map(|_| line(1, "iovbomb 1024 1"))
        .collect();
    report("iovbomb 1024 x 1 MiB (fd_write)", &chain.block(bombs, 1)?);
    let randoms = (0..per_block as u64)
        .map(|_| line(1, "random 16"))
        .collect();
    report("random_get 16 MiB", &chain.block(randoms, 1)?);
    let writes = (0..per_block as u64)
        .map(|_| line(1, "writeloop 1"))
        .collect();
    report("write(1, 1 MiB) loop", &chain.block(writes, 1)?);

    // Timers: sleepers whose wake-ups all spin, due in the same block.
    let mut chain = Chain::new()?;
    chain.setup(vec![install("/bin/hostile", guest("hostile")?)])?;
    let sleepers = 2 * limits.timer_wakes_per_block as u64;
    chain.setup(
        (0..sleepers)
            .map(|_| spawn("/bin/hostile", vec![]))
            .collect(),
    )?;
    chain.setup(
        (1..=sleepers)
            .map(|pid| line(pid, "sleepspin 500"))
            .collect(),
    )?;
    report("timer wake-ups that spin", &chain.block(vec![], 2)?);

    // Installs: as many copies of a real server as the block holds, each made
    // distinct (a custom section) so none is cached. (fileops, 149 KiB, costs
    // more than a whole block: it cannot be installed at these limits.)
    let mut chain = Chain::new()?;
    let program = guest("hostile")?;
    let cost = limits.install_fuel(program.len() + 16);
    let count = (limits.max_block_fuel / cost) as usize;
    let installs = (0..count as u64)
        .map(|n| {
            let mut wasm = program.clone();
            wasm.extend_from_slice(&[0, 10, 1, b'n']);
            wasm.extend_from_slice(&n.to_le_bytes());
            install(&format!("/bin/p{n}"), wasm)
        })
        .collect();
    report(
        &format!("install {} KiB programs", program.len() / 1024),
        &chain.block(installs, 1)?,
    );

    // Spawns of an installed program with the most arguments a spawn may carry.
    let mut chain = Chain::new()?;
    chain.setup(vec![install("/bin/hostile", guest("hostile")?)])?;
    // The most a spawn may carry: 64 KiB of program path, arguments and environment.
    let args: Vec<String> = (0..15).map(|i| format!("{i:0>4095}")).collect();
    let spawns = (0..limits.max_processes as u64)
        .map(|_| spawn("/bin/hostile", args.clone()))
        .collect();
    report("spawn with 15 x 4 KiB args", &chain.block(spawns, 1)?);
    let empty = chain.block(vec![], 1)?;
    report("empty block after them", &empty);

    // Signatures: the most transactions a block may hold, each checked before
    // anything runs. Only a faulty proposer includes bad ones (CheckTx refuses
    // them): every batch fails and each signature is checked alone. Keys
    // without fuel sign validly (one batch) and are refused by their account.
    let most = replicode_abci::limits::MAX_BLOCK_TXS;
    let mut chain = Chain::new()?;
    let bad = (0..most as u64)
        .map(|n| {
            let mut tx = Tx::new(Body::Kill(Kill { pid: 1 + n })).sign(
                &SigningKey::from([9; 32]),
                0,
                "bench",
            );
            tx.signature[0] ^= 1;
            tx.to_bytes()
        })
        .collect();
    report("8192 txs with bad signatures", &chain.block(bad, 1)?);
    let unfunded = (0..most as u64)
        .map(|n| {
            Tx::new(Body::Kill(Kill { pid: 1 + n }))
                .sign(&SigningKey::from([9; 32]), 0, "bench")
                .to_bytes()
        })
        .collect();
    report(
        "8192 txs signed by an unfunded key",
        &chain.block(unfunded, 1)?,
    );
    restart(&limits)?;
    install_vs_wasmtime()
}

/// What an install does (validate, prepare, compile) against wasmtime's own
/// compile of the same bytes with its default configuration, in the same run.
fn install_vs_wasmtime() -> Result<(), Error> {
    let plain = wasmtime::Engine::default();
    let ours =
        replicode_runtime::engine::GuestEngine::new(replicode_abci::machine::machine_config())?;
    for name in ["kv_server", "hostile", "fileops"] {
        let wasm = guest(name)?;
        let start = Instant::now();
        wasmtime::Module::new(&plain, &wasm)?;
        let compile = start.elapsed().as_secs_f64();
        let start = Instant::now();
        ours.load(&wasm)?;
        let install = start.elapsed().as_secs_f64();
        println!(
            "worst_block: prepare+compile {name} ({} KiB): {:.0} ms, wasmtime's compile {:.0} ms = {:.1}x",
            wasm.len() / 1024,
            install * 1000.0,
            compile * 1000.0,
            install / compile
        );
    }
    Ok(())
}

/// A validator with 20 installed programs restarts: with its module caches
/// warm (what `replicode start` has) and cold (every program prepared again).
fn restart(limits: &Limits) -> Result<(), Error> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wasm_programs/build");
    let mut names: Vec<String> = std::fs::read_dir(&root)?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let len = e.metadata().ok()?.len() as usize;
            let fits = limits.install_fuel(len) <= limits.max_block_fuel;
            name.strip_suffix(".wasm")
                .filter(|_| fits)
                .map(str::to_string)
        })
        .collect();
    names.sort();
    names.truncate(20);
    let dir = tempfile::tempdir()?;
    let cache = tempfile::tempdir()?;
    let open = |cached: bool| -> Result<(Core<Machine>, f64), Error> {
        let start = Instant::now();
        let machine = Machine::open_with_cache(dir.path(), cached.then(|| cache.path()))?;
        let secs = start.elapsed().as_secs_f64();
        Ok((
            Core::new(machine, Machine::validator(), SharedView::default())?,
            secs,
        ))
    };
    let (mut core, _) = open(true)?;
    core.init_chain(RequestInitChain {
        app_state_bytes: funded_genesis(),
        initial_height: 1,
        chain_id: "bench".into(),
        ..Default::default()
    })?;
    let mut bytes = 0;
    for (height, name) in (1i64..).zip(&names) {
        let wasm = guest(name)?;
        bytes += wasm.len();
        core.finalize_block(RequestFinalizeBlock {
            txs: vec![Bytes::from(install(&format!("/bin/{name}"), wasm))],
            height,
            hash: Bytes::from(vec![height as u8; 32]),
            ..Default::default()
        })?;
        core.commit()?;
    }
    drop(core);
    let (core, warm) = open(true)?;
    drop(core);
    let (core, cold) = open(false)?;
    drop(core);
    println!(
        "worst_block: restart with {} installed programs ({} KiB): {:.0} ms with warm caches, {:.0} ms cold (prepare and compile all)",
        names.len(),
        bytes / 1024,
        warm * 1000.0,
        cold * 1000.0
    );
    Ok(())
}
