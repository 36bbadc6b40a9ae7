//! Syscall-heavy workload: this WASI layer on `MemFs` vs wasmtime-wasi on a tmpfs
//! directory, same `.wasm`, same engine, same run. A measurement, not a timed test:
//! run with `cargo test --release -p replicode-runtime --test wasi -- --ignored --nocapture perf`.

use std::time::Instant;

use wasmtime::{Linker, Store};
use wasmtime_wasi::p1::{add_to_linker_sync, WasiP1Ctx};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::common::{engine, guest, run_module, Opts};

const ARGS: [&str; 3] = ["/data", "2000", "5"];

fn replicode_once() -> (f64, String) {
    let module = guest("fileworkload");
    let t = Instant::now();
    let out = run_module(
        &module,
        "fileworkload",
        Opts {
            args: ARGS.iter().map(|s| s.to_string()).collect(),
            ..Opts::default()
        },
    );
    let secs = t.elapsed().as_secs_f64();
    out.assert_exit(0);
    (secs, out.stdout)
}

struct P1Host {
    wasi: WasiP1Ctx,
}

fn wasmtime_wasi_once() -> (f64, String) {
    let module = guest("fileworkload");
    let dir = tempfile::Builder::new()
        .prefix("replicode-perf")
        .tempdir_in("/dev/shm")
        .expect("tmpfs dir");
    let stdout = wasmtime_wasi::p2::pipe::MemoryOutputPipe::new(1 << 20);
    let mut b = WasiCtxBuilder::new();
    b.args(&["fileworkload", ARGS[0], ARGS[1], ARGS[2]])
        .stdout(stdout.clone());
    b.preopened_dir(dir.path(), "/data", FsPerms::ReadWrite)
        .expect("preopen");
    let mut store = Store::new(engine(), P1Host { wasi: b.build_p1() });
    store.set_fuel(u64::MAX).expect("fuel");
    let mut linker: Linker<P1Host> = Linker::new(engine());
    add_to_linker_sync(&mut linker, |h: &mut P1Host| &mut h.wasi).expect("link");
    let t = Instant::now();
    let inst = linker
        .instantiate(&mut store, &module)
        .expect("instantiate");
    let start = inst
        .get_typed_func::<(), ()>(&mut store, "_start")
        .expect("_start");
    let r = start.call(&mut store, ());
    let secs = t.elapsed().as_secs_f64();
    if let Err(e) = r {
        assert!(
            e.downcast_ref::<wasmtime_wasi::I32Exit>()
                .is_some_and(|x| x.0 == 0),
            "{e:?}"
        );
    }
    (
        secs,
        String::from_utf8_lossy(&stdout.contents()).into_owned(),
    )
}

#[test]
#[ignore = "measurement; run explicitly"]
fn perf_fileworkload_vs_wasmtime_wasi() {
    let best = |f: fn() -> (f64, String)| {
        (0..3).map(|_| f()).fold(
            (f64::MAX, String::new()),
            |a, b| if b.0 < a.0 { b } else { a },
        )
    };
    let (ours, out_ours) = best(replicode_once);
    let (theirs, out_theirs) = best(wasmtime_wasi_once);
    assert_eq!(
        out_ours, out_theirs,
        "both runtimes must compute the same checksum"
    );
    println!("fileworkload {ARGS:?}: replicode/MemFs {ours:.3} s, wasmtime-wasi/tmpfs {theirs:.3} s, ratio {:.2}x", theirs / ours);
}
