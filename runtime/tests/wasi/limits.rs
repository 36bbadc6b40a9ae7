//! Per-process limits: open fds (EMFILE), file size (EFBIG), quota (ENOSPC).

use replicode_runtime::fs::FsLimits;

use crate::common::{run_guest, Opts};

#[test]
fn fd_exhaustion_is_emfile_at_the_configured_limit() {
    let out = run_guest(
        "fd_exhaust",
        Opts {
            args: vec!["/data".into()],
            max_fds: 40,
            ..Opts::default()
        },
    );
    out.assert_exit(0);
    // 40 slots minus stdin, stdout, stderr and the /data preopen.
    assert!(
        out.stdout.contains("opened 36 fds before EMFILE"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("reopen after close ok"),
        "{}",
        out.stdout
    );
}

#[test]
fn quota_exhaustion_is_enospc_at_the_same_byte_every_time() {
    let limits = FsLimits {
        max_file_size: 300_000,
        max_total_bytes: 1_000_000,
        max_inodes: 1000,
    };
    let run = || {
        run_guest(
            "quota",
            Opts {
                args: vec!["/data".into()],
                limits,
                ..Opts::default()
            },
        )
    };
    let (a, b) = (run(), run());
    a.assert_exit(0);
    assert_eq!(a.stdout, b.stdout);
    // "/secret" holds 11 bytes of the quota.
    assert!(
        a.stdout
            .contains("quota: wrote 999989 bytes in 4 files before ENOSPC"),
        "{}",
        a.stdout
    );
    assert!(a.stdout.contains("write after cleanup ok"), "{}", a.stdout);
    assert_eq!(a.digest(), b.digest());
    assert!(a.fs.lock().expect("fs").usage().bytes <= limits.max_total_bytes);
}
