//! The layout of a validator home directory, and writing its configuration.
//!
//! A home is a CometBFT home (`config/`, `data/`) plus RepliCode's own files:
//! `replicode/` (the merkle-fs store), `cometbft.log`, `replicode.log`, and while
//! `replicode start` runs: `replicode.pid`, `cometbft.pid` (its child) and the
//! flock on `replicode.lock` (see `supervisor`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use replicode_abci::genesis::GenesisState;
use replicode_abci::server::Transport;

use crate::cometbft::{self, set_toml};

/// Paths inside one home.
#[derive(Clone, Debug)]
pub struct Home(pub PathBuf);

impl Home {
    pub fn config_toml(&self) -> PathBuf {
        self.0.join("config/config.toml")
    }
    pub fn genesis_json(&self) -> PathBuf {
        self.0.join("config/genesis.json")
    }
    pub fn store_dir(&self) -> PathBuf {
        self.0.join("replicode")
    }
    /// Prepared and compiled modules this node keeps so a restart is quick;
    /// deleting it only makes the next start slower.
    pub fn module_cache_dir(&self) -> PathBuf {
        self.0.join("module-cache")
    }
    pub fn cometbft_log(&self) -> PathBuf {
        self.0.join("cometbft.log")
    }
    pub fn log(&self) -> PathBuf {
        self.0.join("replicode.log")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.0.join("replicode.pid")
    }
    pub fn cometbft_pid_file(&self) -> PathBuf {
        self.0.join("cometbft.pid")
    }
    pub fn lock_file(&self) -> PathBuf {
        self.0.join("replicode.lock")
    }

    pub fn read_config(&self) -> anyhow::Result<String> {
        std::fs::read_to_string(self.config_toml()).with_context(|| {
            format!(
                "cannot read {} (hint: replicode init --home {})",
                self.config_toml().display(),
                self.0.display()
            )
        })
    }

    /// How CometBFT will talk to the app (config.toml `abci`; absent = socket,
    /// CometBFT's default).
    pub fn abci_transport(&self) -> anyhow::Result<Transport> {
        let text = self.read_config()?;
        match cometbft::get_toml(&text, "", "abci") {
            None => Ok(Transport::Socket),
            Some(value) => Transport::from_config_value(&value).with_context(|| {
                format!(
                    "{}: abci = {value:?} is neither \"socket\" nor \"grpc\"",
                    self.config_toml().display()
                )
            }),
        }
    }

    /// The ABCI address CometBFT will dial (`proxy_app`), where `start` listens.
    pub fn abci_addr(&self) -> anyhow::Result<std::net::SocketAddr> {
        let text = self.read_config()?;
        let laddr = cometbft::get_toml(&text, "", "proxy_app")
            .with_context(|| format!("{} has no proxy_app", self.config_toml().display()))?;
        cometbft::socket_addr(&laddr)
    }
}

/// Ports of one validator, all on 127.0.0.1.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct Ports {
    pub p2p: u16,
    pub rpc: u16,
    pub abci: u16,
}

/// The ABCI transport between cometbft and `replicode start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Abci {
    /// CometBFT's gRPC client: about 1.5x the throughput of the socket client
    /// on a saturated machine (docs/benchmarks.md).
    Grpc,
    /// CometBFT's ABCI socket protocol over TCP.
    Socket,
}

impl Abci {
    pub fn transport(self) -> Transport {
        match self {
            Abci::Grpc => Transport::Grpc,
            Abci::Socket => Transport::Socket,
        }
    }
}

/// Rewrites config.toml for a loopback node: addresses, peers, ABCI transport
/// and fast blocks.
pub fn configure(
    home: &Home,
    ports: Ports,
    peers: &str,
    fast: bool,
    abci: Abci,
) -> anyhow::Result<()> {
    let mut text = home.read_config()?;
    let q = |s: String| format!("\"{s}\"");
    let transport = abci.transport();
    text = set_toml(&text, "", "abci", &q(transport.config_value().into()))?;
    // cometbft's gRPC client takes a bare host:port (its resolver refuses tcp://).
    let proxy_app = match transport {
        Transport::Socket => format!("tcp://127.0.0.1:{}", ports.abci),
        Transport::Grpc => format!("127.0.0.1:{}", ports.abci),
    };
    text = set_toml(&text, "", "proxy_app", &q(proxy_app))?;
    text = set_toml(
        &text,
        "rpc",
        "laddr",
        &q(format!("tcp://127.0.0.1:{}", ports.rpc)),
    )?;
    text = set_toml(&text, "rpc", "pprof_laddr", "\"\"")?;
    // Room for a maximal transaction hex/base64-encoded in a JSON-RPC body.
    text = set_toml(&text, "rpc", "max_body_bytes", "8388608")?;
    text = set_toml(
        &text,
        "p2p",
        "laddr",
        &q(format!("tcp://127.0.0.1:{}", ports.p2p)),
    )?;
    text = set_toml(&text, "p2p", "persistent_peers", &q(peers.to_string()))?;
    text = set_toml(&text, "p2p", "addr_book_strict", "false")?;
    text = set_toml(&text, "p2p", "allow_duplicate_ip", "true")?;
    text = set_toml(&text, "p2p", "pex", "false")?;
    text = set_toml(
        &text,
        "mempool",
        "max_tx_bytes",
        &replicode_abci::limits::COMETBFT_MAX_TX_BYTES.to_string(),
    )?;
    // No recheck of the whole mempool after every block: CheckTx depends on the
    // committed state only through the set of live pids, and a pooled stdin/kill
    // to a pid that exited meanwhile is refused deterministically at execution
    // (code UnknownPid) at the cost of its slot. Rechecking costs one ABCI socket
    // round trip per pooled tx per block while CometBFT holds the mempool lock.
    text = set_toml(&text, "mempool", "recheck", "false")?;
    text = set_toml(&text, "instrumentation", "prometheus", "false")?;
    if fast {
        text = set_toml(&text, "consensus", "timeout_propose", "\"1s\"")?;
        text = set_toml(&text, "consensus", "timeout_prevote", "\"200ms\"")?;
        text = set_toml(&text, "consensus", "timeout_precommit", "\"200ms\"")?;
        text = set_toml(&text, "consensus", "timeout_commit", "\"200ms\"")?;
    }
    std::fs::write(home.config_toml(), text)
        .with_context(|| format!("cannot write {}", home.config_toml().display()))
}

