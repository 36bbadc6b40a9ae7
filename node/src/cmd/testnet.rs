//! `replicode testnet up|status|down`: N validators on 127.0.0.1 from one command.
//!
//! `up` builds on `cometbft testnet` (keys, genesis), then gives every node its own
//! free loopback ports and the others as persistent peers, and starts one detached
//! `replicode start` per node (own process group, logs in `D/nodeI/`). Running `up`
//! again on an existing directory restarts only the nodes that are down.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;

use crate::cmd::OutputFormat;
use crate::cometbft;
use crate::home::{self, Abci, Home, Ports};
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
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
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
        Layout::load(&args.dir)?
    } else {
        create(&args)?
    };
    let exe = std::env::current_exe().context("cannot find the replicode executable")?;
    for node in &layout.nodes {
        if running_pid(&Home(node.home.clone())).is_some() {
            continue;
        }
        spawn_node(&exe, node)?;
    }
    wait_for_blocks(&layout, Duration::from_secs(args.wait_secs))?;
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
    if args.validators == 0 {
        bail!("--validators must be at least 1");
    }
    let bin = cometbft::checked_binary()?;
    let state = home::resolve_template(&args.genesis)?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let dir = args.dir.canonicalize()?;
    let dir_str = dir.to_str().context("testnet dir is not UTF-8")?;
    let n = args.validators.to_string();
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

    let chain_id = format!("replicode-testnet-{}", args.validators);
    let ports = home::free_ports(3 * args.validators)?;
    let mut nodes = Vec::new();
    let mut ids = Vec::new();
    for i in 0..args.validators {
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

/// Starts `replicode start --home` detached, in its own process group.
pub fn spawn_node(exe: &Path, node: &NodeEntry) -> anyhow::Result<u32> {
    let home = Home(node.home.clone());
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.log())
        .with_context(|| format!("cannot open {}", home.log().display()))?;
    let child = Command::new(exe)
        .arg("start")
        .arg("--home")
        .arg(&node.home)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", node.name))?;
    std::fs::write(home.pid_file(), child.id().to_string())?;
    Ok(child.id())
}

/// The pid in the home's pid file, if that process is alive.
pub fn running_pid(home: &Home) -> Option<i32> {
    let text = std::fs::read_to_string(home.pid_file()).ok()?;
    let pid: i32 = text.trim().parse().ok()?;
    alive(pid).then_some(pid)
}

/// True if `pid` exists and is not a zombie. Daemons started by an earlier `up`
/// are reparented to PID 1, which in a container may never reap them, so a
/// killed validator can linger as a zombie that `kill(pid, 0)` still finds.
pub fn alive(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Field 3, after the parenthesized command name, is the state.
        Ok(stat) => {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                != Some("Z")
        }
        Err(_) => true,
    }
}

fn wait_for_blocks(layout: &Layout, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    for node in &layout.nodes {
        let rpc = Rpc::new(&node.rpc_url())?;
        loop {
            match rpc.status() {
                Ok(s) if s.height >= 1 => break,
                _ if Instant::now() >= deadline => bail!(
                    "{} did not commit a block within {timeout:?}; see {}",
                    node.name,
                    Home(node.home.clone()).log().display()
                ),
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
    Ok(())
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
    for (node, pid) in pids {
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if alive(pid) {
            // The whole group: replicode and its cometbft.
            let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
            eprintln!("replicode: {} did not stop in time; killed", node.name);
        }
        let _ = std::fs::remove_file(Home(node.home.clone()).pid_file());
    }
    println!("testnet in {} stopped", args.dir.display());
    Ok(ExitCode::SUCCESS)
}
