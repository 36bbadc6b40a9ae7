//! Whole-testnet throughput and commit latency: the kv server on a 4-validator
//! RepliCode testnet against CometBFT's own `kvstore` app on the same 4-node
//! setup, in the same run. Not a timed test: prints a table.
//!
//! Run: `cargo bench -p replicode-e2e --bench testnet` (after `make -C wasm_programs`).
//! Load: CLIENTS threads, each broadcasting with `broadcast_tx_sync` as fast as the
//! mempool accepts for SECONDS; throughput = committed txs / elapsed block time;
//! latency = broadcast → visible in `/tx`, sampled on one client.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use replicode_abci::tx::{Body, Stdin, Tx};
use replicode_e2e::{broadcast_raw, install_and_spawn, rpc_get, wait_tx, Testnet};

const CLIENTS: usize = 8;
const SECONDS: u64 = 20;

fn main() -> anyhow::Result<()> {
    let kv = kvstore_run()?;
    let rc = replicode_run()?;
    println!(
        "\n| app | committed tx/s | commit latency p50 | p99 | blocks | txs/block \
         | broadcasts accepted / refused / failed |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, r) in [("cometbft kvstore", &kv), ("replicode kv_server", &rc)] {
        println!(
            "| {name} | {:.0} | {:.0} ms | {:.0} ms | {} | {:.0} | {} / {} / {} |",
            r.tps,
            r.p50_ms,
            r.p99_ms,
            r.blocks,
            r.txs as f64 / r.blocks.max(1) as f64,
            r.accepted,
            r.refused,
            r.failed
        );
    }
    println!(
        "ratio replicode/kvstore throughput: {:.2}",
        rc.tps / kv.tps.max(1e-9)
    );
    Ok(())
}

struct Result_ {
    tps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Blocks and transactions committed during the run.
    blocks: u64,
    txs: u64,
    /// Broadcasts CheckTx accepted / refused (non-zero code) / that failed at RPC.
    accepted: u64,
    refused: u64,
    failed: u64,
}

fn replicode_run() -> anyhow::Result<Result_> {
    let net = Testnet::up(4)?;
    let port = net.nodes[0].rpc_port;
    let pid = install_and_spawn(port, "kv_server", &["/kv.log"])?;
    let ports: Vec<u16> = net.nodes.iter().map(|n| n.rpc_port).collect();
    load(&ports, move |client, i| {
        let data = format!("SET c{client}k{i} v{i}\n").into_bytes();
        Tx::new(
            Body::Stdin(Stdin {
                pid,
                data,
                eof: false,
            }),
            (client as u64) << 40 | i,
        )
        .to_bytes()
    })
}

fn kvstore_run() -> anyhow::Result<Result_> {
    let dir = tempfile::tempdir()?;
    let bin = replicode_e2e::replicode_bin()?;
    // The same layout as `replicode testnet up` (ports, peers, timeouts), built
    // without starting: then each node runs `cometbft start --proxy_app=kvstore`.
    let genesis = replicode_e2e::workspace().join("genesis/app_state.json");
    let out = Command::new(&bin)
        .args(["testnet", "up", "--validators", "4", "--dir"])
        .arg(dir.path())
        .arg("--genesis")
        .arg(&genesis)
        .args(["--wait-secs", "60"])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "testnet up: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Command::new(&bin)
        .args(["testnet", "down", "--dir"])
        .arg(dir.path())
        .output()?;
    let layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("testnet.json"))?)?;
    let mut children = Nodes(Vec::new());
    let mut ports = Vec::new();
    for n in layout["nodes"].as_array().into_iter().flatten() {
        let home = Path::new(n["home"].as_str().unwrap_or_default());
        // Fresh chain data for kvstore (the replicode run wrote blocks).
        let _ = std::fs::remove_dir_all(home.join("data"));
        std::fs::create_dir_all(home.join("data"))?;
        std::fs::write(
            home.join("data/priv_validator_state.json"),
            r#"{"height":"0","round":0,"step":0}"#,
        )?;
        let log = std::fs::File::create(home.join("kvstore.log"))?;
        children.0.push(
            Command::new("cometbft")
                .args(["start", "--proxy_app=kvstore", "--home"])
                .arg(home)
                .stdout(log.try_clone()?)
                .stderr(log)
                .stdin(Stdio::null())
                .spawn()?,
        );
        ports.push(u16::try_from(n["ports"]["rpc"].as_u64().unwrap_or(0))?);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for &p in &ports {
        while rpc_get(p, "/status")
            .map(|v| v["result"]["sync_info"]["latest_block_height"] == "0")
            .unwrap_or(true)
        {
            anyhow::ensure!(
                Instant::now() < deadline,
                "kvstore node on {p} did not start"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    load(&ports, |client, i| {
        format!("c{client}k{i}=v{i}").into_bytes()
    })
}

/// Kills the kvstore cometbft processes even if the run fails.
struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn load(
    ports: &[u16],
    make: impl Fn(usize, u64) -> Vec<u8> + Send + Sync + 'static,
) -> anyhow::Result<Result_> {
    let make = Arc::new(make);
    let stop = Arc::new(AtomicBool::new(false));
    // accepted, refused, failed broadcasts over all clients.
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let start_height = height(ports[0])?;
    let started = Instant::now();
    let mut workers = Vec::new();
    for client in 0..CLIENTS {
        let (port, make, stop, counts) = (
            ports[client % ports.len()],
            make.clone(),
            stop.clone(),
            counts.clone(),
        );
        workers.push(std::thread::spawn(move || -> Vec<f64> {
            let mut latencies = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let t0 = Instant::now();
                let Ok((code, _, hash)) = broadcast_raw(port, &make(client, i)) else {
                    counts[2].fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                counts[usize::from(code != 0)].fetch_add(1, Ordering::Relaxed);
                if code != 0 {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                // Client 0 samples latency on every 10th tx; the others only load.
                if client == 0
                    && i % 10 == 0
                    && wait_tx(port, &hash, Duration::from_secs(30)).is_ok()
                {
                    latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
                }
            }
            latencies
        }));
    }
    std::thread::sleep(Duration::from_secs(SECONDS));
    stop.store(true, Ordering::SeqCst);
    let mut latencies: Vec<f64> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap_or_default())
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let end_height = height(ports[0])?;
    let mut txs = 0u64;
    for h in (start_height + 1)..=end_height {
        let b = rpc_get(ports[0], &format!("/block?height={h}"))?;
        txs += b["result"]["block"]["data"]["txs"]
            .as_array()
            .map(|a| a.len() as u64)
            .unwrap_or(0);
    }
    let secs = started.elapsed().as_secs_f64();
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    Ok(Result_ {
        tps: txs as f64 / secs,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        blocks: end_height.saturating_sub(start_height),
        txs,
        accepted: counts[0].load(Ordering::Relaxed),
        refused: counts[1].load(Ordering::Relaxed),
        failed: counts[2].load(Ordering::Relaxed),
    })
}

fn height(port: u16) -> anyhow::Result<u64> {
    let v = rpc_get(port, "/status")?;
    Ok(v["result"]["sync_info"]["latest_block_height"]
        .as_str()
        .unwrap_or("0")
        .parse()?)
}
