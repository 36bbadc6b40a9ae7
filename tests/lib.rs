//! Shared harness for end-to-end tests: the real `replicode` binary, real
//! `cometbft` processes, a testnet on free loopback ports in a temporary directory.
//!
//! Everything a test starts is stopped in `Drop` — also when the test panics —
//! first politely (`replicode testnet down`), then by SIGKILL to every validator's
//! process group. Every wait is bounded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use replicode_abci::account::Signer;
use serde_json::Value;

/// The workspace root (this crate lives in `tests/`).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Heights of state each validator keeps readable in end-to-end runs: small, so
/// pruning runs during every test, large enough for the proofs they query.
pub const KEEP_HEIGHTS: u64 = 30;

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

/// The release `replicode` binary, built once per test process.
pub fn replicode_bin() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["build", "--release", "-p", "replicode"])
                .current_dir(workspace())
                .status()
                .map_err(|e| format!("cannot run cargo build: {e}"))?;
            if !status.success() {
                return Err(format!(
                    "cargo build --release -p replicode failed: {status}"
                ));
            }
            let bin = target_dir().join("release/replicode");
            if bin.is_file() {
                Ok(bin)
            } else {
                Err(format!("{} missing after the build", bin.display()))
            }
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// A guest program from `wasm_programs/build/`, built with make if missing.
pub fn guest(name: &str) -> anyhow::Result<PathBuf> {
    let path = workspace()
        .join("wasm_programs/build")
        .join(format!("{name}.wasm"));
    if !path.is_file() {
        let status = Command::new("make")
            .args(["-s", "-C"])
            .arg(workspace().join("wasm_programs"))
            .status()?;
        if !status.success() || !path.is_file() {
            bail!("cannot build {} (make -C wasm_programs)", path.display());
        }
    }
    Ok(path)
}

/// One validator as `testnet.json` describes it.
#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub home: PathBuf,
    pub rpc_port: u16,
}

/// A running testnet, stopped on drop.
pub struct Testnet {
    pub dir: tempfile::TempDir,
    pub bin: PathBuf,
    pub nodes: Vec<Node>,
    /// One testnet at a time per test process: 4 validators already fill 2 cores.
    _serial: std::sync::MutexGuard<'static, ()>,
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Testnet {
    /// `replicode testnet up --validators n` in a fresh temporary directory.
    pub fn up(validators: usize) -> anyhow::Result<Testnet> {
        Testnet::up_with_abci(validators, "grpc")
    }

    /// [`Testnet::up`] with the given ABCI transport (`grpc` or `socket`).
    pub fn up_with_abci(validators: usize, abci: &str) -> anyhow::Result<Testnet> {
        Testnet::up_with(validators, abci, &[])
    }

    /// [`Testnet::up`] with more funded keys (`NAME=FUEL`, `--account`).
    pub fn up_with_accounts(validators: usize, accounts: &[&str]) -> anyhow::Result<Testnet> {
        Testnet::up_with(validators, "grpc", accounts)
    }

    /// A testnet with the given ABCI transport and funded keys (`NAME=FUEL`).
    pub fn up_with(validators: usize, abci: &str, accounts: &[&str]) -> anyhow::Result<Testnet> {
        let bin = replicode_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("replicode-e2e-")
            .tempdir()?;
        // A test that panicked while holding the lock poisons it; the next may still run.
        let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let mut net = Testnet {
            dir,
            bin,
            nodes: Vec::new(),
            _serial: serial,
        };
        let genesis = workspace().join("genesis/app_state.json");
        let validators = validators.to_string();
        let mut args = vec![
            "testnet",
            "up",
            "--validators",
            &validators,
            "--dir",
            net.dir_str(),
            "--genesis",
            genesis.to_str().context("UTF-8")?,
            "--abci",
            abci,
        ];
        for account in accounts {
            args.extend(["--account", account]);
        }
        let out = net.run(&args)?;
        if !out.status.success() {
            bail!(
                "testnet up failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                net.logs()
            );
        }
        let layout: Value =
            serde_json::from_slice(&std::fs::read(net.dir.path().join("testnet.json"))?)?;
        for n in layout["nodes"].as_array().context("nodes")? {
            net.nodes.push(Node {
                name: n["name"].as_str().context("name")?.to_string(),
                home: PathBuf::from(n["home"].as_str().context("home")?),
                rpc_port: u16::try_from(n["ports"]["rpc"].as_u64().context("rpc port")?)?,
            });
        }
        Ok(net)
    }

    /// The chain id, as node 0 reports it.
    pub fn chain_id(&self) -> anyhow::Result<String> {
        let status = rpc_get(self.nodes[0].rpc_port, "/status")?;
        Ok(status["result"]["node_info"]["network"]
            .as_str()
            .context("chain id")?
            .to_string())
    }

    /// The key `name` of this testnet's keyring, at its committed sequence.
    pub fn account(&self, name: &str) -> anyhow::Result<Account> {
        let path = self.dir.path().join(format!("keyring/{name}.json"));
        let file: Value = serde_json::from_slice(
            &std::fs::read(&path).with_context(|| format!("{}", path.display()))?,
        )?;
        let seed: [u8; 32] = hex::decode(file["private_key"].as_str().context("private_key")?)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("{}: private key is not 32 bytes", path.display()))?;
        let port = self.nodes[0].rpc_port;
        let mut signer = Signer::new(
            ed25519_consensus::SigningKey::from(seed),
            &self.chain_id()?,
            0,
        );
        signer.sequence = account_sequence(port, &signer.address())?;
        Ok(Arc::new(Mutex::new(signer)))
    }