/// Reads a genesis template and resolves each program's `file` (relative to the
/// template) into `wasm_hex`, so the genesis carries the bytes themselves.
pub fn resolve_template(template: &Path) -> anyhow::Result<GenesisState> {
    let text = std::fs::read(template)
        .with_context(|| format!("cannot read genesis template {}", template.display()))?;
    let mut state =
        GenesisState::from_bytes(&text).with_context(|| format!("in {}", template.display()))?;
    let base = template.parent().unwrap_or(Path::new("."));
    for program in &mut state.programs {
        if let Some(file) = program.file.take() {
            let path = base.join(&file);
            let bytes = std::fs::read(&path).with_context(|| {
                format!(
                    "genesis program {}: cannot read {}",
                    program.path,
                    path.display()
                )
            })?;
            program.wasm_hex = Some(hex::encode(bytes));
        }
    }
    Ok(state)
}

/// Puts the app state (and optionally a chain id) into a CometBFT genesis.json.
pub fn write_app_state(
    home: &Home,
    state: &GenesisState,
    chain_id: Option<&str>,
) -> anyhow::Result<()> {
    let path = home.genesis_json();
    let text = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut genesis: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let obj = genesis
        .as_object_mut()
        .with_context(|| format!("{} is not a JSON object", path.display()))?;
    obj.insert("app_state".into(), serde_json::to_value(state)?);
    // CometBFT's mempool reaps blocks by the gas_wanted CheckTx reports, so
    // with max_gas set to the app's block fuel limit its proposals already fit
    // what ProcessProposal accepts.
    let max_gas = i64::try_from(state.limits.max_block_fuel).unwrap_or(i64::MAX);
    let block = obj
        .entry("consensus_params")
        .or_insert_with(|| serde_json::json!({}))
        .as_object_mut()
        .and_then(|params| {
            params
                .entry("block")
                .or_insert_with(|| serde_json::json!({}))
                .as_object_mut()
        })
        .with_context(|| {
            format!(
                "{}: consensus_params.block is not an object",
                path.display()
            )
        })?;
    // CometBFT's genesis writes int64 values as JSON strings.
    block.insert(
        "max_gas".into(),
        serde_json::Value::String(max_gas.to_string()),
    );
    if let Some(id) = chain_id {
        obj.insert("chain_id".into(), serde_json::Value::String(id.into()));
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&genesis)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `n` distinct free ports.
pub fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    // Hold every listener until all are chosen so none repeats.
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("cannot bind 127.0.0.1:0 to find free ports")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// Fuel `testnet up` and `init` give the `default` key: enough for 10^10
/// transactions at the default `fuel_per_tx`.
pub const DEFAULT_ACCOUNT_FUEL: u64 = 1_000_000_000_000_000_000;

/// Creates each `(name, fuel)` key in `keyring` (reusing one that exists) and
/// funds it in `state`'s genesis accounts.
pub fn fund_new_keys(
    keyring: &crate::keyring::Keyring,
    funded: &[(String, u64)],
    state: &mut GenesisState,
) -> anyhow::Result<()> {
    for (name, fuel) in funded {
        let key = match keyring.get(name) {
            Ok(key) => key,
            Err(_) => keyring.add(name)?,
        };
        if state.accounts.iter().any(|a| a.address == key.address) {
            anyhow::bail!("account {name} ({}) is funded twice", key.address);
        }
        state
            .accounts
            .push(replicode_abci::genesis::GenesisAccount {
                address: key.address,
                fuel: *fuel,
                name: Some(name.clone()),
            });
    }
    Ok(())
}
