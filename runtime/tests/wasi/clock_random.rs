//! clock_* and random_get: logical time and seeded randomness.

use crate::common::{run_guest, Opts};

fn entropy_lines(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| l.starts_with("entropy"))
        .collect()
}

#[test]
fn time_comes_from_the_caller_and_sleep_advances_it() {
    let out = run_guest(
        "clock_random",
        Opts {
            args: vec!["250".into()],
            time_ns: 1_700_000_000_123_000_000,
            ..Opts::default()
        },
    );
    out.assert_exit(0);
    assert!(
        out.stdout.contains("realtime: 1700000000.123000000\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("time(NULL): 1700000000 = 2023-11-14T22:13:20Z"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("nanosleep 250 ms: monotonic advanced 250"),
        "{}",
        out.stdout
    );
}

#[test]
fn randomness_is_a_function_of_the_seed() {
    let run = |seed| {
        run_guest(
            "clock_random",
            Opts {
                args: vec!["1".into()],
                seed,
                ..Opts::default()
            },
        )
    };
    let (a, b, c) = (run(42), run(42), run(43));
    a.assert_exit(0);
    assert_eq!(
        a.stdout, b.stdout,
        "same seed and time must give identical output"
    );
    assert_eq!(entropy_lines(&a.stdout).len(), 2);
    assert_ne!(entropy_lines(&a.stdout), entropy_lines(&c.stdout));
}
