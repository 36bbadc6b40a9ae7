//! Module preparation can neither crash the node nor take unbounded time
//! (issue 11): the structural limits refuse what would overflow binaryen's
//! stack, preparation runs on its own large stack, real programs still pass,
//! and a failure of binaryen's scratch files is the host's, not the module's.

use std::time::Instant;

use replicode_runtime::config::RuntimeConfig;
use replicode_runtime::engine::GuestEngine;
use replicode_runtime::error::{InstrumentError, RuntimeError, ValidationError};
use replicode_runtime::instrument;
use replicode_runtime::validate::{self, ModuleShape};

/// `fd_read(0, 0, 0, 0)` dropped: a call that can block, so Asyncify
/// instruments the function around it.
const BLOCKING_CALL: [u8; 11] = [0x41, 0, 0x41, 0, 0x41, 0, 0x41, 0, 0x10, 0, 0x1a];

/// A module whose `_start` nests `depth` `if`s (each `local.get 0; if`, 4
/// bytes) around a call that can block.
fn nested_ifs(depth: usize) -> Vec<u8> {
    let mut code = Vec::with_capacity(depth * 5 + 16);
    for _ in 0..depth {
        code.extend_from_slice(&[0x20, 0x00, 0x04, 0x40]); // local.get 0; if (empty)
    }
    code.extend_from_slice(&BLOCKING_CALL);
    code.extend(std::iter::repeat_n(0x0b, depth)); // end x depth
    code.push(0x0b); // end of the function
    module_with_start(&[(1, 0x7f)], &code)
}

/// A module whose `_start` passes `i32.eqz` applied `depth` times to 0 to a
/// call that can block: one expression tree `depth` deep, no nesting at all.
fn eqz_chain(depth: usize) -> Vec<u8> {
    let mut code = vec![0x41, 0x00]; // i32.const 0
    code.extend(std::iter::repeat_n(0x45, depth)); // i32.eqz x depth
    code.extend_from_slice(&BLOCKING_CALL[2..]); // the other arguments, call, drop
    code.push(0x0b); // end
    module_with_start(&[], &code)
}

/// `(module (import "wasi_snapshot_preview1" "fd_read" (func ...)) (memory (export
/// "memory") 1) (func (export "_start") <locals> <code>))`, encoded by hand so
/// hostile bodies of any size cost no text parsing. `_start` is function 1.
fn module_with_start(locals: &[(u32, u8)], code: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    leb(&mut body, locals.len() as u64);
    for (count, ty) in locals {
        leb(&mut body, u64::from(*count));
        body.push(*ty);
    }
    body.extend_from_slice(code);
    let mut code_section = vec![1]; // one body
    leb(&mut code_section, body.len() as u64);
    code_section.extend_from_slice(&body);

    let mut m = b"\0asm\x01\0\0\0".to_vec();
    // type 0: [i32 x 4] -> [i32] (fd_read), type 1: [] -> []
    section(
        &mut m,
        1,
        &[2, 0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f, 0x60, 0, 0],
    );
    let mut import = vec![1, 22];
    import.extend_from_slice(b"wasi_snapshot_preview1\x07fd_read\x00\x00");
    section(&mut m, 2, &import);
    section(&mut m, 3, &[1, 1]); // one function of type 1
    section(&mut m, 5, &[1, 0, 1]); // one memory, min 1 page
    let mut exports = vec![2];
    exports.extend_from_slice(b"\x06_start\x00\x01\x06memory\x02\x00");
    section(&mut m, 7, &exports);
    section(&mut m, 10, &code_section);
    m
}

fn section(module: &mut Vec<u8>, id: u8, contents: &[u8]) {
    module.push(id);
    leb(module, contents.len() as u64);
    module.extend_from_slice(contents);
}

fn leb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn refusal(wasm: &[u8], config: &RuntimeConfig) -> ValidationError {
    match instrument::prepare(wasm, config) {
        Err(RuntimeError::Validation(e)) => e,
        other => panic!("expected a validation error, got {other:?}"),
    }
}

fn too_complex(e: &ValidationError) -> (u32, &'static str) {
    match e {
        ValidationError::FunctionTooComplex { func, limit, .. } => (*func, limit),
        other => panic!("expected FunctionTooComplex, got {other}"),
    }
}

/// Was: 10,000 nested `if`s (50 KB) passed validation and binaryen's recursion
/// aborted the whole process. Runs on this test's thread (2 MiB of stack).
#[test]
fn nested_ifs_10k_are_refused_by_validation_not_crashing() {
    let wasm = nested_ifs(10_000);
    assert!(wasm.len() < 60_000, "{} bytes", wasm.len());
    let e = refusal(&wasm, &RuntimeConfig::default());
    assert_eq!(too_complex(&e), (1, "max_nesting_depth"), "{e}");
    assert!(!RuntimeError::Validation(e).is_host_failure());
}

