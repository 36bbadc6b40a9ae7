//! `replicode testnet up|status|down`: N validators on 127.0.0.1 from one command.
//!
//! `up` builds on `cometbft testnet` (keys, genesis), then gives every node its own
//! free loopback ports and the others as persistent peers, and starts one detached
//! `replicode start` per node (own process group, logs in `D/nodeI/`). Running `up`
//! again on an existing directory restarts only the nodes that are down. `up`
//! succeeds only if every node commits a block — a node it started must still be
//! running then and be served by its own cometbft — and otherwise names each node
//! that did not come up, with the end of its logs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;

use crate::cmd::OutputFormat;
use crate::cometbft;
use crate::home::{self, Abci, Home, Ports};
use crate::keyring::{Keyring, DEFAULT_KEY};
use crate::procfs::{self, alive};
use crate::rpc::Rpc;

#[derive(clap::Subcommand, Debug)]
pub enum TestnetCommand {
    /// Create (first time) and start every validator that is not running.
    Up(UpArgs),
    /// Height, app hash and peers of each validator.
    Status(DirArgs),
    /// Stop every validator (SIGTERM, then SIGKILL after a grace period).
    Down(DirArgs),
}

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Validators to create (default 4). On an existing directory it must
    /// match the testnet's size, or be left out.
    #[arg(long)]
    pub validators: Option<usize>,
    #[arg(long)]
    pub dir: PathBuf,
    /// Genesis app state template.
    #[arg(long, default_value = "genesis/app_state.json")]
    pub genesis: PathBuf,
    /// Seconds to wait for every validator to commit a block.
    #[arg(long, default_value_t = 60)]
    pub wait_secs: u64,
    /// How each cometbft talks to its app.
    #[arg(long, value_enum, default_value_t = Abci::Grpc)]
    pub abci: Abci,
    /// Also create key NAME in `DIR/keyring` and fund it with FUEL at genesis
    /// (repeatable). The key `default` is always created, with
    /// `DEFAULT_ACCOUNT_FUEL`.
    #[arg(long = "account", value_name = "NAME=FUEL")]
    pub accounts: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct DirArgs {
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `D/testnet.json`: what `up` created.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Layout {
    pub chain_id: String,
    pub nodes: Vec<NodeEntry>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct NodeEntry {
    pub name: String,
    pub home: PathBuf,
    pub ports: Ports,
}

impl NodeEntry {
    pub fn rpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.rpc)
    }
}

impl Layout {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("testnet.json")
    }

    pub fn load(dir: &Path) -> anyhow::Result<Layout> {
        let path = Layout::path(dir);
        let text = std::fs::read(&path).with_context(|| {
            format!(
                "cannot read {} (hint: replicode testnet up --dir {})",
                path.display(),
                dir.display()
            )
        })?;
        serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a testnet layout", path.display()))
    }
}

pub fn run(command: TestnetCommand) -> anyhow::Result<ExitCode> {
    match command {
        TestnetCommand::Up(args) => up(args),
        TestnetCommand::Status(args) => status(args),
        TestnetCommand::Down(args) => down(args),
    }
}

fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let layout = if Layout::path(&args.dir).exists() {
        let layout = Layout::load(&args.dir)?;
        if let Some(n) = args.validators.filter(|n| *n != layout.nodes.len()) {
            bail!(
                "{} holds a testnet of {} validators, not {n} (leave out --validators to restart it, or use a new --dir)",
                args.dir.display(),
                layout.nodes.len()
            );
        }
        if !args.accounts.is_empty() {
            bail!(
                "--account only applies when a testnet is created; {} exists",
                args.dir.display()
            );
        }
        layout
    } else {
        create(&args)?
    };
    let exe = std::env::current_exe().context("cannot find the replicode executable")?;
    let mut started = Vec::new();
    for node in &layout.nodes {
        started.push(match running_pid(&Home(node.home.clone())) {
            Some(_) => None,
            None => Some(spawn_node(&exe, node)?),
        });
    }
    wait_for_nodes(&layout, &mut started, Duration::from_secs(args.wait_secs))?;
    for node in &layout.nodes {
        println!(
            "{}  rpc {}  home {}",
            node.name,
            node.rpc_url(),
            node.home.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn create(args: &UpArgs) -> anyhow::Result<Layout> {
    let validators = args.validators.unwrap_or(4);
    if validators == 0 {
        bail!("--validators must be at least 1");
    }
    let bin = cometbft::checked_binary()?;
    let mut state = home::resolve_template(&args.genesis)?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let mut funded = vec![(DEFAULT_KEY.to_string(), home::DEFAULT_ACCOUNT_FUEL)];
    for spec in &args.accounts {
        let (name, fuel) = spec
            .split_once('=')
            .and_then(|(n, f)| Some((n.to_string(), f.parse::<u64>().ok()?)))
            .with_context(|| format!("--account {spec:?} is not NAME=FUEL"))?;
        funded.push((name, fuel));
    }
    home::fund_new_keys(&Keyring::at(&args.dir.join("keyring")), &funded, &mut state)?;
    let dir = args.dir.canonicalize()?;
    let dir_str = dir.to_str().context("testnet dir is not UTF-8")?;
    let n = validators.to_string();
    cometbft::run(
        &bin,
        &[
            "testnet",
            "--v",
            &n,
            "--o",
            dir_str,
            "--starting-ip-address",
            "127.0.0.1",
            "--populate-persistent-peers=false",
        ],
    )?;

    let chain_id = format!("replicode-testnet-{validators}");
    let ports = home::free_ports(3 * validators)?;
    let mut nodes = Vec::new();
    let mut ids = Vec::new();
    for i in 0..validators {
        let node_home = dir.join(format!("node{i}"));
        let id = cometbft::run(
            &bin,
            &[
                "show-node-id",
                "--home",
                node_home.to_str().context("UTF-8 path")?,
            ],
        )?;
        ids.push(id.trim().to_string());
        let p = Ports {
            p2p: ports[3 * i],
            rpc: ports[3 * i + 1],
            abci: ports[3 * i + 2],
        };
        nodes.push(NodeEntry {
            name: format!("node{i}"),
            home: node_home,
            ports: p,
        });
    }
    // One genesis for all: written once, then copied byte for byte.
    let first = Home(nodes[0].home.clone());
    home::write_app_state(&first, &state, Some(&chain_id))?;
    for node in &nodes[1..] {
        std::fs::copy(first.genesis_json(), Home(node.home.clone()).genesis_json())?;
    }
    for (i, node) in nodes.iter().enumerate() {
        let peers: Vec<String> = nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(j, other)| format!("{}@127.0.0.1:{}", ids[j], other.ports.p2p))
            .collect();
        home::configure(
            &Home(node.home.clone()),
            node.ports,
            &peers.join(","),
            true,
            args.abci,
        )?;
    }
    let layout = Layout { chain_id, nodes };
    std::fs::write(Layout::path(&dir), serde_json::to_vec_pretty(&layout)?)?;
    Ok(layout)
}

/// Starts `replicode start --home` detached, in its own process group. It writes
/// its own pid file once it holds the home's supervisor lock.
pub fn spawn_node(exe: &Path, node: &NodeEntry) -> anyhow::Result<Child> {
    let home = Home(node.home.clone());
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.log())
        .with_context(|| format!("cannot open {}", home.log().display()))?;
    Command::new(exe)
        .arg("start")
        .arg("--home")
        .arg(&node.home)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", node.name))
}

/// The pid in the home's pid file, if that process is alive and a `replicode
/// start` (a pid file left by a killed node may name a reused pid, which `down`
/// must not signal).
pub fn running_pid(home: &Home) -> Option<i32> {
    let text = std::fs::read_to_string(home.pid_file()).ok()?;
    let pid: i32 = text.trim().parse().ok()?;
    let args = procfs::cmdline(pid)?;
    let is_start = args
        .first()
        .and_then(|arg0| Path::new(arg0).file_name())
        .is_some_and(|name| name.to_string_lossy().contains("replicode"))
        && args.iter().any(|arg| arg == "start");
    (alive(pid) && is_start).then_some(pid)
}

/// Waits until every node answers with a committed block. A node `up` started
/// (`started[i]`) must also still be running and be served by its own cometbft: a
/// cometbft left behind by a killed supervisor answers RPC too. Fails naming every
/// node that did not come up, with the end of its logs.
fn wait_for_nodes(
    layout: &Layout,
    started: &mut [Option<Child>],
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut failed: Vec<Option<String>> = layout
        .nodes
        .iter()
        .zip(started.iter_mut())
        .map(|(node, child)| wait_for_node(node, child.as_mut(), deadline, timeout).err())
        .collect();
    // A node that came up early may have died while we waited for the others.
    for (why, child) in failed.iter_mut().zip(started.iter_mut()) {
        if let (None, Some(child)) = (why.as_ref(), child) {
            if let Ok(Some(status)) = child.try_wait() {
                *why = Some(format!("`replicode start` exited ({status})"));
            }
        }
    }
    let report: Vec<String> = layout
        .nodes
        .iter()
        .zip(&failed)
        .filter_map(|(node, why)| {
            why.as_ref()
                .map(|why| format!("{}: {why}\n{}", node.name, log_tails(node)))
        })
        .collect();
    if !report.is_empty() {
        bail!(
            "{} of {} validators did not come up\n{}",
            report.len(),
            layout.nodes.len(),
            report.join("\n")
        );
    }
    Ok(())
}

