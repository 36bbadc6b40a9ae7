//! One supervisor per home, and no cometbft without one.
//!
//! A cometbft whose `replicode start` was killed (`kill -9`, OOM killer) does not
//! stop by itself: in gRPC mode it waits for its app forever, holding its data-dir
//! lock and its ports, so the restarted node died with "failed to initialize
//! database: resource temporarily unavailable" (5 of 5 times in a chaos soak).
//! Three guards, each enough for a case the others miss:
//! - [`die_with_supervisor`]: the kernel sends cometbft SIGKILL when its supervisor dies;
//! - [`stop_stale`]: a restart stops a cometbft still recorded in `cometbft.pid`
//!   (e.g. left by a binary without the first guard);
//! - [`SupervisorLock`]: a second `start` on a running home fails before it touches
//!   the running node's pid files or its cometbft.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::home::Home;
use crate::procfs;

/// Held (an exclusive `flock` on `replicode.lock`) for as long as one
/// `replicode start` supervises a home; the kernel drops it when that process
/// dies however it dies. Rust opens files close-on-exec, so cometbft never
/// inherits it and an orphaned cometbft cannot keep a restart out.
#[derive(Debug)]
pub struct SupervisorLock {
    _lock: Flock<File>,
}

impl SupervisorLock {
    pub fn acquire(home: &Home) -> anyhow::Result<SupervisorLock> {
        let path = home.lock_file();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(SupervisorLock { _lock: lock }),
            Err((_, Errno::EWOULDBLOCK)) => {
                let pid = std::fs::read_to_string(home.pid_file()).unwrap_or_default();
                bail!(
                    "another `replicode start` (pid {}) is running for {}; stop it first",
                    pid.trim(),
                    home.0.display()
                )
            }
            Err((_, errno)) => {
                Err(errno).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }
}

/// Makes the kernel SIGKILL the spawned process when the thread that spawns it
/// exits (`PR_SET_PDEATHSIG`). The parent-death signal follows the *thread*, not
/// the process: spawn from a thread that lives as long as the supervisor (`start`
/// spawns from its main thread, which runs its current-thread runtime).
///
/// SIGKILL rather than SIGTERM: cometbft's SIGTERM handler stops the node, which
/// can block forever on an ABCI call to the app that just died. cometbft recovers
/// from SIGKILL through its WAL, as it must after any crash.
#[allow(unsafe_code)]
pub fn die_with_supervisor(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let supervisor = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are allowed. It makes two raw syscalls (prctl,
    // getppid) through nix wrappers that neither allocate nor lock, and builds its
    // error from an errno without allocating. It captures only a `Pid` (Copy).
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
            // The supervisor may have died between fork and prctl: then nobody
            // will send the signal, so do not start at all.
            if nix::unistd::getppid() != supervisor {
                return Err(io::Error::from(Errno::ESRCH));
            }
            Ok(())
        });
    }
}

/// Stops a cometbft left running for this home by a supervisor that died: the one
/// `cometbft.pid` names, if it is alive and its command line is a cometbft for
/// this home (a reused pid naming anything else is left alone). SIGTERM, `grace`
/// to exit, then SIGKILL. Call only while holding the [`SupervisorLock`], which
/// proves no live supervisor owns that cometbft.
pub fn stop_stale(home: &Home, grace: Duration) -> anyhow::Result<()> {
    let path = home.cometbft_pid_file();
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    if let Ok(pid) = text.trim().parse::<i32>() {
        if procfs::alive(pid) && is_cometbft_for(pid, &home.0) {
            eprintln!(
                "replicode: stopping cometbft pid {pid} left running for {} by a supervisor that died",
                home.0.display()
            );
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            if !wait_gone(pid, grace) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                if !wait_gone(pid, Duration::from_secs(5)) {
                    bail!("stale cometbft pid {pid} survived SIGKILL; it still holds {}'s data directory", home.0.display());
                }
            }
        }
    }
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))
}

/// True if `pid` runs a `cometbft` binary with `--home` naming `home`.
fn is_cometbft_for(pid: i32, home: &Path) -> bool {
    let Some(args) = procfs::cmdline(pid) else {
        return false;
    };
    let is_cometbft = args
        .first()
        .and_then(|arg0| Path::new(arg0).file_name())
        .is_some_and(|name| name.to_string_lossy().contains("cometbft"));
    let for_home = args
        .windows(2)
        .any(|pair| pair[0] == "--home" && Path::new(&pair[1]) == home);
    is_cometbft && for_home
}

