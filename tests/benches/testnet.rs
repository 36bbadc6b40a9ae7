//! Whole-testnet throughput and commit latency: the kv server on a 4-validator
//! RepliCode testnet against CometBFT's own `kvstore` app on the same 4-node
//! setup, in the same run. Not a timed test: prints a table.
//!
//! Baselines: `cometbft start --proxy_app=kvstore` (the app is a Go call inside
//! cometbft) and, when `abci-cli` is installed, the same kvstore as a separate
//! process behind CometBFT's gRPC ABCI client — the transport replicode uses by
//! default. `TESTNET_BENCH_TRANSPORTS=1` adds the socket transport (kvstore over
//! TCP and a unix socket, replicode over TCP).
//!
//! Run: `cargo bench -p replicode-e2e --bench testnet` (after `make -C wasm_programs`).
//! Load: CLIENTS threads, each broadcasting with `broadcast_tx_sync` as fast as the
//! mempool accepts for SECONDS; throughput = committed txs / elapsed block time;
//! latency = broadcast → visible in `/tx`, sampled on one client. The CPU column
//! sums user + system time of the app and cometbft processes during the load.
//! `TESTNET_BENCH_FLOOD=1` adds a row with the same honest load while FLOODERS
//! more threads broadcast validly signed inputs from keys genesis never funded
//! (refused at CheckTx, `insufficient_fuel`): what such a flood takes from
//! honest traffic.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use replicode_abci::tx::{Body, Stdin, Tx};
use replicode_e2e::{broadcast_raw, install_and_spawn, rpc_get, wait_tx, Testnet};

/// Concurrent closed-loop clients (each waits for its CheckTx answer before the
/// next broadcast); `TESTNET_BENCH_CLIENTS` overrides. 32 keep every app's
/// mempool supplied: with 8, throughput is 8 / (broadcast round trip), a latency
/// measurement in which CometBFT's socket client dominates.
const CLIENTS: usize = 32;
const SECONDS: u64 = 20;
/// Threads of the unfunded flood (`TESTNET_BENCH_FLOOD=1`).
const FLOODERS: usize = 4;

fn main() -> anyhow::Result<()> {
    // `TESTNET_BENCH_ONLY=replicode` skips the baselines, `=baselines` skips
    // replicode (for diagnosis only: the ratio needs both in the same run).
    let only = std::env::var("TESTNET_BENCH_ONLY").unwrap_or_default();
    let only_replicode = only == "replicode";
    let transports = std::env::var("TESTNET_BENCH_TRANSPORTS").as_deref() == Ok("1");
    let mut rows: Vec<(&str, Result_)> = Vec::new();
    if !only_replicode {
        rows.push((
            "cometbft kvstore (in-process)",
            kvstore_run(Baseline::InProcess)?,
        ));
        match abci_cli() {
            Some(cli) => {
                // The same Go kvstore as a separate process behind CometBFT's
                // gRPC client, as replicode is: separates the transport's cost
                // from the app's own.
                rows.push((
                    "cometbft + abci-cli kvstore (grpc)",
                    kvstore_run(Baseline::External(cli.clone(), Transport::Grpc))?,
                ));
                // `TESTNET_BENCH_TRANSPORTS=1`: also CometBFT's socket transport
                // (TCP and unix), to see what each transport costs CometBFT.
                if transports {
                    rows.push((
                        "cometbft + abci-cli kvstore (socket)",
                        kvstore_run(Baseline::External(cli.clone(), Transport::Tcp))?,
                    ));
                    rows.push((
                        "cometbft + abci-cli kvstore (unix socket)",
                        kvstore_run(Baseline::External(cli, Transport::Unix))?,
                    ));
                }
            }
            None => eprintln!(
                "abci-cli not found: skipping the out-of-process kvstore baselines (install: \
                 go install github.com/cometbft/cometbft/abci/cmd/abci-cli@v0.38.25)"
            ),
        }
    }
    if only == "baselines" {
        print_table(&rows);
        return Ok(());
    }
    if transports {
        rows.push(("replicode kv_server (socket)", replicode_run("socket")?));
    }
    rows.push(("replicode kv_server (grpc)", replicode_run("grpc")?));
    if std::env::var("TESTNET_BENCH_FLOOD").as_deref() == Ok("1") {
        rows.push((
            "replicode kv_server (grpc) + unfunded flood",
            replicode_run_with("grpc", FLOODERS)?,
        ));
    }
    print_table(&rows);
    let rc = &rows
        .iter()
        .rfind(|(name, _)| *name == "replicode kv_server (grpc)")
        .map(|(_, r)| r.clone())
        .unwrap_or_else(|| rows[rows.len() - 1].1.clone());
    for (name, r) in rows
        .iter()
        .filter(|(n, _)| !n.starts_with("replicode kv_server (grpc)"))
    {
        println!(
            "ratio replicode / {name} throughput: {:.2}",
            rc.tps / r.tps.max(1e-9)
        );
    }
    Ok(())
}

