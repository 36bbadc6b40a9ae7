//! Path confinement: "..", absolute paths and symlinks cannot leave the preopen.

use replicode_runtime::fs::ROOT_INO;

use crate::common::{run_guest, Opts, Outcome};

fn assert_outside_untouched(out: &Outcome) {
    let fs = out.fs.lock().expect("fs");
    let names: Vec<Vec<u8>> = fs
        .readdir(ROOT_INO)
        .expect("readdir /")
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(
        names,
        vec![b"data".to_vec(), b"secret".to_vec()],
        "something was created outside /data"
    );
    let secret = fs.lookup(ROOT_INO, b"secret").expect("secret");
    let mut buf = [0u8; 64];
    let n = fs.read(secret, 0, &mut buf).expect("read secret");
    assert_eq!(&buf[..n], b"top secret\n");
}

#[test]
fn dotdot_escapes_are_refused() {
    let out = run_guest(
        "escape_dotdot",
        Opts {
            args: vec!["/data".into()],
            ..Opts::default()
        },
    );
    assert!(!out.stdout.contains("ALLOWED"), "{}", out.stdout);
    out.assert_exit(0);
    assert!(out.stdout.contains("refused"), "{}", out.stdout);
    assert_outside_untouched(&out);
}

#[test]
fn symlink_escapes_are_refused_and_loops_are_eloop() {
    let out = run_guest(
        "escape_symlink",
        Opts {
            args: vec!["/data".into()],
            ..Opts::default()
        },
    );
    assert!(
        !out.stdout.contains("ALLOWED") && !out.stdout.contains("WRONG"),
        "{}",
        out.stdout
    );
    out.assert_exit(0);
    assert!(out.stdout.contains("ELOOP"), "{}", out.stdout);
    assert_outside_untouched(&out);
}
