//! What `/proc` says about another process: whether it is alive, its parent, its
//! command line. Used to tell a validator's own processes from whatever a stale
//! pid file happens to name.

use nix::sys::signal::kill;
use nix::unistd::Pid;

/// True if `pid` exists and is not a zombie. Daemons started by an earlier
/// `testnet up` are reparented to PID 1, which in a container may never reap them,
/// so a killed process can linger as a zombie that `kill(pid, 0)` still finds.
pub fn alive(pid: i32) -> bool {
    if pid <= 0 || kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    match stat_fields(pid) {
        Some(fields) => fields.first().map(String::as_str) != Some("Z"),
        // Exists (kill found it) but /proc is unreadable: assume alive.
        None => true,
    }
}

/// The parent pid of `pid` (field 4 of `/proc/PID/stat`).
pub fn parent(pid: i32) -> Option<i32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// The arguments `pid` was started with (`/proc/PID/cmdline`), argv[0] first.
pub fn cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|arg| !arg.is_empty())
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect(),
    )
}

/// The fields of `/proc/PID/stat` after the parenthesized command name (which may
/// itself contain spaces and parentheses): state, ppid, ...
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_with_its_parent_and_arguments() {
        let me = i32::try_from(std::process::id()).expect("pid fits i32");
        assert!(alive(me));
        assert_eq!(
            parent(me),
            Some(nix::unistd::getppid().as_raw()),
            "ppid from /proc"
        );
        let args = cmdline(me).expect("own cmdline");
        assert_eq!(
            args.first().map(String::as_str),
            std::env::args().next().as_deref()
        );
    }

    #[test]
    fn an_exited_unreaped_child_is_not_alive() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = i32::try_from(child.id()).expect("pid fits i32");
        // Not reaped yet: a zombie, which `kill(pid, 0)` still finds.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!alive(pid), "a zombie counts as dead");
        assert!(kill(Pid::from_raw(pid), None).is_ok(), "still a zombie");
        child.wait().expect("reap");
        assert!(!alive(pid));
        assert!(!alive(0) && !alive(-1), "no process groups");
    }
}