fn print_table(rows: &[(&str, Result_)]) {
    println!(
        "\n| app | committed tx/s | commit latency p50 | p99 | blocks | txs/block \
         | broadcasts accepted / refused / failed | CPU s app / cometbft |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, r) in rows {
        println!(
            "| {name} | {:.0} | {:.0} ms | {:.0} ms | {} | {:.0} | {} / {} / {} | {:.1} / {:.1} |",
            r.tps,
            r.p50_ms,
            r.p99_ms,
            r.blocks,
            r.txs as f64 / r.blocks.max(1) as f64,
            r.accepted,
            r.refused,
            r.failed,
            r.cpu_app,
            r.cpu_cometbft,
        );
    }
    for (name, r) in rows {
        for (kind, n) in &r.failures {
            println!("{name}: {n} broadcasts failed or refused: {kind}");
        }
    }
}

/// `$ABCI_CLI`, else `abci-cli` on PATH, else `~/go/bin/abci-cli`.
fn abci_cli() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("ABCI_CLI") {
        return Some(p.into());
    }
    let mut dirs: Vec<std::path::PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join("go/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("abci-cli"))
        .find(|p| p.is_file())
}

/// Which kvstore the baseline runs.
enum Baseline {
    /// `cometbft start --proxy_app=kvstore`: the app is a Go call in cometbft.
    InProcess,
    /// `abci-cli kvstore` as a separate process, dialled by cometbft over `Transport`.
    External(std::path::PathBuf, Transport),
}

/// How cometbft reaches an out-of-process app.
#[derive(Clone, Copy)]
enum Transport {
    /// The ABCI socket protocol over loopback TCP (what replicode uses).
    Tcp,
    /// The ABCI socket protocol over a unix domain socket.
    Unix,
    /// gRPC over loopback TCP.
    Grpc,
}

#[derive(Default, Clone)]
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
    /// Failed broadcasts by error message (its first 100 characters).
    failures: BTreeMap<String, u64>,
    /// CPU seconds (user + system) the app processes and the cometbft processes
    /// used during the load, summed over the validators (kvstore: app in cometbft).
    cpu_app: f64,
    cpu_cometbft: f64,
}

/// The processes of a testnet, for CPU accounting.
struct Procs {
    app: Vec<i32>,
    cometbft: Vec<i32>,
}

impl Procs {
    fn cpu(&self) -> (f64, f64) {
        let sum = |pids: &[i32]| pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>();
        (sum(&self.app), sum(&self.cometbft))
    }
}

/// utime + stime of `pid` from /proc (clock ticks of USER_HZ = 100 on Linux).
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After the command: state is field 3, utime 14, stime 15 (1-based).
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(11) + tick(12)) / 100.0
}

/// The `cometbft` children of `parent`.
fn cometbft_children(parent: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid = rest.split_whitespace().nth(1).and_then(|v| v.parse().ok());
        if ppid == Some(parent) && head.ends_with("(cometbft") {
            out.push(pid);
        }
    }
    out
}

/// The kv server on a 4-validator testnet whose cometbfts use `abci` (the
/// default is gRPC).
fn replicode_run(abci: &str) -> anyhow::Result<Result_> {
    replicode_run_with(abci, 0)
}

