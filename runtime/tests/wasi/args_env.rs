//! args_* and environ_*.

use crate::common::{run_guest, Opts};

#[test]
fn hello_sees_exactly_its_arguments() {
    let out = run_guest(
        "hello",
        Opts {
            args: vec!["one".into(), "two words".into()],
            ..Opts::default()
        },
    );
    out.assert_exit(0);
    assert_eq!(
        out.stdout,
        "hello from replicode\nargc=3\nargv[0]=hello\nargv[1]=one\nargv[2]=two words\n"
    );
    assert_eq!(out.stderr, "");
}

#[test]
fn environment_is_only_what_the_caller_gave() {
    let opts = Opts {
        args: vec!["FOO".into(), "PATH".into(), "HOME".into()],
        env: vec![
            ("FOO".into(), "bar=baz".into()),
            ("EMPTY".into(), String::new()),
        ],
        ..Opts::default()
    };
    let out = run_guest("wasi_env", opts);
    out.assert_exit(0);
    assert_eq!(
        out.stdout,
        "environ[0]=FOO=bar=baz\nenviron[1]=EMPTY=\ngetenv(FOO)=bar=baz\ngetenv(PATH)=(null)\ngetenv(HOME)=(null)\n"
    );
}