/// Was: 200,000 nested `if`s (1 MB) aborted even on a 64 MiB stack.
#[test]
fn nested_ifs_200k_are_refused() {
    let wasm = nested_ifs(200_000);
    // By default its 1 MB body is refused by size before it is walked at all;
    // with the size limit lifted, nesting refuses it.
    let e = refusal(&wasm, &RuntimeConfig::default());
    assert_eq!(too_complex(&e), (1, "max_function_body_bytes"), "{e}");
    let mut config = RuntimeConfig::default();
    config.limits.max_function_body_bytes = 2 << 20;
    config.limits.max_operators_per_function = u32::MAX;
    let e = refusal(&wasm, &config);
    assert_eq!(too_complex(&e), (1, "max_nesting_depth"), "{e}");
}

/// The same recursion without any block: a 100,000-deep expression tree.
#[test]
fn deep_expression_chains_are_refused() {
    let e = refusal(&eqz_chain(100_000), &RuntimeConfig::default());
    assert_eq!(too_complex(&e), (1, "max_expression_depth"), "{e}");
}

/// What the limits allow, binaryen handles within a quarter of the
/// preparation thread's stack (run on a 64 MiB thread of our own), and
/// cranelift compiles on an ordinary thread's stack.
#[test]
fn modules_at_the_nesting_limits_prepare_on_a_quarter_of_the_stack() {
    let config = RuntimeConfig::default();
    let limits = config.limits;
    // Each nested `if` adds one level of nesting and of expression depth (the
    // blocking call inside and the function add four more), so this is the
    // deepest the limits admit.
    let nesting = (limits.max_nesting_depth as usize).min(limits.max_expression_depth as usize - 4);
    let chain = limits.max_expression_depth as usize - 4; // the call, drop and function add 3
    for (name, wasm) in [
        ("nested ifs", nested_ifs(nesting)),
        ("eqz chain", eqz_chain(chain)),
    ] {
        let shape = validate::module_shape(&wasm).expect("measures");
        let prepared = std::thread::Builder::new()
            .stack_size(instrument::PREPARE_STACK_BYTES / 4)
            .spawn({
                let config = config.clone();
                move || instrument::prepare_on_this_thread(&wasm, &config)
            })
            .expect("thread")
            .join()
            .expect("no panic");
        let prepared = prepared.unwrap_or_else(|e| panic!("{name} ({shape:?}): {e}"));
        // Cranelift compiles on the caller's thread (here a 2 MiB test thread).
        GuestEngine::new(config.clone())
            .expect("engine")
            .compile_prepared(prepared)
            .unwrap_or_else(|e| panic!("{name}: compile: {e}"));
    }
}

/// Every structural limit refuses with its name and the function index.
#[test]
fn each_structural_limit_names_itself_and_the_function() {
    let body = [0x41, 0x00, 0x45, 0x1a, 0x0b]; // i32.const 0; i32.eqz; drop; end
    type Shrink = fn(&mut RuntimeConfig);
    let cases: [(&str, Shrink); 4] = [
        ("max_function_body_bytes", |c| {
            c.limits.max_function_body_bytes = 4
        }),
        ("max_operators_per_function", |c| {
            c.limits.max_operators_per_function = 3
        }),
        ("max_locals_per_function", |c| {
            c.limits.max_locals_per_function = 4
        }),
        ("max_expression_depth", |c| {
            c.limits.max_expression_depth = 1
        }),
    ];
    let wasm = module_with_start(&[(5, 0x7f)], &body);
    assert!(instrument::prepare(&wasm, &RuntimeConfig::default()).is_ok());
    for (limit, shrink) in cases {
        let mut config = RuntimeConfig::default();
        shrink(&mut config);
        let e = refusal(&wasm, &config);
        assert_eq!(too_complex(&e), (1, limit), "{e}");
        assert!(e.to_string().contains(limit), "{e}");
    }

    // br_table: three targets plus the default.
    let br_table = [0x02, 0x40, 0x41, 0x00, 0x0e, 0x03, 0, 0, 0, 0, 0x0b, 0x0b];
    let wasm = module_with_start(&[], &br_table);
    let mut config = RuntimeConfig::default();
    config.limits.max_br_table_targets = 3;
    assert_eq!(
        too_complex(&refusal(&wasm, &config)),
        (1, "max_br_table_targets")
    );

    let mut config = RuntimeConfig::default();
    config.limits.max_types = 0;
    assert!(matches!(
        refusal(&wasm, &config),
        ValidationError::TooMany { what: "types", .. }
    ));
}