/// [`replicode_run`] while `flooders` threads broadcast signed inputs from
/// unfunded keys to every validator, as fast as CheckTx refuses them.
fn replicode_run_with(abci: &str, flooders: usize) -> anyhow::Result<Result_> {
    // One funded account per client: each signs its own sequence.
    let accounts: Vec<String> = (0..clients())
        .map(|c| format!("bench{c}=1000000000000000"))
        .collect();
    let accounts: Vec<&str> = accounts.iter().map(String::as_str).collect();
    let net = Testnet::up_with(4, abci, &accounts)?;
    let acct = net.account("default")?;
    let port = net.nodes[0].rpc_port;
    let pid = install_and_spawn(port, &acct, "kv_server", &["/kv.log"])?;
    // Every validator must have committed the spawn (its block store reports a
    // height before the app's Commit: wait one more), or its CheckTx refuses the
    // first stdin transactions (unknown pid).
    let spawned_at = net.height(0)?;
    for i in 0..net.nodes.len() {
        net.wait_height(i, spawned_at + 1, Duration::from_secs(30))?;
    }
    let ports: Vec<u16> = net.nodes.iter().map(|n| n.rpc_port).collect();
    let app: Vec<i32> = (0..net.nodes.len()).filter_map(|i| net.pid(i)).collect();
    let procs = Procs {
        cometbft: app.iter().flat_map(|&p| cometbft_children(p)).collect(),
        app,
    };
    let signers: Vec<_> = (0..clients())
        .map(|c| net.account(&format!("bench{c}")))
        .collect::<anyhow::Result<_>>()?;
    let stop_flood = Arc::new(AtomicBool::new(false));
    let flood_refused = Arc::new(AtomicU64::new(0));
    let chain_id = net.chain_id()?;
    let flood: Vec<_> = (0..flooders)
        .map(|f| {
            let (stop, refused, ports, chain_id) = (
                stop_flood.clone(),
                flood_refused.clone(),
                ports.clone(),
                chain_id.clone(),
            );
            std::thread::spawn(move || {
                let mut key = replicode_abci::account::Signer::from_seed(200 + f as u8, &chain_id);
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    key.sequence = 0;
                    let tx = key.sign_bytes(Tx::new(Body::Stdin(Stdin {
                        pid,
                        data: format!("SET flood{f}_{i} x\n").into_bytes(),
                        eof: false,
                    })));
                    if let Ok((code, _, _)) = broadcast_raw(ports[i as usize % ports.len()], &tx) {
                        if code == replicode_abci::codes::Code::InsufficientFuel.value() {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    let result = load(&ports, &procs, move |client, sequence, i| {
        let data = format!("SET c{client}k{i} v{i}\n").into_bytes();
        // What one SET needs: a block holds max_block_fuel / this many inputs.
        let tx = Tx::new(Body::Stdin(Stdin {
            pid,
            data,
            eof: false,
        }))
        .with_fuel(400_000);
        let signer = signers[client].lock().unwrap_or_else(|p| p.into_inner());
        signer.sign_with(tx, sequence).to_bytes()
    });
    stop_flood.store(true, Ordering::SeqCst);
    for thread in flood {
        let _ = thread.join();
    }
    if flooders > 0 {
        eprintln!(
            "unfunded flood: {} signed inputs refused with insufficient_fuel",
            flood_refused.load(Ordering::Relaxed)
        );
    }
    result
}

fn kvstore_run(baseline: Baseline) -> anyhow::Result<Result_> {
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
    // Pids for CPU accounting: the apps (socket baseline only) and the cometbfts.
    let (mut apps, mut nodes) = (Vec::new(), Vec::new());
    let mut homes = Vec::new();
    for n in layout["nodes"].as_array().into_iter().flatten() {
        let home = Path::new(n["home"].as_str().unwrap_or_default());
        homes.push(home.to_path_buf());
        // Fresh chain data for kvstore (the replicode run wrote blocks).
        let _ = std::fs::remove_dir_all(home.join("data"));
        std::fs::create_dir_all(home.join("data"))?;
        std::fs::write(
            home.join("data/priv_validator_state.json"),
            r#"{"height":"0","round":0,"step":0}"#,
        )?;
        let log = std::fs::File::create(home.join("kvstore.log"))?;
        let mut cometbft = Command::new("cometbft");
        cometbft.args(["start", "--home"]).arg(home);
        match &baseline {
            Baseline::InProcess => {
                cometbft.arg("--proxy_app=kvstore");
            }
            Baseline::External(_, Transport::Tcp | Transport::Unix) => {
                cometbft.args(["--abci", "socket"]);
            }
            Baseline::External(_, Transport::Grpc) => {}
        }
        match &baseline {
            Baseline::InProcess => {}
            Baseline::External(cli, transport) => {
                let abci = u16::try_from(n["ports"]["abci"].as_u64().unwrap_or(0))?;
                let sock = home.join("abci.sock");
                let _ = std::fs::remove_file(&sock);
                let address = match transport {
                    Transport::Unix => format!("unix://{}", sock.display()),
                    Transport::Tcp | Transport::Grpc => format!("tcp://127.0.0.1:{abci}"),
                };
                let app_log = std::fs::File::create(home.join("abci-cli.log"))?;
                let mut app = Command::new(cli);
                app.args(["kvstore", "--address", &address]);
                if let Transport::Grpc = transport {
                    // cometbft's gRPC client takes a bare host:port.
                    app.args(["--abci", "grpc"]);
                    cometbft.args(["--abci", "grpc"]);
                    cometbft.args(["--proxy_app", &format!("127.0.0.1:{abci}")]);
                } else {
                    cometbft.args(["--proxy_app", &address]);
                }
                let app = app
                    .stdout(app_log.try_clone()?)
                    .stderr(app_log)
                    .stdin(Stdio::null())
                    .spawn()?;
                apps.push(i32::try_from(app.id())?);
                children.0.push(app);
                match transport {
                    Transport::Unix => wait_for_file(&sock)?,
                    Transport::Tcp | Transport::Grpc => wait_listening(abci)?,
                }
            }
        }
        children.0.push(
            cometbft
                .stdout(log.try_clone()?)
                .stderr(log)
                .stdin(Stdio::null())
                .spawn()?,
        );
        nodes.push(i32::try_from(children.0[children.0.len() - 1].id())?);
        ports.push(u16::try_from(n["ports"]["rpc"].as_u64().unwrap_or(0))?);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for &p in &ports {
        while rpc_get(p, "/status")
            .map(|v| v["result"]["sync_info"]["latest_block_height"] == "0")
            .unwrap_or(true)
        {
            if Instant::now() >= deadline {
                let tails: Vec<String> = homes
                    .iter()
                    .flat_map(|h| [h.join("kvstore.log"), h.join("abci-cli.log")])
                    .filter_map(|f| std::fs::read_to_string(&f).ok().map(|t| (f, t)))
                    .map(|(f, t)| {
                        let tail: Vec<&str> = t.lines().rev().take(5).collect();
                        format!("{}:\n{}", f.display(), tail.join("\n"))
                    })
                    .collect();
                anyhow::bail!("kvstore node on {p} did not start\n{}", tails.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let procs = Procs {
        app: apps,
        cometbft: nodes,
    };
    let r = load(&ports, &procs, |client, _, i| {
        format!("c{client}k{i}=v{i}").into_bytes()
    })?;
    eprintln!("kvstore run done: {:.0} tx/s", r.tps);
    Ok(r)
}

/// Waits (bounded) until a unix socket file exists.
fn wait_for_file(path: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} did not appear",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Waits (bounded) until something accepts connections on 127.0.0.1:`port`.
fn wait_listening(port: u16) -> anyhow::Result<()> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
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

/// Load threads: `TESTNET_BENCH_CLIENTS`, else [`CLIENTS`].
fn clients() -> usize {
    std::env::var("TESTNET_BENCH_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CLIENTS)
}

fn load(
    ports: &[u16],
    procs: &Procs,
    // (client, the client's accepted transactions so far, attempt number)
    make: impl Fn(usize, u64, u64) -> Vec<u8> + Send + Sync + 'static,
) -> anyhow::Result<Result_> {
    let make = Arc::new(make);
    let stop = Arc::new(AtomicBool::new(false));
    // accepted, refused, failed broadcasts over all clients.
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let failures = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let start_height = height(ports[0])?;
    let cpu_before = procs.cpu();
    let started = Instant::now();
    let mut workers = Vec::new();
    let clients = clients();
    for client in 0..clients {
        let (port, make, stop, counts, failures) = (
            ports[client % ports.len()],
            make.clone(),
            stop.clone(),
            counts.clone(),
            failures.clone(),
        );
        workers.push(std::thread::spawn(move || -> Vec<f64> {
            let mut latencies = Vec::new();
            let mut i = 0u64;
            let mut accepted = 0u64;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let t0 = Instant::now();
                let (code, hash) = match broadcast_raw(port, &make(client, accepted, i)) {
                    Ok((code, log, hash)) => {
                        if code != 0 {
                            let kind: String = format!("CheckTx code {code}: {log}")
                                .chars()
                                .take(100)
                                .collect();
                            let mut f = failures.lock().unwrap_or_else(|p| p.into_inner());
                            *f.entry(kind).or_default() += 1;
                        }
                        (code, hash)
                    }
                    Err(e) => {
                        counts[2].fetch_add(1, Ordering::Relaxed);
                        let kind: String = e.to_string().chars().take(100).collect();
                        let mut f = failures.lock().unwrap_or_else(|p| p.into_inner());
                        *f.entry(kind).or_default() += 1;
                        drop(f);
                        // Back off like a refusal instead of spinning on the CPU
                        // the validators need.
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                counts[usize::from(code != 0)].fetch_add(1, Ordering::Relaxed);
                if code == 0 {
                    accepted += 1;
                }
                if code != 0 {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                // Client 0 samples latency on every 10th tx; the others only load.
                if client == 0
                    && i.is_multiple_of(10)
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
    let cpu_after = procs.cpu();
    let mut txs = 0u64;
    for h in (start_height + 1)..=end_height {
        let b = rpc_get(ports[0], &format!("/block?height={h}"))?;
        txs += b["result"]["block"]["data"]["txs"]
            .as_array()
            .map(|a| a.len() as u64)
            .unwrap_or(0);
    }
    let secs = started.elapsed().as_secs_f64();
    let failures = std::mem::take(&mut *failures.lock().unwrap_or_else(|p| p.into_inner()));
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
        failures,
        cpu_app: cpu_after.0 - cpu_before.0,
        cpu_cometbft: cpu_after.1 - cpu_before.1,
    })
}

fn height(port: u16) -> anyhow::Result<u64> {
    let v = rpc_get(port, "/status")?;
    Ok(v["result"]["sync_info"]["latest_block_height"]
        .as_str()
        .unwrap_or("0")
        .parse()?)
}