/// One node: `Err(why)` if its supervisor exited or no block came by `deadline`.
fn wait_for_node(
    node: &NodeEntry,
    mut supervisor: Option<&mut Child>,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), String> {
    let home = Home(node.home.clone());
    let rpc = Rpc::new(&node.rpc_url()).map_err(|e| format!("{e:#}"))?;
    loop {
        let own = match supervisor.as_deref_mut() {
            None => true,
            Some(child) => {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("`replicode start` exited ({status})"));
                }
                serves_own_cometbft(&home, child.id())
            }
        };
        if own && rpc.status().is_ok_and(|s| s.height >= 1) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("no committed block within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// True once `cometbft.pid` names a live child of `supervisor`.
fn serves_own_cometbft(home: &Home, supervisor: u32) -> bool {
    std::fs::read_to_string(home.cometbft_pid_file())
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        .is_some_and(|pid| {
            alive(pid)
                && procfs::parent(pid).and_then(|p| u32::try_from(p).ok()) == Some(supervisor)
        })
}

/// The last lines of a node's two logs, for a failure report.
fn log_tails(node: &NodeEntry) -> String {
    const LINES: usize = 10;
    let home = Home(node.home.clone());
    let mut out = String::new();
    for path in [home.log(), home.cometbft_log()] {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let skip = text.lines().count().saturating_sub(LINES);
        out.push_str(&format!("  --- {} (last {LINES} lines)\n", path.display()));
        for line in text.lines().skip(skip) {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn status(args: DirArgs) -> anyhow::Result<ExitCode> {
    let layout = Layout::load(&args.dir)?;
    let mut rows = Vec::new();
    for node in &layout.nodes {
        let pid = running_pid(&Home(node.home.clone()));
        let status = Rpc::new(&node.rpc_url()).and_then(|r| r.status());
        rows.push(serde_json::json!({
            "name": node.name,
            "rpc": node.rpc_url(),
            "pid": pid,
            "height": status.as_ref().ok().map(|s| s.height),
            "app_hash": status.as_ref().ok().map(|s| s.app_hash.clone()),
            "peers": status.as_ref().ok().map(|s| s.peers),
            "error": status.as_ref().err().map(|e| format!("{e:#}")),
        }));
    }
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        OutputFormat::Text => {
            println!(
                "{:<8} {:>8} {:>8} {:<20} {:>5}",
                "NODE", "PID", "HEIGHT", "APP HASH", "PEERS"
            );
            for r in &rows {
                let s = |k: &str| {
                    r[k].as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| r[k].to_string())
                };
                let hash = s("app_hash");
                println!(
                    "{:<8} {:>8} {:>8} {:<20} {:>5}",
                    s("name"),
                    s("pid"),
                    s("height"),
                    hash.get(..16).unwrap_or(&hash),
                    s("peers")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn down(args: DirArgs) -> anyhow::Result<ExitCode> {
    let layout = Layout::load(&args.dir)?;
    let mut pids = Vec::new();
    for node in &layout.nodes {
        if let Some(pid) = running_pid(&Home(node.home.clone())) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            pids.push((node, pid));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut stopped = Vec::new();
    for (node, pid) in pids {
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let how = if alive(pid) {
            // The whole group: replicode and its cometbft.
            let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
            eprintln!("replicode: {} did not stop in time; killed", node.name);
            "killed"
        } else {
            "stopped"
        };
        let _ = std::fs::remove_file(Home(node.home.clone()).pid_file());
        stopped.push(serde_json::json!({"node": node.name, "pid": pid, "how": how}));
    }
    match args.output {
        OutputFormat::Json => println!(
            "{}",
            serde_json::json!({"dir": args.dir, "stopped": stopped})
        ),
        OutputFormat::Text => println!("testnet in {} stopped", args.dir.display()),
    }
    Ok(ExitCode::SUCCESS)
}
