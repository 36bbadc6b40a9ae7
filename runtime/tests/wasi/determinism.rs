//! The same guest and inputs give byte-identical output and filesystem digest.

use crate::common::{run_guest, Opts};

#[test]
fn syscall_heavy_workload_is_reproducible() {
    let run = || {
        run_guest(
            "fileworkload",
            Opts {
                args: vec!["/data".into(), "200".into(), "2".into()],
                ..Opts::default()
            },
        )
    };
    let (a, b) = (run(), run());
    a.assert_exit(0);
    assert!(a.stdout.contains("files: 200"), "{}", a.stdout);
    assert_eq!(a.stdout, b.stdout);
    assert_eq!(a.digest(), b.digest());
}

#[test]
fn fileops_leaves_the_same_digest_every_run() {
    let run = || {
        run_guest(
            "fileops",
            Opts {
                args: vec!["-k".into(), "/data".into()],
                ..Opts::default()
            },
        )
    };
    let (a, b) = (run(), run());
    assert!(a.exit.is_some(), "{:?}", a.error);
    assert_eq!(a.exit, b.exit);
    assert_eq!(a.stdout, b.stdout);
    assert_eq!(a.digest(), b.digest());
}