/// Was: binaryen's scratch files in `$TMPDIR`; a full disk made a spawn
/// `InvalidProgram` on one validator (a fork). Now they are in memory, and if
/// even that fails (here: no file descriptor left) it is a host failure. The
/// descriptor limit is per process, so the check runs in a child process.
#[test]
fn binaryen_scratch_failure_is_a_host_error() {
    const CHILD: &str = "REPLICODE_SCRATCH_FAILURE_CHILD";
    let wasm = module_with_start(&[], &[0x0b]);
    if std::env::var_os(CHILD).is_some() {
        let old = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        let limit = rustix::process::Rlimit {
            current: Some(0),
            maximum: old.maximum,
        };
        rustix::process::setrlimit(rustix::process::Resource::Nofile, limit).expect("setrlimit");
        let e = instrument::prepare(&wasm, &RuntimeConfig::default()).expect_err("no fd left");
        assert!(
            matches!(e, RuntimeError::Instrument(InstrumentError::Scratch { .. })),
            "{e:?}"
        );
        assert!(e.is_host_failure(), "{e}");
        println!("scratch failure is a host failure: {e}");
        return;
    }
    // The same module prepares when descriptors are available.
    instrument::prepare(&wasm, &RuntimeConfig::default()).expect("prepares");
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "preparation::binaryen_scratch_failure_is_a_host_error",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .expect("child runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("scratch failure is a host failure"),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn shape_line(name: &str, wasm: &[u8], shape: &ModuleShape, prepare_s: f64) -> String {
    let m = shape.max;
    format!(
        "{name}: {} bytes, {} functions, {} types; per function max: body {} bytes, {} operators, \
         {} locals, nesting {}, expression depth {}, br_table {} targets; prepared in {prepare_s:.2} s",
        wasm.len(),
        shape.functions,
        shape.types,
        m.body_bytes,
        m.operators,
        m.locals,
        m.nesting_depth,
        m.expression_depth,
        m.br_table_targets
    )
}

/// Measures, checks against the default limits and prepares a real program.
fn real_program_prepares(name: &str, wasm: &[u8]) {
    let shape = validate::module_shape(wasm).unwrap_or_else(|e| panic!("{name}: {e}"));
    let started = Instant::now();
    let prepared = instrument::prepare(wasm, &RuntimeConfig::default());
    let seconds = started.elapsed().as_secs_f64();
    println!("{}", shape_line(name, wasm, &shape, seconds));
    if let Err(e) = prepared {
        panic!("{name} ({shape:?}) must prepare: {e}");
    }
}

/// Every clang-built guest in `wasm_programs/build` still validates and prepares.
#[test]
fn real_c_guests_validate_and_prepare() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wasm_programs/build");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (run `make -C wasm_programs`)", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .collect();
    names.sort();
    assert!(names.len() >= 10, "only {} guests built", names.len());
    for path in names {
        let wasm = std::fs::read(&path).expect("read guest");
        real_program_prepares(&path.display().to_string(), &wasm);
    }
}

/// A Go `GOOS=wasip1` program (the Go runtime: large functions with deep
/// block nesting and wide `br_table`s) validates and prepares.
#[test]
fn real_go_program_validates_and_prepares() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("go.mod"), "module hello\ngo 1.21\n").expect("go.mod");
    std::fs::write(dir.path().join("main.go"), GO_PROGRAM).expect("main.go");
    let out = std::process::Command::new("go")
        .args(["build", "-o", "hello.wasm", "."])
        .current_dir(dir.path())
        .env("GOOS", "wasip1")
        .env("GOARCH", "wasm")
        .output()
        .expect("the Go toolchain is installed (scripts/setup.sh requires it)");
    assert!(
        out.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wasm = std::fs::read(dir.path().join("hello.wasm")).expect("built");
    real_program_prepares("go wasip1 hello (fmt, bufio)", &wasm);
}

const GO_PROGRAM: &str = r#"package main

import (
	"bufio"
	"fmt"
	"os"
)

func main() {
	sc := bufio.NewScanner(os.Stdin)
	n := 0
	for sc.Scan() {
		n += len(sc.Text())
		fmt.Printf("%d %s\n", n, sc.Text())
	}
}
"#;

/// Measures and prepares modules built by hand (SQLite, a larger Go program):
/// `REPLICODE_PREPARE_MODULES=a.wasm:b.wasm cargo test --release -p
/// replicode-runtime --test engine -- --ignored --nocapture extra_programs`.
#[test]
#[ignore = "needs REPLICODE_PREPARE_MODULES (modules not in the repository)"]
fn extra_programs_from_the_environment_prepare() {
    let list = std::env::var_os("REPLICODE_PREPARE_MODULES")
        .expect("REPLICODE_PREPARE_MODULES names the modules to prepare");
    for path in std::env::split_paths(&list) {
        let wasm = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        real_program_prepares(&path.display().to_string(), &wasm);
    }
}

/// For measuring by hand how deep binaryen can go (a crash kills the test
/// binary, so one depth per run): `REPLICODE_PROBE=ifs:20000` or `eqz:20000`.
#[test]
#[ignore = "may abort the process: run by hand with REPLICODE_PROBE"]
fn binaryen_depth_probe() {
    let probe = std::env::var("REPLICODE_PROBE").expect("REPLICODE_PROBE=ifs:N or eqz:N");
    let (kind, depth) = probe.split_once(':').expect("kind:depth");
    let depth: usize = depth.parse().expect("depth");
    let wasm = if kind == "ifs" {
        nested_ifs(depth)
    } else {
        eqz_chain(depth)
    };
    let mut config = RuntimeConfig::default();
    config.limits.max_nesting_depth = u32::MAX;
    config.limits.max_expression_depth = u32::MAX;
    let started = Instant::now();
    let result = instrument::prepare(&wasm, &config);
    println!(
        "{kind} x {depth}: {} bytes, {:.2} s, ok: {}",
        wasm.len(),
        started.elapsed().as_secs_f64(),
        result.is_ok()
    );
}
