//! A validator killed the hard way comes back: its cometbft does not outlive it, a
//! cometbft orphaned anyway is stopped at restart, a second `start` cannot hijack a
//! running home, and `testnet up` reports a node that did not come up.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use replicode_e2e::{alive, parent, wait_gone, Testnet};

const VICTIM: usize = 3;

/// Runs `replicode args` for at most `timeout` (killed after it); (exit ok, stderr).
fn run_bounded(net: &Testnet, args: &[&str], timeout: Duration) -> anyhow::Result<(bool, String)> {
    let mut child = Command::new(&net.bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let status = wait_child(&mut child, timeout)?;
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        std::io::Read::read_to_string(&mut pipe, &mut stderr)?;
    }
    Ok((status.is_some_and(|s| s.success()), stderr))
}

/// Waits up to `timeout` for a child of ours; kills it after that (None).
fn wait_child(
    child: &mut Child,
    timeout: Duration,
) -> anyhow::Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts node `i` runs a new supervisor whose own child is its cometbft, then
/// that it catches up with node 0 and every validator agrees.
fn assert_back_and_agreeing(net: &Testnet, i: usize, old_supervisor: i32) -> anyhow::Result<()> {
    let supervisor = net.pid(i).context("restarted node has no pid file")?;
    assert_ne!(
        supervisor, old_supervisor,
        "pid file still names the killed supervisor"
    );
    let cometbft = net
        .cometbft_pid(i)
        .context("restarted node has no cometbft.pid")?;
    assert_eq!(
        parent(cometbft),
        Some(supervisor),
        "cometbft is not the new supervisor's child"
    );
    let top = net.height(0)?;
    net.wait_height(i, top + 2, Duration::from_secs(60))?;
    net.verify()?;
    Ok(())
}

#[test]
fn killed_validator_restarts_while_its_cometbft_child_would_be_orphaned() -> anyhow::Result<()> {
    let net = Testnet::up(4)?;
    let home = net.nodes[VICTIM]
        .home
        .to_str()
        .context("UTF-8 home")?
        .to_string();
    let supervisor = net.pid(VICTIM).context("pid file")?;
    let cometbft = net.cometbft_pid(VICTIM).context("cometbft.pid")?;
    assert_eq!(parent(cometbft), Some(supervisor));

    // A second `start` on the running home is refused before it touches anything.
    let (ok, stderr) = run_bounded(&net, &["start", "--home", &home], Duration::from_secs(30))?;
    assert!(
        !ok && stderr.contains("another `replicode start`"),
        "second start: {stderr}"
    );
    assert_eq!(
        net.pid(VICTIM),
        Some(supervisor),
        "second start clobbered the pid file"
    );
    assert!(
        alive(cometbft),
        "second start stopped the running node's cometbft"
    );

    // SIGKILL to the supervisor alone, as the OOM killer or a chaos tool sends it
    // (the harness's kill9 takes the whole process group, cometbft included).
    kill(Pid::from_raw(supervisor), Signal::SIGKILL)?;
    assert!(
        wait_gone(supervisor, Duration::from_secs(10)),
        "supervisor survived SIGKILL"
    );
    assert!(
        wait_gone(cometbft, Duration::from_secs(5)),
        "cometbft pid {cometbft} outlived its supervisor\n{}",
        net.logs()
    );
    let top = net.height(0)?;
    net.wait_height(0, top + 2, Duration::from_secs(60))?;

    net.restart_stopped()?;
    assert_back_and_agreeing(&net, VICTIM, supervisor)
}

#[test]
fn cometbft_orphaned_by_a_killed_supervisor_is_stopped_at_restart() -> anyhow::Result<()> {
    let net = Testnet::up(4)?;
    let home = net.nodes[VICTIM].home.clone();
    let supervisor = net.pid(VICTIM).context("pid file")?;
    let cometbft = net.cometbft_pid(VICTIM).context("cometbft.pid")?;
    let bin = std::fs::read_link(format!("/proc/{cometbft}/exe"))?;
    net.kill9(VICTIM);

    // What a supervisor without a parent-death signal left behind: a cometbft for
    // the home, waiting for its app forever, holding its data-dir lock.
    let log = File::create(net.dir.path().join("orphan.log"))?;
    let mut orphan = Reaped(
        Command::new(&bin)
            .arg("start")
            .arg("--home")
            .arg(&home)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?,
    );
    let orphan_pid = i32::try_from(orphan.0.id())?;
    std::fs::write(home.join("cometbft.pid"), orphan_pid.to_string())?;
    anyhow::ensure!(
        wait_for(Duration::from_secs(30), || holds_data_lock(
            orphan_pid, &home
        )),
        "the orphan never locked its data directory"
    );

    let restarted = net.restart_stopped();
    let stopped = wait_child(&mut orphan.0, Duration::from_secs(10))?;
    restarted?;
    assert!(
        stopped.is_some(),
        "the restart left the orphaned cometbft running"
    );
    assert_back_and_agreeing(&net, VICTIM, supervisor)
}

#[test]
fn testnet_up_reports_a_validator_that_did_not_come_up() -> anyhow::Result<()> {
    let net = Testnet::up(4)?;
    let supervisor = net.pid(VICTIM).context("pid file")?;
    net.kill9(VICTIM);
    // Hold the victim's supervisor lock, so its restart fails as any start can.
    let lock_file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(net.nodes[VICTIM].home.join("replicode.lock"))?;
    // The killed supervisor's lock goes with its last open file, a moment
    // after SIGKILL: retry for a bounded time.
    let mut lock_file = Some(lock_file);
    let deadline = Instant::now() + Duration::from_secs(15);
    let lock = loop {
        let file = lock_file.take().context("lock file")?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => break lock,
            Err((file, _)) if Instant::now() < deadline => {
                lock_file = Some(file);
                std::thread::sleep(Duration::from_millis(100));
            }
            Err((_, errno)) => return Err(errno.into()),
        }
    };
    let out = net.run(&["testnet", "up", "--dir", net.dir_str(), "--wait-secs", "30"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "testnet up reported success: {stderr}"
    );
    let name = &net.nodes[VICTIM].name;
    assert!(
        stderr.contains(&format!("{name}: `replicode start` exited")),
        "{stderr}"
    );
    assert!(
        stderr.contains("another `replicode start`"),
        "no log tail: {stderr}"
    );
    for other in net.nodes.iter().filter(|n| n.name != *name) {
        assert!(
            !stderr.contains(&format!("{}:", other.name)),
            "blamed {}: {stderr}",
            other.name
        );
    }

    drop(lock);
    net.restart_stopped()?;
    assert_back_and_agreeing(&net, VICTIM, supervisor)
}

/// A child of the test, killed and reaped however the test ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `done` every 100 ms for up to `timeout`.
fn wait_for(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// True if `pid` has a goleveldb LOCK file of `home/data/` open.
fn holds_data_lock(pid: i32, home: &Path) -> bool {
    let data = home.join("data");
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|target| target.starts_with(&data) && target.ends_with("LOCK"))
    })
}
