//! `replicode start`: serve the ABCI app and run, supervise and stop its cometbft.
//!
//! Lifecycle: take the home's supervisor lock (a second `start` fails here, before
//! it touches anything of the running one); stop a cometbft a killed predecessor
//! left running; check cometbft is 0.38.x; open the store; listen for ABCI on the
//! home's `proxy_app` address; start `cometbft start` (which dials us), set to die
//! with us; then wait for SIGINT/SIGTERM (stop cometbft, exit 0) or cometbft's exit
//! (exit 1). A fatal state-machine error stops cometbft and exits 70 rather than
//! limping on.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};

use crate::cometbft;
use crate::home::Home;
use crate::supervisor::{self, SupervisorLock};

#[derive(clap::Args, Debug)]
pub struct StartArgs {
    /// The home directory made by `replicode init` or `replicode testnet up`.
    #[arg(long)]
    pub home: PathBuf,
    /// How many recent heights of state stay readable for `query --height` and
    /// proofs; older versions are pruned after each commit so the store stays
    /// bounded. 0 keeps every height (an archive node).
    #[arg(long, default_value_t = 1000, env = "REPLICODE_KEEP_HEIGHTS")]
    pub keep_heights: u64,
}

/// The running cometbft child, for the fatal hook (0 = none).
static CHILD: AtomicI32 = AtomicI32::new(0);

/// How long cometbft gets to stop after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How long a cometbft left behind by a killed supervisor gets after SIGTERM. It
/// has no app to talk to, so it is usually stuck and killed anyway.
const STALE_GRACE: Duration = Duration::from_secs(3);

pub fn run(args: StartArgs) -> anyhow::Result<ExitCode> {
    // Canonical, so cometbft's command line names the home the same way every
    // time and a later start recognizes a stale one.
    let home = Home(
        args.home
            .canonicalize()
            .with_context(|| format!("no home at {}", args.home.display()))?,
    );
    let _lock = SupervisorLock::acquire(&home)?;
    supervisor::stop_stale(&home, STALE_GRACE)?;
    std::fs::write(home.pid_file(), std::process::id().to_string())
        .with_context(|| format!("cannot write {}", home.pid_file().display()))?;
    let code = serve_and_supervise(&home, args.keep_heights);
    let _ = std::fs::remove_file(home.pid_file());
    code
}

/// Everything after the pid file: the app, then cometbft until it stops.
fn serve_and_supervise(home: &Home, keep_heights: u64) -> anyhow::Result<ExitCode> {
    let bin = cometbft::checked_binary()?;
    let abci_addr = home.abci_addr()?;
    let transport = home.abci_transport()?;

    let fatal: replicode_abci::app::FatalHook = Arc::new(|err| {
        eprintln!("replicode: fatal: {err}; stopping cometbft and exiting");
        stop_child_now();
        std::process::exit(70);
    });
    let (exec, validator) = crate::backend::open(home, keep_heights)?;
    let running = replicode_abci::server::serve(exec, validator, abci_addr, transport, fatal)?;
    tracing::info!(addr = %running.local_addr, transport = transport.config_value(), "ABCI listening");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    // On this (the main) thread, which lives as long as the process: cometbft's
    // parent-death signal follows the thread that spawned it.
    runtime.block_on(supervise(bin, home.clone()))
}

async fn supervise(bin: PathBuf, home: Home) -> anyhow::Result<ExitCode> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.cometbft_log())
        .with_context(|| format!("cannot open {}", home.cometbft_log().display()))?;
    let mut command = std::process::Command::new(&bin);
    command
        .arg("start")
        .arg("--home")
        .arg(&home.0)
        .stdout(log.try_clone()?)
        .stderr(log);
    supervisor::die_with_supervisor(&mut command);
    let mut child = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {} start --home {}",
                bin.display(),
                home.0.display()
            )
        })?;
    let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    CHILD.store(pid, Ordering::SeqCst);
    std::fs::write(home.cometbft_pid_file(), pid.to_string())
        .with_context(|| format!("cannot write {}", home.cometbft_pid_file().display()))?;
    tracing::info!(pid, "cometbft started");

    let code = wait_for_exit_or_signal(&mut child, &home).await;
    let _ = std::fs::remove_file(home.cometbft_pid_file());
    code
}

/// Until cometbft exits (exit 1) or SIGTERM/SIGINT stops it (exit 0).
async fn wait_for_exit_or_signal(
    child: &mut tokio::process::Child,
    home: &Home,
) -> anyhow::Result<ExitCode> {
    let mut sigterm = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        status = child.wait() => {
            CHILD.store(0, Ordering::SeqCst);
            let status = status.context("waiting for cometbft")?;
            eprintln!("replicode: cometbft exited ({status}); see {}", home.cometbft_log().display());
            Ok(ExitCode::from(1))
        }
        _ = sigterm.recv() => stop(child).await,
        _ = sigint.recv() => stop(child).await,
    }
}

/// SIGTERM to cometbft, wait up to [`STOP_GRACE`], then SIGKILL.
async fn stop(child: &mut tokio::process::Child) -> anyhow::Result<ExitCode> {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
    CHILD.store(0, Ordering::SeqCst);
    Ok(ExitCode::SUCCESS)
}

/// From the fatal hook (any thread): stop cometbft without waiting.
fn stop_child_now() {
    let pid = CHILD.swap(0, Ordering::SeqCst);
    if pid > 0 {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
}
