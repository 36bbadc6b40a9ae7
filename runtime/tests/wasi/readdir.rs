//! fd_readdir: sorted listings and stable cookies (telldir/seekdir) across many calls.

use crate::common::{run_guest, Opts};

#[test]
fn listing_is_sorted_and_cookies_survive_seekdir() {
    let out = run_guest(
        "wasi_readdir",
        Opts {
            args: vec!["/data".into(), "400".into()],
            ..Opts::default()
        },
    );
    out.assert_exit(0);
    assert!(
        out.stdout.contains("listed 402 entries sorted"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("seekdir ok at 58 positions"),
        "{}",
        out.stdout
    );
}