/// Waits up to `timeout` for `pid` to exit (or become a zombie).
fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while procfs::alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command, Stdio};

    fn pid_of(child: &Child) -> i32 {
        i32::try_from(child.id()).expect("pid fits i32")
    }

    /// Polls `child` up to `timeout`; kills it (so no test leaks a process) if it
    /// is still running, and returns whether it had exited by itself.
    fn exits_within(child: &mut Child, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if child.try_wait().expect("try_wait").is_some() {
                return true;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A shell whose argv looks like `cometbft start --home HOME`, blocked on a
    /// read from a pipe we hold (no grandchild to leak). `ignore_term` makes it
    /// ignore SIGTERM, like a cometbft stuck waiting for its app.
    fn fake_cometbft(home: &Path, ignore_term: bool) -> Child {
        let script = if ignore_term {
            "trap '' TERM; read x"
        } else {
            "read x"
        };
        let child = Command::new("sh")
            .arg0("/opt/bin/cometbft")
            .args(["-c", script, "start", "--home"])
            .arg(home)
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        // Until exec, the child's command line is still this test binary's.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !is_cometbft_for(pid_of(&child), home) {
            assert!(Instant::now() < deadline, "fake cometbft never exec'd");
            std::thread::sleep(Duration::from_millis(10));
        }
        child
    }

    fn home() -> (tempfile::TempDir, Home) {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home(dir.path().canonicalize().expect("canonical"));
        (dir, home)
    }

    #[test]
    fn child_is_killed_when_the_thread_that_spawned_it_exits() {
        // Also pins the caveat in `die_with_supervisor`: the signal follows the
        // spawning thread, so `start` must spawn from a thread that lives on.
        let mut child = std::thread::spawn(|| {
            let mut cmd = Command::new("sleep");
            cmd.arg("30");
            die_with_supervisor(&mut cmd);
            cmd.spawn().expect("spawn sleep")
        })
        .join()
        .expect("spawning thread");
        assert!(
            exits_within(&mut child, Duration::from_secs(5)),
            "child outlived its spawning thread"
        );
        let status = child.wait().expect("status");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(Signal::SIGKILL as i32));
    }

    #[test]
    fn stale_cometbft_of_a_dead_supervisor_is_stopped_at_restart() {
        let (_dir, home) = home();
        let mut stale = fake_cometbft(&home.0, false);
        std::fs::write(home.cometbft_pid_file(), pid_of(&stale).to_string()).expect("pid file");
        stop_stale(&home, Duration::from_secs(5)).expect("stop_stale");
        assert!(exits_within(&mut stale, Duration::from_secs(1)));
        assert!(!home.cometbft_pid_file().exists(), "pid file removed");
    }

    #[test]
    fn stale_cometbft_that_ignores_sigterm_is_killed_after_the_grace() {
        let (_dir, home) = home();
        let mut stale = fake_cometbft(&home.0, true);
        // Let the shell install its trap before it is signalled.
        std::thread::sleep(Duration::from_millis(300));
        std::fs::write(home.cometbft_pid_file(), pid_of(&stale).to_string()).expect("pid file");
        let started = Instant::now();
        stop_stale(&home, Duration::from_millis(300)).expect("stop_stale");
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "waited the grace"
        );
        assert!(exits_within(&mut stale, Duration::from_secs(1)));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            stale.wait().expect("status").signal(),
            Some(Signal::SIGKILL as i32)
        );
    }

    #[test]
    fn stale_pid_file_naming_an_unrelated_process_does_not_kill_it() {
        let (_dir, home) = home();
        let other = tempfile::tempdir().expect("tempdir");
        // A reused pid: a cometbft of another home, and a process that is no cometbft.
        let mut other_home = fake_cometbft(other.path(), false);
        let mut sleeper = Command::new("sleep").arg("30").spawn().expect("sleep");
        for victim in [pid_of(&other_home), pid_of(&sleeper)] {
            std::fs::write(home.cometbft_pid_file(), victim.to_string()).expect("pid file");
            stop_stale(&home, Duration::from_millis(100)).expect("stop_stale");
            assert!(procfs::alive(victim), "pid {victim} was killed");
        }
        assert!(!exits_within(&mut other_home, Duration::ZERO));
        assert!(!exits_within(&mut sleeper, Duration::ZERO));
    }

    #[test]
    fn second_supervisor_of_a_running_home_is_refused_naming_the_first() {
        let (_dir, home) = home();
        let first = SupervisorLock::acquire(&home).expect("first lock");
        std::fs::write(home.pid_file(), "4242").expect("pid file");
        let err = SupervisorLock::acquire(&home).expect_err("second lock");
        assert!(format!("{err:#}").contains("pid 4242"), "{err:#}");
        drop(first);
        SupervisorLock::acquire(&home).expect("lock free once the first is gone");
    }
}