    pub fn dir_str(&self) -> &str {
        self.dir.path().to_str().unwrap_or_default()
    }

    /// Runs the binary with `args`. Validators it starts keep only the last
    /// [`KEEP_HEIGHTS`] heights, so every end-to-end run also prunes state while
    /// the validators must keep agreeing.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<Output> {
        Command::new(&self.bin)
            .args(args)
            .env("REPLICODE_KEEP_HEIGHTS", KEEP_HEIGHTS.to_string())
            .output()
            .with_context(|| format!("cannot run replicode {}", args.join(" ")))
    }

    /// Runs a client command against node `i` with `--output json` and parses stdout.
    pub fn json(&self, i: usize, args: &[&str]) -> anyhow::Result<(Value, Output)> {
        let url = self.url(i);
        let mut full: Vec<&str> = Vec::new();
        full.extend_from_slice(&args[..1]);
        full.extend_from_slice(&["--node", &url, "--output", "json"]);
        full.extend_from_slice(&args[1..]);
        let out = self.run(&full)?;
        let text = String::from_utf8_lossy(&out.stdout);
        let value = serde_json::from_str(text.trim()).unwrap_or(Value::Null);
        Ok((value, out))
    }

    pub fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].rpc_port)
    }

    /// GET on node `i`'s RPC (HTTP/1.0, so the body is not chunked).
    pub fn rpc(&self, i: usize, path_and_query: &str) -> anyhow::Result<Value> {
        rpc_get(self.nodes[i].rpc_port, path_and_query)
    }

    /// The latest height of node `i` (error if it does not answer).
    pub fn height(&self, i: usize) -> anyhow::Result<u64> {
        let status = self.rpc(i, "/status")?;
        let h = status["result"]["sync_info"]["latest_block_height"]
            .as_str()
            .context("height")?;
        Ok(h.parse()?)
    }

    /// Waits until node `i` reaches `height`.
    pub fn wait_height(&self, i: usize, height: u64, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(h) = self.height(i) {
                if h >= height {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not reach height {height} within {timeout:?}\n{}",
                    self.nodes[i].name,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The pid in node `i`'s pid file.
    pub fn pid(&self, i: usize) -> Option<i32> {
        std::fs::read_to_string(self.nodes[i].home.join("replicode.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The pid in node `i`'s `cometbft.pid` (its supervised cometbft).
    pub fn cometbft_pid(&self, i: usize) -> Option<i32> {
        std::fs::read_to_string(self.nodes[i].home.join("cometbft.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// SIGKILL to node `i`'s whole process group (replicode and its cometbft).
    pub fn kill9(&self, i: usize) {
        if let Some(pid) = self.pid(i) {
            let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
            let deadline = Instant::now() + Duration::from_secs(10);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Restarts every stopped validator (`testnet up` on the existing directory).
    pub fn restart_stopped(&self) -> anyhow::Result<()> {
        let out = self.run(&[
            "testnet",
            "up",
            "--dir",
            self.dir_str(),
            "--wait-secs",
            "60",
        ])?;
        if !out.status.success() {
            bail!(
                "testnet up (restart) failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.logs()
            );
        }
        Ok(())
    }

    /// `replicode verify` over every validator; Ok(stdout) when they agree.
    pub fn verify(&self) -> anyhow::Result<String> {
        let out = self.run(&["verify", "--testnet", self.dir_str(), "--quiet"])?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "verify failed: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(stdout)
    }

    /// The tails of every node's logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for n in &self.nodes {
            for file in ["replicode.log", "cometbft.log"] {
                let text = std::fs::read_to_string(n.home.join(file)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                all.push_str(&format!("--- {} {file}\n", n.name));
                for line in tail.into_iter().rev() {
                    all.push_str(line);
                    all.push('\n');
                }
            }
        }
        all
    }
}

impl Drop for Testnet {
    fn drop(&mut self) {
        let _ = Command::new(&self.bin)
            .args(["testnet", "down", "--dir", self.dir_str()])
            .output();
        // Belt and braces: anything still alive dies with its process group.
        for i in 0..self.nodes.len() {
            self.kill9(i);
        }
    }
}

/// True if `pid` exists and is not a zombie (daemons reparented to a PID 1 that
/// does not reap linger as zombies after SIGKILL).
pub fn alive(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                != Some("Z")
        }
        Err(_) => true,
    }
}

/// The parent pid of `pid` (field 4 of `/proc/PID/stat`).
pub fn parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Waits up to `timeout` for `pid` to be gone (exited or a zombie).
pub fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// A bounded HTTP/1.0 GET on 127.0.0.1:`port`, parsed as JSON.
pub fn rpc_get(port: u16, path_and_query: &str) -> anyhow::Result<Value> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .context("no HTTP body")?;
    serde_json::from_str(body)
        .with_context(|| format!("RPC {path_and_query} answered non-JSON: {body:.200}"))
}

/// Broadcasts raw tx bytes; returns (CheckTx code, log, hash hex).
pub fn broadcast_raw(port: u16, tx: &[u8]) -> anyhow::Result<(u32, String, String)> {
    let v = rpc_get(
        port,
        &format!("/broadcast_tx_sync?tx=0x{}", hex::encode(tx)),
    )?;
    if !v["error"].is_null() {
        bail!("broadcast refused by CometBFT: {}", v["error"]);
    }
    let r = &v["result"];
    let code = u32::try_from(r["code"].as_u64().unwrap_or(0))?;
    Ok((
        code,
        r["log"].as_str().unwrap_or_default().to_string(),
        r["hash"].as_str().unwrap_or_default().to_string(),
    ))
}

/// Waits for a transaction's result: (height, code, base64 data, log).
pub fn wait_tx(port: u16, hash_hex: &str, timeout: Duration) -> anyhow::Result<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let v = rpc_get(port, &format!("/tx?hash=0x{hash_hex}"))?;
        if v["error"].is_null() && !v["result"].is_null() {
            return Ok(v["result"].clone());
        }
        if Instant::now() >= deadline {
            bail!(
                "tx {hash_hex} not committed within {timeout:?}: {}",
                v["error"]
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A committed transaction's result, decoded.
#[derive(Clone, Debug)]
pub struct Committed {
    pub height: u64,
    pub code: u32,
    pub log: String,
    pub gas_used: u64,
    pub output: replicode_abci::result::TxOutput,
}

impl Committed {
    /// The targeted process's stdout as text.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout_of(self.output.pid)).into_owned()
    }
}

/// A funded key with its next sequence, shared by the helpers that sign.
pub type Account = Arc<Mutex<Signer>>;

/// `address`'s committed sequence, as `port`'s node answers `/account`.
pub fn account_sequence(
    port: u16,
    address: &replicode_abci::account::Address,
) -> anyhow::Result<u64> {
    let v = rpc_get(
        port,
        &format!(
            "/abci_query?path=%22/account%22&data=0x{}",
            hex::encode(address.to_string())
        ),
    )?;
    use base64::Engine as _;
    let value = v["result"]["response"]["value"]
        .as_str()
        .context("account answer")?;
    let info: Value =
        serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(value)?)?;
    info["sequence"].as_u64().context("sequence")
}

/// Signs `body` as `account` with its next sequence and broadcasts it to
/// `port`; Err when CheckTx refuses it (the sequence is then not used). The
/// account stays locked until CheckTx answers, so one account's transactions
/// reach the mempool in sequence order.
pub fn submit(
    port: u16,
    account: &Account,
    body: replicode_abci::tx::Body,
) -> anyhow::Result<Committed> {
    let hash = {
        let mut signer = account.lock().unwrap_or_else(|p| p.into_inner());
        let tx = signer.sign_bytes(replicode_abci::tx::Tx::new(body));
        let (code, log, hash) = broadcast_raw(port, &tx)?;
        if code != 0 {
            signer.sequence -= 1;
            bail!("CheckTx refused with code {code}: {log}");
        }
        hash
    };
    wait_committed(port, &hash)
}

/// The committed result of the transaction `hash` (waits up to a minute).
pub fn wait_committed(port: u16, hash: &str) -> anyhow::Result<Committed> {
    use base64::Engine as _;
    let r = wait_tx(port, hash, Duration::from_secs(60))?;
    let res = &r["tx_result"];
    let data = base64::engine::general_purpose::STANDARD
        .decode(res["data"].as_str().unwrap_or_default())?;
    Ok(Committed {
        height: r["height"].as_str().unwrap_or("0").parse()?,
        code: u32::try_from(res["code"].as_u64().unwrap_or(0))?,
        log: res["log"].as_str().unwrap_or_default().to_string(),
        gas_used: res["gas_used"].as_str().unwrap_or("0").parse()?,
        output: replicode_abci::result::TxOutput::from_bytes(&data)?,
    })
}

/// Installs `guest` at `/bin/<guest>` and spawns it with `args`; returns the pid.
/// The process is public: any account may feed it (the services these tests
/// drive are shared).
pub fn install_and_spawn(
    port: u16,
    account: &Account,
    guest_name: &str,
    args: &[&str],
) -> anyhow::Result<u64> {
    use replicode_abci::tx::{Body, Install, Spawn};
    let wasm = std::fs::read(guest(guest_name)?)?;
    let path = format!("/bin/{guest_name}");
    let installed = submit(
        port,
        account,
        Body::Install(Install {
            path: path.clone(),
            wasm,
        }),
    )?;
    if installed.code != 0 {
        bail!("install {path}: code {} {}", installed.code, installed.log);
    }
    let spawned = submit(
        port,
        account,
        Body::Spawn(Spawn {
            path: path.clone(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: vec![],
            public: true,
        }),
    )?;
    if spawned.code != 0 {
        bail!("spawn {path}: code {} {}", spawned.code, spawned.log);
    }
    Ok(spawned.output.pid)
}

/// One line to a process's stdin; returns the committed result.
pub fn send_line(port: u16, account: &Account, pid: u64, line: &str) -> anyhow::Result<Committed> {
    let data = format!("{line}\n").into_bytes();
    submit(
        port,
        account,
        replicode_abci::tx::Body::Stdin(replicode_abci::tx::Stdin {
            pid,
            data,
            eof: false,
        }),
    )
}

/// A bounded JSON-RPC POST (for bodies too large for a GET URL).
pub fn rpc_post(port: u16, method: &str, params: Value) -> anyhow::Result<Value> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = serde_json::to_vec(
        &serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}),
    )?;
    write!(stream, "POST / HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len())?;
    stream.write_all(&body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .context("no HTTP body")?;
    serde_json::from_str(body)
        .with_context(|| format!("RPC {method} answered non-JSON: {body:.200}"))
}
